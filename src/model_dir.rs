//! A model directory as transformers writes it: config.json, tokenizer.json, and model.safetensors
//! or its shards (model-0000i-of-0000n.safetensors listed by model.safetensors.index.json), and
//! when present the tokenizer's settings and chat template, carried over unchanged on save.

use std::fs;
use std::path::Path;

use burn::tensor::Device;

use crate::checkpoint;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::model::CausalLm;
use crate::tokenizer::{ChatTemplate, TextTokenizer};

pub struct ModelDir {
    pub config: ModelConfig,
    pub tokenizer_json: Vec<u8>,
    pub model: CausalLm,
    /// [`COMPANION_FILES`] the directory has, by name.
    pub companions: Vec<(String, Vec<u8>)>,
}

/// Files beside the weights that say how to tokenise and generate; copied as they are.
pub const COMPANION_FILES: [&str; 4] = ["tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json", "generation_config.json"];

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
        let companions = COMPANION_FILES.iter().filter(|f| dir.join(f).is_file()).map(|f| Ok((f.to_string(), read(&dir.join(f))?))).collect::<Result<_>>()?;
        Ok(Self { config, tokenizer_json, model, companions })
    }

    fn companion(&self, name: &str) -> Option<&[u8]> {
        self.companions.iter().find(|(n, _)| n == name).map(|(_, b)| &b[..])
    }

    /// The tokenizer, with the chat template when the directory has one.
    pub fn tokenizer(&self) -> Result<TextTokenizer> {
        let jinja = self.companion("chat_template.jinja").map(String::from_utf8_lossy);
        let template = ChatTemplate::from_files(self.companion("tokenizer_config.json"), jinja.as_deref())?;
        Ok(TextTokenizer::from_bytes(&self.tokenizer_json, &self.config)?.with_chat_template(template))
    }

    /// Writes `model` with this directory's config, tokenizer and companion files into `out`,
    /// leaving any other file there (a model card, figures, optimizer state) alone. Each file is
    /// written beside its target and all are renamed over the old ones only once all are written,
    /// so a failure loses nothing. A sharded source is written as one model.safetensors.
    pub async fn save(&self, model: &CausalLm, out: &Path) -> Result<()> {
        let weights = checkpoint::to_safetensors(model, checkpoint::Dtype::F32).await?;
        fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let config = self.config.to_json();
        let files: Vec<(&str, &[u8])> = [("config.json", config.as_bytes()), ("tokenizer.json", &self.tokenizer_json[..]), ("model.safetensors", &weights[..])]
            .into_iter()
            .chain(self.companions.iter().map(|(n, b)| (n.as_str(), &b[..])))
            .collect();
        let partial = |file: &str| out.join(format!(".{file}.partial"));
        for &(file, bytes) in &files {
            fs::write(partial(file), bytes).map_err(|e| Error::io(partial(file), e))?;
        }
        for &(file, _) in &files {
            fs::rename(partial(file), out.join(file)).map_err(|e| Error::io(out.join(file), e))?;
        }
        // An index left from a sharded model would take precedence over the new weights.
        let index = out.join("model.safetensors.index.json");
        if index.exists() {
            fs::remove_file(&index).map_err(|e| Error::io(&index, e))?;
        }
        Ok(())
    }
}
