//! The story world's generator and oracle: the oracle reads back exactly what the generator
//! wrote, attribute rates leave both behaviours to learn, and the corpus does not repeat itself.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashSet;

use webdpo::storyworld::oracle::{Oracle, Problem};
use webdpo::storyworld::{FIRST_NAMES, NEWCOMER_NAMES, StoryWorld, format_prompt};

#[test]
fn oracle_agrees_with_the_generator_on_every_corpus_story() {
    let oracle = Oracle::new();
    let mut world = StoryWorld::new(1);
    for i in 0..1000 {
        let ex = world.example();
        let j = oracle.judge(&ex.prompt, &ex.story);
        let a = ex.attributes;
        assert!(
            j.well_formed,
            "story {i} judged ill-formed ({:?}): {}",
            j.problem, ex.story
        );
        assert_eq!(
            (j.happy, j.kind, j.long, j.on_topic),
            (Some(a.happy), Some(a.kind), a.long, Some(a.on_topic)),
            "story {i}: {} / {}",
            ex.prompt,
            ex.story
        );
        assert!(
            (4..=7).contains(&j.sentences),
            "story {i} has {} sentences",
            j.sentences
        );
        assert!(
            oracle.parse_prompt(&format_prompt(&ex.prompt)).is_some(),
            "prompt {i} unreadable: {}",
            ex.prompt
        );
    }
}

#[test]
fn attributes_are_balanced_and_stories_unique() {
    let mut world = StoryWorld::new(2);
    let n = 10_000;
    let examples: Vec<_> = (0..n).map(|_| world.example()).collect();
    let rate = |f: &dyn Fn(&webdpo::storyworld::Attributes) -> bool| {
        examples.iter().filter(|e| f(&e.attributes)).count() as f64 / n as f64
    };
    for (name, r) in [
        ("happy", rate(&|a| a.happy)),
        ("on_topic", rate(&|a| a.on_topic)),
        ("long", rate(&|a| a.long)),
        ("kind", rate(&|a| a.kind)),
    ] {
        assert!((0.3..=0.7).contains(&r), "{name} rate {r}");
    }
    let unique: HashSet<&str> = examples.iter().map(|e| e.story.as_str()).collect();
    assert_eq!(unique.len(), n, "stories repeat");
    assert!(
        examples
            .iter()
            .all(|e| !e.story.contains(" a a") && !e.story.contains(" a orange"))
    );
    // The two characters' names come from disjoint lists.
    assert!(FIRST_NAMES.iter().all(|n| !NEWCOMER_NAMES.contains(n)));
}

#[test]
fn oracle_refuses_broken_and_foreign_text() {
    let oracle = Oracle::new();
    let mut world = StoryWorld::new(3);
    let ex = world.example();
    // Cut before the ending: no ending, not well-formed.
    let cut = ex
        .story
        .rsplit_once(". ")
        .map(|(head, _)| format!("{head}."))
        .unwrap();
    let j = oracle.judge(&ex.prompt, &cut);
    assert!(!j.well_formed && j.happy.is_none(), "{j:?}");
    let j = oracle.judge(&ex.prompt, "The quick brown fox jumps over the lazy dog.");
    assert!(!j.well_formed && j.on_topic.is_none() && j.sentences == 0);
    // A story that asks for one animal but tells of another is off-topic.
    let j = oracle.judge(
        "Write a story about a fox and a red kite.",
        "Once upon a time, a shy owl named Pip found a red kite under a big tree. Soon, a cat \
         named Tess came by. \"You are my best friend,\" said Tess. In the end, Pip hugged the \
         kite and smiled.",
    );
    assert!(
        j.well_formed
            && j.on_topic == Some(false)
            && j.happy == Some(true)
            && j.kind == Some(true)
            && !j.long,
        "{j:?}"
    );
    // A newcomer with the first character's name is no newcomer, whatever list the name is from.
    let j = oracle.judge(
        "Write a story about an owl and a red kite.",
        "Once upon a time, a shy owl named Pip found a red kite under a big tree. Soon, a cat \
         named Pip came by. \"You are my best friend,\" said Pip. In the end, Pip hugged the \
         kite and smiled.",
    );
    assert_eq!(j.problem, Some(Problem::SecondCharacterNotNew));
    assert!(oracle.parse_prompt("Write a poem about the sea.").is_none());
    assert_eq!(
        oracle
            .judge("Write a poem about the sea.", &ex.story)
            .on_topic,
        None,
        "no request, no topic"
    );
}

#[test]
fn pretraining_batches_are_fresh_draws_of_similar_length() {
    use webdpo::train::pretrain::batch_indices;
    let lengths: Vec<usize> = (0..40_000).map(|i| 60 + (i * 7919) % 50).collect();
    let batches: Vec<Vec<usize>> = (0..64)
        .map(|step| batch_indices(0, step, 16, &lengths))
        .collect();
    assert_eq!(
        batches[5],
        batch_indices(0, 5, 16, &lengths),
        "a step's batch depends only on (seed, step)"
    );
    // Windows draw independently: 1,024 draws from 40,000 rows repeat about 13 rows, not hundreds.
    let distinct: HashSet<usize> = batches.iter().flatten().copied().collect();
    assert!(
        distinct.len() > 990,
        "{} distinct rows of 1024 drawn",
        distinct.len()
    );
    // Sorting within a window leaves little padding: the spread of lengths in a batch is small.
    for b in &batches {
        let (lo, hi) = (
            b.iter().map(|&i| lengths[i]).min().unwrap(),
            b.iter().map(|&i| lengths[i]).max().unwrap(),
        );
        assert!(hi - lo <= 10, "batch lengths {lo}..{hi}");
    }
}
