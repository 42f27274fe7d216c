//! TRL 1.16's `KTOTrainer` objectives, on rated responses rather than pairs.
//!
//! With `r = log π(y|x) − log π_ref(y|x)` of a rated row (summed over its completion tokens) and
//! the batch's reference point `z₀ = max(0, mean(log π(y'|x) − log π_ref(y'|x)))` over its KL
//! rows (each prompt with another row's completion, no gradient):
//! - `kto`: desirable `1 − σ(β(r − z₀))`, undesirable `1 − σ(β(z₀ − r))`
//! - `apo_zero_unpaired`: desirable `1 − σ(βr)`, undesirable `σ(βr)` (no reference point)
//!
//! each times `desirable_weight` or `undesirable_weight`; the loss is their mean over the rows and
//! each row's reward is `β·r`.

use burn::tensor::activation::sigmoid;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// TRL's `KTOConfig.loss_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(rename_all = "snake_case")]
pub enum KtoLoss {
    #[default]
    Kto,
    ApoZeroUnpaired,
}

impl KtoLoss {
    const ALL: [KtoLoss; 2] = [KtoLoss::Kto, KtoLoss::ApoZeroUnpaired];

    /// Whether the objective needs the KL rows (TRL's `calculate_KL`).
    pub fn uses_kl(self) -> bool {
        self == KtoLoss::Kto
    }
}

serde_names!(KtoLoss, "KTO loss type");

/// TRL's `KTOConfig` objective settings, with its defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(default)]
pub struct KtoConfig {
    pub beta: f64,
    pub loss_type: KtoLoss,
    pub desirable_weight: f64,
    pub undesirable_weight: f64,
}

impl Default for KtoConfig {
    fn default() -> Self {
        Self {
            beta: 0.1,
            loss_type: KtoLoss::Kto,
            desirable_weight: 1.0,
            undesirable_weight: 1.0,
        }
    }
}

impl KtoConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(Error::Setting(format!(
                "KTO's beta must be a positive number, got {}",
                self.beta
            )));
        }
        let weights = [self.desirable_weight, self.undesirable_weight];
        if !weights.iter().all(|w| w.is_finite() && *w >= 0.0) {
            return Err(Error::Setting(format!(
                "desirable_weight and undesirable_weight must be non-negative numbers, got {} and {}",
                self.desirable_weight, self.undesirable_weight
            )));
        }
        Ok(())
    }

    /// TRL refuses `kto` with a batch size of one: the KL row would be the row itself, so the
    /// reference point would equal the implied reward. (A last, partial batch of one still trains,
    /// as in TRL.)
    pub fn check_batch(&self, rows: usize) -> Result<()> {
        if self.loss_type.uses_kl() && rows <= 1 {
            return Err(Error::Setting(
                "KTO needs at least 2 ratings in a batch: with one, its KL reference point is the \
                 rating's own implied reward (TRL: \"Actual (not effective) batch size must be > 1\")"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// A batch of rated rows: the policy's and reference's summed completion log-probs `[n]`, those
/// of the KL rows `[n]` (`None` without a reference point), and each row's label.
pub struct KtoInputs {
    pub policy: Tensor<1>,
    pub reference: Tensor<1>,
    pub kl_rows: Option<(Tensor<1>, Tensor<1>)>,
    pub labels: Vec<bool>,
}

/// Per-row weighted losses and rewards `[n]`, and the reference point `z₀` `[1]`.
pub struct KtoOutput {
    pub losses: Tensor<1>,
    pub rewards: Tensor<1>,
    pub kl: Tensor<1>,
}

pub fn kto_loss(inputs: &KtoInputs, config: &KtoConfig) -> KtoOutput {
    let device = inputs.policy.device();
    let n = inputs.labels.len();
    let beta = config.beta;
    let log_ratios = inputs.policy.clone() - inputs.reference.clone();
    // TRL computes the KL rows' log-probs under no_grad and clamps their mean at 0.
    let kl = match &inputs.kl_rows {
        Some((policy, reference)) => (policy.clone() - reference.clone())
            .detach()
            .mean()
            .clamp_min(0.0),
        None => Tensor::zeros([1], &device),
    };
    let per_row = |desirable: f64, undesirable: f64| -> Tensor<1> {
        let values = inputs
            .labels
            .iter()
            .map(|&l| if l { desirable } else { undesirable } as f32)
            .collect();
        Tensor::from_data(TensorData::new(values, [n]), &device)
    };
    // Desirable rows push r above z₀, undesirable below: 1 − σ(±β(r − z₀)).
    let sign = per_row(1.0, -1.0);
    let weight = per_row(config.desirable_weight, config.undesirable_weight);
    let shifted = log_ratios.clone() - kl.clone().expand([n]);
    let losses = sigmoid((shifted * sign).mul_scalar(beta))
        .neg()
        .add_scalar(1.0)
        * weight;
    KtoOutput {
        losses,
        rewards: log_ratios.detach().mul_scalar(beta),
        kl,
    }
}
