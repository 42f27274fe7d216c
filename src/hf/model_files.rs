//! A model folder as transformers writes it, held as named bytes: config.json, tokenizer.json,
//! model.safetensors or its shards (model-0000i-of-0000n.safetensors listed by
//! model.safetensors.index.json), and the files beside them that say how to tokenise and
//! generate. The CLI reads one from a directory, the browser from a folder the user picks; both
//! build the model and tokenizer here. A llama.cpp `.gguf` file stands for a whole folder: its
//! config.json, tokenizer.json and chat template are derived from it ([`ModelFiles::expand_gguf`])
//! and the weights read from it.

use std::collections::BTreeMap;

use burn::tensor::Device;

use crate::error::{Error, Result};
use crate::hf::gguf::{self, Gguf};
use crate::hf::safetensors;
use crate::hf::tokenizer::{ChatTemplate, TextTokenizer};
use crate::model::CausalLm;
use crate::model::ModelConfig;

/// Files beside the weights that say how to tokenise and generate; carried over as they are.
pub const COMPANION_FILES: [&str; 4] = [
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
    "generation_config.json",
];

pub const INDEX: &str = "model.safetensors.index.json";

fn is_gguf(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".gguf")
}

#[derive(Default, Clone)]
pub struct ModelFiles {
    files: BTreeMap<String, Vec<u8>>,
}

impl ModelFiles {
    /// Files by name (a path keeps only its last component: a picked folder's `name/config.json`).
    pub fn new(files: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        let files = files
            .into_iter()
            .map(|(name, bytes)| {
                (
                    name.rsplit(['/', '\\'])
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                    bytes,
                )
            })
            .collect();
        Self { files }
    }

    /// With a `.gguf` file among them: config.json, tokenizer.json, tokenizer_config.json (the
    /// special tokens) and chat_template.jinja derived from it as transformers derives them (the weights stay in the file).
    pub fn expand_gguf(mut self) -> Result<Self> {
        let Some(name) = self.gguf() else {
            return Ok(self);
        };
        let name = name.to_string();
        let file = Gguf::parse(&self.files[&name], &name)?;
        let config = file.config_json()?.to_string().into_bytes();
        let tokenizer = file.tokenizer_json()?.into_bytes();
        let template = file.chat_template().map(|t| t.as_bytes().to_vec());
        let special = file.tokenizer_config_json().to_string().into_bytes();
        self.insert("config.json", config);
        self.insert("tokenizer.json", tokenizer);
        self.insert("tokenizer_config.json", special);
        if let Some(template) = template {
            self.insert("chat_template.jinja", template);
        }
        Ok(self)
    }

    /// The name of the `.gguf` file, if one is here.
    fn gguf(&self) -> Option<&str> {
        self.files.keys().map(String::as_str).find(|n| is_gguf(n))
    }

    pub fn insert(&mut self, name: &str, bytes: Vec<u8>) {
        self.files.insert(name.to_string(), bytes);
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Vec::as_slice)
    }

    fn require(&self, name: &str) -> Result<&[u8]> {
        self.get(name)
            .ok_or_else(|| Error::Config(format!("the model folder has no {name}")))
    }

    pub fn config(&self) -> Result<ModelConfig> {
        ModelConfig::from_json(&String::from_utf8_lossy(self.require("config.json")?))
            .map_err(|e| Error::Config(format!("config.json: {e}")))
    }

    /// The weight files: the shards an index lists (its `weight_map` values), or model.safetensors.
    pub fn weight_files(&self) -> Result<Vec<String>> {
        if let Some(gguf) = self.gguf() {
            return Ok(vec![gguf.to_string()]);
        }
        let Some(index) = self.get(INDEX) else {
            return Ok(vec!["model.safetensors".into()]);
        };
        let index: serde_json::Value = serde_json::from_slice(index)
            .map_err(|e| Error::checkpoint(INDEX, format!("not valid JSON: {e}")))?;
        let map = index["weight_map"]
            .as_object()
            .ok_or_else(|| Error::checkpoint(INDEX, "no weight_map"))?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        files.sort();
        files.dedup();
        if let Some(bad) = files
            .iter()
            .find(|f| f.contains('/') || f.contains('\\') || f.starts_with('.'))
        {
            return Err(Error::checkpoint(
                INDEX,
                format!("shard {bad:?} is not a file in the model folder"),
            ));
        }
        Ok(files)
    }

    /// The names among `names` (a folder's top-level files) that loading reads, in their order;
    /// refused, naming `folder`, when config.json is not among them: nothing loads without it.
    pub fn select(names: &[String], folder: &str) -> Result<Vec<String>> {
        if let Some(gguf) = names.iter().find(|n| is_gguf(n)) {
            return Ok(vec![gguf.clone()]);
        }
        if !names.iter().any(|n| n == "config.json") {
            return Err(Error::Config(format!(
                "{folder} has no config.json: choose the folder that holds config.json, \
                 tokenizer.json and model.safetensors (or its shards), or a .gguf file"
            )));
        }
        let read = names.iter().filter(|n| Self::is_model_file(n));
        Ok(read.cloned().collect())
    }

    /// Whether loading reads a file of this name: the config, the tokenizer, the weights (one
    /// file, or an index and `model-0000i-of-0000n.safetensors` shards) and the companions.
    /// Anything else in a folder (other formats' weights, READMEs) is left unread.
    pub fn is_model_file(name: &str) -> bool {
        let shard = || {
            let Some(rest) = name
                .strip_prefix("model-")
                .and_then(|r| r.strip_suffix(".safetensors"))
            else {
                return false;
            };
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            rest.split_once("-of-")
                .is_some_and(|(i, n)| digits(i) && digits(n))
        };
        ["config.json", "tokenizer.json", "model.safetensors", INDEX].contains(&name)
            || COMPANION_FILES.contains(&name)
            || is_gguf(name)
            || shard()
    }

    /// The model on `device`; every tensor the config needs must be present with its shape.
    pub fn model(&self, config: &ModelConfig, device: &Device) -> Result<CausalLm> {
        if let Some(name) = self.gguf() {
            return gguf::load_model(&self.files[name], name, device).map(|(_, model)| model);
        }
        let shards = self
            .weight_files()?
            .into_iter()
            .map(|f| Ok((f.clone(), self.require(&f)?)))
            .collect::<Result<Vec<_>>>()?;
        safetensors::from_safetensors_shards(config, &shards, device)
    }

    /// The tokenizer, with the chat template when the folder has one.
    pub fn tokenizer(&self, config: &ModelConfig) -> Result<TextTokenizer> {
        let jinja = self.get("chat_template.jinja").map(String::from_utf8_lossy);
        let tokenizer_config = self.get("tokenizer_config.json");
        let template = ChatTemplate::from_files(tokenizer_config, jinja.as_deref())?;
        Ok(
            TextTokenizer::from_bytes(self.require("tokenizer.json")?, config)?
                .with_special_tokens(tokenizer_config)?
                .with_chat_template(template),
        )
    }

    /// The files to keep once the model is built: tokenizer and companions, not the weights.
    pub fn without_weights(&self) -> Self {
        let keep = |name: &str| {
            name == "config.json" || name == "tokenizer.json" || COMPANION_FILES.contains(&name)
        };
        Self {
            files: self
                .files
                .iter()
                .filter(|(n, _)| keep(n))
                .map(|(n, b)| (n.clone(), b.clone()))
                .collect(),
        }
    }

    /// The companion files present, by name.
    pub fn companions(&self) -> impl Iterator<Item = (&str, &[u8])> {
        COMPANION_FILES
            .iter()
            .filter_map(|&name| Some((name, self.get(name)?)))
    }
}
