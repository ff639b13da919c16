//! Helpers for the end-to-end tests in `tests/`: a fixture model store, the fixture exam,
//! fresh databases, a running server on a free port, and waiting for a run to finish.
//!
//! Services come from the environment that `cargo xtask test` sets up:
//! `KOKUSHI_TEST_REDIS_URL`, `KOKUSHI_TEST_POSTGRES_URL`, `KOKUSHI_BIN` (the built `kokushi`),
//! `KOKUSHI_STATIC_DIR` (the built frontend) and `CHROMEDRIVER`. Outside CI a test whose
//! service is not configured is skipped with a message; in CI (`CI` set) it fails instead.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kokushi_backend::startup::StopHandle;
use kokushi_backend::{Application, Settings};
use kokushi_backend::{accounts, auth};
use kokushi_shared::api::Role;
use kokushi_shared::api::{ExamSetSummary, ImportReport, RunDetail, RunSummary, UserSummary};
pub use tempfile;

pub mod openai;
pub mod ui;
use tempfile::TempDir;

/// The model file name the fixture store holds.
pub const FIXTURE_MODEL: &str = "tiny-llama.gguf";

/// An environment variable a test needs; `None` (skip) outside CI, a failure in CI.
pub fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} must be set in CI: run the tests with `cargo xtask test`")
        }
        _ => {
            eprintln!("skipped: {var} is not set (run `cargo xtask test` for every test)");
            None
        }
    }
}

/// An environment variable an ignored test (a benchmark, the screenshots) cannot run without;
/// `command` is what sets it.
pub fn required(var: &str, command: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("{var} is not set: run this with `{command}`"))
}

/// The folders of an [`embedded_fixture`] server (its SQLite file, its model store), removed
/// when this is dropped.
pub struct Folders {
    _data: TempDir,
    store: TempDir,
}

impl Folders {
    /// The model store the server reads.
    pub fn store(&self) -> &Path {
        self.store.path()
    }
}

/// Settings for a server in embedded mode (its own queue and worker) on a fresh SQLite file
/// over the fixture model store.
pub fn embedded_fixture() -> Result<(Settings, Folders)> {
    let data = tempfile::tempdir()?;
    let store = fixture_model_store()?;
    let settings = Settings::embedded(sqlite_url(data.path()), store.path());
    Ok((settings, Folders { _data: data, store }))
}

/// A temporary model store holding the engine's tiny fixture model.
pub fn fixture_model_store() -> Result<TempDir> {
    let dir = tempfile::tempdir()?;
    kokushi_engine::fixture::write_tiny_llama_gguf(&dir.path().join(FIXTURE_MODEL), 7)?;
    Ok(dir)
}

/// The JSON objects of a JSON-lines file (a predictions file), one a line.
pub fn json_lines(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

/// The six-question fixture exam in IgakuQA format.
pub fn mini_exam_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mini-exam.jsonl")
}

/// An exam of `n` text-only questions `{block}1` … `{block}n` (e.g. block `902A`), each the
/// fixture exam's first question under a new id: runs long enough to act on while they go.
pub fn long_exam(block: &str, n: usize) -> Vec<u8> {
    let mini = std::fs::read_to_string(mini_exam_path()).unwrap_or_default();
    let template: serde_json::Value = mini
        .lines()
        .next()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_default();
    let mut out = String::new();
    for i in 1..=n {
        let mut q = template.clone();
        q["problem_id"] = format!("{block}{i}").into();
        out.push_str(&q.to_string());
        out.push('\n');
    }
    out.into_bytes()
}

/// `n` five-choice questions `{prefix}1`…`{prefix}n` as JSON lines (`120B` gives a made-up
/// 120th exam's block B), the answers running a to e; each carries the examinee accuracy
/// `accuracy` gives for its number, when given.
pub fn lettered_block(prefix: &str, n: u32, accuracy: Option<fn(u32) -> f64>) -> String {
    (1..=n)
        .map(|i| {
            let mut q = serde_json::json!({
                "problem_id": format!("{prefix}{i}"),
                "problem_text": format!("第{i}問。正しいのはどれか。"),
                "choices": ["甲", "乙", "丙", "丁", "戊"],
                "answer": [char::from(b'a' + (i % 5) as u8).to_string()],
            });
            if let Some(accuracy) = accuracy {
                q["examinee_accuracy"] = accuracy(i).into();
            }
            q.to_string() + "\n"
        })
        .collect()
}

/// A fresh SQLite database file in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("kokushi.sqlite").display())
}

/// Makes two tests of an `async fn BODY(database_url: String)`: `SQLITE` on a fresh SQLite file,
/// and `POSTGRES` on a fresh PostgreSQL database (it passes at once when
/// `KOKUSHI_TEST_POSTGRES_URL` is not set).
#[macro_export]
macro_rules! on_both_databases {
    ($body:ident => $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let dir = $crate::tempfile::tempdir().expect("tempdir");
            $body($crate::sqlite_url(dir.path())).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let Some(url) = $crate::fresh_postgres_url().await.expect("postgres") else {
                return;
            };
            $body(url).await;
        }
    };
}

/// The kind of database a URL names, for names that must differ between the two (`pg`,
/// `sqlite`).
pub fn database_kind(url: &str) -> &'static str {
    if url.starts_with("postgres") {
        "pg"
    } else {
        "sqlite"
    }
}

/// A fresh, empty PostgreSQL database on the test server, or `None` when none is configured.
pub async fn fresh_postgres_url() -> Result<Option<String>> {
    let Some(admin) = service("KOKUSHI_TEST_POSTGRES_URL") else {
        return Ok(None);
    };
    sqlx::any::install_default_drivers();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let name = format!("kokushi_test_{}_{nanos}", std::process::id());
    let pool = sqlx::AnyPool::connect(&admin)
        .await
        .context("connecting to test PostgreSQL")?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await?;
    pool.close().await;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Ok(Some(format!("{base}/{name}")))
}

/// Kills a child process (a worker, chromedriver) when dropped, even when an assertion fails.
#[derive(Debug)]
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The admin account every [`TestApp`] has.
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// A browser session: its cookie (`name=value`) and CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

/// A server running in this process on a free port, with an admin account; `client` sends that
/// admin's API token with every request.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// The admin's API token (also in `client`'s default headers).
    pub token: String,
    /// A client that sends no credentials.
    pub anonymous: reqwest::Client,
    stop: StopHandle,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl TestApp {
    /// Builds and starts a server with `settings` (its `bind` is forced to a free port).
    pub async fn spawn(mut settings: Settings) -> Result<Self> {
        settings.bind = "127.0.0.1:0".to_owned();
        let app = Application::build(settings).await?;
        let admin = match app.db().user_by_name(ADMIN_USER).await? {
            Some(stored) => stored.user,
            None => accounts::create_user(app.db(), ADMIN_USER, ADMIN_PASSWORD, &[Role::Admin])
                .await
                .map_err(|e| anyhow::anyhow!("creating the test admin: {e}"))?,
        };
        let token = auth::new_api_token();
        app.db()
            .create_token(
                admin.id,
                "tests",
                &auth::digest(&token),
                None,
                app.db().default_project().await?,
                false,
            )
            .await?;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?,
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .build()?;
        let base = format!("http://127.0.0.1:{}", app.port());
        let stop = app.stop_handle();
        let task = tokio::spawn(app.run_until_stopped());
        Ok(Self {
            base,
            client,
            token,
            anonymous: reqwest::Client::new(),
            stop,
            task,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Makes an account with `roles` and the password `<username>-password` (as the admin).
    pub async fn make_user(&self, username: &str, roles: &[&str]) -> Result<UserSummary> {
        let res = self
            .client
            .post(self.url("/api/users"))
            .json(&serde_json::json!({
                "username": username,
                "password": format!("{username}-password"),
                "roles": roles,
            }))
            .send()
            .await?;
        if res.status() != reqwest::StatusCode::CREATED {
            bail!(
                "creating {username}: {} {}",
                res.status(),
                res.text().await?
            );
        }
        Ok(res.json().await?)
    }

    /// Signs in through `POST /api/auth/login`: the answer's status, and the session when it
    /// succeeded.
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(reqwest::StatusCode, Option<Session>)> {
        let res = self
            .anonymous
            .post(self.url("/api/auth/login"))
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await?;
        let status = res.status();
        if !status.is_success() {
            return Ok((status, None));
        }
        let cookie = res
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .context("sign-in set no cookie")?
            .to_owned();
        let me: kokushi_shared::api::Me = res.json().await?;
        let csrf = me.csrf_token.context("a session has a CSRF token")?;
        Ok((status, Some(Session { cookie, csrf })))
    }

    /// Makes an account with `roles` ([`TestApp::make_user`]) and signs it in: the account and
    /// its session (cookie and CSRF token), for requests that set them by hand.
    pub async fn new_session(
        &self,
        username: &str,
        roles: &[&str],
    ) -> Result<(UserSummary, Session)> {
        let user = self.make_user(username, roles).await?;
        let (status, session) = self
            .sign_in(username, &format!("{username}-password"))
            .await?;
        let session = session.with_context(|| format!("{username} could not sign in: {status}"))?;
        Ok((user, session))
    }

    /// `GET path` as the admin, the answer read as JSON (an error for a refusal).
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        Ok(self
            .client
            .get(self.url(path))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Makes an account with `roles` ([`TestApp::make_user`]), signs it in, and returns its id
    /// and a client that sends its session cookie and CSRF token.
    pub async fn signed_in(
        &self,
        username: &str,
        roles: &[&str],
    ) -> Result<(i64, reqwest::Client)> {
        let (user, session) = self.new_session(username, roles).await?;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::COOKIE, session.cookie.parse()?);
        headers.insert("X-CSRF-Token", session.csrf.parse()?);
        Ok((
            user.id,
            reqwest::Client::builder()
                .default_headers(headers)
                .build()?,
        ))
    }

    /// Uploads a JSON-lines exam set; returns the raw response.
    pub async fn upload(&self, name: &str, file: &str, body: Vec<u8>) -> Result<reqwest::Response> {
        Ok(self
            .client
            .post(self.url("/api/exam-sets"))
            .query(&[("name", name), ("file", file)])
            .body(body)
            .send()
            .await?)
    }

    /// Uploads an exam set that must be accepted; returns its summary.
    pub async fn upload_exam(
        &self,
        name: &str,
        file: &str,
        body: Vec<u8>,
    ) -> Result<ExamSetSummary> {
        let res = self.upload(name, file, body).await?;
        if !res.status().is_success() {
            bail!(
                "uploading {file} failed: {} {}",
                res.status(),
                res.text().await?
            );
        }
        Ok(res.json::<ImportReport>().await?.exam_set)
    }

    /// Uploads the fixture exam and returns its summary.
    pub async fn upload_mini_exam(&self) -> Result<ExamSetSummary> {
        let body = std::fs::read(mini_exam_path())?;
        self.upload_exam("mini", "mini-exam.jsonl", body).await
    }

    /// Creates a run of the fixture model; returns its summary.
    pub async fn create_run(&self, exam_set_id: i64, limit: u32) -> Result<RunSummary> {
        let res = self
            .client
            .post(self.url("/api/runs"))
            .json(&serde_json::json!({
                "exam_set_id": exam_set_id,
                "model": FIXTURE_MODEL,
                "prompt_format": "chatml_ja_v1",
                "limit": limit,
                "max_new_tokens": 6,
            }))
            .send()
            .await?;
        if !res.status().is_success() {
            bail!(
                "creating a run failed: {} {}",
                res.status(),
                res.text().await?
            );
        }
        Ok(res.json().await?)
    }

    /// `GET /api/runs/{id}/export`: the run's answers as a predictions file.
    pub async fn run_export(&self, id: i64) -> Result<Vec<u8>> {
        Ok(self
            .client
            .get(self.url(&format!("/api/runs/{id}/export")))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?
            .to_vec())
    }

    pub async fn run_detail(&self, id: i64) -> Result<RunDetail> {
        Ok(self
            .client
            .get(self.url(&format!("/api/runs/{id}")))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    pub async fn leaderboard(&self) -> Result<Vec<RunSummary>> {
        Ok(self
            .client
            .get(self.url("/api/leaderboard"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Polls a run until it is finished or `timeout` passes.
    pub async fn wait_for_run(&self, id: i64, timeout: Duration) -> Result<RunDetail> {
        let deadline = Instant::now() + timeout;
        loop {
            let detail = self.run_detail(id).await?;
            if detail.run.status.is_finished() {
                return Ok(detail);
            }
            if Instant::now() > deadline {
                bail!(
                    "run {id} did not finish within {timeout:?}: {:?}",
                    detail.run
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the server and waits for it to shut down.
    pub async fn stop(self) -> Result<()> {
        self.stop.stop().await;
        self.task.await?
    }
}

/// A request sent exactly as written, byte for byte: no client library in between to
/// normalise its path (`/./`, `x/../`, percent-escapes). Answers the status code (and the
/// response head) as the server sent it; the body is not read, so a stream that would never end
/// does not hang the caller.
pub async fn raw_request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, stream.read(&mut buf))
            .await
            .with_context(|| format!("{method} {path}: no answer within 10 s"))??;
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&received).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("{method} {path}: no status line in {head:?}"))?;
    Ok((status, head))
}

/// A headless Chromium driven through chromedriver, 1440×900, with a profile of its own. When
/// this is dropped — a test that ends, or one that panics half-way — the browser goes with it:
/// the WebDriver session is ended (Chromium quits), chromedriver is killed, and any process
/// still running with this profile is killed too, so no Chromium outlives its test.
pub struct Browser {
    pub client: fantoccini::Client,
    _guard: BrowserGuard,
}

/// Ends a browser session and its processes on drop (see [`Browser`]).
struct BrowserGuard {
    driver: std::process::Child,
    port: u16,
    session: Option<String>,
    profile: TempDir,
}

impl Drop for BrowserGuard {
    fn drop(&mut self) {
        if let Some(id) = self.session.take() {
            end_webdriver_session(self.port, &id);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        kill_processes_with(&format!(
            "--user-data-dir={}",
            self.profile.path().display()
        ));
    }
}

/// `DELETE /session/{id}` to chromedriver, by hand (a drop cannot await), within a few seconds;
/// a session already ended answers an error, which is as good.
fn end_webdriver_session(port: u16, id: &str) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        // Chromedriver answers once the browser has quit.
        let _ = stream.read_to_end(&mut Vec::new());
    }
}

/// Kills every process whose command line contains `marker` (Linux: read from `/proc`).
pub fn kill_processes_with(marker: &str) {
    for pid in processes_with(marker) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

/// The processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(marker)
                })
                .unwrap_or(false)
        })
        .collect()
}

impl Browser {
    /// Starts chromedriver (`CHROMEDRIVER`, a path) on a free port and opens a session.
    pub async fn start(chromedriver: &str) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let driver = std::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let mut guard = BrowserGuard {
            driver,
            port,
            session: None,
            profile: tempfile::tempdir()?,
        };
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1440,900",
                    "--hide-scrollbars", "--lang=en-US",
                    format!("--user-data-dir={}", guard.profile.path().display()),
                ]
            }
        });
        let mut builder = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        );
        builder.capabilities(caps.as_object().cloned().unwrap_or_default());
        let mut last = None;
        for _ in 0..50 {
            match builder.connect(&format!("http://127.0.0.1:{port}")).await {
                Ok(client) => {
                    guard.session = client.session_id().await.ok().flatten();
                    return Ok(Self {
                        client,
                        _guard: guard,
                    });
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        bail!("chromedriver accepted no session: {last:?}")
    }
}
