//! Reading a GGUF file's header and typed access to its metadata.
//!
//! This module owns the translation from candle's loosely typed [`Value`]s to the integers,
//! strings and arrays the rest of the engine needs, with errors that name the file and the key.
//! It does not interpret the metadata (that is `model` and `tokenizer`'s job) and it reads the
//! file with ordinary buffered I/O: `unsafe` memory-mapping is forbidden in this workspace.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};

use crate::EngineError;

/// Opens `path` and parses its GGUF header, leaving the reader ready for tensor reads.
pub(crate) fn read_content(path: &Path) -> Result<(Content, BufReader<File>), EngineError> {
    let file = File::open(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader).map_err(|source| EngineError::Gguf {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    Ok((content, reader))
}

/// A borrowed view of a GGUF file's metadata that reports errors against the file's path.
#[derive(Clone, Copy)]
pub(crate) struct Metadata<'a> {
    path: &'a Path,
    values: &'a HashMap<String, Value>,
}

impl<'a> Metadata<'a> {
    pub(crate) fn new(path: &'a Path, values: &'a HashMap<String, Value>) -> Self {
        Self { path, values }
    }

    pub(crate) fn path(&self) -> &'a Path {
        self.path
    }

    fn require(&self, key: &str) -> Result<&'a Value, EngineError> {
        self.values
            .get(key)
            .ok_or_else(|| EngineError::MissingMetadata {
                path: self.path.to_path_buf(),
                key: key.to_owned(),
            })
    }

    fn invalid(&self, key: &str, expected: &'static str, found: &Value) -> EngineError {
        EngineError::InvalidMetadata {
            path: self.path.to_path_buf(),
            key: key.to_owned(),
            expected,
            found: describe(found),
        }
    }

    /// A required string value.
    pub(crate) fn string(&self, key: &str) -> Result<&'a str, EngineError> {
        let value = self.require(key)?;
        match value {
            Value::String(s) => Ok(s),
            other => Err(self.invalid(key, "a string", other)),
        }
    }

    /// An optional string value; present with another type is still an error.
    pub(crate) fn opt_string(&self, key: &str) -> Result<Option<&'a str>, EngineError> {
        match self.values.get(key) {
            None => Ok(None),
            Some(_) => self.string(key).map(Some),
        }
    }

    /// A required non-negative integer of any GGUF integer width.
    pub(crate) fn usize(&self, key: &str) -> Result<usize, EngineError> {
        let value = self.require(key)?;
        as_i64(value)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| self.invalid(key, "a non-negative integer", value))
    }

    /// An optional non-negative integer; present with another type is still an error.
    pub(crate) fn opt_usize(&self, key: &str) -> Result<Option<usize>, EngineError> {
        match self.values.get(key) {
            None => Ok(None),
            Some(_) => self.usize(key).map(Some),
        }
    }

    /// An optional boolean.
    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, EngineError> {
        match self.values.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.invalid(key, "a boolean", other)),
        }
    }

    /// An optional number of any GGUF numeric type, read as `f64`.
    pub(crate) fn opt_f64(&self, key: &str) -> Result<Option<f64>, EngineError> {
        match self.values.get(key) {
            None => Ok(None),
            Some(Value::F32(v)) => Ok(Some(f64::from(*v))),
            Some(Value::F64(v)) => Ok(Some(*v)),
            #[allow(clippy::cast_precision_loss)] // hyper-parameters are small integers
            Some(other) => as_i64(other)
                .map(|v| Some(v as f64))
                .ok_or_else(|| self.invalid(key, "a number", other)),
        }
    }

    /// A required array of strings.
    pub(crate) fn string_array(&self, key: &str) -> Result<Vec<&'a str>, EngineError> {
        let value = self.require(key)?;
        let Value::Array(items) = value else {
            return Err(self.invalid(key, "an array of strings", value));
        };
        items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.as_str()),
                other => Err(self.invalid(key, "an array of strings", other)),
            })
            .collect()
    }

    /// An optional array of numbers, read as `f32` (SentencePiece scores).
    pub(crate) fn opt_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>, EngineError> {
        let Some(value) = self.values.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = value else {
            return Err(self.invalid(key, "an array of numbers", value));
        };
        items
            .iter()
            .map(|item| match item {
                Value::F32(v) => Ok(*v),
                #[allow(clippy::cast_possible_truncation)]
                Value::F64(v) => Ok(*v as f32),
                other => Err(self.invalid(key, "an array of numbers", other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An optional array of integers (GGUF writers disagree on the width, so all are accepted).
    pub(crate) fn opt_int_array(&self, key: &str) -> Result<Option<Vec<i64>>, EngineError> {
        let Some(value) = self.values.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = value else {
            return Err(self.invalid(key, "an array of integers", value));
        };
        items
            .iter()
            .map(|item| as_i64(item).ok_or_else(|| self.invalid(key, "an array of integers", item)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

fn as_i64(value: &Value) -> Option<i64> {
    match *value {
        Value::U8(v) => Some(i64::from(v)),
        Value::I8(v) => Some(i64::from(v)),
        Value::U16(v) => Some(i64::from(v)),
        Value::I16(v) => Some(i64::from(v)),
        Value::U32(v) => Some(i64::from(v)),
        Value::I32(v) => Some(i64::from(v)),
        Value::U64(v) => i64::try_from(v).ok(),
        Value::I64(v) => Some(v),
        _ => None,
    }
}

/// A short description of a value for error messages (arrays are not printed in full).
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(items) => format!("an array of {} items", items.len()),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata_of(pairs: &[(&str, Value)]) -> HashMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn integers_of_every_width_are_read_as_usize() {
        // Arrange
        let cases = [
            Value::U8(7),
            Value::U16(7),
            Value::U32(7),
            Value::U64(7),
            Value::I32(7),
            Value::I64(7),
        ];
        for value in cases {
            let values = metadata_of(&[("k", value.clone())]);
            let md = Metadata::new(Path::new("m.gguf"), &values);

            // Act
            let read = md.usize("k");

            // Assert
            assert_eq!(read.ok(), Some(7), "value {value:?}");
        }
    }

    #[test]
    fn a_missing_key_is_named_in_the_error() {
        // Arrange
        let values = metadata_of(&[]);
        let md = Metadata::new(Path::new("dir/m.gguf"), &values);

        // Act
        let err = md.usize("llama.context_length").expect_err("key is absent");

        // Assert
        let message = err.to_string();
        assert!(message.contains("llama.context_length"), "{message}");
        assert!(message.contains("dir/m.gguf"), "{message}");
    }

    #[test]
    fn a_value_of_the_wrong_type_names_key_expectation_and_value() {
        // Arrange
        let values = metadata_of(&[("general.architecture", Value::I32(-1))]);
        let md = Metadata::new(Path::new("m.gguf"), &values);

        // Act
        let err = md.string("general.architecture").expect_err("wrong type");

        // Assert
        let message = err.to_string();
        assert!(message.contains("general.architecture"), "{message}");
        assert!(message.contains("a string"), "{message}");
        assert!(message.contains("I32(-1)"), "{message}");
    }

    #[test]
    fn a_negative_integer_is_not_a_usize() {
        // Arrange
        let values = metadata_of(&[("k", Value::I32(-3))]);
        let md = Metadata::new(Path::new("m.gguf"), &values);

        // Act
        let read = md.usize("k");

        // Assert
        assert!(matches!(read, Err(EngineError::InvalidMetadata { .. })));
    }
}
