//! The layers of a block, each with its HF module name: linear, norm and MLP, and the block
//! that joins them with attention ([`super::attention`]).

use burn::module::{Module, Param, ParamId};
use burn::tensor::activation::silu;
use burn::tensor::{DType, DataError, Device, Element, Tensor, TensorData};

use super::attention::{Attention, LayerCache, Positions};
use super::lora::Lora;
use crate::error::{Error, Result};
use crate::model::{ArchSpec, LinearSpec, MlpLayout, ModelConfig, NormKind};

/// Supplies a tensor for a parameter name and shape: random init or a checkpoint.
pub type TensorSource<'a> = dyn FnMut(&str, &[usize]) -> Result<TensorData> + 'a;

/// A parameter whose id is derived from its HF name, so that optimizer state saved for one
/// instance of a model (keyed by id) applies to the same model reloaded from a checkpoint.
pub(super) fn param<const D: usize>(
    source: &mut TensorSource,
    name: &str,
    shape: [usize; D],
    device: &Device,
) -> Result<Param<Tensor<D>>> {
    Ok(named_param(
        Tensor::from_data(source(name, &shape)?, device),
        name,
    ))
}

pub(super) fn named_param<const D: usize>(tensor: Tensor<D>, name: &str) -> Param<Tensor<D>> {
    let mut param = Param::from_tensor(tensor);
    param.id = param_id(name);
    param
}

/// The id of the parameter named `name` (FNV-1a of the name: stable across runs and targets).
pub fn param_id(name: &str) -> ParamId {
    ParamId::from(name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    }))
}

/// The values of a row-major `[rows, cols]` matrix in the order of its transpose, a square tile
/// at a time: reading a whole column of a large matrix per output row misses the cache at
/// every element, which made loading a model's linear layers slower than reading its file.
pub(crate) fn transposed<E: Copy>(values: &[E], rows: usize, cols: usize) -> Vec<E> {
    const TILE: usize = 32;
    let Some(&first) = values.first() else {
        return Vec::new();
    };
    let mut out = vec![first; rows * cols];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for c in c0..(c0 + TILE).min(cols) {
                for r in r0..(r0 + TILE).min(rows) {
                    out[c * rows + r] = values[r * cols + c];
                }
            }
        }
    }
    out
}

/// `data`, a `[rows, cols]` matrix, as its transpose: in f64 if it is f64 (the gradient checks
/// compute in f64), else in f32.
fn transposed_data(
    data: TensorData,
    rows: usize,
    cols: usize,
) -> std::result::Result<TensorData, DataError> {
    fn typed<E: Element>(
        data: TensorData,
        rows: usize,
        cols: usize,
    ) -> std::result::Result<TensorData, DataError> {
        let values = data.convert::<E>().try_into_vec::<E>()?;
        Ok(TensorData::new(
            transposed(&values, rows, cols),
            [cols, rows],
        ))
    }
    match data.dtype() {
        DType::F64 => typed::<f64>(data, rows, cols),
        _ => typed::<f32>(data, rows, cols),
    }
}

/// A parameter flattened, with its HF name and shape.
pub type NamedTensor = (String, Vec<usize>, Tensor<1>);

pub(super) fn flat<const D: usize>(name: String, p: &Param<Tensor<D>>) -> NamedTensor {
    let t = p.val();
    let shape = t.dims().to_vec();
    (
        name,
        shape.clone(),
        t.reshape([shape.iter().product::<usize>()]),
    )
}

/// A linear layer, `x W + b`, with an optional LoRA adapter. The weight is held `[in, out]`, the
/// transpose of HF's `nn.Linear` (`[out, in]`): its gradient `xᵀ · dy` then comes back in the
/// weight's own order, so the optimizer reads it without first copying a transposed view.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub lora: Option<Lora>,
    /// The HF module name (`model.layers.0.self_attn.q_proj`).
    pub name: String,
    /// GPT-2's Conv1D: the file stores the weight `[in, out]`, as held here.
    pub conv1d: bool,
}

impl Linear {
    pub(super) fn load(
        source: &mut TensorSource,
        name: &str,
        spec: LinearSpec,
        device: &Device,
    ) -> Result<Self> {
        let LinearSpec {
            d_in,
            d_out,
            bias,
            conv1d,
        } = spec;
        let weight_name = format!("{name}.weight");
        let weight = if conv1d {
            param(source, &weight_name, [d_in, d_out], device)?
        } else {
            // Transposed on the host, once, so that on the device the weight and its gradient
            // are both in order.
            let data = source(&weight_name, &[d_out, d_in])?;
            let data = transposed_data(data, d_out, d_in)
                .map_err(|e| Error::Config(format!("{weight_name}: {e:?}")))?;
            named_param(Tensor::from_data(data, device), &weight_name)
        };
        let bias = if bias {
            Some(param(source, &format!("{name}.bias"), [d_out], device)?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            lora: None,
            name: name.to_string(),
            conv1d,
        })
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let [_, d_out] = self.weight.dims();
        let x = x.reshape([b * t, d]);
        let mut y = x.clone().matmul(self.weight.val());
        if let Some(bias) = &self.bias {
            y = y + bias.val().unsqueeze();
        }
        if let Some(lora) = &self.lora {
            y = y + x
                .matmul(lora.a.val().transpose())
                .matmul(lora.b.val().transpose())
                .mul_scalar(lora.scale);
        }
        y.reshape([b, t, d_out])
    }

    /// The weight `[in, out]` with the adapter folded in: `W + scale · (B A)ᵀ`.
    fn merged_weight(&self) -> Tensor<2> {
        match &self.lora {
            Some(lora) => {
                let delta = lora.b.val().matmul(lora.a.val()).mul_scalar(lora.scale);
                self.weight.val() + delta.transpose()
            }
            None => self.weight.val(),
        }
    }

    /// The HF tensors of this layer: weight (in the file's layout, adapter merged) and bias.
    pub(super) fn named_tensors(&self, out: &mut Vec<NamedTensor>) {
        let weight = if self.conv1d {
            self.merged_weight()
        } else {
            self.merged_weight().transpose()
        };
        let shape = weight.dims().to_vec();
        out.push((
            format!("{}.weight", self.name),
            shape.clone(),
            weight.reshape([shape.iter().product::<usize>()]),
        ));
        if let Some(bias) = &self.bias {
            out.push(flat(format!("{}.bias", self.name), bias));
        }
    }
}

/// RMSNorm (Llama, Qwen2) or, with a bias, LayerNorm (GPT-2), computed as transformers does.
#[derive(Module, Debug)]
pub struct Norm {
    pub weight: Param<Tensor<1>>,
    pub bias: Option<Param<Tensor<1>>>,
    eps: f64,
    pub name: String,
}

impl Norm {
    pub(super) fn load(
        source: &mut TensorSource,
        name: &str,
        c: &ModelConfig,
        device: &Device,
    ) -> Result<Self> {
        let d = c.hidden_size;
        let bias = if c.arch().spec().norm == NormKind::Layer {
            Some(param(source, &format!("{name}.bias"), [d], device)?)
        } else {
            None
        };
        Ok(Self {
            weight: param(source, &format!("{name}.weight"), [d], device)?,
            bias,
            eps: c.norm_eps,
            name: name.to_string(),
        })
    }

    /// Scales by `1 / √(mean + ε)`, one value per position, as transformers does (`rsqrt`): a
    /// product, whose backward is lighter than a quotient's, over the whole activation.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let inv_std = |centred: &Tensor<3>| {
            let var = (centred.clone() * centred.clone()).mean_dim(2);
            var.add_scalar(self.eps).sqrt().recip()
        };
        match &self.bias {
            Some(bias) => {
                let centred = x.clone() - x.mean_dim(2);
                let scale = inv_std(&centred);
                centred.mul(scale).mul(self.weight.val().unsqueeze()) + bias.val().unsqueeze()
            }
            None => {
                let scale = inv_std(&x);
                x.mul(scale).mul(self.weight.val().unsqueeze())
            }
        }
    }

    pub(super) fn named_tensors(&self, out: &mut Vec<NamedTensor>) {
        out.push(flat(format!("{}.weight", self.name), &self.weight));
        if let Some(bias) = &self.bias {
            out.push(flat(format!("{}.bias", self.name), bias));
        }
    }
}

/// The feed-forward layer: SwiGLU `down(silu(gate(x)) · up(x))` (Llama, Qwen2), or GPT-2's
/// `c_proj(gelu(c_fc(x)))` (no gate; `up` is `c_fc`, `down` is `c_proj`).
#[derive(Module, Debug)]
pub struct Mlp {
    pub gate: Option<Linear>,
    pub up: Linear,
    pub down: Linear,
}

impl Mlp {
    pub(super) fn load(
        source: &mut TensorSource,
        linears: &BlockLinears,
        device: &Device,
    ) -> Result<Self> {
        let spec = linears.arch;
        let mut load =
            |module: &str| linears.load(source, &format!("{}.{module}", spec.mlp), device);
        Ok(match spec.feed_forward {
            MlpLayout::Plain => Self {
                gate: None,
                up: load("c_fc")?,
                down: load("c_proj")?,
            },
            MlpLayout::Gated => Self {
                gate: Some(load("gate_proj")?),
                up: load("up_proj")?,
                down: load("down_proj")?,
            },
        })
    }

    pub(super) fn linears(&self) -> Vec<&Linear> {
        self.gate.iter().chain([&self.up, &self.down]).collect()
    }

    pub(super) fn linears_mut(&mut self) -> Vec<&mut Linear> {
        self.gate
            .iter_mut()
            .chain([&mut self.up, &mut self.down])
            .collect()
    }

    pub(super) fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match &self.gate {
            Some(gate) => self
                .down
                .forward(silu(gate.forward(x.clone())).mul(self.up.forward(x))),
            None => self.down.forward(gelu_tanh(self.up.forward(x))),
        }
    }
}

/// GPT-2's `gelu_new`: `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
pub(super) fn gelu_tanh(x: Tensor<3>) -> Tensor<3> {
    let inner = (x.clone() + x.clone().powi_scalar(3).mul_scalar(0.044715))
        .mul_scalar((2.0 / std::f64::consts::PI).sqrt());
    x.clone().mul_scalar(0.5) * inner.tanh().add_scalar(1.0)
}

#[derive(Module, Debug)]
pub struct Block {
    pub attn_norm: Norm,
    pub attn: Attention,
    pub mlp_norm: Norm,
    pub mlp: Mlp,
}

/// A block's linear layers as its architecture stores them ([`crate::model::ArchSpec`]).
pub(super) struct BlockLinears {
    block: String,
    pub(super) arch: &'static ArchSpec,
    specs: Vec<(String, LinearSpec)>,
}

impl BlockLinears {
    pub(super) fn load(
        &self,
        source: &mut TensorSource,
        module: &str,
        device: &Device,
    ) -> Result<Linear> {
        let (_, spec) = self
            .specs
            .iter()
            .find(|(name, _)| name == module)
            .expect("an architecture's layout names each of its layers");
        Linear::load(source, &format!("{}.{module}", self.block), *spec, device)
    }
}

impl Block {
    pub(super) fn load(
        source: &mut TensorSource,
        name: &str,
        c: &ModelConfig,
        device: &Device,
    ) -> Result<Self> {
        let spec = c.arch().spec();
        let linears = BlockLinears {
            block: name.to_string(),
            arch: spec,
            specs: spec.block_linears(c),
        };
        Ok(Self {
            attn_norm: Norm::load(source, &format!("{name}.{}", spec.attn_norm), c, device)?,
            attn: Attention::load(source, &linears, c, device)?,
            mlp_norm: Norm::load(source, &format!("{name}.{}", spec.mlp_norm), c, device)?,
            mlp: Mlp::load(source, &linears, device)?,
        })
    }

    pub(super) fn forward(
        &self,
        x: Tensor<3>,
        pos: &Positions,
        cache: Option<&mut Option<LayerCache>>,
    ) -> Tensor<3> {
        let h = x.clone() + self.attn.forward(self.attn_norm.forward(x), pos, cache);
        h.clone() + self.mlp.forward(self.mlp_norm.forward(h))
    }
}
