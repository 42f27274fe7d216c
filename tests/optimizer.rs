//! AdamW and SGD against torch's update rules written out in f64, saved state against continuing in
//! memory, undo against never having stepped, and the f16 writer against known encodings.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::*;
use webdpo::ModelConfig;
use webdpo::block_on;
use webdpo::hf::safetensors::{
    Dtype, from_safetensors, parse_safetensors, to_safetensors, write_safetensors,
};
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

/// Three updates of a model of `model` with `config`, each parameter checked against `reference`:
/// torch's rule on the host in f64, `(t, weight, grad, state) -> new weight`.
fn matches_torch(
    model: &ModelConfig,
    config: OptimizerConfig,
    reference: impl Fn(i32, f64, f64, &mut [f64; 2]) -> f64,
) {
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let (lr, scale) = (1e-2, 0.5);
    let mut optim = Optimizer::new(config);
    let mut model = CausalLm::init(model, 3, &device).unwrap().fork(&ad).train();
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
                // Linear weights are held `[in, out]`, their files' `[out, in]` transposed.
                let linear = model
                    .linears()
                    .iter()
                    .any(|l| format!("{}.weight", l.name) == *name);
                let flat = |n: usize| match (shape.len(), linear) {
                    (1, _) => grads.get::<1>(id).unwrap(),
                    (_, false) => grads.get::<2>(id).unwrap().reshape([n]),
                    (_, true) => grads.get::<2>(id).unwrap().transpose().reshape([n]),
                };
                host(flat(shape.iter().product()))
            })
            .collect();
        model = optim.step(lr, model, grads, scale);
        let after = weights(&model.valid());
        // The saved state holds torch's buffers, by torch's names, in each parameter's file layout.
        let saved = block_on(optim.to_safetensors(&model)).unwrap();
        let (saved, _) = parse_safetensors(&saved, "optimizer.safetensors").unwrap();
        let buffers: &[&str] = match config.optim {
            Optim::AdamW => &["exp_avg", "exp_avg_sq"],
            Optim::Sgd => &["momentum_buffer"],
        };
        for (p, (name, _, _)) in model.named_tensors().iter().enumerate() {
            state[p].resize(g[p].len(), [0.0; 2]);
            let saved: Vec<Vec<f32>> = buffers
                .iter()
                .map(|b| saved[&format!("{name}.{b}")].to_f32())
                .collect();
            for i in 0..g[p].len() {
                let what = format!("{:?} step {t}, {name}, entry {i}", config.optim);
                let expect = reference(t, before[p][i], g[p][i] * scale, &mut state[p][i]);
                assert_close(after[p][i], expect, 1e-6, &what);
                for (k, buffer) in saved.iter().enumerate() {
                    assert_close(buffer[i].into(), state[p][i][k], 1e-6, &what);
                }
            }
        }
    }
    assert_eq!(optim.steps, 3);
}

fn adamw_config() -> OptimizerConfig {
    OptimizerConfig {
        optim: Optim::AdamW,
        beta1: 0.9,
        beta2: 0.99,
        epsilon: 1e-6,
        momentum: 0.0,
        weight_decay: 0.1,
    }
}

/// torch's AdamW step (learning rate 1e-2) for one element.
fn adamw_reference(t: i32, w: f64, g: f64, [m, v]: &mut [f64; 2]) -> f64 {
    let (c, lr) = (adamw_config(), 1e-2);
    *m = c.beta1 * *m + (1.0 - c.beta1) * g;
    *v = c.beta2 * *v + (1.0 - c.beta2) * g * g;
    let (c1, c2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
    w * (1.0 - lr * c.weight_decay) - lr / c1 * *m / ((*v / c2).sqrt() + c.epsilon)
}

#[test]
fn adamw_matches_torch_update_rule() {
    matches_torch(&tiny_config(), adamw_config(), adamw_reference);
}

/// The CPU's fused step splits each weight into pieces of 64K elements over the pool's threads:
/// weights of two pieces (the second partial), on a pool of two, still follow torch's rule
/// element by element, their state with them.
#[test]
fn a_step_split_over_threads_matches_torch_update_rule() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    // Embedding 259 × 288 and MLP 288 × 256: more than 64K elements each.
    let wide = ModelConfig::byte_level(288, 1, 4, 256);
    pool.install(|| matches_torch(&wide, adamw_config(), adamw_reference));
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
    matches_torch(&tiny_config(), c, |t, w, g, [buf, _]| {
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

/// State saved while linear weights were held `[out, in]` has no layout entry, and every linear
/// weight's buffers in that order, GPT-2's Conv1D ones too (whose shape says `[in, out]`). It
/// loads as the state it was: saved again, it is today's file.
#[test]
fn state_saved_in_the_old_order_loads_as_the_same_state() {
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let gpt2 = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/hf/gpt2/config.json"
    );
    let gpt2 = ModelConfig::from_json(&std::fs::read_to_string(gpt2).unwrap()).unwrap();
    let adamw = OptimizerConfig {
        optim: Optim::AdamW,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
        momentum: 0.0,
        weight_decay: 0.0,
    };
    for config in [tiny_config(), gpt2] {
        let model = CausalLm::init(&config, 0, &device)
            .unwrap()
            .fork(&ad)
            .train();
        let tokens = Tensor::<2, Int>::from_data([[5i64, 9, 17, 3]], &ad);
        let loss = model.forward(tokens, None).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let mut optim = Optimizer::new(adamw);
        let model = optim.step(1e-2, model, grads, 1.0);
        let saved = block_on(optim.to_safetensors(&model)).unwrap();

        let (tensors, metadata) = parse_safetensors(&saved, "optimizer.safetensors").unwrap();
        let conv1d: Vec<String> = model
            .linears()
            .iter()
            .filter(|l| l.conv1d)
            .map(|l| format!("{}.weight.", l.name))
            .collect();
        let old_tensors: Vec<_> = tensors
            .iter()
            .map(|(name, entry)| {
                let mut values = entry.to_f32();
                if conv1d.iter().any(|w| name.starts_with(w)) {
                    let (d_in, d_out) = (entry.shape[0], entry.shape[1]);
                    values = (0..d_out * d_in)
                        .map(|k| values[(k % d_in) * d_out + k / d_in])
                        .collect();
                }
                let n = values.len();
                let t = Tensor::<1>::from_data(TensorData::new(values, [n]), &device);
                (name.clone(), entry.shape.clone(), t)
            })
            .collect();
        let old_metadata: Vec<_> = metadata
            .into_iter()
            .filter(|(key, _)| key != "layout")
            .collect();
        let old = block_on(write_safetensors(&old_tensors, &old_metadata, Dtype::F32)).unwrap();
        assert!(
            config.arch() != webdpo::model::Arch::Gpt2 || old != saved,
            "the GPT-2 file's old order differs from today's"
        );

        let loaded =
            Optimizer::from_safetensors(adamw, &model, &old, "optimizer.safetensors", &device)
                .unwrap();
        assert!(
            block_on(loaded.to_safetensors(&model)).unwrap() == saved,
            "{:?}: state saved in the old order loads as different state",
            config.arch()
        );
    }
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
