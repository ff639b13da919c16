//! An OpenAI-compatible server in the test process that serves the engine's fixture model
//! (or any GGUF) over HTTP as vLLM does (`/v1/completions` with `echo` and `logprobs`,
//! `/v1/chat/completions`, bearer keys, OpenAI's error bodies). With `faults` it misbehaves on
//! purpose (429 with Retry-After, 503, replies slower than the client's timeout) on the first
//! attempt at every distinct request.

#![allow(clippy::unwrap_used)] // a test helper's panic is the test's failure report

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use kokushi_engine::{EngineError, GenerationParams, LoadOptions, Model};
use serde_json::{Value, json};

use crate::FIXTURE_MODEL;

pub const SERVED_NAME: &str = "tiny";
pub const KEY_VAR: &str = "KOKUSHI_TEST_REMOTE_KEY";
pub const KEY: &str = "sk-test-7f3a9c1e5b";

pub struct Served {
    pub model: Mutex<Model>,
    /// The bearer key requests must carry, if any.
    pub key: Option<&'static str>,
    /// Misbehave on the first attempt at each distinct request body.
    pub faults: bool,
    pub seen: Mutex<HashSet<String>>,
    pub faults_served: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub most_in_flight: AtomicUsize,
    pub paths: Mutex<Vec<String>>,
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn openai_error(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .json(json!({"error": {"message": message, "type": "invalid_request_error"}}))
}

fn engine_error(e: &EngineError) -> HttpResponse {
    let status = match e {
        EngineError::PromptTooLong { .. } | EngineError::EmptyPrompt => {
            actix_web::http::StatusCode::BAD_REQUEST
        }
        _ => actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
    };
    openai_error(status, &e.to_string())
}

/// Auth, model name, concurrency count and the injected faults, then `answer`.
async fn serve(
    served: web::Data<Served>,
    request: HttpRequest,
    body: web::Json<Value>,
    answer: fn(&mut Model, &Value) -> Result<Value, EngineError>,
) -> HttpResponse {
    let now = served.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    served.most_in_flight.fetch_max(now, Ordering::SeqCst);
    let guard = InFlight(&served.in_flight);
    served.paths.lock().unwrap().push(request.path().to_owned());
    let authorized = served.key.is_none_or(|key| {
        request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {key}"))
    });
    if !authorized {
        return openai_error(
            actix_web::http::StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
        );
    }
    if body.get("model").and_then(Value::as_str) != Some(SERVED_NAME) {
        return openai_error(
            actix_web::http::StatusCode::NOT_FOUND,
            &format!("The model `{}` does not exist.", body["model"]),
        );
    }
    // Long enough that requests overlap when the client sends several at once.
    actix_web::rt::time::sleep(Duration::from_millis(60)).await;
    if served.faults {
        let key = format!("{}{}", request.path(), body.0);
        let first = {
            let mut seen = served.seen.lock().unwrap();
            let n = seen.len();
            seen.insert(key).then_some(n)
        };
        if let Some(n) = first {
            served.faults_served.fetch_add(1, Ordering::SeqCst);
            match n % 3 {
                0 => {
                    return HttpResponse::TooManyRequests()
                        .insert_header(("Retry-After", "0"))
                        .json(json!({"error": {"message": "Rate limit reached"}}));
                }
                1 => {
                    return HttpResponse::ServiceUnavailable()
                        .json(json!({"error": {"message": "the engine is overloaded"}}));
                }
                _ => {
                    // Past the client's --timeout of 1 s: it gives up and asks again (this
                    // reply, which nobody waits for, no longer counts as in flight).
                    drop(guard);
                    actix_web::rt::time::sleep(Duration::from_millis(2500)).await;
                }
            }
        }
    }
    let served = served.clone();
    let body = body.into_inner();
    let result = web::block(move || {
        let mut model = served.model.lock().unwrap();
        answer(&mut model, &body)
    })
    .await;
    match result {
        Ok(Ok(reply)) => HttpResponse::Ok().json(reply),
        Ok(Err(e)) => engine_error(&e),
        Err(e) => openai_error(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
        ),
    }
}

fn max_tokens(body: &Value) -> usize {
    body["max_tokens"]
        .as_u64()
        .map_or(16, |n| usize::try_from(n).unwrap())
}

fn completion(model: &mut Model, body: &Value) -> Result<Value, EngineError> {
    let prompt = body["prompt"].as_str().unwrap_or_default().to_owned();
    if body["echo"] == json!(true) && body["logprobs"].is_u64() {
        // vLLM's prompt log-probabilities: the prompt tokenised whole (with BOS), each token's
        // log-probability given those before it, offsets in characters; then one greedy token.
        let encoding = model
            .tokenizer()
            .encode_char_offsets(prompt.as_str(), true)
            .unwrap();
        let ids = encoding.get_ids().to_vec();
        let mut values = model.token_logprobs(&ids)?;
        let mut offsets: Vec<usize> = encoding.get_offsets().iter().map(|o| o.0).collect();
        let mut tokens: Vec<String> = ids
            .iter()
            .map(|&id| model.tokenizer().decode(&[id], false).unwrap())
            .collect();
        let next = model.next_token_logprobs(&ids)?;
        let (best, value) = next
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        let best = u32::try_from(best).unwrap();
        let generated = model.tokenizer().decode(&[best], false).unwrap();
        values.push(Some(*value));
        offsets.push(prompt.chars().count());
        tokens.push(generated.clone());
        return Ok(json!({
            "object": "text_completion",
            "model": SERVED_NAME,
            "choices": [{
                "index": 0,
                "text": format!("{prompt}{generated}"),
                "logprobs": {"tokens": tokens, "token_logprobs": values, "text_offset": offsets},
                "finish_reason": "length",
            }],
            "usage": {"prompt_tokens": ids.len(), "completion_tokens": 1},
        }));
    }
    let stop: Vec<String> = body["stop"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let generation = model.generate(
        &prompt,
        &GenerationParams {
            max_new_tokens: max_tokens(body),
            stop,
        },
    )?;
    Ok(json!({
        "object": "text_completion",
        "model": SERVED_NAME,
        "choices": [{"index": 0, "text": generation.text, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.generated_tokens,
        },
    }))
}

fn chat_completion(model: &mut Model, body: &Value) -> Result<Value, EngineError> {
    let turns: Vec<(&str, &str)> = body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|t| {
                    (
                        t["role"].as_str().unwrap_or_default(),
                        t["content"].as_str().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let prompt = model.apply_chat_template_turns(&turns)?;
    let generation = model.generate(
        &prompt,
        &GenerationParams {
            max_new_tokens: max_tokens(body),
            stop: Vec::new(),
        },
    )?;
    Ok(json!({
        "object": "chat.completion",
        "model": SERVED_NAME,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": generation.text},
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.generated_tokens,
        },
    }))
}

/// Starts the server on a free loopback port; returns its base URL (ending in /v1).
pub fn start(served: Arc<Served>) -> String {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let data = web::Data::from(served);
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .app_data(web::JsonConfig::default().limit(1 << 20))
                    .route(
                        "/v1/completions",
                        web::post().to(|s, r, b| serve(s, r, b, completion)),
                    )
                    .route(
                        "/v1/chat/completions",
                        web::post().to(|s, r, b| serve(s, r, b, chat_completion)),
                    )
            })
            .workers(2)
            .bind(("127.0.0.1", 0))
            .unwrap();
            let port = server.addrs()[0].port();
            let running = server.run();
            sender.send(port).unwrap();
            running.await.unwrap();
        });
    });
    let port = receiver.recv().unwrap();
    format!("http://127.0.0.1:{port}/v1")
}

pub fn served(store: &Path, faults: bool) -> Arc<Served> {
    let model = Model::load(&store.join(FIXTURE_MODEL), &LoadOptions::default()).unwrap();
    Arc::new(Served {
        model: Mutex::new(model),
        key: Some(KEY),
        faults,
        seen: Mutex::new(HashSet::new()),
        faults_served: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        most_in_flight: AtomicUsize::new(0),
        paths: Mutex::new(Vec::new()),
    })
}
