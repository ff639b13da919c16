//! The IgakuQA JSON-lines format: one question a line, as published by the IgakuQA authors
//! (Kasai et al. 2023) and as Kokushi accepts uploads.
//!
//! Parsing is all-or-nothing: every problem in a file is reported (file, line, field, value),
//! and a caller writes nothing unless the whole import parsed.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use serde_json::Value;

use crate::exam::{Gold, Question, QuestionMeta, Section, letter_index};

/// The credit that must accompany IgakuQA questions wherever they are shown.
pub const IGAKUQA_CREDIT: &str = "Questions: Ministry of Health, Labour and Welfare of Japan \
(Public Data License 1.0). Formatted by Kasai, Kasai, Sakaguchi, Yamada and Radev, \
\"Evaluating GPT-4 and ChatGPT on Japanese Medical Licensing Examinations\", arXiv:2303.18027.";

/// One problem found in an uploaded file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FormatError {
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// The JSON field at fault, or `line` when the line itself is not a JSON object.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: field `{}`: {}",
            self.file, self.line, self.field, self.message
        )
    }
}

/// The largest IgakuQA119 question file read (it is parsed whole, not line by line).
pub const MAX_QUESTION_ARRAY_BYTES: usize = 8 << 20;

/// The header of IgakuQA119's answers file.
const IGAKUQA119_ANSWERS_HEADER: &str = "問題番号,解答";
/// The fields of an IgakuQA119 question.
const IGAKUQA119_FIELDS: &[&str] = &["number", "question", "choices", "has_image"];

/// The credit that must accompany IgakuQA119's questions wherever they are shown.
pub const IGAKUQA119_CREDIT: &str = "Questions: Ministry of Health, Labour and Welfare of Japan \
(Public Data License 1.0). Extracted and formatted by Naoto Iwase, \"IgakuQA119: LLM Evaluation \
on the 119th Japanese Medical Licensing Examination\", v1.0.0, 2025, doi:10.5281/zenodo.15743221 \
(Apache-2.0).";

/// The credit for questions with ids `ids`: IgakuQA119's for the 119th exam, IgakuQA's for the
/// 112th–116th (and for any other set, as before), each once, in that order.
pub fn credit_for<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let (mut igakuqa, mut igakuqa119) = (false, false);
    for id in ids {
        match split_problem_id(id) {
            _ if id.contains(':') => igakuqa = true,
            Some((119, _, _)) => igakuqa119 = true,
            _ => igakuqa = true,
        }
    }
    match (igakuqa119, igakuqa) {
        (true, true) => format!("{IGAKUQA119_CREDIT} {IGAKUQA_CREDIT}"),
        (true, false) => IGAKUQA119_CREDIT.to_owned(),
        _ => IGAKUQA_CREDIT.to_owned(),
    }
}

/// `choice` without its leading letter (`"a. 膵の萎縮"` → `"膵の萎縮"`, the letter `letter` in
/// either case or full width, then `.`, `．`, `、`, `)` or `）`); `None` when it does not
/// start so.
fn strip_choice_letter(choice: &str, letter: char) -> Option<&str> {
    let trimmed = choice.trim_start();
    let mut chars = trimmed.char_indices();
    let (_, first) = chars.next()?;
    let ascii = match first {
        'Ａ'..='Ｚ' | 'ａ'..='ｚ' => char::from_u32(first as u32 - 0xFEE0)?,
        other => other,
    };
    if ascii.to_ascii_lowercase() != letter {
        return None;
    }
    let (at, mark) = chars.next()?;
    if !matches!(mark, '.' | '．' | '、' | ')' | '）') {
        return None;
    }
    Some(trimmed[at + mark.len_utf8()..].trim_start())
}

/// Problems listed at most for one import; the rest are counted.
pub const MAX_LISTED_ERRORS: usize = 1000;

/// A file's bytes as text, or the error that names the line (and the byte within it) where
/// the first sequence that is not UTF-8 starts.
pub fn text_of<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, FormatError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let before = &bytes[..at];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let column = at
            - before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1)
            + 1;
        FormatError {
            file: file.to_owned(),
            line,
            field: "line".to_owned(),
            message: format!(
                "not UTF-8 text: byte {column} of the line starts an invalid sequence (save the \
                 file as UTF-8)"
            ),
        }
    })
}

/// The fields a question may have; any other name is refused (it is most likely a typo).
pub const FIELDS: &[&str] = &[
    "problem_id",
    "problem_text",
    "choices",
    "answer",
    "points",
    "text_only",
    "exam",
    "year",
    "block",
    "section",
    "specialty",
    "prohibited",
    "examinee_accuracy",
    "choice_shares",
    "ruling",
];

/// Accumulates the questions of one import (one or many files) and every problem found.
#[derive(Debug, Default)]
pub struct Importer {
    questions: Vec<Question>,
    errors: Vec<FormatError>,
    /// Problems found past the first [`MAX_LISTED_ERRORS`], counted but not kept.
    unlisted: usize,
    /// Every file given, with its number of lines, so that a set with no questions names them.
    files: Vec<(String, usize)>,
    /// problem_id → (file, line) of its first occurrence.
    seen: HashMap<String, (String, usize)>,
    /// Prefix for every problem id ("denqa" makes "116A1" into "denqa:116A1"). A namespaced
    /// set is not the medical exam: no medical rulings, sections or years are derived for it.
    namespace: Option<String>,
    /// IgakuQA119's questions, waiting for their answers file: (file, line, fields, the
    /// problems found in them so far).
    pending_answers: Vec<Pending119>,
    /// IgakuQA119's answers: problem id → (file, line, answer as written).
    answers: HashMap<String, (String, usize, String)>,
    /// Which proposed repairs to apply.
    policy: crate::repair::RepairPolicy,
    /// Records to leave out: problem id as the file writes it → reason.
    exclude: std::collections::BTreeMap<String, String>,
    /// Every repair proposed, and whether it was applied.
    repairs: Vec<(crate::repair::Repair, bool)>,
    /// Records left out as asked.
    excluded: Vec<ExcludedRecord>,
    /// Records refused as they stand.
    refused: Vec<RefusedRecord>,
}

/// An IgakuQA119 question waiting for its answer: (file, line, fields, problems found so far).
type Pending119 = (
    String,
    usize,
    serde_json::Map<String, Value>,
    Vec<FormatError>,
);

/// A record an import left out as asked, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExcludedRecord {
    pub problem_id: String,
    pub reason: String,
    pub file: String,
    pub line: usize,
}

/// A record an import refuses as it stands: its id as the file writes it, and where it is (the
/// problems listed at that file and line are its own). A preview offers to mend it or leave it
/// out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefusedRecord {
    pub problem_id: String,
    pub file: String,
    pub line: usize,
}

/// What an import changed: the repairs it applied and the records it left out, kept with the
/// exam set's version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportNotes {
    #[serde(default)]
    pub repairs: Vec<crate::repair::Repair>,
    #[serde(default)]
    pub excluded: Vec<ExcludedRecord>,
}

impl ImportNotes {
    pub fn is_empty(&self) -> bool {
        self.repairs.is_empty() && self.excluded.is_empty()
    }
}

/// Everything an import found: the questions it would store, every problem, the repairs it
/// proposed and those it applied, and the records it left out. Nothing is stored from it
/// unless `errors` is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportPreview {
    pub questions: Vec<Question>,
    pub errors: Vec<FormatError>,
    /// Repairs proposed and not applied.
    pub proposed: Vec<crate::repair::Repair>,
    pub applied: Vec<crate::repair::Repair>,
    pub excluded: Vec<ExcludedRecord>,
    /// Every record refused (with a known id), in the order met.
    pub refused: Vec<RefusedRecord>,
}

impl ImportPreview {
    /// What the import changed, to keep with the set.
    pub fn notes(&self) -> ImportNotes {
        ImportNotes {
            repairs: self.applied.clone(),
            excluded: self.excluded.clone(),
        }
    }
}

impl Importer {
    /// An importer for the medical exam and sets shaped like it.
    pub fn new() -> Self {
        Self::default()
    }

    /// An importer for a different exam whose ids would collide with the medical exam's (DenQA,
    /// JMMLU): every id becomes `namespace:id`. The namespace is letters, digits, `-` and `_`.
    pub fn with_namespace(namespace: &str) -> Result<Self, String> {
        if namespace.is_empty()
            || namespace.len() > 40
            || !namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "namespace {namespace:?} must be 1 to 40 letters, digits, '-' or '_'"
            ));
        }
        Ok(Self {
            namespace: Some(namespace.to_owned()),
            ..Self::default()
        })
    }

    /// Parses one file's content: `.csv` files as the CSV upload format, anything else as
    /// JSON lines. Blank lines are skipped; a leading byte-order mark is ignored.
    pub fn add_file(&mut self, file: &str, content: &str) {
        let content = content.strip_prefix('\u{feff}').unwrap_or(content);
        if file.to_ascii_lowercase().ends_with(".csv") {
            if content.trim_start().starts_with(IGAKUQA119_ANSWERS_HEADER) {
                return self.add_igakuqa119_answers(file, content);
            }
            return self.add_csv(file, content);
        }
        // A JSON array: IgakuQA119's question files (JSON lines never start with `[`).
        if content.trim_start().starts_with('[') {
            return self.add_igakuqa119_questions(file, content);
        }
        self.note_file(file, content);
        for (index, line) in content.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let line_no = index + 1;
            match serde_json::from_str::<serde_json::Map<String, Value>>(line) {
                Ok(fields) => self.add_fields(file, line_no, fields),
                Err(e) => self.push_error(file, line_no, "line", format!("not a JSON object: {e}")),
            }
        }
    }

    /// The CSV upload format: a header row naming the fields (choices as columns `a`, `b`,
    /// ...), then one question a record. See docs/exam-set-format.md.
    pub fn add_csv(&mut self, file: &str, content: &str) {
        let content = content.strip_prefix('\u{feff}').unwrap_or(content);
        self.note_file(file, content);
        let records = match crate::csv::records(content) {
            Ok(records) => records,
            Err((line, message)) => return self.push_error(file, line, "line", message),
        };
        let Some((header_line, header)) = records.first() else {
            return;
        };
        let header: Vec<String> = header.iter().map(|h| h.trim().to_owned()).collect();
        if !header.iter().any(|h| h == "problem_id") {
            let first = header.first().cloned().unwrap_or_default();
            return self.push_error(
                file,
                *header_line,
                "problem_id",
                format!(
                    "the first row must be a header naming the columns (problem_id, problem_text, \
                     a, b, ..., answer, ...); it starts with {first:?}. JMMLU files have no header: \
                     import them as JMMLU"
                ),
            );
        }
        let mut bad_header = false;
        let mut choice_columns = Vec::new();
        for (col, name) in header.iter().enumerate() {
            let is_choice = name.len() == 1 && name.chars().all(|c| c.is_ascii_lowercase());
            if is_choice {
                choice_columns.push((col, name.chars().next().unwrap_or('a')));
            } else if !FIELDS.contains(&name.as_str()) || name == "choices" {
                bad_header = true;
                // A header cell left empty is named by its place.
                let field = if name.trim().is_empty() {
                    format!("column {}", col + 1)
                } else {
                    name.clone()
                };
                self.push_error(
                    file,
                    *header_line,
                    &field,
                    format!(
                        "unknown column {name:?}; columns are the choice letters a, b, c, ... and {}",
                        FIELDS.iter().filter(|f| **f != "choices").copied().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        for (n, (_, letter)) in choice_columns.iter().enumerate() {
            if *letter != crate::exam::choice_letter(n) {
                bad_header = true;
                self.push_error(
                    file,
                    *header_line,
                    &letter.to_string(),
                    format!(
                        "choice columns must be a, b, c, ... in order; column {letter:?} is choice {}",
                        n + 1
                    ),
                );
            }
        }
        if bad_header {
            return;
        }
        for (line, record) in &records[1..] {
            if record.len() == 1 && record[0].trim().is_empty() {
                continue;
            }
            if record.len() != header.len() {
                self.push_error(
                    file,
                    *line,
                    "line",
                    format!("{} cells; the header has {}", record.len(), header.len()),
                );
                continue;
            }
            let mut fields = serde_json::Map::new();
            let mut choices: Vec<Value> = Vec::new();
            let mut gap: Option<char> = None;
            for (name, cell) in header.iter().zip(record) {
                let cell = cell.trim();
                if let Some((_, letter)) =
                    choice_columns.iter().find(|(_, l)| l.to_string() == *name)
                {
                    if cell.is_empty() {
                        gap.get_or_insert(*letter);
                    } else if let Some(empty) = gap {
                        self.push_error(
                            file,
                            *line,
                            name,
                            format!("choice {letter} is given but choice {empty} is empty"),
                        );
                    } else {
                        choices.push(Value::String(cell.to_owned()));
                    }
                    continue;
                }
                if cell.is_empty() {
                    continue;
                }
                let value = match name.as_str() {
                    "answer" if cell == "NA" => Value::String(cell.to_owned()),
                    "answer" | "prohibited" if !cell.contains(" or ") => Value::Array(
                        cell.split([',', '、'])
                            .map(|part| Value::String(part.trim().to_owned()))
                            .collect(),
                    ),
                    "answer" => Value::Array(vec![Value::String(cell.to_owned())]),
                    "text_only" => match cell.to_ascii_lowercase().as_str() {
                        "true" | "1" | "yes" => Value::Bool(true),
                        "false" | "0" | "no" => Value::Bool(false),
                        _ => Value::String(cell.to_owned()),
                    },
                    "year" => cell.parse::<u64>().map_or_else(
                        |_| Value::String(cell.to_owned()),
                        |y| Value::Number(y.into()),
                    ),
                    "examinee_accuracy" => cell
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map_or_else(|| Value::String(cell.to_owned()), Value::Number),
                    _ => Value::String(cell.to_owned()),
                };
                fields.insert(name.clone(), value);
            }
            fields.insert("choices".to_owned(), Value::Array(choices));
            self.add_fields(file, *line, fields);
        }
    }

    /// A JMMLU subject file: UTF-8 with a byte-order mark, no header, six columns
    /// `question, A, B, C, D, answer` (answer A–D; stray spaces trimmed). Question `n` of
    /// subject `anatomy` gets the id `anatomy-n` (inside the importer's namespace).
    pub fn add_jmmlu(&mut self, file: &str, subject: &str, content: &str) {
        self.note_file(file, content);
        if self.namespace.is_none() {
            return self.push_error(
                file,
                1,
                "problem_id",
                "JMMLU is another exam: its questions get ids like \"anatomy-1\", which need a \
                 namespace (import with --namespace jmmlu)"
                    .to_owned(),
            );
        }
        let content = content.strip_prefix('\u{feff}').unwrap_or(content);
        let records = match crate::csv::records(content) {
            Ok(records) => records,
            Err((line, message)) => return self.push_error(file, line, "line", message),
        };
        let mut number = 0;
        for (line, record) in records {
            if record.len() == 1 && record[0].trim().is_empty() {
                continue;
            }
            number += 1;
            if record.len() != 6 {
                self.push_error(
                    file,
                    line,
                    "line",
                    format!(
                        "{} cells; a JMMLU row has 6 (question, A, B, C, D, answer)",
                        record.len()
                    ),
                );
                continue;
            }
            let cell = |i: usize| Value::String(record[i].trim().to_owned());
            let mut fields = serde_json::Map::new();
            fields.insert(
                "problem_id".into(),
                Value::String(format!("{subject}-{number}")),
            );
            fields.insert("problem_text".into(), cell(0));
            fields.insert("choices".into(), Value::Array((1..5).map(cell).collect()));
            fields.insert(
                "answer".into(),
                Value::Array(vec![Value::String(record[5].trim().to_ascii_lowercase())]),
            );
            fields.insert("specialty".into(), Value::String(subject.to_owned()));
            self.add_fields(file, line, fields);
        }
    }

    /// One of IgakuQA119's question files (`119A_json.json`): a JSON array of
    /// `{"number", "question", "choices": ["a. …", …], "has_image"}`. The questions wait for
    /// their answers (IgakuQA119's `correct_answers.csv`, in the same import) until
    /// [`Importer::finish`]; then each is checked as an IgakuQA line would be.
    fn add_igakuqa119_questions(&mut self, file: &str, content: &str) {
        self.note_file(file, content);
        // The whole array is read at once (unlike JSON lines): bounded first. A block of the
        // exam is a few hundred kilobytes.
        if content.len() > MAX_QUESTION_ARRAY_BYTES {
            return self.push_error(
                file,
                1,
                "line",
                format!(
                    "a JSON array of {} bytes; an IgakuQA119 question file may have at most {MAX_QUESTION_ARRAY_BYTES}",
                    content.len()
                ),
            );
        }
        // The line of each question's "number", in order, found in one pass: item `i` is
        // reported at the `i`-th.
        let mut number_lines = Vec::new();
        let mut line = 1;
        let mut counted = 0;
        for (at, _) in content.match_indices("\"number\"") {
            line += content[counted..at].matches('\n').count();
            counted = at;
            number_lines.push(line);
        }
        let items = match serde_json::from_str::<Value>(content) {
            Ok(Value::Array(items)) => items,
            Ok(_) => {
                return self.push_error(
                    file,
                    1,
                    "line",
                    "expected a JSON array of questions".into(),
                );
            }
            Err(e) => {
                return self.push_error(
                    file,
                    e.line(),
                    "line",
                    format!("not a JSON array of IgakuQA119 questions: {e}"),
                );
            }
        };
        for (index, item) in items.into_iter().enumerate() {
            let number = item
                .get("number")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let line = number_lines.get(index).copied().unwrap_or(1);
            let Value::Object(mut item) = item else {
                self.push_error(
                    file,
                    line,
                    "line",
                    format!("item {} is not a JSON object", index + 1),
                );
                continue;
            };
            let mut fields = serde_json::Map::new();
            let mut problems = Vec::new();
            for key in item.keys() {
                if !IGAKUQA119_FIELDS.contains(&key.as_str()) {
                    problems.push(FormatError {
                        file: file.to_owned(),
                        line,
                        field: key.clone(),
                        message: format!(
                            "unknown field {key:?} in an IgakuQA119 question; known fields: {}",
                            IGAKUQA119_FIELDS.join(", ")
                        ),
                    });
                }
            }
            if let Some(number) = item.remove("number") {
                fields.insert("problem_id".into(), number);
            }
            if let Some(Value::String(text)) = item.remove("question") {
                fields.insert(
                    "problem_text".into(),
                    Value::String(text.trim_end().to_owned()),
                );
            } else {
                fields.insert("problem_text".into(), Value::String(String::new()));
            }
            match item.remove("choices") {
                Some(Value::Array(choices)) => {
                    let mut plain = Vec::with_capacity(choices.len());
                    for (i, choice) in choices.into_iter().enumerate() {
                        let Value::String(choice) = choice else {
                            plain.push(choice);
                            continue;
                        };
                        let letter = crate::exam::choice_letter(i);
                        match strip_choice_letter(&choice, letter) {
                            Some(rest) => plain.push(Value::String(rest.to_owned())),
                            None => {
                                problems.push(FormatError {
                                    file: file.to_owned(),
                                    line,
                                    field: "choices".to_owned(),
                                    message: format!(
                                        "choice {} of {number} should start with its letter \"{letter}. \", got {choice:?}",
                                        i + 1
                                    ),
                                });
                                plain.push(Value::String(choice));
                            }
                        }
                    }
                    fields.insert("choices".into(), Value::Array(plain));
                }
                Some(other) => {
                    fields.insert("choices".into(), other);
                }
                None => {}
            }
            match item.remove("has_image") {
                Some(Value::Bool(image)) => {
                    fields.insert("text_only".into(), Value::Bool(!image));
                }
                Some(other) => {
                    fields.insert("text_only".into(), other);
                }
                None => {}
            }
            self.pending_answers
                .push((file.to_owned(), line, fields, problems));
        }
    }

    /// IgakuQA119's answers file: a header `問題番号,解答`, then one `119A1,a` a line (letters
    /// run together for several answers, `ac`; a number for a calculation question).
    fn add_igakuqa119_answers(&mut self, file: &str, content: &str) {
        self.note_file(file, content);
        let records = match crate::csv::records(content) {
            Ok(records) => records,
            Err((line, message)) => return self.push_error(file, line, "line", message),
        };
        for (line, record) in records.iter().skip(1) {
            if record.iter().all(|cell| cell.trim().is_empty()) {
                continue;
            }
            let [id, answer] = record.as_slice() else {
                self.push_error(
                    file,
                    *line,
                    "line",
                    format!("{} cells; an answers line is 問題番号,解答", record.len()),
                );
                continue;
            };
            let (id, answer) = (id.trim(), answer.trim());
            if answer.is_empty() {
                self.push_error(file, *line, "解答", format!("no answer for {id}"));
                continue;
            }
            if let Some((first_file, first_line, _)) = self.answers.get(id) {
                let message =
                    format!("a second answer for {id} (the first is at {first_file}:{first_line})");
                self.push_error(file, *line, "問題番号", message);
                continue;
            }
            self.answers
                .insert(id.to_owned(), (file.to_owned(), *line, answer.to_owned()));
        }
    }

    /// Gives each waiting IgakuQA119 question its answer and checks it as a line.
    fn join_igakuqa119(&mut self) {
        let pending = std::mem::take(&mut self.pending_answers);
        if !pending.is_empty() && self.answers.is_empty() {
            let mut files: Vec<&str> = pending.iter().map(|(f, ..)| f.as_str()).collect();
            files.dedup();
            for file in files {
                self.push_error(
                    file,
                    1,
                    "answer",
                    "IgakuQA119's question files need its answers file (correct_answers.csv: \
                     問題番号,解答) in the same import"
                        .to_owned(),
                );
            }
            return;
        }
        for (file, line, mut fields, problems) in pending {
            let id = fields
                .get("problem_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            // A record left out is left out whatever is wrong with it.
            if self.exclude.contains_key(&id) {
                self.add_fields(&file, line, fields);
                continue;
            }
            // A record with a problem of IgakuQA119's own form is refused with it (its choices
            // are not what they seem): not checked further, never among the questions.
            if !problems.is_empty() {
                for problem in problems {
                    self.record(problem);
                }
                self.refuse(&id, &file, line);
                continue;
            }
            match self.answers.get(&id) {
                Some((_, _, answer)) => {
                    let parts: Vec<Value> = if answer.chars().all(|c| c.is_ascii_alphabetic()) {
                        answer
                            .chars()
                            .map(|c| Value::String(c.to_ascii_lowercase().to_string()))
                            .collect()
                    } else {
                        vec![Value::String(answer.clone())]
                    };
                    fields.insert("answer".into(), Value::Array(parts));
                }
                None => {
                    self.push_error(
                        &file,
                        line,
                        "answer",
                        format!("the answers file has no answer for {id}"),
                    );
                    self.refuse(&id, &file, line);
                    continue;
                }
            }
            self.add_fields(&file, line, fields);
        }
    }

    fn push_error(&mut self, file: &str, line: usize, field: &str, message: String) {
        self.record(FormatError {
            file: file.to_owned(),
            line,
            field: field.to_owned(),
            message,
        });
    }

    /// Keeps a problem, or only counts it past [`MAX_LISTED_ERRORS`]: a file of millions of bad
    /// lines must not become millions of messages in memory and in the answer.
    fn record(&mut self, error: FormatError) {
        if self.errors.len() < MAX_LISTED_ERRORS {
            self.errors.push(error);
        } else {
            self.unlisted += 1;
        }
    }

    /// Applies `policy` to the repairs it proposes, and leaves out the records `exclude` names
    /// (problem id as the file writes it → reason). An exclusion naming no record is a problem.
    pub fn with_repairs(
        mut self,
        policy: crate::repair::RepairPolicy,
        exclude: std::collections::BTreeMap<String, String>,
    ) -> Self {
        self.policy = policy;
        self.exclude = exclude;
        self
    }

    fn add_fields(
        &mut self,
        file: &str,
        line_no: usize,
        mut fields: serde_json::Map<String, Value>,
    ) {
        let id = fields
            .get("problem_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(reason) = self.exclude.get(&id) {
            self.excluded.push(ExcludedRecord {
                problem_id: id,
                reason: reason.clone(),
                file: file.to_owned(),
                line: line_no,
            });
            return;
        }
        let policy = &self.policy;
        let found = crate::repair::repair_record(file, line_no, &mut fields, |id, kind| {
            policy.accepts(id, kind)
        });
        self.repairs.extend(found);
        match parse_fields(file, line_no, fields, self.namespace.as_deref()) {
            Ok(question) => {
                if let Some((first_file, first_line)) = self.seen.get(&question.problem_id) {
                    let message = format!(
                        "duplicate problem_id \"{}\" (first seen at {first_file}:{first_line})",
                        question.problem_id
                    );
                    self.push_error(file, line_no, "problem_id", message);
                    self.refuse(&id, file, line_no);
                } else {
                    self.seen
                        .insert(question.problem_id.clone(), (file.to_owned(), line_no));
                    self.questions.push(question);
                }
            }
            Err(errors) => {
                for error in errors {
                    self.record(error);
                }
                self.refuse(&id, file, line_no);
            }
        }
    }

    /// Notes the record `id` at `file:line` as refused (a record without an id is only its
    /// problems).
    fn refuse(&mut self, id: &str, file: &str, line: usize) {
        if !id.is_empty() && self.refused.len() < MAX_LISTED_ERRORS {
            self.refused.push(RefusedRecord {
                problem_id: id.to_owned(),
                file: file.to_owned(),
                line,
            });
        }
    }

    /// Remembers a file given, and how many lines it has.
    fn note_file(&mut self, file: &str, content: &str) {
        self.files.push((file.to_owned(), content.lines().count()));
    }

    /// The questions, or every problem found in any file. A set with no question at all is
    /// refused with each file named (at its last line: nothing came before it).
    pub fn finish(self) -> Result<Vec<Question>, Vec<FormatError>> {
        let report = self.finish_report();
        if report.errors.is_empty() {
            Ok(report.questions)
        } else {
            Err(report.errors)
        }
    }

    /// Everything the import found ([`ImportPreview`]), for a preview before anything is stored.
    pub fn finish_report(mut self) -> ImportPreview {
        self.join_igakuqa119();
        let named: Vec<(String, String)> = self
            .exclude
            .iter()
            .filter(|(id, _)| !self.excluded.iter().any(|e| &e.problem_id == *id))
            .map(|(id, reason)| (id.clone(), reason.clone()))
            .collect();
        for (id, _) in named {
            let file = self
                .files
                .first()
                .map(|(f, _)| f.clone())
                .unwrap_or_default();
            self.push_error(
                &file,
                1,
                "problem_id",
                format!("asked to leave out {id:?}, and no record has that id"),
            );
        }
        let (applied, proposed): (Vec<_>, Vec<_>) =
            self.repairs.into_iter().partition(|(_, applied)| *applied);
        let applied = applied.into_iter().map(|(r, _)| r).collect();
        let proposed = proposed.into_iter().map(|(r, _)| r).collect();
        let mut errors = self.errors;
        if errors.is_empty() && self.questions.is_empty() && self.excluded.is_empty() {
            let files = if self.files.is_empty() {
                vec![("(no file)".to_owned(), 0)]
            } else {
                self.files
            };
            errors = files
                .into_iter()
                .map(|(file, lines)| FormatError {
                    file,
                    line: lines.max(1),
                    field: "line".to_owned(),
                    message: "no questions: the file is empty or holds only blank lines".to_owned(),
                })
                .collect();
        } else if errors.is_empty() && self.questions.is_empty() {
            let first = &self.excluded[0];
            errors.push(FormatError {
                file: first.file.clone(),
                line: first.line,
                field: "problem_id".to_owned(),
                message: "every record is left out: nothing to import".to_owned(),
            });
        }
        if self.unlisted > 0
            && let Some(last) = errors.last().cloned()
        {
            errors.push(FormatError {
                message: format!(
                    "… and {} more problems, not listed (the first {MAX_LISTED_ERRORS} are)",
                    self.unlisted
                ),
                ..last
            });
        }
        ImportPreview {
            questions: self.questions,
            errors,
            proposed,
            applied,
            excluded: self.excluded,
            refused: self.refused,
        }
    }
}

fn parse_fields(
    file: &str,
    line: usize,
    mut raw: serde_json::Map<String, Value>,
    namespace: Option<&str>,
) -> Result<Question, Vec<FormatError>> {
    let err = |field: &str, message: String| FormatError {
        file: file.to_owned(),
        line,
        field: field.to_owned(),
        message,
    };
    let mut errors = Vec::new();
    for name in raw.keys() {
        if !FIELDS.contains(&name.as_str()) {
            errors.push(err(
                if name.trim().is_empty() {
                    "(a field with an empty name)"
                } else {
                    name
                },
                format!(
                    "unknown field {name:?}; known fields: {}",
                    FIELDS.join(", ")
                ),
            ));
        }
    }

    let problem_id = match raw.remove("problem_id") {
        Some(Value::String(s)) if is_valid_problem_id(&s, namespace.is_some()) => s,
        Some(v) => {
            let want = if namespace.is_some() {
                "an id of letters, digits, '-', '_' and '.'"
            } else {
                "an id like \"116A13\""
            };
            errors.push(err("problem_id", format!("expected {want}, got {v}")));
            String::new()
        }
        None => {
            errors.push(err("problem_id", "missing".to_owned()));
            String::new()
        }
    };
    let text = match raw.remove("problem_text") {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(v) => {
            errors.push(err(
                "problem_text",
                format!("expected non-empty text, got {v}"),
            ));
            String::new()
        }
        None => {
            errors.push(err("problem_text", "missing".to_owned()));
            String::new()
        }
    };
    let choices = match raw.remove("choices") {
        Some(Value::Array(items)) => {
            let mut choices = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Value::String(s) => choices.push(s),
                    v => errors.push(err("choices", format!("choice {} is not text: {v}", i + 1))),
                }
            }
            if choices.len() > 26 {
                errors.push(err(
                    "choices",
                    format!("{} choices; at most 26", choices.len()),
                ));
            }
            choices
        }
        Some(v) => {
            errors.push(err("choices", format!("expected a list of texts, got {v}")));
            Vec::new()
        }
        None => {
            errors.push(err("choices", "missing".to_owned()));
            Vec::new()
        }
    };
    let points_value = raw.remove("points");
    let points = match &points_value {
        // A file without points: the exam's built-in rule pack knows them (the 119th exam's
        // required questions 26–50 are worth 3), else 1.
        None => Some(default_points(&problem_id, namespace.is_some())),
        Some(Value::String(s)) => s.trim().parse::<u32>().ok().filter(|p| *p <= 100),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p <= 100),
        Some(_) => None,
    }
    .unwrap_or_else(|| {
        let got = points_value
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        errors.push(err(
            "points",
            format!("expected a whole number of points from 0 to 100 such as \"1\", got {got}"),
        ));
        0
    });
    let text_only = match raw.remove("text_only") {
        Some(Value::Bool(b)) => b,
        None => true,
        Some(v) => {
            errors.push(err("text_only", format!("expected true or false, got {v}")));
            true
        }
    };
    let gold = match raw.remove("answer") {
        Some(value) => parse_answer(&value, choices.len()).map_err(|m| err("answer", m)),
        None => Err(err("answer", "missing".to_owned())),
    };
    let gold = gold.unwrap_or_else(|e| {
        errors.push(e);
        Gold::Everyone
    });
    let mut meta = QuestionMeta::default();
    let mut text_field = |name: &str, errors: &mut Vec<FormatError>| match raw.remove(name) {
        None => None,
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= 200 => {
            Some(s.trim().to_owned())
        }
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(v) => {
            errors.push(err(
                name,
                format!("expected a text of 1 to 200 characters, got {v}"),
            ));
            None
        }
    };
    meta.exam = text_field("exam", &mut errors);
    meta.block = text_field("block", &mut errors);
    meta.specialty = text_field("specialty", &mut errors);
    let section = text_field("section", &mut errors);
    let ruling = text_field("ruling", &mut errors);
    if let Some(section) = section {
        meta.section = Section::from_id(&section).or_else(|| {
            errors.push(err(
                "section",
                format!("expected \"required\" or \"general\", got {section:?}"),
            ));
            None
        });
    }
    match raw.remove("year") {
        None => {}
        Some(v) => {
            let year = match &v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            match year.filter(|y| (1946..=2200).contains(y)) {
                Some(y) => meta.year = u16::try_from(y).ok(),
                None => errors.push(err(
                    "year",
                    format!("expected a year such as 2022, got {v}"),
                )),
            }
        }
    }
    match raw.remove("examinee_accuracy") {
        None => {}
        Some(v) => match v.as_f64().filter(|a| (0.0..=1.0).contains(a)) {
            Some(a) => meta.examinee_accuracy = Some(a),
            None => errors.push(err(
                "examinee_accuracy",
                format!("expected a share from 0 to 1 such as 0.83, got {v}"),
            )),
        },
    }
    match raw.remove("choice_shares") {
        None => {}
        Some(v) => match choice_shares(&v, choices.len()) {
            Ok(shares) => meta.choice_shares = shares,
            Err(message) => errors.push(err("choice_shares", message)),
        },
    }
    match raw.remove("prohibited") {
        None => {}
        Some(Value::Array(items)) => {
            for item in items {
                match item
                    .as_str()
                    .map(str::trim)
                    .and_then(|s| single_letter(s, choices.len()))
                {
                    Some(letter) => meta.prohibited.push(letter),
                    None => errors.push(err(
                        "prohibited",
                        format!("{item} is not a choice letter of this question"),
                    )),
                }
            }
            meta.prohibited.sort_unstable();
            meta.prohibited.dedup();
        }
        Some(v) => errors.push(err(
            "prohibited",
            format!("expected a list of choice letters, got {v}"),
        )),
    }
    let gold = match ruling.as_deref() {
        None => gold,
        Some("everyone") => Gold::Everyone,
        Some("any_of") => match gold {
            Gold::Letters { letters } if letters.len() > 1 => Gold::AnyOf { letters },
            other => {
                errors.push(err(
                    "ruling",
                    "\"any_of\" needs an answer listing two or more letters".to_owned(),
                ));
                other
            }
        },
        Some(other) => {
            errors.push(err(
                "ruling",
                format!("expected \"everyone\" or \"any_of\", got {other:?}"),
            ));
            gold
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    // A question the examiners ruled correct for everyone (116A71) is stored so; the ruling
    // comes from the exam's built-in rule pack, and belongs to the medical exam only (a dental
    // exam's "116A71" is another question).
    let gold = if namespace.is_none() && everyone_correct(&problem_id) {
        Gold::Everyone
    } else {
        gold
    };
    derive_structure(&problem_id, namespace.is_some(), &mut meta);
    let problem_id = match namespace {
        Some(ns) => format!("{ns}:{problem_id}"),
        None => problem_id,
    };
    Ok(Question {
        problem_id,
        text,
        choices,
        gold,
        points,
        text_only,
        meta,
    })
}

/// Fills in what the id tells where the file is silent: `116A13` is exam 116, block A. For the
/// medical exams with a built-in rule pack (112th–120th, 2018–2026, no namespace) it also gives
/// the year and the section from the pack (blocks B and E are required, the others general).
pub fn derive_structure(problem_id: &str, namespaced: bool, meta: &mut QuestionMeta) {
    let Some((exam, block, _number)) = split_problem_id(problem_id) else {
        return;
    };
    meta.exam.get_or_insert_with(|| exam.to_string());
    meta.block.get_or_insert_with(|| block.to_owned());
    if namespaced || meta.exam.as_deref() != Some(exam.to_string().as_str()) {
        return;
    }
    if let Some(pack) = crate::rules::built_in_for(&exam.to_string()) {
        meta.year.get_or_insert(pack.year);
        if meta.block.as_deref() == Some(block)
            && let Some(section) = pack.section_of_block(block)
        {
            meta.section.get_or_insert(section);
        }
    }
}

/// The points of a question whose file does not give them: what its exam's built-in rule pack
/// says for its block and number, else 1.
fn default_points(problem_id: &str, namespaced: bool) -> u32 {
    if namespaced {
        return 1;
    }
    split_problem_id(problem_id)
        .and_then(|(exam, block, number)| {
            crate::rules::built_in_for(&exam.to_string())?.points_of(block, number)
        })
        .unwrap_or(1)
}

/// Whether the built-in rule pack of the medical exam `problem_id` belongs to rules it correct
/// for everyone.
fn everyone_correct(problem_id: &str) -> bool {
    split_problem_id(problem_id)
        .and_then(|(exam, _, _)| crate::rules::built_in_for(&exam.to_string()))
        .is_some_and(|pack| {
            pack.rulings
                .iter()
                .any(|r| r.everyone && r.problem_id == problem_id)
        })
}

/// Each choice's share of examinees, from a list in the choices' order (`[0.05, 0.82, …]`) or
/// letters (`{"a": 0.05, "b": 0.82, …}`): one share from 0 to 1 for every choice.
fn choice_shares(value: &Value, choices: usize) -> Result<Vec<f64>, String> {
    let share = |v: &Value| v.as_f64().filter(|s| (0.0..=1.0).contains(s));
    let shares: Option<Vec<f64>> = match value {
        Value::Array(items) => items.iter().map(share).collect(),
        Value::Object(by_letter) => (0..choices)
            .map(|i| {
                let letter = char::from(b'a' + u8::try_from(i).ok()?).to_string();
                by_letter.get(&letter).and_then(share)
            })
            .collect::<Option<Vec<f64>>>()
            .filter(|_| by_letter.len() == choices),
        _ => None,
    };
    match shares {
        Some(shares) if choices == 0 => Err(format!(
            "a question without choices has no choice shares, got {}",
            shares.len()
        )),
        Some(shares) if shares.len() == choices => Ok(shares),
        _ => Err(format!(
            "expected one share from 0 to 1 for each of the {choices} choices, as a list in \
             their order ([0.05, 0.82, …]) or by letter ({{\"a\": 0.05, …}}), got {value}"
        )),
    }
}

/// `116A13` → (116, "A", 13).
pub fn split_problem_id(id: &str) -> Option<(u32, &str, u32)> {
    let digits_end = id.find(|c: char| !c.is_ascii_digit())?;
    let exam = id[..digits_end].parse().ok()?;
    let rest = &id[digits_end..];
    let block_end = rest.find(|c: char| !c.is_ascii_uppercase())?;
    if block_end == 0 {
        return None;
    }
    let number = rest[block_end..].parse().ok()?;
    Some((exam, &rest[..block_end], number))
}

fn single_letter(s: &str, choice_count: usize) -> Option<char> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => {
            let c = c.to_ascii_lowercase();
            letter_index(c)
                .is_some_and(|i| i < choice_count)
                .then_some(c)
        }
        _ => None,
    }
}

/// `116A13`: exam number, one block letter, question number. In a namespaced set any id of
/// letters, digits, `-`, `_` and `.` will do.
fn is_valid_problem_id(id: &str, namespaced: bool) -> bool {
    if namespaced {
        return !id.is_empty()
            && id.len() <= 100
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    }
    let digits_end = id.find(|c: char| !c.is_ascii_digit()).unwrap_or(id.len());
    let rest = &id[digits_end..];
    let mut rest_chars = rest.chars();
    digits_end > 0
        && rest_chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && !rest_chars.as_str().is_empty()
        && rest_chars.all(|c| c.is_ascii_digit())
}

fn parse_answer(value: &serde_json::Value, choice_count: usize) -> Result<Gold, String> {
    let items = match value {
        serde_json::Value::Array(items) if !items.is_empty() => items,
        // DenQA's mark for a question without a published answer.
        serde_json::Value::String(na) if na == "NA" => return Ok(Gold::Unpublished),
        v => return Err(format!("expected a non-empty list (or \"NA\"), got {v}")),
    };
    let texts: Vec<&str> = items
        .iter()
        .map(|v| v.as_str().ok_or_else(|| format!("answer {v} is not text")))
        .collect::<Result<_, _>>()?;
    if choice_count == 0 {
        return match texts.as_slice() {
            [one] if one.trim().parse::<f64>().is_ok() => Ok(Gold::Numeric {
                value: one.trim().to_owned(),
            }),
            _ => Err(format!(
                "a question without choices needs one numeric answer, got {value}"
            )),
        };
    }
    let check = |s: &str| -> Result<char, String> {
        match single_letter(s.trim(), choice_count) {
            Some(c) => Ok(c),
            None => Err(format!(
                "unknown answer letter \"{s}\": choices are a..{}",
                crate::exam::choice_letter(choice_count - 1)
            )),
        }
    };
    if let [one] = texts.as_slice()
        && one.contains(" or ")
    {
        let mut letters = one
            .split(" or ")
            .map(check)
            .collect::<Result<Vec<_>, _>>()?;
        letters.sort_unstable();
        letters.dedup();
        return Ok(Gold::AnyOf { letters });
    }
    let mut letters = texts
        .iter()
        .map(|s| check(s))
        .collect::<Result<Vec<_>, _>>()?;
    letters.sort_unstable();
    let before = letters.len();
    letters.dedup();
    if letters.len() != before {
        return Err(format!("answer {value} repeats a letter"));
    }
    Ok(Gold::Letters { letters })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_endless_bad_lines_lists_a_thousand_problems_and_counts_the_rest() {
        let text = "not json\n".repeat(5000);
        let mut importer = Importer::new();
        importer.add_file("junk.jsonl", &text);
        let errors = importer.finish().expect_err("refused");
        assert_eq!(errors.len(), MAX_LISTED_ERRORS + 1);
        let last = errors.last().expect("a summary");
        assert!(last.message.contains("4000 more problems"), "{last}");
        assert_eq!((last.file.as_str(), last.line), ("junk.jsonl", 1000));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_at_their_line() {
        let e = text_of("x.jsonl", b"{}\n{\"a\": \"\xff\"}\n").expect_err("refused");
        assert_eq!(
            (e.file.as_str(), e.line, e.field.as_str()),
            ("x.jsonl", 2, "line")
        );
        assert!(e.message.contains("byte 8"), "{e}");
        assert_eq!(text_of("y.jsonl", "答え".as_bytes()), Ok("答え"));
    }

    fn parse(lines: &str) -> Result<Vec<Question>, Vec<FormatError>> {
        let mut importer = Importer::new();
        importer.add_file("116-A.jsonl", lines);
        importer.finish()
    }

    const GOOD: &str = r#"{"problem_id": "116A1", "problem_text": "正しくないのはどれか。", "choices": ["甲", "乙", "丙", "丁", "戊"], "text_only": true, "answer": ["c"], "points": "1"}"#;

    #[test]
    fn a_well_formed_line_becomes_a_question() {
        let questions = parse(GOOD).expect("parses");
        assert_eq!(questions.len(), 1);
        assert_eq!(questions[0].problem_id, "116A1");
        assert_eq!(questions[0].gold, Gold::Letters { letters: vec!['c'] });
        assert_eq!(questions[0].points, 1);
    }

    #[test]
    fn rulings_are_data_not_special_cases() {
        let any_of = r#"{"problem_id": "112B30", "problem_text": "x", "choices": ["1","2","3","4","5"], "answer": ["a or d"], "points": "1", "text_only": true}"#;
        let everyone = r#"{"problem_id": "116A71", "problem_text": "x", "choices": ["1","2","3","4","5"], "answer": ["b"], "points": "3", "text_only": true}"#;
        let qs = parse(&format!("{any_of}\n{everyone}\n")).expect("parses");
        assert_eq!(
            qs[0].gold,
            Gold::AnyOf {
                letters: vec!['a', 'd']
            }
        );
        assert_eq!(qs[1].gold, Gold::Everyone);
    }

    #[test]
    fn numeric_answers_need_no_choices() {
        let line = r#"{"problem_id": "112C66", "problem_text": "求めよ", "choices": [], "answer": ["26"], "points": "1", "text_only": true}"#;
        let qs = parse(line).expect("parses");
        assert_eq!(qs[0].gold, Gold::Numeric { value: "26".into() });
    }

    #[test]
    fn na_marks_a_question_without_a_published_answer() {
        let line = r#"{"problem_id": "116B13", "problem_text": "どれか。", "choices": ["1","2","3","4","5"], "answer": "NA", "points": "1", "text_only": true}"#;
        let qs = parse(line).expect("parses");
        assert_eq!(qs[0].gold, Gold::Unpublished);
        let other = line.replace("\"NA\"", "\"b\"");
        let errors = parse(&other).expect_err("a bare string is not a list");
        assert!(
            errors[0].message.contains("non-empty list"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn bad_lines_are_reported_with_file_line_and_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("{not json", "line", "not a JSON object"),
            (
                r#"{"problem_id": "116A2", "problem_text": "x", "choices": ["1","2"], "answer": ["f"], "points": "1"}"#,
                "answer",
                "unknown answer letter \"f\"",
            ),
            (
                r#"{"problem_id": "116A2", "problem_text": "x", "choices": ["1","2"], "answer": ["a"], "points": "x"}"#,
                "points",
                "whole number",
            ),
            (
                r#"{"problem_id": "A2", "problem_text": "x", "choices": ["1","2"], "answer": ["a"], "points": "1"}"#,
                "problem_id",
                "expected an id",
            ),
        ];
        for (line, field, message) in cases {
            let errors = parse(&format!("{GOOD}\n{line}\n")).expect_err(line);
            assert_eq!(errors.len(), 1, "{line}: {errors:?}");
            assert_eq!(errors[0].file, "116-A.jsonl");
            assert_eq!(errors[0].line, 2, "{line}");
            assert_eq!(errors[0].field, *field, "{line}");
            assert!(errors[0].message.contains(message), "{line}: {}", errors[0]);
        }
    }

    #[test]
    fn a_duplicate_problem_id_is_refused_naming_both_places() {
        let mut importer = Importer::new();
        importer.add_file("116-A.jsonl", GOOD);
        importer.add_file("116-B.jsonl", &format!("\n{GOOD}"));
        let errors = importer.finish().expect_err("duplicate");
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].file.as_str(), errors[0].line),
            ("116-B.jsonl", 2)
        );
        assert!(errors[0].message.contains("116-A.jsonl:1"), "{}", errors[0]);
    }

    #[test]
    fn an_empty_upload_is_refused() {
        assert!(parse("\n\n").is_err());
    }

    #[test]
    fn the_structure_of_the_known_medical_exams_is_derived_from_ids() {
        let line = |id: &str| {
            format!(
                r#"{{"problem_id": "{id}", "problem_text": "x", "choices": ["1","2"], "answer": ["a"], "points": "1"}}"#
            )
        };
        let qs = parse(
            &[
                line("116A1"),
                line("116B2"),
                line("112E3"),
                line("117B1"),
                line("901B1"),
            ]
            .join("\n"),
        )
        .expect("parses");
        let got: Vec<_> = qs
            .iter()
            .map(|q| {
                (
                    q.meta.exam.as_deref(),
                    q.meta.year,
                    q.meta.block.as_deref(),
                    q.meta.section,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("116"), Some(2022), Some("A"), Some(Section::General)),
                (Some("116"), Some(2022), Some("B"), Some(Section::Required)),
                (Some("112"), Some(2018), Some("E"), Some(Section::Required)),
                (Some("117"), Some(2023), Some("B"), Some(Section::Required)),
                // An exam whose structure Kokushi does not know: nothing is guessed.
                (Some("901"), None, Some("B"), None),
            ]
        );
    }

    #[test]
    fn a_namespace_keeps_another_exams_ids_apart_and_takes_no_medical_rulings() {
        let line = r#"{"problem_id": "116A71", "problem_text": "x", "choices": ["1","2"], "answer": ["b"], "points": "1"}"#;
        let mut importer = Importer::with_namespace("denqa").expect("valid namespace");
        importer.add_file("denqa.jsonl", line);
        let qs = importer.finish().expect("parses");
        assert_eq!(qs[0].problem_id, "denqa:116A71");
        assert_eq!(qs[0].gold, Gold::Letters { letters: vec!['b'] });
        assert_eq!(qs[0].meta.section, None);
        assert_eq!(qs[0].meta.year, None);
        assert!(Importer::with_namespace("a b").is_err());
    }

    #[test]
    fn optional_fields_are_read_and_checked() {
        let line = r#"{"problem_id": "120A5", "problem_text": "x", "choices": ["1","2","3"], "answer": ["a","c"], "ruling": "any_of", "exam": "120", "year": 2026, "section": "required", "specialty": "循環器", "prohibited": ["b"], "examinee_accuracy": 0.42}"#;
        let qs = parse(line).expect("parses");
        let q = &qs[0];
        assert_eq!(q.points, 1, "points default to 1");
        assert_eq!(
            q.gold,
            Gold::AnyOf {
                letters: vec!['a', 'c']
            }
        );
        assert_eq!(q.meta.year, Some(2026));
        assert_eq!(q.meta.section, Some(Section::Required));
        assert_eq!(q.meta.prohibited, vec!['b']);
        assert_eq!(q.meta.examinee_accuracy, Some(0.42));
        assert_eq!(q.meta.specialty.as_deref(), Some("循環器"));
        let errors = parse(r#"{"problem_id": "116A1", "problem_text": "x", "choices": ["1"], "answer": ["a"], "choises": []}"#)
            .expect_err("typo");
        assert_eq!(errors[0].field, "choises");
    }

    /// IgakuQA119's files as published: a question array per block, one answers CSV.
    const QUESTIONS_119B: &str = r#"[
  {
    "number": "119B25",
    "question": "正しいのはどれか。 ",
    "choices": ["a. 甲", "b. 乙", "c. 丙", "d. 丁", "e. 戊"],
    "has_image": false
  },
  {
    "number": "119B26",
    "question": "2つ選べ。",
    "choices": ["a. 甲", "b. 乙", "c. 丙", "d. 丁", "e. 戊"],
    "has_image": true
  }
]"#;
    const QUESTIONS_119A: &str = r#"[
  {"number": "119A75", "question": "計算せよ。", "choices": [], "has_image": false}
]"#;
    const ANSWERS_119: &str = "問題番号,解答\n119A75,600\n119B25,c\n119B26,ac\n119C1,a\n";

    #[test]
    fn igakuqa119_files_import_natively_with_the_exams_points() {
        let mut importer = Importer::new();
        importer.add_file("119B_json.json", QUESTIONS_119B);
        importer.add_file("correct_answers.csv", ANSWERS_119);
        importer.add_file("119A_json.json", QUESTIONS_119A);
        let questions = importer.finish().expect("imports");
        let by_id = |id: &str| questions.iter().find(|q| q.problem_id == id).expect(id);
        let b25 = by_id("119B25");
        assert_eq!(b25.text, "正しいのはどれか。");
        assert_eq!(b25.choices[0], "甲");
        assert_eq!(b25.gold, Gold::Letters { letters: vec!['c'] });
        // The 119th exam's required section: questions 1–25 of block B are worth 1, 26–50 3.
        assert_eq!(b25.points, 1);
        assert_eq!(b25.meta.section, Some(Section::Required));
        assert_eq!(b25.meta.year, Some(2025));
        let b26 = by_id("119B26");
        assert_eq!(b26.points, 3);
        assert!(!b26.text_only);
        assert_eq!(
            b26.gold,
            Gold::Letters {
                letters: vec!['a', 'c']
            }
        );
        let a75 = by_id("119A75");
        assert_eq!(
            a75.gold,
            Gold::Numeric {
                value: "600".into()
            }
        );
        assert_eq!(a75.meta.section, Some(Section::General));
        // The answers file's other questions (119C1) are not in this import: left alone.
        assert_eq!(questions.len(), 3);
        let credit = credit_for(questions.iter().map(|q| q.problem_id.as_str()));
        assert!(
            credit.contains("IgakuQA119") && !credit.contains("Kasai"),
            "{credit}"
        );
        assert!(credit_for(["116A1", "119A1"]).contains("Kasai"));
    }

    #[test]
    fn igakuqa119_problems_name_their_file_line_and_field() {
        let mut importer = Importer::new();
        importer.add_file("119B_json.json", QUESTIONS_119B);
        let errors = importer.finish().unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].message.contains("correct_answers.csv"),
            "{errors:?}"
        );

        // A question array is read whole: bounded before it is parsed.
        let mut importer = Importer::new();
        let huge = format!("[{}]", " ".repeat(MAX_QUESTION_ARRAY_BYTES));
        importer.add_file("119Z_json.json", &huge);
        let errors = importer.finish().unwrap_err();
        assert!(errors[0].message.contains("at most"), "{errors:?}");

        let bad = QUESTIONS_119B
            .replace("\"question\": \"2つ選べ。\"", "\"question\": \" \"")
            .replace(
                "\"b. 乙\", \"c. 丙\", \"d. 丁\", \"e. 戊\"],\n    \"has_image\": true",
                "\"x. 乙\"],\n    \"has_image\": true",
            );
        let mut importer = Importer::new();
        importer.add_file("119B_json.json", &bad);
        importer.add_file("correct_answers.csv", "問題番号,解答\n119B26,ac\n");
        let errors = importer.finish().unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for expected in [
            "119B_json.json:9: field `choices`: choice 2 of 119B26 should start with its letter \"b. \"",
            "119B_json.json:3: field `answer`: the answers file has no answer for 119B25",
        ] {
            assert!(
                shown.iter().any(|s| s.starts_with(expected)),
                "{expected:?} not in {shown:#?}"
            );
        }
    }

    /// The published defects of IgakuQA119, in small: an empty stem, choices inside the stem.
    const DEFECTS_119: &str = r#"[
  {"number": "119C18", "question": "", "choices": ["a. Malaria", "b. Measles", "c. Pertussis"], "has_image": false},
  {"number": "119E48", "question": "どれか。 aアトロピン bジアゼパム Cフロセミド dアドレナリン eグルココルチコイド ", "choices": [], "has_image": false},
  {"number": "119E1", "question": "正しいのはどれか。", "choices": ["a. 甲", "b. 乙", "c. 丙"], "has_image": false}
]"#;
    const DEFECT_ANSWERS: &str = "問題番号,解答\n119C18,a\n119E48,e\n119E1,b\n";

    #[test]
    fn refused_records_are_repaired_or_left_out_only_when_asked() {
        let run = |policy: crate::repair::RepairPolicy, exclude: &[(&str, &str)]| {
            let mut importer = Importer::new().with_repairs(
                policy,
                exclude
                    .iter()
                    .map(|(id, why)| ((*id).to_owned(), (*why).to_owned()))
                    .collect(),
            );
            importer.add_file("119E_json.json", DEFECTS_119);
            importer.add_file("correct_answers.csv", DEFECT_ANSWERS);
            importer.finish_report()
        };
        // As published: two records refused, one repair proposed, nothing applied.
        let report = run(crate::repair::RepairPolicy::None, &[]);
        let fields: Vec<(&str, &str)> = report
            .errors
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(report.errors.len(), 2, "{fields:?}");
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.field == "problem_text" && e.line == 2)
        );
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.field == "answer" && e.line == 3)
        );
        assert_eq!(report.proposed.len(), 1);
        assert_eq!(report.proposed[0].problem_id, "119E48");
        assert_eq!(
            report.proposed[0].kind,
            crate::repair::RepairKind::ChoicesInStem
        );
        assert!(report.applied.is_empty());

        // The repair accepted and the empty stem left out with a reason: an importable set.
        let report = run(
            crate::repair::RepairPolicy::parse("119E48:choices_in_stem").expect("policy"),
            &[("119C18", "the stem was not extracted")],
        );
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.questions.len(), 2);
        let e48 = report
            .questions
            .iter()
            .find(|q| q.problem_id == "119E48")
            .expect("E48");
        assert_eq!(e48.choices.len(), 5);
        assert_eq!(e48.text, "どれか。");
        assert_eq!(e48.gold, Gold::Letters { letters: vec!['e'] });
        assert_eq!(report.applied.len(), 1);
        assert_eq!(report.excluded[0].reason, "the stem was not extracted");

        // Leaving out a record no file has is a mistake worth naming.
        let report = run(crate::repair::RepairPolicy::All, &[("119Z9", "typo")]);
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.message.contains("\"119Z9\"")),
            "{:?}",
            report.errors
        );
    }

    #[test]
    fn a_file_without_points_takes_them_from_the_exams_rule_pack() {
        let line = |id: &str| {
            format!(
                r#"{{"problem_id": "{id}", "problem_text": "x", "choices": ["1","2"], "answer": ["a"]}}"#
            )
        };
        let qs = parse(
            &[
                line("119E25"),
                line("119E26"),
                line("119F26"),
                line("901B30"),
            ]
            .join("\n"),
        )
        .expect("parses");
        let points: Vec<u32> = qs.iter().map(|q| q.points).collect();
        assert_eq!(points, vec![1, 3, 1, 1]);
        let mut importer = Importer::with_namespace("other").expect("namespace");
        importer.add_file("o.jsonl", &line("119E26"));
        assert_eq!(importer.finish().expect("parses")[0].points, 1);
    }

    #[test]
    fn csv_uploads_and_jmmlu_files_become_questions() {
        let csv = "problem_id,problem_text,a,b,c,answer,points,prohibited\n\
                   120A1,\"正しいのは, どれか。\",甲,乙,丙,\"b,c\",3,a\n\
                   120A2,数値を求めよ,,,,26,1,\n";
        let mut importer = Importer::new();
        importer.add_file("new.csv", csv);
        let qs = importer.finish().expect("parses");
        assert_eq!(qs.len(), 2);
        assert_eq!(qs[0].text, "正しいのは, どれか。");
        assert_eq!(qs[0].choices, vec!["甲", "乙", "丙"]);
        assert_eq!(
            qs[0].gold,
            Gold::Letters {
                letters: vec!['b', 'c']
            }
        );
        assert_eq!(qs[0].meta.prohibited, vec!['a']);
        assert_eq!(qs[1].gold, Gold::Numeric { value: "26".into() });

        let jmmlu = "\u{feff}心臓の弁は？ , 僧帽弁,三尖弁 ,大動脈弁,肺動脈弁, B \n";
        let mut importer = Importer::with_namespace("jmmlu").expect("namespace");
        importer.add_jmmlu("anatomy.csv", "anatomy", jmmlu);
        let qs = importer.finish().expect("parses");
        assert_eq!(qs[0].problem_id, "jmmlu:anatomy-1");
        assert_eq!(qs[0].text, "心臓の弁は？");
        assert_eq!(qs[0].choices[1], "三尖弁");
        assert_eq!(qs[0].gold, Gold::Letters { letters: vec!['b'] });
    }

    #[test]
    fn jmmlu_without_a_namespace_is_refused_with_the_remedy() {
        let mut importer = Importer::new();
        importer.add_jmmlu("anatomy.csv", "anatomy", "問,甲,乙,丙,丁,A\n");
        let errors = importer.finish().expect_err("refused");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("--namespace jmmlu"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn long_japanese_specialties_count_characters_not_bytes() {
        let specialty = "循".repeat(150);
        let line = format!(
            r#"{{"problem_id": "900A1", "problem_text": "x", "choices": ["1","2"], "answer": ["a"], "specialty": "{specialty}"}}"#
        );
        assert!(
            parse(&line).is_ok(),
            "150 characters (450 bytes) are allowed"
        );
        let too_long = line.replace(&specialty, &"循".repeat(201));
        let errors = parse(&too_long).expect_err("201 characters are not");
        assert!(
            errors[0].message.contains("1 to 200 characters"),
            "{}",
            errors[0]
        );
    }
}
