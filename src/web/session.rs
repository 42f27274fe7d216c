//! The session the page trains: a policy, its frozen reference and a tokenizer on one device,
//! with sampling, the DPO update, undo snapshots, and saving.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::options::{Admission, LoadOptions, MemoryReport};
use super::story::Measurement;
use super::{builtin_files, bytes, from_js, init_runtime, object, to_js};
use crate::error::Error;
use crate::generate::{Decoder, PairDecoder, PairStyle, SamplingConfig};
use crate::hf::peft::{attach_peft_weights, to_peft};
use crate::hf::safetensors::{self, Dtype};
use crate::hf::{ModelFiles, TextTokenizer};
use crate::model::{CausalLm, LoraConfig, ModelConfig};
use crate::runtime::{ComputeDevice, MemoryEstimate, MemoryLimits};
use crate::storyworld::measure::Meter;
use crate::train::data::{PreferencePair, RatedResponse, Turns};
use crate::train::{DpoTrainer, StepReport, TrainConfig, TrainerSnapshot};
use crate::train::{RatingReport, TokenizedPair, TokenizedRating};

/// A completion split into tokens (EOS included, shown as "</s>") with each token's log-prob
/// under the policy and under the reference.
#[derive(Serialize, tsify::Tsify)]
pub struct TokenScores {
    tokens: Vec<String>,
    policy: Vec<f32>,
    reference: Vec<f32>,
}

/// Policy weights and optimizer state (safetensors bytes), as `Session.saveState` returns them.
#[derive(tsify::Tsify)]
pub struct TrainingState {
    #[tsify(type = "Uint8Array")]
    weights: Vec<u8>,
    #[tsify(type = "Uint8Array")]
    optimizer: Vec<u8>,
}

impl From<TrainingState> for JsValue {
    fn from(s: TrainingState) -> Self {
        object(&[
            ("weights", bytes(&s.weights)),
            ("optimizer", bytes(&s.optimizer)),
        ])
    }
}

/// A LoRA adapter in PEFT's format: adapter_config.json's text and adapter_model.safetensors.
#[derive(tsify::Tsify)]
pub struct PeftAdapter {
    config: String,
    #[tsify(type = "Uint8Array")]
    weights: Vec<u8>,
}

impl From<PeftAdapter> for JsValue {
    fn from(a: PeftAdapter) -> Self {
        object(&[("config", a.config.into()), ("weights", bytes(&a.weights))])
    }
}

/// A policy, its frozen reference and a tokenizer on one device.
#[wasm_bindgen]
pub struct Session {
    trainer: DpoTrainer,
    tokenizer: TextTokenizer,
    config: ModelConfig,
    device: ComputeDevice,
    lora: Option<LoraConfig>,
    memory: (MemoryEstimate, MemoryLimits),
}

#[wasm_bindgen]
impl Session {
    /// Loads a model from the bytes of config.json, tokenizer.json and model.safetensors.
    pub async fn create(
        config_json: String,
        tokenizer_json: Vec<u8>,
        weights: Vec<u8>,
        #[wasm_bindgen(unchecked_param_type = "Backend")] backend: JsValue,
    ) -> Result<Session, Error> {
        let backend = from_js(backend, "backend")?;
        Self::open(
            builtin_files(config_json, tokenizer_json, weights),
            LoadOptions {
                backend,
                lora: None,
                budget: None,
                max_length: None,
            },
        )
        .await
    }

    /// Loads a Hugging Face model folder: `files` are `{name, bytes}` (config.json,
    /// tokenizer.json, model.safetensors or its shards and index, tokenizer_config.json,
    /// chat_template.jinja, …; other files are ignored), or one llama.cpp `.gguf` file. Before
    /// any weight reaches the device,
    /// the memory training needs is estimated and compared with what the device allows; a model
    /// that would not fit is refused with the figures (and LoRA suggested when it would fit).
    #[wasm_bindgen(js_name = fromFiles)]
    pub async fn from_files(
        #[wasm_bindgen(unchecked_param_type = "{ name: string; bytes: Uint8Array }[]")]
        files: js_sys::Array,
        #[wasm_bindgen(unchecked_param_type = "LoadOptions")] options: JsValue,
    ) -> Result<Session, Error> {
        let options: LoadOptions = from_js(options, "load options")?;
        let mut named = Vec::new();
        for file in files.iter() {
            let name = js_sys::Reflect::get(&file, &"name".into())
                .ok()
                .and_then(|n| n.as_string())
                .ok_or_else(|| Error::Setting("each file needs a name".into()))?;
            let bytes = js_sys::Reflect::get(&file, &"bytes".into())
                .ok()
                .and_then(|b| b.dyn_into::<js_sys::Uint8Array>().ok())
                .ok_or_else(|| Error::Setting(format!("{name}: bytes must be a Uint8Array")))?;
            named.push((name, bytes.to_vec()));
        }
        Self::open(ModelFiles::new(named).expand_gguf()?, options).await
    }

    async fn open(files: ModelFiles, options: LoadOptions) -> Result<Session, Error> {
        init_runtime();
        let config = files.config()?;
        let tokenizer = files.tokenizer(&config)?;
        let Admission {
            device,
            lora,
            train,
            memory,
            limits,
        } = options.admit(&config).await?;
        let mut model = files.model(&config, &device.device)?;
        drop(files);
        if let Some(lora) = &lora {
            model = lora.apply(model, 0)?;
        }
        // The page switches objectives, resets and compares with the reference: it keeps one
        // whatever the objective (with LoRA, the base weights the policy shares).
        let reference = model.without_adapters();
        let trainer = DpoTrainer::new(model, Some(reference), train, &device.device)?;
        Ok(Session {
            trainer,
            tokenizer,
            config,
            device,
            lora,
            memory: (memory, limits),
        })
    }

    /// The memory estimate the model was admitted on, and the device's limits.
    #[wasm_bindgen(getter, unchecked_return_type = "MemoryReport")]
    pub fn memory(&self) -> JsValue {
        to_js(&MemoryReport::new(self.memory.0.clone(), self.memory.1))
    }

    /// "LoRA r=8, α=16 on q_proj, k_proj, …", or `undefined` when every weight trains.
    #[wasm_bindgen(getter)]
    pub fn lora(&self) -> Option<String> {
        self.lora
            .as_ref()
            .map(|l| format!("LoRA r={}, α={} on {}", l.r, l.alpha, l.targets.join(", ")))
    }

    /// Whether the model formats prompts with its chat template.
    #[wasm_bindgen(getter, js_name = hasChatTemplate)]
    pub fn has_chat_template(&self) -> bool {
        self.tokenizer.chat_template().is_some()
    }

    /// The trained LoRA adapter in PEFT's format (adapter_config.json text and
    /// adapter_model.safetensors bytes).
    #[wasm_bindgen(unchecked_return_type = "PeftAdapter")]
    pub async fn adapter(&self) -> Result<JsValue, Error> {
        let lora = self.lora.as_ref().ok_or_else(|| {
            Error::Setting(
                "this session trains every weight; there is no LoRA adapter to export".into(),
            )
        })?;
        let (config, weights) = to_peft(&self.trainer.policy(), lora).await?;
        Ok(PeftAdapter { config, weights }.into())
    }

    /// Where the model runs, for people ("GPU: <adapter>" or "CPU ...").
    #[wasm_bindgen(getter)]
    pub fn device(&self) -> String {
        self.device.description.clone()
    }

    /// The threads the CPU backend splits its kernels over (none on a GPU).
    #[wasm_bindgen(getter)]
    pub fn threads(&self) -> Option<usize> {
        self.device.threads
    }

    #[wasm_bindgen(getter, js_name = isGpu)]
    pub fn is_gpu(&self) -> bool {
        self.device.is_gpu
    }

    /// Whether the GPU is emulated on the CPU (SwiftShader in a browser without a GPU).
    #[wasm_bindgen(getter, js_name = isEmulatedGpu)]
    pub fn is_emulated_gpu(&self) -> bool {
        self.device.emulated
    }

    #[wasm_bindgen(getter, js_name = parameterCount)]
    pub fn parameter_count(&self) -> usize {
        use burn::module::Module;
        self.trainer.policy().without_adapters().num_params()
    }

    #[wasm_bindgen(js_name = trainConfig, unchecked_return_type = "TrainConfig")]
    pub fn train_config(&self) -> JsValue {
        to_js(self.trainer.config())
    }

    #[wasm_bindgen(js_name = setTrainConfig)]
    pub fn set_train_config(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "TrainConfig")] config: JsValue,
    ) -> Result<(), Error> {
        let config: TrainConfig = from_js(config, "training settings")?;
        self.trainer.set_config(config)
    }

    /// Starts sampling `n` responses to `prompt` from the current policy (`reference = true`:
    /// from the reference); [`Generation::next`] yields them token by token. Two responses are
    /// drawn as `pairs` says (independent when absent).
    #[wasm_bindgen(js_name = startGeneration)]
    pub fn start_generation(
        &self,
        prompt: String,
        n: usize,
        #[wasm_bindgen(unchecked_param_type = "SamplingConfig")] sampling: JsValue,
        reference: bool,
        #[wasm_bindgen(unchecked_param_type = "PairStyle | undefined")] pairs: JsValue,
    ) -> Result<Generation, Error> {
        let sampling: SamplingConfig = from_js(sampling, "sampling settings")?;
        let style: PairStyle = if pairs.is_undefined() {
            PairStyle::default()
        } else {
            from_js(pairs, "pair style")?
        };
        let ids = self.tokenizer.encode_prompt(&prompt)?;
        let model: CausalLm = if reference {
            self.trainer.reference()?.clone()
        } else {
            self.trainer.policy()
        };
        let (eos, device) = (self.tokenizer.eos_id(), &self.device.device);
        let sampler = if n == 2 && style == PairStyle::Branched {
            Sampler::Pair(PairDecoder::new(model, &ids, style, sampling, eos, device)?)
        } else {
            Sampler::Samples(Decoder::new(model, &ids, n, sampling, eos, device)?)
        };
        Ok(Generation {
            sampler,
            tokenizer: self.tokenizer.clone(),
        })
    }

    /// Starts measuring the built-in model's behaviour on `n` fresh stories for prompts drawn
    /// with `prompt_seed` (the same prompts each time): the oracle's rates and the KL to the
    /// reference; `reference = true` measures the reference itself.
    #[wasm_bindgen(js_name = startMeasurement)]
    pub fn start_measurement(
        &self,
        n: usize,
        prompt_seed: u32,
        #[wasm_bindgen(unchecked_param_type = "SamplingConfig")] sampling: JsValue,
        reference: bool,
    ) -> Result<Measurement, Error> {
        let sampling: SamplingConfig = from_js(sampling, "sampling settings")?;
        let frozen = self.trainer.reference()?.clone();
        let model = if reference {
            frozen.clone()
        } else {
            self.trainer.policy()
        };
        Ok(Measurement(Meter::new(
            model,
            frozen,
            self.tokenizer.clone(),
            n,
            prompt_seed.into(),
            sampling,
            &self.device.device,
        )?))
    }

    /// Learns from one preference (`steps_per_pair` updates on it and recent picks); one report
    /// per update, `values[0]` being this pick. Text rows are tokenized as TRL does, without the
    /// chat template: the page sends a chat model's picks as messages.
    #[wasm_bindgen(unchecked_return_type = "StepReport[]")]
    pub async fn prefer(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "PreferencePair")] pair: JsValue,
    ) -> Result<JsValue, Error> {
        let pair: PreferencePair = from_js(pair, "preference pair")?;
        let pair = TokenizedPair::new(&self.tokenizer, &pair, self.trainer.config().trainer)?;
        let reports: Vec<StepReport> = self.trainer.learn(pair, self.tokenizer.pad_id()).await?;
        Ok(to_js(&reports))
    }

    /// `steps_per_pair` updates on one pair without adding it to the picks that are replayed
    /// (training again on history, or on imported pairs). The pair is text, or TRL's
    /// conversational rows (formatted with the model's chat template).
    #[wasm_bindgen(js_name = trainOn, unchecked_return_type = "StepReport[]")]
    pub async fn train_on(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "PreferencePair")] pair: JsValue,
    ) -> Result<JsValue, Error> {
        let pair: PreferencePair = from_js(pair, "preference pair")?;
        let pair = TokenizedPair::new(&self.tokenizer, &pair, self.trainer.config().trainer)?;
        let batch = self
            .trainer
            .prepare(&[pair], self.tokenizer.pad_id())
            .await?;
        Ok(to_js(&self.trainer.train_batch(&batch).await?))
    }

    /// Learns from one rated response (`{prompt, completion, label}`: 👍 true, 👎 false) with KTO: `steps_per_pair`
    /// updates on a batch of it and up to `rating_batch − 1` recent ratings, `values` listing it
    /// first. Empty when, with `kto`, a first rating waits for a second to form a batch.
    #[wasm_bindgen(unchecked_return_type = "RatingReport[]")]
    pub async fn rate(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "RatedResponse")] rating: JsValue,
    ) -> Result<JsValue, Error> {
        let rating = self.tokenize_rating(from_js(rating, "rating")?)?;
        let reports: Vec<RatingReport> = self
            .trainer
            .learn_rated(rating, self.tokenizer.pad_id())
            .await?;
        Ok(to_js(&reports))
    }

    /// `steps_per_pair` updates on `ratings` as one batch, without adding them to the recent
    /// ratings (imported ratings, or training again).
    #[wasm_bindgen(js_name = trainOnRatings, unchecked_return_type = "RatingReport[]")]
    pub async fn train_on_ratings(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "RatedResponse[]")] ratings: JsValue,
    ) -> Result<JsValue, Error> {
        let ratings: Vec<RatedResponse> = from_js(ratings, "ratings")?;
        let ratings = self.tokenize_ratings(ratings)?;
        let batch = self
            .trainer
            .prepare_rated(&ratings, self.tokenizer.pad_id())
            .await?;
        Ok(to_js(&self.trainer.train_rated(&batch).await?))
    }

    /// Ratings stored before a reload, oldest first: the next rating's batch draws on them.
    #[wasm_bindgen(js_name = recallRatings)]
    pub fn recall_ratings(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "RatedResponse[]")] ratings: JsValue,
    ) -> Result<(), Error> {
        let ratings: Vec<RatedResponse> = from_js(ratings, "ratings")?;
        let ratings = self.tokenize_ratings(ratings)?;
        self.trainer.recall_ratings(ratings);
        Ok(())
    }

    fn tokenize_rating(&self, rating: RatedResponse) -> Result<TokenizedRating, Error> {
        TokenizedRating::new(&self.tokenizer, &rating)
    }

    fn tokenize_ratings(&self, ratings: Vec<RatedResponse>) -> Result<Vec<TokenizedRating>, Error> {
        ratings
            .into_iter()
            .map(|r| self.tokenize_rating(r))
            .collect()
    }

    /// KL(π ‖ π_ref) of `completions` to `prompt` (rows as TRL's), sampled from the current
    /// policy: per completion, the full-vocabulary KL at each of its positions, summed; their
    /// mean and standard error.
    #[wasm_bindgen(js_name = sequenceKl, unchecked_return_type = "KlEstimate")]
    pub async fn sequence_kl(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Turns")] prompt: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Turns[]")] completions: JsValue,
    ) -> Result<JsValue, Error> {
        let prompt: Turns = from_js(prompt, "prompt")?;
        let completions: Vec<Turns> = from_js(completions, "completions")?;
        let refs: Vec<&Turns> = completions.iter().collect();
        let style = self.trainer.config().trainer.tokenization();
        let (prompt, completions) = self.tokenizer.encode_row(&prompt, &refs, style)?;
        let rows: Vec<(&[u32], &[u32])> =
            completions.iter().map(|c| (&prompt[..], &c[..])).collect();
        Ok(to_js(
            &self
                .trainer
                .sequence_kl(&rows, self.tokenizer.pad_id())
                .await?,
        ))
    }

    /// Each token of `completion` with its log-prob under the policy and the reference.
    #[wasm_bindgen(js_name = tokenScores, unchecked_return_type = "TokenScores")]
    pub async fn token_scores(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Turns")] prompt: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Turns")] completion: JsValue,
    ) -> Result<JsValue, Error> {
        let prompt: Turns = from_js(prompt, "prompt")?;
        let completion: Turns = from_js(completion, "completion")?;
        let style = self.trainer.config().trainer.tokenization();
        let (prompt, mut completions) =
            self.tokenizer.encode_row(&prompt, &[&completion], style)?;
        let completion = completions.remove(0);
        let rows = self
            .trainer
            .token_logps(&[(&prompt, &completion)], self.tokenizer.pad_id())
            .await?;
        let [scores] = <[_; 1]>::try_from(rows).expect("one row per completion");
        // Truncation to the context keeps the start of the completion.
        let tokens = completion[..scores.policy.len()]
            .iter()
            .map(|&id| {
                if id == self.tokenizer.eos_id() {
                    Ok("</s>".to_string())
                } else {
                    self.tokenizer.decode(&[id])
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(to_js(&TokenScores {
            tokens,
            policy: scores.policy,
            reference: scores.reference,
        }))
    }

    /// Everything the next update will change, to [`Session::restore`] (undo).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.trainer.snapshot())
    }

    pub fn restore(&mut self, snapshot: &Snapshot) {
        self.trainer.restore(snapshot.0.clone());
    }

    /// The policy back to the reference with a fresh optimizer.
    pub fn reset(&mut self) -> Result<(), Error> {
        self.trainer.reset()
    }

    /// Updates applied to the policy so far.
    #[wasm_bindgen(getter)]
    pub fn steps(&self) -> f64 {
        self.trainer.steps() as f64
    }

    /// Policy weights and optimizer state as safetensors bytes, to store and load back.
    #[wasm_bindgen(js_name = saveState, unchecked_return_type = "TrainingState")]
    pub async fn save_state(&self) -> Result<JsValue, Error> {
        let (weights, optimizer) = self.trainer.save_state().await?;
        Ok(TrainingState { weights, optimizer }.into())
    }

    /// Continues from saved policy weights (model.safetensors, f32/f16/bf16; with LoRA, a PEFT
    /// adapter_model.safetensors of the session's rank) and, if given, the optimizer state of
    /// [`Session::save_state`]. A file that does not fit changes nothing.
    #[wasm_bindgen(js_name = loadState)]
    pub fn load_state(
        &mut self,
        weights: Vec<u8>,
        optimizer: Option<Vec<u8>>,
    ) -> Result<(), Error> {
        let policy = match &self.lora {
            Some(lora) => attach_peft_weights(
                self.trainer.reference()?.clone(),
                lora.r,
                lora.alpha,
                &weights,
                "adapter_model.safetensors",
            ),
            None => safetensors::from_safetensors(
                &self.config,
                &weights,
                "model.safetensors",
                &self.device.device,
            ),
        }?;
        self.trainer.load_state(policy, optimizer.as_deref())
    }

    /// The current policy as model.safetensors bytes (HF names, f32; LoRA adapters merged).
    #[wasm_bindgen(js_name = policyWeights)]
    pub async fn policy_weights(&self) -> Result<Vec<u8>, Error> {
        safetensors::to_safetensors(&self.trainer.policy(), Dtype::F32).await
    }

    /// Times one update by stage and sampling with and without the KV cache, on a copy of the
    /// reference with the session's training settings and fresh LoRA adapters when it trains
    /// them (the session's own policy is untouched). The same JSON as `webdpo bench`, less the
    /// process memory (the page adds wasm's).
    #[wasm_bindgen(unchecked_return_type = "BenchReport")]
    pub async fn benchmark(
        &self,
        #[wasm_bindgen(unchecked_param_type = "BenchConfig")] config: JsValue,
    ) -> Result<JsValue, Error> {
        let config: crate::bench::BenchConfig = from_js(config, "benchmark settings")?;
        let mut model = self.trainer.reference()?.clone();
        if let Some(lora) = &self.lora {
            model = lora.apply(model, 0)?;
        }
        let report = crate::bench::BenchReport::run(
            model,
            self.config.clone(),
            self.lora.clone(),
            self.trainer.config().clone(),
            self.tokenizer.pad_id(),
            config,
            &self.device,
            || {},
        )
        .await?;
        Ok(to_js(&report))
    }
}

/// What a [`Generation`] samples with: independent samples, or a branched pair.
enum Sampler {
    Samples(Decoder),
    Pair(PairDecoder),
}

/// Responses being sampled; see [`Session::start_generation`].
#[wasm_bindgen]
pub struct Generation {
    sampler: Sampler,
    tokenizer: TextTokenizer,
}

#[wasm_bindgen]
impl Generation {
    /// Samples one more token of every response and returns the texts so far, or `undefined`
    /// once every response has ended.
    #[wasm_bindgen(unchecked_return_type = "string[] | undefined")]
    pub async fn next(&mut self) -> Result<JsValue, Error> {
        let samples = match &mut self.sampler {
            Sampler::Samples(d) => match d.step().await? {
                Some(_) => d.samples().to_vec(),
                None => return Ok(JsValue::UNDEFINED),
            },
            Sampler::Pair(p) => match p.step().await? {
                true => p.samples().to_vec(),
                false => return Ok(JsValue::UNDEFINED),
            },
        };
        let texts = samples
            .iter()
            .map(|s| self.tokenizer.decode(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(to_js(&texts))
    }

    /// The text a branched pair's responses share at their start ("" otherwise, or before the
    /// second response begins).
    #[wasm_bindgen(getter)]
    pub fn shared(&self) -> Result<String, Error> {
        match &self.sampler {
            Sampler::Pair(p) => self.tokenizer.decode(&p.samples()[0][..p.shared()]),
            Sampler::Samples(_) => Ok(String::new()),
        }
    }
}

/// An opaque copy of the training state; see [`Session::snapshot`].
#[wasm_bindgen]
pub struct Snapshot(TrainerSnapshot);
