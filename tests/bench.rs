//! The benchmark's building blocks do what they claim (no timings are checked: speed is for
//! `webdpo bench`, not for tests).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::tensor::Device;
use common::*;
use webdpo::bench::{BenchConfig, Stat, bench_generation, bench_pair, bench_update};
use webdpo::block_on;
use webdpo::generate::{Decoder, SamplingConfig};
use webdpo::train::TrainConfig;

#[test]
fn decoding_without_the_cache_samples_the_same_tokens() {
    let device = Device::flex();
    let model = tiny_model(5, &device);
    let prompt = tokenizer().encode_prompt("Once upon a time").unwrap();
    let sampling = SamplingConfig {
        max_new_tokens: 24,
        seed: 11,
        ..SamplingConfig::default()
    };
    let run = |cached: bool| {
        let decoder =
            Decoder::new(model.clone(), &prompt, 3, sampling.clone(), 2, &device).unwrap();
        let mut decoder = if cached {
            decoder
        } else {
            decoder.without_cache()
        };
        while block_on(decoder.step()).unwrap().is_some() {}
        decoder.into_samples()
    };
    let (cached, recomputed) = (run(true), run(false));
    assert!(
        cached.iter().any(|s| s.len() > 5),
        "samples are too short to compare: {cached:?}"
    );
    assert_eq!(cached, recomputed);
}

#[test]
fn medians_of_odd_and_even_counts() {
    assert_eq!(Stat::of(vec![3.0, 1.0, 2.0]).median, 2.0);
    let s = Stat::of(vec![4.0, 1.0, 3.0, 2.0]);
    assert_eq!((s.median, s.min, s.max, s.runs), (2.5, 1.0, 4.0, 4));
}

#[test]
fn the_bench_pair_is_fixed_by_the_seed_and_avoids_special_tokens() {
    let config = BenchConfig::default();
    let pair = bench_pair(259, &config);
    assert_eq!(
        (pair.prompt.len(), pair.chosen.len(), pair.rejected.len()),
        (16, 96, 96)
    );
    assert!(
        pair.prompt
            .iter()
            .chain(&pair.chosen)
            .chain(&pair.rejected)
            .all(|&t| (3..259).contains(&t))
    );
    assert_eq!(pair, bench_pair(259, &config));
    assert_ne!(pair, bench_pair(259, &BenchConfig { seed: 1, ..config }));
}

#[test]
fn the_timed_update_starts_at_ln2_and_learns_the_pair() {
    let device = Device::flex();
    let config = BenchConfig {
        warmup: 1,
        runs: 2,
        completion_tokens: 12,
        new_tokens: 8,
        recompute_runs: 1,
        ..BenchConfig::default()
    };
    let pair = bench_pair(259, &config);
    let update = block_on(bench_update(
        tiny_model(6, &device),
        TrainConfig::default(),
        &pair,
        0,
        &config,
        &device,
    ))
    .unwrap();
    let check = &update.check;
    assert!(
        (check.loss[0] - std::f64::consts::LN_2).abs() < 1e-6,
        "step-1 loss {}",
        check.loss[0]
    );
    assert!(
        check.loss[1] < check.loss[0],
        "one update on the pair lowers its loss: {:?}",
        check.loss
    );
    assert_eq!(update.total_ms.runs, 2);
    let generation = block_on(bench_generation(
        tiny_model(6, &device),
        &pair,
        &config,
        &device,
    ))
    .unwrap();
    assert_eq!(
        (
            generation.new_tokens,
            generation.kv_cache_ms_per_token.runs,
            generation.recompute_ms_per_token.runs
        ),
        (8, 2, 1)
    );
}
