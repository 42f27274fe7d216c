//! The DPO objective and its metrics, with the names and definitions of TRL's `DPOTrainer`.
//!
//! With `h = (log π(y_w|x) − log π(y_l|x)) − (log π_ref(y_w|x) − log π_ref(y_l|x))`:
//! - `sigmoid` (Rafailov et al. 2023; cDPO with label smoothing ε):
//!   `−(1−ε)·log σ(βh) − ε·log σ(−βh)`
//! - `robust` (Chowdhury et al. 2024): `(−(1−ε)·log σ(βh) + ε·log σ(−βh)) / (1 − 2ε)`
//! - `hinge` (SLiC): `relu(1 − βh)`
//! - `ipo` (Azar et al. 2023): `(h − 1/(2β))²`, on log-probs averaged over completion tokens.
//!
//! Implicit rewards are `β·(log π − log π_ref)` of each completion, detached.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Tensor;
use burn::tensor::activation::{log_sigmoid, relu};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(rename_all = "lowercase")]
pub enum LossType {
    Sigmoid,
    Ipo,
    Hinge,
    Robust,
}

impl LossType {
    pub const ALL: [LossType; 4] = [
        LossType::Sigmoid,
        LossType::Ipo,
        LossType::Hinge,
        LossType::Robust,
    ];

    /// IPO compares per-token averages, the other losses sequence sums.
    pub fn length_normalised(self) -> bool {
        self == LossType::Ipo
    }
}

impl fmt::Display for LossType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LossType::Sigmoid => "sigmoid",
            LossType::Ipo => "ipo",
            LossType::Hinge => "hinge",
            LossType::Robust => "robust",
        })
    }
}

impl FromStr for LossType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        LossType::ALL
            .into_iter()
            .find(|l| l.to_string() == s)
            .ok_or_else(|| {
                Error::Setting(format!(
                    "unknown loss type {s:?}; expected one of sigmoid, ipo, hinge, robust"
                ))
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct DpoConfig {
    /// Strength of the KL penalty towards the reference; TRL's default is 0.1.
    pub beta: f64,
    pub loss_type: LossType,
    /// cDPO / robust DPO: assumed probability that a preference label is flipped.
    pub label_smoothing: f64,
}

impl Default for DpoConfig {
    fn default() -> Self {
        Self {
            beta: 0.1,
            loss_type: LossType::Sigmoid,
            label_smoothing: 0.0,
        }
    }
}

impl DpoConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(Error::Setting(format!(
                "beta must be a positive number, got {}",
                self.beta
            )));
        }
        if !(0.0..0.5).contains(&self.label_smoothing) {
            return Err(Error::Setting(format!(
                "label_smoothing must be in [0, 0.5), got {}",
                self.label_smoothing
            )));
        }
        Ok(())
    }
}

/// Per-pair losses and implicit rewards, `[n]` each.
pub struct DpoOutput {
    pub losses: Tensor<1>,
    pub chosen_rewards: Tensor<1>,
    pub rejected_rewards: Tensor<1>,
}

/// TRL's `dpo_loss`: sequence log-probs of the policy and the reference, `[n]` each.
pub fn dpo_loss(
    policy_chosen: Tensor<1>,
    policy_rejected: Tensor<1>,
    reference_chosen: Tensor<1>,
    reference_rejected: Tensor<1>,
    config: &DpoConfig,
) -> DpoOutput {
    let (beta, eps) = (config.beta, config.label_smoothing);
    let chosen_rewards = (policy_chosen.clone() - reference_chosen.clone())
        .detach()
        .mul_scalar(beta);
    let rejected_rewards = (policy_rejected.clone() - reference_rejected.clone())
        .detach()
        .mul_scalar(beta);
    let h = (policy_chosen - policy_rejected) - (reference_chosen - reference_rejected);
    let losses = match config.loss_type {
        LossType::Sigmoid => {
            log_sigmoid(h.clone().mul_scalar(beta)).mul_scalar(-(1.0 - eps))
                - log_sigmoid(h.mul_scalar(-beta)).mul_scalar(eps)
        }
        LossType::Robust => (log_sigmoid(h.clone().mul_scalar(beta)).mul_scalar(-(1.0 - eps))
            + log_sigmoid(h.mul_scalar(-beta)).mul_scalar(eps))
        .div_scalar(1.0 - 2.0 * eps),
        LossType::Hinge => relu(h.mul_scalar(-beta).add_scalar(1.0)),
        LossType::Ipo => h.sub_scalar(1.0 / (2.0 * beta)).square(),
    };
    DpoOutput {
        losses,
        chosen_rewards,
        rejected_rewards,
    }
}

/// TRL's logged metrics for a batch, means over its pairs, plus the gradient norm of a step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct DpoMetrics {
    pub loss: f64,
    #[serde(rename = "rewards/chosen")]
    pub rewards_chosen: f64,
    #[serde(rename = "rewards/rejected")]
    pub rewards_rejected: f64,
    #[serde(rename = "rewards/accuracies")]
    pub rewards_accuracies: f64,
    #[serde(rename = "rewards/margins")]
    pub rewards_margins: f64,
    #[serde(rename = "logps/chosen")]
    pub logps_chosen: f64,
    #[serde(rename = "logps/rejected")]
    pub logps_rejected: f64,
    /// Global L2 norm of the gradient before clipping (training steps only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grad_norm: Option<f64>,
    /// NLL per chosen token, when the RPO term is on (training steps only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nll_loss: Option<f64>,
}

/// Host-side values of one batch, from which [`DpoMetrics`] follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct PairValues {
    pub losses: Vec<f32>,
    pub chosen_rewards: Vec<f32>,
    pub rejected_rewards: Vec<f32>,
    pub policy_chosen: Vec<f32>,
    pub policy_rejected: Vec<f32>,
    pub reference_chosen: Vec<f32>,
    pub reference_rejected: Vec<f32>,
    /// The margin of log-ratios,
    /// `h = (log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))`.
    #[serde(default)]
    pub h: Vec<f32>,
    /// `σ(β·h)`: how strongly the implicit reward already prefers the chosen response.
    #[serde(default)]
    pub sigma: Vec<f32>,
}

impl PairValues {
    /// The read-back losses, rewards and sequence log-probs `[π(y_w), π(y_l), π_ref(y_w),
    /// π_ref(y_l)]` of one batch; `h` and `σ(β·h)` follow from them.
    pub fn new(
        losses: Vec<f32>,
        [chosen_rewards, rejected_rewards]: [Vec<f32>; 2],
        [pc, pr, rc, rr]: [Vec<f32>; 4],
        beta: f64,
    ) -> Self {
        let h: Vec<f32> = (0..pc.len())
            .map(|i| (pc[i] - rc[i]) - (pr[i] - rr[i]))
            .collect();
        let sigma = h
            .iter()
            .map(|&h| (1.0 / (1.0 + (-beta * h as f64).exp())) as f32)
            .collect();
        Self {
            losses,
            chosen_rewards,
            rejected_rewards,
            policy_chosen: pc,
            policy_rejected: pr,
            reference_chosen: rc,
            reference_rejected: rr,
            h,
            sigma,
        }
    }
}

impl PairValues {
    pub fn metrics(&self) -> DpoMetrics {
        let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let (c, r) = (&self.chosen_rewards, &self.rejected_rewards);
        DpoMetrics {
            loss: mean(&self.losses),
            rewards_chosen: mean(c),
            rewards_rejected: mean(r),
            rewards_accuracies: c.iter().zip(r).filter(|(c, r)| c > r).count() as f64
                / c.len() as f64,
            rewards_margins: c.iter().zip(r).map(|(c, r)| (c - r) as f64).sum::<f64>()
                / c.len() as f64,
            logps_chosen: mean(&self.policy_chosen),
            logps_rejected: mean(&self.policy_rejected),
            grad_norm: None,
            nll_loss: None,
        }
    }
}

impl PairValues {
    /// Appends the pairs of another batch.
    pub fn extend(&mut self, other: PairValues) {
        self.losses.extend(other.losses);
        self.chosen_rewards.extend(other.chosen_rewards);
        self.rejected_rewards.extend(other.rejected_rewards);
        self.policy_chosen.extend(other.policy_chosen);
        self.policy_rejected.extend(other.policy_rejected);
        self.reference_chosen.extend(other.reference_chosen);
        self.reference_rejected.extend(other.reference_rejected);
        self.h.extend(other.h);
        self.sigma.extend(other.sigma);
    }
}
