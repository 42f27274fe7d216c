//! The shipped story-world model (www/models/storyworld): it writes well-formed stories, both
//! behaviours of every steerable attribute are there to steer, and its tokenizer round-trips
//! the corpus.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use burn::tensor::Device;
use webdpo::block_on;
use webdpo::generate::SamplingConfig;
use webdpo::hf::model_dir::ModelDir;
use webdpo::storyworld::oracle::Problem;
use webdpo::storyworld::simulate::{Rates, sample_stories};
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
        ("happy", rates.happy),
        ("on_topic", rates.on_topic),
        ("long", rates.long),
        ("kind", rates.kind),
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
    assert!(rates.well_formed >= 0.95, "{rates:?}; e.g. {bad:?}");
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
