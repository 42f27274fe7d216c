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

    use burn::module::Module;
    use clap::{Args, Parser, Subcommand, ValueEnum};
    use indicatif::{ProgressBar, ProgressStyle};
    use webdpo::adapter::{LoraConfig, from_peft, to_peft};
    use webdpo::bench::{BenchConfig, BenchReport};
    use webdpo::checkpoint::{Dtype, to_safetensors};
    use webdpo::data::{PreferencePair, parse_jsonl};
    use webdpo::dpo::{DpoConfig, LossType, PairValues};
    use webdpo::generate::{SamplingConfig, generate};
    use webdpo::logps::TokenizedPair;
    use webdpo::memory::MemoryEstimate;
    use webdpo::model::CausalLm;
    use webdpo::model_dir::ModelDir;
    use webdpo::optimizer::Optim;
    use webdpo::pretrain::{PretrainConfig, PretrainState, Pretrainer, batch_indices, batch_of};
    use webdpo::storyworld::oracle::Oracle;
    use webdpo::storyworld::simulate::{
        Attribute, PAIRS_PER_PICK, Rates, SimulationPoint, sample_stories, simulate,
    };
    use webdpo::storyworld::{Example, StoryWorld, format_prompt};
    use webdpo::tokenizer::{TextTokenizer, byte_level_tokenizer_json, train_byte_level_bpe};
    use webdpo::trainer::{DpoTrainer, TrainConfig};
    use webdpo::{ComputeDevice, Error, ModelConfig, Result, block_on};

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
        /// Generate the story-world corpus, train its tokenizer and pretrain a model on it.
        Pretrain(PretrainArgs),
        /// Sample stories and report the oracle's rates (well-formed and each attribute).
        Judge(JudgeArgs),
        /// A simulated user who prefers one attribute, picking pairs and updating with DPO.
        Simulate(SimulateArgs),
        /// Re-save a model's weights in another precision (f16 halves the app's download).
        Convert(ConvertArgs),
        /// Time one DPO update (by stage) and sampling with and without the KV cache; JSON out.
        Bench(BenchArgs),
    }

    #[derive(Args)]
    struct BenchArgs {
        #[arg(long, default_value = "www/models/storyworld")]
        model: PathBuf,
        /// Also write the JSON report here (it is always printed).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = BenchConfig::default().warmup)]
        warmup: usize,
        #[arg(long, default_value_t = BenchConfig::default().runs)]
        runs: usize,
        #[arg(long, default_value_t = BenchConfig::default().recompute_runs)]
        recompute_runs: usize,
        #[arg(long, default_value_t = BenchConfig::default().completion_tokens)]
        completion_tokens: usize,
        #[arg(long, default_value_t = BenchConfig::default().new_tokens)]
        new_tokens: usize,
        /// The optimizer of the timed update (the app's default is SGD with momentum).
        #[arg(long, default_value = "sgd")]
        optim: Optim,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    }

    #[derive(Args)]
    struct ConvertArgs {
        /// Model directory to read.
        #[arg(long)]
        model: PathBuf,
        /// The safetensors file to write (may be the model's own model.safetensors).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = Dtype::F16)]
        dtype: Dtype,
    }

    #[derive(Args)]
    struct PretrainArgs {
        /// Model directory to write (and to resume from with --resume).
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        resume: bool,
        #[arg(long, default_value_t = 40_000)]
        stories: usize,
        #[arg(long, default_value_t = 1024)]
        vocab_size: usize,
        #[arg(long, default_value_t = 128)]
        hidden_size: usize,
        #[arg(long, default_value_t = 4)]
        layers: usize,
        #[arg(long, default_value_t = 4)]
        heads: usize,
        #[arg(long, default_value_t = 4)]
        kv_heads: usize,
        #[arg(long, default_value_t = 384)]
        intermediate_size: usize,
        #[arg(long, default_value_t = 192)]
        context: usize,
        #[arg(long, default_value_t = 2000)]
        steps: usize,
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        #[arg(long, default_value_t = 3e-3)]
        lr: f64,
        #[arg(long, default_value_t = 100)]
        warmup: usize,
        /// AdamW's decoupled weight decay (applied to every tensor, as one torch parameter group).
        /// Off by default: on the story world it limited the logits' scale and left stray tokens.
        #[arg(long, default_value_t = 0.0)]
        weight_decay: f64,
        #[arg(long, default_value_t = 250)]
        eval_every: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    }

    #[derive(Args)]
    struct JudgeArgs {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value_t = 200)]
        samples: usize,
        #[arg(long, default_value_t = 1.0)]
        temperature: f64,
        #[arg(long, default_value_t = 160)]
        max_new_tokens: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    }

    #[derive(Args)]
    struct SimulateArgs {
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
        /// Weight of the NLL-of-chosen term (TRL's rpo_alpha); defaults to the app's.
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
        #[arg(long, default_value_t = DpoConfig::default().beta)]
        beta: f64,
        /// sigmoid, ipo, hinge or robust.
        #[arg(long, default_value_t = DpoConfig::default().loss_type)]
        loss: LossType,
        #[arg(long, default_value_t = DpoConfig::default().label_smoothing)]
        label_smoothing: f64,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        #[arg(long, default_value_t = TrainConfig::default().max_length)]
        max_length: usize,
        #[command(flatten)]
        lora: LoraArgs,
    }

    #[derive(Args)]
    struct LoraArgs {
        /// Train LoRA adapters only: "r,alpha" on the attention projections, or
        /// "r,alpha,all-linear". The reference is the model without adapters.
        #[arg(long)]
        lora: Option<String>,
        /// A PEFT adapter directory (adapter_config.json, adapter_model.safetensors) to put on
        /// the model: evaluated, sampled from, or trained further.
        #[arg(long, conflicts_with = "lora")]
        adapter: Option<PathBuf>,
    }

    impl LoraArgs {
        /// The model with the adapters asked for, and their settings (`None`: no LoRA).
        fn apply(&self, model: CausalLm) -> Result<(CausalLm, Option<LoraConfig>)> {
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

    #[derive(Args)]
    struct TrainArgs {
        #[command(flatten)]
        dpo: DpoArgs,
        /// Output model directory (replaced only when training succeeds).
        #[arg(long)]
        out: PathBuf,
        /// AdamW's learning rate.
        #[arg(long, default_value_t = Optim::AdamW.default_learning_rate())]
        lr: f64,
        #[arg(long, default_value_t = TrainConfig::default().weight_decay)]
        weight_decay: f64,
        #[arg(long, default_value_t = TrainConfig::default().max_grad_norm)]
        max_grad_norm: f64,
        /// Updates per batch.
        #[arg(long, default_value_t = TrainConfig::default().steps_per_pair)]
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
        #[arg(long, default_value_t = SamplingConfig::default().temperature)]
        temperature: f64,
        #[arg(long, default_value_t = SamplingConfig::default().top_k)]
        top_k: usize,
        #[arg(long, default_value_t = SamplingConfig::default().top_p)]
        top_p: f64,
        #[arg(long, default_value_t = SamplingConfig::default().max_new_tokens)]
        max_new_tokens: usize,
        #[arg(long, default_value_t = SamplingConfig::default().seed)]
        seed: u64,
        #[command(flatten)]
        lora: LoraArgs,
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
            Command::Pretrain(a) => pretrain(a, &device),
            Command::Judge(a) => judge(a, &device),
            Command::Simulate(a) => simulate_cmd(a, &device),
            Command::Convert(a) => convert(a, &device),
            Command::Bench(a) => bench(a, &device),
        }
    }

    #[cfg(feature = "wgpu")]
    fn wgpu_device() -> Result<ComputeDevice> {
        block_on(ComputeDevice::gpu())
    }

    #[cfg(not(feature = "wgpu"))]
    fn wgpu_device() -> Result<ComputeDevice> {
        Err(Error::Device(
            "this binary was built without wgpu; rebuild with \
             `cargo build --release --features wgpu`"
                .into(),
        ))
    }

    fn init(a: InitArgs, device: &ComputeDevice) -> Result<()> {
        let mut config =
            ModelConfig::byte_level(a.hidden_size, a.layers, a.heads, a.intermediate_size);
        config.num_key_value_heads = Some(a.kv_heads);
        config.max_position_embeddings = a.context;
        config.tie_word_embeddings = a.tie_embeddings;
        let model = CausalLm::init(&config, a.seed, &device.device)?;
        let dir = ModelDir::new(config, byte_level_tokenizer_json().into_bytes(), model);
        block_on(dir.save(&dir.model, &a.out))?;
        eprintln!(
            "wrote {} ({} parameters)",
            a.out.display(),
            dir.model.num_params()
        );
        Ok(())
    }

    fn progress(len: usize, what: &str) -> ProgressBar {
        let bar = ProgressBar::new(len as u64).with_message(what.to_string());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} pairs, {elapsed} (eta {eta}) {prefix}",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        bar
    }

    fn read_pairs(path: &Path) -> Result<Vec<PreferencePair>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        parse_jsonl(&text, &path.display().to_string())
    }

    /// Policy, reference, tokenizer and tokenised pairs for `train` and `eval`.
    /// What `train` and `eval` work on.
    struct Setup {
        dir: ModelDir,
        policy: CausalLm,
        reference: Option<CausalLm>,
        lora: Option<LoraConfig>,
        tokenizer: TextTokenizer,
        pairs: Vec<TokenizedPair>,
        dpo: DpoConfig,
    }

    fn setup(a: &DpoArgs, device: &ComputeDevice) -> Result<Setup> {
        let dpo = DpoConfig {
            beta: a.beta,
            loss_type: a.loss,
            label_smoothing: a.label_smoothing,
        };
        dpo.validate()?;
        if a.batch_size == 0 {
            return Err(Error::Setting("--batch-size must be at least 1".into()));
        }
        if a.reference.is_some() && (a.lora.lora.is_some() || a.lora.adapter.is_some()) {
            return Err(Error::Setting(
                "with LoRA the reference is the model without its adapters; drop --ref".into(),
            ));
        }
        let pairs = read_pairs(&a.data)?;
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
        let file = a.data.display().to_string();
        let tokenized = pairs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                TokenizedPair::new(&tokenizer, p).map_err(|e| Error::Data {
                    file: file.clone(),
                    line: i + 1,
                    msg: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (model, lora) = a.lora.apply(policy.model.clone())?;
        Ok(Setup {
            dir: policy,
            policy: model,
            reference,
            lora,
            tokenizer,
            pairs: tokenized,
            dpo,
        })
    }

    fn train(a: TrainArgs, device: &ComputeDevice) -> Result<()> {
        let Setup {
            dir,
            policy,
            reference,
            lora,
            tokenizer,
            pairs,
            dpo,
        } = setup(&a.dpo, device)?;
        // AdamW, as TRL's DPOTrainer (the app's SGD default is tuned for single picks).
        let config = TrainConfig {
            dpo,
            learning_rate: a.lr,
            optim: Optim::AdamW,
            weight_decay: a.weight_decay,
            max_grad_norm: a.max_grad_norm,
            steps_per_pair: a.steps,
            max_length: a.dpo.max_length,
            ..TrainConfig::default()
        };
        let mut trainer = DpoTrainer::new(policy, reference, config, &device.device)?;
        let bar = progress(pairs.len() * a.epochs, "train");
        let mut skipped = 0;
        for _ in 0..a.epochs {
            for chunk in pairs.chunks(a.dpo.batch_size) {
                let batch = block_on(trainer.prepare(chunk, tokenizer.pad_id()))?;
                for report in block_on(trainer.train_batch(&batch))? {
                    if let Some(why) = &report.skipped {
                        skipped += 1;
                        bar.suspend(|| eprintln!("warning: {why}"));
                    }
                    bar.set_prefix(format!(
                        "loss {:.4} margin {:.4}",
                        report.metrics.loss, report.metrics.rewards_margins
                    ));
                }
                bar.inc(chunk.len() as u64);
            }
        }
        bar.finish();
        // The full weights (adapters merged), and with LoRA the adapter alone in PEFT's format.
        block_on(dir.save(&trainer.policy(), &a.out))?;
        if let Some(lora) = &lora {
            let (config_json, weights) = block_on(to_peft(&trainer.policy(), lora))?;
            let adapter = a.out.join("adapter");
            std::fs::create_dir_all(&adapter).map_err(|e| Error::io(&adapter, e))?;
            write_file(&adapter.join("adapter_config.json"), config_json.as_bytes())?;
            write_file(&adapter.join("adapter_model.safetensors"), &weights)?;
        }
        eprintln!("wrote {} ({skipped} updates skipped)", a.out.display());
        Ok(())
    }

    fn eval(a: EvalArgs, device: &ComputeDevice) -> Result<()> {
        let Setup {
            policy,
            reference,
            tokenizer,
            pairs,
            dpo,
            ..
        } = setup(&a.dpo, device)?;
        let config = TrainConfig {
            dpo,
            max_length: a.dpo.max_length,
            ..TrainConfig::default()
        };
        let trainer = DpoTrainer::new(policy, reference, config, &device.device)?;
        let bar = progress(pairs.len(), "eval");
        let mut all: Option<PairValues> = None;
        for chunk in pairs.chunks(a.dpo.batch_size) {
            let values = block_on(async {
                trainer
                    .evaluate(&trainer.prepare(chunk, tokenizer.pad_id()).await?)
                    .await
            })?;
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
                    "policy_chosen_logps": all.policy_chosen[i],
                    "policy_rejected_logps": all.policy_rejected[i],
                    "reference_chosen_logps": all.reference_chosen[i],
                    "reference_rejected_logps": all.reference_rejected[i],
                });
                println!("{line}");
            }
        } else {
            println!(
                "{}",
                serde_json::to_string(&all.metrics()).expect("metrics serialise")
            );
        }
        Ok(())
    }

    fn generate_cmd(a: GenerateArgs, device: &ComputeDevice) -> Result<()> {
        let dir = ModelDir::load(&a.model, &device.device)?;
        let tokenizer = dir.tokenizer()?;
        let prompt = tokenizer.encode_prompt(&a.prompt)?;
        let config = SamplingConfig {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            max_new_tokens: a.max_new_tokens,
            seed: a.seed,
        };
        let (model, _) = a.lora.apply(dir.model.clone())?;
        let samples = block_on(generate(
            model,
            &prompt,
            a.n,
            config,
            tokenizer.eos_id(),
            &device.device,
        ))?;
        for ids in samples {
            println!(
                "{}",
                serde_json::json!({ "prompt": a.prompt, "completion": tokenizer.decode(&ids)? })
            );
        }
        Ok(())
    }

    fn convert(a: ConvertArgs, device: &ComputeDevice) -> Result<()> {
        let dir = ModelDir::load(&a.model, &device.device)?;
        let bytes = block_on(to_safetensors(&dir.model, a.dtype))?;
        // Written beside the target and renamed over it: a failure leaves the old file intact.
        let partial = a.out.with_extension("safetensors.partial");
        write_file(&partial, &bytes)?;
        std::fs::rename(&partial, &a.out).map_err(|e| Error::io(&a.out, e))?;
        eprintln!("wrote {} ({} bytes)", a.out.display(), bytes.len());
        Ok(())
    }

    fn bench(a: BenchArgs, device: &ComputeDevice) -> Result<()> {
        let dir = ModelDir::load(&a.model, &device.device)?;
        let pad_id = dir.tokenizer()?.pad_id();
        let config = BenchConfig {
            warmup: a.warmup,
            runs: a.runs,
            completion_tokens: a.completion_tokens,
            new_tokens: a.new_tokens,
            recompute_runs: a.recompute_runs,
            seed: a.seed,
            ..BenchConfig::default()
        };
        let train = TrainConfig {
            optim: a.optim,
            learning_rate: a.optim.default_learning_rate(),
            ..TrainConfig::default()
        };
        eprintln!(
            "benchmarking {} ({} parameters) on {}",
            a.model.display(),
            dir.model.num_params(),
            device.description
        );
        reset_peak_rss();
        let mut update_peak = None;
        let report = block_on(BenchReport::run(
            dir.model,
            dir.config.clone(),
            train,
            pad_id,
            config.clone(),
            device,
            || {
                update_peak = peak_rss();
                reset_peak_rss();
            },
        ))?;
        let mut json = serde_json::to_value(&report).unwrap();
        json["model"] = serde_json::json!(a.model);
        // Peak resident memory of the process during each phase (model and runtime included),
        // beside what the browser's memory check estimates for the same update.
        json["peak_rss_bytes"] =
            serde_json::json!({"update": update_peak, "generation": peak_rss()});
        json["memory_estimate"] = serde_json::to_value(MemoryEstimate::new(
            &dir.config,
            None,
            a.optim,
            1,
            config.prompt_tokens + config.completion_tokens,
        ))
        .unwrap();
        let text = serde_json::to_string_pretty(&json).unwrap();
        if let Some(out) = &a.out {
            write_file(out, text.as_bytes())?;
        }
        println!("{text}");
        Ok(())
    }

    /// Restarts the kernel's peak-RSS counter (Linux; elsewhere peaks are not reported).
    fn reset_peak_rss() {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }

    /// The process's peak resident set since the last reset, in bytes (`VmHWM`).
    fn peak_rss() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(kb * 1024)
    }

    fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
        std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
    }

    /// Tokenised (prompt, story) rows of a story-world corpus.
    fn corpus_rows(
        tokenizer: &TextTokenizer,
        examples: &[Example],
    ) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
        examples
            .iter()
            .map(|e| {
                Ok((
                    tokenizer.encode_prompt(&format_prompt(&e.prompt))?,
                    tokenizer.encode_completion(&e.story)?,
                ))
            })
            .collect()
    }

    fn pretrain(a: PretrainArgs, device: &ComputeDevice) -> Result<()> {
        let started = std::time::Instant::now();
        let mut world = StoryWorld::new(a.seed);
        let train: Vec<Example> = (0..a.stories).map(|_| world.example()).collect();
        let val: Vec<Example> = (0..512).map(|_| world.example()).collect();
        let state_path = a.out.join("trainer_state.json");
        let (dir, state) = if a.resume {
            let dir = ModelDir::load(&a.out, &device.device)?;
            let state: PretrainState = serde_json::from_slice(
                &std::fs::read(&state_path).map_err(|e| Error::io(&state_path, e))?,
            )
            .map_err(|e| Error::checkpoint("trainer_state.json", e))?;
            (dir, Some(state))
        } else {
            eprintln!(
                "training a {}-token byte-level BPE on {} stories",
                a.vocab_size, a.stories
            );
            let texts: Vec<String> = train
                .iter()
                .flat_map(|e| [format_prompt(&e.prompt), e.story.clone()])
                .collect();
            let tokenizer_json = train_byte_level_bpe(&texts, a.vocab_size)?;
            let mut config = ModelConfig::new(
                a.vocab_size,
                a.hidden_size,
                a.layers,
                a.heads,
                a.intermediate_size,
            );
            config.num_key_value_heads = Some(a.kv_heads);
            config.max_position_embeddings = a.context;
            config.tie_word_embeddings = true;
            (
                config.pad_token_id,
                config.bos_token_id,
                config.eos_token_id,
            ) = (Some(0), Some(1), Some(2));
            let model = CausalLm::init(&config, a.seed, &device.device)?;
            (
                ModelDir::new(config, tokenizer_json.into_bytes(), model),
                None,
            )
        };
        let tokenizer = dir.tokenizer()?;
        let (train_rows, val_rows) = (
            corpus_rows(&tokenizer, &train)?,
            corpus_rows(&tokenizer, &val)?,
        );
        let max_len = dir.config.max_position_embeddings;
        let lengths: Vec<usize> = train_rows.iter().map(|(p, c)| p.len() + c.len()).collect();
        let longest = lengths.iter().copied().max().unwrap_or(0);
        eprintln!(
            "{} parameters; longest example {longest} tokens (context {max_len})",
            dir.model.num_params()
        );
        let config = PretrainConfig {
            steps: a.steps,
            batch_size: a.batch_size,
            learning_rate: a.lr,
            warmup_steps: a.warmup,
            min_lr_ratio: 0.1,
            weight_decay: a.weight_decay,
            max_grad_norm: 1.0,
        };
        let mut trainer = Pretrainer::new(dir.model.clone(), config, &device.device);
        let mut elapsed_before = 0.0;
        if let Some(state) = &state {
            let opt_path = a.out.join("optimizer.safetensors");
            let bytes = std::fs::read(&opt_path).map_err(|e| Error::io(&opt_path, e))?;
            trainer.resume(&bytes)?;
            elapsed_before = state.wall_seconds;
            eprintln!("resuming at step {}", trainer.step);
        }
        let val_batches = val_rows
            .chunks(32)
            .map(|c| batch_of(c, tokenizer.pad_id(), max_len))
            .collect::<Result<Vec<_>>>()?;
        let bar = ProgressBar::new(a.steps as u64).with_position(trainer.step as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "pretrain [{bar:30}] {pos}/{len} steps, {elapsed} (eta {eta}) {msg}",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        let oracle = Oracle::new();
        let mut train_loss = f64::NAN;
        let mut val_loss = f64::NAN;
        while trainer.step < a.steps {
            let rows: Vec<_> = batch_indices(a.seed, trainer.step, a.batch_size, &lengths)
                .into_iter()
                .map(|i| train_rows[i].clone())
                .collect();
            let (loss, _) =
                block_on(trainer.train_step(&batch_of(&rows, tokenizer.pad_id(), max_len)?))?;
            train_loss = if train_loss.is_nan() {
                loss
            } else {
                0.95 * train_loss + 0.05 * loss
            };
            bar.set_message(format!("loss {train_loss:.3}"));
            bar.inc(1);
            if trainer.step % a.eval_every == 0 || trainer.step == a.steps {
                val_loss = block_on(trainer.eval_loss(&val_batches))?;
                let (prompt, _) = world.prompt();
                let ids = tokenizer.encode_prompt(&format_prompt(&prompt))?;
                let sampling = SamplingConfig {
                    max_new_tokens: 160,
                    seed: trainer.step as u64,
                    ..SamplingConfig::default()
                };
                let sample = block_on(generate(
                    trainer.model(),
                    &ids,
                    1,
                    sampling,
                    tokenizer.eos_id(),
                    &device.device,
                ))?;
                let story = tokenizer.decode(&sample[0])?;
                let j = oracle.judge(&prompt, &story);
                // Printed even when stderr is not a terminal (indicatif hides bars and their
                // println there).
                let step = trainer.step;
                let losses = format!("train loss {train_loss:.4}, val loss {val_loss:.4}");
                let judged = match &j.problem {
                    None => "well-formed".to_string(),
                    Some(problem) => format!("not well-formed: {problem}"),
                };
                bar.suspend(|| {
                    eprintln!("step {step}: {losses}\n  {prompt}\n  {story}\n  {judged}")
                });
                let wall = elapsed_before + started.elapsed().as_secs_f64();
                block_on(dir.save(&trainer.model(), &a.out))?;
                write_file(
                    &a.out.join("optimizer.safetensors"),
                    &block_on(trainer.optimizer_state())?,
                )?;
                let state = PretrainState {
                    step: trainer.step,
                    train_loss,
                    val_loss,
                    wall_seconds: wall,
                    config: trainer.config.clone(),
                    stories: a.stories,
                    seed: a.seed,
                };
                write_file(
                    &state_path,
                    serde_json::to_string_pretty(&state).unwrap().as_bytes(),
                )?;
            }
        }
        bar.finish();
        println!(
            "{}",
            serde_json::json!({
                "parameters": dir.model.num_params(), "steps": trainer.step,
                "train_loss": train_loss, "val_loss": val_loss,
                "wall_seconds": elapsed_before + started.elapsed().as_secs_f64(),
            })
        );
        Ok(())
    }

    fn judge(a: JudgeArgs, device: &ComputeDevice) -> Result<()> {
        let dir = ModelDir::load(&a.model, &device.device)?;
        let tokenizer = dir.tokenizer()?;
        let sampling = SamplingConfig {
            temperature: a.temperature,
            max_new_tokens: a.max_new_tokens,
            seed: a.seed,
            ..SamplingConfig::default()
        };
        let samples = block_on(sample_stories(
            &dir.model,
            &tokenizer,
            &mut StoryWorld::new(a.seed ^ 0xA11CE),
            a.samples,
            &sampling,
            &device.device,
        ))?;
        // What goes wrong, most frequent first, with one example each.
        let mut problems: std::collections::BTreeMap<&str, (usize, &str)> = Default::default();
        for s in samples.iter() {
            if let Some(problem) = &s.judgement.problem {
                problems.entry(problem.rule()).or_insert((0, &s.story)).0 += 1;
            }
        }
        let mut problems: Vec<_> = problems.into_iter().collect();
        problems.sort_by_key(|(_, (count, _))| std::cmp::Reverse(*count));
        for (problem, (count, example)) in problems {
            eprintln!("{count} × {problem}, e.g.: {example}");
        }
        println!("{}", serde_json::to_string(&Rates::of(&samples)).unwrap());
        Ok(())
    }

    fn simulate_cmd(a: SimulateArgs, device: &ComputeDevice) -> Result<()> {
        let attribute = Attribute::parse(&a.attribute)?;
        let dir = ModelDir::load(&a.model, &device.device)?;
        let tokenizer = dir.tokenizer()?;
        let app = TrainConfig::default();
        let config = TrainConfig {
            dpo: DpoConfig {
                beta: a.beta.unwrap_or(app.dpo.beta),
                ..app.dpo
            },
            learning_rate: a.lr.unwrap_or(app.learning_rate),
            steps_per_pair: a.steps.unwrap_or(app.steps_per_pair),
            replay_pairs: a.replay.unwrap_or(app.replay_pairs),
            rpo_alpha: a.rpo_alpha.unwrap_or(app.rpo_alpha),
            adam_epsilon: a.adam_epsilon.unwrap_or(app.adam_epsilon),
            optim: a.optim.unwrap_or(app.optim),
            momentum: a.momentum.unwrap_or(app.momentum),
            ..app
        };
        eprintln!(
            "{:?}, beta {}, lr {}, {} update(s) per pick on up to {} picks, rpo_alpha {}",
            config.optim,
            config.dpo.beta,
            config.learning_rate,
            config.steps_per_pair,
            config.replay_pairs,
            config.rpo_alpha
        );
        let mut trainer = DpoTrainer::new(dir.model, None, config, &device.device)?;
        let sampling = SamplingConfig {
            max_new_tokens: a.max_new_tokens,
            ..SamplingConfig::default()
        };
        println!(
            "{:>6} {:>8} {:>12} {:>8} {:>8} {:>8}",
            "picks",
            attribute.name(),
            "well_formed",
            "kl",
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
                println!(
                    "{:>6} {:>8.3} {:>12.3} {:>8.3} {:>8.4} {:>8.4}",
                    p.picks, p.rate, p.well_formed, p.kl, p.loss, p.margin
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
            let mut csv = format!("picks,{},well_formed,kl,loss,margin\n", attribute.name());
            for p in &points {
                csv += &format!(
                    "{},{},{},{},{},{}\n",
                    p.picks, p.rate, p.well_formed, p.kl, p.loss, p.margin
                );
            }
            write_file(path, csv.as_bytes())?;
        }
        if let Some(path) = &a.svg {
            write_file(path, plot_svg(&points, attribute.name()).as_bytes())?;
        }
        Ok(())
    }

    /// A two-panel line chart: attribute rate (0–1) and KL against picks.
    fn plot_svg(points: &[SimulationPoint], name: &str) -> String {
        let (w, h, pad) = (640.0, 240.0, 48.0);
        let max_x = points.last().map_or(1, |p| p.picks.max(1)) as f64;
        let max_kl = points.iter().map(|p| p.kl).fold(0.1f64, f64::max);
        let panel = |y0: f64, title: &str, ys: Vec<f64>, max_y: f64, color: &str| {
            let path: Vec<String> = points
                .iter()
                .zip(&ys)
                .map(|(p, y)| {
                    format!(
                        "{:.1},{:.1}",
                        pad + p.picks as f64 / max_x * (w - 2.0 * pad),
                        y0 + h - pad - y / max_y * (h - 2.0 * pad)
                    )
                })
                .collect();
            let line = path.join(" ");
            let (top, right, bottom, title_y) = (y0 + pad, w - pad, y0 + h - pad, y0 + 20.0);
            let (max_y_label, picks_x, picks_y) = (top + 4.0, right - 40.0, bottom + 16.0);
            format!(
                "<text x=\"{pad}\" y=\"{title_y}\" font-size=\"14\">{title}</text>\
                 <line x1=\"{pad}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" \
                 stroke=\"#888\"/>\
                 <line x1=\"{pad}\" y1=\"{top}\" x2=\"{pad}\" y2=\"{bottom}\" stroke=\"#888\"/>\
                 <text x=\"4\" y=\"{max_y_label}\" font-size=\"11\">{max_y:.2}</text>\
                 <text x=\"4\" y=\"{bottom}\" font-size=\"11\">0</text>\
                 <text x=\"{picks_x}\" y=\"{picks_y}\" font-size=\"11\">{max_x} picks</text>\
                 <polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" \
                 points=\"{line}\"/>"
            )
        };
        let height = 2.0 * h;
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" \
             font-family=\"sans-serif\">\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>{}{}</svg>\n",
            panel(
                0.0,
                &format!("rate of {name} stories"),
                points.iter().map(|p| p.rate).collect(),
                1.0,
                "#1d4ed8"
            ),
            panel(
                h,
                "KL(policy || reference), nats",
                points.iter().map(|p| p.kl).collect(),
                max_kl,
                "#b91c1c"
            )
        )
    }
}
