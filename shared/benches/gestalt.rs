//! Gestalt similarity speed beside the reference it reproduces, CPython's difflib, on the same
//! pairs of real exam text (every choice against every other choice of its question, both
//! directions, and stem against choice). Run with `cargo xtask bench gestalt`.
//!
//! Prints one line per implementation: calls per second over the whole pair set, best of 5.

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
"#;

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
    let mut checksum = 0.0;
    for _ in 0..5 {
        let started = Instant::now();
        for (a, b) in &pairs {
            checksum += gestalt_ratio(std::hint::black_box(a), std::hint::black_box(b));
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    let n = pairs.len() as f64;
    println!(
        "gestalt kokushi  : {:>10.0} ratio() calls/s ({} pairs, best of 5; checksum {checksum:.3})",
        n / best,
        pairs.len()
    );

    let python = Command::new("python3")
        .args(["-c", DIFFLIB])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    let Ok(mut python) = python else {
        println!("gestalt difflib  : python3 not found");
        return;
    };
    let json = format!(
        "[{}]",
        pairs
            .iter()
            .map(|(a, b)| format!("[{},{}]", json_string(a), json_string(b)))
            .collect::<Vec<_>>()
            .join(",")
    );
    if let Some(mut stdin) = python.stdin.take() {
        let _ = stdin.write_all(json.as_bytes());
    }
    match python.wait_with_output() {
        Ok(out) => {
            let secs: f64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(f64::NAN);
            println!(
                "gestalt difflib  : {:>10.0} ratio() calls/s (CPython difflib.SequenceMatcher, same pairs)",
                n / secs
            );
            println!("speed-up         : {:.1}x", secs / best);
        }
        Err(e) => println!("gestalt difflib  : python3 failed: {e}"),
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}
