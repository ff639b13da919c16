//! A small RFC 4180 CSV reader that keeps the line where each record starts, so an import
//! error can name it. Fields are separated by commas; a field in double quotes may hold commas,
//! line breaks and doubled quotes (`""`). CRLF and LF line ends are both accepted.

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

#[cfg(test)]
mod tests {
    use super::*;

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
