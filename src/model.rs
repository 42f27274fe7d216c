//! A Llama-style decoder (nanoGPT-sized modules, HF tensor layout): token embedding, RMSNorm,
//! rotary position embeddings, causal grouped-query attention, SwiGLU MLP, optional tied head.
//!
//! Field names follow `transformers`' `LlamaForCausalLM` so that [`Llama::named_tensors`] yields
//! exactly the names of a HF `model.safetensors`. Linear weights are stored `[out, in]` as in HF.

use burn::module::{Module, Param, ParamId};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::LlamaConfig;
use crate::error::Result;

/// Supplies a tensor for a parameter name and shape: random init or a checkpoint.
pub type TensorSource<'a> = dyn FnMut(&str, &[usize]) -> Result<TensorData> + 'a;

/// A parameter whose id is derived from its HF name, so that optimizer state saved for one
/// instance of a model (keyed by id) applies to the same model reloaded from a checkpoint.
fn param<const D: usize>(source: &mut TensorSource, name: &str, shape: [usize; D], device: &Device) -> Result<Param<Tensor<D>>> {
    let data = source(name, &shape)?;
    let mut param = Param::from_tensor(Tensor::from_data(data, device));
    param.id = param_id(name);
    Ok(param)
}

/// The id of the parameter named `name` (FNV-1a of the name: stable across runs and targets).
pub fn param_id(name: &str) -> ParamId {
    ParamId::from(name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)))
}

/// A bias-free linear layer with the weight stored `[out, in]`.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
}

impl Linear {
    fn load(source: &mut TensorSource, name: &str, d_in: usize, d_out: usize, device: &Device) -> Result<Self> {
        Ok(Self { weight: param(source, &format!("{name}.weight"), [d_out, d_in], device)? })
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let [d_out, _] = self.weight.dims();
        x.reshape([b * t, d]).matmul(self.weight.val().transpose()).reshape([b, t, d_out])
    }
}

/// Root-mean-square layer norm, computed as HF's `LlamaRMSNorm`.
#[derive(Module, Debug)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
    eps: f64,
}

impl RmsNorm {
    fn load(source: &mut TensorSource, name: &str, d: usize, eps: f64, device: &Device) -> Result<Self> {
        Ok(Self { weight: param(source, &format!("{name}.weight"), [d], device)?, eps })
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let rms = x.clone().square().mean_dim(2).add_scalar(self.eps).sqrt();
        x.div(rms).mul(self.weight.val().unsqueeze())
    }
}

/// What a forward needs to know about positions `start..start + len`: rotary embedding tables
/// (HF's `rotate_half` layout) and the causal mask over all keys so far, built once for all layers.
pub struct Positions {
    /// `[1, len, 1, head_dim]`: broadcast over batch and heads of `[batch, len, heads, head_dim]`.
    cos: Tensor<4>,
    sin: Tensor<4>,
    /// `[head_dim, head_dim]`: `x · rotate = rotate_half(x) = [-x2, x1]`. One exact matmul (entries
    /// 0 and ±1) instead of two slices, a negation and a concatenation.
    rotate: Tensor<2>,
    /// `[1, 1, len, start + len]`: 0 where query i may see key j (j ≤ start + i), −1e9 elsewhere;
    /// added to the attention scores (broadcast over batch and heads). `None` for one position
    /// (cached decoding), which sees every key.
    causal: Option<Tensor<4>>,
}

impl Positions {
    fn new(theta: f64, hd: usize, start: usize, len: usize, device: &Device) -> Self {
        let half = hd / 2;
        let mut cos = Vec::with_capacity(len * hd);
        let mut sin = Vec::with_capacity(len * hd);
        for pos in start..start + len {
            for i in 0..hd {
                let inv_freq = 1.0 / theta.powf((2 * (i % half)) as f64 / hd as f64);
                let angle = pos as f64 * inv_freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let mut rotate = vec![0.0f32; hd * hd];
        for j in 0..half {
            rotate[(j + half) * hd + j] = -1.0;
            rotate[j * hd + j + half] = 1.0;
        }
        let keys = start + len;
        let causal = (len > 1).then(|| {
            let bias: Vec<f32> = (0..len).flat_map(|i| (0..keys).map(move |j| if j <= start + i { 0.0 } else { -1e9 })).collect();
            Tensor::from_data(TensorData::new(bias, [1, 1, len, keys]), device)
        });
        let table = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, len, 1, hd]), device);
        Self {
            cos: table(cos),
            sin: table(sin),
            rotate: Tensor::from_data(TensorData::new(rotate, [hd, hd]), device),
            causal,
        }
    }

    /// `x`: `[batch, len, heads, head_dim]`.
    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, t, h, hd] = x.dims();
        let rotated = x.clone().reshape([b * t * h, hd]).matmul(self.rotate.clone()).reshape([b, t, h, hd]);
        x.mul(self.cos.clone()) + rotated.mul(self.sin.clone())
    }
}

/// Keys and values of the positions seen so far, per layer: `[batch, kv_heads, len, head_dim]`.
#[derive(Default, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    len: usize,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    n_heads: usize,
    n_kv_heads: usize,
}

impl Attention {
    fn load(source: &mut TensorSource, name: &str, c: &LlamaConfig, device: &Device) -> Result<Self> {
        let (d, hd) = (c.hidden_size, c.head_dim());
        Ok(Self {
            q_proj: Linear::load(source, &format!("{name}.q_proj"), d, c.num_attention_heads * hd, device)?,
            k_proj: Linear::load(source, &format!("{name}.k_proj"), d, c.kv_heads() * hd, device)?,
            v_proj: Linear::load(source, &format!("{name}.v_proj"), d, c.kv_heads() * hd, device)?,
            o_proj: Linear::load(source, &format!("{name}.o_proj"), c.num_attention_heads * hd, d, device)?,
            n_heads: c.num_attention_heads,
            n_kv_heads: c.kv_heads(),
        })
    }

    fn forward(&self, x: Tensor<3>, pos: &Positions, cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let hd = d / self.n_heads;
        // Rotary embeddings act on the projections' own layout; heads then move ahead of positions.
        let split = |y: Tensor<3>, n: usize| y.reshape([b, t, n, hd]);
        let q = pos.apply(split(self.q_proj.forward(x.clone()), self.n_heads)).swap_dims(1, 2);
        let mut k = pos.apply(split(self.k_proj.forward(x.clone()), self.n_kv_heads)).swap_dims(1, 2);
        let mut v = split(self.v_proj.forward(x), self.n_kv_heads).swap_dims(1, 2);
        // Incremental decoding: attend over the cached positions plus the new ones.
        let past = match cache {
            Some(slot) => {
                let past = slot.as_ref().map_or(0, |(pk, _)| pk.dims()[2]);
                if let Some((pk, pv)) = slot.take() {
                    k = Tensor::cat(vec![pk, k], 2);
                    v = Tensor::cat(vec![pv, v], 2);
                }
                *slot = Some((k.clone(), v.clone()));
                past
            }
            None => 0,
        };
        let s = past + t;
        // Grouped-query attention: each key/value head serves `n_heads / n_kv_heads` query heads.
        let rep = self.n_heads / self.n_kv_heads;
        let expand = |y: Tensor<4>| if rep == 1 { y } else { y.unsqueeze_dim::<5>(2).repeat_dim(2, rep).reshape([b, self.n_heads, s, hd]) };
        let (k, v) = (expand(k), expand(v));
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((hd as f64).sqrt());
        let weights = softmax(match &pos.causal {
            Some(bias) => scores + bias.clone(),
            None => scores,
        }, 3);
        let out = weights.matmul(v).swap_dims(1, 2).reshape([b, t, d]);
        self.o_proj.forward(out)
    }
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    fn load(source: &mut TensorSource, name: &str, c: &LlamaConfig, device: &Device) -> Result<Self> {
        let (d, f) = (c.hidden_size, c.intermediate_size);
        Ok(Self {
            gate_proj: Linear::load(source, &format!("{name}.gate_proj"), d, f, device)?,
            up_proj: Linear::load(source, &format!("{name}.up_proj"), d, f, device)?,
            down_proj: Linear::load(source, &format!("{name}.down_proj"), f, d, device)?,
        })
    }

    /// SwiGLU: `down(silu(gate(x)) * up(x))`.
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.down_proj.forward(silu(self.gate_proj.forward(x.clone())).mul(self.up_proj.forward(x)))
    }
}

#[derive(Module, Debug)]
pub struct Block {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

impl Block {
    fn load(source: &mut TensorSource, name: &str, c: &LlamaConfig, device: &Device) -> Result<Self> {
        Ok(Self {
            input_layernorm: RmsNorm::load(source, &format!("{name}.input_layernorm"), c.hidden_size, c.rms_norm_eps, device)?,
            self_attn: Attention::load(source, &format!("{name}.self_attn"), c, device)?,
            post_attention_layernorm: RmsNorm::load(source, &format!("{name}.post_attention_layernorm"), c.hidden_size, c.rms_norm_eps, device)?,
            mlp: Mlp::load(source, &format!("{name}.mlp"), c, device)?,
        })
    }

    fn forward(&self, x: Tensor<3>, pos: &Positions, cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>) -> Tensor<3> {
        let h = x.clone() + self.self_attn.forward(self.input_layernorm.forward(x), pos, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}

#[derive(Module, Debug)]
pub struct Llama {
    pub embed_tokens: Param<Tensor<2>>,
    pub layers: Vec<Block>,
    pub norm: RmsNorm,
    /// `None` when the output head is tied to the token embedding.
    pub lm_head: Option<Linear>,
    rope_theta: f64,
    head_dim: usize,
    max_positions: usize,
}

impl Llama {
    /// Builds the model from any tensor source (random init, safetensors), checking every shape.
    pub fn load(config: &LlamaConfig, source: &mut TensorSource, device: &Device) -> Result<Self> {
        config.validate()?;
        let c = config;
        let layers = (0..c.num_hidden_layers).map(|i| Block::load(source, &format!("model.layers.{i}"), c, device)).collect::<Result<_>>()?;
        Ok(Self {
            embed_tokens: param(source, "model.embed_tokens.weight", [c.vocab_size, c.hidden_size], device)?,
            layers,
            norm: RmsNorm::load(source, "model.norm", c.hidden_size, c.rms_norm_eps, device)?,
            lm_head: if c.tie_word_embeddings { None } else { Some(Linear::load(source, "lm_head", c.hidden_size, c.vocab_size, device)?) },
            rope_theta: c.rope_theta,
            head_dim: c.head_dim(),
            max_positions: c.max_position_embeddings,
        })
    }

    /// Seeded init as HF's `LlamaPreTrainedModel._init_weights`: N(0, initializer_range) for
    /// matrices, ones for norms. Drawn on the CPU so that every device gets the same weights.
    pub fn init(config: &LlamaConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = crate::rng::Rng::new(seed);
        let std = config.initializer_range as f32;
        Self::load(
            config,
            &mut |name, shape| {
                let n: usize = shape.iter().product();
                let values = if name.ends_with("norm.weight") { vec![1.0f32; n] } else { (0..n).map(|_| rng.normal() * std).collect() };
                Ok(TensorData::new(values, shape.to_vec()))
            },
            device,
        )
    }

    /// Every parameter with its HF name, flattened, in a fixed order.
    pub fn named_tensors(&self) -> Vec<(String, Vec<usize>, Tensor<1>)> {
        fn flat<const D: usize>(out: &mut Vec<(String, Vec<usize>, Tensor<1>)>, name: String, p: &Param<Tensor<D>>) {
            let t = p.val();
            let shape = t.dims().to_vec();
            out.push((name, shape.clone(), t.reshape([shape.iter().product::<usize>()])));
        }
        let mut out = Vec::new();
        flat(&mut out, "model.embed_tokens.weight".into(), &self.embed_tokens);
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            flat(&mut out, format!("{p}.input_layernorm.weight"), &l.input_layernorm.weight);
            for (n, lin) in [("q_proj", &l.self_attn.q_proj), ("k_proj", &l.self_attn.k_proj), ("v_proj", &l.self_attn.v_proj), ("o_proj", &l.self_attn.o_proj)] {
                flat(&mut out, format!("{p}.self_attn.{n}.weight"), &lin.weight);
            }
            flat(&mut out, format!("{p}.post_attention_layernorm.weight"), &l.post_attention_layernorm.weight);
            for (n, lin) in [("gate_proj", &l.mlp.gate_proj), ("up_proj", &l.mlp.up_proj), ("down_proj", &l.mlp.down_proj)] {
                flat(&mut out, format!("{p}.mlp.{n}.weight"), &lin.weight);
            }
        }
        flat(&mut out, "model.norm.weight".into(), &self.norm.weight);
        if let Some(head) = &self.lm_head {
            flat(&mut out, "lm_head.weight".into(), &head.weight);
        }
        out
    }

    /// Logits `[batch, len, vocab]` for `tokens` `[batch, len]`. With a cache, `tokens` continue
    /// the cached positions and the cache is extended.
    pub fn forward(&self, tokens: Tensor<2, Int>, cache: Option<&mut KvCache>) -> Tensor<3> {
        let [b, t] = tokens.dims();
        let device = tokens.device();
        let embed = self.embed_tokens.val();
        let [_, d] = embed.dims();
        let mut x = embed.clone().select(0, tokens.reshape([b * t])).reshape([b, t, d]);
        let start = cache.as_ref().map_or(0, |c| c.len);
        let pos = Positions::new(self.rope_theta, self.head_dim, start, t, &device);
        match cache {
            Some(cache) => {
                cache.layers.resize(self.layers.len(), None);
                for (layer, slot) in self.layers.iter().zip(cache.layers.iter_mut()) {
                    x = layer.forward(x, &pos, Some(slot));
                }
                cache.len += t;
            }
            None => {
                for layer in &self.layers {
                    x = layer.forward(x, &pos, None);
                }
            }
        }
        let h = self.norm.forward(x);
        match &self.lm_head {
            Some(head) => head.forward(h),
            None => h.reshape([b * t, d]).matmul(embed.transpose()).reshape([b, t, self.vocab_size()]),
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.embed_tokens.dims()[0]
    }

    /// The longest sequence the model was configured for.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }
}
