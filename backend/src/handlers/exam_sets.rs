//! Exam sets: the list (`GET /api/exam-sets`, a page at a time), and uploads
//! (`POST /api/exam-sets`): an exam-set file sent as the request body, or one or more files as
//! a multipart form's `file` fields (IgakuQA119's question files and answers file together),
//! read as a stream and cut at the upload limit (413), then parsed off the request threads, all
//! or nothing (docs/exam-set-format.md). `preview=true` answers what would be stored and stores
//! nothing; `repair=` and `exclude=` mend refused records.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use kokushi_shared::api::{ImportReport, UploadPreview};
use kokushi_shared::repair::RepairPolicy;
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /api/exam-sets[?limit=N&offset=M]`: the project's exam sets and those shared with it,
/// newest first, a page at a time.
pub async fn exam_sets(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    page: web::Query<crate::page::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page.page(crate::page::LISTS)?;
    let (sets, total) = state.db.exam_sets(&caller.scope()?, page).await?;
    Ok(page.respond(&req, &sets, total))
}

#[derive(Deserialize)]
pub struct UploadQuery {
    name: String,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    format: Option<String>,
    /// Answer what would be stored, and store nothing.
    #[serde(default)]
    preview: bool,
    /// Repairs to apply: `all`, or `ID:KIND,…`.
    #[serde(default)]
    repair: Option<String>,
    // `exclude=ID:REASON` is repeatable: read from the query string whole ([`exclusions`]),
    // not here (a field would refuse the repetition).
}

/// Files one upload may carry at most.
const MAX_UPLOAD_FILES: usize = 64;
/// Every `exclude=ID:REASON` of the query string (repeatable), checked and bounded.
fn exclusions(query: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|e| ApiError::BadRequest(format!("the query string is malformed: {e}")))?
        .into_inner();
    kokushi_shared::repair::parse_exclusions(
        pairs
            .iter()
            .filter(|(k, _)| k == "exclude")
            .map(|(_, v)| v.as_str()),
    )
    .map_err(|e| ApiError::BadRequest(format!("exclude={e}")))
}

/// `POST /api/exam-sets?name=NAME[&file=FILE.jsonl|FILE.csv][&namespace=NS][&format=jmmlu]`
/// with the file as the body, or as the field `file` of a `multipart/form-data` body (its file
/// name then names the file) — docs/exam-set-format.md: JSON lines, or CSV when the file name
/// ends in `.csv`, or a JMMLU subject file with `format=jmmlu`. Read as a stream and refused
/// (413) as soon as it passes the upload limit. All or nothing: any problem refuses the whole
/// file with every problem listed, and nothing is stored.
pub async fn upload_exam_set(
    principal: crate::auth::Researcher,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    query: web::Query<UploadQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let scope = principal.scope()?;
    let name = query.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::BadRequest(
            "query parameter `name` must be 1 to 200 characters".to_owned(),
        ));
    }
    let limit = state.max_upload_bytes;
    if let Some(length) = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && length > limit.saturating_add(64 * 1024)
    {
        return Err(too_large(length, limit));
    }
    let multipart = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/form-data"));
    let policy = match query.repair.as_deref() {
        Some(spec) if spec.len() > 64 * 1024 => {
            return Err(ApiError::BadRequest("`repair` is too long".to_owned()));
        }
        Some(spec) => {
            RepairPolicy::parse(spec).map_err(|e| ApiError::BadRequest(format!("repair: {e}")))?
        }
        None => RepairPolicy::None,
    };
    let exclude = exclusions(req.query_string())?;
    let files = if multipart {
        read_multipart_files(&req, payload, limit).await?
    } else {
        let name = query.file.clone();
        vec![(name, read_limited(payload, 0, limit).await?)]
    };
    let mut named = Vec::with_capacity(files.len());
    for (n, (sent_name, body)) in files.into_iter().enumerate() {
        let file = sent_name.unwrap_or_else(|| {
            if n == 0 {
                "upload.jsonl".to_owned()
            } else {
                format!("upload-{}.jsonl", n + 1)
            }
        });
        if file.chars().count() > 255 || file.chars().any(char::is_control) {
            return Err(ApiError::BadRequest(
                "a file name must be at most 255 characters, without control characters".to_owned(),
            ));
        }
        named.push((file, body));
    }
    let format = query.format.clone();
    let namespace = query.namespace.clone();
    let preview = query.preview;
    // Parsing, checking, hashing and encoding a file of tens of megabytes is CPU work: off the
    // request threads.
    let prepared = web::block(move || {
        let format = match format.as_deref() {
            None | Some("" | "auto") => crate::import::SetFormat::Auto,
            Some("jmmlu") => crate::import::SetFormat::Jmmlu,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "unknown format {other:?}; known: auto, jmmlu"
                )));
            }
        };
        let namespace = namespace.filter(|ns| !ns.is_empty());
        let report = crate::import::import_texts(
            named
                .iter()
                .map(|(file, body)| (file.as_str(), body.as_slice())),
            namespace.as_deref(),
            format,
            policy,
            exclude,
        )
        .map_err(|e| match e {
            crate::import::ImportError::Invalid(errors) => ApiError::InvalidExamSet(errors),
            other => ApiError::BadRequest(other.to_string()),
        })?;
        if preview {
            return Ok::<_, ApiError>(Err(UploadPreview {
                questions: u32::try_from(report.questions.len()).unwrap_or(u32::MAX),
                errors: report.errors,
                proposed: report.proposed,
                applied: report.applied,
                excluded: report.excluded,
                refused: report.refused,
            }));
        }
        if !report.errors.is_empty() {
            return Err(ApiError::InvalidExamSet(report.errors));
        }
        let notes = report.notes();
        Ok(Ok(
            crate::db::PreparedSet::new(report.questions)?.with_notes(&notes)?
        ))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("reading the upload stopped: {e}")))??;
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(preview) => return Ok(HttpResponse::Ok().json(preview)),
    };
    let (exam_set, created) = state
        .db
        .insert_prepared(scope.project, name, &prepared)
        .await?;
    if created {
        // Its owner is told of answers graders flag as wrong (`GET /api/grading/gold-flags`).
        state
            .db
            .set_exam_set_owner(exam_set.id, principal.user.id)
            .await?;
    }
    let report = ImportReport { exam_set, created };
    Ok(if created {
        HttpResponse::Created().json(report)
    } else {
        HttpResponse::Ok().json(report)
    })
}

fn too_large(size: usize, limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the upload ({size} bytes or more) is larger than the limit of {limit} bytes"
    ))
}

/// Reads a body stream into memory, refusing it once `already` bytes read before it and its
/// own pass `limit` (so that a form's fields together stay within the limit).
pub(crate) async fn read_limited<S, E>(
    mut stream: S,
    already: usize,
    limit: usize,
) -> Result<Vec<u8>, ApiError>
where
    S: futures_util::Stream<Item = Result<web::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    use futures_util::StreamExt;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("reading the upload failed: {e}")))?;
        let size = already + body.len() + chunk.len();
        if size > limit {
            return Err(too_large(size, limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The `file` fields of a multipart form (one or more, at most [`MAX_UPLOAD_FILES`]): each
/// one's file name (if sent) and content.
async fn read_multipart_files(
    req: &actix_web::HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Vec<(Option<String>, Vec<u8>)>, ApiError> {
    use futures_util::StreamExt;
    let malformed = |e: actix_multipart::MultipartError| {
        ApiError::BadRequest(format!("the multipart/form-data body is malformed: {e}"))
    };
    let mut form = actix_multipart::Multipart::new(req.headers(), payload);
    let mut found = Vec::new();
    let mut read = 0;
    while let Some(field) = form.next().await {
        let field = field.map_err(malformed)?;
        let is_file = field.name() == Some("file");
        if is_file && found.len() >= MAX_UPLOAD_FILES {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_UPLOAD_FILES} files in one upload"
            )));
        }
        let sent_name = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .map(str::to_owned);
        // Other fields are read and dropped; all fields together stay within the limit.
        let content = read_limited(field, read, limit).await?;
        read += content.len();
        if is_file {
            found.push((sent_name, content));
        }
    }
    if found.is_empty() {
        return Err(ApiError::BadRequest(
            "the multipart/form-data body has no field named `file`".to_owned(),
        ));
    }
    Ok(found)
}
