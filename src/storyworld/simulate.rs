//! Measuring a policy with the oracle, and a simulated user who prefers one attribute: the
//! browser's loop (two samples → a pick → the DPO update) with the oracle as the person.

use serde::{Deserialize, Serialize};

use super::oracle::{Judgement, Oracle};
use super::{StoryWorld, format_prompt};
use crate::error::{Error, Result};
use crate::generate::{SamplingConfig, generate};
use crate::hf::tokenizer::TextTokenizer;
use crate::model::CausalLm;
use crate::train::DpoTrainer;
use crate::train::data::PreferencePair;
use crate::train::kl::{KlEstimate, sequence_kl};
use crate::train::logps::TokenizedPair;

/// A steerable attribute of a story.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    Happy,
    OnTopic,
    Long,
    Kind,
}

impl Attribute {
    pub const ALL: [Attribute; 4] = [
        Attribute::Happy,
        Attribute::OnTopic,
        Attribute::Long,
        Attribute::Kind,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Attribute::Happy => "happy",
            Attribute::OnTopic => "on_topic",
            Attribute::Long => "long",
            Attribute::Kind => "kind",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                Error::Setting(format!(
                    "unknown attribute {s:?}; expected happy, on_topic, long or kind"
                ))
            })
    }

    /// Whether the judged story has the attribute (`None`: cannot tell).
    pub fn of(self, j: &Judgement) -> Option<bool> {
        match self {
            Attribute::Happy => j.happy,
            Attribute::OnTopic => j.on_topic,
            Attribute::Long => Some(j.long),
            Attribute::Kind => j.kind,
        }
    }
}

/// One sampled story with the oracle's reading of it.
pub struct Sample {
    pub prompt: String,
    pub story: String,
    pub judgement: Judgement,
}

/// `n` samples, two per prompt, for prompts drawn from `world`.
pub async fn sample_stories(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    world: &mut StoryWorld,
    n: usize,
    sampling: &SamplingConfig,
    device: &burn::tensor::Device,
) -> Result<Vec<Sample>> {
    let oracle = Oracle::new();
    let mut out = Vec::with_capacity(n);
    let mut seed = sampling.seed;
    while out.len() < n {
        let (prompt, _) = world.prompt();
        let ids = tokenizer.encode_prompt(&format_prompt(&prompt))?;
        seed = seed.wrapping_add(1);
        let k = (n - out.len()).min(8);
        for s in generate(
            model.clone(),
            &ids,
            k,
            SamplingConfig {
                seed,
                ..sampling.clone()
            },
            tokenizer.eos_id(),
            device,
        )
        .await?
        {
            let story = tokenizer.decode(&s)?;
            let judgement = oracle.judge(&prompt, &story);
            out.push(Sample {
                prompt: prompt.clone(),
                story,
                judgement,
            });
        }
    }
    Ok(out)
}

/// Rates over samples: well-formed, and each attribute.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rates {
    pub samples: usize,
    pub well_formed: f64,
    pub happy: f64,
    pub on_topic: f64,
    pub long: f64,
    pub kind: f64,
}

impl Rates {
    /// A story counts for an attribute only if the oracle can tell it has it (a story without an
    /// ending is not a happy one).
    pub fn of(samples: &[Sample]) -> Self {
        let rate = |a: Attribute| {
            samples
                .iter()
                .filter(|s| a.of(&s.judgement) == Some(true))
                .count() as f64
                / samples.len().max(1) as f64
        };
        Self {
            samples: samples.len(),
            well_formed: samples.iter().filter(|s| s.judgement.well_formed).count() as f64
                / samples.len().max(1) as f64,
            happy: rate(Attribute::Happy),
            on_topic: rate(Attribute::OnTopic),
            long: rate(Attribute::Long),
            kind: rate(Attribute::Kind),
        }
    }

    pub fn get(&self, a: Attribute) -> f64 {
        match a {
            Attribute::Happy => self.happy,
            Attribute::OnTopic => self.on_topic,
            Attribute::Long => self.long,
            Attribute::Kind => self.kind,
        }
    }
}

/// KL(π ‖ π_ref) of the policy's own samples ([`sequence_kl`]: per sample, the full-vocabulary
/// KL of each position summed, EOS included).
pub async fn kl_estimate(
    policy: &CausalLm,
    reference: &CausalLm,
    tokenizer: &TextTokenizer,
    samples: &[Sample],
    device: &burn::tensor::Device,
) -> Result<KlEstimate> {
    let mut rows = Vec::with_capacity(samples.len());
    for s in samples {
        rows.push((
            tokenizer.encode_prompt(&format_prompt(&s.prompt))?,
            tokenizer.encode_completion(&s.story)?,
        ));
    }
    let refs: Vec<(&[u32], &[u32])> = rows.iter().map(|(p, c)| (&p[..], &c[..])).collect();
    sequence_kl(policy, reference, &refs, tokenizer.pad_id(), device).await
}

/// One row of a simulation: after `picks` preferences, the attribute's rate and the KL.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimulationPoint {
    pub picks: usize,
    pub rate: f64,
    pub well_formed: f64,
    pub kl: f64,
    /// The standard error of `kl` over the samples.
    pub kl_stderr: f64,
    pub loss: f64,
    pub margin: f64,
}

/// Pairs a simulation may sample per pick asked for before it ends for want of differing pairs.
pub const PAIRS_PER_PICK: usize = 10;

/// A simulated user who, for a random prompt, samples two stories from the current policy and
/// prefers the one with `attribute` (ties, where both or neither have it, are skipped), applying
/// the DPO update as the browser does. Measures every `eval_every` picks on `eval_samples` fresh
/// samples and where it ends; `on_point` sees each measurement as it is made. Ends early, after
/// [`PAIRS_PER_PICK`] × `picks` pairs, when too few pairs differ in the attribute to pick from.
#[allow(clippy::too_many_arguments)]
pub async fn simulate(
    trainer: &mut DpoTrainer,
    tokenizer: &TextTokenizer,
    attribute: Attribute,
    picks: usize,
    eval_every: usize,
    eval_samples: usize,
    sampling: &SamplingConfig,
    seed: u64,
    mut on_point: impl FnMut(&SimulationPoint),
) -> Result<Vec<SimulationPoint>> {
    let device = trainer.device().clone();
    let mut world = StoryWorld::new(seed);
    let mut eval_world = StoryWorld::new(seed ^ 0x5EED_0F_E7A1);
    let mut points = Vec::new();
    let (mut done, mut attempts, mut last_loss, mut last_margin) = (0, 0, f64::NAN, f64::NAN);
    let mut pair_seed = seed.wrapping_mul(1_000_003);
    let oracle = Oracle::new();
    loop {
        // Nearly no pair differing means the policy shows the attribute in almost every sample
        // (or almost never): the user has nothing left to pick, so the run ends there.
        let exhausted = attempts >= PAIRS_PER_PICK * picks.max(1);
        if (done % eval_every == 0 || done >= picks || exhausted)
            && points
                .last()
                .is_none_or(|p: &SimulationPoint| p.picks != done)
        {
            let policy = trainer.policy();
            let eval_sampling = SamplingConfig {
                seed: seed.wrapping_add(done as u64 * 7919),
                ..sampling.clone()
            };
            let samples = sample_stories(
                &policy,
                tokenizer,
                &mut eval_world,
                eval_samples,
                &eval_sampling,
                &device,
            )
            .await?;
            let rates = Rates::of(&samples);
            let kl =
                kl_estimate(&policy, trainer.reference()?, tokenizer, &samples, &device).await?;
            let point = SimulationPoint {
                picks: done,
                rate: rates.get(attribute),
                well_formed: rates.well_formed,
                kl: kl.mean,
                kl_stderr: kl.stderr,
                loss: last_loss,
                margin: last_margin,
            };
            on_point(&point);
            points.push(point);
        }
        if done >= picks || exhausted {
            return Ok(points);
        }
        attempts += 1;
        // The user's turn: two samples for one prompt, a preference or a skip.
        let (prompt, _) = world.prompt();
        let formatted = format_prompt(&prompt);
        let ids = tokenizer.encode_prompt(&formatted)?;
        pair_seed = pair_seed.wrapping_add(1);
        let pair = generate(
            trainer.policy(),
            &ids,
            2,
            SamplingConfig {
                seed: pair_seed,
                ..sampling.clone()
            },
            tokenizer.eos_id(),
            &device,
        )
        .await?;
        let stories = [tokenizer.decode(&pair[0])?, tokenizer.decode(&pair[1])?];
        let has = stories
            .each_ref()
            .map(|s| attribute.of(&oracle.judge(&prompt, s)) == Some(true));
        if has[0] == has[1] {
            continue;
        }
        let (chosen, rejected) = if has[0] {
            (&stories[0], &stories[1])
        } else {
            (&stories[1], &stories[0])
        };
        let tokenized = TokenizedPair::new(
            tokenizer,
            &PreferencePair {
                prompt: formatted.into(),
                chosen: chosen.as_str().into(),
                rejected: rejected.as_str().into(),
            },
        )?;
        let reports = trainer.learn(tokenized, tokenizer.pad_id()).await?;
        let first = &reports[0].metrics;
        (last_loss, last_margin) = (first.loss, first.rewards_margins);
        done += 1;
    }
}
