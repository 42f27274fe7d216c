//! `webdpo judge`: the oracle's rates on sampled stories, and what goes wrong most often.

use std::path::PathBuf;

use webdpo::storyworld::StoryWorld;
use webdpo::storyworld::measure::{Rates, sample_stories};
use webdpo::{ComputeDevice, ModelDir, Result, SamplingConfig, block_on};

#[derive(clap::Args)]
pub struct Args {
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

pub fn run(a: Args, device: &ComputeDevice) -> Result<()> {
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
