//! The sequence KL estimate against the exact KL, enumerated over every completion of a tiny
//! model (a vocabulary of 4, completions of up to 3 tokens).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::assert_close;
use webdpo::block_on;
use webdpo::model::CausalLm;
use webdpo::train::{KlEstimate, sequence_kl};

const VOCAB: usize = 4;
const EOS: u32 = 3;
const LONGEST: usize = 3;

fn model(seed: u64, device: &Device) -> CausalLm {
    let mut c = webdpo::ModelConfig::new(VOCAB, 16, 1, 2, 32);
    c.eos_token_id = Some(EOS);
    c.max_position_embeddings = 16;
    CausalLm::init(&c, seed, device).unwrap()
}

/// log p(token | prompt, prefix) for each next token, in f64 from the model's logits.
fn next_logps(model: &CausalLm, ids: &[u32], device: &Device) -> Vec<f64> {
    let data = TensorData::new(ids.iter().map(|&i| i as i64).collect(), [1, ids.len()]);
    let logits = model.forward(Tensor::<2, Int>::from_data(data, device), None);
    let all = logits
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .unwrap();
    let last = &all[(ids.len() - 1) * VOCAB..ids.len() * VOCAB];
    let max = last.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_z = max + last.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
    last.iter().map(|l| l - log_z).collect()
}

/// Every completion: ended by EOS within `LONGEST` tokens, or cut there.
fn completions() -> Vec<Vec<u32>> {
    let mut done = Vec::new();
    let mut open: Vec<Vec<u32>> = vec![vec![]];
    for _ in 0..LONGEST {
        let mut next = Vec::new();
        for prefix in open {
            for t in 0..VOCAB as u32 {
                let mut y = prefix.clone();
                y.push(t);
                if t == EOS { done.push(y) } else { next.push(y) }
            }
        }
        open = next;
    }
    done.extend(open);
    done
}

#[test]
fn sequence_kl_has_the_exact_kl_as_its_mean_over_the_policy() {
    let device = Device::flex();
    let (policy, reference) = (model(1, &device), model(2, &device));
    let prompt = vec![0u32, 1];
    let ys = completions();
    // log π(y) and log π_ref(y) of each completion, token by token in f64.
    let logp = |m: &CausalLm, y: &[u32]| {
        (0..y.len())
            .map(|t| next_logps(m, &[&prompt[..], &y[..t]].concat(), &device)[y[t] as usize])
            .sum::<f64>()
    };
    let probs: Vec<f64> = ys.iter().map(|y| logp(&policy, y).exp()).collect();
    assert_close(
        probs.iter().sum(),
        1.0,
        1e-9,
        "the completions are every outcome",
    );
    let exact: f64 = ys
        .iter()
        .zip(&probs)
        .map(|(y, p)| p * (logp(&policy, y) - logp(&reference, y)))
        .sum();
    assert!(exact > 0.0);

    let rows: Vec<(&[u32], &[u32])> = ys.iter().map(|y| (&prompt[..], &y[..])).collect();
    let estimate = block_on(sequence_kl(&policy, &reference, &rows, 0, &device)).unwrap();
    assert!(
        estimate.per_sample.iter().all(|&k| k >= 0.0),
        "never negative"
    );
    let expected: f64 = estimate
        .per_sample
        .iter()
        .zip(&probs)
        .map(|(k, p)| k * p)
        .sum();
    assert_close(
        expected,
        exact,
        1e-5 * exact.max(1.0),
        "E_π[Σ_t KL_t] = KL(π‖π_ref)",
    );
    // Each sample's value is its positions' full-vocabulary KL, summed.
    let y = &ys[ys.len() - 1];
    let by_hand: f64 = (0..y.len())
        .map(|t| {
            let at = [&prompt[..], &y[..t]].concat();
            let (p, r) = (
                next_logps(&policy, &at, &device),
                next_logps(&reference, &at, &device),
            );
            (0..VOCAB).map(|v| p[v].exp() * (p[v] - r[v])).sum::<f64>()
        })
        .sum();
    assert_close(
        estimate.per_sample[ys.len() - 1],
        by_hand,
        1e-5,
        "one sample's KL",
    );
}

#[test]
fn the_estimate_reports_mean_and_standard_error() {
    let e = KlEstimate::of(vec![1.0, 2.0, 4.0]);
    let mean = 7.0 / 3.0;
    let var = ((1.0 - mean) * (1.0f64 - mean)
        + (2.0 - mean) * (2.0 - mean)
        + (4.0 - mean) * (4.0 - mean))
        / 2.0;
    assert_close(e.mean, mean, 1e-12, "mean");
    assert_close(e.stderr, (var / 3.0).sqrt(), 1e-12, "standard error");
    assert_eq!(KlEstimate::of(vec![0.5]).stderr, 0.0);
}
