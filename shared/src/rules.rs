//! Rule packs: an exam's scoring rules as data, every entry with where it comes from.
//!
//! A pack holds, for one exam (the 119th, 2025): its sections (which blocks, the points of each
//! question where a file does not carry them, and the pass mark), the questions MHLW excluded
//! from scoring, its rulings (any one of several letters accepted; correct for everyone), the
//! prohibited choices known and how many a passing candidate may choose. Each entry carries its
//! provenance — *official* (a source and its date), *annotated* (by whom) or *provisional*
//! (a figure standing in, such as a cut-off not yet announced) — or takes the pack's own. A
//! verdict that rests on a provisional entry is provisional, and says so wherever it is shown.
//!
//! Packs are versioned: a change makes a new version, and a score names the version it was
//! made under ([`crate::passing::PassCriteria::pack_version`]).
//!
//! The built-in packs (the 112th to the 120th exams, 2018–2026) are JSON files in
//! `shared/rules/`, in the same format a user uploads ([`parse`]); every number in them names
//! its source there.

use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::exam::{Gold, Question, Section, letter_index};

/// The format tag every pack starts with.
pub const FORMAT: &str = "kokushi-rules/1";

/// Where an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ProvenanceKind {
    /// Published by the examiners (MHLW), or reproduced word for word from them.
    Official,
    /// Set by a named person or project (a scorer's ruling, a teacher's list of prohibited
    /// choices).
    Annotated,
    /// A figure standing in until the real one is known: verdicts resting on it are provisional.
    Provisional,
}

impl ProvenanceKind {
    pub fn id(self) -> &'static str {
        match self {
            Self::Official => "official",
            Self::Annotated => "annotated",
            Self::Provisional => "provisional",
        }
    }
}

/// Where an entry comes from, and on whose word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    pub kind: ProvenanceKind,
    /// The document, page or scorer the entry is taken from.
    pub source: String,
    /// When it was published: `YYYY-MM-DD` or `YYYY-MM` (required for official entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Who set it (required for annotated entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.id(), self.source)?;
        if let Some(date) = &self.date {
            write!(f, " ({date})")?;
        }
        if let Some(by) = &self.by {
            write!(f, ", by {by}")?;
        }
        if let Some(note) = &self.note {
            write!(f, "; {note}")?;
        }
        Ok(())
    }
}

/// One exam's rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RulePack {
    /// Always [`FORMAT`].
    pub format: String,
    /// The exam's number, e.g. `"119"`: the digits its problem ids start with.
    pub exam: String,
    /// The calendar year it was held.
    pub year: u16,
    /// 1 for the first version; each change makes the next.
    pub version: u32,
    pub title: String,
    /// The provenance of every entry that does not name its own.
    pub provenance: Provenance,
    pub sections: Vec<SectionRule>,
    /// The most prohibited choices (禁忌肢) a passing candidate may choose.
    pub prohibited_limit: LimitRule,
    #[serde(default)]
    pub excluded: Vec<Exclusion>,
    #[serde(default)]
    pub rulings: Vec<Ruling>,
    /// Prohibited choices, for sets whose files do not list them.
    #[serde(default)]
    pub prohibited: Vec<ProhibitedChoices>,
    /// How many sat the exam and how many passed: the pass rate the examinee comparison
    /// calibrates the spread of examinees' abilities to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examinees: Option<ExamineeCount>,
}

/// How many sat an exam and how many passed, as announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExamineeCount {
    pub sat: u32,
    pub passed: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

impl ExamineeCount {
    /// The share who passed.
    pub fn pass_rate(&self) -> f64 {
        f64::from(self.passed) / f64::from(self.sat.max(1))
    }
}

/// A section (必修 or the rest), its blocks, points and pass mark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SectionRule {
    pub section: Section,
    /// Block letters whose questions belong to the section, e.g. `["B", "E"]`.
    pub blocks: Vec<String>,
    /// Each question's points by its number within its block, for files that do not carry
    /// them; numbers no range covers are worth 1.
    #[serde(default)]
    pub points: Vec<PointsRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points_provenance: Option<Provenance>,
    pub pass: PassRule,
}

/// Questions `numbers[0]..=numbers[1]` (of `block`, or of every block of the section) are
/// worth `points`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PointsRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
    pub numbers: [u32; 2],
    pub points: u32,
}

/// How a section is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PassKind {
    /// At least `share` of the section's `of` points (必修: 80 %).
    Share,
    /// At least `min` of its `of` points (the announced cut-off).
    Points,
    /// At least `share` of the examinees' mean points in the section, from each question's
    /// examinee accuracy (a cut-off set relative to the examinees, before it is announced).
    ExamineeMean,
}

/// A section's pass mark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PassRule {
    pub kind: PassKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// The section's points after exclusions: a set must hold exactly these for a verdict.
    pub of: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// The prohibited-choice limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LimitRule {
    pub value: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// A question MHLW excluded from scoring: it is worth 0 points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    pub problem_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// A ruling on a question's answer: any one of `any_of` is accepted, or (`everyone`) every
/// examinee is counted correct.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Ruling {
    pub problem_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any_of: Vec<char>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub everyone: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// A question's prohibited choices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProhibitedChoices {
    pub problem_id: String,
    pub letters: Vec<char>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// A problem with a pack: the file, where in it (a JSON path such as `sections[1].pass.min`,
/// and the line when known) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: String,
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: ", self.file)?,
            None => write!(f, "{}: ", self.file)?,
        }
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

/// The largest pack file read.
pub const MAX_PACK_BYTES: usize = 1 << 20;

/// Reads and checks a pack; every problem found is listed.
pub fn parse(file: &str, text: &str) -> Result<RulePack, Vec<RuleError>> {
    let error = |line: Option<usize>, field: &str, message: String| RuleError {
        file: file.to_owned(),
        line,
        field: field.to_owned(),
        message,
    };
    if text.len() > MAX_PACK_BYTES {
        return Err(vec![error(
            None,
            "(file)",
            format!(
                "{} bytes; a rule pack may have at most {MAX_PACK_BYTES}",
                text.len()
            ),
        )]);
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let pack: RulePack = serde_json::from_str(text).map_err(|e| {
        vec![error(
            Some(e.line()),
            "(file)",
            format!("not a rule pack: {e}"),
        )]
    })?;
    let errors = check(&pack)
        .into_iter()
        .map(|(field, message)| {
            // The line of the first mention of a problem id named in the field, when there is
            // one; else none.
            error(line_of(text, &field, &pack), &field, message)
        })
        .collect::<Vec<_>>();
    if errors.is_empty() {
        Ok(pack)
    } else {
        Err(errors)
    }
}

/// The line of the problem id an entry field names (`rulings[2]…`), for error messages.
fn line_of(text: &str, field: &str, pack: &RulePack) -> Option<usize> {
    let index = |prefix: &str| -> Option<usize> {
        field.strip_prefix(prefix)?.split(']').next()?.parse().ok()
    };
    let id = if let Some(i) = index("rulings[") {
        &pack.rulings.get(i)?.problem_id
    } else if let Some(i) = index("excluded[") {
        &pack.excluded.get(i)?.problem_id
    } else if let Some(i) = index("prohibited[") {
        &pack.prohibited.get(i)?.problem_id
    } else {
        return None;
    };
    let at = text.find(&format!("\"{id}\""))?;
    Some(text[..at].matches('\n').count() + 1)
}

/// Every problem with `pack`, as (field, message).
fn check(pack: &RulePack) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let mut fail = |field: String, message: String| errors.push((field, message));
    if let Some(count) = &pack.examinees
        && (count.sat == 0 || count.passed > count.sat)
    {
        fail(
            "examinees".into(),
            format!(
                "{} passed of {} who sat: expected at least one examinee and no more passing \
                 than sat",
                count.passed, count.sat
            ),
        );
    }
    if pack.format != FORMAT {
        fail(
            "format".into(),
            format!("expected {FORMAT:?}, got {:?}", pack.format),
        );
    }
    if pack.exam.is_empty() || pack.exam.len() > 4 || !pack.exam.bytes().all(|b| b.is_ascii_digit())
    {
        fail(
            "exam".into(),
            format!(
                "expected the exam's number such as \"119\", got {:?}",
                pack.exam
            ),
        );
    }
    if !(1946..=2200).contains(&pack.year) {
        fail(
            "year".into(),
            format!("expected a year such as 2025, got {}", pack.year),
        );
    }
    if pack.version == 0 {
        fail("version".into(), "versions start at 1".into());
    }
    if pack.title.trim().is_empty() || pack.title.chars().count() > 200 {
        fail(
            "title".into(),
            "expected a title of 1 to 200 characters".into(),
        );
    }
    check_provenance(&pack.provenance, "provenance", &mut fail);
    if pack.sections.is_empty() {
        fail(
            "sections".into(),
            "a pack needs its sections (required and general)".into(),
        );
    }
    let mut blocks_seen: Vec<(&str, usize)> = Vec::new();
    for (i, s) in pack.sections.iter().enumerate() {
        let at = |field: &str| format!("sections[{i}].{field}");
        if pack.sections[..i].iter().any(|o| o.section == s.section) {
            fail(at("section"), format!("{} appears twice", s.section.id()));
        }
        if s.blocks.is_empty() {
            fail(at("blocks"), "a section needs at least one block".into());
        }
        for block in &s.blocks {
            if block.is_empty() || block.len() > 2 || !block.bytes().all(|b| b.is_ascii_uppercase())
            {
                fail(
                    at("blocks"),
                    format!("expected block letters such as \"B\", got {block:?}"),
                );
            } else if let Some((_, other)) = blocks_seen.iter().find(|(b, _)| b == block) {
                fail(
                    at("blocks"),
                    format!("block {block} is already in sections[{other}]"),
                );
            } else {
                blocks_seen.push((block, i));
            }
        }
        for (j, range) in s.points.iter().enumerate() {
            let field = at(&format!("points[{j}]"));
            let [from, to] = range.numbers;
            if from == 0 || from > to || to > 1000 {
                fail(
                    field.clone(),
                    format!(
                        "expected question numbers from 1 to 1000 in order, got [{from}, {to}]"
                    ),
                );
            }
            if range.points > 100 {
                fail(
                    field.clone(),
                    format!("{} points; at most 100", range.points),
                );
            }
            if let Some(block) = &range.block
                && !s.blocks.contains(block)
            {
                fail(field, format!("block {block} is not one of the section's"));
            }
        }
        if let Some(p) = &s.points_provenance {
            check_provenance(p, &at("points_provenance"), &mut fail);
        }
        let pass = &s.pass;
        let share_ok = |share: Option<f64>| share.is_some_and(|v| v > 0.0 && v <= 1.0);
        match pass.kind {
            PassKind::Share | PassKind::ExamineeMean if !share_ok(pass.share) => fail(
                at("pass.share"),
                format!(
                    "a pass mark of kind {:?} needs a share above 0 and at most 1, got {:?}",
                    pass.kind, pass.share
                ),
            ),
            PassKind::Points => match pass.min {
                Some(min) if min <= pass.of => {}
                Some(min) => fail(
                    at("pass.min"),
                    format!("{min} is more than the section's {} points", pass.of),
                ),
                None => fail(
                    at("pass.min"),
                    "a pass mark of kind \"points\" needs its min".into(),
                ),
            },
            _ => {}
        }
        if pass.of == 0 || pass.of > 10_000 {
            fail(
                at("pass.of"),
                format!(
                    "expected the section's points (1 to 10000), got {}",
                    pass.of
                ),
            );
        }
        if let Some(p) = &pass.provenance {
            check_provenance(p, &at("pass.provenance"), &mut fail);
        }
    }
    if let Some(p) = &pack.prohibited_limit.provenance {
        check_provenance(p, "prohibited_limit.provenance", &mut fail);
    }
    let own_id = |id: &str| {
        crate::igakuqa::split_problem_id(id)
            .is_some_and(|(exam, _, _)| exam.to_string() == pack.exam)
            && id.len() <= 20
    };
    let mut ids_seen: Vec<(String, String)> = Vec::new();
    let mut entry_id = |list: &str, i: usize, id: &str, fail: &mut dyn FnMut(String, String)| {
        let field = format!("{list}[{i}].problem_id");
        if !own_id(id) {
            fail(
                field,
                format!(
                    "expected a problem id of exam {} such as \"{}A1\", got {id:?}",
                    pack.exam, pack.exam
                ),
            );
        } else if let Some((_, first)) = ids_seen.iter().find(|(seen, _)| seen == id) {
            fail(field, format!("{id} is already ruled on at {first}"));
        } else if list != "prohibited" {
            ids_seen.push((id.to_owned(), format!("{list}[{i}]")));
        }
    };
    for (i, e) in pack.excluded.iter().enumerate() {
        entry_id("excluded", i, &e.problem_id, &mut fail);
        if let Some(p) = &e.provenance {
            check_provenance(p, &format!("excluded[{i}].provenance"), &mut fail);
        }
    }
    for (i, r) in pack.rulings.iter().enumerate() {
        entry_id("rulings", i, &r.problem_id, &mut fail);
        match (r.any_of.len(), r.everyone) {
            (0, true) => {}
            (n, false) if n >= 2 => {
                if let Some(bad) = r.any_of.iter().find(|c| letter_index(**c).is_none()) {
                    fail(
                        format!("rulings[{i}].any_of"),
                        format!("{bad:?} is not a choice letter a to z"),
                    );
                }
            }
            _ => fail(
                format!("rulings[{i}]"),
                "a ruling is either any_of (two or more letters) or everyone: true".into(),
            ),
        }
        if let Some(p) = &r.provenance {
            check_provenance(p, &format!("rulings[{i}].provenance"), &mut fail);
        }
    }
    for (i, p) in pack.prohibited.iter().enumerate() {
        entry_id("prohibited", i, &p.problem_id, &mut fail);
        if p.letters.is_empty() || p.letters.iter().any(|c| letter_index(*c).is_none()) {
            fail(
                format!("prohibited[{i}].letters"),
                "expected one or more choice letters a to z".into(),
            );
        }
        if let Some(prov) = &p.provenance {
            check_provenance(prov, &format!("prohibited[{i}].provenance"), &mut fail);
        }
    }
    errors
}

fn check_provenance(p: &Provenance, field: &str, fail: &mut dyn FnMut(String, String)) {
    if p.source.trim().is_empty() || p.source.chars().count() > 500 {
        fail(
            format!("{field}.source"),
            "expected the source, 1 to 500 characters".into(),
        );
    }
    match (&p.date, p.kind) {
        (Some(date), _) if !is_date(date) => fail(
            format!("{field}.date"),
            format!("expected YYYY-MM-DD or YYYY-MM, got {date:?}"),
        ),
        (None, ProvenanceKind::Official) => fail(
            format!("{field}.date"),
            "an official entry names the date of its source".into(),
        ),
        _ => {}
    }
    if p.kind == ProvenanceKind::Annotated && p.by.as_deref().is_none_or(|b| b.trim().is_empty()) {
        fail(
            format!("{field}.by"),
            "an annotated entry names who set it".into(),
        );
    }
    for (name, value) in [("by", &p.by), ("note", &p.note)] {
        if value.as_ref().is_some_and(|v| v.chars().count() > 500) {
            fail(format!("{field}.{name}"), "at most 500 characters".into());
        }
    }
}

/// `YYYY-MM-DD` or `YYYY-MM`.
fn is_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let number = |p: &str, len: usize, range: std::ops::RangeInclusive<u32>| {
        p.len() == len
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse().is_ok_and(|n| range.contains(&n))
    };
    match parts.as_slice() {
        [y, m] => number(y, 4, 1900..=2200) && number(m, 2, 1..=12),
        [y, m, d] => number(y, 4, 1900..=2200) && number(m, 2, 1..=12) && number(d, 2, 1..=31),
        _ => false,
    }
}

/// The built-in packs' files: (file name, text).
const BUILT_IN_FILES: [(&str, &str); 9] = [
    (
        "medical-112.json",
        include_str!("../rules/medical-112.json"),
    ),
    (
        "medical-113.json",
        include_str!("../rules/medical-113.json"),
    ),
    (
        "medical-114.json",
        include_str!("../rules/medical-114.json"),
    ),
    (
        "medical-115.json",
        include_str!("../rules/medical-115.json"),
    ),
    (
        "medical-116.json",
        include_str!("../rules/medical-116.json"),
    ),
    (
        "medical-117.json",
        include_str!("../rules/medical-117.json"),
    ),
    (
        "medical-118.json",
        include_str!("../rules/medical-118.json"),
    ),
    (
        "medical-119.json",
        include_str!("../rules/medical-119.json"),
    ),
    (
        "medical-120.json",
        include_str!("../rules/medical-120.json"),
    ),
];

/// The built-in packs: the 112th to the 120th medical licensing exams (2018–2026).
pub fn built_in() -> &'static [RulePack] {
    static PACKS: LazyLock<Vec<RulePack>> = LazyLock::new(|| {
        // Checked by this module's tests: a file that did not parse would be left out here,
        // and its exam scored without a verdict, rather than stop the program.
        BUILT_IN_FILES
            .iter()
            .filter_map(|(file, text)| parse(file, text).ok())
            .collect()
    });
    &PACKS
}

/// The built-in packs with each of `packs` in place of its exam's (or beside them, for an exam
/// without one); of several packs for one exam, the last given stands.
pub fn built_in_with(packs: impl IntoIterator<Item = RulePack>) -> Vec<RulePack> {
    let mut all = built_in().to_vec();
    for pack in packs {
        match all.iter_mut().find(|p| p.exam == pack.exam) {
            Some(p) => *p = pack,
            None => all.push(pack),
        }
    }
    all
}

/// The built-in pack of exam `exam` (its number).
pub fn built_in_for(exam: &str) -> Option<&'static RulePack> {
    built_in().iter().find(|p| p.exam == exam)
}

impl RulePack {
    /// The rule of `section`.
    pub fn section(&self, section: Section) -> Option<&SectionRule> {
        self.sections.iter().find(|s| s.section == section)
    }

    /// The section block `block` belongs to.
    pub fn section_of_block(&self, block: &str) -> Option<Section> {
        self.sections
            .iter()
            .find(|s| s.blocks.iter().any(|b| b == block))
            .map(|s| s.section)
    }

    /// The points question `number` of `block` is worth, when the pack's sections say (files
    /// that carry points keep their own).
    pub fn points_of(&self, block: &str, number: u32) -> Option<u32> {
        let section = self
            .sections
            .iter()
            .find(|s| s.blocks.iter().any(|b| b == block))?;
        Some(
            section
                .points
                .iter()
                .find(|r| {
                    r.block.as_deref().is_none_or(|b| b == block)
                        && (r.numbers[0]..=r.numbers[1]).contains(&number)
                })
                .map_or(1, |r| r.points),
        )
    }

    /// The provenance of an entry: its own, else the pack's.
    pub fn provenance_of<'a>(&'a self, own: Option<&'a Provenance>) -> &'a Provenance {
        own.unwrap_or(&self.provenance)
    }

    /// `questions` with this pack's rulings, exclusions and prohibited choices applied to the
    /// questions of its exam (ids without a namespace that it names), and what was applied:
    /// (problem id, what, provenance).
    pub fn apply(&self, questions: &mut [Question]) -> Vec<Applied> {
        let mut applied = Vec::new();
        for q in questions.iter_mut() {
            if let Some(e) = self.excluded.iter().find(|e| e.problem_id == q.problem_id)
                && q.points != 0
            {
                q.points = 0;
                applied.push(Applied {
                    problem_id: q.problem_id.clone(),
                    what: "excluded from scoring".into(),
                    provenance: self.provenance_of(e.provenance.as_ref()).clone(),
                });
            }
            if let Some(r) = self.rulings.iter().find(|r| r.problem_id == q.problem_id) {
                let gold = if r.everyone {
                    Gold::Everyone
                } else {
                    let mut letters = r.any_of.clone();
                    letters.sort_unstable();
                    letters.dedup();
                    Gold::AnyOf { letters }
                };
                if q.gold != gold {
                    applied.push(Applied {
                        problem_id: q.problem_id.clone(),
                        what: format!(
                            "answer {} by ruling (was {})",
                            gold.display(),
                            q.gold.display()
                        ),
                        provenance: self.provenance_of(r.provenance.as_ref()).clone(),
                    });
                    q.gold = gold;
                }
            }
            if q.meta.prohibited.is_empty()
                && let Some(p) = self
                    .prohibited
                    .iter()
                    .find(|p| p.problem_id == q.problem_id)
            {
                let mut letters: Vec<char> = p
                    .letters
                    .iter()
                    .copied()
                    .filter(|l| letter_index(*l).is_some_and(|i| i < q.choices.len()))
                    .collect();
                letters.sort_unstable();
                letters.dedup();
                q.meta.prohibited = letters;
            }
        }
        applied
    }
}

/// One change a pack made to a question before scoring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Applied {
    pub problem_id: String,
    pub what: String,
    pub provenance: Provenance,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_pack_parses_and_names_its_sources() {
        for (file, text) in BUILT_IN_FILES {
            let pack = parse(file, text).unwrap_or_else(|errors| {
                panic!(
                    "{}",
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            });
            assert_eq!(file, format!("medical-{}.json", pack.exam));
            assert_eq!(
                u32::from(pack.year),
                pack.exam.parse::<u32>().unwrap() + 1906
            );
            let required = pack.section(Section::Required).expect("required");
            let general = pack.section(Section::General).expect("general");
            assert_eq!(required.pass.kind, PassKind::Share);
            assert_eq!(general.pass.kind, PassKind::Points);
            assert!(!pack.provenance.source.is_empty());
        }
        assert_eq!(built_in().len(), BUILT_IN_FILES.len());
    }

    #[test]
    fn the_119th_exam_has_its_ruling_its_layout_and_its_cut_off() {
        let pack = built_in_for("119").expect("119");
        assert_eq!(pack.year, 2025);
        assert_eq!(pack.section_of_block("E"), Some(Section::Required));
        assert_eq!(pack.section_of_block("C"), Some(Section::General));
        assert_eq!(pack.points_of("B", 25), Some(1));
        assert_eq!(pack.points_of("E", 26), Some(3));
        assert_eq!(pack.points_of("A", 75), Some(1));
        let general = pack.section(Section::General).unwrap();
        assert_eq!((general.pass.min, general.pass.of), (Some(221), 300));
        let ruling = pack
            .rulings
            .iter()
            .find(|r| r.problem_id == "119E28")
            .unwrap();
        assert_eq!(ruling.any_of, vec!['a', 'c']);
        // 112th: blocks of 49 and 51 questions, laid out differently.
        let old = built_in_for("112").unwrap();
        assert_eq!(old.points_of("B", 24), Some(1));
        assert_eq!(old.points_of("B", 25), Some(3));
        assert_eq!(old.points_of("E", 26), Some(1));
        assert_eq!(old.points_of("E", 27), Some(3));
    }

    #[test]
    fn a_bad_pack_is_refused_with_every_field_named() {
        let text = r#"{
  "format": "kokushi-rules/1",
  "exam": "119",
  "year": 2025,
  "version": 0,
  "title": "t",
  "provenance": {"kind": "official", "source": "MHLW"},
  "sections": [
    {"section": "required", "blocks": ["B", "E"],
     "pass": {"kind": "share", "share": 1.5, "of": 200}},
    {"section": "general", "blocks": ["A", "B"],
     "pass": {"kind": "points", "min": 301, "of": 300}}
  ],
  "prohibited_limit": {"value": 3},
  "rulings": [
    {"problem_id": "119E28", "any_of": ["a"]},
    {"problem_id": "118E28", "everyone": true}
  ],
  "excluded": [{"problem_id": "119E28"}]
}"#;
        let errors = parse("mine.json", text).unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for expected in [
            "field `version`",
            "field `provenance.date`",
            "field `sections[0].pass.share`",
            "field `sections[1].blocks`: block B is already in sections[0]",
            "field `sections[1].pass.min`: 301 is more than",
            "mine.json:16: field `rulings[0]`",
            "field `rulings[1].problem_id`: expected a problem id of exam 119",
            "field `rulings[0].problem_id`: 119E28 is already ruled on at excluded[0]",
        ] {
            assert!(
                shown.iter().any(|s| s.contains(expected)),
                "{expected:?} not in {shown:#?}"
            );
        }
        let unknown = parse("x.json", r#"{"format": "kokushi-rules/1", "oops": 1}"#).unwrap_err();
        assert!(
            unknown[0].to_string().starts_with("x.json:1: "),
            "{unknown:?}"
        );
    }

    #[test]
    fn a_pack_applies_its_rulings_and_exclusions_to_its_own_exam_only() {
        let question = |id: &str, gold: Gold| Question {
            problem_id: id.into(),
            text: "t".into(),
            choices: vec!["1".into(), "2".into(), "3".into(), "4".into(), "5".into()],
            gold,
            points: 1,
            text_only: true,
            meta: Default::default(),
        };
        let pack = built_in_for("117").unwrap();
        let mut questions = vec![
            question("117C15", Gold::Letters { letters: vec!['a'] }),
            question("117C16", Gold::Letters { letters: vec!['a'] }),
            question("denqa:117C15", Gold::Letters { letters: vec!['a'] }),
        ];
        let applied = pack.apply(&mut questions);
        assert_eq!(questions[0].points, 0);
        assert_eq!(questions[1].points, 1);
        assert_eq!(questions[2].points, 1, "a namespaced id is another exam's");
        assert_eq!(applied.len(), 1);
        assert_eq!(applied[0].provenance.kind, ProvenanceKind::Official);

        let pack = built_in_for("119").unwrap();
        let mut questions = vec![question(
            "119E28",
            Gold::Letters {
                letters: vec!['a', 'c'],
            },
        )];
        let applied = pack.apply(&mut questions);
        assert_eq!(
            questions[0].gold,
            Gold::AnyOf {
                letters: vec!['a', 'c']
            }
        );
        assert_eq!(applied[0].provenance.kind, ProvenanceKind::Annotated);
    }
}
