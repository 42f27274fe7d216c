//! AdamW (Loshchilov & Hutter) and SGD with momentum, each as `torch.optim` computes it, with
//! state that can be read back asynchronously: burn's optimizer serialises its moments with
//! blocking reads, which WebGPU in wasm forbids, and the app must save the optimizer after every
//! update and undo one exactly.
//!
//! The state is saved as safetensors with PyTorch's names (`<param>.exp_avg`, `<param>.exp_avg_sq`
//! for AdamW, `<param>.momentum_buffer` for SGD), each in its parameter's file layout, and the
//! step count in the metadata.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hf::safetensors::{Dtype, parse_safetensors, write_safetensors};
use crate::model::{CausalLm, Linear, param_id, transposed};

impl std::str::FromStr for Optim {
    type Err = Error;

    /// "adamw" or "sgd", as in settings files.
    fn from_str(name: &str) -> Result<Self> {
        serde_json::from_value(serde_json::json!(name))
            .map_err(|_| Error::Setting(format!("unknown optimizer {name:?}; use adamw or sgd")))
    }
}

/// Which update rule (names as in HF `TrainingArguments.optim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(rename_all = "lowercase")]
pub enum Optim {
    #[default]
    AdamW,
    /// Per-parameter steps proportional to the gradient: the parameters that matter most for
    /// this pair move most, where Adam's first steps move every parameter by about the
    /// learning rate.
    Sgd,
}

impl Optim {
    fn name(self) -> &'static str {
        match self {
            Optim::AdamW => "AdamW",
            Optim::Sgd => "SGD",
        }
    }

    /// The usual learning rate for DPO with this optimizer (SGD's is the app's default).
    pub fn default_learning_rate(self) -> f64 {
        match self {
            Optim::AdamW => 1e-4,
            Optim::Sgd => 2e-2,
        }
    }

    /// The per-parameter state tensors, by PyTorch's names.
    fn buffers(self) -> &'static [&'static str] {
        match self {
            Optim::AdamW => &["exp_avg", "exp_avg_sq"],
            Optim::Sgd => &["momentum_buffer"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    pub optim: Optim,
    /// AdamW's β1, β2 and ε.
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// SGD's momentum (torch: no dampening, not Nesterov).
    pub momentum: f64,
    /// Decoupled for AdamW; added to the gradient for SGD (as torch does).
    pub weight_decay: f64,
}

/// Optimizer state. Cloning is cheap (tensors are immutable and shared), so a clone is an exact
/// snapshot to undo to.
#[derive(Clone)]
pub struct Optimizer {
    pub config: OptimizerConfig,
    /// Updates applied so far (AdamW's bias corrections depend on it).
    pub steps: u64,
    /// Per parameter, flattened, in [`Optim::buffers`] order.
    state: HashMap<ParamId, Vec<Tensor<1>>>,
}

impl Optimizer {
    pub fn new(config: OptimizerConfig) -> Self {
        Self {
            config,
            steps: 0,
            state: HashMap::new(),
        }
    }

    /// New hyper-parameters. Switching between AdamW and SGD starts the state afresh (one's
    /// moments mean nothing to the other).
    pub fn set_config(&mut self, config: OptimizerConfig) {
        if config.optim != self.config.optim {
            *self = Self::new(config);
        }
        self.config = config;
    }

    /// One update of every parameter of `model` that has a gradient, with the gradients
    /// multiplied by `grad_scale` first (gradient clipping).
    pub fn step(
        &mut self,
        lr: f64,
        model: CausalLm,
        mut grads: GradientsParams,
        grad_scale: f64,
    ) -> CausalLm {
        self.steps += 1;
        let mut update = Update {
            optim: self,
            grads: &mut grads,
            lr,
            grad_scale,
        };
        model.map(&mut update)
    }

    /// The state as safetensors bytes (one device read), keyed by `model`'s parameter names.
    pub async fn to_safetensors(&self, model: &CausalLm) -> Result<Vec<u8>> {
        let layouts = linear_layouts(model);
        let mut tensors = Vec::new();
        for (name, shape, _) in model.trainable_tensors() {
            if let Some(state) = self.state.get(&param_id(&name)) {
                for (buffer, t) in self.config.optim.buffers().iter().zip(state) {
                    let t = match layouts.get(&name) {
                        Some(&([d_in, d_out], true)) => t
                            .clone()
                            .reshape([d_in, d_out])
                            .transpose()
                            .reshape([d_in * d_out]),
                        _ => t.clone(),
                    };
                    tensors.push((format!("{name}.{buffer}"), shape.clone(), t));
                }
            }
        }
        let metadata = [
            ("step".to_string(), self.steps.to_string()),
            (
                "optimizer".to_string(),
                self.config.optim.name().to_string(),
            ),
            (LAYOUT.to_string(), FILE_LAYOUT.to_string()),
        ];
        write_safetensors(&tensors, &metadata, Dtype::F32).await
    }

    /// Loads state saved by [`Optimizer::to_safetensors`] for `model` with the same optimizer;
    /// every parameter's buffers must be present with its shape (or none at all, at step 0).
    pub fn from_safetensors(
        config: OptimizerConfig,
        model: &CausalLm,
        bytes: &[u8],
        file: &str,
        device: &Device,
    ) -> Result<Self> {
        let (tensors, metadata) = parse_safetensors(bytes, file)?;
        let err = |m: String| Error::checkpoint(file, m);
        let steps = metadata
            .get("step")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                err("no step count in the metadata; is this an optimizer state file?".into())
            })?;
        let saved = metadata
            .get("optimizer")
            .map(String::as_str)
            .unwrap_or("AdamW");
        if saved != config.optim.name() {
            return Err(err(format!(
                "this is {saved} state, but the optimizer is {}",
                config.optim.name()
            )));
        }
        // State saved while linear weights were held `[out, in]` has no layout entry: each linear
        // weight's buffers are in that order, whatever their shape says.
        let file_layout = metadata.get(LAYOUT).map(String::as_str) == Some(FILE_LAYOUT);
        let layouts = linear_layouts(model);
        let mut state = HashMap::new();
        for (name, shape, _) in model.trainable_tensors() {
            if steps == 0 {
                break;
            }
            let buffers = config.optim.buffers().iter().map(|buffer| {
                let key = format!("{name}.{buffer}");
                let entry = tensors
                    .get(&key)
                    .ok_or_else(|| err(format!("tensor {key} is missing")))?;
                if entry.shape != shape {
                    return Err(err(format!(
                        "tensor {key} has shape {:?}, the model needs {shape:?}",
                        entry.shape
                    )));
                }
                let mut values = entry.to_f32();
                if let Some(&([d_in, d_out], nn_linear)) = layouts.get(&name) {
                    if nn_linear || !file_layout {
                        values = transposed(&values, d_out, d_in);
                    }
                }
                let n = values.len();
                Ok(Tensor::<1>::from_data(TensorData::new(values, [n]), device))
            });
            state.insert(param_id(&name), buffers.collect::<Result<Vec<_>>>()?);
        }
        Ok(Self {
            config,
            steps,
            state,
        })
    }
}

/// The metadata entry that says the state is in the parameters' file layout.
const LAYOUT: &str = "layout";
const FILE_LAYOUT: &str = "file";

/// The trainable linear weights by HF name (none with adapters: the LoRA factors are held as PEFT
/// stores them): their `[in, out]` as held, and whether the file stores them `[out, in]`
/// (`nn.Linear`; GPT-2's Conv1D stores them as held).
fn linear_layouts(model: &CausalLm) -> HashMap<String, ([usize; 2], bool)> {
    if model.has_adapters() {
        return HashMap::new();
    }
    let layout = |l: &Linear| (l.weight.dims(), !l.conv1d);
    model
        .linears()
        .into_iter()
        .map(|l| (format!("{}.weight", l.name), layout(l)))
        .collect()
}

struct Update<'a> {
    optim: &'a mut Optimizer,
    grads: &'a mut GradientsParams,
    lr: f64,
    grad_scale: f64,
}

impl Update<'_> {
    /// Adam's bias corrections at this step, `1 - β1^t` and `1 - β2^t`.
    fn bias_corrections(&self) -> (f64, f64) {
        let (t, c) = (self.optim.steps as i32, self.optim.config);
        (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t))
    }

    /// The new flattened weight from the old one and its (unscaled) gradient; updates the state.
    /// On the CPU one fused pass; on a GPU tensor ops, which burn's fusion merges there.
    fn apply(&mut self, id: ParamId, weight: Tensor<1>, grad: Tensor<1>) -> Tensor<1> {
        if weight.device() == Device::flex() && weight.dtype() == DType::F32 {
            return self.apply_fused(id, weight, grad);
        }
        let grad = grad.mul_scalar(self.grad_scale);
        let OptimizerConfig {
            optim,
            beta1,
            beta2,
            epsilon,
            momentum,
            weight_decay,
        } = self.optim.config;
        let previous = self.optim.state.remove(&id);
        let (updated, state) = match optim {
            Optim::AdamW => {
                // Moments: exponential moving averages of the gradient and its square.
                let (exp_avg, exp_avg_sq) = match previous.as_deref() {
                    Some([m, v]) => (
                        m.clone().mul_scalar(beta1) + grad.clone().mul_scalar(1.0 - beta1),
                        v.clone().mul_scalar(beta2) + grad.square().mul_scalar(1.0 - beta2),
                    ),
                    _ => (
                        grad.clone().mul_scalar(1.0 - beta1),
                        grad.square().mul_scalar(1.0 - beta2),
                    ),
                };
                // Decoupled weight decay, then the bias-corrected step (torch's order and formula).
                let (correction1, correction2) = self.bias_corrections();
                let denom = exp_avg_sq
                    .clone()
                    .div_scalar(correction2)
                    .sqrt()
                    .add_scalar(epsilon);
                let updated = weight.mul_scalar(1.0 - self.lr * weight_decay)
                    - exp_avg.clone().div(denom).mul_scalar(self.lr / correction1);
                (updated, vec![exp_avg, exp_avg_sq])
            }
            Optim::Sgd => {
                // L2 weight decay joins the gradient; the buffer starts as the first gradient.
                let grad = if weight_decay > 0.0 {
                    grad + weight.clone().mul_scalar(weight_decay)
                } else {
                    grad
                };
                let buffer = match previous.as_deref() {
                    Some([b]) if momentum > 0.0 => b.clone().mul_scalar(momentum) + grad,
                    _ => grad,
                };
                (weight - buffer.clone().mul_scalar(self.lr), vec![buffer])
            }
        };
        self.optim.state.insert(id, state);
        updated
    }

    /// [`Update::apply`] as one loop over the host values: each of the weight, gradient and
    /// state is read and written once, in place (a CPU tensor owned once hands its buffer over
    /// without a copy), where the tensor ops make a dozen passes and allocate. The same f32
    /// arithmetic in the same order as the tensor ops.
    fn apply_fused(&mut self, id: ParamId, weight: Tensor<1>, grad: Tensor<1>) -> Tensor<1> {
        let c = self.optim.config;
        let device = weight.device();
        let n = weight.dims()[0];
        // CPU reads complete at once, in wasm too.
        let host = |t: Tensor<1>| t.into_data().convert::<f32>();
        // Fresh state is zero: the first step's moments (and momentum buffer) come out as the
        // tensor ops' first-step values exactly.
        let mut buffers: Vec<TensorData> = match self.optim.state.remove(&id) {
            Some(state) => state.into_iter().map(host).collect(),
            None => c
                .optim
                .buffers()
                .iter()
                .map(|_| TensorData::new(vec![0f32; n], [n]))
                .collect(),
        };
        let (mut weight, grad) = (host(weight), host(grad));
        let w = weight.as_mut_slice::<f32>().expect("f32 weights");
        let g = grad.as_slice::<f32>().expect("f32 gradients");
        let scale = self.grad_scale as f32;
        match (c.optim, buffers.as_mut_slice()) {
            (Optim::AdamW, [m, v]) => {
                let (m, v) = (
                    m.as_mut_slice::<f32>().expect("f32 state"),
                    v.as_mut_slice::<f32>().expect("f32 state"),
                );
                let (correction1, correction2) = self.bias_corrections();
                let (b1, b2, one_b1, one_b2) = (
                    c.beta1 as f32,
                    c.beta2 as f32,
                    (1.0 - c.beta1) as f32,
                    (1.0 - c.beta2) as f32,
                );
                let (c2, eps) = (correction2 as f32, c.epsilon as f32);
                let decay = (1.0 - self.lr * c.weight_decay) as f32;
                let step = (self.lr / correction1) as f32;
                in_chunks(w, g, [m, v], move |w, g, [m, v]| {
                    for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
                        let g = g * scale;
                        *m = *m * b1 + g * one_b1;
                        *v = *v * b2 + g * g * one_b2;
                        let denom = (*v / c2).sqrt() + eps;
                        *w = *w * decay - *m / denom * step;
                    }
                });
            }
            (Optim::Sgd, [b]) => {
                let b = b.as_mut_slice::<f32>().expect("f32 state");
                let (decay, momentum, lr) =
                    (c.weight_decay as f32, c.momentum as f32, self.lr as f32);
                in_chunks(w, g, [b], move |w, g, [b]| {
                    for ((w, &g), b) in w.iter_mut().zip(g).zip(b) {
                        let mut g = g * scale;
                        if c.weight_decay > 0.0 {
                            g += *w * decay;
                        }
                        *b = *b * momentum + g;
                        *w -= *b * lr;
                    }
                });
            }
            _ => unreachable!("state buffers match the optimizer"),
        }
        let state = buffers
            .into_iter()
            .map(|b| Tensor::from_data(b, &device))
            .collect();
        self.optim.state.insert(id, state);
        Tensor::from_data(weight, &device)
    }
}

/// Elements per piece when a fused optimizer loop is split over the CPU's threads (burn-flex's
/// grain for element-wise kernels).
const CHUNK: usize = 64 * 1024;

/// Runs `update` over matching pieces of a weight, its gradient and its state buffers, on the
/// pool's threads where the build has them: the fused loop is bound by memory, and each core
/// adds its share of bandwidth. Every element's arithmetic is the same wherever it runs.
/// `update` holds its constants by value (a `move` closure): read through references to the
/// caller's, the loop on one thread was a quarter slower.
fn in_chunks<const N: usize>(
    w: &mut [f32],
    g: &[f32],
    state: [&mut [f32]; N],
    update: impl Fn(&mut [f32], &[f32], [&mut [f32]; N]) + Send + Sync,
) {
    let mut state = state.map(|s| s.chunks_mut(CHUNK));
    let pieces = w.chunks_mut(CHUNK).zip(g.chunks(CHUNK)).map(|(w, g)| {
        let s = state
            .each_mut()
            .map(|s| s.next().expect("state as long as the weight"));
        (w, g, s)
    });
    #[cfg(any(not(target_arch = "wasm32"), target_feature = "atomics"))]
    {
        use rayon::prelude::*;
        let pieces: Vec<_> = pieces.collect();
        pieces.into_par_iter().for_each(|(w, g, s)| update(w, g, s));
    }
    #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
    pieces.for_each(|(w, g, s)| update(w, g, s));
}

impl ModuleMapper for Update<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let weight = tensor.inner();
        let shape = weight.dims();
        let n = shape.iter().product::<usize>();
        let grad = grad.reshape([n]);
        let updated = self.apply(id, weight.reshape([n]), grad);
        let mut updated = Tensor::from_inner(updated.reshape(shape));
        if require_grad {
            updated = updated.require_grad();
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}
