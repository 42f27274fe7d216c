//! Attention as the three architectures compute it: rotary or learned positions, the causal mask,
//! grouped-query heads, and the KV cache that lets sampling run one token per step.

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use super::layers::{BlockLinears, Linear, TensorSource};
use crate::error::Result;
use crate::model::{AttentionLayout, ModelConfig};

/// Rotary embedding tables for positions `start..start + len` (HF's `rotate_half` layout).
struct Rope {
    /// `[1, len, 1, head_dim]`: broadcast over batch and heads of `[batch, len, heads, head_dim]`.
    cos: Tensor<4>,
    sin: Tensor<4>,
    /// The same times the attention's `1/√head_dim`, for the queries: the scores come out of
    /// their product already scaled, without a pass of their own.
    cos_q: Tensor<4>,
    sin_q: Tensor<4>,
    /// `[head_dim, head_dim]`: `x · rotate = rotate_half(x) = [-x2, x1]`. One exact matmul (entries
    /// 0 and ±1) instead of two slices, a negation and a concatenation.
    rotate: Tensor<2>,
}

impl Rope {
    fn new(theta: f64, hd: usize, start: usize, len: usize, scale: f64, device: &Device) -> Self {
        let half = hd / 2;
        let angles: Vec<f64> = (start..start + len)
            .flat_map(|pos| {
                (0..hd).map(move |i| {
                    let inv_freq = 1.0 / theta.powf((2 * (i % half)) as f64 / hd as f64);
                    pos as f64 * inv_freq
                })
            })
            .collect();
        let table = |f: &dyn Fn(f64) -> f64| {
            let v = angles.iter().map(|&a| f(a) as f32).collect();
            Tensor::<4>::from_data(TensorData::new(v, [1, len, 1, hd]), device)
        };
        let mut rotate = vec![0.0f32; hd * hd];
        for j in 0..half {
            rotate[(j + half) * hd + j] = -1.0;
            rotate[j * hd + j + half] = 1.0;
        }
        Self {
            cos: table(&f64::cos),
            sin: table(&f64::sin),
            cos_q: table(&|a| a.cos() * scale),
            sin_q: table(&|a| a.sin() * scale),
            rotate: Tensor::from_data(TensorData::new(rotate, [hd, hd]), device),
        }
    }

    /// `x`: `[batch, len, heads, head_dim]`.
    fn apply(&self, x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
        let [b, t, h, hd] = x.dims();
        let rotated = x
            .clone()
            .reshape([b * t * h, hd])
            .matmul(self.rotate.clone())
            .reshape([b, t, h, hd]);
        x.mul(cos.clone()) + rotated.mul(sin.clone())
    }
}

/// What a forward needs to know about positions `start..start + len`, built once for all layers:
/// the rotary tables (none for GPT-2's learned positions) and the causal mask over all keys so far.
pub struct Positions {
    rope: Option<Rope>,
    /// The attention's `1/√head_dim`.
    scale: f64,
    /// `[1, 1, len, start + len]`: 0 where query i may see key j (j ≤ start + i), −1e9 elsewhere;
    /// added to the attention scores (broadcast over batch and heads). `None` for one position
    /// (cached decoding), which sees every key.
    causal: Option<Tensor<4>>,
}

impl Positions {
    pub(super) fn new(
        rope_theta: Option<f64>,
        hd: usize,
        start: usize,
        len: usize,
        device: &Device,
    ) -> Self {
        let keys = start + len;
        let causal = (len > 1).then(|| {
            let bias: Vec<f32> = (0..len)
                .flat_map(|i| (0..keys).map(move |j| if j <= start + i { 0.0 } else { -1e9 }))
                .collect();
            Tensor::from_data(TensorData::new(bias, [1, 1, len, keys]), device)
        });
        let scale = 1.0 / (hd as f64).sqrt();
        Self {
            rope: rope_theta.map(|theta| Rope::new(theta, hd, start, len, scale, device)),
            scale,
            causal,
        }
    }

    /// Queries `[batch, len, heads, head_dim]` rotated and scaled by `1/√head_dim`.
    fn queries(&self, q: Tensor<4>) -> Tensor<4> {
        match &self.rope {
            Some(rope) => rope.apply(q, &rope.cos_q, &rope.sin_q),
            None => q.mul_scalar(self.scale),
        }
    }

    /// Keys `[batch, len, heads, head_dim]` rotated.
    fn keys(&self, k: Tensor<4>) -> Tensor<4> {
        match &self.rope {
            Some(rope) => rope.apply(k, &rope.cos, &rope.sin),
            None => k,
        }
    }
}

/// Keys and values of the positions seen so far, per layer.
#[derive(Default, Clone)]
pub struct KvCache {
    pub(super) layers: Vec<Option<LayerCache>>,
    pub(super) len: usize,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One layer's keys and values in buffers `[batch, kv_heads, capacity, head_dim]`, the first `len`
/// positions filled. A step writes only its own positions into them: concatenating instead
/// copied every past position's keys and values at every token.
#[derive(Clone)]
pub(super) struct LayerCache {
    keys: Tensor<4>,
    values: Tensor<4>,
    len: usize,
}

impl LayerCache {
    /// Appends `keys` and `values` `[batch, kv_heads, t, head_dim]` to the cache in `slot` and
    /// returns the keys and values of all its positions (views of the buffers). Full buffers
    /// are replaced by ones of twice the positions, as a `Vec` grows, so copying the past stays
    /// rare.
    fn append(
        slot: &mut Option<Self>,
        keys: Tensor<4>,
        values: Tensor<4>,
    ) -> (Tensor<4>, Tensor<4>) {
        let [b, kv, t, hd] = keys.dims();
        let past = slot.as_ref().map_or(0, |cache| cache.len);
        let len = past + t;
        let (key_buf, value_buf) = match slot.take() {
            Some(cache) if cache.keys.dims()[2] >= len => (cache.keys, cache.values),
            old => {
                let grown = |old: Option<Tensor<4>>| {
                    let new = Tensor::zeros([b, kv, 2 * len, hd], &keys.device());
                    match old {
                        Some(old) if past > 0 => new.slice_assign(
                            [0..b, 0..kv, 0..past, 0..hd],
                            old.slice([0..b, 0..kv, 0..past, 0..hd]),
                        ),
                        _ => new,
                    }
                };
                let (k, v) = old.map(|cache| (cache.keys, cache.values)).unzip();
                (grown(k), grown(v))
            }
        };
        let write = |buf: Tensor<4>, new| buf.slice_assign([0..b, 0..kv, past..len, 0..hd], new);
        let (key_buf, value_buf) = (write(key_buf, keys), write(value_buf, values));
        let filled = |buf: &Tensor<4>| buf.clone().slice([0..b, 0..kv, 0..len, 0..hd]);
        let all = (filled(&key_buf), filled(&value_buf));
        *slot = Some(Self {
            keys: key_buf,
            values: value_buf,
            len,
        });
        all
    }
}

/// The query, key and value projections: three layers (Llama, Qwen2) or one fused (GPT-2's
/// `c_attn`, whose output is `[q | k | v]`).
#[derive(Module, Debug)]
pub enum Qkv {
    Separate(SeparateQkv),
    Fused(Linear),
}

#[derive(Module, Debug)]
pub struct SeparateQkv {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
}

#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Qkv,
    pub o_proj: Linear,
    n_heads: usize,
    n_kv_heads: usize,
}

impl Attention {
    pub(super) fn load(
        source: &mut TensorSource,
        linears: &BlockLinears,
        c: &ModelConfig,
        device: &Device,
    ) -> Result<Self> {
        let attn = linears.arch.attn;
        let mut load = |module: &str| linears.load(source, &format!("{attn}.{module}"), device);
        let (qkv, o_proj) = match linears.arch.attention {
            AttentionLayout::Fused => (Qkv::Fused(load("c_attn")?), load("c_proj")?),
            AttentionLayout::Separate { .. } => {
                let separate = SeparateQkv {
                    q_proj: load("q_proj")?,
                    k_proj: load("k_proj")?,
                    v_proj: load("v_proj")?,
                };
                (Qkv::Separate(separate), load("o_proj")?)
            }
        };
        Ok(Self {
            qkv,
            o_proj,
            n_heads: c.num_attention_heads,
            n_kv_heads: c.kv_heads(),
        })
    }

    pub(super) fn linears(&self) -> Vec<&Linear> {
        match &self.qkv {
            Qkv::Separate(p) => vec![&p.q_proj, &p.k_proj, &p.v_proj, &self.o_proj],
            Qkv::Fused(c_attn) => vec![c_attn, &self.o_proj],
        }
    }

    pub(super) fn linears_mut(&mut self) -> Vec<&mut Linear> {
        match &mut self.qkv {
            Qkv::Separate(p) => vec![
                &mut p.q_proj,
                &mut p.k_proj,
                &mut p.v_proj,
                &mut self.o_proj,
            ],
            Qkv::Fused(c_attn) => vec![c_attn, &mut self.o_proj],
        }
    }

    pub(super) fn forward(
        &self,
        x: Tensor<3>,
        pos: &Positions,
        cache: Option<&mut Option<LayerCache>>,
    ) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let hd = d / self.n_heads;
        let (q, k, v) = match &self.qkv {
            Qkv::Separate(p) => (
                p.q_proj.forward(x.clone()),
                p.k_proj.forward(x.clone()),
                p.v_proj.forward(x),
            ),
            Qkv::Fused(c_attn) => {
                let y = c_attn.forward(x);
                (
                    y.clone().slice([0..b, 0..t, 0..d]),
                    y.clone().slice([0..b, 0..t, d..2 * d]),
                    y.slice([0..b, 0..t, 2 * d..3 * d]),
                )
            }
        };
        // Rotary embeddings act on the projections' own layout; heads then move ahead of positions.
        let split = |y: Tensor<3>, n: usize| y.reshape([b, t, n, hd]);
        let q = pos.queries(split(q, self.n_heads)).swap_dims(1, 2);
        let k = pos.keys(split(k, self.n_kv_heads)).swap_dims(1, 2);
        let v = split(v, self.n_kv_heads).swap_dims(1, 2);
        // Incremental decoding: attend over the cached positions plus the new ones.
        let (k, v) = match cache {
            Some(slot) => LayerCache::append(slot, k, v),
            None => (k, v),
        };
        let s = k.dims()[2];
        // Grouped-query attention: the `n_heads / n_kv_heads` query heads that share a key/value
        // head are adjacent, so their rows stack into one product with it, `[b, kv, rep·t, hd]`,
        // instead of repeating keys and values per head (a copy of the queries when rep > 1;
        // the other reshapes are of contiguous products and free).
        let (kv, rep) = (self.n_kv_heads, self.n_heads / self.n_kv_heads);
        let q = if rep == 1 {
            q
        } else {
            q.reshape([b, kv, rep * t, hd])
        };
        let scores = q.matmul(k.swap_dims(2, 3)).reshape([b, self.n_heads, t, s]);
        let weights = softmax(
            match &pos.causal {
                Some(bias) => scores + bias.clone(),
                None => scores,
            },
            3,
        );
        let out = weights
            .reshape([b, kv, rep * t, s])
            .matmul(v)
            .reshape([b, self.n_heads, t, hd])
            .swap_dims(1, 2)
            .reshape([b, t, d]);
        self.o_proj.forward(out)
    }
}
