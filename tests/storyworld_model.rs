//! The shipped story-world model (www/models/storyworld): it writes well-formed stories, both
//! behaviours of every steerable attribute are there to steer, its tokenizer round-trips the
//! corpus, and the behaviour meter and the sweep run on it.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use burn::tensor::Device;
use webdpo::block_on;
use webdpo::generate::SamplingConfig;
use webdpo::hf::model_dir::ModelDir;
use webdpo::storyworld::measure::{Meter, Rates, sample_stories};
use webdpo::storyworld::oracle::Problem;
use webdpo::storyworld::report;
use webdpo::storyworld::simulate::{SimulationConfig, Sweep, SweepConfig};
use webdpo::storyworld::{StoryWorld, format_prompt};

fn shipped() -> ModelDir {
    ModelDir::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models/storyworld"),
        &Device::flex(),
    )
    .expect("the shipped model loads")
}

fn rates_of_200_samples() -> (Rates, Vec<(String, Option<Problem>)>) {
    let dir = shipped();
    let tokenizer = dir.tokenizer().unwrap();
    let sampling = SamplingConfig {
        temperature: 1.0,
        max_new_tokens: 160,
        seed: 42,
        ..SamplingConfig::default()
    };
    let samples = block_on(sample_stories(
        &dir.model,
        &tokenizer,
        &mut StoryWorld::new(777),
        200,
        &sampling,
        &Device::flex(),
    ))
    .unwrap();
    let bad = samples
        .iter()
        .filter(|s| !s.judgement.well_formed)
        .take(3)
        .map(|s| (s.story.clone(), s.judgement.problem.clone()))
        .collect();
    (Rates::of(&samples), bad)
}

#[test]
fn every_attribute_has_both_behaviours_to_steer() {
    let (rates, _) = rates_of_200_samples();
    for (name, r) in [
        ("happy", rates.happy.rate),
        ("on_topic", rates.on_topic.rate),
        ("long", rates.long.rate),
        ("kind", rates.kind.rate),
    ] {
        assert!(
            (0.2..=0.8).contains(&r),
            "{name} rate {r} leaves too little to steer: {rates:?}"
        );
    }
}

#[test]
fn samples_are_well_formed() {
    let (rates, bad) = rates_of_200_samples();
    assert!(rates.well_formed.rate >= 0.95, "{rates:?}; e.g. {bad:?}");
    eprintln!("{rates:?}");
}

#[test]
fn tokenizer_round_trips_the_corpus() {
    let tokenizer = shipped().tokenizer().unwrap();
    let mut world = StoryWorld::new(0);
    for _ in 0..2000 {
        let ex = world.example();
        let ids = tokenizer.encode_completion(&ex.story).unwrap();
        assert_eq!(tokenizer.decode(&ids).unwrap(), ex.story);
        let prompt = format_prompt(&ex.prompt);
        assert_eq!(
            tokenizer
                .decode(&tokenizer.encode_prompt(&prompt).unwrap())
                .unwrap(),
            prompt
        );
    }
}

#[test]
fn a_meter_measures_every_story_it_was_asked_for() {
    let dir = shipped();
    let tokenizer = dir.tokenizer().unwrap();
    let sampling = SamplingConfig {
        max_new_tokens: 160,
        seed: 3,
        ..SamplingConfig::default()
    };
    let meter = |n| {
        Meter::new(
            dir.model.clone(),
            dir.model.clone(),
            tokenizer.clone(),
            n,
            11,
            sampling.clone(),
            &Device::flex(),
        )
        .unwrap()
    };
    // A step is a token; the stories come in two per prompt, when both have ended.
    let mut five = meter(5);
    let (mut steps, mut counts) = (0, vec![]);
    loop {
        let more = block_on(five.step()).unwrap();
        steps += 1;
        if counts.last() != Some(&five.measured()) && five.measured() > 0 {
            counts.push(five.measured());
        }
        if !more {
            break;
        }
    }
    assert_eq!(counts, [2, 4, 5]);
    assert!(steps > 3 * 2, "{steps} steps for three prompts' stories");
    let behaviour = five.behaviour();
    assert_eq!(behaviour.rates.samples, 5);
    // The policy is its own reference.
    assert!(behaviour.kl.per_sample.iter().all(|&k| k.abs() < 1e-6));
    // The same prompts and seeds measure the same stories.
    let again = block_on(meter(5).run()).unwrap();
    assert_eq!(again.rates, behaviour.rates);
    assert!(
        Meter::new(
            dir.model.clone(),
            dir.model.clone(),
            tokenizer.clone(),
            0,
            11,
            sampling,
            &Device::flex()
        )
        .is_err()
    );
}

#[test]
fn a_sweep_trains_a_fresh_copy_per_run_and_draws_them() {
    let dir = shipped();
    let config = SweepConfig {
        betas: vec![0.1, 1.0],
        simulation: SimulationConfig {
            picks: 2,
            eval_every: 2,
            eval_samples: 4,
            seed: 5,
            ..SimulationConfig::default()
        },
        ..SweepConfig::default()
    };
    let mut sweep = Sweep::new(
        dir.model.clone(),
        dir.tokenizer().unwrap(),
        &config,
        &Device::flex(),
    )
    .unwrap();
    let mut runs_seen = Vec::new();
    while let Some(step) = block_on(sweep.step()).unwrap() {
        assert_eq!(step.runs, 2);
        runs_seen.push(step.run);
    }
    assert!(runs_seen.windows(2).all(|w| w[0] <= w[1]));
    let runs = sweep.runs();
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0].beta, runs[1].beta), (0.1, 1.0));
    for run in runs {
        // Fresh copies: each run starts where the other did, from the reference itself.
        let first = &run.points[0];
        assert_eq!(first.picks, 0);
        assert!(first.kl.abs() < 1e-6);
        assert_eq!(first.rate, runs[0].points[0].rate);
        assert!(run.points.iter().all(|p| p.kl >= 0.0));
        assert!(
            run.points
                .iter()
                .all(|p| p.rate_low <= p.rate && p.rate <= p.rate_high)
        );
    }
    let rows: usize = runs.iter().map(|r| r.points.len()).sum();
    let csv = report::sweep_csv(runs, "happy");
    assert_eq!(csv.lines().count(), 1 + rows + 2, "{csv}");
    assert!(csv.contains("\nhappy,best_of_2,"));
    let svg = report::sweep_svg(runs, "happy");
    // A line per run and the bound.
    assert_eq!(svg.matches("<polyline").count(), 3, "{svg}");
    assert!(svg.contains("β = 0.1") && svg.contains("β = 1"));
}
