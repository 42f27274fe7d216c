//! The causal language model: embeddings, the blocks, the final norm and the output head, with
//! HF's tensor names through [`CausalLm::named_tensors`].

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::attention::{KvCache, Positions};
use super::layers::{Block, Linear, NamedTensor, Norm, TensorSource, flat, param};
use crate::error::Result;
use crate::model::{Arch, LinearSpec, ModelConfig};

#[derive(Module, Debug)]
pub struct CausalLm {
    pub embed_tokens: Param<Tensor<2>>,
    /// GPT-2's learned absolute positions `[max_positions, hidden]`; `None` with rotary ones.
    pub embed_positions: Option<Param<Tensor<2>>>,
    pub layers: Vec<Block>,
    pub norm: Norm,
    /// `None` when the output head is tied to the token embedding.
    pub lm_head: Option<Linear>,
    #[module(skip)]
    arch: Arch,
    /// `None` with learned positions (GPT-2).
    rope_theta: Option<f64>,
    head_dim: usize,
    max_positions: usize,
}

impl CausalLm {
    /// Builds the model from any tensor source (random init, safetensors), checking every shape.
    pub fn load(config: &ModelConfig, source: &mut TensorSource, device: &Device) -> Result<Self> {
        config.validate()?;
        let c = config;
        let arch = c.arch();
        let spec = arch.spec();
        // Blocks first: a seeded init draws in this order, which fixes the weights a seed gives.
        let layers = (0..c.num_hidden_layers)
            .map(|i| Block::load(source, &format!("{}.{i}", spec.blocks), c, device))
            .collect::<Result<_>>()?;
        let embed_tokens = param(
            source,
            spec.embed_tokens,
            [c.vocab_size, c.hidden_size],
            device,
        )?;
        let positions = [c.max_position_embeddings, c.hidden_size];
        let embed_positions = match spec.embed_positions {
            Some(name) => Some(param(source, name, positions, device)?),
            None => None,
        };
        Ok(Self {
            embed_tokens,
            embed_positions,
            layers,
            norm: Norm::load(source, spec.final_norm, c, device)?,
            lm_head: if c.tie_word_embeddings {
                None
            } else {
                let head = LinearSpec {
                    d_in: c.hidden_size,
                    d_out: c.vocab_size,
                    bias: false,
                    conv1d: false,
                };
                Some(Linear::load(source, "lm_head", head, device)?)
            },
            arch,
            rope_theta: spec.embed_positions.is_none().then_some(c.rope_theta),
            head_dim: c.head_dim(),
            max_positions: c.max_position_embeddings,
        })
    }

    /// Seeded init as HF's `_init_weights`: N(0, initializer_range) for matrices, ones for norm
    /// weights, zeros for biases. Drawn on the CPU so that every device gets the same weights.
    pub fn init(config: &ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = crate::rng::Rng::new(seed);
        let std = config.initializer_range as f32;
        let is_norm = |name: &str| ["norm.", "ln_"].iter().any(|n| name.contains(n));
        Self::load(
            config,
            &mut |name, shape| {
                let n: usize = shape.iter().product();
                let values = if name.ends_with(".bias") {
                    vec![0.0f32; n]
                } else if is_norm(name) {
                    vec![1.0f32; n]
                } else {
                    (0..n).map(|_| rng.normal() * std).collect()
                };
                Ok(TensorData::new(values, shape.to_vec()))
            },
            device,
        )
    }

    /// Every linear layer with its HF module name, in a fixed order (the output head last).
    pub fn linears(&self) -> Vec<&Linear> {
        let blocks = self
            .layers
            .iter()
            .flat_map(|l| l.attn.linears().into_iter().chain(l.mlp.linears()));
        blocks.chain(self.lm_head.as_ref()).collect()
    }

    pub(super) fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let blocks = self
            .layers
            .iter_mut()
            .flat_map(|l| l.attn.linears_mut().into_iter().chain(l.mlp.linears_mut()));
        blocks.chain(self.lm_head.as_mut()).collect()
    }

    /// Every weight with its HF name, flattened, in a fixed order: what `model.safetensors`
    /// holds. LoRA adapters are merged into their layers' weights.
    pub fn named_tensors(&self) -> Vec<NamedTensor> {
        let spec = self.arch.spec();
        let mut out = vec![flat(spec.embed_tokens.into(), &self.embed_tokens)];
        if let (Some(p), Some(name)) = (&self.embed_positions, spec.embed_positions) {
            out.push(flat(name.into(), p));
        }
        for l in &self.layers {
            l.attn_norm.named_tensors(&mut out);
            l.attn
                .linears()
                .iter()
                .for_each(|lin| lin.named_tensors(&mut out));
            l.mlp_norm.named_tensors(&mut out);
            l.mlp
                .linears()
                .iter()
                .for_each(|lin| lin.named_tensors(&mut out));
        }
        self.norm.named_tensors(&mut out);
        if let Some(head) = &self.lm_head {
            head.named_tensors(&mut out);
        }
        out
    }

    /// The trainable parameters with their names: the LoRA factors (PEFT's module-relative names,
    /// `<module>.lora_A.weight`) when adapters are attached, else every weight.
    pub fn trainable_tensors(&self) -> Vec<NamedTensor> {
        if !self.has_adapters() {
            return self.named_tensors();
        }
        let adapters = self
            .linears()
            .into_iter()
            .filter_map(|l| l.lora.as_ref().map(|lora| (l, lora)));
        adapters
            .flat_map(|(l, lora)| {
                [
                    flat(format!("{}.lora_A.weight", l.name), &lora.a),
                    flat(format!("{}.lora_B.weight", l.name), &lora.b),
                ]
            })
            .collect()
    }

    /// Logits `[batch, len, vocab]` for `tokens` `[batch, len]`. With a cache, `tokens` continue
    /// the cached positions and the cache is extended.
    pub fn forward(&self, tokens: Tensor<2, Int>, cache: Option<&mut KvCache>) -> Tensor<3> {
        self.head(self.hidden(tokens, cache))
    }

    /// The last layer's normalised output `[batch, len, hidden]`, which [`CausalLm::head`] turns
    /// into logits; as [`CausalLm::forward`] for the cache.
    pub fn hidden(&self, tokens: Tensor<2, Int>, cache: Option<&mut KvCache>) -> Tensor<3> {
        let [b, t] = tokens.dims();
        let device = tokens.device();
        let embed = self.embed_tokens.val();
        let [_, d] = embed.dims();
        let mut x = embed
            .clone()
            .select(0, tokens.reshape([b * t]))
            .reshape([b, t, d]);
        let start = cache.as_ref().map_or(0, |c| c.len);
        if let Some(wpe) = &self.embed_positions {
            x = x + wpe.val().slice(start..start + t).unsqueeze();
        }
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
        self.norm.forward(x)
    }

    /// Logits `[batch, len, vocab]` from hidden states `[batch, len, hidden]`: the output
    /// head, or the token embedding transposed when they are tied.
    pub fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [b, t, d] = hidden.dims();
                hidden
                    .reshape([b * t, d])
                    .matmul(self.embed_tokens.val().transpose())
                    .reshape([b, t, self.vocab_size()])
            }
        }
    }

    pub fn arch(&self) -> Arch {
        self.arch
    }

    pub fn vocab_size(&self) -> usize {
        self.embed_tokens.dims()[0]
    }

    /// The longest sequence the model was configured for.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }
}
