//! The trainer's objective on a batch, whichever TRL trainer it follows: DPO's losses with the
//! frozen reference, or the reference-free CPO and ORPO; and what of it is read back for the
//! metrics in one transfer.

use burn::tensor::{Device, Tensor};

use crate::error::Result;
use crate::train::config::{TrainConfig, Trainer};
use crate::train::dpo::{DpoInputs, DpoOutput, dpo_loss};
use crate::train::logps::TokenStats;
use crate::train::metrics::{PairValues, TokenSums};
use crate::train::reference_free::{ReferenceFreeOutput, cpo_loss, orpo_loss};
use crate::train::trainer::{PreparedBatch, pairs_refused};

/// The batch's sums of the policy's token statistics, `[4]`: mean logits over the chosen and
/// over the rejected completion tokens, entropy over all of them, top-1 hits over the chosen.
pub(super) fn stat_sums(stats: TokenStats, n: usize) -> Tensor<1> {
    let TokenStats {
        mean_logits,
        entropy,
        top1,
        ..
    } = stats;
    Tensor::cat(
        vec![
            mean_logits.clone().slice(0..n).sum(),
            mean_logits.slice(n..2 * n).sum(),
            entropy.sum(),
            top1.slice(0..n).sum(),
        ],
        0,
    )
}

/// [`stat_sums`] read back, with the token counts they average over.
fn token_sums(sums: &[f32], batch: &PreparedBatch) -> TokenSums {
    let counts = batch.sequences.counts();
    let total = |rows: &[f32]| rows.iter().map(|&c| c as f64).sum();
    let n = batch.n_pairs;
    TokenSums {
        chosen_logits: sums[0] as f64,
        rejected_logits: sums[1] as f64,
        entropy: sums[2] as f64,
        chosen_top1: sums[3] as f64,
        chosen_tokens: total(&counts[..n]),
        rejected_tokens: total(&counts[n..]),
    }
}

/// An objective computed on a batch: per-pair losses and rewards, the log-probs it compared (for
/// the metrics), and the terms some objectives log.
pub(super) struct Objective {
    pub(super) out: DpoOutput,
    pub(super) chosen: Tensor<1>,
    pub(super) rejected: Tensor<1>,
    pub(super) reference_chosen: Tensor<1>,
    pub(super) reference_rejected: Tensor<1>,
    /// The NLL of the chosen tokens `[1]` (CPO, ORPO).
    pub(super) nll: Option<Tensor<1>>,
    /// ORPO's log odds `[n]`.
    pub(super) log_odds: Option<Tensor<1>>,
    /// Whether the trainer logs the token metrics (DPO does; CPO and ORPO log others).
    pub(super) token_metrics: bool,
}

impl Objective {
    /// The objective `config` asks for, on `inputs`.
    pub(super) fn of(config: &TrainConfig, inputs: DpoInputs) -> Result<Self> {
        Ok(match config.trainer {
            Trainer::Dpo => {
                let out = dpo_loss(&inputs, &config.dpo);
                Self {
                    out,
                    nll: None,
                    chosen: inputs.policy_chosen,
                    rejected: inputs.policy_rejected,
                    reference_chosen: inputs.reference_chosen,
                    reference_rejected: inputs.reference_rejected,
                    log_odds: None,
                    token_metrics: true,
                }
            }
            Trainer::Cpo => Self::reference_free(cpo_loss(&inputs, &config.cpo)),
            Trainer::Orpo => Self::reference_free(orpo_loss(&inputs, &config.orpo)),
            Trainer::Kto => return Err(pairs_refused()),
        })
    }

    fn reference_free(o: ReferenceFreeOutput) -> Self {
        let zeros = || Tensor::zeros(o.chosen_logps.dims(), &o.chosen_logps.device());
        Self {
            reference_chosen: zeros(),
            reference_rejected: zeros(),
            out: o.out,
            chosen: o.chosen_logps,
            rejected: o.rejected_logps,
            nll: Some(o.nll),
            log_odds: o.log_odds,
            token_metrics: false,
        }
    }

    /// The same values on the plain device, for reading back.
    pub(super) fn inner(self) -> Self {
        Self {
            out: DpoOutput {
                losses: self.out.losses.inner(),
                chosen_rewards: self.out.chosen_rewards.inner(),
                rejected_rewards: self.out.rejected_rewards.inner(),
            },
            chosen: self.chosen.inner(),
            rejected: self.rejected.inner(),
            reference_chosen: self.reference_chosen.inner(),
            reference_rejected: self.reference_rejected.inner(),
            nll: self.nll.map(Tensor::inner),
            log_odds: self.log_odds.map(Tensor::inner),
            token_metrics: self.token_metrics,
        }
    }

    /// What is read back, in one transfer: losses, rewards, the four log-probs, the NLL and log
    /// odds (zeros where the objective has none), and the token statistics' `sums`.
    pub(super) fn tensors(&self, sums: Tensor<1>, n: usize, device: &Device) -> [Tensor<1>; 10] {
        let or_zeros =
            |t: &Option<Tensor<1>>, len| t.clone().unwrap_or(Tensor::zeros([len], device));
        [
            self.out.losses.clone(),
            self.out.chosen_rewards.clone(),
            self.out.rejected_rewards.clone(),
            self.chosen.clone(),
            self.rejected.clone(),
            self.reference_chosen.clone(),
            self.reference_rejected.clone(),
            or_zeros(&self.nll, 1),
            or_zeros(&self.log_odds, n),
            sums,
        ]
    }

    /// The values of [`Objective::tensors`] as read back.
    pub(super) fn values(
        &self,
        read: [Vec<f32>; 10],
        batch: &PreparedBatch,
        config: &TrainConfig,
    ) -> PairValues {
        let [
            losses,
            chosen_rewards,
            rejected_rewards,
            pc,
            pr,
            rc,
            rr,
            nll,
            log_odds,
            sums,
        ] = read;
        let tokens = if self.token_metrics {
            token_sums(&sums, batch)
        } else {
            TokenSums::default()
        };
        let mut values = PairValues::new(
            losses,
            [chosen_rewards, rejected_rewards],
            [pc, pr, rc, rr],
            tokens,
            config.beta(),
        );
        values.nll_loss = self.nll.is_some().then(|| nll[0] as f64);
        values.log_odds = self.log_odds.is_some().then_some(log_odds);
        values
    }
}
