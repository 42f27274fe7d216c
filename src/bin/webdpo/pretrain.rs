//! `webdpo pretrain`: the story-world corpus, its tokenizer, and a model pretrained on it,
//! resumable from its last evaluation.

use std::path::PathBuf;

use burn::module::Module;
use indicatif::{ProgressBar, ProgressStyle};
use webdpo::hf::tokenizer::train_byte_level_bpe;
use webdpo::storyworld::oracle::Oracle;
use webdpo::storyworld::{Example, StoryWorld, format_prompt};
use webdpo::train::pretrain::{batch_indices, batch_of};
use webdpo::{
    CausalLm, ComputeDevice, Error, ModelConfig, ModelDir, PretrainConfig, PretrainState,
    Pretrainer, Result, SamplingConfig, TextTokenizer, block_on, generate,
};

use crate::output::write_file;

#[derive(clap::Args)]
pub struct Args {
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

pub fn run(a: Args, device: &ComputeDevice) -> Result<()> {
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
            bar.suspend(|| eprintln!("step {step}: {losses}\n  {prompt}\n  {story}\n  {judged}"));
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
