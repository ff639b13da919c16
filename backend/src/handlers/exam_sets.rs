//! Exam sets: the list (`GET /api/exam-sets`, a page at a time), and uploads
//! (`POST /api/exam-sets`): an exam-set file sent as the request body or as a multipart form's
//! `file` field, read as a stream and cut at the upload limit (413), then parsed off the request
//! threads, all or nothing (docs/exam-set-format.md).

use actix_web::{HttpResponse, web};
use kokushi_shared::api::ImportReport;
use kokushi_shared::igakuqa::Importer;
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /api/exam-sets[?limit=N&offset=M]`: the exam sets, newest first, a page at a time.
pub async fn exam_sets(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    page: web::Query<crate::page::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page.page(crate::page::LISTS)?;
    let total = state.db.count(crate::db::Counted::ExamSets).await?;
    Ok(page.respond(&req, &state.db.exam_sets(page).await?, total))
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
    let (sent_name, body) = if multipart {
        read_multipart_file(&req, payload, limit).await?
    } else {
        (None, read_limited(payload, 0, limit).await?)
    };
    let file = query
        .file
        .clone()
        .or(sent_name)
        .unwrap_or_else(|| "upload.jsonl".to_owned());
    if file.chars().count() > 255 || file.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "the file name must be at most 255 characters, without control characters".to_owned(),
        ));
    }
    let format = query.format.clone();
    let namespace = query.namespace.clone();
    // Parsing, checking, hashing and encoding a file of tens of megabytes is CPU work: off the
    // request threads.
    let prepared = web::block(move || {
        let questions = parse_upload(&file, &body, namespace, format)?;
        Ok::<_, ApiError>(crate::db::PreparedSet::new(questions)?)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("reading the upload stopped: {e}")))??;
    let (exam_set, created) = state.db.insert_prepared(name, &prepared).await?;
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

/// An uploaded exam-set file read into questions (all or nothing; every problem listed).
fn parse_upload(
    file: &str,
    body: &[u8],
    namespace: Option<String>,
    format: Option<String>,
) -> Result<Vec<kokushi_shared::Question>, ApiError> {
    let text = kokushi_shared::igakuqa::text_of(file, body)
        .map_err(|e| ApiError::InvalidExamSet(vec![e]))?;
    let mut importer = match namespace.as_deref().filter(|ns| !ns.is_empty()) {
        Some(ns) => Importer::with_namespace(ns).map_err(ApiError::BadRequest)?,
        None => Importer::new(),
    };
    match format.as_deref().unwrap_or("auto") {
        "auto" => importer.add_file(file, text),
        "jmmlu" => {
            let subject = std::path::Path::new(file)
                .file_stem()
                .map_or_else(|| "jmmlu".to_owned(), |s| s.to_string_lossy().into_owned());
            importer.add_jmmlu(file, &subject, text);
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown format {other:?}; known: auto, jmmlu"
            )));
        }
    }
    importer.finish().map_err(ApiError::InvalidExamSet)
}

fn too_large(size: usize, limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the upload ({size} bytes or more) is larger than the limit of {limit} bytes"
    ))
}

/// Reads a body stream into memory, refusing it once `already` bytes read before it and its
/// own pass `limit` (so that a form's fields together stay within the limit).
async fn read_limited<S, E>(
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

/// The `file` field of a multipart form: its file name (if sent) and content.
async fn read_multipart_file(
    req: &actix_web::HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<(Option<String>, Vec<u8>), ApiError> {
    use futures_util::StreamExt;
    let malformed = |e: actix_multipart::MultipartError| {
        ApiError::BadRequest(format!("the multipart/form-data body is malformed: {e}"))
    };
    let mut form = actix_multipart::Multipart::new(req.headers(), payload);
    let mut found = None;
    let mut read = 0;
    while let Some(field) = form.next().await {
        let field = field.map_err(malformed)?;
        let is_file = field.name() == Some("file");
        let sent_name = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .map(str::to_owned);
        // Other fields are read and dropped; all fields together stay within the limit.
        let content = read_limited(field, read, limit).await?;
        read += content.len();
        if is_file && found.is_none() {
            found = Some((sent_name, content));
        }
    }
    found.ok_or_else(|| {
        ApiError::BadRequest("the multipart/form-data body has no field named `file`".to_owned())
    })
}
