//! CSV, both ways. A small RFC 4180 reader that keeps the line where each record starts, so an
//! import error can name it: fields are separated by commas; a field in double quotes may hold
//! commas, line breaks and doubled quotes (`""`); CRLF and LF line ends are both accepted.
//!
//! And the one [`Writer`] every CSV the server and the command line write goes through: RFC
//! 4180 quoting, CRLF line ends, and every text field **defused**: one that a spreadsheet would
//! take for a formula (starting, after any spaces, with `=`, `+`, `-`, `@`, a tab or a carriage
//! return, or their full-width forms `＝＋－＠`) gets a leading `'`. Text here is anything a user
//! or a model wrote (an exam set's name, a model's reply, a comment); numbers are written as
//! they are.

/// One record: the 1-based line it starts on, and its fields.
pub type Record = (usize, Vec<String>);

/// Every record with the line it starts on, or the line and description of the first syntax
/// error.
pub fn records(text: &str) -> Result<Vec<Record>, (usize, String)> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let start = line;
        let mut record = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut at_field_start = true;
        loop {
            let Some(c) = chars.next() else {
                if quoted {
                    return Err((start, "a quoted field is never closed".to_owned()));
                }
                record.push(std::mem::take(&mut field));
                break;
            };
            if quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => {
                        quoted = false;
                        match chars.peek() {
                            None | Some(',' | '\n' | '\r') => {}
                            Some(next) => {
                                return Err((
                                    line,
                                    format!("unexpected {next:?} after a closing quote"),
                                ));
                            }
                        }
                    }
                    '\n' => {
                        line += 1;
                        field.push(c);
                    }
                    _ => field.push(c),
                }
                continue;
            }
            match c {
                '"' if at_field_start => {
                    quoted = true;
                    at_field_start = false;
                }
                ',' => {
                    record.push(std::mem::take(&mut field));
                    at_field_start = true;
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' | '\r' => {
                    line += 1;
                    record.push(std::mem::take(&mut field));
                    break;
                }
                _ => {
                    field.push(c);
                    at_field_start = false;
                }
            }
        }
        out.push((start, record));
    }
    Ok(out)
}

/// One field of a record: text (defused and quoted as needed) or a number (as written).
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    Text(std::borrow::Cow<'a, str>),
    Number(String),
    Empty,
}

impl Field<'_> {
    /// A number with `digits` decimals. (Numbers come in only through this and the `From`
    /// conversions of numeric types, so that no text can pass as a number and skip defusing.)
    pub fn fixed(value: f64, digits: usize) -> Field<'static> {
        Field::Number(format!("{value:.digits$}"))
    }

    /// Owned text.
    pub fn owned(text: String) -> Field<'static> {
        Field::Text(std::borrow::Cow::Owned(text))
    }
}

impl<'a> From<&'a str> for Field<'a> {
    fn from(text: &'a str) -> Self {
        Field::Text(std::borrow::Cow::Borrowed(text))
    }
}

impl<'a> From<&'a String> for Field<'a> {
    fn from(text: &'a String) -> Self {
        Field::Text(std::borrow::Cow::Borrowed(text.as_str()))
    }
}

impl From<String> for Field<'static> {
    fn from(text: String) -> Self {
        Field::owned(text)
    }
}

macro_rules! number_fields {
    ($($t:ty),*) => {$(
        impl From<$t> for Field<'static> {
            fn from(n: $t) -> Self {
                Field::Number(n.to_string())
            }
        }
    )*};
}

number_fields!(i64, i32, u8, u32, u64, usize, f64, bool);

impl<'a, T: Into<Field<'a>>> From<Option<T>> for Field<'a> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Field::Empty, Into::into)
    }
}

/// Whether a spreadsheet would read `text` as a formula: it starts, after any white space or
/// control characters (a spreadsheet may drop them: the ideographic space U+3000, a no-break
/// space, a line break), with a formula character.
fn looks_like_formula(text: &str) -> bool {
    text.starts_with(['\t', '\r'])
        || text
            .trim_start_matches(|c: char| c.is_whitespace() || c.is_control())
            .starts_with([
                '=', '+', '-', '@', '\u{FF1D}', '\u{FF0B}', '\u{FF0D}', '\u{FF20}',
            ])
}

/// Appends one field to `out`.
fn write_field(out: &mut String, field: &Field<'_>) {
    let value: &str = match field {
        Field::Empty => return,
        Field::Number(n) => n,
        Field::Text(t) => t,
    };
    let defuse = matches!(field, Field::Text(_)) && looks_like_formula(value);
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        if defuse {
            out.push('\'');
        }
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        if defuse {
            out.push('\'');
        }
        out.push_str(value);
    }
}

/// A CSV document being written: a header, then records.
#[derive(Debug, Clone)]
pub struct Writer {
    out: String,
}

impl Writer {
    /// A document whose first line names `columns`.
    pub fn new(columns: &[&str]) -> Self {
        let mut w = Self { out: String::new() };
        let header: Vec<Field<'_>> = columns.iter().map(|c| Field::from(*c)).collect();
        w.record(&header);
        w
    }

    /// Appends one record.
    pub fn record(&mut self, fields: &[Field<'_>]) {
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            write_field(&mut self.out, field);
        }
        self.out.push_str("\r\n");
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One text field as the writer writes it.
    fn field(text: &str) -> String {
        let mut out = String::new();
        write_field(&mut out, &Field::from(text));
        out
    }

    #[test]
    fn fields_are_quoted_as_rfc_4180_says_and_formulas_are_defused() {
        for (text, written) in [
            ("b,d", "\"b,d\""),
            ("答え：b", "答え：b"),
            ("he said \"c\"", "\"he said \"\"c\"\"\""),
            ("line\nbreak", "\"line\nbreak\""),
            ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
            ("-1", "'-1"),
            ("+81", "'+81"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("  =1+1", "'  =1+1"),
            ("\t=1", "'\t=1"),
            ("＝1+1", "'＝1+1"),
            ("\u{3000}=1+1", "'\u{3000}=1+1"),
            ("\u{a0}@x", "'\u{a0}@x"),
            ("\n=1", "\"'\n=1\""),
            ("－5", "'－5"),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            assert_eq!(field(text), written, "{text:?}");
        }
    }

    #[test]
    fn a_writer_defuses_text_but_writes_numbers_as_they_are() {
        let mut w = Writer::new(&["name", "score", "note"]);
        w.record(&["=cmd|' /C calc'!A0".into(), (-3i64).into(), Field::Empty]);
        w.record(&["IgakuQA, 2022".into(), 0.5f64.into(), Some("-x").into()]);
        assert_eq!(
            w.finish(),
            "name,score,note\r\n'=cmd|' /C calc'!A0,-3,\r\n\"IgakuQA, 2022\",0.5,'-x\r\n"
        );
    }

    #[test]
    fn quoted_fields_hold_commas_quotes_and_line_breaks() {
        let text = "a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\n\"two\nlines\",z\nlast,row";
        let got = records(text).expect("valid");
        assert_eq!(
            got,
            vec![
                (1, vec!["a".to_owned(), "b".to_owned()]),
                (2, vec!["x, y".to_owned(), "say \"hi\"".to_owned()]),
                (3, vec!["two\nlines".to_owned(), "z".to_owned()]),
                (5, vec!["last".to_owned(), "row".to_owned()]),
            ]
        );
    }

    #[test]
    fn broken_quotes_name_their_line() {
        assert_eq!(records("a\n\"open,b").unwrap_err().0, 2);
        assert_eq!(records("a\n\"x\"y,b").unwrap_err().0, 2);
    }
}
