//! Every special case of the real data (`KOKUSHI_DATA`), read through the importer the command
//! line and the server use: the 2,000 IgakuQA questions with their counts as the data's NOTICE
//! states them, the two rulings, the derived exam structure; DenQA under a namespace; JMMLU.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::collections::BTreeMap;
use std::path::PathBuf;

use kokushi_backend::import::{SetFormat, read_exam_set, read_exam_set_as};
use kokushi_shared::exam::{Gold, Section};
use kokushi_tests::service;

fn data_dir() -> Option<PathBuf> {
    service("KOKUSHI_DATA").map(PathBuf::from)
}

#[test]
fn igakuqa_2018_to_2022_has_every_special_case_the_notice_counts() {
    let Some(data) = data_dir() else { return };
    let questions = read_exam_set(&[data.join("igakuqa")]).expect("IgakuQA imports cleanly");
    assert_eq!(questions.len(), 2000);

    let mut per_year: BTreeMap<u16, usize> = BTreeMap::new();
    // year → (required points, general points)
    let mut totals: BTreeMap<u16, (u32, u32)> = BTreeMap::new();
    for q in &questions {
        let year = q.meta.year.expect("year derived from the id");
        *per_year.entry(year).or_default() += 1;
        let exam: u16 = q
            .meta
            .exam
            .as_deref()
            .expect("exam")
            .parse()
            .expect("number");
        assert_eq!(exam + 1906, year, "{}", q.problem_id);
        let block = q.meta.block.as_deref().expect("block");
        assert_eq!(&q.problem_id[3..4], block);
        let section = q.meta.section.expect("section");
        assert_eq!(
            section == Section::Required,
            matches!(block, "B" | "E"),
            "{}",
            q.problem_id
        );
        let total = totals.entry(year).or_default();
        match section {
            Section::Required => total.0 += q.points,
            Section::General => total.1 += q.points,
        }
    }
    assert!(per_year.values().all(|&n| n == 400), "{per_year:?}");
    assert_eq!(
        totals.into_iter().collect::<Vec<_>>(),
        [
            (2018, (200, 299)),
            (2019, (200, 296)),
            (2020, (197, 299)),
            (2021, (200, 300)),
            (2022, (197, 297)),
        ]
    );

    let count = |test: &dyn Fn(&kokushi_shared::Question) -> bool| {
        questions.iter().filter(|q| test(q)).count()
    };
    assert_eq!(count(&|q| q.text_only), 1471, "text-only questions");
    assert_eq!(
        count(&|q| matches!(&q.gold, Gold::Letters { letters } if letters.len() > 1)),
        298,
        "multi-answer questions"
    );
    assert_eq!(
        count(&|q| matches!(q.gold, Gold::Numeric { .. })),
        12,
        "numeric questions"
    );
    assert_eq!(
        count(&|q| q.choices.is_empty()),
        12,
        "numeric questions have no choices"
    );
    assert_eq!(count(&|q| q.points == 0), 11, "excluded questions");
    assert!(
        count(&|q| q.text.contains("2つ選べ")) > 0,
        "「2つ選べ」 appears in the stems"
    );
    // Every multi-answer question says how many to choose, and the count matches the gold set.
    for q in &questions {
        if let Gold::Letters { letters } = &q.gold {
            let asks = ["2つ選べ", "3つ選べ"]
                .iter()
                .position(|s| q.text.contains(s))
                .map_or(1, |i| i + 2);
            assert_eq!(letters.len(), asks, "{}: {}", q.problem_id, q.text);
        }
    }

    let by_id: BTreeMap<&str, &kokushi_shared::Question> = questions
        .iter()
        .map(|q| (q.problem_id.as_str(), q))
        .collect();
    assert_eq!(
        by_id["112B30"].gold,
        Gold::AnyOf {
            letters: vec!['a', 'd']
        }
    );
    assert_eq!(by_id["116A71"].gold, Gold::Everyone);
    assert_eq!(by_id["116A71"].points, 1);
    assert!(!by_id["112B30"].text_only, "112B30 has an image");
}

#[test]
fn denqa_is_another_exam_kept_apart_by_its_namespace() {
    let Some(data) = data_dir() else { return };
    let file = data.join("denqa/denqa.jsonl");
    let questions =
        read_exam_set_as(&[file], Some("denqa"), SetFormat::Auto).expect("DenQA imports");
    assert_eq!(questions.len(), 720);
    assert!(questions.iter().all(|q| q.problem_id.starts_with("denqa:")));
    // A dental "116A71" is not the medical ruling, and no medical structure is derived.
    if let Some(q) = questions.iter().find(|q| q.problem_id == "denqa:116A71") {
        assert_ne!(q.gold, Gold::Everyone);
    }
    assert!(
        questions
            .iter()
            .all(|q| q.meta.section.is_none() && q.meta.year.is_none())
    );
    // 21 questions carry "NA": no published answer. They are kept, never scored.
    let unpublished: Vec<&str> = questions
        .iter()
        .filter(|q| q.gold == Gold::Unpublished)
        .map(|q| q.problem_id.as_str())
        .collect();
    assert_eq!(unpublished.len(), 21, "{unpublished:?}");
    assert!(unpublished.contains(&"denqa:116A85"));
    let mut ids: Vec<&str> = questions.iter().map(|q| q.problem_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 720, "ids stay unique");
}

#[test]
fn jmmlu_medical_subjects_import_as_four_choice_questions() {
    let Some(data) = data_dir() else { return };
    let questions = read_exam_set_as(
        &[data.join("jmmlu-medical")],
        Some("jmmlu"),
        SetFormat::Jmmlu,
    )
    .expect("JMMLU imports");
    assert_eq!(questions.len(), 1273);
    let mut subjects: BTreeMap<&str, usize> = BTreeMap::new();
    for q in &questions {
        assert_eq!(q.choices.len(), 4, "{}", q.problem_id);
        assert!(
            matches!(&q.gold, Gold::Letters { letters } if letters.len() == 1 && ('a'..='d').contains(&letters[0])),
            "{}: {:?}",
            q.problem_id,
            q.gold
        );
        assert!(q.choices.iter().all(|c| c.trim() == c), "cells are trimmed");
        assert!(
            !q.text.starts_with('\u{feff}'),
            "the byte-order mark is dropped"
        );
        *subjects
            .entry(q.meta.specialty.as_deref().expect("subject as specialty"))
            .or_default() += 1;
    }
    assert_eq!(subjects.len(), 9, "{subjects:?}");
    // Without the JMMLU format the files are refused with a hint, not misread.
    let err = read_exam_set_as(
        &[data.join("jmmlu-medical")],
        Some("jmmlu"),
        SetFormat::Auto,
    )
    .expect_err("JMMLU has no header row");
    assert!(err.to_string().contains("jmmlu"), "{err}");
}
