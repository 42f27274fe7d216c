//! `webdpo simulate`: a simulated user who prefers one attribute picks pairs and the policy
//! updates with DPO; the rates and KL as a table, CSV and SVG.

use std::path::PathBuf;

use webdpo::storyworld::report;
use webdpo::storyworld::simulate::{Attribute, PAIRS_PER_PICK, simulate};
use webdpo::{
    ComputeDevice, DpoConfig, DpoTrainer, LossType, ModelDir, Optim, Result, SamplingConfig,
    TrainConfig, block_on,
};

use crate::output::write_file;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
    /// happy, on_topic, long or kind.
    #[arg(long, default_value = "happy")]
    attribute: String,
    #[arg(long, default_value_t = 30)]
    picks: usize,
    #[arg(long, default_value_t = 5)]
    eval_every: usize,
    #[arg(long, default_value_t = 64)]
    eval_samples: usize,
    /// Defaults to the app's (TrainConfig::default()).
    #[arg(long)]
    beta: Option<f64>,
    /// Defaults to the app's.
    #[arg(long)]
    lr: Option<f64>,
    /// Updates per pick; defaults to the app's.
    #[arg(long)]
    steps: Option<usize>,
    /// Picks per update batch (the new one and recent ones); defaults to the app's.
    #[arg(long)]
    replay: Option<usize>,
    /// RPO: adds TRL 1.16's `sft` loss (the chosen tokens' NLL) with this weight to the loss.
    #[arg(long)]
    rpo_alpha: Option<f64>,
    /// AdamW epsilon; defaults to the app's.
    #[arg(long)]
    adam_epsilon: Option<f64>,
    /// adamw or sgd; defaults to the app's.
    #[arg(long)]
    optim: Option<Optim>,
    /// SGD momentum; defaults to the app's.
    #[arg(long)]
    momentum: Option<f64>,
    #[arg(long, default_value_t = 160)]
    max_new_tokens: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the table as CSV here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write a plot of rate and KL against picks here (SVG).
    #[arg(long)]
    svg: Option<PathBuf>,
}

pub fn run(a: Args, device: &ComputeDevice) -> Result<()> {
    let attribute = Attribute::parse(&a.attribute)?;
    let dir = ModelDir::load(&a.model, &device.device)?;
    let tokenizer = dir.tokenizer()?;
    let app = TrainConfig::default();
    let mut dpo = DpoConfig {
        beta: a.beta.unwrap_or(app.dpo.beta),
        ..app.dpo.clone()
    };
    if let Some(alpha) = a.rpo_alpha.filter(|&a| a > 0.0) {
        dpo.loss_weights = Some(
            vec![1.0; dpo.loss_type.len()]
                .into_iter()
                .chain([alpha])
                .collect(),
        );
        dpo.loss_type.push(LossType::Sft);
    }
    let config = TrainConfig {
        dpo,
        learning_rate: a.lr.unwrap_or(app.learning_rate),
        steps_per_pair: a.steps.unwrap_or(app.steps_per_pair),
        replay_pairs: a.replay.unwrap_or(app.replay_pairs),
        adam_epsilon: a.adam_epsilon.unwrap_or(app.adam_epsilon),
        optim: a.optim.unwrap_or(app.optim),
        momentum: a.momentum.unwrap_or(app.momentum),
        ..app
    };
    eprintln!(
        "{:?}, beta {}, lr {}, {} update(s) per pick on up to {} picks, losses {:?}",
        config.optim,
        config.dpo.beta,
        config.learning_rate,
        config.steps_per_pair,
        config.replay_pairs,
        config.dpo.loss_type
    );
    let mut trainer = DpoTrainer::new(dir.model, None, config, &device.device)?;
    let sampling = SamplingConfig {
        max_new_tokens: a.max_new_tokens,
        ..SamplingConfig::default()
    };
    println!(
        "{:>6} {:>8} {:>12} {:>14} {:>8} {:>8}",
        "picks",
        attribute.name(),
        "well_formed",
        "kl ± se",
        "loss",
        "margin"
    );
    let points = block_on(simulate(
        &mut trainer,
        &tokenizer,
        attribute,
        a.picks,
        a.eval_every,
        a.eval_samples,
        &sampling,
        a.seed,
        |p| {
            let kl = format!("{:.3} ± {:.3}", p.kl, p.kl_stderr);
            println!(
                "{:>6} {:>8.3} {:>12.3} {:>14} {:>8.4} {:>8.4}",
                p.picks, p.rate, p.well_formed, kl, p.loss, p.margin
            );
        },
    ))?;
    let reached = points.iter().find(|p| p.rate >= 0.9);
    let last = points
        .last()
        .expect("the first measurement is made before any pick");
    if last.picks < a.picks {
        eprintln!(
            "stopped after {} picks: in {} pairs too few differed in {} to pick from",
            last.picks,
            PAIRS_PER_PICK * a.picks,
            attribute.name()
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "attribute": attribute.name(), "seed": a.seed, "base_rate": points[0].rate,
            "picks_to_90": reached.map(|p| p.picks), "kl_at_90": reached.map(|p| p.kl),
            "well_formed_at_90": reached.map(|p| p.well_formed),
            "picks": last.picks, "final_rate": last.rate, "final_kl": last.kl,
        })
    );
    if let Some(path) = &a.csv {
        write_file(path, report::csv(&points, attribute.name()).as_bytes())?;
    }
    if let Some(path) = &a.svg {
        write_file(path, report::svg(&points, attribute.name()).as_bytes())?;
    }
    Ok(())
}
