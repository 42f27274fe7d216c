//! `webdpo eval`: the metrics TRL logs for the chosen trainer (DPO against the reference, or
//! reference-free CPO/ORPO) on a JSONL, without updating.

use webdpo::{ComputeDevice, DpoTrainer, PairValues, Result, block_on};

use crate::dpo_args::{DpoArgs, Setup, setup};
use crate::output::progress;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    dpo: DpoArgs,
    /// One JSON line per pair with its four sequence log-probs instead of the means.
    #[arg(long)]
    per_pair: bool,
}

pub fn run(a: Args, device: &ComputeDevice) -> Result<()> {
    let Setup {
        policy,
        reference,
        tokenizer,
        pairs,
        train,
        ..
    } = setup(&a.dpo, device)?;
    let trainer = DpoTrainer::new(policy, reference, train, &device.device)?;
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
