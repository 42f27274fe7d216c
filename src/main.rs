//! `webdpo`: the native command line over the same core the browser runs.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    match cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use std::path::{Path, PathBuf};

    use clap::{Args, Parser, Subcommand, ValueEnum};
    use burn::module::Module;
    use indicatif::{ProgressBar, ProgressStyle};
    use webdpo::data::{PreferencePair, parse_jsonl};
    use webdpo::dpo::{DpoConfig, LossType, PairValues};
    use webdpo::generate::{SamplingConfig, generate};
    use webdpo::logps::TokenizedPair;
    use webdpo::model::Llama;
    use webdpo::model_dir::ModelDir;
    use webdpo::tokenizer::{BYTE_LEVEL_SPECIALS, TextTokenizer, byte_level_tokenizer_json};
    use webdpo::trainer::{DpoTrainer, TrainConfig};
    use webdpo::{ComputeDevice, Error, LlamaConfig, Result, block_on};

    #[derive(Parser)]
    #[command(name = "webdpo", version, about = "Direct Preference Optimization of small Llama-style models")]
    struct Cli {
        /// Where to compute.
        #[arg(long, global = true, value_enum, default_value_t = Backend::Cpu)]
        device: Backend,
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
        Init(InitArgs),
        /// DPO-train the policy on a TRL-format JSONL of {"prompt","chosen","rejected"}.
        Train(TrainArgs),
        /// TRL's DPO metrics of the policy against the reference on a JSONL, without updating.
        Eval(EvalArgs),
        /// Sample completions of a prompt.
        Generate(GenerateArgs),
    }

    #[derive(Args)]
    struct InitArgs {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 64)]
        hidden_size: usize,
        #[arg(long, default_value_t = 2)]
        layers: usize,
        #[arg(long, default_value_t = 4)]
        heads: usize,
        #[arg(long, default_value_t = 2)]
        kv_heads: usize,
        #[arg(long, default_value_t = 128)]
        intermediate_size: usize,
        #[arg(long, default_value_t = 256)]
        context: usize,
        #[arg(long)]
        tie_embeddings: bool,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    }

    #[derive(Args)]
    struct DpoArgs {
        /// The policy's model directory (config.json, tokenizer.json, model.safetensors).
        #[arg(long)]
        model: PathBuf,
        /// The reference model directory; defaults to --model.
        #[arg(long = "ref")]
        reference: Option<PathBuf>,
        /// JSONL of preference pairs.
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 0.1)]
        beta: f64,
        #[arg(long, default_value = "sigmoid")]
        loss: String,
        #[arg(long, default_value_t = 0.0)]
        label_smoothing: f64,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        #[arg(long, default_value_t = 512)]
        max_length: usize,
    }

    #[derive(Args)]
    struct TrainArgs {
        #[command(flatten)]
        dpo: DpoArgs,
        /// Output model directory (replaced only when training succeeds).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1e-4)]
        lr: f64,
        #[arg(long, default_value_t = 0.0)]
        weight_decay: f64,
        #[arg(long, default_value_t = 1.0)]
        max_grad_norm: f64,
        /// Updates per batch.
        #[arg(long, default_value_t = 1)]
        steps: usize,
        #[arg(long, default_value_t = 1)]
        epochs: usize,
    }

    #[derive(Args)]
    struct EvalArgs {
        #[command(flatten)]
        dpo: DpoArgs,
        /// One JSON line per pair with its four sequence log-probs instead of the means.
        #[arg(long)]
        per_pair: bool,
    }

    #[derive(Args)]
    struct GenerateArgs {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        prompt: String,
        #[arg(short, long, default_value_t = 2)]
        n: usize,
        #[arg(long, default_value_t = 1.0)]
        temperature: f64,
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        #[arg(long, default_value_t = 1.0)]
        top_p: f64,
        #[arg(long, default_value_t = 64)]
        max_new_tokens: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    }

    pub fn run() -> Result<()> {
        let cli = Cli::parse();
        let device = match cli.device {
            Backend::Cpu => ComputeDevice::cpu(),
            Backend::Wgpu => wgpu_device()?,
        };
        match cli.command {
            Command::Init(a) => init(a, &device),
            Command::Train(a) => train(a, &device),
            Command::Eval(a) => eval(a, &device),
            Command::Generate(a) => generate_cmd(a, &device),
        }
    }

    #[cfg(feature = "wgpu")]
    fn wgpu_device() -> Result<ComputeDevice> {
        block_on(ComputeDevice::gpu())
    }

    #[cfg(not(feature = "wgpu"))]
    fn wgpu_device() -> Result<ComputeDevice> {
        Err(Error::Device("this binary was built without wgpu; rebuild with `cargo build --release --features wgpu`".into()))
    }

    fn init(a: InitArgs, device: &ComputeDevice) -> Result<()> {
        let vocab = BYTE_LEVEL_SPECIALS.len() + 256;
        let mut config = LlamaConfig::new(vocab, a.hidden_size, a.layers, a.heads, a.intermediate_size);
        config.num_key_value_heads = Some(a.kv_heads);
        config.max_position_embeddings = a.context;
        config.tie_word_embeddings = a.tie_embeddings;
        (config.pad_token_id, config.bos_token_id, config.eos_token_id) = (Some(0), Some(1), Some(2));
        let model = Llama::init(&config, a.seed, &device.device)?;
        let dir = ModelDir { config, tokenizer_json: byte_level_tokenizer_json().into_bytes(), model };
        block_on(dir.save(&dir.model, &a.out))?;
        eprintln!("wrote {} ({} parameters)", a.out.display(), dir.model.num_params());
        Ok(())
    }

    fn progress(len: usize, what: &str) -> ProgressBar {
        let bar = ProgressBar::new(len as u64).with_message(what.to_string());
        bar.set_style(ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} pairs, {elapsed} (eta {eta}) {prefix}").unwrap().progress_chars("=> "));
        bar
    }

    fn read_pairs(path: &Path) -> Result<Vec<PreferencePair>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        parse_jsonl(&text, &path.display().to_string())
    }

    /// Policy, reference, tokenizer and tokenised pairs for `train` and `eval`.
    fn setup(a: &DpoArgs, device: &ComputeDevice) -> Result<(ModelDir, Option<Llama>, TextTokenizer, Vec<TokenizedPair>, DpoConfig)> {
        let dpo = DpoConfig { beta: a.beta, loss_type: a.loss.parse::<LossType>()?, label_smoothing: a.label_smoothing };
        dpo.validate()?;
        if a.batch_size == 0 {
            return Err(Error::Setting("--batch-size must be at least 1".into()));
        }
        let pairs = read_pairs(&a.data)?;
        let policy = ModelDir::load(&a.model, &device.device)?;
        let reference = match &a.reference {
            Some(dir) => {
                let r = ModelDir::load(dir, &device.device)?;
                if r.config.vocab_size != policy.config.vocab_size {
                    return Err(Error::Config(format!("reference vocab_size {} differs from the policy's {}", r.config.vocab_size, policy.config.vocab_size)));
                }
                Some(r.model)
            }
            None => None,
        };
        let tokenizer = policy.tokenizer()?;
        let file = a.data.display().to_string();
        let tokenized = pairs
            .iter()
            .enumerate()
            .map(|(i, p)| TokenizedPair::new(&tokenizer, p).map_err(|e| Error::Data { file: file.clone(), line: i + 1, msg: e.to_string() }))
            .collect::<Result<Vec<_>>>()?;
        Ok((policy, reference, tokenizer, tokenized, dpo))
    }

    fn train(a: TrainArgs, device: &ComputeDevice) -> Result<()> {
        let (dir, reference, tokenizer, pairs, dpo) = setup(&a.dpo, device)?;
        let config = TrainConfig { dpo, learning_rate: a.lr, weight_decay: a.weight_decay, max_grad_norm: a.max_grad_norm, steps_per_pair: a.steps, max_length: a.dpo.max_length, ..TrainConfig::default() };
        let mut trainer = DpoTrainer::new(dir.model.clone(), reference, config, &device.device)?;
        let bar = progress(pairs.len() * a.epochs, "train");
        let mut skipped = 0;
        for _ in 0..a.epochs {
            for chunk in pairs.chunks(a.dpo.batch_size) {
                let batch = block_on(trainer.prepare(chunk, tokenizer.pad_id()))?;
                for report in block_on(trainer.train_batch(&batch))? {
                    if let Some(why) = &report.skipped {
                        skipped += 1;
                        bar.println(format!("warning: {why}"));
                    }
                    bar.set_prefix(format!("loss {:.4} margin {:.4}", report.metrics.loss, report.metrics.rewards_margins));
                }
                bar.inc(chunk.len() as u64);
            }
        }
        bar.finish();
        block_on(dir.save(&trainer.policy(), &a.out))?;
        eprintln!("wrote {} ({skipped} updates skipped)", a.out.display());
        Ok(())
    }

    fn eval(a: EvalArgs, device: &ComputeDevice) -> Result<()> {
        let (dir, reference, tokenizer, pairs, dpo) = setup(&a.dpo, device)?;
        let config = TrainConfig { dpo, max_length: a.dpo.max_length, ..TrainConfig::default() };
        let trainer = DpoTrainer::new(dir.model, reference, config, &device.device)?;
        let bar = progress(pairs.len(), "eval");
        let mut all: Option<PairValues> = None;
        for chunk in pairs.chunks(a.dpo.batch_size) {
            let values = block_on(async { trainer.evaluate(&trainer.prepare(chunk, tokenizer.pad_id()).await?).await })?;
            all = Some(match all {
                None => values,
                Some(mut acc) => {
                    acc.extend(values);
                    acc
                }
            });
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        let all = all.expect("parse_jsonl refuses empty files");
        if a.per_pair {
            for i in 0..all.losses.len() {
                let line = serde_json::json!({
                    "policy_chosen_logps": all.policy_chosen[i], "policy_rejected_logps": all.policy_rejected[i],
                    "reference_chosen_logps": all.reference_chosen[i], "reference_rejected_logps": all.reference_rejected[i],
                });
                println!("{line}");
            }
        } else {
            println!("{}", serde_json::to_string(&all.metrics()).expect("metrics serialise"));
        }
        Ok(())
    }

    fn generate_cmd(a: GenerateArgs, device: &ComputeDevice) -> Result<()> {
        let dir = ModelDir::load(&a.model, &device.device)?;
        let tokenizer = dir.tokenizer()?;
        let prompt = tokenizer.encode_prompt(&a.prompt)?;
        let config = SamplingConfig { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, max_new_tokens: a.max_new_tokens, seed: a.seed };
        let samples = block_on(generate(dir.model, &prompt, a.n, config, tokenizer.eos_id(), &device.device))?;
        for ids in samples {
            println!("{}", serde_json::json!({ "prompt": a.prompt, "completion": tokenizer.decode(&ids)? }));
        }
        Ok(())
    }
}
