//! One error type for the whole crate: every message names what is wrong and, where it helps,
//! what to do about it. The browser shows these strings to the user as they are, and decides
//! what to do (fall back to the CPU, suggest LoRA) on the [`ErrorKind`], never on the text.

use std::fmt;

use serde::Serialize;

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
    Data {
        file: String,
        line: usize,
        msg: String,
    },
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
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of thing went wrong, for code to act on: the `kind` of the errors JS receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A file (config, checkpoint, tokenizer) that cannot be read as what it claims to be.
    Format,
    /// A preference-pair file with a bad line.
    Data,
    /// A setting outside its valid range, or an option the API does not know.
    Setting,
    /// Not enough memory for the model on this device.
    Memory,
    /// The compute device failed: the work may succeed on another device.
    Device,
    /// A file that could not be read or written.
    Io,
}

impl ErrorKind {
    /// The name JS sees (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Format => "format",
            ErrorKind::Data => "data",
            ErrorKind::Setting => "setting",
            ErrorKind::Memory => "memory",
            ErrorKind::Device => "device",
            ErrorKind::Io => "io",
        }
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::Checkpoint { .. } | Error::Tokenizer(_) => ErrorKind::Format,
            Error::Data { .. } => ErrorKind::Data,
            Error::Setting(_) => ErrorKind::Setting,
            Error::Memory(_) => ErrorKind::Memory,
            Error::Device(_) => ErrorKind::Device,
            Error::Io { .. } => ErrorKind::Io,
        }
    }

    pub fn checkpoint(file: &str, msg: impl fmt::Display) -> Self {
        Error::Checkpoint {
            file: file.to_string(),
            msg: msg.to_string(),
        }
    }

    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

impl From<burn::tensor::ExecutionError> for Error {
    fn from(e: burn::tensor::ExecutionError) -> Self {
        Error::Device(format!("{e:?}"))
    }
}
