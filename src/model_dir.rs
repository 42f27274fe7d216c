//! A model directory as transformers writes it: config.json, tokenizer.json, model.safetensors.

use std::fs;
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::checkpoint;
use crate::config::LlamaConfig;
use crate::error::{Error, Result};
use crate::model::Llama;
use crate::tokenizer::TextTokenizer;

pub struct ModelDir {
    pub config: LlamaConfig,
    pub tokenizer_json: Vec<u8>,
    pub model: Llama,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io(path, e))
}

impl ModelDir {
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config = LlamaConfig::from_json(&String::from_utf8_lossy(&read(&config_path)?)).map_err(|e| Error::Config(format!("{}: {e}", config_path.display())))?;
        let tokenizer_json = read(&dir.join("tokenizer.json"))?;
        let weights_path = dir.join("model.safetensors");
        let model = checkpoint::from_safetensors(&config, &read(&weights_path)?, &weights_path.display().to_string(), device)?;
        Ok(Self { config, tokenizer_json, model })
    }

    pub fn tokenizer(&self) -> Result<TextTokenizer> {
        TextTokenizer::from_bytes(&self.tokenizer_json, &self.config)
    }

    /// Writes `model` with this directory's config and tokenizer to `out`. The files go to a
    /// sibling first and replace `out` only once all are written, so a failure loses nothing.
    pub async fn save(&self, model: &Llama, out: &Path) -> Result<()> {
        let weights = checkpoint::to_safetensors(model, checkpoint::Dtype::F32).await?;
        let name = out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "model".into());
        let staging = out.with_file_name(format!(".{name}.partial"));
        let _ = fs::remove_dir_all(&staging);
        let write = |file: &str, bytes: &[u8]| -> Result<()> {
            let path = staging.join(file);
            fs::write(&path, bytes).map_err(|e| Error::io(&path, e))
        };
        fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        write("config.json", self.config.to_json().as_bytes())?;
        write("tokenizer.json", &self.tokenizer_json)?;
        write("model.safetensors", &weights)?;
        let backup: Option<PathBuf> = out.exists().then(|| out.with_file_name(format!(".{name}.old")));
        if let Some(b) = &backup {
            let _ = fs::remove_dir_all(b);
            fs::rename(out, b).map_err(|e| Error::io(out, e))?;
        }
        fs::rename(&staging, out).map_err(|e| Error::io(out, e))?;
        if let Some(b) = backup {
            let _ = fs::remove_dir_all(b);
        }
        Ok(())
    }
}
