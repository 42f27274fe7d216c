//! The DPO update against independent truth: the step-1 invariant of every objective, TRL's
//! metric definitions, the skip guard, replay, KTO's rating batches, and training that moves the
//! margin. The objectives' formulas are in `objectives.rs`.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use webdpo::block_on;
use webdpo::hf::safetensors::{Dtype, to_safetensors};
use webdpo::train::dpo::{DpoConfig, LossType};
use webdpo::train::optimizer::Optim;
use webdpo::train::{
    DpoTrainer, KtoConfig, KtoLoss, TokenizedRating, TrainConfig, Trainer, unpair,
};

#[test]
fn step_one_with_policy_equal_to_reference() {
    let device = Device::flex();
    let ln2 = std::f64::consts::LN_2;
    let eps = 1e-3;
    for loss_type in LossType::ALL {
        // EXO needs ε > 0; the AOT losses read it too and stay at ln 2.
        let label_smoothing = if loss_type == LossType::ExoPair {
            eps
        } else {
            0.0
        };
        let config = TrainConfig {
            dpo: DpoConfig {
                label_smoothing,
                ..DpoConfig::new(0.1, loss_type)
            },
            ..TrainConfig::default()
        };
        let mut trainer = DpoTrainer::new(tiny_model(0, &device), None, config, &device).unwrap();
        let batch = block_on(trainer.prepare(&tokenized_pairs(), 0)).unwrap();
        let report = block_on(trainer.step(&batch)).unwrap();
        let m = report.metrics;
        // At π = π_ref every log-ratio is 0; SFT's loss is the chosen tokens' mean NLL.
        let chosen_tokens: f32 = batch.sequences.counts()[..batch.n_pairs].iter().sum();
        let sft = -report
            .values
            .policy_chosen
            .iter()
            .map(|&v| v as f64)
            .sum::<f64>()
            / chosen_tokens as f64;
        let expect = match loss_type {
            LossType::Sigmoid
            | LossType::Robust
            | LossType::Aot
            | LossType::AotUnpaired
            | LossType::SigmoidNorm => ln2,
            LossType::Hinge | LossType::ApoZero | LossType::ApoDown => 1.0,
            LossType::Ipo => (1.0f64 / 0.2).powi(2),
            LossType::ExoPair => -ln2 - 0.5 * (eps * (1.0 - eps)).ln(),
            LossType::NcaPair | LossType::BcoPair => 2.0 * ln2,
            LossType::SppoHard => 2.0 * 5.0f64.powi(2),
            LossType::Discopop => (ln2 + 1.0) / 2.0,
            LossType::Sft => sft,
        };
        assert_close(
            m.loss,
            expect,
            1e-6 * expect,
            &format!("{loss_type} step-1 loss"),
        );
        assert_eq!(
            (m.rewards_chosen, m.rewards_rejected, m.rewards_margins),
            (0.0, 0.0, 0.0),
            "{loss_type}: rewards at step 1"
        );
        assert_eq!(
            m.rewards_accuracies, 0.0,
            "ties are not accurate (TRL counts chosen > rejected)"
        );
        assert!(m.logps_chosen < 0.0 && m.logps_rejected < 0.0);
        assert!(m.grad_norm.unwrap() > 0.0 && report.skipped.is_none());
        assert!(report.values.h.iter().all(|&h| h == 0.0));
        assert!(report.values.sigma.iter().all(|&s| s == 0.5));
    }
}

#[test]
fn metrics_follow_trl_definitions() {
    let device = Device::flex();
    let config = TrainConfig::default();
    // A policy that differs from its reference, so rewards are non-zero.
    let trainer = DpoTrainer::new(
        tiny_model(1, &device),
        Some(tiny_model(2, &device)),
        config.clone(),
        &device,
    )
    .unwrap();
    let batch = block_on(trainer.prepare(&tokenized_pairs(), 0)).unwrap();
    let v = block_on(trainer.evaluate(&batch)).unwrap();
    let m = v.metrics();
    let n = v.losses.len() as f64;
    let beta = config.dpo.beta;
    let mut expect = [0.0f64; 5];
    for i in 0..v.losses.len() {
        let (pc, pr, rc, rr) = (
            v.policy_chosen[i] as f64,
            v.policy_rejected[i] as f64,
            v.reference_chosen[i] as f64,
            v.reference_rejected[i] as f64,
        );
        // The app's default objective, sigmoid.
        expect[0] += -ln_sigmoid(beta * ((pc - rc) - (pr - rr))) / n;
        expect[1] += beta * (pc - rc) / n;
        expect[2] += beta * (pr - rr) / n;
        expect[3] += (beta * (pc - rc) > beta * (pr - rr)) as u8 as f64 / n;
        expect[4] += (beta * (pc - rc) - beta * (pr - rr)) / n;
        // What the teaching view shows: the margin h and σ(β·h), as the report carries them.
        let h = (pc - rc) - (pr - rr);
        assert_close(v.h[i] as f64, h, 1e-4, "h");
        assert_close(
            v.sigma[i] as f64,
            1.0 / (1.0 + (-beta * h).exp()),
            1e-6,
            "σ(βh)",
        );
    }
    assert_close(m.loss, expect[0], 1e-5, "loss");
    assert_close(m.rewards_chosen, expect[1], 1e-5, "rewards/chosen");
    assert_close(m.rewards_rejected, expect[2], 1e-5, "rewards/rejected");
    assert_close(m.rewards_accuracies, expect[3], 1e-12, "rewards/accuracies");
    assert_close(m.rewards_margins, expect[4], 1e-5, "rewards/margins");
    let json = serde_json::to_value(m).unwrap();
    for key in [
        "loss",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "rewards/margins",
        "logps/chosen",
        "logps/rejected",
    ] {
        assert!(json.get(key).is_some(), "metric {key} missing from {json}");
    }
}

#[test]
fn repeated_updates_raise_the_margin() {
    for (optim, learning_rate) in [(Optim::AdamW, 1e-3), (Optim::Sgd, 0.1)] {
        repeated_updates_raise_the_margin_with(TrainConfig {
            optim,
            learning_rate,
            steps_per_pair: 8,
            ..TrainConfig::default()
        });
    }
}

fn repeated_updates_raise_the_margin_with(config: TrainConfig) {
    let device = Device::flex();
    let mut trainer =
        DpoTrainer::new(tiny_model(0, &device), None, config.clone(), &device).unwrap();
    let batch = block_on(trainer.prepare(&tokenized_pairs()[..1], 0)).unwrap();
    // Sampling and evaluating in between (as the app does) must not freeze the policy.
    let _ = block_on(trainer.evaluate(&batch)).unwrap();
    let _ = trainer.policy();
    let reports = block_on(trainer.train_batch(&batch)).unwrap();
    assert_eq!(reports.len(), 8);
    let after = block_on(trainer.evaluate(&batch)).unwrap().metrics();
    let first = reports[0].metrics;
    assert!(
        after.rewards_margins > first.rewards_margins + 0.1,
        "{:?}: margin {} → {}",
        config.optim,
        first.rewards_margins,
        after.rewards_margins
    );
    assert!(
        after.loss < first.loss - 0.05,
        "loss {} → {}",
        first.loss,
        after.loss
    );
    for w in reports.windows(2) {
        assert!(
            w[1].metrics.loss < w[0].metrics.loss,
            "loss rose between steps: {:?}",
            reports.iter().map(|r| r.metrics.loss).collect::<Vec<_>>()
        );
    }
    assert_eq!(after.rewards_accuracies, 1.0);
}

#[test]
fn non_finite_update_is_refused_and_weights_are_untouched() {
    let device = Device::flex();
    // A corrupt weight (one NaN in the embedding of a token every sequence uses) poisons the loss.
    let clean = tiny_model(0, &device);
    let mut data = clean
        .embed_tokens
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let d = tiny_config().hidden_size;
    data[d] = f32::NAN; // token 1 = BOS, first in every prompt
    let mut poisoned = clean.clone();
    poisoned.embed_tokens = burn::module::Param::from_tensor(Tensor::from_data(
        TensorData::new(data, [tiny_config().vocab_size, d]),
        &device,
    ));
    let mut trainer =
        DpoTrainer::new(poisoned, Some(clean), TrainConfig::default(), &device).unwrap();
    let batch = block_on(trainer.prepare(&tokenized_pairs(), 0)).unwrap();
    let before = block_on(to_safetensors(&trainer.policy(), Dtype::F32)).unwrap();
    let report = block_on(trainer.step(&batch)).unwrap();
    assert!(
        report.skipped.as_deref().unwrap().contains("skipped"),
        "{:?}",
        report.skipped
    );
    assert!(!report.metrics.loss.is_finite());
    let after = block_on(to_safetensors(&trainer.policy(), Dtype::F32)).unwrap();
    assert!(before == after, "weights changed by a refused update");
}

#[test]
fn settings_outside_their_range_are_refused() {
    let device = Device::flex();
    for bad in [
        TrainConfig {
            dpo: DpoConfig {
                beta: f64::NAN,
                ..DpoConfig::default()
            },
            ..TrainConfig::default()
        },
        TrainConfig {
            dpo: DpoConfig {
                beta: 0.0,
                ..DpoConfig::default()
            },
            ..TrainConfig::default()
        },
        TrainConfig {
            dpo: DpoConfig {
                label_smoothing: 0.5,
                ..DpoConfig::new(0.1, LossType::Robust)
            },
            ..TrainConfig::default()
        },
        TrainConfig {
            learning_rate: -1.0,
            ..TrainConfig::default()
        },
        TrainConfig {
            steps_per_pair: 0,
            ..TrainConfig::default()
        },
        TrainConfig {
            steps_per_pair: 100_000,
            ..TrainConfig::default()
        },
        TrainConfig {
            dpo: DpoConfig {
                beta: 1e308,
                ..DpoConfig::default()
            },
            ..TrainConfig::default()
        },
    ] {
        let err = DpoTrainer::new(tiny_model(0, &device), None, bad, &device)
            .err()
            .expect("refused");
        assert!(err.to_string().starts_with("invalid setting"), "{err}");
    }
    assert!(
        "dpo"
            .parse::<LossType>()
            .unwrap_err()
            .to_string()
            .contains("sigmoid, hinge, ipo, exo_pair, nca_pair, robust")
    );
}

#[test]
fn a_pick_trains_on_itself_and_recent_picks() {
    let device = Device::flex();
    let config = TrainConfig {
        replay_pairs: 2,
        ..TrainConfig::default()
    };
    let mut trainer = DpoTrainer::new(tiny_model(0, &device), None, config, &device).unwrap();
    let pairs = tokenized_pairs();
    let first = block_on(trainer.learn(pairs[0].clone(), 0)).unwrap();
    assert_eq!(first[0].values.losses.len(), 1);
    let second = block_on(trainer.learn(pairs[1].clone(), 0)).unwrap();
    assert_eq!(
        second[0].values.losses.len(),
        2,
        "the new pick and one earlier pick"
    );
    // values[0] is the new pick: its reference log-prob is that of pair 1 alone.
    let alone = block_on(trainer.prepare(&pairs[1..2], 0)).unwrap();
    assert_eq!(
        second[0].values.reference_chosen[0],
        alone.reference_logps[0]
    );
    assert_eq!(trainer.history().len(), 2);
}

/// The app's 👍/👎: with `kto` a first rating waits for a second (TRL's reference point needs two
/// rows), then each rating trains on a batch of itself and the most recent ones; the desirable
/// responses' reward rises, the undesirable's falls; undo forgets the rating.
#[test]
fn ratings_train_kto_on_a_batch_of_recent_ratings() {
    let device = Device::flex();
    let config = TrainConfig {
        trainer: Trainer::Kto,
        kto: KtoConfig {
            beta: 0.5,
            ..KtoConfig::default()
        },
        rating_batch: 3,
        learning_rate: 0.5,
        ..TrainConfig::default()
    };
    let mut trainer = DpoTrainer::new(tiny_model(0, &device), None, config, &device).unwrap();
    let t = tokenizer();
    let ratings: Vec<TokenizedRating> = unpair(&pairs())
        .iter()
        .map(|r| TokenizedRating::new(&t, r).unwrap())
        .collect();
    // Desirable, undesirable, desirable, undesirable.
    let order = [0, 2, 1, 3].map(|i| ratings[i].clone());
    assert!(
        block_on(trainer.learn_rated(order[0].clone(), 0))
            .unwrap()
            .is_empty()
    );
    assert_eq!(trainer.ratings().len(), 1, "kept for the next batch");
    let second = block_on(trainer.learn_rated(order[1].clone(), 0)).unwrap();
    assert_eq!(
        second[0].values.labels,
        [false, true],
        "the new rating first"
    );
    let before = trainer.snapshot();
    let third = block_on(trainer.learn_rated(order[2].clone(), 0)).unwrap();
    assert_eq!(third[0].values.labels.len(), 3);
    trainer.restore(before);
    assert_eq!(trainer.ratings().len(), 2, "undo forgets the rating");
    for rating in &order[2..] {
        block_on(trainer.learn_rated(rating.clone(), 0)).unwrap();
    }
    for _ in 0..5 {
        let batch = block_on(trainer.prepare_rated(&ratings, 0)).unwrap();
        block_on(trainer.train_rated(&batch)).unwrap();
    }
    let batch = block_on(trainer.prepare_rated(&ratings, 0)).unwrap();
    let m = block_on(trainer.evaluate_rated(&batch)).unwrap().metrics();
    assert!(
        m.rewards_chosen.unwrap() > 0.0 && m.rewards_rejected.unwrap() < 0.0,
        "{m:?}"
    );

    let mut pairwise = DpoTrainer::new(
        tiny_model(0, &device),
        None,
        TrainConfig::default(),
        &device,
    )
    .unwrap();
    let err = block_on(pairwise.learn_rated(order[0].clone(), 0)).unwrap_err();
    assert!(err.to_string().contains("ratings train with KTO"), "{err}");
    assert!(
        pairwise.ratings().is_empty(),
        "a refused rating is not kept"
    );
    let apo = TrainConfig {
        trainer: Trainer::Kto,
        kto: KtoConfig {
            loss_type: KtoLoss::ApoZeroUnpaired,
            ..KtoConfig::default()
        },
        ..TrainConfig::default()
    };
    pairwise.set_config(apo).unwrap();
    let alone = block_on(pairwise.learn_rated(order[0].clone(), 0)).unwrap();
    assert_eq!(
        alone[0].values.labels,
        [true],
        "apo_zero_unpaired trains on one"
    );
    // A rating batch of one would keep every `kto` rating waiting: refused.
    let lone = TrainConfig {
        trainer: Trainer::Kto,
        rating_batch: 1,
        ..TrainConfig::default()
    };
    let err = lone.validate().unwrap_err().to_string();
    assert!(err.contains("at least 2 ratings"), "{err}");
}

/// CPO and ORPO without LoRA keep no reference: the policy's initial weights are not held twice,
/// and what would need them (reset, DPO, the reference's token scores) is refused with the reason;
/// the update itself runs.
#[test]
fn reference_free_training_holds_no_reference() {
    let device = Device::flex();
    let cpo = TrainConfig {
        trainer: Trainer::Cpo,
        ..TrainConfig::default()
    };
    let mut trainer = DpoTrainer::new(tiny_model(0, &device), None, cpo, &device).unwrap();
    let err = trainer.reference().unwrap_err().to_string();
    assert!(err.contains("reference-free"), "{err}");
    let batch = block_on(trainer.prepare(&tokenized_pairs(), 0)).unwrap();
    assert!(!batch.reference_run);
    assert!(block_on(trainer.step(&batch)).unwrap().skipped.is_none());
    assert!(trainer.reset().is_err(), "nothing to reset to");
    assert!(
        trainer.set_config(TrainConfig::default()).is_err(),
        "DPO needs a reference"
    );
    let rows = [(&[1u32, 2][..], &[3u32][..])];
    assert!(block_on(trainer.token_logps(&rows, 0)).is_err());
    // Given one (or with LoRA, where it is the shared base), it is kept.
    let orpo = TrainConfig {
        trainer: Trainer::Orpo,
        ..TrainConfig::default()
    };
    let with = DpoTrainer::new(
        tiny_model(0, &device),
        Some(tiny_model(0, &device)),
        orpo,
        &device,
    );
    assert!(with.unwrap().reference().is_ok());
}
