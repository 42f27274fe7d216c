//! The DPO objectives of TRL 1.16's `DPOTrainer` (`_compute_loss`) and their settings, with TRL's
//! names and definitions (the metrics are in [`super::metrics`]).
//!
//! With the log-ratios `c = log π(y_w) − log π_ref(y_w)` and `r = log π(y_l) − log π_ref(y_l)`
//! (sequence sums), their f-divergence scores `f'(c)`, `f'(r)` and `d = f'(c) − f'(r)` (`d = c − r`
//! for the reverse KL of plain DPO), each loss per pair:
//! - `sigmoid` (Rafailov et al. 2023): `−log σ(βd)`
//! - `hinge` (SLiC): `relu(1 − βd)`
//! - `ipo` (Azar et al. 2023): `(d̄ − 1/(2β))²`, `d̄` from scores averaged over completion tokens
//! - `exo_pair` (Ji et al. 2024): `σ(βd)(log σ(βd) − log(1−ε)) + σ(−βd)(log σ(−βd) − log ε)`
//! - `nca_pair`: `−log σ(βc) − ½ log σ(−βc) − ½ log σ(−βr)`
//! - `robust` (Chowdhury et al. 2024): `(−(1−ε) log σ(βd) + ε log σ(−βd)) / (1 − 2ε)`
//! - `bco_pair`: `−log σ(βc) − log σ(−βr)`
//! - `sppo_hard`: `(c − 1/(2β))² + (r + 1/(2β))²`
//! - `aot` / `aot_unpaired` (D'Oosterlinck et al. 2024): `−(1−ε) log σ(βΔ) − ε log σ(−βΔ)` with
//!   `Δ` the difference of the batch's sorted `log π(y_w) − log π(y_l)` and sorted
//!   `log π_ref(y_w) − log π_ref(y_l)` (`aot`), or of sorted `c` and sorted `r` (`aot_unpaired`)
//! - `apo_zero`: `1 − σ(βc) + σ(βr)`; `apo_down`: `σ(βc) + 1 − σ(β(c − r))`
//! - `discopop` (Lu et al. 2024): `−log σ(βd)·(1 − m) + e^(−βd)·m`, `m = σ(βd/τ)`
//! - `sft`: the mean NLL per chosen token over the batch
//! - `sigmoid_norm`: `−log σ(β d̄)`
//!
//! A list of losses is their weighted sum (`loss_weights`, 1 each by default): MPO is
//! `sigmoid, bco_pair, sft` with `0.8, 0.2, 1.0`. Implicit rewards are `β·c` and `β·r`, detached.

use burn::tensor::activation::{log_sigmoid, relu, sigmoid};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};
use crate::train::reference_free::chosen_nll;

/// TRL 1.16's `loss_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    Sigmoid,
    Hinge,
    Ipo,
    ExoPair,
    NcaPair,
    Robust,
    BcoPair,
    SppoHard,
    Aot,
    AotUnpaired,
    ApoZero,
    ApoDown,
    Discopop,
    Sft,
    SigmoidNorm,
}

impl LossType {
    pub const ALL: [LossType; 15] = [
        LossType::Sigmoid,
        LossType::Hinge,
        LossType::Ipo,
        LossType::ExoPair,
        LossType::NcaPair,
        LossType::Robust,
        LossType::BcoPair,
        LossType::SppoHard,
        LossType::Aot,
        LossType::AotUnpaired,
        LossType::ApoZero,
        LossType::ApoDown,
        LossType::Discopop,
        LossType::Sft,
        LossType::SigmoidNorm,
    ];

    /// The losses built on the chosen − rejected score difference, the only ones with an
    /// f-divergence generalisation (the β·log Z(x) term cancels only there).
    pub fn has_f_divergence(self) -> bool {
        matches!(
            self,
            LossType::Sigmoid
                | LossType::SigmoidNorm
                | LossType::Hinge
                | LossType::Ipo
                | LossType::ExoPair
                | LossType::Robust
                | LossType::Discopop
                | LossType::Sft
        )
    }
}

serde_names!(LossType, "loss type");

/// TRL's `f_divergence_type`: the divergence from the reference that the loss regularises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(rename_all = "snake_case")]
pub enum FDivergence {
    #[default]
    ReverseKl,
    ForwardKl,
    JsDivergence,
    AlphaDivergence,
}

impl FDivergence {
    const ALL: [FDivergence; 4] = [
        FDivergence::ReverseKl,
        FDivergence::ForwardKl,
        FDivergence::JsDivergence,
        FDivergence::AlphaDivergence,
    ];
}

serde_names!(FDivergence, "f-divergence");

/// One loss name or a list of them, as TRL's `loss_type` accepts.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<LossType>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(LossType),
        Many(Vec<LossType>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(l) => vec![l],
        OneOrMany::Many(ls) => ls,
    })
}

fn default_loss_type() -> Vec<LossType> {
    vec![LossType::Sigmoid]
}
fn default_f_alpha() -> f64 {
    0.5
}
fn default_discopop_tau() -> f64 {
    0.05
}

/// The objective's settings, with TRL's `DPOConfig` names and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct DpoConfig {
    /// Strength of the KL penalty towards the reference (IPO's τ); TRL's default is 0.1.
    pub beta: f64,
    /// One loss or several, summed with `loss_weights`.
    #[serde(default = "default_loss_type", deserialize_with = "one_or_many")]
    #[cfg_attr(target_arch = "wasm32", tsify(type = "LossType | LossType[]"))]
    pub loss_type: Vec<LossType>,
    /// A weight per loss type; 1 each when absent.
    #[serde(default)]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub loss_weights: Option<Vec<f64>>,
    /// Robust DPO's probability that a label is flipped; EXO's and AOT's ε.
    #[serde(default)]
    pub label_smoothing: f64,
    #[serde(default)]
    pub f_divergence_type: FDivergence,
    /// The α of `alpha_divergence`.
    #[serde(default = "default_f_alpha")]
    pub f_alpha_divergence_coef: f64,
    /// DiscoPOP's τ.
    #[serde(default = "default_discopop_tau")]
    pub discopop_tau: f64,
    /// WPO (Zhou et al. 2024): weigh each pair by the policy's length-normalised probability of
    /// both responses, `exp(mean_t (log p_t − log Σ_v p_v²))` for each, as TRL does.
    #[serde(default)]
    pub use_weighting: bool,
    /// LD-DPO (Liu et al. 2024): each response's tokens beyond the pair's shared length count
    /// `ld_alpha` times in its log-prob (policy and reference); `None` counts them fully.
    #[serde(default)]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub ld_alpha: Option<f64>,
}

impl Default for DpoConfig {
    fn default() -> Self {
        Self {
            beta: 0.1,
            loss_type: default_loss_type(),
            loss_weights: None,
            label_smoothing: 0.0,
            f_divergence_type: FDivergence::ReverseKl,
            f_alpha_divergence_coef: default_f_alpha(),
            discopop_tau: default_discopop_tau(),
            use_weighting: false,
            ld_alpha: None,
        }
    }
}

impl DpoConfig {
    /// One loss type with TRL's other defaults.
    pub fn new(beta: f64, loss_type: LossType) -> Self {
        Self {
            beta,
            loss_type: vec![loss_type],
            ..Self::default()
        }
    }

    /// Refuses what TRL refuses, with TRL's reasons, and values that would make the loss NaN.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Setting(m));
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return bad(format!("beta must be a positive number, got {}", self.beta));
        }
        if self.loss_type.is_empty() {
            return bad("loss_type needs at least one loss".into());
        }
        if let Some(w) = &self.loss_weights {
            if w.len() != self.loss_type.len() {
                return bad(format!(
                    "`loss_weights` must have the same length as `loss_type` when combining \
                     multiple losses. Got {} weights for {} loss types.",
                    w.len(),
                    self.loss_type.len()
                ));
            }
            if !w.iter().all(|w| w.is_finite()) {
                return bad(format!("loss_weights must be numbers, got {w:?}"));
            }
        }
        let has = |l: LossType| self.loss_type.contains(&l);
        if self.f_divergence_type != FDivergence::ReverseKl
            && !self.loss_type.iter().all(|l| l.has_f_divergence())
        {
            let mut allowed: Vec<String> = LossType::ALL
                .iter()
                .filter(|l| l.has_f_divergence())
                .map(|l| l.to_string())
                .collect();
            allowed.sort();
            let given: Vec<String> = self.loss_type.iter().map(|l| l.to_string()).collect();
            return bad(format!(
                "`f_divergence_type='{}'` is only supported for the following loss types: \
                 {allowed:?}. You provided {given:?}. Use the default \
                 `f_divergence_type='reverse_kl'` with these losses.",
                self.f_divergence_type
            ));
        }
        let eps = self.label_smoothing;
        if !(0.0..1.0).contains(&eps) {
            return bad(format!("label_smoothing must be in [0, 1), got {eps}"));
        }
        if has(LossType::Robust) && eps >= 0.5 {
            return bad(format!(
                "The `label_smoothing` parameter should lie in [0.0, 0.5) for the 'robust' loss. \
                 You provided {eps}."
            ));
        }
        if has(LossType::ExoPair) && eps == 0.0 {
            return bad(
                "Label smoothing must be greater than 0.0 when using 'exo_pair' loss. The EXO \
                 paper recommends a value of 1e-3."
                    .into(),
            );
        }
        if self.use_weighting && (has(LossType::Aot) || has(LossType::AotUnpaired)) {
            return bad(
                "WPO-style weighting is not implemented for 'aot' or 'aot_unpaired' because those \
                 losses sort samples, which would misalign per-pair weights."
                    .into(),
            );
        }
        if let Some(a) = self.ld_alpha
            && !(0.0..=1.0).contains(&a)
        {
            return bad(format!("ld_alpha must be in [0.0, 1.0], got {a}"));
        }
        if !(self.discopop_tau.is_finite() && self.discopop_tau > 0.0) {
            return bad(format!(
                "discopop_tau must be positive, got {}",
                self.discopop_tau
            ));
        }
        if !self.f_alpha_divergence_coef.is_finite() {
            return bad("f_alpha_divergence_coef must be a number".into());
        }
        Ok(())
    }

    /// `(loss, weight)` for each loss in the objective.
    pub fn weighted(&self) -> impl Iterator<Item = (LossType, f64)> + '_ {
        let weight = |i: usize| self.loss_weights.as_ref().map_or(1.0, |w| w[i]);
        self.loss_type
            .iter()
            .enumerate()
            .map(move |(i, &l)| (l, weight(i)))
    }

    /// The single loss type, when the objective is one loss.
    pub fn single(&self) -> Option<LossType> {
        match self.loss_type.as_slice() {
            [l] => Some(*l),
            _ => None,
        }
    }
}

/// What the objectives read of a batch of `n` pairs: sequence log-probs (sums over completion
/// tokens, LD-weighted with `ld_alpha`) `[n]` each, each completion's token count `[n]`, and with
/// WPO each pair's weight.
pub struct DpoInputs {
    pub policy_chosen: Tensor<1>,
    /// The chosen sums without LD weighting: what SFT's NLL reads.
    pub policy_chosen_raw: Tensor<1>,
    pub policy_rejected: Tensor<1>,
    pub reference_chosen: Tensor<1>,
    pub reference_rejected: Tensor<1>,
    pub chosen_tokens: Tensor<1>,
    pub rejected_tokens: Tensor<1>,
    /// The chosen rows' log-probs summed over every token after the first, prompt included, and
    /// how many tokens that is (ORPO's NLL, as TRL's ORPOTrainer).
    pub chosen_whole: Tensor<1>,
    pub chosen_whole_tokens: Tensor<1>,
    /// WPO's weight of each pair, detached (`use_weighting`); `None` weighs every pair 1.
    pub pair_weights: Option<Tensor<1>>,
}

/// Per-pair losses (the weighted sum of the objective's losses) and implicit rewards, `[n]`.
pub struct DpoOutput {
    pub losses: Tensor<1>,
    pub chosen_rewards: Tensor<1>,
    pub rejected_rewards: Tensor<1>,
}

/// `f'(exp(x))` of the f-divergence for log-ratios `x`, as TRL computes the scores.
fn scores(x: Tensor<1>, config: &DpoConfig) -> Tensor<1> {
    match config.f_divergence_type {
        FDivergence::ReverseKl => x,
        FDivergence::ForwardKl => x.neg().exp().neg().add_scalar(1.0),
        FDivergence::JsDivergence => log_sigmoid(x).add_scalar(std::f64::consts::LN_2),
        FDivergence::AlphaDivergence => {
            let alpha = config.f_alpha_divergence_coef;
            if (alpha - 1.0).abs() < 1e-6 {
                return x;
            }
            // Clamped so that exp stays finite, as TRL clamps in f32.
            let t = x.mul_scalar(alpha - 1.0).clamp_max(80.0);
            t.exp().sub_scalar(1.0).div_scalar(alpha - 1.0)
        }
    }
}

/// `x` sorted ascending, differentiably: the rank of each entry (ties by position) as a
/// one-hot permutation, applied by a matmul (sorting kernels are unreliable on WebGPU in wasm).
fn sorted(x: Tensor<1>) -> Tensor<1> {
    let [n] = x.dims();
    let device = x.device();
    let row = x.clone().detach().reshape([n, 1]);
    let col = x.clone().detach().reshape([1, n]);
    let earlier: Vec<f32> = (0..n * n).map(|k| f32::from(k % n < k / n)).collect();
    let earlier = Tensor::<2>::from_data(TensorData::new(earlier, [n, n]), &device);
    // rank[i] = #{j: x_j < x_i} + #{j < i: x_j = x_i}
    let below = col.clone().lower(row.clone()).float();
    let tied = col.equal(row).float() * earlier;
    let rank = (below + tied).sum_dim(1).reshape([1, n]);
    let positions: Vec<f32> = (0..n).map(|k| k as f32).collect();
    let positions = Tensor::<2>::from_data(TensorData::new(positions, [n, 1]), &device);
    let permutation = rank.equal(positions).float();
    permutation.matmul(x.reshape([n, 1])).reshape([n])
}

/// One loss of the objective, per pair.
fn loss_of(
    loss_type: LossType,
    inputs: &DpoInputs,
    c: &Tensor<1>,
    r: &Tensor<1>,
    config: &DpoConfig,
) -> Tensor<1> {
    let (beta, eps) = (config.beta, config.label_smoothing);
    let [n] = c.dims();
    let (cs, rs) = (scores(c.clone(), config), scores(r.clone(), config));
    let d = cs.clone() - rs.clone();
    let per_token = || {
        cs.clone() / inputs.chosen_tokens.clone().clamp_min(1.0)
            - rs.clone() / inputs.rejected_tokens.clone().clamp_min(1.0)
    };
    let smoothed = |delta: Tensor<1>| {
        log_sigmoid(delta.clone().mul_scalar(beta)).mul_scalar(-(1.0 - eps))
            - log_sigmoid(delta.mul_scalar(-beta)).mul_scalar(eps)
    };
    let ls = |x: Tensor<1>, k: f64| log_sigmoid(x.mul_scalar(k));
    match loss_type {
        LossType::Sigmoid => ls(d, beta).neg(),
        LossType::Hinge => relu(d.mul_scalar(-beta).add_scalar(1.0)),
        LossType::Ipo => per_token().sub_scalar(1.0 / (2.0 * beta)).square(),
        LossType::ExoPair => {
            let (qw, ql) = (
                sigmoid(d.clone().mul_scalar(beta)),
                sigmoid(d.clone().mul_scalar(-beta)),
            );
            let log_qw = ls(d.clone(), beta).sub_scalar((-eps).ln_1p());
            let log_ql = ls(d, -beta).sub_scalar(eps.ln());
            qw * log_qw + ql * log_ql
        }
        LossType::NcaPair => {
            ls(c.clone(), beta).neg()
                - ls(c.clone(), -beta).mul_scalar(0.5)
                - ls(r.clone(), -beta).mul_scalar(0.5)
        }
        LossType::Robust => (ls(d.clone(), beta).mul_scalar(-(1.0 - eps))
            + ls(d, -beta).mul_scalar(eps))
        .div_scalar(1.0 - 2.0 * eps),
        LossType::BcoPair => ls(c.clone(), beta).neg() - ls(r.clone(), -beta),
        LossType::SppoHard => {
            c.clone().sub_scalar(0.5 / beta).square() + r.clone().add_scalar(0.5 / beta).square()
        }
        LossType::Aot => {
            let policy = inputs.policy_chosen.clone() - inputs.policy_rejected.clone();
            let reference = inputs.reference_chosen.clone() - inputs.reference_rejected.clone();
            smoothed(sorted(policy) - sorted(reference))
        }
        LossType::AotUnpaired => smoothed(sorted(c.clone()) - sorted(r.clone())),
        LossType::ApoZero => {
            sigmoid(c.clone().mul_scalar(beta)).neg().add_scalar(1.0)
                + sigmoid(r.clone().mul_scalar(beta))
        }
        LossType::ApoDown => {
            sigmoid(c.clone().mul_scalar(beta))
                + sigmoid((c.clone() - r.clone()).mul_scalar(beta))
                    .neg()
                    .add_scalar(1.0)
        }
        LossType::Discopop => {
            let z = d.mul_scalar(beta);
            let m = sigmoid(z.clone().div_scalar(config.discopop_tau));
            log_sigmoid(z.clone()).neg() * m.clone().neg().add_scalar(1.0) + z.neg().exp() * m
        }
        LossType::Sft => chosen_nll(inputs).expand([n]),
        LossType::SigmoidNorm => ls(per_token(), beta).neg(),
    }
}

/// The objective of TRL 1.16's `DPOTrainer` on a batch of pairs.
pub fn dpo_loss(inputs: &DpoInputs, config: &DpoConfig) -> DpoOutput {
    let beta = config.beta;
    let c = inputs.policy_chosen.clone() - inputs.reference_chosen.clone();
    let r = inputs.policy_rejected.clone() - inputs.reference_rejected.clone();
    let weighed = |loss: Tensor<1>| match &inputs.pair_weights {
        Some(w) => loss * w.clone(),
        None => loss,
    };
    let losses = config
        .weighted()
        .map(|(l, w)| weighed(loss_of(l, inputs, &c, &r, config)).mul_scalar(w))
        .reduce(|a, b| a + b)
        .expect("a validated objective has at least one loss");
    DpoOutput {
        losses,
        chosen_rewards: c.detach().mul_scalar(beta),
        rejected_rewards: r.detach().mul_scalar(beta),
    }
}
