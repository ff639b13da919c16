//! Models behind an OpenAI-compatible HTTP API (vLLM, llama.cpp's server, TGI, a hosted API):
//! the same questions, prompts and answer lines as a local model, asked over the network.
//!
//! A model is named `openai:<base-url>#<model>`, the base URL as OpenAI clients take it
//! (ending in `/v1`), e.g. `openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-7B-Instruct`.
//!
//! - **generate** with a prompt format: `POST /completions` with the rendered prompt, greedy
//!   (temperature 0), the format's stop strings and `max_tokens`.
//! - **generate** with the model's own chat template: `POST /chat/completions` with the
//!   question as one user message; the server applies its template.
//! - **loglik**: `POST /completions` of prompt + continuation with `echo` and `logprobs`, the
//!   continuation's log-probability read from the echoed prompt tokens. Servers that do not
//!   echo prompt log-probabilities are named in the error.
//!
//! Requests run at most `concurrency` at a time; 429, 5xx, timeouts and dropped connections
//! are retried with exponential backoff (honouring `Retry-After`); other refusals are reported
//! with the server's message. The API key comes from an environment variable, is sent only as
//! `Authorization: Bearer`, and never appears in an error, a log line or `Debug` output.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Semaphore;

mod policy;
pub use policy::{RemotePolicy, allowed_base_url, is_allowed, is_non_public};

/// What `openai:<base-url>#<model>` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// The API's base URL without a trailing slash (`http://host:8000/v1`).
    pub base_url: String,
    /// The model name the server knows.
    pub model: String,
}

/// The prefix that marks a remote model.
pub const REMOTE_PREFIX: &str = "openai:";

impl RemoteSpec {
    /// Reads `openai:<base-url>#<model>`; `None` when `text` is not a remote model at all.
    pub fn parse(text: &str) -> Option<Result<Self, String>> {
        let rest = text.strip_prefix(REMOTE_PREFIX)?;
        Some(Self::parse_rest(rest))
    }

    fn parse_rest(rest: &str) -> Result<Self, String> {
        // The base URL never holds a '#' (a fragment is refused), so the model's name is
        // everything after the first one and may itself hold '#'.
        let Some((url, model)) = rest.split_once('#') else {
            return Err(format!(
                "remote model {rest:?} lacks its name: write openai:<base-url>#<model>, e.g. \
                 openai:http://127.0.0.1:8000/v1#my-model"
            ));
        };
        if model.trim().is_empty() {
            return Err(format!(
                "remote model {rest:?}: the model name after '#' is empty"
            ));
        }
        if model.len() > 256 || model.chars().any(char::is_control) {
            return Err(
                "remote model: the model name is at most 256 characters, without control \
                 characters"
                    .to_owned(),
            );
        }
        Ok(Self {
            base_url: allowed_base_url(url)?,
            model: model.to_owned(),
        })
    }
}

/// The most a remote server's reply may hold; more is refused unread.
const MAX_REPLY_BYTES: usize = 16 << 20;

/// A reply's body as text, read at most [`MAX_REPLY_BYTES`] (`None` past it); not UTF-8 is
/// read lossily (the JSON reader then says what is wrong).
async fn read_reply(mut response: reqwest::Response) -> Result<Option<String>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_REPLY_BYTES {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(String::from_utf8_lossy(&body).into_owned()))
}

impl std::fmt::Display for RemoteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{REMOTE_PREFIX}{}#{}", self.base_url, self.model)
    }
}

/// How a remote model is called.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// The most requests in flight at once.
    pub concurrency: usize,
    /// How many times a request that failed for a passing reason (429, 5xx, timeout, dropped
    /// connection) is tried again.
    pub retries: u32,
    /// How long one request may take.
    pub timeout: Duration,
    /// The first wait before a retry; each further retry waits twice as long (at most 60 s).
    pub backoff: Duration,
    /// The environment variable holding the API key (none: no `Authorization` header).
    pub api_key_env: Option<String>,
    /// Where the client may connect and who receives the key (by default: public addresses
    /// only, and the key to no one).
    pub policy: RemotePolicy,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            retries: 5,
            timeout: Duration::from_secs(120),
            backoff: Duration::from_millis(500),
            api_key_env: Some("OPENAI_API_KEY".to_owned()),
            policy: RemotePolicy::default(),
        }
    }
}

/// Why a remote call gave no result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// The server refused this request (400, 413, 422: e.g. a prompt longer than its context);
    /// other questions may still be asked.
    #[error("{endpoint} refused the request ({status}): {message}")]
    Rejected {
        endpoint: String,
        status: u16,
        message: String,
    },
    /// Nothing more can be asked: the server is unreachable after every retry, refuses the
    /// key, does not know the model, or answers in a form this client cannot read.
    #[error("{endpoint}: {message}")]
    Fatal { endpoint: String, message: String },
}

impl RemoteError {
    /// True when the run cannot go on (as opposed to one question failing).
    pub fn is_fatal(&self) -> bool {
        matches!(self, RemoteError::Fatal { .. })
    }
}

/// A reply generated by a remote model.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteGeneration {
    pub text: String,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
}

/// A continuation's log-probability under a remote model.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteScore {
    pub sum: f64,
    pub mean: f64,
    pub tokens: usize,
    pub prompt_tokens: usize,
}

/// The API key, kept out of every printed form.
#[derive(Clone)]
struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// A model behind an OpenAI-compatible API.
#[derive(Debug, Clone)]
pub struct RemoteModel {
    spec: RemoteSpec,
    options: RemoteOptions,
    client: reqwest::Client,
    key: Option<ApiKey>,
    permits: Arc<Semaphore>,
}

impl RemoteModel {
    /// A client for `spec` under `options.policy`: the host is resolved now and every address
    /// it has must be public unless the policy allows it (the client then connects only to
    /// those addresses, so a name cannot change its answer between the check and the call);
    /// redirects are not followed. The API key is read from `options.api_key_env` now and kept
    /// only when the base URL is on the policy's allow-list (an unset variable means no key,
    /// which local servers do not need).
    pub async fn connect(spec: RemoteSpec, options: RemoteOptions) -> Result<Self, RemoteError> {
        let refused = |message: String| RemoteError::Fatal {
            endpoint: spec.base_url.clone(),
            message,
        };
        let url =
            reqwest::Url::parse(&spec.base_url).map_err(|e| refused(format!("not a URL: {e}")))?;
        let host = url
            .host_str()
            .ok_or_else(|| refused("the URL names no host".to_owned()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| refused(format!("cannot resolve {host}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(refused(format!("{host} resolves to no address")));
        }
        let allowed = is_allowed(&options.policy.allow, &spec.base_url);
        if !allowed
            && !options.policy.allow_private
            && let Some(bad) = addrs.iter().find(|a| is_non_public(a.ip()))
        {
            return Err(refused(format!(
                "{host} is at {}, a loopback, private or link-local address, which this worker \
                 does not call unless its operator allows it (--remote-allow {} or \
                 --remote-allow-private)",
                bad.ip(),
                spec.base_url
            )));
        }
        Self::build(spec, options, Some((host, addrs)), allowed)
    }

    /// The client itself; `pinned` fixes the addresses a host name resolves to, `send_key`
    /// says whether the key may go to this server.
    fn build(
        spec: RemoteSpec,
        options: RemoteOptions,
        pinned: Option<(String, Vec<std::net::SocketAddr>)>,
        send_key: bool,
    ) -> Result<Self, RemoteError> {
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(30)))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would resolve the name again, beyond the check.
            .no_proxy()
            .user_agent(concat!("kokushi/", env!("CARGO_PKG_VERSION")));
        if let Some((host, addrs)) = &pinned
            && host.parse::<std::net::IpAddr>().is_err()
        {
            builder = builder.resolve_to_addrs(host, addrs);
        }
        let client = builder.build().map_err(|e| RemoteError::Fatal {
            endpoint: spec.base_url.clone(),
            message: format!("cannot build an HTTP client: {e}"),
        })?;
        let key = options
            .api_key_env
            .as_deref()
            .filter(|_| send_key)
            .and_then(|name| std::env::var(name).ok())
            .filter(|key| !key.trim().is_empty())
            .map(|key| ApiKey(key.trim().to_owned()));
        let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
        Ok(Self {
            spec,
            options,
            client,
            key,
            permits,
        })
    }

    pub fn spec(&self) -> &RemoteSpec {
        &self.spec
    }

    pub fn options(&self) -> &RemoteOptions {
        &self.options
    }

    /// Whether an API key was found in the environment (never the key itself).
    pub fn has_api_key(&self) -> bool {
        self.key.is_some()
    }

    /// Greedy completion of a raw prompt (`/completions`).
    pub async fn complete(
        &self,
        prompt: &str,
        max_tokens: usize,
        stop: &[String],
    ) -> Result<RemoteGeneration, RemoteError> {
        let mut body = json!({
            "model": self.spec.model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0,
        });
        if !stop.is_empty() {
            body["stop"] = json!(stop);
        }
        let reply = self.post("completions", &body).await?;
        let choice = first_choice(&reply, "completions", &self.spec.base_url)?;
        let text = choice
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| self.malformed("completions", "choices[0].text is missing"))?;
        Ok(RemoteGeneration {
            text: text.to_owned(),
            prompt_tokens: usage(&reply, "prompt_tokens"),
            generated_tokens: usage(&reply, "completion_tokens"),
        })
    }

    /// Greedy reply to a chat of `(role, content)` turns through the server's chat template
    /// (`/chat/completions`).
    pub async fn chat(
        &self,
        turns: &[(&str, &str)],
        max_tokens: usize,
    ) -> Result<RemoteGeneration, RemoteError> {
        let messages: Vec<Value> = turns
            .iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect();
        let body = json!({
            "model": self.spec.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
        });
        let reply = self.post("chat/completions", &body).await?;
        let choice = first_choice(&reply, "chat/completions", &self.spec.base_url)?;
        let text = choice
            .pointer("/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                self.malformed("chat/completions", "choices[0].message.content is missing")
            })?;
        Ok(RemoteGeneration {
            text: text.to_owned(),
            prompt_tokens: usage(&reply, "prompt_tokens"),
            generated_tokens: usage(&reply, "completion_tokens"),
        })
    }

    /// The log-probability of each continuation after `prompt`, every continuation asked at
    /// once (within the concurrency limit).
    pub async fn score_continuations(
        &self,
        prompt: &str,
        continuations: &[String],
    ) -> Result<Vec<RemoteScore>, RemoteError> {
        let asks = continuations
            .iter()
            .map(|continuation| self.score_one(prompt, continuation));
        futures_util::future::try_join_all(asks).await
    }

    async fn score_one(
        &self,
        prompt: &str,
        continuation: &str,
    ) -> Result<RemoteScore, RemoteError> {
        let text = format!("{prompt}{continuation}");
        let body = json!({
            "model": self.spec.model,
            "prompt": text,
            "max_tokens": 1,
            "temperature": 0,
            "echo": true,
            "logprobs": 1,
        });
        let reply = self.post("completions", &body).await?;
        first_choice(&reply, "completions", &self.spec.base_url)?;
        read_echo(&reply, prompt, continuation).map_err(|what| self.malformed("completions", &what))
    }

    fn malformed(&self, path: &str, what: &str) -> RemoteError {
        RemoteError::Fatal {
            endpoint: format!("{}/{path}", self.spec.base_url),
            message: format!("unexpected reply: {what}"),
        }
    }

    /// POSTs `body` to `path` under the base URL, retrying passing failures.
    async fn post(&self, path: &str, body: &Value) -> Result<Value, RemoteError> {
        let endpoint = format!("{}/{path}", self.spec.base_url);
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| RemoteError::Fatal {
                endpoint: endpoint.clone(),
                message: "the client was shut down".to_owned(),
            })?;
        let mut attempt = 0u32;
        loop {
            let mut request = self.client.post(&endpoint).json(body);
            if let Some(ApiKey(key)) = &self.key {
                request = request.bearer_auth(key);
            }
            let started = Instant::now();
            let outcome = request.send().await;
            let (passing, wait_hint, message) = match outcome {
                Err(e) => (
                    e.is_timeout() || e.is_connect() || e.is_request() || e.is_body(),
                    None,
                    describe_transport(&e, self.options.timeout),
                ),
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .map(|s| Duration::from_secs_f64(s.min(300.0)));
                    let text = match read_reply(response).await {
                        Ok(Some(text)) => text,
                        Ok(None) => {
                            return Err(RemoteError::Fatal {
                                endpoint,
                                message: format!(
                                    "the reply is larger than {} MiB; refused",
                                    MAX_REPLY_BYTES >> 20
                                ),
                            });
                        }
                        Err(e) => {
                            // A body cut off mid-way: a passing fault like a dropped connection.
                            if attempt < self.options.retries {
                                attempt += 1;
                                tokio::time::sleep(self.backoff(attempt, None)).await;
                                continue;
                            }
                            return Err(RemoteError::Fatal {
                                endpoint,
                                message: describe_transport(&e, self.options.timeout),
                            });
                        }
                    };
                    if status.is_success() {
                        return serde_json::from_str(&text).map_err(|e| RemoteError::Fatal {
                            endpoint: endpoint.clone(),
                            message: format!("the reply is not JSON ({e}): {}", clip(&text, 200)),
                        });
                    }
                    let message = server_message(&text);
                    let code = status.as_u16();
                    match code {
                        429 | 500 | 502 | 503 | 504 | 408 => {
                            (true, retry_after, format!("HTTP {code}: {message}"))
                        }
                        401 | 403 => {
                            let hint = match (&self.key, &self.options.api_key_env) {
                                (Some(_), Some(name)) => {
                                    format!("the key in ${name} was refused")
                                }
                                (None, Some(name)) => {
                                    format!("no API key: ${name} is not set")
                                }
                                (_, None) => "no API key was sent (--api-key-env)".to_owned(),
                            };
                            return Err(RemoteError::Fatal {
                                endpoint,
                                message: format!("HTTP {code}, {hint}: {message}"),
                            });
                        }
                        404 => {
                            return Err(RemoteError::Fatal {
                                endpoint,
                                message: format!(
                                    "HTTP 404 (is the base URL right, ending in /v1, and is \
                                     the model {:?} served?): {message}",
                                    self.spec.model
                                ),
                            });
                        }
                        400..=499 => {
                            return Err(RemoteError::Rejected {
                                endpoint,
                                status: code,
                                message,
                            });
                        }
                        _ => {
                            return Err(RemoteError::Fatal {
                                endpoint,
                                message: format!("HTTP {code}: {message}"),
                            });
                        }
                    }
                }
            };
            if !passing || attempt >= self.options.retries {
                return Err(RemoteError::Fatal {
                    endpoint,
                    message: if passing {
                        format!(
                            "{message} (gave up after {} attempts)",
                            self.options.retries + 1
                        )
                    } else {
                        message
                    },
                });
            }
            attempt += 1;
            let wait = self.backoff(attempt, wait_hint);
            tracing::warn!(
                endpoint = %endpoint,
                attempt,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                error = ?message,
                "retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// The wait before retry number `attempt` (1-based): the server's `Retry-After` when it
    /// gave one, else `backoff × 2^(attempt-1)`, at most 60 s.
    fn backoff(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        hint.unwrap_or_else(|| {
            self.options
                .backoff
                .saturating_mul(1u32 << (attempt - 1).min(16))
        })
        .min(Duration::from_secs(60))
    }
}

/// A continuation's score from a `/completions` reply with `echo` and `logprobs` (see
/// [`RemoteModel::score_continuations`]); the error says what the reply lacks.
fn read_echo(reply: &Value, prompt: &str, continuation: &str) -> Result<RemoteScore, String> {
    let choice = reply.pointer("/choices/0").ok_or("no choices")?;
    let text = format!("{prompt}{continuation}");
    let no_echo = || {
        "the reply has no log-probabilities of the prompt's tokens (echo with logprobs); \
         loglik mode needs a server that returns them (vLLM does), else use --mode generate"
            .to_owned()
    };
    let logprobs = choice.get("logprobs").ok_or_else(no_echo)?;
    let values = logprobs
        .get("token_logprobs")
        .and_then(Value::as_array)
        .ok_or_else(no_echo)?;
    let offsets = logprobs
        .get("text_offset")
        .and_then(Value::as_array)
        .ok_or_else(no_echo)?;
    let offsets: Vec<usize> = offsets
        .iter()
        .map(|o| o.as_u64().and_then(|o| usize::try_from(o).ok()))
        .collect::<Option<_>>()
        .ok_or("text_offset holds a non-number")?;
    if values.len() != offsets.len() || values.len() < 2 {
        return Err(no_echo());
    }
    // Servers measure offsets in their own rendering of the text (llama.cpp's leaves special
    // tokens out, and may drop a leading BOS from the list), so the continuation is found from
    // the end: it ends where the generated token starts when the list holds it (its string is
    // the reply's text after prompt + continuation), else where the last echoed token ends;
    // it starts its own length before that.
    let strings: Vec<&str> = logprobs
        .get("tokens")
        .and_then(Value::as_array)
        .map(|t| t.iter().map(|s| s.as_str().unwrap_or_default()).collect())
        .unwrap_or_default();
    let generated = choice
        .get("text")
        .and_then(Value::as_str)
        .and_then(|t| t.strip_prefix(text.as_str()))
        .unwrap_or_default();
    let bytes = offsets_in_bytes(&offsets, &text);
    let units = |s: &str| if bytes { s.len() } else { s.chars().count() };
    let last = offsets.len() - 1;
    let listed = strings.len() == offsets.len()
        && !generated.is_empty()
        && generated.starts_with(strings[last])
        && !strings[last].is_empty();
    let (count, end) = if listed {
        (last, offsets[last])
    } else {
        let tail = strings.get(last).map_or(0, |s| units(s));
        (offsets.len(), offsets[last] + tail)
    };
    let start = end.saturating_sub(units(continuation));
    let mut score = RemoteScore {
        sum: 0.0,
        mean: 0.0,
        tokens: 0,
        prompt_tokens: 0,
    };
    for (i, value) in values.iter().take(count).enumerate() {
        // A token counts towards the continuation when it ends past the prompt: one that
        // straddles the boundary belongs to both texts, and is scored with the answer.
        let token_end = offsets.get(i + 1).copied().unwrap_or(end).min(end);
        if token_end <= start {
            score.prompt_tokens += 1;
            continue;
        }
        let value = value
            .as_f64()
            .ok_or_else(|| format!("token {i} of the continuation has no log-probability"))?;
        score.sum += value;
        score.tokens += 1;
    }
    if score.tokens == 0 {
        return Err(format!(
            "no echoed token covers the continuation {continuation:?}"
        ));
    }
    #[allow(clippy::cast_precision_loss)]
    {
        score.mean = score.sum / score.tokens as f64;
    }
    Ok(score)
}

/// Whether the server's `text_offset` counts bytes (some servers) rather than characters
/// (OpenAI, vLLM, llama.cpp): offsets past the text's length in characters can only be bytes.
fn offsets_in_bytes(offsets: &[usize], text: &str) -> bool {
    let chars = text.chars().count();
    offsets.iter().any(|&o| o > chars)
}

fn first_choice<'a>(reply: &'a Value, path: &str, base: &str) -> Result<&'a Value, RemoteError> {
    reply
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| RemoteError::Fatal {
            endpoint: format!("{base}/{path}"),
            message: format!(
                "unexpected reply: no choices in {}",
                clip(&reply.to_string(), 200)
            ),
        })
}

fn usage(reply: &Value, field: &str) -> usize {
    reply
        .pointer(&format!("/usage/{field}"))
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
}

/// The server's own words: OpenAI's `{"error": {"message": …}}`, a bare `{"error": "…"}` or
/// `{"detail": …}`, else the start of the body.
fn server_message(body: &str) -> String {
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        for pointer in ["/error/message", "/error", "/message", "/detail"] {
            match value.pointer(pointer) {
                Some(Value::String(s)) => return clip(s, 300),
                Some(v @ (Value::Array(_) | Value::Object(_))) if pointer == "/detail" => {
                    return clip(&v.to_string(), 300);
                }
                _ => {}
            }
        }
    }
    if body.trim().is_empty() {
        "(empty body)".to_owned()
    } else {
        clip(body.trim(), 300)
    }
}

fn describe_transport(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no reply within {} s (--timeout)", timeout.as_secs_f32())
    } else if e.is_connect() {
        // reqwest's own text names the URL; the cause says why (refused, DNS, TLS).
        let mut text = "cannot connect".to_owned();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    } else {
        format!("{e}")
    }
}

fn clip(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests;
