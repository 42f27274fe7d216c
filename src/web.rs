//! Browser bindings: a thin async JS class over the core. Errors become JS `Error`s with the
//! core's message; nothing here panics on user input.

use std::sync::Once;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::adapter::{LoraConfig, attach_peft_weights, to_peft};
use crate::checkpoint::{self, Dtype};
use crate::config::ModelConfig;
use crate::data::PreferencePair;
use crate::device::ComputeDevice;
use crate::generate::{Decoder, SamplingConfig};
use crate::logps::TokenizedPair;
use crate::memory::{MemoryEstimate, MemoryLimits};
use crate::model::CausalLm;
use crate::model_files::ModelFiles;
use crate::tokenizer::TextTokenizer;
use crate::trainer::{DpoTrainer, StepReport, TrainConfig, TrainerSnapshot};

unsafe extern "C" {
    fn __wasm_call_ctors();
}

/// Runs the linker's static constructors once. cubecl registers its kernels through
/// `inventory`; without this, the wasm linker re-runs every constructor on each exported call.
/// Called by the start function and at the top of every wasm test (tests skip `start`).
pub fn init_runtime() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        unsafe { __wasm_call_ctors() };
        console_error_panic_hook::set_once();
    });
}

#[wasm_bindgen(start)]
fn start() {
    init_runtime();
}

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** TRL's DPOTrainer metric names; means over the pairs of a step. */
export interface DpoMetrics {
  "loss": number;
  "rewards/chosen": number;
  "rewards/rejected": number;
  "rewards/accuracies": number;
  "rewards/margins": number;
  "logps/chosen": number;
  "logps/rejected": number;
  /** Global gradient norm before clipping. */
  "grad_norm"?: number;
  /** NLL per chosen token when rpo_alpha > 0 (then included in "loss"). */
  "nll_loss"?: number;
}
export interface PairValues {
  losses: number[]; chosen_rewards: number[]; rejected_rewards: number[];
  policy_chosen: number[]; policy_rejected: number[]; reference_chosen: number[]; reference_rejected: number[];
}
/** One update: metrics from before it, and why it was skipped if it was. */
export interface StepReport { metrics: DpoMetrics; values: PairValues; skipped?: string; forward_backward_ms: number; }
/** `webdpo bench`'s settings; see src/bench.rs. */
export interface BenchConfig { warmup: number; runs: number; prompt_tokens: number; completion_tokens: number; new_tokens: number; recompute_runs: number; seed: number; }
export interface TrainConfig {
  dpo: { beta: number; loss_type: "sigmoid" | "ipo" | "hinge" | "robust"; label_smoothing: number };
  learning_rate: number; adam_beta1: number; adam_beta2: number; adam_epsilon: number; optim: "adamw" | "sgd"; momentum: number;
  weight_decay: number; max_grad_norm: number; steps_per_pair: number; replay_pairs: number; rpo_alpha: number; max_length: number;
}
export interface SamplingConfig { temperature: number; top_k: number; top_p: number; max_new_tokens: number; seed: number; }
/** A completion split into tokens (EOS included, shown as "</s>") with each token's log-prob
 *  under the policy and under the reference. */
export interface TokenScores { tokens: string[]; policy: number[]; reference: number[]; }
export interface TrainingState { weights: Uint8Array; optimizer: Uint8Array; }
/** How `Session.fromFiles` loads a model folder. */
export interface LoadOptions {
  backend: "auto" | "webgpu" | "cpu";
  /** Train LoRA adapters only (attention projections, or every linear layer). */
  lora?: { r: number; alpha: number; all_linear?: boolean } | null;
  /** Bytes the update may take; defaults to 4 GB (and at most wasm32's 4 GiB on the CPU). */
  budget?: number;
  /** Longest prompt + completion in tokens (the memory estimate assumes it). */
  max_length?: number;
}
/** Bytes by what they hold, and what the device allows. */
export interface MemoryReport {
  estimate: { parameters: number; trainable: number; weights: number; reference: number; gradients: number; optimizer: number; activations: number; total: number; largest_buffer: number };
  limits: { max_buffer: number | null; budget: number };
}
/** A LoRA adapter in PEFT's format. */
export interface PeftAdapter { config: string; weights: Uint8Array; }
"#;

fn js_err(e: crate::Error) -> JsError {
    JsError::new(&e.to_string())
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    value.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| JsError::new(&e.to_string()))
}

fn from_js<T: serde::de::DeserializeOwned>(value: JsValue, what: &str) -> Result<T, JsError> {
    serde_wasm_bindgen::from_value(value).map_err(|e| JsError::new(&format!("invalid {what}: {e}")))
}

#[derive(Deserialize)]
struct LoadOptions {
    backend: String,
    #[serde(default)]
    lora: Option<LoraOptions>,
    #[serde(default)]
    budget: Option<f64>,
    #[serde(default)]
    max_length: Option<usize>,
}

#[derive(Deserialize)]
struct LoraOptions {
    r: usize,
    alpha: f64,
    #[serde(default)]
    all_linear: bool,
}

/// A model's device, settings and memory, decided from its config before any weight is read.
struct Admission {
    device: ComputeDevice,
    lora: Option<LoraConfig>,
    train: TrainConfig,
    memory: MemoryEstimate,
    limits: MemoryLimits,
}

impl LoadOptions {
    /// The device, and the memory check: a model that would not fit is refused here with the
    /// figures (LoRA suggested when it would fit).
    async fn admit(&self, config: &ModelConfig) -> Result<Admission, JsError> {
        let device = match self.backend.as_str() {
            "cpu" => ComputeDevice::cpu(),
            "webgpu" => ComputeDevice::gpu().await.map_err(js_err)?,
            "auto" => ComputeDevice::gpu().await.unwrap_or_else(|_| ComputeDevice::cpu()),
            other => return Err(JsError::new(&format!("unknown backend {other:?}; use \"auto\", \"webgpu\" or \"cpu\""))),
        };
        let arch = config.arch();
        let lora = self.lora.as_ref().map(|l| LoraConfig::new(arch, l.r, l.alpha, l.all_linear));
        let mut train = TrainConfig::default();
        train.max_length = self.max_length.unwrap_or(train.max_length);
        let estimate = |lora: Option<&LoraConfig>| MemoryEstimate::new(config, lora, train.optim, train.replay_pairs, train.max_length);
        let budget = self.budget.map_or(DEFAULT_BUDGET, |b| b as u64);
        let limits = MemoryLimits { max_buffer: device.max_buffer, budget: if device.is_gpu { budget } else { budget.min(WASM_CPU_BUDGET) } };
        let memory = estimate(lora.as_ref());
        let suggestion = lora.is_none().then(|| estimate(Some(&LoraConfig::attention(arch, 8, 16.0))));
        memory.check(&limits, suggestion.as_ref()).map_err(js_err)?;
        Ok(Admission { device, lora, train, memory, limits })
    }
}

#[derive(Serialize)]
struct MemoryReport<'a> {
    estimate: &'a MemoryEstimate,
    limits: &'a MemoryLimits,
}

/// The memory check `Session.fromFiles` runs, from config.json alone: the page calls it before
/// reading a large folder's weights. Refuses (an error with the figures) or returns the report.
#[wasm_bindgen(js_name = checkMemory, unchecked_return_type = "MemoryReport")]
pub async fn check_memory(config_json: String, #[wasm_bindgen(unchecked_param_type = "LoadOptions")] options: JsValue) -> Result<JsValue, JsError> {
    init_runtime();
    let options: LoadOptions = from_js(options, "load options")?;
    let config = ModelConfig::from_json(&config_json).map_err(js_err)?;
    let admitted = options.admit(&config).await?;
    to_js(&MemoryReport { estimate: &admitted.memory, limits: &admitted.limits })
}

/// What the update may take when the page does not say: 4 GB; on the CPU, wasm32's address
/// space less room for the runtime.
const DEFAULT_BUDGET: u64 = 4_000_000_000;
const WASM_CPU_BUDGET: u64 = 3_500_000_000;

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
    /// `backend` is "webgpu", "cpu", or "auto" (WebGPU when the browser has it, else the CPU).
    pub async fn create(config_json: String, tokenizer_json: Vec<u8>, weights: Vec<u8>, backend: String) -> Result<Session, JsError> {
        let files = ModelFiles::new([("config.json".to_string(), config_json.into_bytes()), ("tokenizer.json".to_string(), tokenizer_json), ("model.safetensors".to_string(), weights)]);
        Self::open(files, LoadOptions { backend, lora: None, budget: None, max_length: None }).await
    }

    /// Loads a Hugging Face model folder: `files` are `{name, bytes}` (config.json,
    /// tokenizer.json, model.safetensors or its shards and index, tokenizer_config.json,
    /// chat_template.jinja, …; other files are ignored). Before any weight reaches the device,
    /// the memory training needs is estimated and compared with what the device allows; a model
    /// that would not fit is refused with the figures (and LoRA suggested when it would fit).
    #[wasm_bindgen(js_name = fromFiles)]
    pub async fn from_files(files: js_sys::Array, #[wasm_bindgen(unchecked_param_type = "LoadOptions")] options: JsValue) -> Result<Session, JsError> {
        let options: LoadOptions = from_js(options, "load options")?;
        let mut named = Vec::new();
        for file in files.iter() {
            let name = js_sys::Reflect::get(&file, &"name".into()).ok().and_then(|n| n.as_string()).ok_or_else(|| JsError::new("each file needs a name"))?;
            let bytes =
                js_sys::Reflect::get(&file, &"bytes".into()).ok().and_then(|b| b.dyn_into::<js_sys::Uint8Array>().ok()).ok_or_else(|| JsError::new(&format!("{name}: bytes must be a Uint8Array")))?;
            named.push((name, bytes.to_vec()));
        }
        Self::open(ModelFiles::new(named), options).await
    }

    async fn open(files: ModelFiles, options: LoadOptions) -> Result<Session, JsError> {
        init_runtime();
        let config = files.config().map_err(js_err)?;
        let tokenizer = files.tokenizer(&config).map_err(js_err)?;
        let Admission { device, lora, train, memory, limits } = options.admit(&config).await?;
        let mut model = files.model(&config, &device.device).map_err(js_err)?;
        drop(files);
        if let Some(lora) = &lora {
            model = lora.apply(model, 0).map_err(js_err)?;
        }
        let trainer = DpoTrainer::new(model, None, train, &device.device).map_err(js_err)?;
        Ok(Session { trainer, tokenizer, config, device, lora, memory: (memory, limits) })
    }

    /// The memory estimate the model was admitted on, and the device's limits.
    #[wasm_bindgen(getter, unchecked_return_type = "MemoryReport")]
    pub fn memory(&self) -> Result<JsValue, JsError> {
        to_js(&MemoryReport { estimate: &self.memory.0, limits: &self.memory.1 })
    }

    /// "LoRA r=8, α=16 on q_proj, k_proj, …", or `undefined` when every weight trains.
    #[wasm_bindgen(getter)]
    pub fn lora(&self) -> Option<String> {
        self.lora.as_ref().map(|l| format!("LoRA r={}, α={} on {}", l.r, l.alpha, l.targets.join(", ")))
    }

    /// Whether the model formats prompts with its chat template.
    #[wasm_bindgen(getter, js_name = hasChatTemplate)]
    pub fn has_chat_template(&self) -> bool {
        self.tokenizer.chat_template().is_some()
    }

    /// The trained LoRA adapter in PEFT's format (adapter_config.json text and
    /// adapter_model.safetensors bytes).
    #[wasm_bindgen(unchecked_return_type = "PeftAdapter")]
    pub async fn adapter(&self) -> Result<JsValue, JsError> {
        let lora = self.lora.as_ref().ok_or_else(|| JsError::new("this session trains every weight; there is no LoRA adapter to export"))?;
        let (config, weights) = to_peft(&self.trainer.policy(), lora).await.map_err(js_err)?;
        let out = js_sys::Object::new();
        js_sys::Reflect::set(&out, &"config".into(), &config.into()).map_err(|_| JsError::new("could not build the adapter object"))?;
        js_sys::Reflect::set(&out, &"weights".into(), &js_sys::Uint8Array::from(&weights[..]).into()).map_err(|_| JsError::new("could not build the adapter object"))?;
        Ok(out.into())
    }

    /// Where the model runs, for people ("GPU: <adapter>" or "CPU ...").
    #[wasm_bindgen(getter)]
    pub fn device(&self) -> String {
        self.device.description.clone()
    }

    #[wasm_bindgen(getter, js_name = isGpu)]
    pub fn is_gpu(&self) -> bool {
        self.device.is_gpu
    }

    #[wasm_bindgen(getter, js_name = parameterCount)]
    pub fn parameter_count(&self) -> usize {
        use burn::module::Module;
        self.trainer.reference().num_params()
    }

    #[wasm_bindgen(js_name = trainConfig, unchecked_return_type = "TrainConfig")]
    pub fn train_config(&self) -> Result<JsValue, JsError> {
        to_js(self.trainer.config())
    }

    #[wasm_bindgen(js_name = setTrainConfig)]
    pub fn set_train_config(&mut self, #[wasm_bindgen(unchecked_param_type = "TrainConfig")] config: JsValue) -> Result<(), JsError> {
        let config: TrainConfig = from_js(config, "training settings")?;
        self.trainer.set_config(config).map_err(js_err)
    }

    /// Starts sampling `n` responses to `prompt` from the current policy (`reference = true`:
    /// from the reference); [`Generation::next`] yields them token by token.
    #[wasm_bindgen(js_name = startGeneration)]
    pub fn start_generation(&self, prompt: String, n: usize, #[wasm_bindgen(unchecked_param_type = "SamplingConfig")] sampling: JsValue, reference: bool) -> Result<Generation, JsError> {
        let sampling: SamplingConfig = from_js(sampling, "sampling settings")?;
        let ids = self.tokenizer.encode_prompt(&prompt).map_err(js_err)?;
        let model: CausalLm = if reference { self.trainer.reference().clone() } else { self.trainer.policy() };
        let decoder = Decoder::new(model, &ids, n, sampling, self.tokenizer.eos_id(), &self.device.device).map_err(js_err)?;
        Ok(Generation { decoder, tokenizer: self.tokenizer.clone() })
    }

    /// Learns from one preference (`steps_per_pair` updates on it and recent picks); one report
    /// per update, `values[0]` being this pick.
    #[wasm_bindgen(unchecked_return_type = "StepReport[]")]
    pub async fn prefer(&mut self, prompt: String, chosen: String, rejected: String) -> Result<JsValue, JsError> {
        let pair = self.tokenize(prompt, chosen, rejected)?;
        let reports: Vec<StepReport> = self.trainer.learn(pair, self.tokenizer.pad_id()).await.map_err(js_err)?;
        to_js(&reports)
    }

    /// `steps_per_pair` updates on one pair without adding it to the picks that are replayed
    /// (training again on history, or on imported pairs).
    #[wasm_bindgen(js_name = trainOn, unchecked_return_type = "StepReport[]")]
    pub async fn train_on(&mut self, prompt: String, chosen: String, rejected: String) -> Result<JsValue, JsError> {
        let pair = self.tokenize(prompt, chosen, rejected)?;
        let batch = self.trainer.prepare(&[pair], self.tokenizer.pad_id()).await.map_err(js_err)?;
        to_js(&self.trainer.train_batch(&batch).await.map_err(js_err)?)
    }

    fn tokenize(&self, prompt: String, chosen: String, rejected: String) -> Result<TokenizedPair, JsError> {
        TokenizedPair::new(&self.tokenizer, &PreferencePair { prompt: prompt.into(), chosen: chosen.into(), rejected: rejected.into() }).map_err(js_err)
    }

    /// Each token of `completion` with its log-prob under the policy and the reference.
    #[wasm_bindgen(js_name = tokenScores, unchecked_return_type = "TokenScores")]
    pub async fn token_scores(&self, prompt: String, completion: String) -> Result<JsValue, JsError> {
        let (prompt, completion) = (prompt.into(), completion.into());
        let completion = self.tokenizer.encode_response(&prompt, &completion).map_err(js_err)?;
        let prompt = self.tokenizer.encode_prompt_turns(&prompt).map_err(js_err)?;
        let [scores] = <[_; 1]>::try_from(self.trainer.token_logps(&[(&prompt, &completion)], self.tokenizer.pad_id()).await.map_err(js_err)?).map_err(|_| JsError::new("expected one row"))?;
        // Truncation to the context keeps the start of the completion.
        let tokens = completion[..scores.policy.len()]
            .iter()
            .map(|&id| if id == self.tokenizer.eos_id() { Ok("</s>".to_string()) } else { self.tokenizer.decode(&[id]) })
            .collect::<Result<Vec<_>, _>>()
            .map_err(js_err)?;
        #[derive(Serialize)]
        struct TokenScores {
            tokens: Vec<String>,
            policy: Vec<f32>,
            reference: Vec<f32>,
        }
        to_js(&TokenScores { tokens, policy: scores.policy, reference: scores.reference })
    }

    /// Everything the next update will change, to [`Session::restore`] (undo).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.trainer.snapshot())
    }

    pub fn restore(&mut self, snapshot: &Snapshot) {
        self.trainer.restore(snapshot.0.clone());
    }

    /// The policy back to the reference with a fresh optimizer.
    pub fn reset(&mut self) {
        self.trainer.reset();
    }

    /// Updates applied to the policy so far.
    #[wasm_bindgen(getter)]
    pub fn steps(&self) -> f64 {
        self.trainer.steps() as f64
    }

    /// Policy weights and optimizer state as safetensors bytes, to store and load back.
    #[wasm_bindgen(js_name = saveState, unchecked_return_type = "TrainingState")]
    pub async fn save_state(&self) -> Result<JsValue, JsError> {
        let (weights, optimizer) = self.trainer.save_state().await.map_err(js_err)?;
        let state = js_sys::Object::new();
        js_sys::Reflect::set(&state, &"weights".into(), &js_sys::Uint8Array::from(&weights[..]).into()).map_err(|_| JsError::new("could not build the state object"))?;
        js_sys::Reflect::set(&state, &"optimizer".into(), &js_sys::Uint8Array::from(&optimizer[..]).into()).map_err(|_| JsError::new("could not build the state object"))?;
        Ok(state.into())
    }

    /// Continues from saved policy weights (model.safetensors, f32/f16/bf16; with LoRA, a PEFT
    /// adapter_model.safetensors of the session's rank) and, if given, the optimizer state of
    /// [`Session::save_state`]. A file that does not fit changes nothing.
    #[wasm_bindgen(js_name = loadState)]
    pub fn load_state(&mut self, weights: Vec<u8>, optimizer: Option<Vec<u8>>) -> Result<(), JsError> {
        let policy = match &self.lora {
            Some(lora) => attach_peft_weights(self.trainer.reference().clone(), lora.r, lora.alpha, &weights, "adapter_model.safetensors"),
            None => checkpoint::from_safetensors(&self.config, &weights, "model.safetensors", &self.device.device),
        }
        .map_err(js_err)?;
        self.trainer.load_state(policy, optimizer.as_deref()).map_err(js_err)
    }

    /// The current policy as model.safetensors bytes (HF names, f32; LoRA adapters merged).
    #[wasm_bindgen(js_name = policyWeights)]
    pub async fn policy_weights(&self) -> Result<Vec<u8>, JsError> {
        checkpoint::to_safetensors(&self.trainer.policy(), Dtype::F32).await.map_err(js_err)
    }

    /// Times one DPO update by stage and sampling with and without the KV cache, on a copy of
    /// the reference with the app's default settings (the session's own policy is untouched).
    /// The same JSON as `webdpo bench`, less the process memory (the page adds wasm's).
    pub async fn benchmark(&self, #[wasm_bindgen(unchecked_param_type = "BenchConfig")] config: JsValue) -> Result<JsValue, JsError> {
        let config: crate::bench::BenchConfig = from_js(config, "benchmark settings")?;
        let model = self.trainer.reference().clone();
        let report = crate::bench::BenchReport::run(model, self.config.clone(), TrainConfig::default(), self.tokenizer.pad_id(), config, &self.device, || {}).await.map_err(js_err)?;
        to_js(&report)
    }

    /// The config.json of the loaded model.
    #[wasm_bindgen(js_name = configJson)]
    pub fn config_json(&self) -> String {
        self.config.to_json()
    }
}

/// Responses being sampled; see [`Session::start_generation`].
#[wasm_bindgen]
pub struct Generation {
    decoder: Decoder,
    tokenizer: TextTokenizer,
}

#[wasm_bindgen]
impl Generation {
    /// Samples one more token of every response and returns the texts so far, or `undefined`
    /// once every response has ended.
    #[wasm_bindgen(unchecked_return_type = "string[] | undefined")]
    pub async fn next(&mut self) -> Result<JsValue, JsError> {
        if self.decoder.step().await.map_err(js_err)?.is_none() {
            return Ok(JsValue::UNDEFINED);
        }
        let texts = self.decoder.samples().iter().map(|s| self.tokenizer.decode(s)).collect::<Result<Vec<_>, _>>().map_err(js_err)?;
        to_js(&texts)
    }
}

/// An opaque copy of the training state; see [`Session::snapshot`].
#[wasm_bindgen]
pub struct Snapshot(TrainerSnapshot);

/// A randomly initialised model's safetensors bytes, for demos and tests without a download.
#[wasm_bindgen(js_name = initWeights)]
pub async fn init_weights(config_json: String, seed: u64) -> Result<Vec<u8>, JsError> {
    init_runtime();
    let config = ModelConfig::from_json(&config_json).map_err(js_err)?;
    let model = CausalLm::init(&config, seed, &ComputeDevice::cpu().device).map_err(js_err)?;
    checkpoint::to_safetensors(&model, Dtype::F32).await.map_err(js_err)
}

/// A byte-level tokenizer.json matching [`initWeights`] models whose vocab is 259.
#[wasm_bindgen(js_name = byteLevelTokenizer)]
pub fn byte_level_tokenizer() -> String {
    crate::tokenizer::byte_level_tokenizer_json()
}
