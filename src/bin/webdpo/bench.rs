//! `webdpo bench`: one DPO update timed by stage and sampling with and without the KV cache,
//! with the peak resident memory of each phase; JSON out.

use std::path::PathBuf;

use burn::module::Module;
use webdpo::bench::{BenchConfig, BenchReport};
use webdpo::hf::peft::to_peft;
use webdpo::{ComputeDevice, MemoryEstimate, ModelDir, Optim, Result, TrainConfig, block_on};

use crate::dpo_args::LoraArgs;
use crate::output::write_file;

#[derive(clap::Args)]
pub struct Args {
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
    #[command(flatten)]
    lora: LoraArgs,
    /// With LoRA: write the adapter the timed updates start from here, in PEFT's format
    /// (bench/torch_reference.py starts from the same adapter).
    #[arg(long, requires = "lora")]
    save_adapter: Option<PathBuf>,
}

pub fn run(a: Args, device: &ComputeDevice) -> Result<()> {
    let dir = ModelDir::load(&a.model, &device.device)?;
    let pad_id = dir.tokenizer()?.pad_id();
    let (model, lora) = a.lora.apply(dir.model.clone())?;
    if let (Some(out), Some(lora)) = (&a.save_adapter, &lora) {
        let (config_json, weights) = block_on(to_peft(&model, lora))?;
        std::fs::create_dir_all(out).map_err(|e| webdpo::Error::io(out, e))?;
        write_file(&out.join("adapter_config.json"), config_json.as_bytes())?;
        write_file(&out.join("adapter_model.safetensors"), &weights)?;
    }
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
        "benchmarking {} ({} parameters{}) on {}",
        a.model.display(),
        dir.model.num_params(),
        if lora.is_some() { ", LoRA" } else { "" },
        device.description
    );
    reset_peak_rss();
    let mut update_peak = None;
    let report = block_on(BenchReport::run(
        model,
        dir.config.clone(),
        lora.clone(),
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
    json["peak_rss_bytes"] = serde_json::json!({"update": update_peak, "generation": peak_rss()});
    json["memory_estimate"] = serde_json::to_value(MemoryEstimate::new(
        &dir.config,
        lora.as_ref(),
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
