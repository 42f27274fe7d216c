//! The analytic gradient of the DPO loss (burn autodiff through the whole model) against central
//! finite differences, in f64. Its own test binary: the f64 default is set once per process.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use common::*;
use webdpo::model::CausalLm;
use webdpo::train::dpo::{DpoConfig, DpoInputs, LossType, dpo_loss};
use webdpo::train::kto::{KtoInputs, kto_loss};
use webdpo::train::logps::{SequenceBatch, sequence_logps, token_logps_and_stats};
use webdpo::train::reference_free::{cpo_loss, orpo_loss};
use webdpo::train::{CpoConfig, CpoLoss, KtoConfig, KtoLoss, OrpoConfig, TokenizedRating, unpair};

type Weights = BTreeMap<String, (Vec<usize>, Vec<f64>)>;

fn weights(model: &CausalLm) -> Weights {
    model
        .named_tensors()
        .into_iter()
        .map(|(n, s, t)| {
            (
                n,
                (
                    s,
                    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap(),
                ),
            )
        })
        .collect()
}

fn build(w: &Weights, device: &Device) -> CausalLm {
    CausalLm::load(
        &tiny_config(),
        &mut |name, _| Ok(TensorData::new(w[name].1.clone(), w[name].0.clone())),
        device,
    )
    .unwrap()
}

/// The objectives checked: every DPO loss type, CPO (sigmoid, SimPO, AlphaPO, hinge, IPO), ORPO,
/// KTO (kto, apo_zero_unpaired).
#[derive(Debug)]
enum Objective {
    Dpo(DpoConfig),
    Cpo(CpoConfig),
    Orpo(OrpoConfig),
    Kto(KtoConfig),
}

fn objectives() -> Vec<Objective> {
    let dpo = LossType::ALL.into_iter().map(|loss_type| {
        let smooths = matches!(
            loss_type,
            LossType::ExoPair | LossType::Robust | LossType::Aot | LossType::AotUnpaired
        );
        Objective::Dpo(DpoConfig {
            label_smoothing: if smooths { 0.1 } else { 0.0 },
            ..DpoConfig::new(0.5, loss_type)
        })
    });
    let cpo = [
        (CpoLoss::Sigmoid, 0.0),
        (CpoLoss::Simpo, 0.0),
        (CpoLoss::Simpo, 0.5),
        (CpoLoss::Hinge, 0.0),
        (CpoLoss::Ipo, 0.0),
    ]
    .map(|(loss_type, alpha)| {
        Objective::Cpo(CpoConfig {
            beta: 0.5,
            loss_type,
            alpha,
            ..CpoConfig::default()
        })
    });
    let kto = [KtoLoss::Kto, KtoLoss::ApoZeroUnpaired].map(|loss_type| {
        Objective::Kto(KtoConfig {
            beta: 0.5,
            loss_type,
            desirable_weight: 1.5,
            ..KtoConfig::default()
        })
    });
    dpo.chain(cpo)
        .chain([Objective::Orpo(OrpoConfig { beta: 0.5 })])
        .chain(kto)
        .collect()
}

/// The rows an objective reads: concatenated pairs, or (KTO) the pairs unpaired with their KL
/// rows.
fn batch(objective: &Objective) -> SequenceBatch {
    match objective {
        Objective::Kto(c) => {
            let t = tokenizer();
            let ratings: Vec<TokenizedRating> = unpair(&pairs())
                .iter()
                .map(|r| TokenizedRating::new(&t, r).unwrap())
                .collect();
            SequenceBatch::rated(&ratings, c.loss_type.uses_kl(), 0, 128).unwrap()
        }
        _ => SequenceBatch::concatenated(&tokenized_pairs(), 0, 128).unwrap(),
    }
}

/// KTO's loss with its KL rows' log-probs under `frozen` (TRL computes them without gradient,
/// so the finite differences hold them at the unperturbed policy's values).
fn kto(
    policy: &CausalLm,
    frozen: &CausalLm,
    reference: &CausalLm,
    batch: &SequenceBatch,
    config: &KtoConfig,
    device: &Device,
) -> Tensor<1> {
    let n = if config.loss_type.uses_kl() {
        batch.rows / 2
    } else {
        batch.rows
    };
    let p = sequence_logps(policy, batch, device);
    let f = sequence_logps(frozen, batch, device).detach();
    let r = sequence_logps(reference, batch, device).detach();
    let inputs = KtoInputs {
        policy: p.slice(0..n),
        reference: r.clone().slice(0..n),
        kl_rows: config
            .loss_type
            .uses_kl()
            .then(|| (f.slice(n..2 * n), r.slice(n..2 * n))),
        labels: (0..n).map(|i| i < n / 2).collect(),
    };
    kto_loss(&inputs, config).losses.mean()
}

fn loss(
    policy: &CausalLm,
    reference: &CausalLm,
    batch: &SequenceBatch,
    objective: &Objective,
    device: &Device,
) -> Tensor<1> {
    let n = batch.rows / 2;
    let p = sequence_logps(policy, batch, device);
    let r = sequence_logps(reference, batch, device).detach();
    let counts = Tensor::<1>::from_data(TensorData::new(batch.counts(), [2 * n]), device);
    let whole_counts = TensorData::new(batch.whole_counts(), [2 * n]);
    let (_, whole, _) = token_logps_and_stats(policy, batch, device);
    let inputs = DpoInputs {
        policy_chosen: p.clone().slice(0..n),
        policy_chosen_raw: p.clone().slice(0..n),
        policy_rejected: p.slice(n..2 * n),
        reference_chosen: r.clone().slice(0..n),
        reference_rejected: r.slice(n..2 * n),
        chosen_tokens: counts.clone().slice(0..n),
        rejected_tokens: counts.slice(n..2 * n),
        chosen_whole: whole.slice(0..n),
        chosen_whole_tokens: Tensor::<1>::from_data(whole_counts, device).slice(0..n),
        pair_weights: None,
    };
    let losses = match objective {
        Objective::Dpo(c) => dpo_loss(&inputs, c).losses,
        Objective::Cpo(c) => cpo_loss(&inputs, c).out.losses,
        Objective::Orpo(c) => orpo_loss(&inputs, c).out.losses,
        Objective::Kto(_) => unreachable!("KTO's loss is `kto`"),
    };
    losses.mean()
}

/// The gradient of a parameter itself (a reshaped view would be a new graph node).
fn param_grad(policy: &CausalLm, name: &str, grads: &burn::tensor::Gradients) -> Vec<f64> {
    let data = match name {
        "model.embed_tokens.weight" => policy.embed_tokens.val().grad(grads),
        "model.layers.0.input_layernorm.weight" => {
            return policy.layers[0]
                .attn_norm
                .weight
                .val()
                .grad(grads)
                .unwrap()
                .into_data()
                .convert::<f64>()
                .try_to_vec()
                .unwrap();
        }
        "model.norm.weight" => {
            return policy
                .norm
                .weight
                .val()
                .grad(grads)
                .unwrap()
                .into_data()
                .convert::<f64>()
                .try_to_vec()
                .unwrap();
        }
        _ => policy
            .linears()
            .into_iter()
            .find(|l| format!("{}.weight", l.name) == name)
            .expect("a linear layer")
            .weight
            .val()
            .grad(grads)
            // Held `[in, out]`; the file's (and `weights`') order is `[out, in]`.
            .map(|g| g.transpose()),
    };
    data.expect("parameter has a gradient")
        .into_data()
        .convert::<f64>()
        .try_to_vec()
        .unwrap()
}

#[test]
fn dpo_gradient_matches_central_differences() {
    let mut device = Device::flex();
    device
        .configure(FloatDType::F64)
        .expect("flex computes in f64");
    // Policy ≠ reference, so every loss type is away from its kinks.
    let policy_w = weights(&tiny_model(1, &device));
    let reference = tiny_model(2, &device);
    let frozen = build(&policy_w, &device);
    for config in objectives() {
        let batch = batch(&config);
        let objective = |policy: &CausalLm, device: &Device| match &config {
            Objective::Kto(c) => kto(policy, &frozen, &reference, &batch, c, device),
            _ => loss(policy, &reference, &batch, &config, device),
        };
        let ad = device.clone().autodiff();
        let policy = build(&policy_w, &device).fork(&ad).train();
        let grads = objective(&policy, &ad).backward();
        for name in [
            "model.embed_tokens.weight",
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.1.self_attn.v_proj.weight",
            "model.layers.1.mlp.gate_proj.weight",
            "model.layers.0.input_layernorm.weight",
            "model.norm.weight",
            "lm_head.weight",
        ] {
            let grad = param_grad(&policy, name, &grads);
            // The two entries with the largest gradient, where a wrong gradient would show most.
            let mut order: Vec<usize> = (0..grad.len()).collect();
            order.sort_by(|&a, &b| grad[b].abs().total_cmp(&grad[a].abs()));
            for &k in &order[..2] {
                let h = 1e-5;
                let at = |delta: f64| {
                    let mut w = policy_w.clone();
                    w.get_mut(name).unwrap().1[k] += delta;
                    objective(&build(&w, &device), &device)
                        .into_data()
                        .convert::<f64>()
                        .try_to_vec::<f64>()
                        .unwrap()[0]
                };
                let numeric = (at(h) - at(-h)) / (2.0 * h);
                let tol = 1e-6 + 1e-4 * numeric.abs();
                assert!(
                    (grad[k] - numeric).abs() <= tol,
                    "{config:?}: ∂L/∂{name}[{k}] analytic {} vs numeric {numeric}",
                    grad[k]
                );
            }
        }
    }
}
