//! A table of broken exam-set uploads, each sent as a raw body and as a multipart form: every
//! one gets a 4xx whose JSON body names the fault (file, line, field where there is one), and
//! the database is exactly as it was.

use kokushi_backend::Settings;
use kokushi_shared::api::{ApiErrorBody, ErrorCode, ExamSetSummary};
use kokushi_tests::{TestApp, fixture_model_store, fresh_postgres_url, sqlite_url};
use reqwest::StatusCode;

const LIMIT: usize = 64 * 1024;

fn line(id: &str, answer: &str) -> String {
    format!(
        r#"{{"problem_id": "{id}", "problem_text": "インスリンを分泌する細胞はどれか。", "choices": ["膵α細胞", "膵β細胞", "膵δ細胞", "肝細胞", "腺房細胞"], "text_only": true, "answer": ["{answer}"], "points": "1"}}"#
    )
}

struct Case {
    what: &'static str,
    file: &'static str,
    body: Vec<u8>,
    status: StatusCode,
    code: ErrorCode,
    /// Text the error (message or a detail) must contain.
    says: &'static str,
    /// The (line, field) of the first detail, for validation errors.
    at: Option<(usize, &'static str)>,
}

fn cases() -> Vec<Case> {
    let valid = line("903A1", "b");
    let mut oversized = String::new();
    let mut n = 1;
    while oversized.len() <= LIMIT {
        oversized.push_str(&line(&format!("903B{n}"), "b"));
        oversized.push('\n');
        n += 1;
    }
    vec![
        Case {
            what: "malformed JSON",
            file: "broken.jsonl",
            body: format!("{valid}\n{{\"problem_id\": \"903A2\", \"problem_text\": \n").into(),
            status: StatusCode::BAD_REQUEST,
            code: ErrorCode::InvalidExamSet,
            says: "not a JSON object",
            at: Some((2, "line")),
        },
        Case {
            what: "an answer letter the question has no choice for",
            file: "letters.jsonl",
            body: format!("{valid}\n{}\n", line("903A2", "z")).into(),
            status: StatusCode::BAD_REQUEST,
            code: ErrorCode::InvalidExamSet,
            says: "z",
            at: Some((2, "answer")),
        },
        Case {
            what: "duplicate problem ids",
            file: "twice.jsonl",
            body: format!("{valid}\n{valid}\n").into(),
            status: StatusCode::BAD_REQUEST,
            code: ErrorCode::InvalidExamSet,
            says: "duplicate problem_id \"903A1\" (first seen at twice.jsonl:1)",
            at: Some((2, "problem_id")),
        },
        Case {
            what: "an empty file",
            file: "empty.jsonl",
            body: Vec::new(),
            status: StatusCode::BAD_REQUEST,
            code: ErrorCode::InvalidExamSet,
            says: "empty.jsonl:1: field `line`: no questions",
            at: Some((1, "line")),
        },
        Case {
            what: "binary data",
            file: "image.jsonl",
            body: vec![
                0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0xff, 0xfe,
            ],
            status: StatusCode::BAD_REQUEST,
            code: ErrorCode::InvalidExamSet,
            says: "image.jsonl:1: field `line`: not UTF-8 text",
            at: Some((1, "line")),
        },
        Case {
            what: "a CSV file with unknown columns",
            file: "sheet.csv",
            body: "problem_id,question,x\n903A1,q,1\n".into(),
            status: StatusCode::BAD_REQUEST,
            code: ErrorCode::InvalidExamSet,
            says: "sheet.csv",
            at: Some((1, "")),
        },
        Case {
            what: "an oversized file",
            file: "huge.jsonl",
            body: oversized.into(),
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: ErrorCode::PayloadTooLarge,
            says: "larger than the limit of 65536 bytes",
            at: None,
        },
    ]
}

fn multipart(file: &str, body: &[u8]) -> (String, Vec<u8>) {
    let boundary = "kokushi-test-boundary-7d3f";
    let mut out = Vec::new();
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), out)
}

async fn exam_sets(app: &TestApp) -> Vec<ExamSetSummary> {
    app.client
        .get(app.url("/api/exam-sets"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

async fn broken_uploads_are_refused_and_change_nothing(database_url: String) {
    let store = fixture_model_store().expect("fixture model");
    let mut settings = Settings::embedded(database_url, store.path());
    settings.max_upload_bytes = LIMIT;
    let app = TestApp::spawn(settings).await.expect("server starts");
    app.upload_mini_exam().await.expect("a valid upload first");
    let before = exam_sets(&app).await;

    for case in cases() {
        for as_form in [false, true] {
            let req = app.client.post(app.url("/api/exam-sets"));
            let req = if as_form {
                let (content_type, body) = multipart(case.file, &case.body);
                req.query(&[("name", "broken")])
                    .header("Content-Type", content_type)
                    .body(body)
            } else {
                req.query(&[("name", "broken"), ("file", case.file)])
                    .body(case.body.clone())
            };
            let res = req.send().await.expect("request");
            let status = res.status();
            let text = res.text().await.expect("body");
            let how = if as_form { "as a form" } else { "as a body" };
            let what = format!("{} ({how}): {status} {text}", case.what);
            assert_eq!(status, case.status, "{what}");
            let body: ApiErrorBody = serde_json::from_str(&text).expect(&what);
            assert_eq!(body.code, case.code, "{what}");
            let all = format!(
                "{} {}",
                body.message,
                body.details
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            assert!(
                all.contains(case.says),
                "{what}: should say {:?}",
                case.says
            );
            if let Some((line, field)) = case.at {
                let first = body.details.first().expect(&what);
                assert_eq!(first.line, line, "{what}");
                assert!(first.field.contains(field), "{what}");
                assert_ne!(first.file, "", "{what}");
            }
        }
    }
    // A form without a `file` field, and a missing name.
    let (content_type, body) = multipart("x.jsonl", b"");
    let no_file = String::from_utf8_lossy(&body).replace("name=\"file\"", "name=\"other\"");
    let res = app
        .client
        .post(app.url("/api/exam-sets"))
        .query(&[("name", "broken")])
        .header("Content-Type", content_type)
        .body(no_file)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(
        res.text()
            .await
            .expect("text")
            .contains("no field named `file`")
    );
    let res = app
        .client
        .post(app.url("/api/exam-sets"))
        .body(line("903A1", "b"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.expect("text").contains("name"));

    // A form whose fields are each under the limit but together over it (here: a note of 40
    // KiB, then a file of 40 KiB) is refused as a whole.
    let (content_type, body) = multipart("half.jsonl", &vec![b' '; 40 * 1024]);
    let padded = String::from_utf8_lossy(&body).replace("ignored", &"n".repeat(40 * 1024));
    let res = app
        .client
        .post(app.url("/api/exam-sets"))
        .query(&[("name", "two-halves")])
        .header("Content-Type", content_type)
        .body(padded)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Nothing was stored by any of them; a valid form upload is.
    assert_eq!(exam_sets(&app).await, before);
    let (content_type, body) = multipart("good.jsonl", line("903A1", "b").as_bytes());
    let res = app
        .client
        .post(app.url("/api/exam-sets"))
        .query(&[("name", "good")])
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(exam_sets(&app).await.len(), before.len() + 1);
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_uploads_get_a_4xx_naming_the_fault_and_change_nothing_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    broken_uploads_are_refused_and_change_nothing(sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_uploads_get_a_4xx_naming_the_fault_and_change_nothing_on_postgres() {
    let Some(url) = fresh_postgres_url().await.expect("postgres") else {
        return;
    };
    broken_uploads_are_refused_and_change_nothing(url).await;
}
