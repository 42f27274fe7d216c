//! `webdpo eval`: the metrics TRL logs for the chosen trainer (DPO or KTO against the
//! reference, or reference-free CPO/ORPO) on a JSONL, without updating.

use webdpo::{
    ComputeDevice, DpoTrainer, KtoMetrics, PairValues, Result, TextTokenizer, TokenizedPair,
    TokenizedRating, block_on,
};

use crate::dpo_args::{DpoArgs, Rows, Setup, setup};
use crate::output::progress;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    dpo: DpoArgs,
    /// One JSON line per pair with its four sequence log-probs (per rating: its two) instead of
    /// the means.
    #[arg(long)]
    per_pair: bool,
}

pub fn run(a: Args, device: &ComputeDevice) -> Result<()> {
    let Setup {
        policy,
        reference,
        tokenizer,
        rows,
        train,
        ..
    } = setup(&a.dpo, device)?;
    let trainer = DpoTrainer::new(policy, reference, train, &device.device)?;
    match rows {
        Rows::Pairs(pairs) => eval_pairs(&a, &trainer, &tokenizer, &pairs),
        Rows::Ratings(ratings) => eval_ratings(&a, &trainer, &tokenizer, &ratings),
    }
}

fn eval_pairs(
    a: &Args,
    trainer: &DpoTrainer,
    tokenizer: &TextTokenizer,
    pairs: &[TokenizedPair],
) -> Result<()> {
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
        print_json(&all.metrics());
    }
    Ok(())
}

/// KTO's metrics batch by batch (its reference point is a batch's), then over the batches as
/// TRL's evaluation reports them.
fn eval_ratings(
    a: &Args,
    trainer: &DpoTrainer,
    tokenizer: &TextTokenizer,
    ratings: &[TokenizedRating],
) -> Result<()> {
    let bar = progress(ratings.len(), "eval");
    let mut batches = Vec::new();
    for chunk in ratings.chunks(a.dpo.batch_size) {
        let values = block_on(async {
            trainer
                .evaluate_rated(&trainer.prepare_rated(chunk, tokenizer.pad_id()).await?)
                .await
        })?;
        if a.per_pair {
            for i in 0..chunk.len() {
                let line = serde_json::json!({
                    "label": values.labels[i],
                    "policy_logps": values.policy[i],
                    "reference_logps": values.reference[i],
                });
                bar.suspend(|| println!("{line}"));
            }
        }
        batches.push((values.metrics(), chunk.len()));
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if !a.per_pair {
        print_json(&KtoMetrics::over_batches(&batches));
    }
    Ok(())
}

fn print_json(metrics: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string(metrics).expect("metrics serialise")
    );
}
