//! AdamW (Loshchilov & Hutter), as `torch.optim.AdamW` computes it, with state that can be read
//! back asynchronously: burn's optimizer serialises its moments with blocking reads, which WebGPU
//! in wasm forbids, and the app must save the optimizer after every update and undo one exactly.
//!
//! The state is saved as safetensors with PyTorch's names (`<param>.exp_avg`, `<param>.exp_avg_sq`)
//! and the step count in the metadata.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Dtype, parse_safetensors, write_safetensors};
use crate::error::{Error, Result};
use crate::model::{Llama, param_id};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
}

/// First and second moments of one parameter, flattened.
#[derive(Clone)]
struct Moments {
    exp_avg: Tensor<1>,
    exp_avg_sq: Tensor<1>,
}

/// AdamW state. Cloning is cheap (tensors are immutable and shared), so a clone is an exact
/// snapshot to undo to.
#[derive(Clone)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Updates applied so far (the bias corrections depend on it).
    pub steps: u64,
    moments: HashMap<ParamId, Moments>,
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> Self {
        Self { config, steps: 0, moments: HashMap::new() }
    }

    /// One update of every parameter of `model` that has a gradient, with the gradients
    /// multiplied by `grad_scale` first (gradient clipping).
    pub fn step(&mut self, lr: f64, model: Llama, mut grads: GradientsParams, grad_scale: f64) -> Llama {
        self.steps += 1;
        let mut update = Update { optim: self, grads: &mut grads, lr, grad_scale };
        model.map(&mut update)
    }

    /// The state as safetensors bytes (one device read), keyed by `model`'s parameter names.
    pub async fn to_safetensors(&self, model: &Llama) -> Result<Vec<u8>> {
        let mut tensors = Vec::new();
        for (name, shape, _) in model.named_tensors() {
            if let Some(m) = self.moments.get(&param_id(&name)) {
                tensors.push((format!("{name}.exp_avg"), shape.clone(), m.exp_avg.clone()));
                tensors.push((format!("{name}.exp_avg_sq"), shape, m.exp_avg_sq.clone()));
            }
        }
        let metadata = [("step".to_string(), self.steps.to_string()), ("optimizer".to_string(), "AdamW".to_string())];
        write_safetensors(&tensors, &metadata, Dtype::F32).await
    }

    /// Loads state saved by [`AdamW::to_safetensors`] for `model`; every parameter's moments must
    /// be present with its shape (or none at all, for a fresh optimizer).
    pub fn from_safetensors(config: AdamWConfig, model: &Llama, bytes: &[u8], file: &str, device: &Device) -> Result<Self> {
        let (tensors, metadata) = parse_safetensors(bytes, file)?;
        let err = |m: String| Error::checkpoint(file, m);
        let steps = metadata.get("step").and_then(|s| s.parse().ok()).ok_or_else(|| err("no step count in the metadata; is this an optimizer state file?".into()))?;
        let mut moments = HashMap::new();
        for (name, shape, _) in model.named_tensors() {
            let get = |suffix: &str| {
                let key = format!("{name}.{suffix}");
                let entry = tensors.get(&key).ok_or_else(|| err(format!("tensor {key} is missing")))?;
                if entry.shape != shape {
                    return Err(err(format!("tensor {key} has shape {:?}, the model needs {shape:?}", entry.shape)));
                }
                let values = entry.to_f32();
                let n = values.len();
                Ok(Tensor::<1>::from_data(TensorData::new(values, [n]), device))
            };
            if steps > 0 {
                moments.insert(param_id(&name), Moments { exp_avg: get("exp_avg")?, exp_avg_sq: get("exp_avg_sq")? });
            }
        }
        Ok(Self { config, steps, moments })
    }
}

struct Update<'a> {
    optim: &'a mut AdamW,
    grads: &'a mut GradientsParams,
    lr: f64,
    grad_scale: f64,
}

impl ModuleMapper for Update<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let AdamWConfig { beta1, beta2, epsilon, weight_decay } = self.optim.config;
        let require_grad = tensor.is_require_grad();
        let weight = tensor.inner();
        let shape = weight.dims();
        let n = shape.iter().product::<usize>();
        let grad = grad.reshape([n]).mul_scalar(self.grad_scale);
        // Moments: exponential moving averages of the gradient and its square.
        let (exp_avg, exp_avg_sq) = match self.optim.moments.remove(&id) {
            Some(m) => (m.exp_avg.mul_scalar(beta1) + grad.clone().mul_scalar(1.0 - beta1), m.exp_avg_sq.mul_scalar(beta2) + grad.square().mul_scalar(1.0 - beta2)),
            None => (grad.clone().mul_scalar(1.0 - beta1), grad.square().mul_scalar(1.0 - beta2)),
        };
        // Decoupled weight decay, then the bias-corrected step (torch's order and formula).
        let t = self.optim.steps as i32;
        let (correction1, correction2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
        let denom = exp_avg_sq.clone().div_scalar(correction2).sqrt().add_scalar(epsilon);
        let decayed = weight.reshape([n]).mul_scalar(1.0 - self.lr * weight_decay);
        let updated = decayed - exp_avg.clone().div(denom).mul_scalar(self.lr / correction1);
        self.optim.moments.insert(id, Moments { exp_avg, exp_avg_sq });
        let mut updated = Tensor::from_inner(updated.reshape(shape));
        if require_grad {
            updated = updated.require_grad();
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}
