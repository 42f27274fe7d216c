//! Browser bindings: a thin async JS class over the core. Errors become JS `Error`s with the
//! core's message; nothing here panics on user input.

use std::sync::Once;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::checkpoint;
use crate::config::LlamaConfig;
use crate::data::PreferencePair;
use crate::device::ComputeDevice;
use crate::generate::{SamplingConfig, generate};
use crate::logps::TokenizedPair;
use crate::model::Llama;
use crate::tokenizer::TextTokenizer;
use crate::trainer::{DpoTrainer, StepReport, TrainConfig};

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
export interface StepReport { metrics: DpoMetrics; values: PairValues; skipped?: string; }
export interface TrainConfig {
  dpo: { beta: number; loss_type: "sigmoid" | "ipo" | "hinge" | "robust"; label_smoothing: number };
  learning_rate: number; adam_beta1: number; adam_beta2: number; adam_epsilon: number;
  weight_decay: number; max_grad_norm: number; steps_per_pair: number; replay_pairs: number; rpo_alpha: number; max_length: number;
}
export interface SamplingConfig { temperature: number; top_k: number; top_p: number; max_new_tokens: number; seed: number; }
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

/// A policy, its frozen reference and a tokenizer on one device.
#[wasm_bindgen]
pub struct Session {
    trainer: DpoTrainer,
    tokenizer: TextTokenizer,
    config: LlamaConfig,
    device: ComputeDevice,
}

#[wasm_bindgen]
impl Session {
    /// Loads a model from the bytes of config.json, tokenizer.json and model.safetensors.
    /// `backend` is "webgpu", "cpu", or "auto" (WebGPU when the browser has it, else the CPU).
    pub async fn create(config_json: String, tokenizer_json: Vec<u8>, weights: Vec<u8>, backend: String) -> Result<Session, JsError> {
        init_runtime();
        let device = match backend.as_str() {
            "cpu" => ComputeDevice::cpu(),
            "webgpu" => ComputeDevice::gpu().await.map_err(js_err)?,
            "auto" => ComputeDevice::gpu().await.unwrap_or_else(|_| ComputeDevice::cpu()),
            other => return Err(JsError::new(&format!("unknown backend {other:?}; use \"auto\", \"webgpu\" or \"cpu\""))),
        };
        let config = LlamaConfig::from_json(&config_json).map_err(js_err)?;
        let tokenizer = TextTokenizer::from_bytes(&tokenizer_json, &config).map_err(js_err)?;
        let model = checkpoint::from_safetensors(&config, &weights, "model.safetensors", &device.device).map_err(js_err)?;
        let trainer = DpoTrainer::new(model, None, TrainConfig::default(), &device.device).map_err(js_err)?;
        Ok(Session { trainer, tokenizer, config, device })
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

    /// `n` responses to `prompt` from the current policy (`reference = true`: from the reference).
    #[wasm_bindgen(unchecked_return_type = "string[]")]
    pub async fn generate(&self, prompt: String, n: usize, #[wasm_bindgen(unchecked_param_type = "SamplingConfig")] sampling: JsValue, reference: bool) -> Result<JsValue, JsError> {
        let sampling: SamplingConfig = from_js(sampling, "sampling settings")?;
        let ids = self.tokenizer.encode_prompt(&prompt).map_err(js_err)?;
        let model: Llama = if reference { self.trainer.reference().clone() } else { self.trainer.policy() };
        let samples = generate(model, &ids, n, sampling, self.tokenizer.eos_id(), &self.device.device).await.map_err(js_err)?;
        let texts = samples.iter().map(|s| self.tokenizer.decode(s)).collect::<Result<Vec<_>, _>>().map_err(js_err)?;
        to_js(&texts)
    }

    /// Learns from one preference (`steps_per_pair` updates on it and recent picks); one report
    /// per update, `values[0]` being this pick.
    #[wasm_bindgen(unchecked_return_type = "StepReport[]")]
    pub async fn prefer(&mut self, prompt: String, chosen: String, rejected: String) -> Result<JsValue, JsError> {
        let pair = TokenizedPair::new(&self.tokenizer, &PreferencePair { prompt, chosen, rejected }).map_err(js_err)?;
        let reports: Vec<StepReport> = self.trainer.learn(pair, self.tokenizer.pad_id()).await.map_err(js_err)?;
        to_js(&reports)
    }

    /// The current policy as model.safetensors bytes (HF Llama names).
    #[wasm_bindgen(js_name = policyWeights)]
    pub async fn policy_weights(&self) -> Result<Vec<u8>, JsError> {
        checkpoint::to_safetensors(&self.trainer.policy()).await.map_err(js_err)
    }

    /// The config.json of the loaded model.
    #[wasm_bindgen(js_name = configJson)]
    pub fn config_json(&self) -> String {
        self.config.to_json()
    }
}

/// A randomly initialised model's safetensors bytes, for demos and tests without a download.
#[wasm_bindgen(js_name = initWeights)]
pub async fn init_weights(config_json: String, seed: u64) -> Result<Vec<u8>, JsError> {
    init_runtime();
    let config = LlamaConfig::from_json(&config_json).map_err(js_err)?;
    let model = Llama::init(&config, seed, &ComputeDevice::cpu().device).map_err(js_err)?;
    checkpoint::to_safetensors(&model).await.map_err(js_err)
}

/// A byte-level tokenizer.json matching [`initWeights`] models whose vocab is 259.
#[wasm_bindgen(js_name = byteLevelTokenizer)]
pub fn byte_level_tokenizer() -> String {
    crate::tokenizer::byte_level_tokenizer_json()
}
