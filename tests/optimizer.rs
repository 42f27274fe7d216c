//! AdamW and SGD against torch's update rules written out in f64, saved state against continuing in
//! memory, undo against never having stepped, and the f16 writer against known encodings.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use common::*;
use webdpo::block_on;
use webdpo::hf::safetensors::{Dtype, from_safetensors, parse_safetensors, to_safetensors};
use webdpo::model::{CausalLm, param_id};
use webdpo::train::optimizer::{Optim, Optimizer, OptimizerConfig};
use webdpo::train::{DpoTrainer, TrainConfig};

fn host(t: Tensor<1>) -> Vec<f64> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

/// Every parameter of `model`, flattened, in `named_tensors` order.
fn weights(model: &CausalLm) -> Vec<Vec<f64>> {
    model
        .named_tensors()
        .into_iter()
        .map(|(_, _, t)| host(t))
        .collect()
}

/// Three updates of a tiny model with `config`, each parameter checked against `reference`:
/// torch's rule on the host in f64, `(t, weight, grad, state) -> new weight`.
fn matches_torch(config: OptimizerConfig, reference: impl Fn(i32, f64, f64, &mut [f64; 2]) -> f64) {
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let (lr, scale) = (1e-2, 0.5);
    let mut optim = Optimizer::new(config);
    let mut model = tiny_model(3, &device).fork(&ad).train();
    let tokens = Tensor::<2, burn::tensor::Int>::from_data([[5i64, 9, 17, 3], [8, 8, 40, 2]], &ad);
    let n_params = model.named_tensors().len();
    let mut state: Vec<Vec<[f64; 2]>> = vec![Vec::new(); n_params];
    for t in 1..=3 {
        let loss = model.forward(tokens.clone(), None).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let before = weights(&model.valid());
        let g: Vec<Vec<f64>> = model
            .named_tensors()
            .iter()
            .map(|(name, shape, _)| {
                let id = param_id(name);
                let flat = |n: usize| {
                    if shape.len() == 1 {
                        grads.get::<1>(id).unwrap()
                    } else {
                        grads.get::<2>(id).unwrap().reshape([n])
                    }
                };
                host(flat(shape.iter().product()))
            })
            .collect();
        model = optim.step(lr, model, grads, scale);
        let after = weights(&model.valid());
        for p in 0..n_params {
            state[p].resize(g[p].len(), [0.0; 2]);
            for i in 0..g[p].len() {
                let expect = reference(t, before[p][i], g[p][i] * scale, &mut state[p][i]);
                assert_close(
                    after[p][i],
                    expect,
                    1e-6,
                    &format!("{:?} step {t}, parameter {p}, entry {i}", config.optim),
                );
            }
        }
    }
    assert_eq!(optim.steps, 3);
}

#[test]
fn adamw_matches_torch_update_rule() {
    let c = OptimizerConfig {
        optim: Optim::AdamW,
        beta1: 0.9,
        beta2: 0.99,
        epsilon: 1e-6,
        momentum: 0.0,
        weight_decay: 0.1,
    };
    let lr = 1e-2;
    matches_torch(c, |t, w, g, [m, v]| {
        *m = c.beta1 * *m + (1.0 - c.beta1) * g;
        *v = c.beta2 * *v + (1.0 - c.beta2) * g * g;
        let (c1, c2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        w * (1.0 - lr * c.weight_decay) - lr / c1 * *m / ((*v / c2).sqrt() + c.epsilon)
    });
}

#[test]
fn sgd_matches_torch_update_rule() {
    let c = OptimizerConfig {
        optim: Optim::Sgd,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
        momentum: 0.8,
        weight_decay: 0.1,
    };
    let lr = 1e-2;
    matches_torch(c, |t, w, g, [buf, _]| {
        let g = g + c.weight_decay * w;
        *buf = if t == 1 { g } else { c.momentum * *buf + g };
        w - lr * *buf
    });
}

fn trained(steps: usize) -> DpoTrainer {
    trained_with(
        steps,
        TrainConfig {
            learning_rate: 1e-2,
            ..TrainConfig::default()
        },
    )
}

fn trained_with(steps: usize, config: TrainConfig) -> DpoTrainer {
    let device = Device::flex();
    let mut trainer = DpoTrainer::new(tiny_model(0, &device), None, config, &device).unwrap();
    let batch = block_on(trainer.prepare(&tokenized_pairs(), tokenizer().pad_id())).unwrap();
    for _ in 0..steps {
        block_on(trainer.step(&batch)).unwrap();
    }
    trainer
}

fn policy_bytes(trainer: &DpoTrainer) -> Vec<u8> {
    block_on(to_safetensors(&trainer.policy(), Dtype::F32)).unwrap()
}

#[test]
fn saved_state_continues_exactly() {
    for optim in [Optim::AdamW, Optim::Sgd] {
        saved_state_continues_exactly_with(TrainConfig {
            learning_rate: 1e-2,
            optim,
            ..TrainConfig::default()
        });
    }
}

fn saved_state_continues_exactly_with(config: TrainConfig) {
    let device = Device::flex();
    let mut original = trained_with(2, config);
    let (weights, optimizer) = block_on(original.save_state()).unwrap();
    let mut reloaded = DpoTrainer::new(
        tiny_model(0, &device),
        None,
        original.config().clone(),
        &device,
    )
    .unwrap();
    let policy = from_safetensors(&tiny_config(), &weights, "model.safetensors", &device).unwrap();
    reloaded.load_state(policy, Some(&optimizer)).unwrap();
    assert_eq!(reloaded.steps(), 2);
    let batch = block_on(original.prepare(&tokenized_pairs(), tokenizer().pad_id())).unwrap();
    let a = block_on(original.step(&batch)).unwrap();
    let b = block_on(reloaded.step(&batch)).unwrap();
    assert_eq!(a.metrics, b.metrics);
    assert!(
        policy_bytes(&original) == policy_bytes(&reloaded),
        "the step after a reload differs from the step without one"
    );
}

#[test]
fn bad_optimizer_state_is_refused_and_changes_nothing() {
    let device = Device::flex();
    let mut trainer = trained_with(
        1,
        TrainConfig {
            learning_rate: 1e-2,
            optim: Optim::AdamW,
            ..TrainConfig::default()
        },
    );
    let before = policy_bytes(&trainer);
    let (weights, optimizer) = block_on(trainer.save_state()).unwrap();
    let policy =
        || from_safetensors(&tiny_config(), &weights, "model.safetensors", &device).unwrap();
    let err = trainer
        .load_state(policy(), Some(&optimizer[..optimizer.len() - 100]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("optimizer.safetensors") && err.contains("truncated"),
        "{err}"
    );
    let err = trainer
        .load_state(policy(), Some(&weights))
        .unwrap_err()
        .to_string();
    assert!(err.contains("step count"), "{err}");
    let sgd = trained_with(
        1,
        TrainConfig {
            optim: Optim::Sgd,
            ..TrainConfig::default()
        },
    );
    let (_, sgd_state) = block_on(sgd.save_state()).unwrap();
    let err = trainer
        .load_state(policy(), Some(&sgd_state))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("SGD state, but the optimizer is AdamW"),
        "{err}"
    );
    assert!(policy_bytes(&trainer) == before);
    assert_eq!(trainer.steps(), 1);
}

#[test]
fn undo_restores_weights_and_optimizer_exactly() {
    let mut undone = trained(1);
    let mut straight = trained(1);
    let batch = block_on(undone.prepare(&tokenized_pairs(), tokenizer().pad_id())).unwrap();
    let snapshot = undone.snapshot();
    let before = policy_bytes(&undone);
    block_on(undone.step(&batch)).unwrap();
    assert!(policy_bytes(&undone) != before);
    undone.restore(snapshot);
    assert!(
        policy_bytes(&undone) == before,
        "undo left different weights"
    );
    // Same optimizer moments: the next update is the one that would have happened anyway.
    block_on(undone.step(&batch)).unwrap();
    block_on(straight.step(&batch)).unwrap();
    assert!(policy_bytes(&undone) == policy_bytes(&straight));
}

#[test]
fn reset_returns_to_the_reference() {
    let mut trainer = trained(2);
    let reference = block_on(to_safetensors(trainer.reference().unwrap(), Dtype::F32)).unwrap();
    assert!(policy_bytes(&trainer) != reference);
    trainer.reset().unwrap();
    assert!(policy_bytes(&trainer) == reference);
    assert_eq!(trainer.steps(), 0);
    assert!(trainer.history().is_empty());
}

#[test]
fn f16_files_hold_half_precision_values() {
    let device = Device::flex();
    let model = tiny_model(1, &device);
    let bytes = block_on(to_safetensors(&model, Dtype::F16)).unwrap();
    let (tensors, _) = parse_safetensors(&bytes, "model.safetensors").unwrap();
    for (name, shape, t) in model.named_tensors() {
        let entry = &tensors[&name];
        assert_eq!((entry.dtype.as_str(), &entry.shape), ("F16", &shape));
        for (half, full) in entry.to_f32().iter().zip(host(t)) {
            // Round to nearest: within half a unit in the last of 11 significant bits.
            assert!(
                (*half as f64 - full).abs() <= full.abs() * 2f64.powi(-11) + 2f64.powi(-25),
                "{name}: {half} vs {full}"
            );
        }
    }
    // And the loaded model computes with those values.
    let loaded = from_safetensors(&tiny_config(), &bytes, "model.safetensors", &device).unwrap();
    assert_eq!(loaded.num_params(), model.num_params());
}
