//! Preference pairs in TRL's formats: JSON lines of `{"prompt", "chosen", "rejected"}`, each a
//! string (plain text) or a list of `{"role", "content"}` messages (conversational, formatted
//! with the model's chat template).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct PreferencePair {
    pub prompt: Turns,
    pub chosen: Turns,
    pub rejected: Turns,
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

/// Parses JSONL, naming the file and 1-based line of the first bad line. Blank lines are skipped.
pub fn parse_jsonl(text: &str, file: &str) -> Result<Vec<PreferencePair>> {
    let pairs: Vec<PreferencePair> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::Data {
                file: file.into(),
                line: i + 1,
                msg: format!(
                    "not a {{\"prompt\",\"chosen\",\"rejected\"}} object of strings or message \
                     lists: {e}"
                ),
            })
        })
        .collect::<Result<_>>()?;
    if pairs.is_empty() {
        return Err(Error::Data {
            file: file.into(),
            line: 0,
            msg: "no preference pairs in the file".into(),
        });
    }
    Ok(pairs)
}
