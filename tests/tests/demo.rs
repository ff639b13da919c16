//! `kokushi demo` on a fresh folder, as a newcomer's first start: it imports IgakuQA 2022,
//! queues its run, serves the portal and its worker answers the questions — and logs no warning
//! on the way, since nothing has gone wrong (a fresh in-process queue is not a lost one).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kokushi_tests::{FIXTURE_MODEL, KillOnDrop, fixture_model_store, service};

#[test]
fn a_first_demo_start_logs_no_warning() {
    let (Some(bin), Some(data)) = (
        service("KOKUSHI_BIN").map(PathBuf::from),
        service("KOKUSHI_DATA").map(PathBuf::from),
    ) else {
        return;
    };
    let store = fixture_model_store().expect("fixture model");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new(&bin)
        .arg("demo")
        .arg("--data")
        .arg(data.join("igakuqa"))
        .args(["--model", FIXTURE_MODEL, "--limit", "2"])
        .arg("--model-store")
        .arg(store.path())
        .arg("--database-url")
        .arg(format!(
            "sqlite://{}",
            dir.path().join("demo.sqlite").display()
        ))
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .env_remove("KOKUSHI_LOG")
        .env_remove("KOKUSHI_REDIS_URL")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kokushi demo starts");
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let _demo = KillOnDrop(child);

    // Until the run's job is done (both questions answered), or a minute and a half.
    let mut log = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(90) {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) else {
            continue;
        };
        let done = line.contains("job finished");
        log.push(line);
        if done {
            break;
        }
    }
    let text = log.join("\n");
    assert!(
        text.contains("job finished"),
        "the demo's run never finished:\n{text}"
    );
    let warnings: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(warnings.is_empty(), "a fresh demo warned:\n{text}");
}
