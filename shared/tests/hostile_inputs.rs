//! Bad input at volume: the exam-set importer (IgakuQA JSON lines, the CSV upload format,
//! JMMLU subject files) and the predictions reader of `kokushi score` are fed well over 100,000
//! generated and mutated files — truncated lines, bytes that are not UTF-8, huge fields, deeply
//! nested JSON, byte-order marks, mixed line ends, duplicated and shuffled lines, numbers out of
//! range. Whatever they get, they must not panic, and every refusal must name the file, a line
//! that exists (or the line after the last, for an end that never came) and the field at fault.
//!
//! The files come from a seeded generator, so a failure names the seed and file number that
//! reproduce it: `KOKUSHI_FUZZ_SEED=… KOKUSHI_FUZZ_FILES=… cargo test -p kokushi-shared --test
//! hostile_inputs`.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use kokushi_shared::igakuqa::{FormatError, Importer, text_of};
use kokushi_shared::score::parse_predictions;

/// SplitMix64: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            usize::try_from(self.next() % n as u64).unwrap_or(0)
        }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const WORDS: &[&str] = &[
    "正しいのはどれか。",
    "2つ選べ。",
    "高血圧",
    "アドレナリン",
    "膵β細胞",
    "\"quoted\"",
    "a, b",
    "line\nbreak",
    "=1+1",
    "－",
    "😷",
    "e\u{301}",
    "",
    " ",
    "\t",
    "１２３",
    "NaN",
    "null",
    "\\",
];

/// The kinds of file each parser reads.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Jsonl,
    Csv,
    Jmmlu,
    Predictions,
    RunExport,
}

fn text(rng: &mut Rng) -> String {
    (0..1 + rng.below(4)).map(|_| *rng.pick(WORDS)).collect()
}

fn json_text(rng: &mut Rng) -> String {
    serde_json::to_string(&text(rng)).unwrap_or_default()
}

fn problem_id(rng: &mut Rng) -> String {
    format!(
        "{}{}{}",
        110 + rng.below(15),
        *rng.pick(&["A", "B", "C", "D", "E", "F", "a", "Z", ""]),
        rng.below(80)
    )
}

fn answer_letters(rng: &mut Rng) -> String {
    let letters = ["a", "b", "c", "d", "e", "f", "z", "1"];
    (0..1 + rng.below(2))
        .map(|_| format!("\"{}\"", rng.pick(&letters)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A valid question in IgakuQA JSON lines, unique by its index `i`.
fn clean_jsonl(rng: &mut Rng, i: usize) -> String {
    format!(
        "{{\"problem_id\": \"116A{}\", \"problem_text\": \"{}\", \"choices\": [\"甲\", \"乙\", \
         \"丙\", \"丁\", \"戊\"], \"text_only\": true, \"answer\": [\"{}\"], \"points\": \"{}\"}}\n",
        i + 1,
        *rng.pick(&[
            "正しいのはどれか。",
            "誤っているのはどれか。",
            "最も考えられるのはどれか。"
        ]),
        *rng.pick(&["a", "b", "c", "d", "e"]),
        *rng.pick(&["1", "3"]),
    )
}

/// A file of `kind`: valid half the time, otherwise with values drawn from pools that hold
/// bad ones too.
fn base(rng: &mut Rng, kind: Kind) -> String {
    let n = 1 + rng.below(6);
    let clean = rng.chance(50);
    let mut out = String::new();
    match kind {
        Kind::Jsonl if clean => {
            for i in 0..n {
                out.push_str(&clean_jsonl(rng, i));
            }
        }
        Kind::Csv if clean => {
            out.push_str("problem_id,problem_text,a,b,c,d,e,answer,points\n");
            for i in 0..n {
                out.push_str(&format!(
                    "116B{},\"{}\",甲,乙,丙,丁,戊,{},{}\n",
                    i + 1,
                    rng.pick(&[
                        "正しいのはどれか。",
                        "\"\"引用\"\" を含む。",
                        "a, b を含む。"
                    ]),
                    *rng.pick(&["a", "b,d", "a or d", "NA"]),
                    *rng.pick(&["1", "3"]),
                ));
            }
        }
        Kind::Jsonl => {
            for _ in 0..n {
                let choices = (0..rng.below(7))
                    .map(|_| json_text(rng))
                    .collect::<Vec<_>>()
                    .join(",");
                out.push_str(&format!(
                    "{{\"problem_id\": \"{}\", \"problem_text\": {}, \"choices\": [{choices}], \
                     \"text_only\": {}, \"answer\": [{}], \"points\": \"{}\"{}}}\n",
                    problem_id(rng),
                    json_text(rng),
                    rng.chance(80),
                    answer_letters(rng),
                    *rng.pick(&["1", "3", "0", "-1", "x", "99999999999999999999"]),
                    *rng.pick(&[
                        "",
                        ", \"year\": 2022",
                        ", \"section\": \"required\"",
                        ", \"specialty\": \"循環器\"",
                        ", \"prohibited\": [\"a\"]",
                        ", \"exam\": \"116\"",
                        ", \"examinee_accuracy\": 0.5",
                        ", \"unknown\": 1",
                        ", \"year\": 70000",
                    ])
                ));
            }
        }
        Kind::Csv => {
            out.push_str("problem_id,problem_text,a,b,c,d,e,answer,points,section,year\n");
            for _ in 0..n {
                out.push_str(&format!(
                    "{},\"{}\",{},{},{},{},{},\"{}\",{},{},{}\n",
                    problem_id(rng),
                    text(rng).replace('"', "\"\""),
                    *rng.pick(WORDS),
                    *rng.pick(WORDS),
                    *rng.pick(&["甲", "", "乙"]),
                    *rng.pick(&["丁", ""]),
                    *rng.pick(&["戊", ""]),
                    *rng.pick(&["a", "b,d", "a or d", "NA", "3", "z", ""]),
                    *rng.pick(&["1", "3", "-2", "x"]),
                    *rng.pick(&["required", "general", "other", ""]),
                    *rng.pick(&["2022", "", "99999"]),
                ));
            }
        }
        Kind::Jmmlu => {
            out.push('\u{feff}');
            for _ in 0..n {
                out.push_str(&format!(
                    "\"{}\",{},{},{},{},{}\n",
                    text(rng).replace('"', "\"\""),
                    *rng.pick(WORDS),
                    *rng.pick(WORDS),
                    *rng.pick(WORDS),
                    *rng.pick(WORDS),
                    *rng.pick(&["A", "B", "C", "D", "E", "a", ""]),
                ));
            }
        }
        Kind::Predictions => {
            for _ in 0..n {
                out.push_str(&format!(
                    "{{\"problem_id\": \"{}\", \"prediction\": {}}}\n",
                    problem_id(rng),
                    *rng.pick(&["\"a\"", "\"b,d\"", "null", "3", "[\"a\"]", "{}", "\"\""]),
                ));
            }
        }
        Kind::RunExport => {
            let questions = (0..n)
                .map(|_| {
                    format!(
                        "{{\"problem_id\": \"{}\", \"answer\": {{\"raw_output\": {}}}}}",
                        problem_id(rng),
                        json_text(rng)
                    )
                })
                .collect::<Vec<_>>()
                .join(",");
            out.push_str(&format!("{{\"run\": {{}}, \"questions\": [{questions}]}}"));
        }
    }
    out
}

/// One random change to a file's bytes.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let at = rng.below(bytes.len() + 1);
    match rng.below(14) {
        // Truncated anywhere, even inside a character.
        0 => bytes.truncate(at),
        // Bytes that are not UTF-8, or a NUL.
        1 => {
            let junk: &[&[u8]] = &[b"\xff", b"\xc3", b"\xe3\x81", b"\x00", b"\xed\xa0\x80"];
            let j = rng.pick(junk);
            bytes.splice(at..at, j.iter().copied());
        }
        // A huge field (a megabyte, now and then).
        2 => {
            let size = if rng.chance(2) { 1 << 20 } else { 1 << 14 };
            let huge = "長".repeat(size / 3);
            bytes.splice(at..at, huge.into_bytes());
        }
        // Deep nesting.
        3 => {
            let depth = 1 + rng.below(5000);
            let (open, close) = if rng.chance(50) {
                ("[", "]")
            } else {
                ("{\"a\":", "}")
            };
            let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            bytes.splice(at..at, nested.into_bytes());
        }
        // A byte-order mark, at the start or anywhere.
        4 => {
            let at = if rng.chance(50) { 0 } else { at };
            bytes.splice(at..at, "\u{feff}".bytes());
        }
        // Line ends: all CRLF, all CR, or mixed.
        5 => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            let changed = match rng.below(3) {
                0 => text.replace('\n', "\r\n"),
                1 => text.replace('\n', "\r"),
                _ => text
                    .split('\n')
                    .enumerate()
                    .map(|(i, l)| format!("{l}{}", ["\n", "\r\n", "\r"][i % 3]))
                    .collect(),
            };
            *bytes = changed.into_bytes();
        }
        // A line twice.
        6 => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            let mut lines: Vec<&str> = text.split('\n').collect();
            let i = rng.below(lines.len());
            lines.insert(i, lines[i]);
            *bytes = lines.join("\n").into_bytes();
        }
        // Lines shuffled.
        7 => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            let mut lines: Vec<&str> = text.split('\n').collect();
            for i in (1..lines.len()).rev() {
                lines.swap(i, rng.below(i + 1));
            }
            *bytes = lines.join("\n").into_bytes();
        }
        // A range deleted.
        8 => {
            let end = (at + rng.below(40)).min(bytes.len());
            bytes.drain(at..end);
        }
        // A random byte flipped.
        9 => {
            if let Some(b) = bytes.get_mut(at) {
                *b ^= 1 << rng.below(8);
            }
        }
        // Numbers out of range.
        10 => {
            let n = *rng.pick(&["-1", "1e400", "18446744073709551616", "-0", "0.5", "NaN"]);
            bytes.splice(at..at, n.bytes());
        }
        // Structural characters.
        11 => {
            let c = *rng.pick(&["\"", ",", "{", "}", "[", "]", ":", "\n", "\r", "\\"]);
            bytes.splice(at..at, c.bytes());
        }
        // An empty file, or only blank lines.
        12 => {
            *bytes = if rng.chance(50) {
                Vec::new()
            } else {
                b"\n\n  \n".to_vec()
            };
        }
        // Text that looks like something else.
        _ => {
            let other = *rng.pick(&["<html></html>", "\u{0}\u{0}", "%PDF-1.4", "{}", "[]"]);
            bytes.splice(at..at, other.bytes());
        }
    }
}

/// What one parser made of one file: (parser, the file name it was given, its verdict).
type Outcome<'a> = (&'static str, &'a str, Result<(), Vec<FormatError>>);

/// Checks one refusal: it names `file`, a line within the file (or just past its end), a
/// field and a reason.
fn check_error(e: &FormatError, file: &str, lines: usize, case: &str) {
    assert_eq!(e.file, file, "{case}: {e}");
    assert!(
        (1..=lines + 1).contains(&e.line),
        "{case}: line {} of a file of {lines} lines: {e}",
        e.line
    );
    assert!(!e.field.trim().is_empty(), "{case}: no field named: {e}");
    assert!(!e.message.trim().is_empty(), "{case}: no reason given: {e}");
}

/// Runs `f`, failing the test with `case` if it panics.
fn no_panic<T>(case: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("{case}: panicked: {what}");
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn importer_and_predictions_reader_survive_100_000_hostile_files() {
    let seed = env_number("KOKUSHI_FUZZ_SEED", 0x4B4F_4B55_5348_4921);
    let files = env_number("KOKUSHI_FUZZ_FILES", 100_000);
    let only = std::env::var("KOKUSHI_FUZZ_FILE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let started = Instant::now();
    let mut refused: BTreeMap<&str, u64> = BTreeMap::new();
    let mut accepted: BTreeMap<&str, u64> = BTreeMap::new();
    let kinds = [
        Kind::Jsonl,
        Kind::Csv,
        Kind::Jmmlu,
        Kind::Predictions,
        Kind::RunExport,
    ];
    let mut mutated = 0u64;
    for n in 0..files {
        if only.is_some_and(|o| o != n) {
            continue;
        }
        // Each file has a generator of its own, so any one can be reproduced alone.
        let mut rng = Rng(seed ^ n.wrapping_mul(0xA24B_AED4_963E_E407));
        let kind = *rng.pick(&kinds);
        let mut bytes = base(&mut rng, kind).into_bytes();
        // A quarter stay as made (valid or nearly), the rest get one to four mutations.
        let mutations = if rng.chance(25) { 0 } else { 1 + rng.below(4) };
        for _ in 0..mutations {
            mutate(&mut rng, &mut bytes);
        }
        mutated += u64::from(mutations > 0);
        let case = format!("seed {seed:#x}, file {n} ({kind:?}, {} bytes)", bytes.len());
        let (jsonl, csv) = (format!("f{n}.jsonl"), format!("f{n}.csv"));
        let lines = bytes
            .iter()
            .filter(|b| **b == b'\n' || **b == b'\r')
            .count()
            + 1;
        let text = match no_panic(&case, || text_of(&jsonl, &bytes)) {
            Ok(text) => text,
            Err(e) => {
                check_error(&e, &jsonl, lines, &case);
                *refused.entry("not UTF-8").or_default() += 1;
                continue;
            }
        };
        let imported = |add: &dyn Fn(&mut Importer)| {
            let mut importer = Importer::new();
            add(&mut importer);
            importer.finish()
        };
        let outcomes: [Outcome<'_>; 4] = [
            (
                "JSON lines",
                jsonl.as_str(),
                no_panic(&case, || {
                    imported(&|i| i.add_file(&jsonl, text)).map(|_| ())
                }),
            ),
            (
                "CSV",
                csv.as_str(),
                no_panic(&case, || imported(&|i| i.add_file(&csv, text)).map(|_| ())),
            ),
            (
                "JMMLU",
                csv.as_str(),
                no_panic(&case, || {
                    let mut importer = Importer::with_namespace("jmmlu").expect("namespace");
                    importer.add_jmmlu(&csv, "anatomy", text);
                    importer.finish().map(|_| ())
                }),
            ),
            (
                "predictions",
                jsonl.as_str(),
                no_panic(&case, || {
                    let mut into = BTreeMap::new();
                    parse_predictions(&jsonl, text, &mut into)
                }),
            ),
        ];
        for (parser, file, outcome) in outcomes {
            match outcome {
                Ok(()) => *accepted.entry(parser).or_default() += 1,
                Err(errors) => {
                    assert!(
                        !errors.is_empty(),
                        "{case}: {parser} refused without a reason"
                    );
                    for e in &errors {
                        check_error(e, file, lines, &format!("{case}, {parser}"));
                    }
                    *refused.entry(parser).or_default() += 1;
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "hostile inputs: {files} files ({mutated} mutated) in {seconds:.1} s; refused \
         {refused:?}; accepted {accepted:?}"
    );
    if only.is_none() {
        // The generator must reach both sides of every parser, or the test proves little.
        for parser in ["JSON lines", "CSV", "JMMLU", "predictions"] {
            assert!(
                refused.get(parser).copied().unwrap_or(0) > 100,
                "{parser}: {refused:?}"
            );
            assert!(
                accepted.get(parser).copied().unwrap_or(0) > 100,
                "{parser}: {accepted:?}"
            );
        }
        assert!(refused.get("not UTF-8").copied().unwrap_or(0) > 100);
    }
}
