//! Repairs an import can make to a record it would otherwise refuse, where the repair is safe:
//! choices written inside the stem split out, answers written in full-width or upper-case
//! letters (or run together, `ac`) made plain, and choices carrying their own numbering or
//! letter (`1. …`, `a) …`) stripped of it.
//!
//! Each repair is proposed with what it changes (before and after); an import applies only the
//! ones it is told to accept ([`RepairPolicy`]), so nothing changes a user's data unasked.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::exam::choice_letter;

/// What a repair does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RepairKind {
    /// The stem ends with the choices (`… a「…」 b「…」 …`) and `choices` is empty: split them out.
    ChoicesInStem,
    /// Answer letters in full width or upper case (`Ｃ`, `C`), or run together (`ac`).
    LetterForm,
    /// Every choice starts with its own number or letter (`1. `, `①`, `a) `): strip it.
    Numbering,
}

impl RepairKind {
    pub const ALL: [RepairKind; 3] = [Self::ChoicesInStem, Self::LetterForm, Self::Numbering];

    pub fn id(self) -> &'static str {
        match self {
            Self::ChoicesInStem => "choices_in_stem",
            Self::LetterForm => "letter_form",
            Self::Numbering => "numbering",
        }
    }

    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.id() == id)
    }
}

/// One repair of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Repair {
    /// The record's id as its file writes it.
    pub problem_id: String,
    pub file: String,
    pub line: usize,
    pub kind: RepairKind,
    /// The field it changes (`choices`, `answer`).
    pub field: String,
    pub before: String,
    pub after: String,
}

/// Which proposed repairs an import applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RepairPolicy {
    /// None: each is only proposed.
    #[default]
    None,
    /// Every safe repair.
    All,
    /// These: (problem id as the file writes it, kind).
    Only(BTreeSet<(String, RepairKind)>),
}

impl RepairPolicy {
    pub fn accepts(&self, problem_id: &str, kind: RepairKind) -> bool {
        match self {
            Self::None => false,
            Self::All => true,
            Self::Only(accepted) => accepted.contains(&(problem_id.to_owned(), kind)),
        }
    }

    /// Reads `all`, or a comma-separated list of `ID:KIND` (`119E45:choices_in_stem`); an error
    /// names the item at fault.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "all" {
            return Ok(Self::All);
        }
        let mut accepted = BTreeSet::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (id, kind) = item.split_once(':').ok_or_else(|| {
                format!("{item:?}: expected ID:KIND, e.g. 119E45:choices_in_stem")
            })?;
            let kind = RepairKind::from_id(kind.trim()).ok_or_else(|| {
                format!(
                    "{item:?}: no repair {kind:?}; repairs are {}",
                    RepairKind::ALL.map(RepairKind::id).join(", ")
                )
            })?;
            accepted.insert((id.trim().to_owned(), kind));
        }
        Ok(Self::Only(accepted))
    }
}

/// Records one import may leave out at most, and the longest `ID:REASON` it reads.
pub const MAX_EXCLUSIONS: usize = 1000;
pub const MAX_EXCLUSION_CHARS: usize = 500;

/// Reads one exclusion, `ID:REASON` (`119C18:the stem is empty`): both parts non-empty, at
/// most [`MAX_EXCLUSION_CHARS`] characters, no control characters. The error names the item.
pub fn parse_exclusion(item: &str) -> Result<(String, String), String> {
    item.split_once(':')
        .map(|(id, reason)| (id.trim(), reason.trim()))
        .filter(|(id, reason)| {
            !id.is_empty()
                && !reason.is_empty()
                && item.chars().count() <= MAX_EXCLUSION_CHARS
                && !item.chars().any(char::is_control)
        })
        .map(|(id, reason)| (id.to_owned(), reason.to_owned()))
        .ok_or_else(|| {
            format!(
                "{item:?}: expected ID:REASON of at most {MAX_EXCLUSION_CHARS} characters \
                 without control characters, e.g. \"119C18:the stem is empty\""
            )
        })
}

/// Reads every exclusion of `items` into id → reason, at most [`MAX_EXCLUSIONS`] of them.
pub fn parse_exclusions<'a>(
    items: impl IntoIterator<Item = &'a str>,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    for item in items {
        if out.len() >= MAX_EXCLUSIONS {
            return Err(format!("at most {MAX_EXCLUSIONS} records can be left out"));
        }
        let (id, reason) = parse_exclusion(item)?;
        out.insert(id, reason);
    }
    Ok(out)
}

/// The repairs `fields` (one record in IgakuQA's fields) admits, each with whether `accept`
/// took it; the accepted ones are applied to `fields`.
pub fn repair_record(
    file: &str,
    line: usize,
    fields: &mut Map<String, Value>,
    accept: impl Fn(&str, RepairKind) -> bool,
) -> Vec<(Repair, bool)> {
    let problem_id = fields
        .get("problem_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut out = Vec::new();
    let mut propose = |kind: RepairKind,
                       field: &str,
                       before: &Value,
                       after: Value,
                       fields: &mut Map<String, Value>|
     -> bool {
        let applied = accept(&problem_id, kind);
        out.push((
            Repair {
                problem_id: problem_id.clone(),
                file: file.to_owned(),
                line,
                kind,
                field: field.to_owned(),
                before: shown(before),
                after: shown(&after),
            },
            applied,
        ));
        if applied {
            fields.insert(field.to_owned(), after);
        }
        applied
    };

    // Choices inside the stem: only when `choices` is empty and the answer names letters.
    let no_choices = matches!(fields.get("choices"), Some(Value::Array(c)) if c.is_empty());
    let answer_letters = answer_texts(fields.get("answer")).is_some_and(|texts| {
        texts
            .iter()
            .all(|t| t.chars().all(|c| letter_index_any(c).is_some()))
    });
    if no_choices
        && answer_letters
        && let Some(Value::String(stem)) = fields.get("problem_text").cloned()
        && let Some((rest, choices)) = split_choices_from_stem(&stem)
    {
        let choices = Value::Array(choices.into_iter().map(Value::String).collect());
        // What moves: the stem's tail from the first choice on (the rest stays the stem).
        let tail = stem.trim_start()[rest.len()..].trim();
        let before = Value::String(format!(
            "…{rest_end} {tail}",
            rest_end = last_chars(&rest, 12)
        ));
        if propose(
            RepairKind::ChoicesInStem,
            "choices",
            &before,
            choices.clone(),
            fields,
        ) {
            fields.insert("problem_text".into(), Value::String(rest));
        }
    }

    // Numbering on every choice (read in place: the choices are copied only when a repair is
    // proposed).
    let numbering = match fields.get("choices") {
        Some(Value::Array(choices)) if choices.len() >= 2 => choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.as_str()
                    .and_then(|t| strip_numbering(t, i))
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
            })
            .collect::<Option<Vec<Value>>>()
            .map(|stripped| (Value::Array(choices.clone()), Value::Array(stripped))),
        _ => None,
    };
    if let Some((before, after)) = numbering {
        propose(RepairKind::Numbering, "choices", &before, after, fields);
    }

    // Letter forms in the answer (and the prohibited choices).
    for field in ["answer", "prohibited"] {
        let Some(Value::Array(items)) = fields.get(field) else {
            continue;
        };
        let mut changed = false;
        let mut plain = Vec::new();
        for item in items {
            let Some(text) = item.as_str() else {
                plain.push(item.clone());
                continue;
            };
            let trimmed = text.trim();
            // "a or d" keeps its form; its letters are made plain.
            if trimmed.contains(" or ") {
                let parts: Option<Vec<char>> = trimmed
                    .split(" or ")
                    .map(|p| single_plain(p.trim()))
                    .collect();
                match parts {
                    Some(parts) => {
                        let joined = parts
                            .iter()
                            .map(char::to_string)
                            .collect::<Vec<_>>()
                            .join(" or ");
                        changed |= joined != trimmed;
                        plain.push(Value::String(joined));
                    }
                    None => plain.push(item.clone()),
                }
                continue;
            }
            let letters: Option<Vec<char>> = (!trimmed.is_empty() && trimmed != "NA")
                .then(|| {
                    trimmed
                        .chars()
                        .map(letter_index_any)
                        .collect::<Option<Vec<_>>>()
                })
                .flatten()
                .map(|indices| indices.into_iter().map(choice_letter).collect());
            match letters {
                Some(letters)
                    if letters.iter().collect::<String>() != trimmed || letters.len() > 1 =>
                {
                    changed = true;
                    plain.extend(letters.into_iter().map(|c| Value::String(c.to_string())));
                }
                _ => plain.push(item.clone()),
            }
        }
        if changed {
            let before = Value::Array(items.clone());
            propose(
                RepairKind::LetterForm,
                field,
                &before,
                Value::Array(plain),
                fields,
            );
        }
    }
    out
}

/// The last `n` characters of `text`.
fn last_chars(text: &str, n: usize) -> &str {
    let start = text
        .char_indices()
        .rev()
        .nth(n.saturating_sub(1))
        .map_or(0, |(at, _)| at);
    &text[start..]
}

/// A field's value as a person reads it.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The answer's texts, when it is a list of texts.
fn answer_texts(answer: Option<&Value>) -> Option<Vec<&str>> {
    match answer? {
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// The index of a choice letter in any form: `a`, `A`, `ａ`, `Ａ` → 0.
fn letter_index_any(c: char) -> Option<usize> {
    let ascii = match c {
        'ａ'..='ｚ' | 'Ａ'..='Ｚ' => char::from_u32(c as u32 - 0xFEE0)?,
        other => other,
    };
    ascii
        .is_ascii_alphabetic()
        .then(|| usize::from(ascii.to_ascii_lowercase() as u8 - b'a'))
}

/// One letter in any form, made plain.
fn single_plain(text: &str) -> Option<char> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => letter_index_any(c).map(choice_letter),
        _ => None,
    }
}

/// Choice `i`'s text without its own numbering: `1. `, `1)`, `(1)`, `①`, or its letter
/// (`a. `, `a) `, `Ａ．`); `None` when it does not start so.
fn strip_numbering(text: &str, i: usize) -> Option<&str> {
    let t = text.trim_start();
    let number = (i + 1).to_string();
    let circled = char::from_u32(0x2460 + u32::try_from(i).ok()?)?;
    let rest = if let Some(rest) = t.strip_prefix(circled) {
        rest
    } else if let Some(rest) = t
        .strip_prefix('(')
        .or_else(|| t.strip_prefix('（'))
        .and_then(|r| r.strip_prefix(number.as_str()))
        .and_then(|r| r.strip_prefix(')').or_else(|| r.strip_prefix('）')))
    {
        rest
    } else {
        let after = if let Some(rest) = t.strip_prefix(number.as_str()) {
            rest
        } else {
            let mut chars = t.chars();
            let first = chars.next()?;
            if letter_index_any(first)? != i {
                return None;
            }
            chars.as_str()
        };
        let mut chars = after.chars();
        match chars.next()? {
            '.' | '．' | '、' | ')' | '）' | ':' | '：' => chars.as_str(),
            _ => return None,
        }
    };
    Some(rest.trim())
}

/// A stem that ends with its choices, each introduced by its letter after a space (`… どれか。
/// a「…」 b「…」 c「…」`), as (the stem before them, the choices). The letters must run from
/// `a` without a gap to the last one, and there must be at least three.
pub fn split_choices_from_stem(stem: &str) -> Option<(String, Vec<String>)> {
    let chars: Vec<(usize, char)> = stem.char_indices().collect();
    // (byte where the marker starts, letter index, byte where its text starts)
    let mut marks: Vec<(usize, usize, usize)> = Vec::new();
    for (k, &(at, c)) in chars.iter().enumerate() {
        let Some(letter) = letter_index_any(c) else {
            continue;
        };
        let after_space = k > 0 && chars[k - 1].1.is_whitespace();
        let next = chars.get(k + 1).map(|&(_, n)| n);
        // The letter stands alone: what follows is not a Latin letter, digit or space.
        let stands_alone = next.is_some_and(|n| {
            !n.is_ascii_alphanumeric() && !n.is_whitespace() && letter_index_any(n).is_none()
        });
        if after_space && stands_alone {
            marks.push((at, letter, at + c.len_utf8()));
        }
    }
    // From the last mark back: its letter, the one before, … down to `a`.
    let (&last, earlier) = marks.split_last()?;
    let mut chain = vec![last];
    let mut want = last.1.checked_sub(1);
    for &mark in earlier.iter().rev() {
        match want {
            Some(w) if mark.1 == w => {
                chain.push(mark);
                want = w.checked_sub(1);
            }
            Some(_) => {}
            None => break,
        }
    }
    if want.is_some() || chain.len() < 3 {
        return None;
    }
    chain.reverse();
    let mut choices = Vec::with_capacity(chain.len());
    for (n, &(_, _, text_start)) in chain.iter().enumerate() {
        let end = chain.get(n + 1).map_or(stem.len(), |&(start, _, _)| start);
        let text = stem[text_start..end].trim();
        if text.is_empty() {
            return None;
        }
        choices.push(text.to_owned());
    }
    let rest = stem[..chain[0].0].trim().to_owned();
    if rest.is_empty() {
        return None;
    }
    Some((rest, choices))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).expect("a record")
    }

    #[test]
    fn choices_written_inside_the_stem_are_split_out() {
        let (rest, choices) =
            split_choices_from_stem("適切な問診はどれか。 a「夜は眠れますか」 b「便秘はありますか」 c「おなかの張りはありますか」 d「手足のしびれはありますか」 e「周りに同じ症状の人はいますか」 ")
                .expect("split");
        assert_eq!(rest, "適切な問診はどれか。");
        assert_eq!(choices.len(), 5);
        assert_eq!(choices[4], "「周りに同じ症状の人はいますか」");
        // An upper-case C among lower-case letters, and a C inside the stem ("C198mEq/L",
        // after 、) that is not a marker.
        let (rest, choices) = split_choices_from_stem(
            "Na134mEq/L、C198mEq/L。次に静脈内投与すべき薬剤はどれか。 aアトロピン bジアゼパム Cフロセミド dアドレナリン eグルココルチコイド ",
        )
        .expect("split");
        assert!(rest.ends_with("どれか。"), "{rest}");
        assert_eq!(
            choices,
            vec![
                "アトロピン",
                "ジアゼパム",
                "フロセミド",
                "アドレナリン",
                "グルココルチコイド"
            ]
        );
        // A stem with a Latin word or two is not a list of choices.
        assert!(split_choices_from_stem("Which is a sign of b12 deficiency? a b").is_none());
        assert!(split_choices_from_stem("ビタミン a欠乏 で みられる b").is_none());
    }

    #[test]
    fn repairs_are_proposed_and_applied_only_when_accepted() {
        let json = r#"{"problem_id": "119E48", "problem_text": "どれか。 aアトロピン bジアゼパム Cフロセミド", "choices": [], "answer": ["Ｃ"]}"#;
        let mut fields = record(json);
        let proposed = repair_record("e.jsonl", 3, &mut fields, |_, _| false);
        let kinds: Vec<RepairKind> = proposed.iter().map(|(r, _)| r.kind).collect();
        assert_eq!(
            kinds,
            vec![RepairKind::ChoicesInStem, RepairKind::LetterForm]
        );
        assert!(proposed.iter().all(|(_, applied)| !applied));
        assert_eq!(fields, record(json), "nothing changes unasked");

        let accepted = repair_record("e.jsonl", 3, &mut fields, |id, _| id == "119E48");
        assert!(accepted.iter().all(|(_, applied)| *applied));
        assert_eq!(fields["problem_text"], "どれか。");
        assert_eq!(
            fields["choices"],
            serde_json::json!(["アトロピン", "ジアゼパム", "フロセミド"])
        );
        assert_eq!(fields["answer"], serde_json::json!(["c"]));
        assert_eq!(accepted[1].0.before, r#"["Ｃ"]"#);
        assert_eq!(
            accepted[0].0.before,
            "…どれか。 aアトロピン bジアゼパム Cフロセミド"
        );
    }

    #[test]
    fn numbering_and_run_together_letters_are_made_plain() {
        let mut fields = record(
            r#"{"problem_id": "1A1", "problem_text": "x", "choices": ["1. 甲", "2. 乙", "3) 丙"], "answer": ["AC"], "prohibited": ["b"]}"#,
        );
        let done = repair_record("f", 1, &mut fields, |_, _| true);
        assert_eq!(done.len(), 2, "{done:?}");
        assert_eq!(fields["choices"], serde_json::json!(["甲", "乙", "丙"]));
        assert_eq!(fields["answer"], serde_json::json!(["a", "c"]));
        assert_eq!(
            fields["prohibited"],
            serde_json::json!(["b"]),
            "already plain"
        );

        let mut circled = record(
            r#"{"problem_id": "1A2", "problem_text": "x", "choices": ["①甲", "②乙"], "answer": ["a or B"]}"#,
        );
        repair_record("f", 2, &mut circled, |_, _| true);
        assert_eq!(circled["choices"], serde_json::json!(["甲", "乙"]));
        assert_eq!(circled["answer"], serde_json::json!(["a or b"]));

        // Choices that merely start with a number are left alone when one does not.
        let mut mixed = record(
            r#"{"problem_id": "1A3", "problem_text": "x", "choices": ["1. 甲", "乙"], "answer": ["a"]}"#,
        );
        assert!(repair_record("f", 3, &mut mixed, |_, _| true).is_empty());
    }

    #[test]
    fn a_policy_reads_all_or_a_list() {
        assert_eq!(RepairPolicy::parse("all"), Ok(RepairPolicy::All));
        let only = RepairPolicy::parse("119E45:choices_in_stem, 119E48:letter_form").expect("list");
        assert!(only.accepts("119E45", RepairKind::ChoicesInStem));
        assert!(!only.accepts("119E45", RepairKind::LetterForm));
        let bad = RepairPolicy::parse("119E45:guess").unwrap_err();
        assert!(bad.contains("choices_in_stem"), "{bad}");
        assert!(
            RepairPolicy::parse("119E45")
                .unwrap_err()
                .contains("ID:KIND")
        );
    }
}
