//! Next-token pretraining (supervised: loss on completion tokens only) with AdamW, linear warmup
//! and cosine decay. The same step structure as the DPO update; resumable through the optimizer
//! state bytes and the step counter.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::CausalLm;
use crate::rng::Rng;
use crate::runtime::read_all;
use crate::train::logps::{SequenceBatch, sequence_logps};
use crate::train::optimizer::{Optim, Optimizer, OptimizerConfig};
use crate::train::step::{clipped_step, grad_norm_squared, skip_reason};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
    pub steps: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub warmup_steps: usize,
    /// The cosine decays to `learning_rate * min_lr_ratio`.
    pub min_lr_ratio: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
}

/// A pretraining run's `trainer_state.json`: where it stopped (for `--resume`) and its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainState {
    pub step: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    /// Wall time of every session of the run so far.
    pub wall_seconds: f64,
    pub config: PretrainConfig,
    /// Stories in the training corpus, and the seed it was drawn with.
    pub stories: usize,
    pub seed: u64,
}

impl PretrainConfig {
    /// Learning rate at `step` (0-based): linear warmup, then cosine decay.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.learning_rate * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let progress = (step - self.warmup_steps) as f64
            / (self.steps.saturating_sub(self.warmup_steps).max(1)) as f64;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos());
        self.learning_rate * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)
    }
}

pub struct Pretrainer {
    model: CausalLm,
    optim: Optimizer,
    pub config: PretrainConfig,
    device: Device,
    /// Steps taken so far.
    pub step: usize,
}

impl Pretrainer {
    pub fn new(model: CausalLm, config: PretrainConfig, device: &Device) -> Self {
        let optim = Optimizer::new(Self::adamw(&config));
        Self {
            model: model.fork(&device.clone().autodiff()).train(),
            optim,
            config,
            device: device.clone(),
            step: 0,
        }
    }

    fn adamw(config: &PretrainConfig) -> OptimizerConfig {
        OptimizerConfig {
            optim: Optim::AdamW,
            beta1: 0.9,
            beta2: 0.95,
            epsilon: 1e-8,
            momentum: 0.0,
            weight_decay: config.weight_decay,
        }
    }

    /// Continues from [`Pretrainer::optimizer_state`]'s bytes; the step count comes with them.
    pub fn resume(&mut self, optimizer_state: &[u8]) -> Result<()> {
        self.optim = Optimizer::from_safetensors(
            Self::adamw(&self.config),
            &self.model,
            optimizer_state,
            "optimizer.safetensors",
            &self.device,
        )?;
        self.step = self.optim.steps as usize;
        Ok(())
    }

    /// The optimizer state as safetensors (PyTorch's names), including the step count.
    pub async fn optimizer_state(&self) -> Result<Vec<u8>> {
        self.optim.to_safetensors(&self.model).await
    }

    pub fn model(&self) -> CausalLm {
        self.model.valid()
    }

    /// Mean negative log-likelihood per completion token.
    fn loss(model: &CausalLm, batch: &SequenceBatch, device: &Device) -> Tensor<1> {
        let tokens: f32 = batch.counts().iter().sum();
        sequence_logps(model, batch, device)
            .sum()
            .neg()
            .div_scalar(tokens)
    }

    /// One update; returns the loss before it and the gradient norm. A non-finite loss or
    /// gradient skips the update and is reported as an error.
    pub async fn train_step(&mut self, batch: &SequenceBatch) -> Result<(f64, f64)> {
        let ad = self.device.clone().autodiff();
        // Forward and loss.
        let loss = Self::loss(&self.model, batch, &ad);
        // Backward.
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        let [loss, sq_norm] = read_all([
            loss.inner(),
            grad_norm_squared(&self.model, &grads, &self.device),
        ])
        .await?;
        let (loss, grad_norm) = (loss[0] as f64, (sq_norm[0] as f64).sqrt());
        if let Some(reason) = skip_reason(loss, grad_norm) {
            return Err(Error::Device(format!("step {}: {reason}", self.step)));
        }
        // Optimizer step at the scheduled learning rate.
        let lr = self.config.lr_at(self.step);
        clipped_step(
            &mut self.optim,
            &mut self.model,
            grads,
            grad_norm,
            self.config.max_grad_norm,
            lr,
        );
        self.step += 1;
        Ok((loss, grad_norm))
    }

    /// Mean loss per completion token over `batches`, without updating.
    pub async fn eval_loss(&self, batches: &[SequenceBatch]) -> Result<f64> {
        let model = self.model.valid();
        let (mut nll, mut tokens) = (0.0, 0.0);
        for batch in batches {
            let [sum] = read_all([sequence_logps(&model, batch, &self.device).sum()]).await?;
            nll -= sum[0] as f64;
            tokens += batch.counts().iter().sum::<f32>() as f64;
        }
        Ok(nll / tokens)
    }
}

/// Rows of one batch as a [`SequenceBatch`] (prompt ids, completion ids).
pub fn batch_of(
    rows: &[(Vec<u32>, Vec<u32>)],
    pad_id: u32,
    max_len: usize,
) -> Result<SequenceBatch> {
    let refs: Vec<(&[u32], &[u32])> = rows.iter().map(|(p, c)| (&p[..], &c[..])).collect();
    SequenceBatch::new(&refs, pad_id, max_len)
}

/// Steps per length bucket window (see [`batch_indices`]).
const WINDOW: usize = 16;

/// Indices into `lengths` of step `step`'s batch. Each window of `WINDOW` steps draws its rows
/// at random, sorts them by length and deals runs of similar length to its steps in a shuffled
/// order, so a batch is padded little. The batch of step s depends only on (seed, s), so a
/// resumed run sees the same data.
pub fn batch_indices(seed: u64, step: usize, batch_size: usize, lengths: &[usize]) -> Vec<usize> {
    // Seeded through one SplitMix output: SplitMix streams from seeds a multiple of its increment
    // apart are shifted copies of each other, and neighbouring windows would share their rows.
    let mut rng = Rng::new(seed ^ Rng::new((step / WINDOW) as u64).next_u64());
    let mut drawn: Vec<usize> = (0..WINDOW * batch_size)
        .map(|_| (rng.next_u64() % lengths.len() as u64) as usize)
        .collect();
    drawn.sort_by_key(|&i| (lengths[i], i));
    let mut order: Vec<usize> = (0..WINDOW).collect();
    for i in (1..WINDOW).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let chunk = order[step % WINDOW];
    drawn[chunk * batch_size..(chunk + 1) * batch_size].to_vec()
}
