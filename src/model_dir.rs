//! A model directory as transformers writes it: config.json, tokenizer.json, and model.safetensors
//! or its shards (model-0000i-of-0000n.safetensors listed by model.safetensors.index.json).

use std::fs;
use std::path::Path;

use burn::tensor::Device;

use crate::checkpoint;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::model::CausalLm;
use crate::tokenizer::TextTokenizer;

pub struct ModelDir {
    pub config: ModelConfig,
    pub tokenizer_json: Vec<u8>,
    pub model: CausalLm,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io(path, e))
}

/// The shard files named by a `model.safetensors.index.json` (its `weight_map` values), in order.
fn shard_files(index_path: &Path) -> Result<Vec<String>> {
    let index: serde_json::Value = serde_json::from_slice(&read(index_path)?).map_err(|e| Error::checkpoint(&index_path.display().to_string(), format!("not valid JSON: {e}")))?;
    let map = index["weight_map"].as_object().ok_or_else(|| Error::checkpoint(&index_path.display().to_string(), "no weight_map"))?;
    let mut files: Vec<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
    files.sort();
    files.dedup();
    if let Some(bad) = files.iter().find(|f| f.contains('/') || f.contains('\\') || f.starts_with('.')) {
        return Err(Error::checkpoint(&index_path.display().to_string(), format!("shard {bad:?} is not a file in the model directory")));
    }
    Ok(files)
}

impl ModelDir {
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config = ModelConfig::from_json(&String::from_utf8_lossy(&read(&config_path)?)).map_err(|e| Error::Config(format!("{}: {e}", config_path.display())))?;
        let tokenizer_json = read(&dir.join("tokenizer.json"))?;
        let index_path = dir.join("model.safetensors.index.json");
        let files = if index_path.exists() { shard_files(&index_path)? } else { vec!["model.safetensors".to_string()] };
        let shards = files.iter().map(|f| Ok((dir.join(f).display().to_string(), read(&dir.join(f))?))).collect::<Result<Vec<_>>>()?;
        let shards: Vec<(String, &[u8])> = shards.iter().map(|(f, b)| (f.clone(), &b[..])).collect();
        let model = checkpoint::from_safetensors_shards(&config, &shards, device)?;
        Ok(Self { config, tokenizer_json, model })
    }

    pub fn tokenizer(&self) -> Result<TextTokenizer> {
        TextTokenizer::from_bytes(&self.tokenizer_json, &self.config)
    }

    /// Writes `model` with this directory's config and tokenizer into `out`, leaving any other
    /// file there (a model card, figures, optimizer state) alone. Each file is written beside its
    /// target and all three are renamed over the old ones only once all are written, so a failure
    /// loses nothing.
    pub async fn save(&self, model: &CausalLm, out: &Path) -> Result<()> {
        let weights = checkpoint::to_safetensors(model, checkpoint::Dtype::F32).await?;
        fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let config = self.config.to_json();
        let files: [(&str, &[u8]); 3] = [("config.json", config.as_bytes()), ("tokenizer.json", &self.tokenizer_json), ("model.safetensors", &weights)];
        let partial = |file: &str| out.join(format!(".{file}.partial"));
        for (file, bytes) in files {
            fs::write(partial(file), bytes).map_err(|e| Error::io(partial(file), e))?;
        }
        for (file, _) in files {
            fs::rename(partial(file), out.join(file)).map_err(|e| Error::io(out.join(file), e))?;
        }
        Ok(())
    }
}
