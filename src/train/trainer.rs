//! The DPO update, spelled out: forward → loss → backward → GradientsParams → optim.step (on
//! rated responses, KTO's: `trainer/rated.rs`).
//!
//! The policy trains on an autodiff device; the reference is frozen (no graph, no gradients, no
//! optimizer state) and its log-probs of a batch are computed once, when the batch is prepared,
//! and reused by every step on it.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hf::peft::adapter_safetensors;
use crate::hf::safetensors::{self, Dtype};
use crate::model::CausalLm;
use crate::runtime::read_all;
use crate::train::config::TrainConfig;
use crate::train::dpo::DpoInputs;
use crate::train::kl::{KlEstimate, sequence_kl};
use crate::train::logps::{
    SequenceBatch, TokenizedPair, TokenizedRating, token_logps, token_logps_and_stats,
};
use crate::train::metrics::{DpoMetrics, PairValues};
use crate::train::objective::{Objective, stat_sums};
use crate::train::optimizer::Optimizer;
use crate::train::step::{clipped_step, grad_norm_squared, skip_reason};

mod rated;
pub use rated::{RatedBatch, RatingReport};

/// A batch of pairs ready to train on: the concatenated sequences and the reference log-probs.
#[derive(Debug, Clone)]
pub struct PreparedBatch {
    pub pairs: Vec<TokenizedPair>,
    pub sequences: SequenceBatch,
    pub n_pairs: usize,
    /// Summed completion log-probs under the reference, `[2n]` (chosen then rejected).
    pub reference_logps: Vec<f32>,
    /// The same sums over each pair's shared tokens and over the rest (LD-DPO), `[2n]` each.
    pub reference_split: [Vec<f32>; 2],
    /// False when prepared for a reference-free trainer (the reference's values are zeros).
    pub reference_run: bool,
}

impl PreparedBatch {
    /// One batch of the pairs of `batches`, in order, reusing their reference log-probs.
    pub fn merge(batches: &[&PreparedBatch], pad_id: u32, max_len: usize) -> Result<Self> {
        let pairs: Vec<TokenizedPair> = batches
            .iter()
            .flat_map(|b| b.pairs.iter().cloned())
            .collect();
        // Chosen rows of every batch, then rejected rows.
        let rows = |of: fn(&PreparedBatch) -> &[f32]| -> Vec<f32> {
            let chosen = batches
                .iter()
                .flat_map(|b| of(b)[..b.n_pairs].iter().copied());
            let rejected = batches
                .iter()
                .flat_map(|b| of(b)[b.n_pairs..].iter().copied());
            chosen.chain(rejected).collect()
        };
        Ok(Self {
            sequences: SequenceBatch::concatenated(&pairs, pad_id, max_len)?,
            n_pairs: pairs.len(),
            pairs,
            reference_logps: rows(|b| &b.reference_logps),
            reference_split: [
                rows(|b| &b.reference_split[0]),
                rows(|b| &b.reference_split[1]),
            ],
            reference_run: batches.iter().all(|b| b.reference_run),
        })
    }
}

/// What one update saw (metrics are from before the update), and whether it was applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[cfg_attr(target_arch = "wasm32", tsify(missing_as_null))]
pub struct StepReport {
    pub metrics: DpoMetrics,
    pub values: PairValues,
    /// Why the update was not applied (non-finite loss or gradient); `None` when it was.
    pub skipped: Option<String>,
    /// Wall time of the policy's forward and backward pass, up to the read of the metrics (the
    /// optimizer's kernels may still be running on a GPU when the step returns).
    pub forward_backward_ms: f64,
}

pub struct DpoTrainer {
    policy: CausalLm,
    /// `None` for a reference-free trainer built without one and without LoRA: full fine-tuning
    /// then holds no second copy of the weights (nothing to reset to or compare with).
    reference: Option<CausalLm>,
    /// With LoRA, the policy as it started (the base is the reference's, so only the adapters
    /// are held twice): what [`DpoTrainer::reset`] returns to.
    initial_adapters: Option<CausalLm>,
    optim: Optimizer,
    config: TrainConfig,
    device: Device,
    history: Vec<PreparedBatch>,
    /// The ratings seen so far, oldest first (a rating waits here for a KTO batch to fill).
    ratings: Vec<TokenizedRating>,
}

/// Everything an update changes, captured before it: restoring it undoes the update exactly.
/// Cheap: tensors are immutable and shared, nothing is copied.
#[derive(Clone)]
pub struct TrainerSnapshot {
    policy: CausalLm,
    optim: Optimizer,
    history_len: usize,
    ratings_len: usize,
}

/// Per-token log-probs of one completion (EOS included) under the policy and the reference.
#[derive(Debug, Clone)]
pub struct TokenLogps {
    pub policy: Vec<f32>,
    pub reference: Vec<f32>,
}

impl DpoTrainer {
    /// `policy` and `reference` live on `device` (plain). Without a reference, the policy's
    /// initial weights are the reference (with LoRA adapters, its weights without them, which
    /// cost nothing); a reference-free trainer (CPO, ORPO) without LoRA keeps none.
    pub fn new(
        policy: CausalLm,
        reference: Option<CausalLm>,
        config: TrainConfig,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let keep = config.trainer.needs_reference() || policy.has_adapters();
        let reference = reference.or_else(|| keep.then(|| policy.without_adapters()));
        let initial_adapters = policy.has_adapters().then(|| policy.clone());
        Ok(Self {
            policy: policy.fork(&device.clone().autodiff()).train(),
            reference,
            initial_adapters,
            optim: Optimizer::new(config.optimizer()),
            config,
            device: device.clone(),
            history: Vec::new(),
            ratings: Vec::new(),
        })
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Changes the settings. The optimizer state is kept, unless the optimizer itself changes
    /// (AdamW's moments mean nothing to SGD and the reverse).
    pub fn set_config(&mut self, config: TrainConfig) -> Result<()> {
        config.validate()?;
        if config.trainer.needs_reference() {
            self.reference()?;
        }
        self.optim.set_config(config.optimizer());
        self.config = config;
        Ok(())
    }

    /// The state before an update, to [`DpoTrainer::restore`] later.
    pub fn snapshot(&self) -> TrainerSnapshot {
        TrainerSnapshot {
            policy: self.policy.clone(),
            optim: self.optim.clone(),
            history_len: self.history.len(),
            ratings_len: self.ratings.len(),
        }
    }

    /// Returns to a snapshot: the same weights, optimizer moments and step count, and the picks
    /// learnt since forgotten.
    pub fn restore(&mut self, snapshot: TrainerSnapshot) {
        self.policy = snapshot.policy;
        self.optim = snapshot.optim;
        self.history.truncate(snapshot.history_len);
        self.ratings.truncate(snapshot.ratings_len);
    }

    /// The policy back to the reference (with LoRA: the adapters as they started), a fresh
    /// optimizer, no picks learnt.
    pub fn reset(&mut self) -> Result<()> {
        let start = match &self.initial_adapters {
            Some(adapters) => adapters.clone(),
            None => self.reference()?.clone(),
        };
        self.policy = start.fork(&self.device.clone().autodiff()).train();
        self.optim = Optimizer::new(self.config.optimizer());
        self.history.clear();
        self.ratings.clear();
        Ok(())
    }

    /// Updates applied so far.
    pub fn steps(&self) -> u64 {
        self.optim.steps
    }

    /// The policy's weights (with LoRA, its adapter_model.safetensors) and the optimizer state
    /// as two safetensors files.
    pub async fn save_state(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        let policy = self.policy();
        let weights = if policy.has_adapters() {
            adapter_safetensors(&policy).await?
        } else {
            safetensors::to_safetensors(&policy, Dtype::F32).await?
        };
        Ok((weights, self.optim.to_safetensors(&policy).await?))
    }

    /// Continues from saved state: `policy` (plain) and [`DpoTrainer::save_state`]'s optimizer
    /// file (`None`: a fresh optimizer). The reference is unchanged. On error nothing changes.
    pub fn load_state(&mut self, policy: CausalLm, optimizer: Option<&[u8]>) -> Result<()> {
        let optim = match optimizer {
            Some(bytes) => Optimizer::from_safetensors(
                self.config.optimizer(),
                &policy,
                bytes,
                "optimizer.safetensors",
                &self.device,
            )?,
            None => Optimizer::new(self.config.optimizer()),
        };
        self.policy = policy.fork(&self.device.clone().autodiff()).train();
        self.optim = optim;
        self.history.clear();
        self.ratings.clear();
        Ok(())
    }

    /// Per-token log-probs of each (prompt, completion) under the policy and the reference: how
    /// far the policy has moved from the reference on every token (one device read).
    pub async fn token_logps(
        &self,
        rows: &[(&[u32], &[u32])],
        pad_id: u32,
    ) -> Result<Vec<TokenLogps>> {
        let batch = SequenceBatch::new(rows, pad_id, self.max_len())?;
        let flat = |model: &CausalLm| {
            self.frozen_token_logps(model, &batch)
                .reshape([batch.rows * (batch.len - 1)])
        };
        let [policy, reference] = read_all([flat(&self.policy), flat(self.reference()?)]).await?;
        let width = batch.len - 1;
        Ok((0..batch.rows)
            .map(|r| {
                let keep = |v: &[f32]| {
                    (0..width)
                        .filter(|&t| batch.mask[r * width + t] > 0.0)
                        .map(|t| v[r * width + t])
                        .collect()
                };
                TokenLogps {
                    policy: keep(&policy),
                    reference: keep(&reference),
                }
            })
            .collect())
    }

    /// KL(π ‖ π_ref) of completions (prompt, completion) sampled from the current policy
    /// ([`sequence_kl`]).
    pub async fn sequence_kl(&self, rows: &[(&[u32], &[u32])], pad_id: u32) -> Result<KlEstimate> {
        sequence_kl(
            &self.policy(),
            self.reference()?,
            rows,
            pad_id,
            &self.device,
        )
        .await
    }

    /// The current policy without autodiff, for sampling and saving.
    pub fn policy(&self) -> CausalLm {
        self.policy.valid()
    }

    /// The frozen reference; refused for a reference-free trainer that keeps none.
    pub fn reference(&self) -> Result<&CausalLm> {
        self.reference.as_ref().ok_or_else(|| {
            Error::Setting(
                "this trainer is reference-free (CPO/ORPO without LoRA) and keeps no copy of the \
                 initial weights: there is no reference to compare with, reset to or train DPO \
                 or KTO against; load the model again with a reference"
                    .into(),
            )
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Tokenised pairs → sequences, with the reference log-probs computed once.
    pub async fn prepare(&self, pairs: &[TokenizedPair], pad_id: u32) -> Result<PreparedBatch> {
        if self.config.trainer.unpaired() {
            return Err(pairs_refused());
        }
        let sequences = SequenceBatch::concatenated(pairs, pad_id, self.max_len())?;
        if !self.config.trainer.needs_reference() {
            let zeros = vec![0.0; sequences.rows];
            return Ok(PreparedBatch {
                pairs: pairs.to_vec(),
                sequences,
                n_pairs: pairs.len(),
                reference_logps: zeros.clone(),
                reference_split: [zeros.clone(), zeros],
                reference_run: false,
            });
        }
        let tokens = self.frozen_token_logps(self.reference()?, &sequences);
        let [shared, tail] = self.ld_split(tokens.clone(), &sequences, pairs.len(), &self.device);
        let sum = tokens.sum_dim(1).reshape([sequences.rows]);
        let [reference_logps, shared, tail] = read_all([sum, shared, tail]).await?;
        Ok(PreparedBatch {
            pairs: pairs.to_vec(),
            sequences,
            n_pairs: pairs.len(),
            reference_logps,
            reference_split: [shared, tail],
            reference_run: true,
        })
    }

    fn max_len(&self) -> usize {
        self.config.max_length.min(self.policy.max_positions())
    }

    /// Learns from one new preference, as the app does on every pick: `steps_per_pair` updates
    /// on a batch of this pair (first, so `values[0]` is this pick) and up to `replay_pairs − 1`
    /// earlier picks, whose shared direction (the preferred attribute) adds up while their
    /// idiosyncrasies average out.
    pub async fn learn(&mut self, pair: TokenizedPair, pad_id: u32) -> Result<Vec<StepReport>> {
        let new = self.prepare(&[pair], pad_id).await?;
        let earlier = self
            .history
            .len()
            .saturating_sub(self.config.replay_pairs.saturating_sub(1));
        let batches: Vec<&PreparedBatch> = std::iter::once(&new)
            .chain(self.history[earlier..].iter().rev())
            .collect();
        let batch = PreparedBatch::merge(&batches, pad_id, self.max_len())?;
        let reports = self.train_batch(&batch).await?;
        self.history.push(new);
        Ok(reports)
    }

    /// The preferences learnt so far, oldest first.
    pub fn history(&self) -> &[PreparedBatch] {
        &self.history
    }

    /// The sums of `token_logps` `[rows, len - 1]` over each pair's shared tokens and over the
    /// rest (LD-DPO), `[rows]` each.
    fn ld_split(
        &self,
        token_logps: Tensor<2>,
        sequences: &SequenceBatch,
        n_pairs: usize,
        device: &Device,
    ) -> [Tensor<1>; 2] {
        let (shared, tail) = sequences.ld_masks(n_pairs);
        let shape = [sequences.rows, sequences.len - 1];
        let sum = |mask: Vec<f32>| {
            let mask = Tensor::<2>::from_data(TensorData::new(mask, shape), device);
            (token_logps.clone() * mask)
                .sum_dim(1)
                .reshape([sequences.rows])
        };
        [sum(shared), sum(tail)]
    }

    /// What the objectives read of `batch`, from the policy's per-token log-probs, their sums
    /// over whole rows and `log_sum_sq_probs` (summed per row): the four sequence log-probs `[n]`
    /// (LD-weighted with `ld_alpha`; the reference's as prepared), the token counts, and WPO's
    /// pair weights.
    fn dpo_inputs(
        &self,
        token_logps: Tensor<2>,
        whole_logps: Tensor<1>,
        log_sum_sq_probs: Tensor<1>,
        batch: &PreparedBatch,
        device: &Device,
    ) -> Result<DpoInputs> {
        if self.config.trainer.needs_reference() && !batch.reference_run {
            return Err(Error::Setting(
                "this batch was prepared for a reference-free trainer; prepare it again for DPO"
                    .into(),
            ));
        }
        let (n, rows) = (batch.n_pairs, 2 * batch.n_pairs);
        let upload =
            |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [rows]), device);
        let raw = token_logps.clone().sum_dim(1).reshape([rows]);
        let (policy, reference) = match self.config.dpo.ld_alpha {
            None => (raw.clone(), upload(&batch.reference_logps)),
            Some(alpha) => {
                let [shared, tail] = self.ld_split(token_logps, &batch.sequences, n, device);
                let [ref_shared, ref_tail] = &batch.reference_split;
                let reference = upload(ref_shared) + upload(ref_tail).mul_scalar(alpha);
                (shared + tail.mul_scalar(alpha), reference)
            }
        };
        let counts = upload(&batch.sequences.counts());
        let whole_counts = upload(&batch.sequences.whole_counts());
        let pair_weights = self.config.dpo.use_weighting.then(|| {
            let aligned = raw.clone().detach() - log_sum_sq_probs;
            let rows = aligned.div(counts.clone().clamp_min(1.0)).exp();
            rows.clone().slice(0..n) * rows.slice(n..2 * n)
        });
        Ok(DpoInputs {
            policy_chosen: policy.clone().slice(0..n),
            policy_chosen_raw: raw.slice(0..n),
            policy_rejected: policy.slice(n..rows),
            reference_chosen: reference.clone().slice(0..n),
            reference_rejected: reference.slice(n..rows),
            chosen_tokens: counts.clone().slice(0..n),
            rejected_tokens: counts.slice(n..rows),
            chosen_whole: whole_logps.slice(0..n),
            chosen_whole_tokens: whole_counts.slice(0..n),
            pair_weights,
        })
    }

    /// Per-token log-probs `[rows, len - 1]` through the same (autodiff-device) kernels as a
    /// training step, but recording no graph. Policy = reference then gives bit-identical
    /// log-probs: rewards exactly 0 at step 1.
    fn frozen_token_logps(&self, model: &CausalLm, sequences: &SequenceBatch) -> Tensor<2> {
        let ad = self.device.clone().autodiff();
        token_logps(&model.valid().fork(&ad).no_grad(), sequences, &ad).inner()
    }

    /// Metrics of the current policy on `batch`, without updating.
    pub async fn evaluate(&self, batch: &PreparedBatch) -> Result<PairValues> {
        let ad = self.device.clone().autodiff();
        let policy = self.policy.valid().fork(&ad).no_grad();
        let (token_logps, whole, stats) = token_logps_and_stats(&policy, &batch.sequences, &ad);
        let log_sum_sq = stats.log_sum_sq_probs.clone().inner();
        let inputs = self.dpo_inputs(
            token_logps.inner(),
            whole.inner(),
            log_sum_sq,
            batch,
            &self.device,
        )?;
        let objective = Objective::of(&self.config, inputs)?;
        let n = batch.n_pairs;
        let read = read_all(objective.tensors(stat_sums(stats, n).inner(), n, &self.device));
        Ok(objective.values(read.await?, batch, &self.config))
    }

    /// One optimizer update on `batch`. A non-finite loss or gradient leaves weights and optimizer
    /// state untouched and says why in the report.
    pub async fn step(&mut self, batch: &PreparedBatch) -> Result<StepReport> {
        let started = web_time::Instant::now();
        let ad = self.device.clone().autodiff();
        // Forward: chosen and rejected through the policy as one concatenated batch.
        let (token_logps, whole, stats) =
            token_logps_and_stats(&self.policy, &batch.sequences, &ad);
        let log_sum_sq = stats.log_sum_sq_probs.clone();
        let inputs = self.dpo_inputs(token_logps, whole, log_sum_sq, batch, &ad)?;
        // Loss: the mean of the objective over the pairs.
        let objective = Objective::of(&self.config, inputs)?;
        let loss = objective.out.losses.clone().mean();
        // Backward: gradients of the loss w.r.t. every policy parameter.
        let (grads, sq_norm) = self.backward(loss);
        // Read the metrics and the gradient norm in one transfer (of plain, non-autodiff
        // tensors); they decide whether to step.
        let n = batch.n_pairs;
        let plain = objective.inner();
        let [read @ .., sq_norm]: [_; 11] = read_all(push(
            plain.tensors(stat_sums(stats, n).inner(), n, &self.device),
            sq_norm,
        ))
        .await?;
        let forward_backward_ms = started.elapsed().as_secs_f64() * 1e3;
        let values = plain.values(read, batch, &self.config);
        let grad_norm = (sq_norm[0] as f64).sqrt();
        let mut metrics = values.metrics();
        metrics.grad_norm = Some(grad_norm);
        let skipped = self.apply(grads, metrics.loss, grad_norm);
        Ok(StepReport {
            metrics,
            values,
            skipped,
            forward_backward_ms,
        })
    }

    /// The gradients of `loss` w.r.t. every policy parameter, and their squared global norm.
    fn backward(&self, loss: Tensor<1>) -> (GradientsParams, Tensor<1>) {
        let grads = GradientsParams::from_grads(loss.backward(), &self.policy);
        let sq_norm = grad_norm_squared(&self.policy, &grads, &self.device);
        (grads, sq_norm)
    }

    /// The optimizer step with `grads`, unless the loss or gradient read back is non-finite
    /// (never let a NaN/inf into the weights or the Adam moments): then why it was skipped.
    fn apply(&mut self, grads: GradientsParams, loss: f64, grad_norm: f64) -> Option<String> {
        let skipped = skip_reason(loss, grad_norm);
        if skipped.is_none() {
            clipped_step(
                &mut self.optim,
                &mut self.policy,
                grads,
                grad_norm,
                self.config.max_grad_norm,
                self.config.learning_rate,
            );
        }
        skipped
    }

    /// `steps_per_pair` updates on one prepared batch; one report per update.
    pub async fn train_batch(&mut self, batch: &PreparedBatch) -> Result<Vec<StepReport>> {
        let mut reports = Vec::with_capacity(self.config.steps_per_pair);
        for _ in 0..self.config.steps_per_pair {
            reports.push(self.step(batch).await?);
        }
        Ok(reports)
    }
}

/// `tensors` with one more.
fn push<const N: usize, const M: usize>(
    tensors: [Tensor<1>; N],
    last: Tensor<1>,
) -> [Tensor<1>; M] {
    let mut all = tensors.to_vec();
    all.push(last);
    all.try_into().expect("M is N + 1")
}

/// Why a batch of pairs cannot train with KTO.
pub(super) fn pairs_refused() -> Error {
    Error::Setting(
        "KTO learns from rated responses, not pairs: rate responses (👍/👎), or unpair the pairs \
         as TRL does (one desirable and one undesirable row each)"
            .into(),
    )
}
