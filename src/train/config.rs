//! The settings of a DPO update, with TRL's names and defaults where TRL has them; the app's own
//! defaults (SGD, one update per pick) where a single pick is the batch.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hf::tokenizer::RowTokenization;
use crate::train::dpo::DpoConfig;
use crate::train::kto::KtoConfig;
use crate::train::optimizer::{Optim, OptimizerConfig};
use crate::train::reference_free::{CpoConfig, OrpoConfig};

/// Which of TRL's trainers the update follows: DPO (with a frozen reference), the
/// reference-free CPO (also SimPO, AlphaPO) and ORPO on pairs, or KTO on rated responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(rename_all = "lowercase")]
pub enum Trainer {
    #[default]
    Dpo,
    Cpo,
    Orpo,
    Kto,
}

serde_names!(Trainer, "trainer");

impl Trainer {
    const ALL: [Trainer; 4] = [Trainer::Dpo, Trainer::Cpo, Trainer::Orpo, Trainer::Kto];

    /// Whether the objective compares the policy with a reference model.
    pub fn needs_reference(self) -> bool {
        matches!(self, Trainer::Dpo | Trainer::Kto)
    }

    /// Whether it learns from rated responses rather than pairs.
    pub fn unpaired(self) -> bool {
        self == Trainer::Kto
    }

    /// How TRL's trainer for this objective tokenizes a row.
    pub fn tokenization(self) -> RowTokenization {
        match self {
            Trainer::Dpo | Trainer::Kto => RowTokenization::Dpo,
            Trainer::Cpo | Trainer::Orpo => RowTokenization::Cpo,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct TrainConfig {
    #[serde(default)]
    pub trainer: Trainer,
    /// DPO's objective (`trainer` dpo).
    pub dpo: DpoConfig,
    /// CPO's, SimPO's or AlphaPO's (`trainer` cpo).
    #[serde(default)]
    pub cpo: CpoConfig,
    /// ORPO's (`trainer` orpo).
    #[serde(default)]
    pub orpo: OrpoConfig,
    /// KTO's (`trainer` kto).
    #[serde(default)]
    pub kto: KtoConfig,
    pub learning_rate: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
    /// "sgd" (the app's default) or "adamw" (HF `TrainingArguments.optim` names).
    pub optim: Optim,
    /// SGD's momentum.
    pub momentum: f64,
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value (TRL's `max_grad_norm`); 0 disables clipping.
    pub max_grad_norm: f64,
    /// Updates applied to each preference pair (batch) as it arrives.
    pub steps_per_pair: usize,
    /// A pick trains on a batch of itself and up to this many − 1 earlier picks.
    pub replay_pairs: usize,
    /// A rating trains on a batch of itself and up to this many − 1 earlier ratings (KTO's
    /// reference point needs at least 2).
    #[serde(default = "default_rating_batch")]
    pub rating_batch: usize,
    /// Longest prompt + completion, in tokens; longer rows are truncated (prompt start first).
    pub max_length: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            trainer: Trainer::Dpo,
            dpo: DpoConfig::default(),
            cpo: CpoConfig::default(),
            orpo: OrpoConfig::default(),
            kto: KtoConfig::default(),
            // SGD: on the story-world model it steers within a session's picks, where AdamW at
            // its usual rate barely moves it (model card, "Steering").
            learning_rate: Optim::Sgd.default_learning_rate(),
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            optim: Optim::Sgd,
            momentum: 0.9,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            steps_per_pair: 1,
            replay_pairs: 1,
            rating_batch: default_rating_batch(),
            max_length: 512,
        }
    }
}

/// Far above any β in use (TRL's default is 0.1), far below where β·h overflows f32.
pub const MAX_BETA: f64 = 1e3;
/// Updates per pair, and ratings per KTO batch, that one pick may ask for.
pub const MAX_STEPS_PER_PAIR: usize = 1000;
pub const MAX_RATING_BATCH: usize = 256;

fn default_rating_batch() -> usize {
    4
}

impl TrainConfig {
    /// The β of the trainer's objective.
    pub fn beta(&self) -> f64 {
        match self.trainer {
            Trainer::Dpo => self.dpo.beta,
            Trainer::Cpo => self.cpo.beta,
            Trainer::Orpo => self.orpo.beta,
            Trainer::Kto => self.kto.beta,
        }
    }

    pub fn validate(&self) -> Result<()> {
        match self.trainer {
            Trainer::Dpo => self.dpo.validate()?,
            Trainer::Cpo => self.cpo.validate()?,
            Trainer::Orpo => self.orpo.validate()?,
            Trainer::Kto => {
                self.kto.validate()?;
                // A rating batch of one could never hold KTO's reference point.
                self.kto.check_batch(self.rating_batch)?;
            }
        }
        let bad = |m: String| Err(Error::Setting(m));
        if self.beta() > MAX_BETA {
            return bad(format!(
                "beta must be at most {MAX_BETA}, got {:e} (β·h would overflow)",
                self.beta()
            ));
        }
        if self.steps_per_pair > MAX_STEPS_PER_PAIR || self.rating_batch > MAX_RATING_BATCH {
            return bad(format!(
                "steps_per_pair must be at most {MAX_STEPS_PER_PAIR} and rating_batch at most \
                 {MAX_RATING_BATCH} (got {} and {}): one pick would hold the trainer for \
                 minutes; train again on all pairs instead",
                self.steps_per_pair, self.rating_batch
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate >= 0.0) {
            return bad(format!(
                "learning_rate must be a non-negative number, got {}",
                self.learning_rate
            ));
        }
        if !((0.0..1.0).contains(&self.adam_beta1) && (0.0..1.0).contains(&self.adam_beta2)) {
            return bad("Adam betas must be in [0, 1)".into());
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(format!("momentum must be in [0, 1), got {}", self.momentum));
        }
        if !(self.adam_epsilon > 0.0 && self.weight_decay >= 0.0 && self.max_grad_norm >= 0.0) {
            return bad(
                "adam_epsilon must be positive; weight_decay and max_grad_norm non-negative".into(),
            );
        }
        if self.steps_per_pair == 0
            || self.replay_pairs == 0
            || self.rating_batch == 0
            || self.max_length < 2
        {
            return bad(
                "steps_per_pair, replay_pairs and rating_batch must be at least 1, max_length at \
                 least 2"
                    .into(),
            );
        }
        Ok(())
    }

    pub(super) fn optimizer(&self) -> OptimizerConfig {
        OptimizerConfig {
            optim: self.optim,
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            epsilon: self.adam_epsilon,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
        }
    }
}
