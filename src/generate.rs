//! Sampling with a KV cache: the prompt is run once, then one token per step for all samples
//! together (or, as the benchmarks' baseline, the whole prefix again every step). Each step makes
//! one async read of the last-position logits and samples on the CPU (sorting on WebGPU in wasm
//! is unreliable, and the host RNG makes seeds reproducible anywhere).

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{CausalLm, KvCache};
use crate::rng::Rng;
use crate::runtime::read_f32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct SamplingConfig {
    /// 0 samples greedily.
    pub temperature: f64,
    /// Keep the k most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p; 1 keeps all.
    pub top_p: f64,
    pub max_new_tokens: usize,
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            max_new_tokens: 64,
            seed: 0,
        }
    }
}

impl SamplingConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::Setting(format!(
                "temperature must be ≥ 0, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::Setting(format!(
                "top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        if self.max_new_tokens == 0 {
            return Err(Error::Setting("max_new_tokens must be at least 1".into()));
        }
        Ok(())
    }
}

/// Draws one token from `logits` as HF's warpers do: temperature, then top-k, then top-p.
pub fn sample_token(logits: &[f32], config: &SamplingConfig, rng: &mut Rng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &l)| {
                if l > best.1 { (i, l) } else { best }
            })
            .0 as u32
    };
    if config.temperature == 0.0 {
        return argmax();
    }
    let mut order: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i].is_finite())
        .collect();
    if order.is_empty() {
        return argmax();
    }
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if config.top_k > 0 {
        order.truncate(config.top_k);
    }
    let max = logits[order[0]] as f64;
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] as f64 - max) / config.temperature).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if config.top_p < 1.0 {
        let mut cumulative = 0.0;
        let keep = probs.iter().position(|p| {
            cumulative += p;
            cumulative >= config.top_p
        });
        probs.truncate(keep.map_or(probs.len(), |k| k + 1));
    }
    let mut u = rng.uniform() * probs.iter().sum::<f64>();
    for (p, &i) in probs.iter().zip(&order) {
        if u < *p {
            return i as u32;
        }
        u -= p;
    }
    order[probs.len() - 1] as u32
}

/// What the decoder keeps of the tokens already fed to the model.
enum Past {
    /// Their keys and values, per layer.
    Cache(KvCache),
    /// The tokens themselves (`None` before the first step), re-run every step.
    Tokens(Option<Tensor<2, Int>>),
}

impl Past {
    fn len(&self) -> usize {
        match self {
            Past::Cache(cache) => cache.len(),
            Past::Tokens(tokens) => tokens.as_ref().map_or(0, |t| t.dims()[1]),
        }
    }
}

/// Incremental sampler of `n` continuations of one prompt; call [`Decoder::step`] until it
/// returns `None` (every sample ended with EOS or hit a limit).
pub struct Decoder {
    model: CausalLm,
    device: Device,
    config: SamplingConfig,
    eos: u32,
    rng: Rng,
    past: Past,
    input: Tensor<2, Int>,
    samples: Vec<Vec<u32>>,
    done: Vec<bool>,
    /// Per sample, the entropy of each token's sampling distribution (EOS's included), when
    /// asked for ([`Decoder::with_entropies`]).
    entropies: Option<Vec<Vec<f64>>>,
    /// A token the first step may not sample.
    exclude: Option<u32>,
}

impl Decoder {
    pub fn new(
        model: CausalLm,
        prompt: &[u32],
        n: usize,
        config: SamplingConfig,
        eos: u32,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        if prompt.is_empty() {
            return Err(Error::Setting("the prompt has no tokens".into()));
        }
        if prompt.len() >= model.max_positions() {
            return Err(Error::Setting(format!(
                "the prompt has {} tokens; the model's context is {}",
                prompt.len(),
                model.max_positions()
            )));
        }
        let ids: Vec<i64> = (0..n)
            .flat_map(|_| prompt.iter().map(|&t| t as i64))
            .collect();
        let input = Tensor::from_data(TensorData::new(ids, [n, prompt.len()]), device);
        Ok(Self {
            model,
            device: device.clone(),
            rng: Rng::new(config.seed),
            config,
            eos,
            past: Past::Cache(KvCache::default()),
            input,
            samples: vec![Vec::new(); n],
            done: vec![false; n],
            entropies: None,
            exclude: None,
        })
    }

    /// Also records the entropy of every token's sampling distribution.
    pub fn with_entropies(mut self) -> Self {
        self.entropies = Some(vec![Vec::new(); self.samples.len()]);
        self
    }

    /// The first token sampled will not be `token`.
    pub fn excluding(mut self, token: u32) -> Self {
        self.exclude = Some(token);
        self
    }

    /// Re-runs the whole prefix for every token instead of caching keys and values: the
    /// baseline that the KV cache's speed-up is measured against.
    pub fn without_cache(mut self) -> Self {
        self.past = Past::Tokens(None);
        self
    }

    /// Samples the next token of every unfinished sequence (`None` for finished ones), or
    /// returns `None` when all are finished.
    pub async fn step(&mut self) -> Result<Option<Vec<Option<u32>>>> {
        let produced = self.samples.iter().map(Vec::len).max().unwrap_or(0);
        if self.done.iter().all(|&d| d)
            || produced >= self.config.max_new_tokens
            || self.past.len() + self.input.dims()[1] > self.model.max_positions()
        {
            return Ok(None);
        }
        let logits = match &mut self.past {
            Past::Cache(cache) => self.model.forward(self.input.clone(), Some(cache)),
            Past::Tokens(tokens) => {
                let all = match tokens.take() {
                    Some(earlier) => Tensor::cat(vec![earlier, self.input.clone()], 1),
                    None => self.input.clone(),
                };
                *tokens = Some(all.clone());
                self.model.forward(all, None)
            }
        };
        let [n, t, vocab] = logits.dims();
        let mut last = read_f32(
            logits
                .slice([0..n, t - 1..t, 0..vocab])
                .reshape([n * vocab]),
        )
        .await?;
        if let Some(token) = self.exclude.take() {
            for row in last.chunks_mut(vocab) {
                if let Some(logit) = row.get_mut(token as usize) {
                    *logit = f32::NEG_INFINITY;
                }
            }
        }
        let mut next = Vec::with_capacity(n);
        for (i, row) in last.chunks(vocab).enumerate() {
            if self.done[i] {
                next.push(None);
                continue;
            }
            if let Some(entropies) = &mut self.entropies {
                entropies[i].push(entropy(row, self.config.temperature));
            }
            let token = sample_token(row, &self.config, &mut self.rng);
            if token == self.eos {
                self.done[i] = true;
            } else {
                self.samples[i].push(token);
            }
            next.push(Some(token));
        }
        let ids: Vec<i64> = next.iter().map(|t| t.unwrap_or(self.eos) as i64).collect();
        self.input = Tensor::from_data(TensorData::new(ids, [n, 1]), &self.device);
        Ok(Some(next))
    }

    /// The tokens sampled so far, EOS excluded.
    pub fn samples(&self) -> &[Vec<u32>] {
        &self.samples
    }

    pub fn into_samples(self) -> Vec<Vec<u32>> {
        self.samples
    }

    /// Whether sample `i` ended with EOS.
    pub fn ended(&self, i: usize) -> bool {
        self.done[i]
    }
}

/// The entropy (nats) of the distribution `logits` are sampled from at `temperature` (that of
/// the logits themselves when greedy).
fn entropy(logits: &[f32], temperature: f64) -> f64 {
    let t = if temperature > 0.0 { temperature } else { 1.0 };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| ((l as f64 - max) / t).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    -weights
        .iter()
        .filter(|&&w| w > 0.0)
        .map(|w| w / total * (w / total).ln())
        .sum::<f64>()
}

/// How the two responses of a pair are drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(rename_all = "snake_case")]
pub enum PairStyle {
    /// Two samples of their own.
    #[default]
    Independent,
    /// The first sampled whole; the second shares its start up to the position where the model
    /// was least sure (the highest entropy of a token's distribution, the first token aside),
    /// takes another token there and goes on as a sample of its own: the two differ from one
    /// point on.
    Branched,
}

impl std::str::FromStr for PairStyle {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "independent" => Ok(Self::Independent),
            "branched" => Ok(Self::Branched),
            _ => Err(Error::Setting(format!(
                "unknown pair style {s:?}; expected independent or branched"
            ))),
        }
    }
}

/// Two responses to one prompt, sampled in steps as [`Decoder`] does.
pub struct PairDecoder {
    first: Decoder,
    second: Option<Decoder>,
    style: PairStyle,
    prompt: Vec<u32>,
    /// The tokens the second response shares with the first (branched).
    shared: usize,
}

impl PairDecoder {
    pub fn new(
        model: CausalLm,
        prompt: &[u32],
        style: PairStyle,
        config: SamplingConfig,
        eos: u32,
        device: &Device,
    ) -> Result<Self> {
        let first = match style {
            PairStyle::Independent => Decoder::new(model, prompt, 2, config, eos, device)?,
            PairStyle::Branched => {
                Decoder::new(model, prompt, 1, config, eos, device)?.with_entropies()
            }
        };
        Ok(Self {
            first,
            second: None,
            style,
            prompt: prompt.to_vec(),
            shared: 0,
        })
    }

    /// Samples the next token (of the first response, then of the second); `false` once both
    /// have ended.
    pub async fn step(&mut self) -> Result<bool> {
        if let Some(second) = &mut self.second {
            return Ok(second.step().await?.is_some());
        }
        if self.first.step().await?.is_some() {
            return Ok(true);
        }
        if self.style == PairStyle::Independent {
            return Ok(false);
        }
        // The branch: the position of the first response with the most uncertain token, after
        // the first (a branch there would make two independent samples).
        let first = &self.first;
        let tokens = &first.samples[0];
        let entropies = &first
            .entropies
            .as_ref()
            .expect("a branched pair records them")[0];
        let at = (1..entropies.len())
            .max_by(|&a, &b| entropies[a].total_cmp(&entropies[b]))
            .unwrap_or(0);
        let taken = tokens.get(at).copied().unwrap_or(first.eos);
        let mut prefix = self.prompt.clone();
        prefix.extend(&tokens[..at]);
        let config = SamplingConfig {
            seed: first.config.seed ^ 0x0B4A_2C4E_D000_0001,
            max_new_tokens: first.config.max_new_tokens - at,
            ..first.config.clone()
        };
        let second = Decoder::new(
            first.model.clone(),
            &prefix,
            1,
            config,
            first.eos,
            &first.device,
        )?
        .excluding(taken);
        self.shared = at;
        self.second = Some(second);
        Ok(true)
    }

    /// The two responses so far, EOS excluded.
    pub fn samples(&self) -> [Vec<u32>; 2] {
        match (&self.style, &self.second) {
            (PairStyle::Independent, _) => {
                [self.first.samples[0].clone(), self.first.samples[1].clone()]
            }
            (PairStyle::Branched, second) => {
                let first = self.first.samples[0].clone();
                let mut other = first[..self.shared].to_vec();
                other.extend(second.iter().flat_map(|d| d.samples[0].iter()));
                [first, other]
            }
        }
    }

    /// How many tokens the two responses share at their start (branched, once it branched).
    pub fn shared(&self) -> usize {
        self.shared
    }

    /// Both responses, at once.
    pub async fn run(mut self) -> Result<[Vec<u32>; 2]> {
        while self.step().await? {}
        Ok(self.samples())
    }
}

/// `n` completions of `prompt`, EOS excluded.
pub async fn generate(
    model: CausalLm,
    prompt: &[u32],
    n: usize,
    config: SamplingConfig,
    eos: u32,
    device: &Device,
) -> Result<Vec<Vec<u32>>> {
    let mut decoder = Decoder::new(model, prompt, n, config, eos, device)?;
    while decoder.step().await?.is_some() {}
    Ok(decoder.into_samples())
}
