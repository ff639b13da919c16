//! `docs/exam-set-format.md` is a specification the importer is held to: every example block
//! imports cleanly, and every refused block is refused with exactly the error the page quotes.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use kokushi_shared::Gold;
use kokushi_shared::igakuqa::Importer;

const DOC: &str = include_str!("../../docs/exam-set-format.md");

/// A fenced block: its language (`jsonl` or `csv`), its role (`example` or `refused`), its
/// text, and for a refused block the error quoted on the `→` line after it.
struct Block {
    language: String,
    role: String,
    text: String,
    error: Option<String>,
}

fn blocks() -> Vec<Block> {
    let lines: Vec<&str> = DOC.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let mut words = info.split_whitespace();
        let (language, role) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let end = i + 1 + lines[i + 1..].iter().position(|l| *l == "```").unwrap();
        let text = lines[i + 1..end].join("\n") + "\n";
        let error = lines[end + 1..]
            .iter()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| l.strip_prefix("→ `"))
            .and_then(|l| l.strip_suffix('`'))
            .map(str::to_owned);
        if matches!(language, "jsonl" | "csv") {
            out.push(Block {
                language: language.to_owned(),
                role: role.to_owned(),
                text,
                error,
            });
        }
        i = end + 1;
    }
    out
}

#[test]
fn the_documents_examples_import() {
    let examples: Vec<Block> = blocks()
        .into_iter()
        .filter(|b| b.role == "example")
        .collect();
    assert_eq!(examples.len(), 2, "one JSON lines and one CSV example");
    let mut importer = Importer::new();
    for b in &examples {
        importer.add_file(&format!("example.{}", b.language), &b.text);
    }
    let questions = importer
        .finish()
        .unwrap_or_else(|errors| panic!("the examples must import: {errors:#?}"));
    assert_eq!(questions.len(), 11);
    let by_id = |id: &str| questions.iter().find(|q| q.problem_id == id).unwrap();
    assert_eq!(
        by_id("120A2").gold,
        Gold::Letters {
            letters: vec!['a', 'c']
        }
    );
    assert_eq!(
        by_id("120A3").gold,
        Gold::Numeric {
            value: "1800".into()
        }
    );
    assert_eq!(by_id("120B1").meta.prohibited, vec!['e']);
    assert_eq!(by_id("120B1").meta.examinee_accuracy, Some(0.91));
    assert_eq!(
        by_id("120B2").gold,
        Gold::AnyOf {
            letters: vec!['a', 'd']
        }
    );
    assert_eq!(by_id("120B2").points, 3);
    assert!(!by_id("120B2").text_only);
    assert_eq!(by_id("120B3").gold, Gold::Everyone);
    assert_eq!(by_id("120C1").gold, Gold::Unpublished);
    assert_eq!(
        by_id("121A1").gold,
        Gold::Letters {
            letters: vec!['a', 'c']
        }
    );
    assert_eq!(by_id("121A1").meta.specialty.as_deref(), Some("循環器"));
    assert_eq!(
        by_id("121B1").choices.len(),
        4,
        "an empty last choice cell is no choice"
    );
    assert_eq!(by_id("121B1").meta.prohibited, vec!['d']);
    assert_eq!(by_id("121B2").text, "\"正しい\" のはどれか。");
    assert_eq!(
        by_id("121B2").gold,
        Gold::AnyOf {
            letters: vec!['a', 'd']
        }
    );
}

#[test]
fn each_refused_block_is_refused_with_the_error_the_document_quotes() {
    let refused: Vec<Block> = blocks()
        .into_iter()
        .filter(|b| b.role == "refused")
        .collect();
    assert!(refused.len() >= 15, "{} refused blocks", refused.len());
    for b in refused {
        let expected = b
            .error
            .as_deref()
            .unwrap_or_else(|| panic!("no → line after {}", b.text));
        let file = format!("upload.{}", b.language);
        let mut importer = Importer::new();
        importer.add_file(&file, &b.text);
        let errors = match importer.finish() {
            Ok(_) => panic!("accepted:\n{}", b.text),
            Err(errors) => errors,
        };
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown.len(),
            1,
            "one error expected for:\n{}\ngot {shown:#?}",
            b.text
        );
        assert!(
            shown[0].starts_with(expected),
            "for:\n{}\nthe page quotes {expected:?}\nthe importer says {:?}",
            b.text,
            shown[0]
        );
    }
}
