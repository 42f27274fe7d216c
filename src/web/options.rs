//! What the page asks for when it loads a model (backend, LoRA, memory budget, length) and the
//! memory check that decides, from config.json alone, whether the model may load.

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use super::{from_js, init_runtime, to_js};
use crate::error::Error;
use crate::model::{LoraConfig, ModelConfig};
use crate::runtime::{ComputeDevice, MemoryEstimate, MemoryLimits};
use crate::train::TrainConfig;

/// Where a model runs: WebGPU when the browser has a usable adapter (`auto`), or as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, tsify::Tsify)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Auto,
    Webgpu,
    Cpu,
}

/// How `Session.fromFiles` loads a model folder.
#[derive(Deserialize, tsify::Tsify)]
pub struct LoadOptions {
    pub(super) backend: Backend,
    /// Train LoRA adapters only (attention projections, or every linear layer).
    #[serde(default)]
    #[tsify(optional)]
    pub(super) lora: Option<LoraOptions>,
    /// Bytes the update may take; defaults to 4 GB (and at most wasm32's 4 GiB on the CPU).
    #[serde(default)]
    #[tsify(optional)]
    pub(super) budget: Option<f64>,
    /// Longest prompt + completion in tokens (the memory estimate assumes it); 256 by default.
    #[serde(default)]
    #[tsify(optional)]
    pub(super) max_length: Option<usize>,
}

#[derive(Deserialize, tsify::Tsify)]
pub struct LoraOptions {
    r: usize,
    alpha: f64,
    #[serde(default)]
    #[tsify(optional)]
    all_linear: bool,
}

/// A model's device, settings and memory, decided from its config before any weight is read.
pub(super) struct Admission {
    pub device: ComputeDevice,
    pub lora: Option<LoraConfig>,
    pub train: TrainConfig,
    pub memory: MemoryEstimate,
    pub limits: MemoryLimits,
}

impl LoadOptions {
    /// The device, and the memory check: a model that would not fit is refused here with the
    /// figures (LoRA suggested when it would fit).
    pub(super) async fn admit(&self, config: &ModelConfig) -> Result<Admission, Error> {
        let device = match self.backend {
            Backend::Cpu => ComputeDevice::cpu(),
            Backend::Webgpu => ComputeDevice::gpu().await?,
            Backend::Auto => ComputeDevice::gpu()
                .await
                .unwrap_or_else(|_| ComputeDevice::cpu()),
        };
        let arch = config.arch();
        let lora = self
            .lora
            .as_ref()
            .map(|l| LoraConfig::new(arch, l.r, l.alpha, l.all_linear));
        let mut train = TrainConfig::default();
        train.max_length = self.max_length.unwrap_or(BROWSER_MAX_LENGTH);
        let estimate = |lora: Option<&LoraConfig>| {
            MemoryEstimate::new(
                config,
                lora,
                train.optim,
                train.replay_pairs,
                train.max_length,
            )
        };
        let budget = self.budget.map_or(DEFAULT_BUDGET, |b| b as u64);
        let limits = MemoryLimits {
            max_buffer: device.max_buffer,
            budget: if device.is_gpu {
                budget
            } else {
                budget.min(WASM_CPU_BUDGET)
            },
        };
        let memory = estimate(lora.as_ref());
        let suggestion = lora
            .is_none()
            .then(|| estimate(Some(&LoraConfig::attention(arch, 8, 16.0))));
        memory.check(&limits, suggestion.as_ref())?;
        Ok(Admission {
            device,
            lora,
            train,
            memory,
            limits,
        })
    }
}

/// Bytes by what they hold, what the device allows, and both in words for people.
#[derive(Serialize, tsify::Tsify)]
pub struct MemoryReport {
    estimate: MemoryEstimate,
    limits: MemoryLimits,
    summary: String,
}

impl MemoryReport {
    pub(super) fn new(estimate: MemoryEstimate, limits: MemoryLimits) -> Self {
        Self {
            summary: estimate.summary(&limits),
            estimate,
            limits,
        }
    }
}

/// The memory check `Session.fromFiles` runs, from config.json alone: the page calls it before
/// reading a large folder's weights. Refuses (an error with the figures) or returns the report.
#[wasm_bindgen(js_name = checkMemory, unchecked_return_type = "MemoryReport")]
pub async fn check_memory(
    config_json: String,
    #[wasm_bindgen(unchecked_param_type = "LoadOptions")] options: JsValue,
) -> Result<JsValue, Error> {
    init_runtime();
    let options: LoadOptions = from_js(options, "load options")?;
    let config = ModelConfig::from_json(&config_json)?;
    let admitted = options.admit(&config).await?;
    Ok(to_js(&MemoryReport::new(admitted.memory, admitted.limits)))
}

/// What the update may take when the page does not say: 4 GB; on the CPU, wasm32's address
/// space less room for the runtime.
const DEFAULT_BUDGET: u64 = 4_000_000_000;
/// Longest prompt + response in the browser when the page does not say, in tokens: what people
/// type and read in the app is short, and activations grow with the length.
const BROWSER_MAX_LENGTH: usize = 256;
const WASM_CPU_BUDGET: u64 = 3_500_000_000;
