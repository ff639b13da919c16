//! Gestalt similarity speed beside the reference it reproduces, CPython's difflib, on the same
//! pairs of real exam text (every choice against every other choice of its question, both
//! directions, and stem against choice). Run with `cargo xtask bench gestalt`.
//!
//! Prints one line per implementation: calls per second over the whole pair set, best of 5,
//! and the time of one pass in microseconds. Every value is compared with Python's, bit for bit
//! (Python prints each ratio's shortest round-trip form); a value that differs, or a reference
//! that fails or prints nothing, fails the bench (exit 1) — no ratio against a missing figure.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use kokushi_shared::gestalt::gestalt_ratio;
use kokushi_shared::igakuqa::Importer;

const DIFFLIB: &str = r#"
import json, sys, time
from difflib import SequenceMatcher
pairs = json.load(sys.stdin)
best = None
for _ in range(5):
    t = time.perf_counter()
    for a, b in pairs:
        SequenceMatcher(None, a, b).ratio()
    e = time.perf_counter() - t
    best = e if best is None else min(best, e)
print(best)
for a, b in pairs:
    print(repr(SequenceMatcher(None, a, b).ratio()))
"#;

/// Fails the bench with `message`.
fn fail(message: &str) -> ! {
    eprintln!("gestalt bench FAILED: {message}");
    std::process::exit(1);
}

fn main() {
    let data = std::env::var_os("KOKUSHI_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data"));
    let mut importer = Importer::new();
    for year in ["2018", "2019", "2020", "2021", "2022"] {
        let dir = data.join("igakuqa").join(year);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("no IgakuQA data at {}: set KOKUSHI_DATA", dir.display());
            std::process::exit(2);
        };
        let mut files: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => importer.add_file(&file.display().to_string(), &text),
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    std::process::exit(2);
                }
            }
        }
    }
    let Ok(questions) = importer.finish() else {
        eprintln!("the IgakuQA files did not parse");
        std::process::exit(2);
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    for q in &questions {
        for (i, a) in q.choices.iter().enumerate() {
            for b in &q.choices[i + 1..] {
                pairs.push((a.clone(), b.clone()));
                pairs.push((b.clone(), a.clone()));
            }
            pairs.push((q.text.clone(), a.clone()));
        }
    }

    let mut best = f64::INFINITY;
    let mut ours = Vec::with_capacity(pairs.len());
    for round in 0..5 {
        let started = Instant::now();
        for (a, b) in &pairs {
            let r = gestalt_ratio(std::hint::black_box(a), std::hint::black_box(b));
            if round == 0 {
                ours.push(r);
            }
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    let n = pairs.len() as f64;
    println!(
        "gestalt kokushi  : {:>10.0} ratio() calls/s, {:>10.0} µs a pass ({} pairs, best of 5)",
        n / best,
        best * 1e6,
        pairs.len()
    );

    let mut python = Command::new("python3")
        .args(["-c", DIFFLIB])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("python3 (the reference) does not start: {e}")));
    let json = format!(
        "[{}]",
        pairs
            .iter()
            .map(|(a, b)| format!("[{},{}]", json_string(a), json_string(b)))
            .collect::<Vec<_>>()
            .join(",")
    );
    // Written from a thread of its own: Python answers while it reads.
    let mut stdin = python
        .stdin
        .take()
        .unwrap_or_else(|| fail("no stdin for python3"));
    let writer = std::thread::spawn(move || stdin.write_all(json.as_bytes()));
    let out = python
        .wait_with_output()
        .unwrap_or_else(|e| fail(&format!("python3 failed: {e}")));
    if writer.join().map_or(true, |r| r.is_err()) {
        fail("writing the pairs to python3 failed");
    }
    if !out.status.success() {
        fail(&format!("python3 exited with {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let secs: f64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .filter(|s: &f64| s.is_finite() && *s > 0.0)
        .unwrap_or_else(|| fail("python3 printed no time"));
    let theirs: Vec<f64> = lines
        .map(|l| l.trim().parse().unwrap_or(f64::NAN))
        .collect();
    if theirs.len() != ours.len() {
        fail(&format!(
            "python3 gave {} values for {} pairs",
            theirs.len(),
            ours.len()
        ));
    }
    let differing: Vec<usize> = ours
        .iter()
        .zip(&theirs)
        .enumerate()
        .filter(|(_, (x, y))| x.to_bits() != y.to_bits())
        .map(|(i, _)| i)
        .collect();
    if let Some(&first) = differing.first() {
        fail(&format!(
            "{} of {} values differ from difflib's; the first, pair {first}: ours {:?}, difflib {:?}",
            differing.len(),
            ours.len(),
            ours[first],
            theirs[first]
        ));
    }
    println!(
        "gestalt difflib  : {:>10.0} ratio() calls/s, {:>10.0} µs a pass (CPython difflib.SequenceMatcher, same pairs)",
        n / secs,
        secs * 1e6
    );
    println!(
        "values           : all {} equal to difflib's, bit for bit",
        ours.len()
    );
    println!("speed-up         : {:.1}x", secs / best);
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}
