//! A model directory on disk (see [`ModelFiles`] for what it holds): loaded for the CLI, and
//! written back with new weights.

use std::fs;
use std::path::Path;

use burn::tensor::Device;

use crate::error::{Error, Result};
use crate::hf::model_files::{COMPANION_FILES, INDEX, ModelFiles};
use crate::hf::safetensors;
use crate::hf::tokenizer::TextTokenizer;
use crate::model::CausalLm;
use crate::model::ModelConfig;

pub struct ModelDir {
    pub config: ModelConfig,
    pub model: CausalLm,
    /// config.json, tokenizer.json and the companion files (not the weights).
    pub files: ModelFiles,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io(path, e))
}

impl ModelDir {
    /// A transformers model folder, or a llama.cpp `.gguf` file (its config, tokenizer and chat
    /// template as transformers builds them; saved back as a transformers folder).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        if dir.is_file() && dir.extension().is_some_and(|e| e == "gguf") {
            return Self::load_gguf(dir, device);
        }
        let mut files = ModelFiles::default();
        files.insert("config.json", read(&dir.join("config.json"))?);
        for name in ["tokenizer.json", INDEX].into_iter().chain(COMPANION_FILES) {
            if dir.join(name).is_file() {
                files.insert(name, read(&dir.join(name))?);
            }
        }
        for name in files.weight_files()? {
            files.insert(&name, read(&dir.join(&name))?);
        }
        Self::build(files, device)
    }

    fn load_gguf(path: &Path, device: &Device) -> Result<Self> {
        let name = path.display().to_string();
        Self::build(
            ModelFiles::new([(name, read(path)?)]).expand_gguf()?,
            device,
        )
    }

    /// The model of `files`, which are kept without the weights.
    fn build(files: ModelFiles, device: &Device) -> Result<Self> {
        let config = files.config()?;
        let model = files.model(&config, device)?;
        Ok(Self {
            config,
            model,
            files: files.without_weights(),
        })
    }

    /// A directory-to-be: `model` with its config and tokenizer.json.
    pub fn new(config: ModelConfig, tokenizer_json: Vec<u8>, model: CausalLm) -> Self {
        Self {
            config,
            model,
            files: ModelFiles::new([("tokenizer.json".to_string(), tokenizer_json)]),
        }
    }

    /// The tokenizer, with the chat template when the directory has one.
    pub fn tokenizer(&self) -> Result<TextTokenizer> {
        self.files.tokenizer(&self.config)
    }

    /// Writes `model` with this directory's config, tokenizer and companion files into `out`,
    /// leaving any other file there (a model card, figures, optimizer state) alone. Each file is
    /// written beside its target and all are renamed over the old ones only once all are written,
    /// so a failure loses nothing. A sharded source is written as one model.safetensors.
    pub async fn save(&self, model: &CausalLm, out: &Path) -> Result<()> {
        let weights = safetensors::to_safetensors(model, safetensors::Dtype::F32).await?;
        fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let config = self.config.to_json();
        let tokenizer = self
            .files
            .get("tokenizer.json")
            .ok_or_else(|| Error::Config("the model has no tokenizer.json to save".into()))?;
        let files: Vec<(&str, &[u8])> = [
            ("config.json", config.as_bytes()),
            ("tokenizer.json", tokenizer),
            ("model.safetensors", &weights[..]),
        ]
        .into_iter()
        .chain(self.files.companions())
        .collect();
        let partial = |file: &str| out.join(format!(".{file}.partial"));
        for &(file, bytes) in &files {
            fs::write(partial(file), bytes).map_err(|e| Error::io(partial(file), e))?;
        }
        for &(file, _) in &files {
            fs::rename(partial(file), out.join(file)).map_err(|e| Error::io(out.join(file), e))?;
        }
        // An index left from a sharded model would take precedence over the new weights.
        let index = out.join(INDEX);
        if index.exists() {
            fs::remove_file(&index).map_err(|e| Error::io(&index, e))?;
        }
        Ok(())
    }
}
