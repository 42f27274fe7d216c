//! Preference data in TRL's formats: JSON lines of pairs `{"prompt", "chosen", "rejected"}` or of
//! rated responses `{"prompt", "completion", "label"}` (unpaired, KTO's), each text a string
//! (plain text) or a list of `{"role", "content"}` messages (conversational, formatted with the
//! model's chat template).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct PreferencePair {
    pub prompt: Turns,
    pub chosen: Turns,
    pub rejected: Turns,
}

/// One response and whether it is desirable: TRL's unpaired preference row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct RatedResponse {
    pub prompt: Turns,
    pub completion: Turns,
    pub label: bool,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// A prompt or completion: plain text, or TRL's conversational form (`[{"role": "user", …}]`
/// prompts, `[{"role": "assistant", …}]` completions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(untagged)]
pub enum Turns {
    Text(String),
    Messages(Vec<Message>),
}

impl From<String> for Turns {
    fn from(text: String) -> Self {
        Turns::Text(text)
    }
}

impl From<&str> for Turns {
    fn from(text: &str) -> Self {
        Turns::Text(text.to_string())
    }
}

impl Turns {
    /// As messages in `role`: text becomes one message.
    pub fn messages(&self, role: &str) -> Vec<Message> {
        match self {
            Turns::Text(text) => vec![Message {
                role: role.into(),
                content: text.clone(),
            }],
            Turns::Messages(m) => m.clone(),
        }
    }
}

/// Parses JSONL pairs, naming the file and 1-based line of the first bad line. Blank lines are
/// skipped.
pub fn parse_jsonl(text: &str, file: &str) -> Result<Vec<PreferencePair>> {
    parse_rows(
        text,
        file,
        "{\"prompt\",\"chosen\",\"rejected\"}",
        "preference pairs",
    )
}

/// Parses JSONL rated responses (TRL's unpaired format), as [`parse_jsonl`].
pub fn parse_unpaired_jsonl(text: &str, file: &str) -> Result<Vec<RatedResponse>> {
    parse_rows(
        text,
        file,
        "{\"prompt\",\"completion\",\"label\"}",
        "rated responses",
    )
}

/// The rows of a JSONL in either of TRL's preference formats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(tag = "kind", content = "rows", rename_all = "lowercase")]
pub enum PreferenceRows {
    Pairs(Vec<PreferencePair>),
    Ratings(Vec<RatedResponse>),
}

/// A JSONL of pairs or of rated responses, told apart by the first row's keys.
pub fn parse_preferences(text: &str, file: &str) -> Result<PreferenceRows> {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let paired = serde_json::from_str::<serde_json::Value>(first)
        .is_ok_and(|row| row.get("chosen").is_some() && row.get("rejected").is_some());
    Ok(if paired {
        PreferenceRows::Pairs(parse_jsonl(text, file)?)
    } else {
        PreferenceRows::Ratings(parse_unpaired_jsonl(text, file)?)
    })
}

/// What KTO trains on from a JSONL of either format: rated responses as they are, pairs unpaired
/// as TRL does ([`unpair`]).
pub fn parse_ratings(text: &str, file: &str) -> Result<Vec<RatedResponse>> {
    Ok(match parse_preferences(text, file)? {
        PreferenceRows::Pairs(pairs) => unpair(&pairs),
        PreferenceRows::Ratings(ratings) => ratings,
    })
}

/// TRL's `unpair_preference_dataset`: each pair becomes a desirable row (its chosen response) and
/// an undesirable one (its rejected), the chosen of every 1000 pairs (`datasets`' map batch)
/// before their rejected. The order matters to KTO, whose KL rows pair neighbours.
pub fn unpair(pairs: &[PreferencePair]) -> Vec<RatedResponse> {
    pairs
        .chunks(1000)
        .flat_map(|chunk| {
            let rated = |label: bool| {
                chunk.iter().map(move |p| RatedResponse {
                    prompt: p.prompt.clone(),
                    completion: if label { &p.chosen } else { &p.rejected }.clone(),
                    label,
                })
            };
            rated(true).chain(rated(false)).collect::<Vec<_>>()
        })
        .collect()
}

fn parse_rows<T: DeserializeOwned>(
    text: &str,
    file: &str,
    shape: &str,
    what: &str,
) -> Result<Vec<T>> {
    let rows: Vec<T> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::Data {
                file: file.into(),
                line: i + 1,
                msg: format!("not a {shape} object of strings or message lists: {e}"),
            })
        })
        .collect::<Result<_>>()?;
    if rows.is_empty() {
        return Err(Error::Data {
            file: file.into(),
            line: 0,
            msg: format!("no {what} in the file"),
        });
    }
    Ok(rows)
}
