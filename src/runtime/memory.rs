//! What training a model will hold in memory, known from its config before any weight is read:
//! weights, the reference, gradients, optimizer state and the activations of one update at the
//! chosen length, all f32 as this crate allocates them. The browser compares the estimate with
//! what the device grants and refuses (suggesting LoRA when that would fit) instead of crashing
//! the tab.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::LoraConfig;
use crate::model::ModelConfig;
use crate::model::NormKind;
use crate::model::lora_target_matches;
use crate::train::optimizer::Optim;

const F32: u64 = 4;

/// Bytes, by what they hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct MemoryEstimate {
    pub parameters: u64,
    /// Parameters that receive gradients: all of them, or the LoRA factors.
    pub trainable: u64,
    pub weights: u64,
    /// A second copy of the weights once the policy moves; nothing with LoRA (the reference is
    /// the same weights with the adapters off).
    pub reference: u64,
    pub gradients: u64,
    /// AdamW's two moments or SGD's momentum, per trainable parameter.
    pub optimizer: u64,
    /// What the forward keeps for the backward, and the logits' gradient, for one update.
    pub activations: u64,
    pub total: u64,
    /// The largest single tensor (token embedding, logits or attention scores): a WebGPU buffer
    /// larger than the device's binding limit cannot exist.
    pub largest_buffer: u64,
}

/// What the device allows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[cfg_attr(target_arch = "wasm32", tsify(missing_as_null))]
pub struct MemoryLimits {
    /// The largest buffer a shader may bind (WebGPU's `min(maxBufferSize,
    /// maxStorageBufferBindingSize)` as granted); `None` on the CPU.
    pub max_buffer: Option<u64>,
    /// Bytes the whole update may take (the browser's estimate of the device's memory, or
    /// wasm32's 4 GiB address space on the CPU).
    pub budget: u64,
}

/// Parameters of the model `config` describes.
pub fn parameter_count(c: &ModelConfig) -> u64 {
    let spec = c.arch().spec();
    let d = c.hidden_size as u64;
    let linears = spec.block_linears(c);
    let weights: u64 = linears.iter().map(|(_, l)| (l.d_in * l.d_out) as u64).sum();
    let biases: u64 = linears
        .iter()
        .filter(|(_, l)| l.bias)
        .map(|(_, l)| l.d_out as u64)
        .sum();
    // Two norms per block and one at the end; LayerNorm has a bias as well as a weight.
    let norm = match spec.norm {
        NormKind::Rms => d,
        NormKind::Layer => 2 * d,
    };
    let per_block = weights + biases + 2 * norm;
    let embeddings = (c.vocab_size as u64) * d * if c.tie_word_embeddings { 1 } else { 2 };
    let positions = match spec.embed_positions {
        Some(_) => c.max_position_embeddings as u64 * d,
        None => 0,
    };
    embeddings + positions + c.num_hidden_layers as u64 * per_block + norm
}

/// Parameters of the LoRA factors `lora` puts on the model: r · (in + out) per targeted layer.
pub fn lora_parameter_count(c: &ModelConfig, lora: &LoraConfig) -> u64 {
    let spec = c.arch().spec();
    let per_block: u64 = spec
        .block_linears(c)
        .iter()
        .filter(|(name, _)| {
            let name = format!("{}.0.{name}", spec.blocks);
            lora.targets.iter().any(|t| lora_target_matches(&name, t))
        })
        .map(|(_, l)| (lora.r * (l.d_in + l.d_out)) as u64)
        .sum();
    c.num_hidden_layers as u64 * per_block
}

impl MemoryEstimate {
    /// One update on `pairs` preference pairs (2 · pairs sequences) of up to `length` tokens.
    pub fn new(
        c: &ModelConfig,
        lora: Option<&LoraConfig>,
        optim: Optim,
        pairs: usize,
        length: usize,
    ) -> Self {
        let parameters = parameter_count(c);
        let trainable = lora.map_or(parameters, |l| lora_parameter_count(c, l));
        let (rows, t) = (
            (2 * pairs) as u64,
            length.min(c.max_position_embeddings) as u64,
        );
        let (d, f, v, h) = (
            c.hidden_size as u64,
            c.intermediate_size as u64,
            c.vocab_size as u64,
            c.num_attention_heads as u64,
        );
        // Per block, what autodiff keeps: norm inputs and outputs, q/k/v (rotated; the queries
        // regrouped for grouped-query attention), scores and their softmax, the attention output and its
        // projection, the feed-forward's hidden activations and the residual sums.
        let per_block = rows * t * (12 * d + 4 * f) + 2 * rows * h * t * t;
        // Logits, their log-softmax and the logits' gradient.
        let logits = 3 * rows * t * v;
        let activations = F32 * (c.num_hidden_layers as u64 * per_block + logits);
        let weights = F32 * parameters;
        let reference = if lora.is_some() { 0 } else { weights };
        let gradients = F32 * trainable;
        let moments = match optim {
            Optim::AdamW => 2,
            Optim::Sgd => 1,
        };
        let optimizer = F32 * moments * trainable;
        let total = weights + reference + gradients + optimizer + activations;
        let largest_buffer = F32
            * [v * d, rows * t * v, rows * h * t * t, rows * t * f]
                .into_iter()
                .max()
                .unwrap_or(0);
        Self {
            parameters,
            trainable,
            weights,
            reference,
            gradients,
            optimizer,
            activations,
            total,
            largest_buffer,
        }
    }

    /// Refuses what would not fit, saying what would: a buffer over the binding limit cannot be
    /// helped by LoRA (shorter sequences can); a total over the budget can.
    pub fn check(&self, limits: &MemoryLimits, lora: Option<&MemoryEstimate>) -> Result<()> {
        if let Some(max) = limits.max_buffer
            && self.largest_buffer > max
        {
            return Err(Error::Memory(format!(
                "this model needs a {} buffer (its largest tensor) but the WebGPU adapter binds at \
                most {}; use a shorter maximum length, or the CPU",
                gb(self.largest_buffer),
                gb(max)
            )));
        }
        if self.total > limits.budget {
            let hint = match lora {
                Some(l) if l.total <= limits.budget => {
                    format!("; with LoRA it needs about {} — turn LoRA on", gb(l.total))
                }
                _ => "; use a smaller model or a shorter maximum length".to_string(),
            };
            return Err(Error::Memory(format!(
                "training this model needs about {} ({}) but about {} is available here{hint}",
                gb(self.total),
                self.breakdown(),
                gb(limits.budget)
            )));
        }
        Ok(())
    }

    /// "training needs about 1.20 GB (weights … + activations …); largest buffer … of … the GPU
    /// binds", for people.
    pub fn summary(&self, limits: &MemoryLimits) -> String {
        let binds = limits
            .max_buffer
            .map(|max| format!(" of {} the GPU binds", gb(max)))
            .unwrap_or_default();
        format!(
            "training needs about {} ({}); largest buffer {}{binds}",
            gb(self.total),
            self.breakdown(),
            gb(self.largest_buffer)
        )
    }

    /// "weights 0.54 GB + reference … + activations …", for people.
    pub fn breakdown(&self) -> String {
        [
            ("weights", self.weights),
            ("reference", self.reference),
            ("gradients", self.gradients),
            ("optimizer", self.optimizer),
            ("activations", self.activations),
        ]
        .iter()
        .map(|(what, bytes)| format!("{what} {}", gb(*bytes)))
        .collect::<Vec<_>>()
        .join(" + ")
    }
}

/// Bytes as gigabytes (or megabytes below one), two decimals.
fn gb(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{:.2} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.0} MB", bytes as f64 / 1e6)
    }
}
