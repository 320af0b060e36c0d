//! The one reader for Interlock's record files: a JSON array of objects, or
//! the ancestor's form, the same objects concatenated (one per line or not).
//!
//! Every hot-reloaded config file and the inventory go through here, so they
//! share one rule: empty or whitespace-only text is malformed, never an empty
//! configuration. Editors and `cat > file` truncate a file before writing
//! it; a reader that took the empty moment for "no entries" would stop all
//! work (es.json) or refuse it (policies.json). An empty set is written `[]`.

use serde::de::DeserializeOwned;

/// Why a record file could not be read, located by line and column (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct RecordsError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl RecordsError {
    fn of(e: serde_json::Error) -> Self {
        Self {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    }
}

/// Parses a JSON array of records, or records concatenated.
pub fn parse_records<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, RecordsError> {
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(RecordsError {
            line: 1,
            column: 1,
            message: "the file is empty (an empty set is written as [])".into(),
        });
    }
    if trimmed.starts_with('[') {
        return serde_json::from_str(text).map_err(RecordsError::of);
    }
    serde_json::Deserializer::from_str(text)
        .into_iter::<T>()
        .collect::<Result<_, _>>()
        .map_err(RecordsError::of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse_and_empty_is_an_error() {
        let a: Vec<serde_json::Value> = parse_records("{\"a\":1}\n{\"a\":2}").unwrap();
        let b: Vec<serde_json::Value> = parse_records(" [{\"a\":1}] ").unwrap();
        let c: Vec<serde_json::Value> = parse_records("[]").unwrap();
        assert_eq!((a.len(), b.len(), c.len()), (2, 1, 0));
        for empty in ["", "  \n\t "] {
            let e = parse_records::<serde_json::Value>(empty).unwrap_err();
            assert!(e.message.contains("empty"), "{e}");
        }
        let e = parse_records::<serde_json::Value>("{\"a\":1}\n{\"a\":").unwrap_err();
        assert_eq!(e.line, 2);
    }
}
