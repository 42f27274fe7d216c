//! Browser bindings: a thin async JS class over the core. Errors become JS `Error`s with the
//! core's message; nothing here panics on user input.

use std::sync::Once;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::checkpoint::{self, Dtype};
use crate::config::ModelConfig;
use crate::data::PreferencePair;
use crate::device::ComputeDevice;
use crate::generate::{Decoder, SamplingConfig};
use crate::logps::TokenizedPair;
use crate::model::CausalLm;
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
    config: ModelConfig,
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
            other => {
                return Err(JsError::new(&format!("unknown backend {other:?}; use \"auto\", \"webgpu\" or \"cpu\"")));
            }
        };
        let config = ModelConfig::from_json(&config_json).map_err(js_err)?;
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

    /// Continues from saved policy weights (model.safetensors, f32/f16/bf16) and, if given, the
    /// optimizer state of [`Session::save_state`]. A file that does not fit changes nothing.
    #[wasm_bindgen(js_name = loadState)]
    pub fn load_state(&mut self, weights: Vec<u8>, optimizer: Option<Vec<u8>>) -> Result<(), JsError> {
        let policy = checkpoint::from_safetensors(&self.config, &weights, "model.safetensors", &self.device.device).map_err(js_err)?;
        self.trainer.load_state(policy, optimizer.as_deref()).map_err(js_err)
    }

    /// The current policy as model.safetensors bytes (HF Llama names, f32).
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
