//! Benchmarks of what a person waits for: one DPO update on one pair (split into the reference
//! forward, the policy's forward + backward and the optimizer step) and sampling with and without
//! the KV cache. The same code runs natively (`webdpo bench`) and in the browser (`bench.html`).
//!
//! Every stage ends with a device read, so GPU time is counted where it is spent rather than
//! where it was queued. Reported times are medians over `runs` after `warmup` unmeasured runs.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use web_time::Instant;

use crate::error::{Error, Result};
use crate::generate::{Decoder, SamplingConfig};
use crate::model::{CausalLm, LoraConfig, ModelConfig};
use crate::rng::Rng;
use crate::runtime::device::ComputeDevice;
use crate::runtime::read_all;
use crate::train::logps::TokenizedPair;
use crate::train::{DpoTrainer, TrainConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct BenchConfig {
    pub warmup: usize,
    pub runs: usize,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub new_tokens: usize,
    /// Runs of the (slow) no-cache generation baseline (0: not timed, no warm-up either).
    pub recompute_runs: usize,
    pub seed: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            warmup: 2,
            runs: 10,
            prompt_tokens: 16,
            completion_tokens: 96,
            new_tokens: 128,
            recompute_runs: 3,
            seed: 0,
        }
    }
}

/// Median, fastest and slowest of repeated timings, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Stat {
    pub fn of(mut samples: Vec<f64>) -> Self {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let median = if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            samples[n / 2]
        } else {
            (samples[n / 2 - 1] + samples[n / 2]) / 2.0
        };
        Self {
            median,
            min: samples.first().copied().unwrap_or(f64::NAN),
            max: samples.last().copied().unwrap_or(f64::NAN),
            runs: n,
        }
    }
}

/// The pair every run trains on, as token ids: deterministic from the seed, the same for us and
/// for `bench/torch_reference.py`. Ids skip the first three (pad, BOS, EOS).
pub fn bench_pair(vocab_size: usize, config: &BenchConfig) -> TokenizedPair {
    let mut rng = Rng::new(config.seed);
    let mut ids = |n: usize| {
        (0..n)
            .map(|_| 3 + (rng.next_u64() % (vocab_size as u64 - 3)) as u32)
            .collect::<Vec<_>>()
    };
    TokenizedPair {
        prompt: ids(config.prompt_tokens),
        chosen: ids(config.completion_tokens),
        rejected: ids(config.completion_tokens),
    }
}

/// Values of the first two updates on the bench pair, for checking another implementation
/// (step 1 starts from policy = reference; step 2 after one optimizer step).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct UpdateCheck {
    pub loss: [f64; 2],
    pub logps_chosen: [f64; 2],
    pub logps_rejected: [f64; 2],
    pub grad_norm: [f64; 2],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[cfg_attr(target_arch = "wasm32", tsify(missing_as_null))]
pub struct UpdateBench {
    pub reference_forward_ms: Stat,
    pub policy_forward_backward_ms: Stat,
    pub optimizer_step_ms: Stat,
    pub total_ms: Stat,
    pub check: UpdateCheck,
    /// Bytes the device's allocator holds afterwards (GPU backends; `None` on the CPU).
    pub device_reserved_bytes: Option<u64>,
}

/// One DPO update per run, exactly as a pick in the app: prepare the pair (reference forward,
/// read), then [`DpoTrainer::step`], then a read of the updated weights.
pub async fn bench_update(
    model: CausalLm,
    train: TrainConfig,
    pair: &TokenizedPair,
    pad_id: u32,
    config: &BenchConfig,
    device: &Device,
) -> Result<UpdateBench> {
    let mut trainer = DpoTrainer::new(model, None, train, device)?;
    let (mut reference, mut forward_backward, mut optimizer, mut total) =
        (vec![], vec![], vec![], vec![]);
    let mut check = UpdateCheck {
        loss: [0.0; 2],
        logps_chosen: [0.0; 2],
        logps_rejected: [0.0; 2],
        grad_norm: [0.0; 2],
    };
    for run in 0..config.warmup + config.runs {
        let started = Instant::now();
        let batch = trainer.prepare(std::slice::from_ref(pair), pad_id).await?;
        let prepared = Instant::now();
        let report = trainer.step(&batch).await?;
        settle(&trainer.policy()).await?;
        let done = Instant::now();
        if let Some(reason) = report.skipped {
            return Err(Error::Device(format!(
                "benchmark update {run} was not applied: {reason}"
            )));
        }
        if run < 2 {
            let m = &report.metrics;
            (
                check.loss[run],
                check.logps_chosen[run],
                check.logps_rejected[run],
            ) = (m.loss, m.logps_chosen, m.logps_rejected);
            check.grad_norm[run] = m.grad_norm.unwrap_or(f64::NAN);
        }
        if run >= config.warmup {
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
            reference.push(ms(started, prepared));
            forward_backward.push(report.forward_backward_ms);
            optimizer.push(ms(prepared, done) - report.forward_backward_ms);
            total.push(ms(started, done));
        }
    }
    Ok(UpdateBench {
        reference_forward_ms: Stat::of(reference),
        policy_forward_backward_ms: Stat::of(forward_backward),
        optimizer_step_ms: Stat::of(optimizer),
        total_ms: Stat::of(total),
        check,
        device_reserved_bytes: device.memory_pool_usage().map(|u| u.bytes_reserved),
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[cfg_attr(target_arch = "wasm32", tsify(missing_as_null))]
pub struct GenerationBench {
    pub new_tokens: usize,
    pub kv_cache_ms_per_token: Stat,
    pub recompute_ms_per_token: Stat,
    /// Per-token time without the cache over the time with it (medians).
    pub kv_cache_speedup: f64,
    pub device_reserved_bytes: Option<u64>,
}

/// Sampling `new_tokens` after the bench prompt (one sequence, EOS never ends it early), with
/// the KV cache and re-running the whole prefix each token.
pub async fn bench_generation(
    model: CausalLm,
    pair: &TokenizedPair,
    config: &BenchConfig,
    device: &Device,
) -> Result<GenerationBench> {
    if pair.prompt.len() + config.new_tokens > model.max_positions() {
        return Err(Error::Setting(format!(
            "{} prompt + {} new tokens exceed the model's context of {}",
            pair.prompt.len(),
            config.new_tokens,
            model.max_positions()
        )));
    }
    // An id past the vocabulary: never sampled, so every run makes all `new_tokens`.
    let never = model.vocab_size() as u32;
    let sampling = SamplingConfig {
        max_new_tokens: config.new_tokens,
        seed: config.seed,
        ..SamplingConfig::default()
    };
    let per_token = |cached: bool, runs: usize| {
        let (model, sampling, prompt) = (model.clone(), sampling.clone(), pair.prompt.clone());
        async move {
            let mut times = Vec::with_capacity(runs);
            for _ in 0..runs {
                let decoder =
                    Decoder::new(model.clone(), &prompt, 1, sampling.clone(), never, device)?;
                let mut decoder = if cached {
                    decoder
                } else {
                    decoder.without_cache()
                };
                let started = Instant::now();
                while decoder.step().await?.is_some() {}
                times.push(
                    started.elapsed().as_secs_f64() * 1e3 / decoder.samples()[0].len() as f64,
                );
            }
            Ok::<_, Error>(times)
        }
    };
    per_token(true, config.warmup).await?;
    let cached = Stat::of(per_token(true, config.runs).await?);
    if config.recompute_runs > 0 {
        per_token(false, 1).await?;
    }
    let recompute = Stat::of(per_token(false, config.recompute_runs).await?);
    Ok(GenerationBench {
        new_tokens: config.new_tokens,
        kv_cache_speedup: recompute.median / cached.median,
        kv_cache_ms_per_token: cached,
        recompute_ms_per_token: recompute,
        device_reserved_bytes: device.memory_pool_usage().map(|u| u.bytes_reserved),
    })
}

/// The report of `webdpo bench` and of `bench.html` (each adds its own memory figures): what ran
/// where, with which settings, on which pair, and the timings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[cfg_attr(target_arch = "wasm32", tsify(missing_as_null))]
pub struct BenchReport {
    pub implementation: String,
    pub parameters: usize,
    pub config: ModelConfig,
    pub device: String,
    /// CPU threads the kernels could split over (large kernels only: burn-flex's thresholds);
    /// `None` on a GPU.
    pub threads: Option<usize>,
    pub bench: BenchConfig,
    pub train: TrainConfig,
    /// The adapters trained, when the update trains LoRA adapters only.
    pub lora: Option<LoraConfig>,
    pub update: UpdateBench,
    pub generation: GenerationBench,
    pub pair: TokenizedPair,
}

impl BenchReport {
    /// Times the update, then sampling, of `model` (described by `config`; with `lora`'s
    /// adapters attached, only they train) on `device`. `between` runs after the update is
    /// timed and before sampling is (the CLI reads its memory peak there).
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        model: CausalLm,
        config: ModelConfig,
        lora: Option<LoraConfig>,
        train: TrainConfig,
        pad_id: u32,
        bench: BenchConfig,
        device: &ComputeDevice,
        between: impl FnOnce(),
    ) -> Result<Self> {
        use burn::module::Module;
        let pair = bench_pair(config.vocab_size, &bench);
        let update = bench_update(
            model.clone(),
            train.clone(),
            &pair,
            pad_id,
            &bench,
            &device.device,
        )
        .await?;
        between();
        let generation = bench_generation(model.clone(), &pair, &bench, &device.device).await?;
        Ok(Self {
            implementation: if cfg!(target_arch = "wasm32") {
                "webdpo (burn, wasm)"
            } else {
                "webdpo (burn)"
            }
            .into(),
            parameters: model.num_params(),
            config,
            device: device.description.clone(),
            threads: device.threads,
            bench,
            train,
            lora,
            update,
            generation,
            pair,
        })
    }
}

/// Waits until every queued kernel that wrote the model's weights has run (one small read).
async fn settle(model: &CausalLm) -> Result<()> {
    read_all([model.norm.weight.val().slice(0..1)]).await?;
    Ok(())
}
