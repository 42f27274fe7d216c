//! LoRA (Hu et al. 2021) as PEFT applies it: the settings, the adapter on a linear layer, and
//! attaching or removing adapters on a model. PEFT's file format is in `hf::peft`.

use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData};

use super::layers::{TensorSource, param};
use crate::error::{Error, Result};
use crate::model::{Arch, CausalLm};

/// A low-rank update of a linear layer (Hu et al. 2021): `y += scale · (x Aᵀ) Bᵀ`, A `[r, in]`
/// and B `[out, r]` as PEFT stores `lora_A.weight` and `lora_B.weight`.
#[derive(Module, Debug)]
pub struct Lora {
    pub a: Param<Tensor<2>>,
    pub b: Param<Tensor<2>>,
    pub scale: f64,
}

/// Rank, scaling and target modules of LoRA adapters (PEFT's `r`, `lora_alpha`, `target_modules`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    /// Module names or their last components, as PEFT matches them; `all-linear` for every
    /// linear layer but the output head.
    pub targets: Vec<String>,
}

impl LoraConfig {
    /// Adapters on the attention projections (PEFT's usual choice), or on every linear layer.
    pub fn new(arch: Arch, r: usize, alpha: f64, all_linear: bool) -> Self {
        let targets: &[&str] = if all_linear {
            &["all-linear"]
        } else {
            arch.spec().lora_attention
        };
        Self {
            r,
            alpha,
            targets: targets.iter().map(|t| t.to_string()).collect(),
        }
    }

    /// Adapters on the attention projections.
    pub fn attention(arch: Arch, r: usize, alpha: f64) -> Self {
        Self::new(arch, r, alpha, false)
    }

    /// `"r,alpha"` (attention projections) or `"r,alpha,all-linear"`, as the CLI's `--lora`.
    pub fn parse(spec: &str, arch: Arch) -> Result<Self> {
        let bad = || {
            Error::Setting(format!(
                "--lora {spec:?}: expected r,alpha or r,alpha,all-linear (e.g. 8,16)"
            ))
        };
        let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
        let (r, alpha, all_linear) = match parts.as_slice() {
            [r, alpha] => (r, alpha, false),
            [r, alpha, "all-linear"] => (r, alpha, true),
            _ => return Err(bad()),
        };
        Ok(Self::new(
            arch,
            r.parse().map_err(|_| bad())?,
            alpha.parse().map_err(|_| bad())?,
            all_linear,
        ))
    }

    /// Attaches fresh adapters (B = 0: the model is unchanged until it trains).
    pub fn apply(&self, model: CausalLm, seed: u64) -> Result<CausalLm> {
        let targets: Vec<&str> = self.targets.iter().map(String::as_str).collect();
        model.with_adapters(&targets, self.r, self.alpha, seed)
    }
}

impl CausalLm {
    pub fn has_adapters(&self) -> bool {
        self.linears().iter().any(|l| l.lora.is_some())
    }

    /// Attaches fresh LoRA adapters to `targets` (initialised as PEFT does: A uniform in ±1/√in,
    /// B zero, so the model is unchanged) and freezes every other weight: only the adapters
    /// train, and the base needs no gradients or optimizer state.
    pub fn with_adapters(
        self,
        targets: &[&str],
        rank: usize,
        alpha: f64,
        seed: u64,
    ) -> Result<Self> {
        let mut rng = crate::rng::Rng::new(seed);
        self.with_adapters_from(targets, rank, alpha, &mut |name, shape| {
            let values = if name.ends_with("lora_A.weight") {
                let bound = 1.0 / (shape[1] as f64).sqrt();
                (0..shape[0] * shape[1])
                    .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
                    .collect()
            } else {
                vec![0.0; shape[0] * shape[1]]
            };
            Ok(TensorData::new(values, shape.to_vec()))
        })
    }

    /// As [`CausalLm::with_adapters`], with the factors from `source` (`<module>.lora_A.weight`
    /// `[rank, in]`, `<module>.lora_B.weight` `[out, rank]`): a saved adapter.
    pub fn with_adapters_from(
        self,
        targets: &[&str],
        rank: usize,
        alpha: f64,
        source: &mut TensorSource,
    ) -> Result<Self> {
        if rank == 0 || !(alpha.is_finite() && alpha > 0.0) {
            return Err(Error::Setting(format!(
                "LoRA needs a positive rank and alpha, got r = {rank}, alpha = {alpha}"
            )));
        }
        let mut model = self.freeze();
        let device = model.embed_tokens.device();
        let mut attached = 0;
        for linear in model.linears_mut() {
            if !targets.iter().any(|t| lora_target_matches(&linear.name, t)) {
                continue;
            }
            let [d_in, d_out] = linear.weight.dims();
            let a = param(
                source,
                &format!("{}.lora_A.weight", linear.name),
                [rank, d_in],
                &device,
            )?;
            let b = param(
                source,
                &format!("{}.lora_B.weight", linear.name),
                [d_out, rank],
                &device,
            )?;
            linear.lora = Some(Lora {
                a,
                b,
                scale: alpha / rank as f64,
            });
            attached += 1;
        }
        if attached == 0 {
            return Err(Error::Setting(format!(
                "no linear layer matches the LoRA targets {targets:?}"
            )));
        }
        Ok(model)
    }

    /// The same weights with no adapters: the reference of a LoRA policy (no copy is made).
    pub fn without_adapters(&self) -> Self {
        let mut model = self.clone();
        for linear in model.linears_mut() {
            linear.lora = None;
        }
        model
    }
}

/// PEFT's `target_modules` matching: a module matches a target equal to its full name or to
/// its last dotted components (`q_proj`, `attn.c_proj`). `all-linear` is every linear layer but
/// the output head.
pub fn lora_target_matches(module: &str, target: &str) -> bool {
    match target {
        "all-linear" => module != "lm_head",
        _ => module == target || module.ends_with(&format!(".{target}")),
    }
}
