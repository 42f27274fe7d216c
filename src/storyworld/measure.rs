//! What a policy does, read by the oracle: each attribute's rate over fresh samples with its
//! 95 % interval, the well-formed rate, and the KL to the reference over the same samples.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::oracle::{Judgement, Oracle};
use super::{StoryWorld, format_prompt};
use crate::error::{Error, Result};
use crate::generate::{Decoder, SamplingConfig, generate};
use crate::hf::tokenizer::TextTokenizer;
use crate::model::CausalLm;
use crate::train::kl::{KlEstimate, sequence_kl};

/// A steerable attribute of a story.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
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

/// `n` samples, up to eight per prompt, for prompts drawn from `world`.
pub async fn sample_stories(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    world: &mut StoryWorld,
    n: usize,
    sampling: &SamplingConfig,
    device: &Device,
) -> Result<Vec<Sample>> {
    let oracle = Oracle::new();
    let mut out = Vec::with_capacity(n);
    let mut seed = sampling.seed;
    while out.len() < n {
        let (prompt, _) = world.prompt();
        seed = seed.wrapping_add(1);
        let k = (n - out.len()).min(8);
        let sampling = SamplingConfig {
            seed,
            ..sampling.clone()
        };
        let stories = sample_for(model, tokenizer, &prompt, k, sampling, device).await?;
        out.extend(stories.into_iter().map(|story| Sample {
            judgement: oracle.judge(&prompt, &story),
            prompt: prompt.clone(),
            story,
        }));
    }
    Ok(out)
}

async fn sample_for(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    prompt: &str,
    k: usize,
    sampling: SamplingConfig,
    device: &Device,
) -> Result<Vec<String>> {
    let ids = tokenizer.encode_prompt(&format_prompt(prompt))?;
    let eos = tokenizer.eos_id();
    generate(model.clone(), &ids, k, sampling, eos, device)
        .await?
        .iter()
        .map(|s| tokenizer.decode(s))
        .collect()
}

/// How often something happened in `n` samples, with Wilson's 95 % score interval (it stays
/// inside [0, 1] and keeps a width at 0 and at n, where the normal approximation collapses).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct Proportion {
    pub count: usize,
    pub n: usize,
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

impl Proportion {
    pub fn of(count: usize, n: usize) -> Self {
        if n == 0 {
            return Self {
                count,
                n,
                rate: 0.0,
                low: 0.0,
                high: 1.0,
            };
        }
        const Z: f64 = 1.959_963_984_540_054;
        let (k, m) = (count as f64, n as f64);
        let p = k / m;
        let z2 = Z * Z;
        let centre = (p + z2 / (2.0 * m)) / (1.0 + z2 / m);
        let half = Z / (1.0 + z2 / m) * (p * (1.0 - p) / m + z2 / (4.0 * m * m)).sqrt();
        Self {
            count,
            n,
            rate: p,
            low: (centre - half).max(0.0),
            high: (centre + half).min(1.0),
        }
    }
}

/// Rates over samples: well-formed, and each attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct Rates {
    pub samples: usize,
    pub well_formed: Proportion,
    pub happy: Proportion,
    pub on_topic: Proportion,
    pub long: Proportion,
    pub kind: Proportion,
}

impl Rates {
    /// A story counts for an attribute only if the oracle can tell it has it (a story without an
    /// ending is not a happy one).
    pub fn of(samples: &[Sample]) -> Self {
        let count = |has: &dyn Fn(&Judgement) -> bool| {
            let k = samples.iter().filter(|s| has(&s.judgement)).count();
            Proportion::of(k, samples.len())
        };
        let attribute = |a: Attribute| count(&|j| a.of(j) == Some(true));
        Self {
            samples: samples.len(),
            well_formed: count(&|j| j.well_formed),
            happy: attribute(Attribute::Happy),
            on_topic: attribute(Attribute::OnTopic),
            long: attribute(Attribute::Long),
            kind: attribute(Attribute::Kind),
        }
    }

    pub fn get(&self, a: Attribute) -> Proportion {
        match a {
            Attribute::Happy => self.happy,
            Attribute::OnTopic => self.on_topic,
            Attribute::Long => self.long,
            Attribute::Kind => self.kind,
        }
    }
}

/// A policy's behaviour: the rates of its samples and their KL to the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct Behaviour {
    pub rates: Rates,
    pub kl: KlEstimate,
}

/// Stories per preset prompt: two, so that a measurement of n stories covers n / 2 prompts.
const STORIES_PER_PROMPT: usize = 2;

/// A measurement in steps small enough for a page to run between other work: one token of the
/// current prompt's stories per step, then one step that judges them and takes their KL. The
/// prompts come from a seed (the same prompts measure every policy, so differences between
/// measurements are the policy's, not the prompts'), and each prompt's stories are sampled with
/// a seed of their own.
pub struct Meter {
    policy: CausalLm,
    reference: CausalLm,
    tokenizer: TextTokenizer,
    prompts: Vec<String>,
    total: usize,
    sampling: SamplingConfig,
    /// The stories of the prompt under way, while they are sampled.
    decoder: Option<Decoder>,
    samples: Vec<Sample>,
    kl: Vec<f64>,
    oracle: Oracle,
    device: Device,
}

impl Meter {
    /// Measures `policy` (compared with `reference`) on `n` stories for prompts drawn with
    /// `prompt_seed`.
    pub fn new(
        policy: CausalLm,
        reference: CausalLm,
        tokenizer: TextTokenizer,
        n: usize,
        prompt_seed: u64,
        sampling: SamplingConfig,
        device: &Device,
    ) -> Result<Self> {
        if n == 0 {
            return Err(Error::Setting(
                "a measurement needs at least one story".into(),
            ));
        }
        sampling.validate()?;
        let mut world = StoryWorld::new(prompt_seed);
        let prompts = (0..n.div_ceil(STORIES_PER_PROMPT))
            .map(|_| world.prompt().0)
            .collect();
        Ok(Self {
            policy,
            reference,
            tokenizer,
            prompts,
            total: n,
            sampling,
            decoder: None,
            samples: Vec::with_capacity(n),
            kl: Vec::with_capacity(n),
            oracle: Oracle::new(),
            device: device.clone(),
        })
    }

    /// Stories measured so far, of [`Meter::total`].
    pub fn measured(&self) -> usize {
        self.samples.len()
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Samples the next token of the current prompt's stories, or, once they have ended, judges
    /// them and takes their KL; `false` once every story is in.
    pub async fn step(&mut self) -> Result<bool> {
        if self.samples.len() >= self.total {
            return Ok(false);
        }
        let i = self.samples.len() / STORIES_PER_PROMPT;
        let decoder = match &mut self.decoder {
            Some(decoder) => decoder,
            None => {
                let k = STORIES_PER_PROMPT.min(self.total - self.samples.len());
                let sampling = SamplingConfig {
                    seed: self.sampling.seed.wrapping_add(i as u64),
                    ..self.sampling.clone()
                };
                let ids = self
                    .tokenizer
                    .encode_prompt(&format_prompt(&self.prompts[i]))?;
                let (eos, device) = (self.tokenizer.eos_id(), &self.device);
                let decoder = Decoder::new(self.policy.clone(), &ids, k, sampling, eos, device)?;
                self.decoder.insert(decoder)
            }
        };
        if decoder.step().await?.is_some() {
            return Ok(true);
        }
        let stories = self.decoder.take().expect("sampled above").into_samples();
        let prompt = &self.prompts[i];
        let mut new = Vec::with_capacity(stories.len());
        for ids in stories {
            let story = self.tokenizer.decode(&ids)?;
            new.push(Sample {
                judgement: self.oracle.judge(prompt, &story),
                prompt: prompt.clone(),
                story,
            });
        }
        let kl = kl_of(
            &self.policy,
            &self.reference,
            &self.tokenizer,
            &new,
            &self.device,
        )
        .await?;
        self.kl.extend(kl.per_sample);
        self.samples.extend(new);
        Ok(self.samples.len() < self.total)
    }

    /// The behaviour over the stories measured so far.
    pub fn behaviour(&self) -> Behaviour {
        Behaviour {
            rates: Rates::of(&self.samples),
            kl: KlEstimate::of(self.kl.clone()),
        }
    }

    /// The stories measured so far.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Every step at once.
    pub async fn run(mut self) -> Result<Behaviour> {
        while self.step().await? {}
        Ok(self.behaviour())
    }
}

/// KL(π ‖ π_ref) of the policy's own samples ([`sequence_kl`]: per sample, the full-vocabulary
/// KL of each position summed, EOS included).
pub async fn kl_of(
    policy: &CausalLm,
    reference: &CausalLm,
    tokenizer: &TextTokenizer,
    samples: &[Sample],
    device: &Device,
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
