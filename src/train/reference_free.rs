//! The reference-free objectives of TRL 1.16's experimental `CPOTrainer` (CPO, SimPO, AlphaPO)
//! and `ORPOTrainer`: the policy's log-probs of the chosen and rejected responses against each
//! other, with an NLL term on the chosen ones. The reference's log-probs are never computed.
//!
//! With `c`, `r` the policy's log-probs (averaged over tokens for `ipo` and `simpo`, and always
//! for ORPO), `z = c − r` (AlphaPO, `alpha ≠ 0`: `z = u(c) − u(r)`, `u(x) = (1 − e^(−αx))/α`):
//! - CPO `sigmoid`: `−(1−ε) log σ(βz) − ε log σ(−βz)`; `hinge`: `relu(1 − βz)`;
//!   `ipo`: `(z − 1/(2β))²`; `simpo`: `sigmoid` of `z − γ/β`; plus `cpo_alpha`·NLL
//! - ORPO: `NLL − β log σ(o)`, `o = (c − r) − (log(1 − e^c) − log(1 − e^r))`
//!
//! NLL is the mean negative log-likelihood of the batch's chosen completion tokens; rewards are
//! `β·c` and `β·r` (AlphaPO: `β·u(c)`, `β·u(r)`).

use burn::tensor::Tensor;
use burn::tensor::activation::{log_sigmoid, relu};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::train::dpo::{DpoInputs, DpoOutput};

/// TRL's `CPOConfig.loss_type` (`alphapo` is `simpo` with `cpo_alpha` 0, as TRL rewrites it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(rename_all = "lowercase")]
pub enum CpoLoss {
    #[default]
    Sigmoid,
    Hinge,
    Ipo,
    Simpo,
}

impl CpoLoss {
    const ALL: [CpoLoss; 4] = [
        CpoLoss::Sigmoid,
        CpoLoss::Hinge,
        CpoLoss::Ipo,
        CpoLoss::Simpo,
    ];

    /// IPO and SimPO compare log-probs averaged over each response's tokens.
    fn averaged(self) -> bool {
        matches!(self, CpoLoss::Ipo | CpoLoss::Simpo)
    }
}

serde_names!(CpoLoss, "CPO loss type");

/// TRL's `CPOConfig`: CPO, SimPO (`loss_type` simpo, `simpo_gamma`) and AlphaPO (`alpha`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(default)]
pub struct CpoConfig {
    pub beta: f64,
    pub loss_type: CpoLoss,
    pub label_smoothing: f64,
    /// SimPO's target margin γ.
    pub simpo_gamma: f64,
    /// Weight of the NLL of the chosen responses.
    pub cpo_alpha: f64,
    /// AlphaPO's reward shape; 0 is CPO's log-prob reward.
    pub alpha: f64,
}

impl Default for CpoConfig {
    fn default() -> Self {
        Self {
            beta: 0.1,
            loss_type: CpoLoss::Sigmoid,
            label_smoothing: 0.0,
            simpo_gamma: 0.5,
            cpo_alpha: 1.0,
            alpha: 0.0,
        }
    }
}

/// TRL's `ORPOConfig`: β weighs the odds-ratio term against the NLL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(default)]
pub struct OrpoConfig {
    pub beta: f64,
}

impl Default for OrpoConfig {
    fn default() -> Self {
        Self { beta: 0.1 }
    }
}

fn positive_beta(beta: f64) -> Result<()> {
    if beta.is_finite() && beta > 0.0 {
        Ok(())
    } else {
        Err(Error::Setting(format!(
            "beta must be a positive number, got {beta}"
        )))
    }
}

impl CpoConfig {
    pub fn validate(&self) -> Result<()> {
        positive_beta(self.beta)?;
        let finite = [
            self.label_smoothing,
            self.simpo_gamma,
            self.cpo_alpha,
            self.alpha,
        ];
        if !finite.iter().all(|v| v.is_finite()) || !(0.0..0.5).contains(&self.label_smoothing) {
            return Err(Error::Setting(
                "label_smoothing must be in [0, 0.5); simpo_gamma, cpo_alpha and alpha numbers"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl OrpoConfig {
    pub fn validate(&self) -> Result<()> {
        positive_beta(self.beta)
    }
}

/// What a reference-free objective gives besides [`DpoOutput`]: the log-probs it compared
/// (averaged where it averages), the NLL of the chosen tokens `[1]`, and ORPO's log odds `[n]`.
pub struct ReferenceFreeOutput {
    pub out: DpoOutput,
    pub chosen_logps: Tensor<1>,
    pub rejected_logps: Tensor<1>,
    pub nll: Tensor<1>,
    pub log_odds: Option<Tensor<1>>,
}

/// The mean NLL of the batch's chosen completion tokens, `[1]` (TRL's `sft` and CPO's
/// `nll_loss`).
pub fn chosen_nll(inputs: &DpoInputs) -> Tensor<1> {
    let tokens = inputs.chosen_tokens.clone().sum();
    inputs.policy_chosen_raw.clone().sum().neg() / tokens
}

/// ORPO's `nll_loss`: the mean NLL of every token of the chosen rows after the first, the
/// prompt's included, `[1]` (TRL's ORPOTrainer labels the whole row).
fn chosen_nll_whole(inputs: &DpoInputs) -> Tensor<1> {
    let tokens = inputs.chosen_whole_tokens.clone().sum();
    inputs.chosen_whole.clone().sum().neg() / tokens
}

/// The policy's chosen and rejected log-probs, summed or averaged over tokens.
fn policy_logps(inputs: &DpoInputs, averaged: bool) -> (Tensor<1>, Tensor<1>) {
    let (c, r) = (
        inputs.policy_chosen_raw.clone(),
        inputs.policy_rejected.clone(),
    );
    if averaged {
        (
            c / inputs.chosen_tokens.clone().clamp_min(1.0),
            r / inputs.rejected_tokens.clone().clamp_min(1.0),
        )
    } else {
        (c, r)
    }
}

/// `log(1 − e^x)` for `x < 0`, branched at −ln 2 as TRL's `log1mexp` for accuracy.
fn log1mexp(x: Tensor<1>) -> Tensor<1> {
    let far = x.clone().exp().neg().add_scalar(1.0).log();
    let near = x.clone().exp().sub_scalar(1.0).neg().log();
    let is_far = x.lower_elem(-std::f64::consts::LN_2);
    near.mask_where(is_far, far)
}

/// CPO, SimPO or AlphaPO on a batch; per-pair losses include `cpo_alpha`·NLL.
pub fn cpo_loss(inputs: &DpoInputs, config: &CpoConfig) -> ReferenceFreeOutput {
    let (beta, eps) = (config.beta, config.label_smoothing);
    let (c, r) = policy_logps(inputs, config.loss_type.averaged());
    let shape = |x: Tensor<1>| {
        if config.alpha == 0.0 {
            x
        } else {
            let a = config.alpha;
            x.mul_scalar(-a).exp().neg().add_scalar(1.0).div_scalar(a)
        }
    };
    let (uc, ur) = (shape(c.clone()), shape(r.clone()));
    let z = uc.clone() - ur.clone();
    let smoothed = |z: Tensor<1>| {
        log_sigmoid(z.clone().mul_scalar(beta)).mul_scalar(-(1.0 - eps))
            - log_sigmoid(z.mul_scalar(-beta)).mul_scalar(eps)
    };
    let losses = match config.loss_type {
        CpoLoss::Sigmoid => smoothed(z),
        CpoLoss::Simpo => smoothed(z.sub_scalar(config.simpo_gamma / beta)),
        CpoLoss::Hinge => relu(z.mul_scalar(-beta).add_scalar(1.0)),
        CpoLoss::Ipo => z.sub_scalar(1.0 / (2.0 * beta)).square(),
    };
    // As TRL: without the NLL term (`cpo_alpha` 0) the logged `nll_loss` is 0.
    let nll = if config.cpo_alpha == 0.0 {
        Tensor::zeros([1], &losses.device())
    } else {
        chosen_nll(inputs)
    };
    let [n] = losses.dims();
    let losses = losses + nll.clone().mul_scalar(config.cpo_alpha).expand([n]);
    ReferenceFreeOutput {
        out: DpoOutput {
            losses,
            chosen_rewards: uc.detach().mul_scalar(beta),
            rejected_rewards: ur.detach().mul_scalar(beta),
        },
        chosen_logps: c,
        rejected_logps: r,
        nll,
        log_odds: None,
    }
}

/// ORPO on a batch; per-pair losses are `NLL − β log σ(o)`.
pub fn orpo_loss(inputs: &DpoInputs, config: &OrpoConfig) -> ReferenceFreeOutput {
    let beta = config.beta;
    let (c, r) = policy_logps(inputs, true);
    let log_odds = (c.clone() - r.clone()) - (log1mexp(c.clone()) - log1mexp(r.clone()));
    let nll = chosen_nll_whole(inputs);
    let [n] = log_odds.dims();
    let losses = nll.clone().expand([n]) - log_sigmoid(log_odds.clone()).mul_scalar(beta);
    ReferenceFreeOutput {
        out: DpoOutput {
            losses,
            chosen_rewards: c.clone().detach().mul_scalar(beta),
            rejected_rewards: r.clone().detach().mul_scalar(beta),
        },
        chosen_logps: c,
        rejected_logps: r,
        nll,
        log_odds: Some(log_odds),
    }
}
