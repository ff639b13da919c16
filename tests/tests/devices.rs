//! `--device` on the commands that run models: a device this build or machine lacks stops the
//! command at once, naming what is missing, before it touches a queue, a file or a model.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kokushi_tests::service;

/// Runs `kokushi` with `args` (and `env`) for at most 30 seconds: its exit success and stderr.
fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .env_remove("KOKUSHI_DEVICE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kokushi starts");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("kokushi {args:?} did not stop within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    (status.success(), stderr, started.elapsed())
}

#[test]
fn a_cuda_device_this_build_lacks_stops_each_command_at_once() {
    let Some(bin) = service("KOKUSHI_BIN") else {
        return;
    };
    if kokushi_engine::CUDA_BUILT {
        // A CUDA build: `cargo xtask gpu-check` checks the device path on a GPU.
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let nowhere = dir.path().join("nowhere");
    let nowhere = nowhere.to_str().expect("utf-8");
    // Each names files that do not exist and a queue nobody listens on: an error about them
    // would mean the device was checked too late.
    let commands: [(&str, Vec<&str>); 4] = [
        (
            "worker",
            vec![
                "worker",
                "--redis-url",
                "redis://127.0.0.1:9",
                "--device",
                "cuda:0",
            ],
        ),
        (
            "eval",
            vec![
                "eval",
                "--model",
                nowhere,
                "--exam-set",
                nowhere,
                "--out",
                nowhere,
                "--device",
                "cuda:0",
            ],
        ),
        (
            "tune",
            vec![
                "tune", "--base", nowhere, "--data", nowhere, "--out", nowhere, "--device", "cuda",
            ],
        ),
        (
            "serve",
            vec![
                "serve",
                "--database-url",
                "sqlite://nowhere/x.sqlite",
                "--device",
                "cuda:0",
            ],
        ),
    ];
    for (name, args) in commands {
        let (ok, stderr, took) = run(&bin, &args, &[]);
        assert!(!ok, "{name} went on without its device:\n{stderr}");
        assert!(
            stderr.contains("cuda:0") && stderr.contains("--features cuda"),
            "{name} does not say what is missing:\n{stderr}"
        );
        assert!(
            !stderr.contains("redis") && !stderr.contains("nowhere"),
            "{name} checked something else first:\n{stderr}"
        );
        assert!(took < Duration::from_secs(10), "{name} took {took:?}");
    }
    // The variable does what the flag does.
    let (ok, stderr, _) = run(
        &bin,
        &["worker", "--redis-url", "redis://127.0.0.1:9"],
        &[("KOKUSHI_DEVICE", "cuda:1")],
    );
    assert!(!ok && stderr.contains("cuda:1"), "{stderr}");
}

#[test]
fn a_device_name_the_engine_does_not_know_is_refused_with_the_forms() {
    let Some(bin) = service("KOKUSHI_BIN") else {
        return;
    };
    let (ok, stderr, _) = run(
        &bin,
        &[
            "worker",
            "--redis-url",
            "redis://127.0.0.1:9",
            "--device",
            "metal",
        ],
        &[],
    );
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("metal") && stderr.contains(kokushi_engine::DEVICE_FORMS),
        "{stderr}"
    );
}
