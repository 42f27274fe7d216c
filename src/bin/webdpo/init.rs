//! `webdpo init`: a randomly initialised model directory with a byte-level tokenizer.

use std::path::PathBuf;

use burn::module::Module;
use webdpo::hf::tokenizer::byte_level_tokenizer_json;
use webdpo::{CausalLm, ComputeDevice, ModelConfig, ModelDir, Result, block_on};

#[derive(clap::Args)]
pub struct Args {
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
    /// A vocabulary larger than the byte-level tokenizer's (a real model's shape, for
    /// benchmarks: the tokenizer never produces the ids beyond its own).
    #[arg(long)]
    vocab_size: Option<usize>,
    #[arg(long)]
    tie_embeddings: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(a: Args, device: &ComputeDevice) -> Result<()> {
    let mut config = ModelConfig::byte_level(a.hidden_size, a.layers, a.heads, a.intermediate_size);
    config.num_key_value_heads = Some(a.kv_heads);
    config.max_position_embeddings = a.context;
    config.tie_word_embeddings = a.tie_embeddings;
    if let Some(vocab) = a.vocab_size {
        if vocab < config.vocab_size {
            return Err(webdpo::Error::Setting(format!(
                "--vocab-size {vocab} is smaller than the byte-level tokenizer's {}",
                config.vocab_size
            )));
        }
        config.vocab_size = vocab;
    }
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
