//! TRL's logged metrics of a batch (`rewards/chosen`, `logps/rejected`, …), from the values read
//! back after a forward: the same for every objective.

use serde::{Deserialize, Serialize};

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
