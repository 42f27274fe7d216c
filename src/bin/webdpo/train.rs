//! `webdpo train`: DPO on a TRL-format JSONL, written as a model directory (and a PEFT
//! adapter with LoRA).

use std::path::PathBuf;

use webdpo::hf::peft::to_peft;
use webdpo::{ComputeDevice, DpoTrainer, Error, Optim, Result, TrainConfig, block_on};

use crate::dpo_args::{DpoArgs, Setup, setup};
use crate::output::{progress, write_file};

#[derive(clap::Args)]
pub struct Args {
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

pub fn run(a: Args, device: &ComputeDevice) -> Result<()> {
    let Setup {
        dir,
        policy,
        reference,
        lora,
        tokenizer,
        pairs,
        train,
    } = setup(&a.dpo, device)?;
    // AdamW, as TRL's trainers (the app's SGD default is tuned for single picks).
    let config = TrainConfig {
        learning_rate: a.lr,
        optim: Optim::AdamW,
        weight_decay: a.weight_decay,
        max_grad_norm: a.max_grad_norm,
        steps_per_pair: a.steps,
        ..train
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
