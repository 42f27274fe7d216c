//! Preference pairs in TRL's plain-text format: JSON lines of `{"prompt", "chosen", "rejected"}`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreferencePair {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
}

/// Parses JSONL, naming the file and 1-based line of the first bad line. Blank lines are skipped.
pub fn parse_jsonl(text: &str, file: &str) -> Result<Vec<PreferencePair>> {
    let pairs: Vec<PreferencePair> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| Error::Data { file: file.into(), line: i + 1, msg: format!("not a {{\"prompt\",\"chosen\",\"rejected\"}} object of strings: {e}") }))
        .collect::<Result<_>>()?;
    if pairs.is_empty() {
        return Err(Error::Data { file: file.into(), line: 0, msg: "no preference pairs in the file".into() });
    }
    Ok(pairs)
}
