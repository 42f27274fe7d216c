//! Training: preference data, sequence log-probs, the objectives, the optimizer, what every
//! update shares (`step`), the DPO trainer and pretraining.

pub mod config;
pub mod data;
pub mod dpo;
pub mod logps;
pub mod metrics;
mod objective;
pub mod optimizer;
pub mod pretrain;
pub mod reference_free;
pub mod step;
pub mod trainer;

pub use config::{TrainConfig, Trainer};
pub use data::{Message, PreferencePair, Turns, parse_jsonl};
pub use dpo::{DpoConfig, LossType};
pub use logps::{SequenceBatch, TokenizedPair};
pub use metrics::{DpoMetrics, PairValues};
pub use optimizer::Optim;
pub use pretrain::{PretrainConfig, PretrainState, Pretrainer};
pub use reference_free::{CpoConfig, CpoLoss, OrpoConfig};
pub use trainer::{DpoTrainer, StepReport, TrainerSnapshot};
