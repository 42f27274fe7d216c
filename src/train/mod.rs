//! Training: preference data, sequence log-probs, the objectives, the optimizer, what every
//! update shares (`step`), the DPO trainer and pretraining.

/// `Display` and `FromStr` for an enum through its serde names, so each value is spelled once
/// (the settings JSON, the CLI and messages share it); `$what` names the enum in the error, which
/// lists `$ty::ALL`.
macro_rules! serde_names {
    ($ty:ty, $what:literal) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match serde_json::to_value(self) {
                    Ok(serde_json::Value::String(name)) => f.write_str(&name),
                    _ => unreachable!("a unit variant serialises as its name"),
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = crate::error::Error;
            fn from_str(s: &str) -> crate::error::Result<Self> {
                serde_json::from_value(serde_json::Value::String(s.into())).map_err(|_| {
                    let names: Vec<String> = Self::ALL.iter().map(|v| v.to_string()).collect();
                    crate::error::Error::Setting(format!(
                        "unknown {} {s:?}; expected one of {}",
                        $what,
                        names.join(", ")
                    ))
                })
            }
        }
    };
}

pub mod config;
pub mod data;
pub mod dpo;
pub mod kl;
pub mod kto;
pub mod logps;
pub mod metrics;
mod objective;
pub mod optimizer;
pub mod pretrain;
pub mod reference_free;
pub mod step;
pub mod trainer;

pub use config::{TrainConfig, Trainer};
pub use data::{
    ImportLimits, Message, PreferencePair, PreferenceReader, PreferenceRows, RatedResponse, Turns,
    parse_jsonl, parse_preferences, parse_ratings, parse_unpaired_jsonl, unpair,
};
pub use dpo::{DpoConfig, LossType};
pub use kl::{KlEstimate, sequence_kl};
pub use kto::{KtoConfig, KtoLoss};
pub use logps::{SequenceBatch, TokenizedPair, TokenizedRating};
pub use metrics::{DpoMetrics, KtoMetrics, PairValues, RatingValues};
pub use optimizer::Optim;
pub use pretrain::{PretrainConfig, PretrainState, Pretrainer};
pub use reference_free::{CpoConfig, CpoLoss, OrpoConfig};
pub use trainer::{DpoTrainer, RatedBatch, RatingReport, StepReport, TrainerSnapshot};
