//! The trainer on rated responses (TRL's `KTOTrainer`): KTO's rows and KL rows, its objective,
//! and the update, which shares the pairs' backward, read-back and non-finite guard.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{DpoTrainer, push};
use crate::error::{Error, Result};
use crate::model::CausalLm;
use crate::runtime::read_all;
use crate::train::kto::{KtoInputs, kto_loss};
use crate::train::logps::{SequenceBatch, TokenizedRating, token_logps_and_stats};
use crate::train::metrics::{KtoMetrics, RatingValues, TokenSums};

/// A batch of rated responses ready for KTO: their rows (and KL rows) and the reference's
/// summed log-probs of each row.
#[derive(Debug, Clone)]
pub struct RatedBatch {
    pub ratings: Vec<TokenizedRating>,
    pub sequences: SequenceBatch,
    /// `[n]`, then `[n]` for the KL rows when the objective has them.
    pub reference_logps: Vec<f32>,
}

/// What one update on ratings saw, as [`StepReport`](super::StepReport) for pairs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[cfg_attr(target_arch = "wasm32", tsify(missing_as_null))]
pub struct RatingReport {
    pub metrics: KtoMetrics,
    pub values: RatingValues,
    pub skipped: Option<String>,
    pub forward_backward_ms: f64,
}

impl DpoTrainer {
    /// Tokenised ratings → KTO's rows (with the KL rows its loss type needs), with the
    /// reference's log-probs computed once.
    pub async fn prepare_rated(
        &self,
        ratings: &[TokenizedRating],
        pad_id: u32,
    ) -> Result<RatedBatch> {
        self.takes_ratings()?;
        let kl = self.config.kto.loss_type.uses_kl();
        let sequences = SequenceBatch::rated(ratings, kl, pad_id, self.max_len())?;
        let sums = self
            .frozen_token_logps(self.reference()?, &sequences)
            .sum_dim(1)
            .reshape([sequences.rows]);
        let [reference_logps] = read_all([sums]).await?;
        Ok(RatedBatch {
            ratings: ratings.to_vec(),
            sequences,
            reference_logps,
        })
    }

    /// What KTO reads of `batch` from the policy's per-token log-probs.
    fn kto_inputs(
        &self,
        token_logps: Tensor<2>,
        batch: &RatedBatch,
        device: &Device,
    ) -> Result<KtoInputs> {
        let kto = &self.config.kto;
        let n = batch.ratings.len();
        let has_kl = batch.sequences.rows == 2 * n;
        if !self.config.trainer.unpaired() || kto.loss_type.uses_kl() != has_kl {
            return Err(Error::Setting(
                "this batch of ratings was prepared for another objective; prepare it again".into(),
            ));
        }
        let rows = batch.sequences.rows;
        let policy = token_logps.sum_dim(1).reshape([rows]);
        let reference = Tensor::<1>::from_data(
            TensorData::new(batch.reference_logps.clone(), [rows]),
            device,
        );
        Ok(KtoInputs {
            kl_rows: has_kl.then(|| {
                (
                    policy.clone().slice(n..rows),
                    reference.clone().slice(n..rows),
                )
            }),
            policy: policy.slice(0..n),
            reference: reference.slice(0..n),
            labels: batch.ratings.iter().map(|r| r.label).collect(),
        })
    }

    /// The forward on `policy` (autodiff or not) and the objective on `batch`: the loss, and what
    /// is read back for the metrics: losses, rewards, log-probs `[n]`, z₀ `[1]`, and the rated
    /// rows' summed mean logits and entropies `[n]`.
    fn kto_objective(
        &self,
        policy: &CausalLm,
        batch: &RatedBatch,
        device: &Device,
    ) -> Result<(Tensor<1>, [Tensor<1>; 6])> {
        let (token_logps, _, stats) = token_logps_and_stats(policy, &batch.sequences, device);
        let inputs = self.kto_inputs(token_logps, batch, device)?;
        let out = kto_loss(&inputs, &self.config.kto);
        let n = batch.ratings.len();
        let loss = out.losses.clone().mean();
        let read = [
            out.losses.inner(),
            out.rewards.inner(),
            inputs.policy.detach().inner(),
            out.kl.inner(),
            stats.mean_logits.slice(0..n).inner(),
            stats.entropy.slice(0..n).inner(),
        ];
        Ok((loss, read))
    }

    /// [`DpoTrainer::kto_objective`]'s values as read back.
    fn rating_values(&self, read: [Vec<f32>; 6], batch: &RatedBatch) -> RatingValues {
        let [losses, rewards, policy, kl, mean_logits, entropy] = read;
        let n = batch.ratings.len();
        let labels: Vec<bool> = batch.ratings.iter().map(|r| r.label).collect();
        let counts = batch.sequences.counts();
        let sum_where = |v: &[f32], label: bool| {
            (0..n)
                .filter(|&i| labels[i] == label)
                .map(|i| v[i] as f64)
                .sum::<f64>()
        };
        let tokens = TokenSums {
            chosen_logits: sum_where(&mean_logits, true),
            rejected_logits: sum_where(&mean_logits, false),
            entropy: entropy.iter().map(|&x| x as f64).sum(),
            chosen_top1: 0.0,
            chosen_tokens: sum_where(&counts, true),
            rejected_tokens: sum_where(&counts, false),
        };
        RatingValues {
            labels,
            losses,
            rewards,
            policy,
            reference: batch.reference_logps[..n].to_vec(),
            kl: kl[0] as f64,
            tokens,
        }
    }

    /// KTO's metrics of the current policy on `batch`, without updating.
    pub async fn evaluate_rated(&self, batch: &RatedBatch) -> Result<RatingValues> {
        let ad = self.device.clone().autodiff();
        let policy = self.policy.valid().fork(&ad).no_grad();
        let (_, read) = self.kto_objective(&policy, batch, &ad)?;
        Ok(self.rating_values(read_all(read).await?, batch))
    }

    /// One optimizer update on a batch of ratings, as [`DpoTrainer::step`] on pairs.
    pub async fn step_rated(&mut self, batch: &RatedBatch) -> Result<RatingReport> {
        let started = web_time::Instant::now();
        let ad = self.device.clone().autodiff();
        // Forward and loss: the rated rows with gradients, the KL rows without.
        let (loss, read) = self.kto_objective(&self.policy, batch, &ad)?;
        // Backward, then the metrics and the gradient norm in one transfer.
        let (grads, sq_norm) = self.backward(loss);
        let [read @ .., sq_norm]: [_; 7] = read_all(push(read, sq_norm)).await?;
        let forward_backward_ms = started.elapsed().as_secs_f64() * 1e3;
        let values = self.rating_values(read, batch);
        let grad_norm = (sq_norm[0] as f64).sqrt();
        let mut metrics = values.metrics();
        metrics.grad_norm = Some(grad_norm);
        let skipped = self.apply(grads, metrics.loss, grad_norm);
        Ok(RatingReport {
            metrics,
            values,
            skipped,
            forward_backward_ms,
        })
    }

    /// `steps_per_pair` updates on one batch of ratings.
    pub async fn train_rated(&mut self, batch: &RatedBatch) -> Result<Vec<RatingReport>> {
        let mut reports = Vec::with_capacity(self.config.steps_per_pair);
        for _ in 0..self.config.steps_per_pair {
            reports.push(self.step_rated(batch).await?);
        }
        Ok(reports)
    }

    /// Learns from one new rating, as the app does on every 👍/👎: `steps_per_pair` updates on a
    /// batch of this rating (first) and up to `rating_batch − 1` earlier ones, most recent first.
    /// With `kto`, a first rating alone cannot train (see [`KtoConfig::check_batch`]): it is kept
    /// and learnt with the next; then no reports come back.
    ///
    /// [`KtoConfig::check_batch`]: crate::train::kto::KtoConfig::check_batch
    pub async fn learn_rated(
        &mut self,
        rating: TokenizedRating,
        pad_id: u32,
    ) -> Result<Vec<RatingReport>> {
        let earlier = self
            .ratings
            .len()
            .saturating_sub(self.config.rating_batch.saturating_sub(1));
        let batch: Vec<TokenizedRating> = std::iter::once(rating.clone())
            .chain(self.ratings[earlier..].iter().rev().cloned())
            .collect();
        if self.config.kto.check_batch(batch.len()).is_err() {
            // Kept only if it could train once the batch fills.
            self.takes_ratings()?;
            SequenceBatch::rated(&batch, false, pad_id, self.max_len())?;
            self.ratings.push(rating);
            return Ok(Vec::new());
        }
        let prepared = self.prepare_rated(&batch, pad_id).await?;
        let reports = self.train_rated(&prepared).await?;
        self.ratings.push(rating);
        Ok(reports)
    }

    fn takes_ratings(&self) -> Result<()> {
        if !self.config.trainer.unpaired() {
            return Err(Error::Setting(format!(
                "ratings train with KTO (kto or apo_zero_unpaired), not {}: choose KTO, or pick \
                 between two responses",
                self.config.trainer
            )));
        }
        Ok(())
    }

    /// The ratings seen so far, oldest first.
    pub fn ratings(&self) -> &[TokenizedRating] {
        &self.ratings
    }

    /// Ratings from before (a reload), as the oldest: the next rating's batch draws on them.
    pub fn recall_ratings(&mut self, earlier: Vec<TokenizedRating>) {
        self.ratings.splice(0..0, earlier);
    }
}
