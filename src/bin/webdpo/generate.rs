//! `webdpo generate`: sampled completions of a prompt, one JSON line each.

use std::path::PathBuf;

use webdpo::{ComputeDevice, ModelDir, Result, SamplingConfig, block_on, generate};

use crate::dpo_args::LoraArgs;

#[derive(clap::Args)]
pub struct Args {
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

pub fn run(a: Args, device: &ComputeDevice) -> Result<()> {
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
