//! Text ↔ token ids through HF `tokenizers`, loaded from `tokenizer.json` bytes and applied as
//! transformers applies it: the file's post-processor decides whether the prompt gets BOS.
//!
//! Prompt and completion are encoded separately and concatenated, so the prompt/completion
//! boundary of a DPO pair is exact (a joint encoding can merge tokens across it), and EOS is
//! appended to every completion, as TRL does for plain-text pairs.
//!
//! A model with a chat template (tokenizer_config.json's `chat_template`, or the
//! chat_template.jinja beside it) formats prompts as a user turn, rendered as transformers'
//! `apply_chat_template` renders them; a completion is what the template adds for the assistant's
//! turn (its end-of-turn token included), as TRL extracts it for conversational data.

use serde_json::json;

use crate::error::{Error, Result};
use crate::model::ModelConfig;
use crate::train::data::{Message, Turns};

#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    eos: u32,
    /// tokenizer_config.json's `bos_token`, when it names one in the vocabulary.
    bos: Option<u32>,
    pad: u32,
    chat: Option<ChatTemplate>,
}

/// How TRL 1.16's trainers tokenize a row: `DPOTrainer` and `KTOTrainer`, or the experimental
/// `CPOTrainer` and `ORPOTrainer`, which keep the older DPO tokenization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowTokenization {
    Dpo,
    Cpo,
}

/// A Hugging Face chat template (Jinja), compiled once, with the special tokens it may refer to.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    bos_token: String,
    eos_token: String,
}

fn parse_tokenizer_config(bytes: Option<&[u8]>) -> Result<serde_json::Value> {
    match bytes {
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| Error::Tokenizer(format!("tokenizer_config.json is not valid JSON: {e}"))),
        None => Ok(json!({})),
    }
}

/// A special token of tokenizer_config.json: a string, or an AddedToken object with its
/// `content`.
fn special_token(config: &serde_json::Value, key: &str) -> Option<String> {
    config[key]
        .as_str()
        .or_else(|| config[key]["content"].as_str())
        .map(String::from)
}

fn template_error(e: minijinja::Error) -> Error {
    Error::Tokenizer(format!("the chat template failed: {e:#}"))
}

impl ChatTemplate {
    /// The template of a model directory: chat_template.jinja (what transformers ≥ 4.43 writes)
    /// or tokenizer_config.json's `chat_template` (a string, or named templates of which
    /// "default" is used). `None` when it has neither. The template is tried on a conversation
    /// here, so a broken one is refused at load, not at the first prompt.
    pub fn from_files(
        tokenizer_config: Option<&[u8]>,
        jinja: Option<&str>,
    ) -> Result<Option<Self>> {
        let config = parse_tokenizer_config(tokenizer_config)?;
        let from_config = match &config["chat_template"] {
            serde_json::Value::String(t) => Some(t.clone()),
            serde_json::Value::Array(named) => named
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .map(String::from),
            _ => None,
        };
        let Some(source) = jinja.map(String::from).or(from_config) else {
            return Ok(None);
        };
        // As transformers' environment: trim and lstrip blocks, Python's string methods,
        // `raise_exception`.
        let mut env = minijinja::Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(template_error)?,
        );
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template_owned("chat", source)
            .map_err(template_error)?;
        let token = |key: &str| special_token(&config, key).unwrap_or_default();
        let template = Self {
            env,
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
        };
        template.render(
            &[Message {
                role: "user".into(),
                content: "Hello".into(),
            }],
            true,
        )?;
        Ok(Some(template))
    }

    /// The conversation as text, as `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=…)` renders it.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let template = self.env.get_template("chat").map_err(template_error)?;
        let messages = minijinja::Value::from(minijinja::value::Serde(messages));
        let context = minijinja::context! {
            messages,
            add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        template.render(context).map_err(template_error)
    }
}

impl TextTokenizer {
    /// `config` supplies the EOS (and pad) ids, as HF's generation config does.
    pub fn from_bytes(bytes: &[u8], config: &ModelConfig) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json could not be loaded: {e}")))?;
        let eos = config.eos_token_id.ok_or_else(|| {
            Error::Tokenizer(
                "config.json has no eos_token_id; completions need an end-of-sequence token".into(),
            )
        })?;
        let vocab = inner.get_vocab_size(true);
        if vocab > config.vocab_size {
            return Err(Error::Tokenizer(format!(
                "tokenizer has {vocab} tokens but the model's vocab_size is {}",
                config.vocab_size
            )));
        }
        Ok(Self {
            inner,
            eos,
            bos: None,
            pad: config.pad_token_id.unwrap_or(eos),
            chat: None,
        })
    }

    /// The special tokens tokenizer_config.json names (its BOS, which TRL's CPO and ORPO put
    /// before each prompt).
    pub fn with_special_tokens(mut self, tokenizer_config: Option<&[u8]>) -> Result<Self> {
        let config = parse_tokenizer_config(tokenizer_config)?;
        self.bos = special_token(&config, "bos_token").and_then(|t| self.inner.token_to_id(&t));
        Ok(self)
    }

    /// Formats prompts and completions with `template` from now on.
    pub fn with_chat_template(mut self, template: Option<ChatTemplate>) -> Self {
        self.chat = template;
        self
    }

    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat.as_ref()
    }

    /// TRL 1.16's tokenization of a row by the trainer that learns from it (`style`).
    pub fn encode_row(
        &self,
        prompt: &Turns,
        completions: &[&Turns],
        style: RowTokenization,
    ) -> Result<(Vec<u32>, Vec<Vec<u32>>)> {
        match style {
            RowTokenization::Dpo => self.encode_row_dpo(prompt, completions),
            RowTokenization::Cpo => self.encode_row_cpo(prompt, completions),
        }
    }

    /// `DPOTrainer`'s and `KTOTrainer`'s `tokenize_fn`: the prompt alone and the prompt followed
    /// by each completion are each tokenized whole, and the completions start where the prompt
    /// and every prompt + completion first differ (`common_prefix_length`), so tokens that merge
    /// across the boundary belong to the completions. Plain text is tokenized with the
    /// tokenizer's special tokens and never templated (TRL adds the EOS token's text to each
    /// completion that lacks it: here its id); messages go through the chat template, the
    /// prompt with the assistant's turn opening.
    fn encode_row_dpo(
        &self,
        prompt: &Turns,
        completions: &[&Turns],
    ) -> Result<(Vec<u32>, Vec<Vec<u32>>)> {
        let (prompt_ids, whole) = match prompt {
            Turns::Text(p) => {
                let whole = completions
                    .iter()
                    .map(|c| match c {
                        Turns::Text(c) => {
                            let mut ids = self.encode(&format!("{p}{c}"), true)?;
                            // TRL appends the EOS text unless the completion ends with it.
                            if !self.eos_token().is_some_and(|eos| c.ends_with(&eos)) {
                                ids.push(self.eos);
                            }
                            Ok(ids)
                        }
                        Turns::Messages(_) => Err(mixed()),
                    })
                    .collect::<Result<Vec<_>>>()?;
                (self.encode(p, true)?, whole)
            }
            Turns::Messages(m) => {
                let chat = self.chat.as_ref().ok_or_else(no_template)?;
                let whole = completions
                    .iter()
                    .map(|c| match c {
                        Turns::Messages(reply) => {
                            let conversation = [m.clone(), reply.clone()].concat();
                            self.encode(&chat.render(&conversation, false)?, false)
                        }
                        Turns::Text(_) => Err(mixed()),
                    })
                    .collect::<Result<Vec<_>>>()?;
                (self.encode(&chat.render(m, true)?, false)?, whole)
            }
        };
        let shared = whole
            .iter()
            .map(|ids| {
                prompt_ids
                    .iter()
                    .zip(ids)
                    .take_while(|(a, b)| a == b)
                    .count()
            })
            .min()
            .unwrap_or(prompt_ids.len());
        let completions = whole.iter().map(|ids| ids[shared..].to_vec()).collect();
        Ok((prompt_ids[..shared].to_vec(), completions))
    }

    /// The experimental `CPOTrainer`'s and `ORPOTrainer`'s `tokenize_row` (the older DPO one):
    /// messages become text first (`maybe_apply_chat_template`: the prompt is what the prompt and
    /// every prompt + completion share, a completion the text after it); the prompt and each
    /// prompt + completion are tokenized without special tokens, a completion starting after the
    /// prompt's tokens (one earlier when the last of them merges across the boundary); then BOS
    /// goes before the prompt and EOS after each completion, unless already there.
    fn encode_row_cpo(
        &self,
        prompt: &Turns,
        completions: &[&Turns],
    ) -> Result<(Vec<u32>, Vec<Vec<u32>>)> {
        let (prompt, texts): (String, Vec<String>) = match prompt {
            Turns::Text(p) => {
                let texts = completions
                    .iter()
                    .map(|c| match c {
                        Turns::Text(c) => Ok(c.clone()),
                        Turns::Messages(_) => Err(mixed()),
                    })
                    .collect::<Result<_>>()?;
                (p.clone(), texts)
            }
            Turns::Messages(m) => {
                let chat = self.chat.as_ref().ok_or_else(no_template)?;
                let prompt = chat.render(m, true)?;
                let whole = completions
                    .iter()
                    .map(|c| match c {
                        Turns::Messages(reply) => {
                            chat.render(&[m.clone(), reply.clone()].concat(), false)
                        }
                        Turns::Text(_) => Err(mixed()),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let shared = whole
                    .iter()
                    .map(|w| common_prefix_bytes(&prompt, w))
                    .min()
                    .unwrap_or(prompt.len());
                let texts = whole.iter().map(|w| w[shared..].to_string()).collect();
                (prompt[..shared].to_string(), texts)
            }
        };
        let prompt_ids = self.encode(&prompt, false)?;
        let whole = texts
            .iter()
            .map(|t| self.encode(&format!("{prompt}{t}"), false))
            .collect::<Result<Vec<_>>>()?;
        let shared = whole
            .iter()
            .map(|ids| {
                let start = prompt_ids.len().min(ids.len());
                if ids[..start] == prompt_ids[..start] {
                    start
                } else {
                    start.saturating_sub(1)
                }
            })
            .min()
            .unwrap_or(prompt_ids.len());
        let mut prompt = prompt_ids[..shared].to_vec();
        if let Some(bos) = self.bos.filter(|&bos| prompt.first() != Some(&bos)) {
            prompt.insert(0, bos);
        }
        let completions = whole
            .iter()
            .map(|ids| {
                let mut completion = ids[shared..].to_vec();
                if completion.last() != Some(&self.eos) {
                    completion.push(self.eos);
                }
                completion
            })
            .collect();
        Ok((prompt, completions))
    }

    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// The EOS token's text (`tokenizer.eos_token`), when the vocabulary names it.
    pub fn eos_token(&self) -> Option<String> {
        self.inner.id_to_token(self.eos)
    }

    /// Id used to right-pad batches; padded positions are masked, so any valid id works.
    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    /// Prompt ids, with the special tokens the tokenizer's post-processor adds (e.g. BOS), or
    /// formatted as a user's turn by the chat template.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        match &self.chat {
            Some(chat) => {
                let turn = Turns::Text(text.to_string()).messages("user");
                self.encode(&chat.render(&turn, true)?, false)
            }
            None => self.encode(text, true),
        }
    }

    /// Completion ids without special tokens, followed by EOS.
    pub fn encode_completion(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode(text, false)?;
        ids.push(self.eos);
        Ok(ids)
    }

    fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode(text, special)
            .map_err(|e| Error::Tokenizer(format!("cannot encode {text:?}: {e}")))?
            .get_ids()
            .to_vec())
    }

    /// Text of `ids`, special tokens dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::Tokenizer(format!("cannot decode: {e}")))
    }
}

/// The length in bytes of the longest common prefix of `a` and `b`, on a character boundary.
fn common_prefix_bytes(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i)
}

fn mixed() -> Error {
    Error::Tokenizer(
        "a row mixes plain text and message lists; TRL's rows are all text or all \
         conversational"
            .into(),
    )
}

fn no_template() -> Error {
    Error::Tokenizer(
        "conversational pairs (lists of messages) need a chat template, and this \
        model has none (tokenizer_config.json chat_template or chat_template.jinja)"
            .into(),
    )
}

/// Special tokens of [`byte_level_tokenizer_json`]: ids 0, 1, 2; the 256 bytes follow.
pub const BYTE_LEVEL_SPECIALS: [&str; 3] = ["<pad>", "<s>", "</s>"];

/// A byte-level tokenizer.json (GPT-2 byte alphabet, no merges, BOS added to prompts): any
/// text round-trips, so tiny test and demo models need no trained vocabulary.
pub fn byte_level_tokenizer_json() -> String {
    let mut vocab = serde_json::Map::new();
    for (i, s) in BYTE_LEVEL_SPECIALS.iter().enumerate() {
        vocab.insert(s.to_string(), json!(i));
    }
    for (b, c) in gpt2_byte_chars().into_iter().enumerate() {
        vocab.insert(c.to_string(), json!(BYTE_LEVEL_SPECIALS.len() + b));
    }
    let special = |(id, content)| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let added: Vec<_> = BYTE_LEVEL_SPECIALS
        .iter()
        .enumerate()
        .map(special)
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                            "use_regex": true});
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": bos_post_processor(),
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
                  "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": []}
    })
    .to_string()
}

/// A post-processor that starts every encoded prompt with `<s>` (id 1), as Llama's does.
pub fn bos_post_processor() -> serde_json::Value {
    let bos = json!({"SpecialToken": {"id": "<s>", "type_id": 0}});
    let seq = |id: &str, t: u32| json!({"Sequence": {"id": id, "type_id": t}});
    json!({
        "type": "TemplateProcessing",
        "single": [bos, seq("A", 0)],
        "pair": [bos, seq("A", 0), seq("B", 1)],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
    })
}

/// Trains a byte-level BPE of `vocab_size` tokens (specials `<pad>`, `<s>`, `</s>` = 0, 1, 2) on
/// `texts` and returns its tokenizer.json.
#[cfg(not(target_arch = "wasm32"))]
pub fn train_byte_level_bpe(texts: &[String], vocab_size: usize) -> Result<String> {
    use tokenizers::models::TrainerWrapper;
    use tokenizers::models::bpe::{BPE, BpeTrainer};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, Tokenizer};

    let fail = |e: tokenizers::Error| Error::Tokenizer(format!("training failed: {e}"));
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::new(false, true, true)));
    let specials = BYTE_LEVEL_SPECIALS
        .iter()
        .map(|s| AddedToken::from(s.to_string(), true))
        .collect();
    let mut trainer: TrainerWrapper = BpeTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    tokenizer.train(&mut trainer, texts.iter()).map_err(fail)?;
    let mut value: serde_json::Value =
        serde_json::from_str(&tokenizer.to_string(false).map_err(fail)?)
            .expect("tokenizers writes JSON");
    value["post_processor"] = bos_post_processor();
    Ok(value.to_string())
}

/// GPT-2's reversible byte → printable char table, indexed by byte.
fn gpt2_byte_chars() -> Vec<char> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap()
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap()
            }
        })
        .collect()
}
