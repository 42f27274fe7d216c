//! One error type for the whole crate: every message names what is wrong and, where it helps,
//! what to do about it. The browser shows these strings to the user as they are.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model config that cannot describe a working model.
    #[error("model config: {0}")]
    Config(String),
    /// A checkpoint file that is malformed, truncated or does not fit the config.
    #[error("checkpoint {file}: {msg}")]
    Checkpoint { file: String, msg: String },
    /// A tokenizer file that cannot be loaded, or text it cannot encode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A line of a preference-pair file that is not a valid pair.
    #[error("{file}:{line}: {msg}")]
    Data { file: String, line: usize, msg: String },
    /// A training or sampling setting outside its valid range.
    #[error("invalid setting: {0}")]
    Setting(String),
    /// Training the model would need more memory than the device allows.
    #[error("not enough memory: {0}")]
    Memory(String),
    /// The compute device failed (lost GPU, failed read-back).
    #[error("device: {0}")]
    Device(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn checkpoint(file: &str, msg: impl fmt::Display) -> Self {
        Error::Checkpoint { file: file.to_string(), msg: msg.to_string() }
    }

    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
}

impl From<burn::tensor::ExecutionError> for Error {
    fn from(e: burn::tensor::ExecutionError) -> Self {
        Error::Device(format!("{e:?}"))
    }
}
