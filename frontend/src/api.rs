//! Every HTTP call the app makes, typed with `kokushi-shared`'s API bodies.
//!
//! Same origin only: paths start with `/api`. Components never build a URL or read a response
//! themselves; they call these functions and get typed data or an [`ApiError`].

use gloo_net::http::Request;
use kokushi_shared::api::{
    ApiErrorBody, CreateRun, CreateTuning, ExamSetSummary, LeaderboardQuery, Login, Me,
    QuestionView, RunComparison, RunDetail, RunLineage, RunSummary, StoreEntry, TuningDetail,
    TuningSummary, WorkerInfo,
};
use kokushi_shared::score::ScoreReport;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub mod grading;

/// `GET /api/leaderboard`: every run, newest first.
pub async fn leaderboard(query: LeaderboardQuery) -> Result<Vec<RunSummary>, ApiError> {
    get_json(&leaderboard_path(&query)).await
}

/// The leaderboard as CSV, for the same filter.
pub fn leaderboard_export_path(query: &LeaderboardQuery) -> String {
    let path = leaderboard_path(query);
    match path.split_once('?') {
        Some((_, params)) => format!("/api/leaderboard/export?format=csv&{params}"),
        None => "/api/leaderboard/export?format=csv".to_owned(),
    }
}

/// `/api/leaderboard` with the query's filter, leaving out what it does not set.
pub fn leaderboard_path(query: &LeaderboardQuery) -> String {
    let mut params = Vec::new();
    let texts = [
        ("years", &query.years),
        ("blocks", &query.blocks),
        ("section", &query.section),
        ("specialty", &query.specialty),
    ];
    for (name, value) in texts {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            params.push(format!("{name}={}", encode(value)));
        }
    }
    if query.text_only == Some(true) {
        params.push("text_only=true".to_owned());
    }
    if let Some(scope) = query.scope.as_deref().filter(|s| *s != "project") {
        params.push(format!("scope={}", encode(scope)));
    }
    if params.is_empty() {
        "/api/leaderboard".to_owned()
    } else {
        format!("/api/leaderboard?{}", params.join("&"))
    }
}

/// `GET /api/runs/{id}?questions=false`: the run without its questions (the page reads those
/// a page at a time: [`run_questions`]).
pub async fn run(id: i64) -> Result<RunDetail, ApiError> {
    get_json(&format!("/api/runs/{id}?questions=false")).await
}

/// `GET /api/runs/{id}/questions`: the questions `filter` and `specialty` (empty: any) keep,
/// `offset` skipped, one page of [`crate::table::PAGE_SIZE`]; with how many they keep in all.
pub async fn run_questions(
    id: i64,
    filter: kokushi_shared::api::QuestionFilter,
    specialty: &str,
    offset: usize,
) -> Result<(Vec<kokushi_shared::api::QuestionResult>, usize), ApiError> {
    let mut url = format!(
        "/api/runs/{id}/questions?show={}&limit={}&offset={offset}",
        filter.id(),
        crate::table::PAGE_SIZE
    );
    if !specialty.is_empty() {
        url.push_str(&format!("&specialty={}", encode(specialty)));
    }
    let response = Request::get(&url).send().await.map_err(network)?;
    let total = response
        .headers()
        .get("x-total-count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = response.text().await.map_err(network)?;
    let rows = decode(response.status(), response.ok(), &body)?;
    Ok((rows, total))
}

/// `GET /api/auth/me`: who is signed in (a 401 when nobody is).
pub async fn me() -> Result<Me, ApiError> {
    get_json("/api/auth/me").await
}

/// `POST /api/auth/login`: the server sets the session cookie (HttpOnly, so this code never
/// sees it) and answers with the account and its CSRF token.
pub async fn login(username: &str, password: &str) -> Result<Me, ApiError> {
    let body = Login {
        username: username.to_owned(),
        password: password.to_owned(),
    };
    let request = Request::post("/api/auth/login")
        .json(&body)
        .map_err(network)?;
    let response = request.send().await.map_err(network)?;
    let text = response.text().await.map_err(network)?;
    decode(response.status(), response.ok(), &text)
}

/// `POST /api/auth/logout`, with the session's CSRF token.
pub async fn logout(csrf_token: &str) -> Result<(), ApiError> {
    let response = Request::post("/api/auth/logout")
        .header("X-CSRF-Token", csrf_token)
        .send()
        .await
        .map_err(network)?;
    if response.ok() {
        Ok(())
    } else {
        let text = response.text().await.map_err(network)?;
        decode::<()>(response.status(), false, &text)
    }
}

/// `GET /api/runs/{id}/score`: the run scored per year, section and specialty.
pub async fn run_score(id: i64) -> Result<ScoreReport, ApiError> {
    get_json(&format!("/api/runs/{id}/score")).await
}

/// `GET /api/runs/{id}/questions/{problem_id}`.
pub async fn question(run_id: i64, problem_id: &str) -> Result<QuestionView, ApiError> {
    get_json(&format!(
        "/api/runs/{run_id}/questions/{}",
        encode(problem_id)
    ))
    .await
}

/// `GET /api/runs/{id}/lineage`: the hashes and settings the run's score depends on.
pub async fn lineage(id: i64) -> Result<RunLineage, ApiError> {
    get_json(&format!("/api/runs/{id}/lineage")).await
}

/// `GET /api/compare?first=A&second=B`.
pub async fn compare(first: i64, second: i64) -> Result<RunComparison, ApiError> {
    get_json(&format!("/api/compare?first={first}&second={second}")).await
}

/// `GET /api/exam-sets`.
pub async fn exam_sets() -> Result<Vec<ExamSetSummary>, ApiError> {
    get_json("/api/exam-sets").await
}

/// [`kokushi_shared::api::ExamSetRules`] as the exam-sets page reads it: without the packs'
/// contents, which it does not show (reading them would cost the bundle the code of every
/// rule pack type).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct RulesListing {
    pub in_effect: Vec<kokushi_shared::api::PackInEffect>,
    pub versions: Vec<RulesVersion>,
}

/// [`kokushi_shared::api::StoredRulePack`] without its pack.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct RulesVersion {
    pub exam: String,
    pub version: u32,
    pub created_by: String,
    pub created_at: String,
}

/// `GET /api/exam-sets/{id}/rules`: the rule pack in effect for each exam the set holds, and
/// every version uploaded for it.
pub async fn exam_set_rules(id: i64) -> Result<RulesListing, ApiError> {
    get_json(&format!("/api/exam-sets/{id}/rules")).await
}

/// `POST /api/exam-sets/{id}/rules` with a rule pack file as the body: its next version.
pub async fn add_exam_set_rules(
    id: i64,
    pack: web_sys::File,
    csrf: &str,
) -> Result<RulesVersion, ApiError> {
    let response = Request::post(&format!("/api/exam-sets/{id}/rules"))
        .header("X-CSRF-Token", csrf)
        .header("Content-Type", "application/json")
        .body(wasm_bindgen::JsValue::from(pack))
        .map_err(network)?
        .send()
        .await
        .map_err(network)?;
    let text = response.text().await.map_err(network)?;
    decode(response.status(), response.ok(), &text)
}

/// `GET /api/models`: the model store.
pub async fn models() -> Result<Vec<StoreEntry>, ApiError> {
    get_json("/api/models").await
}

/// `GET /api/tunings`.
pub async fn tunings() -> Result<Vec<TuningSummary>, ApiError> {
    get_json("/api/tunings").await
}

/// `GET /api/tunings/{id}`: the tuning and its loss curves.
pub async fn tuning(id: i64) -> Result<TuningDetail, ApiError> {
    get_json(&format!("/api/tunings/{id}")).await
}

/// `GET /api/workers` (admin).
pub async fn workers() -> Result<Vec<WorkerInfo>, ApiError> {
    get_json("/api/workers").await
}

/// `POST /api/runs`: queues an evaluation.
pub async fn create_run(body: &CreateRun, csrf: &str) -> Result<RunSummary, ApiError> {
    post_json("/api/runs", Some(body), csrf).await
}

/// `POST /api/runs/estimate`: what the run would cost, before it is queued.
pub async fn estimate_run(
    body: &CreateRun,
    csrf: &str,
) -> Result<kokushi_shared::cost::Estimate, ApiError> {
    post_json("/api/runs/estimate", Some(body), csrf).await
}

/// `POST /api/tunings`: queues a LoRA tuning.
pub async fn create_tuning(body: &CreateTuning, csrf: &str) -> Result<TuningSummary, ApiError> {
    post_json("/api/tunings", Some(body), csrf).await
}

/// `POST /api/runs/{id}/cancel`, `/retry`, `/publish` or `/unpublish`.
pub async fn run_action(id: i64, action: &str, csrf: &str) -> Result<RunSummary, ApiError> {
    post_json::<(), _>(&format!("/api/runs/{id}/{action}"), None, csrf).await
}

/// `GET /api/projects`: the caller's projects.
pub async fn projects() -> Result<Vec<kokushi_shared::api::ProjectSummary>, ApiError> {
    get_json("/api/projects").await
}

/// `POST /api/auth/project`: the session acts in another project from now on.
pub async fn switch_project(project_id: i64, csrf: &str) -> Result<Me, ApiError> {
    // The body written out (`SwitchProject`): every bundle's header calls this, and a JSON
    // serializer of its own would cost each of them kilobytes.
    let response = Request::post("/api/auth/project")
        .header("X-CSRF-Token", csrf)
        .header("Content-Type", "application/json")
        .body(format!("{{\"project_id\":{project_id}}}"))
        .map_err(network)?
        .send()
        .await
        .map_err(network)?;
    let text = response.text().await.map_err(network)?;
    decode(response.status(), response.ok(), &text)
}

/// `DELETE url`, answered with JSON (or, for 204, with `()`'s `null`).
async fn delete_json<T: DeserializeOwned>(url: &str, csrf: &str) -> Result<T, ApiError> {
    let response = Request::delete(url)
        .header("X-CSRF-Token", csrf)
        .send()
        .await
        .map_err(network)?;
    let text = response.text().await.map_err(network)?;
    let text = if response.status() == 204 {
        "null".to_owned()
    } else {
        text
    };
    decode(response.status(), response.ok(), &text)
}

/// Project settings: one project with its members, members added and removed, a new project
/// (admins), the caller's API tokens, the project's judging settings.
pub mod projects {
    use kokushi_shared::api::{
        CreateProject, CreateToken, NewToken, ProjectDetail, SetMember, TokenSummary,
    };

    use super::{ApiError, delete_json, get_json, post_json};

    /// `GET /api/judging`: the project's judging threshold and calibration tasks.
    pub async fn judging() -> Result<kokushi_shared::judge::JudgingSettings, ApiError> {
        get_json("/api/judging").await
    }

    /// A grading task's id and name: all the judging settings need of `GET /api/grading/tasks`.
    #[derive(Debug, Clone, serde::Deserialize)]
    pub struct TaskName {
        pub id: i64,
        pub name: String,
    }

    /// `GET /api/grading/tasks` (the first page), as ids and names.
    pub async fn task_names() -> Result<Vec<TaskName>, ApiError> {
        get_json("/api/grading/tasks").await
    }

    /// `POST /api/judging` (the project's owners).
    pub async fn set_judging(
        body: &kokushi_shared::judge::JudgingSettings,
        csrf: &str,
    ) -> Result<kokushi_shared::judge::JudgingSettings, ApiError> {
        post_json("/api/judging", Some(body), csrf).await
    }

    pub async fn project(id: i64) -> Result<ProjectDetail, ApiError> {
        get_json(&format!("/api/projects/{id}")).await
    }

    pub async fn set_member(
        id: i64,
        body: &SetMember,
        csrf: &str,
    ) -> Result<ProjectDetail, ApiError> {
        post_json(&format!("/api/projects/{id}/members"), Some(body), csrf).await
    }

    pub async fn remove_member(id: i64, user: i64, csrf: &str) -> Result<(), ApiError> {
        delete_json(&format!("/api/projects/{id}/members/{user}"), csrf).await
    }

    pub async fn create(body: &CreateProject, csrf: &str) -> Result<ProjectDetail, ApiError> {
        post_json("/api/projects", Some(body), csrf).await
    }

    pub async fn tokens() -> Result<Vec<TokenSummary>, ApiError> {
        get_json("/api/tokens").await
    }

    pub async fn create_token(body: &CreateToken, csrf: &str) -> Result<NewToken, ApiError> {
        post_json("/api/tokens", Some(body), csrf).await
    }

    pub async fn revoke_token(id: i64, csrf: &str) -> Result<TokenSummary, ApiError> {
        delete_json(&format!("/api/tokens/{id}"), csrf).await
    }
}

/// `POST /api/tunings/{id}/cancel` or `/retry`.
pub async fn tuning_action(id: i64, action: &str, csrf: &str) -> Result<TuningSummary, ApiError> {
    post_json::<(), _>(&format!("/api/tunings/{id}/{action}"), None, csrf).await
}

/// What an upload asks the server to mend: the repairs accepted (problem id, kind) and the
/// records left out (problem id → reason).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mends {
    pub repairs: std::collections::BTreeSet<(String, kokushi_shared::repair::RepairKind)>,
    pub exclude: std::collections::BTreeMap<String, String>,
}

/// `POST /api/exam-sets` with `files` as one multipart form (IgakuQA119's question files and
/// answers file together), asking for `mends`. With `preview` the server stores nothing and
/// answers a [`kokushi_shared::api::UploadPreview`]; else a
/// [`kokushi_shared::api::ImportReport`].
pub async fn upload_exam_set<T: DeserializeOwned>(
    name: &str,
    files: &[web_sys::File],
    mends: &Mends,
    preview: bool,
    csrf: &str,
) -> Result<T, ApiError> {
    let mut url = format!("/api/exam-sets?name={}", encode(name));
    if preview {
        url.push_str("&preview=true");
    }
    if !mends.repairs.is_empty() {
        let repairs: Vec<String> = mends
            .repairs
            .iter()
            .map(|(id, kind)| format!("{id}:{}", kind.id()))
            .collect();
        url.push_str(&format!("&repair={}", encode(&repairs.join(","))));
    }
    for (id, reason) in &mends.exclude {
        url.push_str(&format!("&exclude={}", encode(&format!("{id}:{reason}"))));
    }
    let refused = |e: wasm_bindgen::JsValue| ApiError::Network {
        message: format!("the browser refused the files: {e:?}"),
    };
    let form = web_sys::FormData::new().map_err(refused)?;
    for file in files {
        form.append_with_blob_and_filename("file", file, &file.name())
            .map_err(refused)?;
    }
    let response = Request::post(&url)
        .header("X-CSRF-Token", csrf)
        .body(form)
        .map_err(network)?
        .send()
        .await
        .map_err(network)?;
    let text = response.text().await.map_err(network)?;
    decode(response.status(), response.ok(), &text)
}

async fn post_json<B: Serialize, T: DeserializeOwned>(
    url: &str,
    body: Option<&B>,
    csrf: &str,
) -> Result<T, ApiError> {
    let request = Request::post(url).header("X-CSRF-Token", csrf);
    let request = match body {
        Some(body) => request.json(body).map_err(network)?,
        None => request.build().map_err(network)?,
    };
    let response = request.send().await.map_err(network)?;
    let text = response.text().await.map_err(network)?;
    decode(response.status(), response.ok(), &text)
}

/// Percent-encodes a query value or path segment (everything but unreserved characters).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn network(error: gloo_net::Error) -> ApiError {
    ApiError::Network {
        message: error.to_string(),
    }
}

async fn get_json<T: DeserializeOwned>(url: &str) -> Result<T, ApiError> {
    let response = Request::get(url).send().await.map_err(network)?;
    let body = response.text().await.map_err(network)?;
    decode(response.status(), response.ok(), &body)
}

/// Reads a response body: the expected type on success, the error body otherwise.
fn decode<T: DeserializeOwned>(status: u16, ok: bool, body: &str) -> Result<T, ApiError> {
    if ok {
        serde_json::from_str(body).map_err(|error| ApiError::Decode {
            status,
            message: error.to_string(),
        })
    } else {
        // A proxy in front of the server may answer with HTML; the status is still worth showing.
        let body = serde_json::from_str::<ApiErrorBody>(body).ok();
        Err(ApiError::Status { status, body })
    }
}

#[cfg(test)]
mod tests {
    use kokushi_shared::api::{ErrorCode, RunStatus};

    use super::*;

    const SUMMARY: &str = r#"[{"id":3,"exam_set":"igakuqa-116","model":"gemma-3-270m.gguf",
        "prompt_format":"chatml_ja_v1","status":"running","total":20,
        "tally":{"answered":2,"correct":1,"parse_failures":0,"points":1,"points_possible":2},
        "created_at":"2026-11-24T00:00:00Z","error":null}]"#;

    #[test]
    fn the_leaderboard_path_carries_only_the_filters_set() {
        assert_eq!(
            leaderboard_path(&LeaderboardQuery::default()),
            "/api/leaderboard"
        );
        let query = LeaderboardQuery {
            years: Some("2021,2022".to_owned()),
            blocks: Some(String::new()),
            section: Some("required".to_owned()),
            specialty: Some("循環器".to_owned()),
            text_only: Some(true),
            scope: None,
        };
        assert_eq!(
            leaderboard_path(&query),
            "/api/leaderboard?years=2021%2C2022&section=required\
             &specialty=%E5%BE%AA%E7%92%B0%E5%99%A8&text_only=true"
        );
        assert_eq!(
            leaderboard_export_path(&LeaderboardQuery::default()),
            "/api/leaderboard/export?format=csv"
        );
        assert!(
            leaderboard_export_path(&query)
                .starts_with("/api/leaderboard/export?format=csv&years=")
        );
    }

    #[test]
    fn a_successful_body_decodes_into_the_shared_types() {
        let runs: Vec<RunSummary> = decode(200, true, SUMMARY).expect("valid body");
        assert_eq!(runs[0].status, RunStatus::Running);
        assert_eq!(runs[0].tally.correct, 1);
    }

    #[test]
    fn an_error_status_carries_the_servers_error_body() {
        let body = r#"{"code":"not_found","message":"run 9 does not exist"}"#;
        let error = decode::<RunDetail>(404, false, body).expect_err("404");
        let ApiError::Status {
            status: 404,
            body: Some(body),
        } = error
        else {
            panic!("unexpected {error:?}");
        };
        assert_eq!(body.code, ErrorCode::NotFound);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode("IgakuQA 2022/第116回"),
            "IgakuQA%202022%2F%E7%AC%AC116%E5%9B%9E"
        );
        assert_eq!(encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(encode("x&y=z"), "x%26y%3Dz");
    }

    #[test]
    fn an_unreadable_body_is_an_error_not_a_panic() {
        let error = decode::<Vec<RunSummary>>(200, true, "<html>").expect_err("not JSON");
        assert!(matches!(error, ApiError::Decode { status: 200, .. }));
        let error = decode::<Vec<RunSummary>>(502, false, "Bad Gateway").expect_err("502");
        assert_eq!(
            error,
            ApiError::Status {
                status: 502,
                body: None
            }
        );
    }
}
