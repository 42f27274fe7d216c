//! The arguments `train` and `eval` share (model, reference, data, the objective, LoRA) and
//! what they load from them.

use std::path::PathBuf;

use clap::Args;
use webdpo::hf::peft::from_peft;
use webdpo::train::dpo::FDivergence;
use webdpo::train::{CpoConfig, CpoLoss, OrpoConfig, Trainer, parse_jsonl, parse_ratings};
use webdpo::{
    CausalLm, ComputeDevice, DpoConfig, Error, KtoConfig, LoraConfig, ModelDir, Optim, Result,
    TextTokenizer, TokenizedPair, TokenizedRating, TrainConfig,
};

#[derive(Args)]
pub struct DpoArgs {
    /// The policy's model directory (config.json, tokenizer.json, model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// The reference model directory; defaults to --model.
    #[arg(long = "ref")]
    pub reference: Option<PathBuf>,
    /// JSONL of preference pairs; for kto, of rated responses {"prompt","completion","label"}
    /// (pairs are unpaired as TRL does).
    #[arg(long)]
    pub data: PathBuf,
    /// dpo (with the reference), the reference-free cpo (also SimPO, AlphaPO) or orpo, or kto
    /// (rated responses, with the reference).
    #[arg(long, default_value = "dpo")]
    pub trainer: Trainer,
    #[arg(long, default_value_t = DpoConfig::default().beta)]
    pub beta: f64,
    /// DPO: one of TRL's loss types, or several separated by commas (summed with
    /// --loss-weights): sigmoid, hinge, ipo, exo_pair, nca_pair, robust, bco_pair, sppo_hard,
    /// aot, aot_unpaired, apo_zero, apo_down, discopop, sft, sigmoid_norm. CPO: sigmoid, hinge,
    /// ipo, simpo or alphapo (simpo without the NLL term, as TRL). KTO: kto or
    /// apo_zero_unpaired. Defaults to sigmoid (kto for KTO).
    #[arg(long, value_delimiter = ',')]
    pub loss: Vec<String>,
    /// A weight per loss type (1 each by default), e.g. MPO: --loss sigmoid,bco_pair,sft
    /// --loss-weights 0.8,0.2,1.0.
    #[arg(long, value_delimiter = ',')]
    pub loss_weights: Option<Vec<f64>>,
    /// Robust DPO's flip probability; EXO's and AOT's ε.
    #[arg(long, default_value_t = DpoConfig::default().label_smoothing)]
    pub label_smoothing: f64,
    /// reverse_kl (DPO), forward_kl, js_divergence or alpha_divergence (f-DPO).
    #[arg(long, default_value_t = DpoConfig::default().f_divergence_type)]
    pub f_divergence: FDivergence,
    /// The α of alpha_divergence.
    #[arg(long, default_value_t = DpoConfig::default().f_alpha_divergence_coef)]
    pub f_alpha: f64,
    /// DiscoPOP's τ.
    #[arg(long, default_value_t = DpoConfig::default().discopop_tau)]
    pub discopop_tau: f64,
    /// WPO: weigh each pair by the policy's length-normalised probability of both responses.
    #[arg(long)]
    pub use_weighting: bool,
    /// LD-DPO: tokens beyond the pair's shared length count this much (0 to 1).
    #[arg(long)]
    pub ld_alpha: Option<f64>,
    /// SimPO's target margin γ (CPO).
    #[arg(long, default_value_t = CpoConfig::default().simpo_gamma)]
    pub simpo_gamma: f64,
    /// Weight of CPO's NLL term.
    #[arg(long, default_value_t = CpoConfig::default().cpo_alpha)]
    pub cpo_alpha: f64,
    /// AlphaPO's reward shape α (CPO); 0 is CPO's.
    #[arg(long, default_value_t = CpoConfig::default().alpha)]
    pub alpha: f64,
    /// KTO: the weight of the desirable rows' losses.
    #[arg(long, default_value_t = KtoConfig::default().desirable_weight)]
    pub desirable_weight: f64,
    /// KTO: the weight of the undesirable rows' losses.
    #[arg(long, default_value_t = KtoConfig::default().undesirable_weight)]
    pub undesirable_weight: f64,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = TrainConfig::default().max_length)]
    pub max_length: usize,
    #[command(flatten)]
    pub lora: LoraArgs,
}

/// The optimiser and the passes over the data, for `train` and `export-trl`.
#[derive(Args)]
pub struct OptimiserArgs {
    /// AdamW's learning rate.
    #[arg(long, default_value_t = Optim::AdamW.default_learning_rate())]
    pub lr: f64,
    #[arg(long, default_value_t = TrainConfig::default().weight_decay)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = TrainConfig::default().max_grad_norm)]
    pub max_grad_norm: f64,
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
}

impl OptimiserArgs {
    /// `train` with AdamW at these settings, as TRL's trainers (the app's SGD default is tuned
    /// for single picks).
    pub fn apply(&self, train: TrainConfig) -> TrainConfig {
        TrainConfig {
            learning_rate: self.lr,
            optim: Optim::AdamW,
            weight_decay: self.weight_decay,
            max_grad_norm: self.max_grad_norm,
            ..train
        }
    }
}

#[derive(Args)]
pub struct LoraArgs {
    /// Train LoRA adapters only: "r,alpha" on the attention projections, or
    /// "r,alpha,all-linear". The reference is the model without adapters.
    #[arg(long)]
    pub lora: Option<String>,
    /// A PEFT adapter directory (adapter_config.json, adapter_model.safetensors) to put on
    /// the model: evaluated, sampled from, or trained further.
    #[arg(long, conflicts_with = "lora")]
    pub adapter: Option<PathBuf>,
}

impl LoraArgs {
    /// The model with the adapters asked for, and their settings (`None`: no LoRA).
    pub fn apply(&self, model: CausalLm) -> Result<(CausalLm, Option<LoraConfig>)> {
        if let Some(spec) = &self.lora {
            let config = LoraConfig::parse(spec, model.arch())?;
            return Ok((config.apply(model, 0)?, Some(config)));
        }
        let Some(adapter) = &self.adapter else {
            return Ok((model, None));
        };
        let read = |file: &str| {
            std::fs::read(adapter.join(file)).map_err(|e| Error::io(adapter.join(file), e))
        };
        let config_json = String::from_utf8_lossy(&read("adapter_config.json")?).into_owned();
        let file = adapter
            .join("adapter_model.safetensors")
            .display()
            .to_string();
        let (model, config) = from_peft(
            model,
            &config_json,
            &read("adapter_model.safetensors")?,
            &file,
        )?;
        Ok((model, Some(config)))
    }
}

/// The data, tokenised: pairs, or rated responses for KTO.
pub enum Rows {
    Pairs(Vec<TokenizedPair>),
    Ratings(Vec<TokenizedRating>),
}

impl Rows {
    pub fn len(&self) -> usize {
        match self {
            Rows::Pairs(p) => p.len(),
            Rows::Ratings(r) => r.len(),
        }
    }
}

/// Policy, reference, tokenizer and tokenised data: what `train` and `eval` work on.
pub struct Setup {
    pub dir: ModelDir,
    pub policy: CausalLm,
    pub reference: Option<CausalLm>,
    pub lora: Option<LoraConfig>,
    pub tokenizer: TextTokenizer,
    pub rows: Rows,
    /// The objective's settings and the length; the rest is the command's.
    pub train: TrainConfig,
}

/// The objective the arguments ask for, with TRL's defaults for what they leave out.
fn objective(a: &DpoArgs) -> Result<TrainConfig> {
    let mut train = TrainConfig {
        trainer: a.trainer,
        max_length: a.max_length,
        ..TrainConfig::default()
    };
    let one_loss = |default: &'static str| match a.loss.as_slice() {
        [] => Ok(default),
        [loss] => Ok(loss.as_str()),
        _ => Err(Error::Setting(format!(
            "--trainer {} takes one --loss, got {:?}",
            a.trainer, a.loss
        ))),
    };
    match a.trainer {
        Trainer::Dpo => {
            let losses = match a.loss.as_slice() {
                [] => vec![DpoConfig::default().loss_type[0]],
                names => names.iter().map(|l| l.parse()).collect::<Result<_>>()?,
            };
            train.dpo = DpoConfig {
                beta: a.beta,
                loss_type: losses,
                loss_weights: a.loss_weights.clone(),
                label_smoothing: a.label_smoothing,
                f_divergence_type: a.f_divergence,
                f_alpha_divergence_coef: a.f_alpha,
                discopop_tau: a.discopop_tau,
                use_weighting: a.use_weighting,
                ld_alpha: a.ld_alpha,
            }
        }
        Trainer::Cpo => {
            let (loss_type, cpo_alpha) = match one_loss("sigmoid")? {
                "alphapo" => (CpoLoss::Simpo, 0.0),
                loss => (loss.parse()?, a.cpo_alpha),
            };
            train.cpo = CpoConfig {
                beta: a.beta,
                loss_type,
                label_smoothing: a.label_smoothing,
                simpo_gamma: a.simpo_gamma,
                cpo_alpha,
                alpha: a.alpha,
            }
        }
        Trainer::Orpo => train.orpo = OrpoConfig { beta: a.beta },
        Trainer::Kto => {
            train.kto = KtoConfig {
                beta: a.beta,
                loss_type: one_loss("kto")?.parse()?,
                desirable_weight: a.desirable_weight,
                undesirable_weight: a.undesirable_weight,
            };
            train.kto.check_batch(a.batch_size)?;
        }
    }
    train.validate()?;
    Ok(train)
}

pub fn setup(a: &DpoArgs, device: &ComputeDevice) -> Result<Setup> {
    let train = objective(a)?;
    if a.reference.is_some() && !a.trainer.needs_reference() {
        return Err(Error::Setting(format!(
            "--trainer {} is reference-free; drop --ref",
            a.trainer
        )));
    }
    if a.batch_size == 0 {
        return Err(Error::Setting("--batch-size must be at least 1".into()));
    }
    if a.reference.is_some() && (a.lora.lora.is_some() || a.lora.adapter.is_some()) {
        return Err(Error::Setting(
            "with LoRA the reference is the model without its adapters; drop --ref".into(),
        ));
    }
    let text = std::fs::read_to_string(&a.data).map_err(|e| Error::io(&a.data, e))?;
    let file = a.data.display().to_string();
    let policy = ModelDir::load(&a.model, &device.device)?;
    let reference = match &a.reference {
        Some(dir) => {
            let r = ModelDir::load(dir, &device.device)?;
            if r.config.vocab_size != policy.config.vocab_size {
                return Err(Error::Config(format!(
                    "reference vocab_size {} differs from the policy's {}",
                    r.config.vocab_size, policy.config.vocab_size
                )));
            }
            Some(r.model)
        }
        None => None,
    };
    let tokenizer = policy.tokenizer()?;
    let at_line = |i: usize| {
        let file = file.clone();
        move |e: Error| Error::Data {
            file,
            line: i + 1,
            msg: e.to_string(),
        }
    };
    let rows = if a.trainer.unpaired() {
        let rated = parse_ratings(&text, &file)?;
        Rows::Ratings(
            rated
                .iter()
                .enumerate()
                .map(|(i, r)| TokenizedRating::new(&tokenizer, r).map_err(at_line(i)))
                .collect::<Result<_>>()?,
        )
    } else {
        let pairs = parse_jsonl(&text, &file)?;
        Rows::Pairs(
            pairs
                .iter()
                .enumerate()
                .map(|(i, p)| TokenizedPair::new(&tokenizer, p, a.trainer).map_err(at_line(i)))
                .collect::<Result<_>>()?,
        )
    };
    let (model, lora) = a.lora.apply(policy.model.clone())?;
    Ok(Setup {
        dir: policy,
        policy: model,
        reference,
        lora,
        tokenizer,
        rows,
        train,
    })
}
