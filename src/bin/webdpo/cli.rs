//! The command line: the global options, one subcommand per module, and the dispatch.

use clap::{Parser, Subcommand, ValueEnum};
use webdpo::{ComputeDevice, Result};

use crate::{bench, convert, eval, export_trl, generate, init, judge, pretrain, simulate, train};

#[derive(Parser)]
#[command(
    name = "webdpo",
    version,
    about = "Direct Preference Optimization of small Llama-style models"
)]
struct Cli {
    /// Where to compute.
    #[arg(long, global = true, value_enum, default_value_t = Backend::Cpu)]
    device: Backend,
    /// CPU threads that burn's large kernels split over (0: one per core). Small kernels stay
    /// on one thread whatever this says (burn-flex's size thresholds); BENCHMARKS.md has the
    /// timings at one thread and on every core.
    #[arg(long, global = true, default_value_t = 0)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    Cpu,
    /// The default GPU through wgpu (build with `--features wgpu`).
    Wgpu,
}

#[derive(Subcommand)]
enum Command {
    /// Write a randomly initialised model directory with a byte-level tokenizer.
    Init(init::Args),
    /// DPO-train the policy on a TRL-format JSONL of {"prompt","chosen","rejected"}.
    Train(train::Args),
    /// TRL's DPO metrics of the policy against the reference on a JSONL, without updating.
    Eval(eval::Args),
    /// Sample completions of a prompt.
    Generate(generate::Args),
    /// Generate the story-world corpus, train its tokenizer and pretrain a model on it.
    Pretrain(pretrain::Args),
    /// Sample stories and report the oracle's rates (well-formed and each attribute).
    Judge(judge::Args),
    /// A simulated user who prefers one attribute, picking pairs and updating with DPO.
    Simulate(simulate::Args),
    /// Write a TRL 1.16 job (model, data, script, accelerate config) with `train`'s arguments,
    /// to train on real hardware.
    ExportTrl(export_trl::Args),
    /// Re-save a model's weights in another precision (f16 halves the app's download).
    Convert(convert::Args),
    /// Time one DPO update (by stage) and sampling with and without the KV cache; JSON out.
    Bench(bench::Args),
}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cli.threads)
        .build()
        .map_err(|e| webdpo::Error::Setting(format!("--threads {}: {e}", cli.threads)))?;
    // The command runs on one of the pool's threads, which then takes its share of each split
    // kernel: otherwise the main thread sleeps through every split and wakes after it, a third
    // thread on two cores (BENCHMARKS.md).
    pool.install(|| command(cli))
}

fn command(cli: Cli) -> Result<()> {
    let device = match cli.device {
        Backend::Cpu => ComputeDevice::cpu(),
        Backend::Wgpu => webdpo::block_on(ComputeDevice::gpu())?,
    };
    match cli.command {
        Command::Init(a) => init::run(a, &device),
        Command::Train(a) => train::run(a, &device),
        Command::Eval(a) => eval::run(a, &device),
        Command::Generate(a) => generate::run(a, &device),
        Command::Pretrain(a) => pretrain::run(a, &device),
        Command::Judge(a) => judge::run(a, &device),
        Command::Simulate(a) => simulate::run(a, &device),
        Command::ExportTrl(a) => export_trl::run(a, &device),
        Command::Convert(a) => convert::run(a, &device),
        Command::Bench(a) => bench::run(a, &device),
    }
}
