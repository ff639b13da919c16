//! Every HTTP call the app makes, typed with `kokushi-shared`'s API bodies.
//!
//! Same origin only: paths start with `/api`. Components never build a URL or read a response
//! themselves; they call these functions and get typed data or an [`ApiError`].

use gloo_net::http::Request;
use kokushi_shared::api::{ApiErrorBody, Login, Me, RunDetail, RunSummary};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// `GET /api/leaderboard`: every run, newest first.
pub async fn leaderboard() -> Result<Vec<RunSummary>, ApiError> {
    get_json("/api/leaderboard").await
}

/// `GET /api/runs/{id}`: the run with every question and its answer so far.
pub async fn run(id: i64) -> Result<RunDetail, ApiError> {
    get_json(&format!("/api/runs/{id}")).await
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
