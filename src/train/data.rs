//! Preference data in TRL's formats: JSON lines of pairs `{"prompt", "chosen", "rejected"}` or of
//! rated responses `{"prompt", "completion", "label"}` (unpaired, KTO's), each text a string
//! (plain text) or a list of `{"role", "content"}` messages (conversational, formatted with the
//! model's chat template).

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
    let mut reader = PreferenceReader::expecting(file, Some(PreferenceRows::Pairs(Vec::new())));
    reader.push(text.as_bytes())?;
    match reader.finish()? {
        PreferenceRows::Pairs(pairs) => Ok(pairs),
        PreferenceRows::Ratings(_) => unreachable!("the reader keeps the kind it expects"),
    }
}

/// Parses JSONL rated responses (TRL's unpaired format), as [`parse_jsonl`].
pub fn parse_unpaired_jsonl(text: &str, file: &str) -> Result<Vec<RatedResponse>> {
    let mut reader = PreferenceReader::expecting(file, Some(PreferenceRows::Ratings(Vec::new())));
    reader.push(text.as_bytes())?;
    match reader.finish()? {
        PreferenceRows::Ratings(ratings) => Ok(ratings),
        PreferenceRows::Pairs(_) => unreachable!("the reader keeps the kind it expects"),
    }
}

/// The rows of a JSONL in either of TRL's preference formats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(tag = "kind", content = "rows", rename_all = "lowercase")]
pub enum PreferenceRows {
    Pairs(Vec<PreferencePair>),
    Ratings(Vec<RatedResponse>),
}

impl PreferenceRows {
    pub fn len(&self) -> usize {
        match self {
            PreferenceRows::Pairs(rows) => rows.len(),
            PreferenceRows::Ratings(rows) => rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A JSONL of pairs or of rated responses, told apart by the first row's keys.
pub fn parse_preferences(text: &str, file: &str) -> Result<PreferenceRows> {
    let mut reader = PreferenceReader::new(file, ImportLimits::NONE);
    reader.push(text.as_bytes())?;
    reader.finish()
}

/// The most a preference file may hold where memory is scarce (the browser keeps every row in
/// memory and in IndexedDB): a file past one of them is refused, saying which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct ImportLimits {
    pub max_bytes: u64,
    pub max_rows: usize,
    pub max_line_bytes: usize,
}

impl ImportLimits {
    /// What the app takes in one import.
    pub const BROWSER: Self = Self {
        max_bytes: 256 << 20,
        max_rows: 100_000,
        max_line_bytes: 1 << 20,
    };
    /// No caps (the CLI reads what the machine holds).
    pub const NONE: Self = Self {
        max_bytes: u64::MAX,
        max_rows: usize::MAX,
        max_line_bytes: usize::MAX,
    };
}

const MIB: f64 = (1 << 20) as f64;

/// A preference JSONL read in chunks as they arrive (a file streamed in the browser), each line
/// checked as it completes: UTF-8, TRL's row shape and the caps. An error names the file, the
/// line and the byte offset in the file.
#[derive(Debug)]
pub struct PreferenceReader {
    file: String,
    limits: ImportLimits,
    /// The bytes of the line not yet ended.
    partial: Vec<u8>,
    /// The 1-based number of the next line to complete, and its byte offset in the file.
    line: usize,
    offset: u64,
    /// Bytes pushed so far.
    read: u64,
    /// The rows so far; their kind is set by the first row unless expected.
    rows: Option<PreferenceRows>,
}

impl PreferenceReader {
    pub fn new(file: &str, limits: ImportLimits) -> Self {
        Self {
            file: file.to_string(),
            limits,
            partial: Vec::new(),
            line: 1,
            offset: 0,
            read: 0,
            rows: None,
        }
    }

    /// Without caps, expecting the kind of `rows` (empty) when given.
    fn expecting(file: &str, rows: Option<PreferenceRows>) -> Self {
        Self {
            rows,
            ..Self::new(file, ImportLimits::NONE)
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Rows read so far.
    pub fn rows_read(&self) -> usize {
        self.rows.as_ref().map_or(0, PreferenceRows::len)
    }

    /// Refuses, before reading, a file whose size is past the cap.
    pub fn check_size(&self, size: u64) -> Result<()> {
        if size <= self.limits.max_bytes {
            return Ok(());
        }
        let msg = format!(
            "the file is larger than {:.0} MiB, the most one import takes; split it",
            self.limits.max_bytes as f64 / MIB
        );
        Err(self.error(self.line, msg))
    }

    /// The next chunk of the file: every line it completes is checked and kept.
    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        self.read += chunk.len() as u64;
        self.check_size(self.read)?;
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                self.row(&rest[..end])?;
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&rest[..end]);
                self.row(&line)?;
            }
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        self.check_length(self.partial.len())
    }

    /// The rows of the whole file (its last line may lack a newline).
    pub fn finish(mut self) -> Result<PreferenceRows> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.row(&line)?;
        }
        match self.rows.take() {
            Some(rows) if !rows.is_empty() => Ok(rows),
            expected => {
                let what = match expected {
                    Some(PreferenceRows::Pairs(_)) => "preference pairs",
                    Some(PreferenceRows::Ratings(_)) => "rated responses",
                    None => "preference pairs or rated responses",
                };
                Err(self.error(0, format!("no {what} in the file")))
            }
        }
    }

    fn error(&self, line: usize, msg: String) -> Error {
        Error::Data {
            file: self.file.clone(),
            line,
            msg,
        }
    }

    fn check_length(&self, len: usize) -> Result<()> {
        if len <= self.limits.max_line_bytes {
            return Ok(());
        }
        Err(self.error(
            self.line,
            format!(
                "byte {}: the line is longer than {:.0} MiB, the most one row may take",
                self.offset,
                self.limits.max_line_bytes as f64 / MIB
            ),
        ))
    }

    /// One complete line (without its newline).
    fn row(&mut self, bytes: &[u8]) -> Result<()> {
        self.check_length(bytes.len())?;
        let (line, start) = (self.line, self.offset);
        self.line += 1;
        self.offset += bytes.len() as u64 + 1;
        // The byte offset in the file of `bytes[0]` (after a UTF-8 byte order mark, skipped).
        let (mut bytes, mut skipped) = (bytes, start);
        if line == 1 {
            if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
                let msg = "byte 0: the file is UTF-16; save it as UTF-8".to_string();
                return Err(self.error(line, msg));
            }
            if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
                (bytes, skipped) = (rest, 3);
            }
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let at = skipped + e.valid_up_to() as u64;
            self.error(
                line,
                format!("byte {at}: not UTF-8; save the file as UTF-8"),
            )
        })?;
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.trim().is_empty() {
            return Ok(());
        }
        if self.rows_read() >= self.limits.max_rows {
            let msg = format!(
                "byte {start}: more than {} rows, the most one import takes; split the file",
                self.limits.max_rows
            );
            return Err(self.error(line, msg));
        }
        let rows = self.rows.get_or_insert_with(|| {
            let paired = serde_json::from_str::<serde_json::Value>(text)
                .is_ok_and(|row| row.get("chosen").is_some() && row.get("rejected").is_some());
            if paired {
                PreferenceRows::Pairs(Vec::new())
            } else {
                PreferenceRows::Ratings(Vec::new())
            }
        });
        let bad = |shape: &str, e: serde_json::Error| {
            // serde_json's column counts bytes from 1.
            let at = skipped + e.column().saturating_sub(1) as u64;
            format!("byte {at}: not a {shape} object of strings or message lists: {e}")
        };
        let parsed = match rows {
            PreferenceRows::Pairs(pairs) => serde_json::from_str(text)
                .map(|p| pairs.push(p))
                .map_err(|e| bad("{\"prompt\",\"chosen\",\"rejected\"}", e)),
            PreferenceRows::Ratings(ratings) => serde_json::from_str(text)
                .map(|r| ratings.push(r))
                .map_err(|e| bad("{\"prompt\",\"completion\",\"label\"}", e)),
        };
        parsed.map_err(|msg| self.error(line, msg))
    }
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
