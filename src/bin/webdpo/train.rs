//! `webdpo train`: the chosen objective on a TRL-format JSONL, written as a model directory (and
//! a PEFT adapter with LoRA).

use std::path::PathBuf;

use webdpo::hf::peft::to_peft;
use webdpo::{ComputeDevice, DpoTrainer, Error, Result, TrainConfig, block_on};

use crate::dpo_args::{DpoArgs, OptimiserArgs, Rows, Setup, setup};
use crate::output::{progress, write_file};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    dpo: DpoArgs,
    /// Output model directory (replaced only when training succeeds).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    optimiser: OptimiserArgs,
    /// Updates per batch.
    #[arg(long, default_value_t = TrainConfig::default().steps_per_pair)]
    steps: usize,
}

pub fn run(a: Args, device: &ComputeDevice) -> Result<()> {
    let Setup {
        dir,
        policy,
        reference,
        lora,
        tokenizer,
        rows,
        train,
    } = setup(&a.dpo, device)?;
    let config = TrainConfig {
        steps_per_pair: a.steps,
        ..a.optimiser.apply(train)
    };
    let mut trainer = DpoTrainer::new(policy, reference, config, &device.device)?;
    let bar = progress(rows.len() * a.optimiser.epochs, "train");
    let mut skipped = 0;
    let pad_id = tokenizer.pad_id();
    // (loss, margin, why skipped) of each update on the next batch of `size` rows.
    let mut train_chunk = |start: usize, size: usize| -> Result<Vec<(f64, f64, Option<String>)>> {
        Ok(match &rows {
            Rows::Pairs(pairs) => {
                let batch = block_on(trainer.prepare(&pairs[start..start + size], pad_id))?;
                block_on(trainer.train_batch(&batch))?
                    .into_iter()
                    .map(|r| (r.metrics.loss, r.metrics.rewards_margins, r.skipped))
                    .collect()
            }
            Rows::Ratings(ratings) => {
                let batch = block_on(trainer.prepare_rated(&ratings[start..start + size], pad_id))?;
                block_on(trainer.train_rated(&batch))?
                    .into_iter()
                    .map(|r| {
                        let margin = r.metrics.rewards_margins.unwrap_or(f64::NAN);
                        (r.metrics.loss, margin, r.skipped)
                    })
                    .collect()
            }
        })
    };
    for _ in 0..a.optimiser.epochs {
        for start in (0..rows.len()).step_by(a.dpo.batch_size) {
            let size = a.dpo.batch_size.min(rows.len() - start);
            for (loss, margin, why) in train_chunk(start, size)? {
                if let Some(why) = why {
                    skipped += 1;
                    bar.suspend(|| eprintln!("warning: {why}"));
                }
                bar.set_prefix(format!("loss {loss:.4} margin {margin:.4}"));
            }
            bar.inc(size as u64);
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
