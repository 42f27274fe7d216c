//! `webdpo simulate`: a simulated user who prefers one attribute picks pairs and the policy
//! updates with DPO; the rates and KL as a table, CSV and SVG. With `--sweep`, fresh copies of
//! the model for each β (and each of `--losses`), drawn as rate against KL.

use std::path::PathBuf;

use webdpo::storyworld::measure::Attribute;
use webdpo::storyworld::report;
use webdpo::storyworld::simulate::{
    Baselines, PAIRS_PER_PICK, Progress, Simulation, SimulationConfig, SimulationPoint, Sweep,
    SweepConfig,
};
use webdpo::{
    ComputeDevice, DpoConfig, DpoTrainer, LossType, ModelDir, Optim, PairStyle, Result,
    SamplingConfig, TextTokenizer, TrainConfig, block_on,
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
    /// Clip the gradient norm to this (0: no clipping); defaults to the app's.
    #[arg(long)]
    max_grad_norm: Option<f64>,
    #[arg(long, default_value_t = SimulationConfig::default().sampling.max_new_tokens)]
    max_new_tokens: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How the two stories of a pair are drawn: independent, or branched (the second shares
    /// the first's start up to its most uncertain token, and differs from there).
    #[arg(long, default_value = "independent")]
    pairs: PairStyle,
    /// Write the table as CSV here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write a plot of rate and KL against picks here (SVG); with --sweep, of rate against KL.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// A fresh run for each of these β values (comma-separated; e.g. 0.05,0.1,0.5,1), plotted
    /// as rate against KL with the reference, best-of-2 sampling and the bound as baselines.
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    sweep: Option<Vec<f64>>,
    /// With --sweep: the DPO losses to sweep (comma-separated TRL loss types).
    #[arg(long, value_delimiter = ',', default_value = "sigmoid")]
    losses: Vec<LossType>,
}

pub fn run(a: Args, device: &ComputeDevice) -> Result<()> {
    let attribute = Attribute::parse(&a.attribute)?;
    let dir = ModelDir::load(&a.model, &device.device)?;
    let tokenizer = dir.tokenizer()?;
    let config = train_config(&a);
    let simulation = SimulationConfig {
        attribute,
        picks: a.picks,
        eval_every: a.eval_every,
        eval_samples: a.eval_samples,
        sampling: SamplingConfig {
            max_new_tokens: a.max_new_tokens,
            ..SimulationConfig::default().sampling
        },
        pairs: a.pairs,
        seed: a.seed,
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
    match &a.sweep {
        Some(betas) => {
            let betas = if betas.is_empty() {
                SweepConfig::default().betas
            } else {
                betas.clone()
            };
            let sweep = SweepConfig {
                betas,
                losses: a.losses.clone(),
                train: config,
                simulation,
            };
            sweep_runs(&a, dir.model, tokenizer, &sweep, device)
        }
        None => one_run(&a, dir.model, tokenizer, config, simulation, device),
    }
}

/// The app's training defaults, with the options given.
fn train_config(a: &Args) -> TrainConfig {
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
    TrainConfig {
        dpo,
        learning_rate: a.lr.unwrap_or(app.learning_rate),
        steps_per_pair: a.steps.unwrap_or(app.steps_per_pair),
        replay_pairs: a.replay.unwrap_or(app.replay_pairs),
        adam_epsilon: a.adam_epsilon.unwrap_or(app.adam_epsilon),
        optim: a.optim.unwrap_or(app.optim),
        momentum: a.momentum.unwrap_or(app.momentum),
        max_grad_norm: a.max_grad_norm.unwrap_or(app.max_grad_norm),
        ..app
    }
}

const HEADER: [&str; 6] = ["picks", "rate", "well_formed", "kl ± se", "loss", "margin"];

fn print_point(label: &str, p: &SimulationPoint) {
    let kl = format!("{:.3} ± {:.3}", p.kl, p.kl_stderr);
    println!(
        "{label}{:>6} {:>8.3} {:>12.3} {:>14} {:>8.4} {:>8.4}",
        p.picks, p.rate, p.well_formed, kl, p.loss, p.margin
    );
}

/// Where a run first reached 90 %, and where it ended, as one JSON line.
fn summary(points: &[SimulationPoint]) -> serde_json::Value {
    let reached = points.iter().find(|p| p.rate >= 0.9);
    let last = points
        .last()
        .expect("the first measurement is made before any pick");
    serde_json::json!({
        "base_rate": points[0].rate,
        "picks_to_90": reached.map(|p| p.picks), "kl_at_90": reached.map(|p| p.kl),
        "well_formed_at_90": reached.map(|p| p.well_formed),
        "picks": last.picks, "final_rate": last.rate, "final_kl": last.kl,
    })
}

fn one_run(
    a: &Args,
    model: webdpo::CausalLm,
    tokenizer: TextTokenizer,
    config: TrainConfig,
    simulation: SimulationConfig,
    device: &ComputeDevice,
) -> Result<()> {
    let attribute = simulation.attribute;
    let trainer = DpoTrainer::new(model, None, config, &device.device)?;
    println!(
        "{:>6} {:>8} {:>12} {:>14} {:>8} {:>8}",
        HEADER[0],
        attribute.name(),
        HEADER[2],
        HEADER[3],
        HEADER[4],
        HEADER[5]
    );
    let run = Simulation::new(trainer, tokenizer, simulation)?;
    let run = block_on(run.run(|p| print_point("", p)))?;
    if run.exhausted() {
        eprintln!(
            "stopped after {} picks: in {} pairs too few differed in {} to pick from",
            run.points().last().map_or(0, |p| p.picks),
            PAIRS_PER_PICK * a.picks,
            attribute.name()
        );
    }
    let mut line = summary(run.points());
    line["attribute"] = attribute.name().into();
    line["seed"] = a.seed.into();
    println!("{line}");
    if let Some(path) = &a.csv {
        write_file(path, report::csv(run.points(), attribute.name()).as_bytes())?;
    }
    if let Some(path) = &a.svg {
        write_file(path, report::svg(run.points(), attribute.name()).as_bytes())?;
    }
    Ok(())
}

fn sweep_runs(
    a: &Args,
    model: webdpo::CausalLm,
    tokenizer: TextTokenizer,
    config: &SweepConfig,
    device: &ComputeDevice,
) -> Result<()> {
    let name = config.simulation.attribute.name();
    println!(
        "{:<18}{:>6} {:>8} {:>12} {:>14} {:>8} {:>8}",
        "run", HEADER[0], name, HEADER[2], HEADER[3], HEADER[4], HEADER[5]
    );
    let mut sweep = Sweep::new(model, tokenizer, config, &device.device)?;
    while let Some(step) = block_on(sweep.step())? {
        if let Progress::Measured { point } = &step.progress {
            print_point(
                &format!("{:<18}", format!("{} β={}", step.loss, step.beta)),
                point,
            );
        }
    }
    for run in sweep.runs() {
        let mut line = summary(&run.points);
        line["attribute"] = name.into();
        line["seed"] = a.seed.into();
        line["loss"] = run.loss.to_string().into();
        line["beta"] = run.beta.into();
        println!("{line}");
    }
    if let Some(b) = Baselines::of(sweep.runs()) {
        println!("{}", serde_json::json!({ "baselines": b }));
    }
    if let Some(path) = &a.csv {
        write_file(path, report::sweep_csv(sweep.runs(), name).as_bytes())?;
    }
    if let Some(path) = &a.svg {
        write_file(path, report::sweep_svg(sweep.runs(), name).as_bytes())?;
    }
    Ok(())
}
