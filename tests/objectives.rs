//! Every objective against TRL 1.16's source written again in f64: the 15 DPO losses, loss lists,
//! f-divergences, TRL's refusals, the token metrics, WPO, LD-DPO, CPO/SimPO/AlphaPO, ORPO, KTO and
//! RPO as the sft loss. One file, long, because the objectives share its f64 helpers (`trl_loss`,
//! `row_sums`).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::*;
use webdpo::CausalLm;
use webdpo::block_on;
use webdpo::train::dpo::{DpoConfig, DpoInputs, FDivergence, LossType, dpo_loss};
use webdpo::train::logps::SequenceBatch;
use webdpo::train::{
    CpoConfig, CpoLoss, DpoTrainer, KtoConfig, KtoLoss, KtoMetrics, TokenizedRating, TrainConfig,
    Trainer, unpair,
};

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn sorted(v: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(f64::total_cmp);
    v
}

/// A batch of pairs: sequence log-probs and completion token counts.
struct Batch<'a> {
    pc: &'a [f64],
    pr: &'a [f64],
    rc: &'a [f64],
    rr: &'a [f64],
    nc: &'a [f64],
    nr: &'a [f64],
}

/// TRL 1.16's `_compute_loss`, one loss type, written out in f64 from its source: the per-pair
/// losses of a batch (in sorted order for the AOT losses, whose pairs TRL sorts).
fn trl_loss(loss_type: LossType, x: &Batch, c: &DpoConfig) -> Vec<f64> {
    let (b, e, n) = (c.beta, c.label_smoothing, x.pc.len());
    let cl: Vec<f64> = (0..n).map(|i| x.pc[i] - x.rc[i]).collect();
    let rl: Vec<f64> = (0..n).map(|i| x.pr[i] - x.rr[i]).collect();
    let f = |t: f64| match c.f_divergence_type {
        FDivergence::ReverseKl => t,
        FDivergence::ForwardKl => 1.0 - (-t).exp(),
        FDivergence::JsDivergence => std::f64::consts::LN_2 + ln_sigmoid(t),
        FDivergence::AlphaDivergence => {
            let a = c.f_alpha_divergence_coef;
            (((a - 1.0) * t).min(80.0).exp() - 1.0) / (a - 1.0)
        }
    };
    let d = |i: usize| f(cl[i]) - f(rl[i]);
    let avg = |i: usize| f(cl[i]) / x.nc[i].max(1.0) - f(rl[i]) / x.nr[i].max(1.0);
    let smoothed = |delta: f64| -ln_sigmoid(b * delta) * (1.0 - e) - ln_sigmoid(-b * delta) * e;
    let aot = |p: Vec<f64>, q: Vec<f64>| (0..n).map(|i| smoothed(p[i] - q[i])).collect();
    match loss_type {
        LossType::Aot => {
            let policy = sorted((0..n).map(|i| x.pc[i] - x.pr[i]));
            let reference = sorted((0..n).map(|i| x.rc[i] - x.rr[i]));
            return aot(policy, reference);
        }
        LossType::AotUnpaired => {
            return aot(sorted(cl.iter().copied()), sorted(rl.iter().copied()));
        }
        LossType::Sft => {
            let nll = -x.pc.iter().sum::<f64>() / x.nc.iter().sum::<f64>();
            return vec![nll; n];
        }
        _ => {}
    }
    let per_pair = |i: usize| match loss_type {
        LossType::Sigmoid => -ln_sigmoid(b * d(i)),
        LossType::Hinge => (1.0 - b * d(i)).max(0.0),
        LossType::Ipo => (avg(i) - 1.0 / (2.0 * b)).powi(2),
        LossType::ExoPair => {
            let z = b * d(i);
            sigmoid(z) * (ln_sigmoid(z) - (-e).ln_1p()) + sigmoid(-z) * (ln_sigmoid(-z) - e.ln())
        }
        LossType::NcaPair => {
            -ln_sigmoid(b * cl[i]) - 0.5 * ln_sigmoid(-b * cl[i]) - 0.5 * ln_sigmoid(-b * rl[i])
        }
        LossType::Robust => {
            (-ln_sigmoid(b * d(i)) * (1.0 - e) + ln_sigmoid(-b * d(i)) * e) / (1.0 - 2.0 * e)
        }
        LossType::BcoPair => -ln_sigmoid(b * cl[i]) - ln_sigmoid(-b * rl[i]),
        LossType::SppoHard => (cl[i] - 0.5 / b).powi(2) + (rl[i] + 0.5 / b).powi(2),
        LossType::ApoZero => 1.0 - sigmoid(b * cl[i]) + sigmoid(b * rl[i]),
        LossType::ApoDown => sigmoid(b * cl[i]) + 1.0 - sigmoid(b * (cl[i] - rl[i])),
        LossType::Discopop => {
            let z = b * d(i);
            let m = sigmoid(z / c.discopop_tau);
            -ln_sigmoid(z) * (1.0 - m) + (-z).exp() * m
        }
        LossType::SigmoidNorm => -ln_sigmoid(b * avg(i)),
        LossType::Aot | LossType::AotUnpaired | LossType::Sft => unreachable!(),
    };
    (0..n).map(per_pair).collect()
}

/// The settings each loss type is checked with: label smoothing where the loss reads it.
fn configs(loss_type: LossType) -> Vec<DpoConfig> {
    let smooths = matches!(
        loss_type,
        LossType::ExoPair | LossType::Robust | LossType::Aot | LossType::AotUnpaired
    );
    let mut out = Vec::new();
    for (beta, label_smoothing) in [(0.1, 0.0), (0.5, 0.2), (2.0, 0.1)] {
        let label_smoothing = if smooths || label_smoothing == 0.0 {
            label_smoothing
        } else {
            0.0
        };
        let mut c = DpoConfig {
            label_smoothing,
            ..DpoConfig::new(beta, loss_type)
        };
        if loss_type == LossType::ExoPair && c.label_smoothing == 0.0 {
            c.label_smoothing = 1e-3;
        }
        out.push(c.clone());
        if loss_type.has_f_divergence() {
            for (f, alpha) in [
                (FDivergence::ForwardKl, 0.5),
                (FDivergence::JsDivergence, 0.5),
                (FDivergence::AlphaDivergence, 0.3),
            ] {
                out.push(DpoConfig {
                    f_divergence_type: f,
                    f_alpha_divergence_coef: alpha,
                    ..c.clone()
                });
            }
        }
    }
    out
}

#[test]
fn each_loss_matches_its_formula() {
    let device = Device::flex();
    let pc = [-12.5, -3.0, -40.0, -7.25];
    let pr = [-14.0, -2.0, -41.5, -7.0];
    let rc = [-13.0, -2.5, -39.0, -8.0];
    let rr = [-13.5, -2.5, -42.0, -6.5];
    let (nc, nr) = ([5.0, 2.0, 17.0, 4.0], [6.0, 1.0, 15.0, 4.0]);
    let x = Batch {
        pc: &pc,
        pr: &pr,
        rc: &rc,
        rr: &rr,
        nc: &nc,
        nr: &nr,
    };
    let t = |v: [f64; 4]| {
        let v: Vec<f32> = v.iter().map(|&v| v as f32).collect();
        Tensor::<1>::from_data(TensorData::new(v, [4]), &device)
    };
    let inputs = DpoInputs {
        policy_chosen: t(pc),
        policy_chosen_raw: t(pc),
        policy_rejected: t(pr),
        reference_chosen: t(rc),
        reference_rejected: t(rr),
        chosen_tokens: t(nc),
        rejected_tokens: t(nr),
        chosen_whole: t(pc),
        chosen_whole_tokens: t(nc),
        pair_weights: None,
    };
    for loss_type in LossType::ALL {
        for c in configs(loss_type) {
            c.validate().unwrap();
            let out = dpo_loss(&inputs, &c);
            let losses = out.losses.into_data().try_to_vec::<f32>().unwrap();
            let chosen = out.chosen_rewards.into_data().try_to_vec::<f32>().unwrap();
            let rejected = out
                .rejected_rewards
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let expect = trl_loss(loss_type, &x, &c);
            let what = format!(
                "{loss_type} {} β={} ε={}",
                c.f_divergence_type, c.beta, c.label_smoothing
            );
            for i in 0..4 {
                let tolerance = 1e-5 * expect[i].abs().max(1.0);
                assert_close(
                    losses[i] as f64,
                    expect[i],
                    tolerance,
                    &format!("{what} pair {i}"),
                );
                assert_close(
                    chosen[i] as f64,
                    c.beta * (pc[i] - rc[i]),
                    1e-5,
                    "rewards/chosen = β(log π − log π_ref)",
                );
                assert_close(
                    rejected[i] as f64,
                    c.beta * (pr[i] - rr[i]),
                    1e-5,
                    "rewards/rejected",
                );
            }
        }
    }
}

/// A list of losses is the weighted sum of its parts (MPO: sigmoid, bco_pair, sft).
#[test]
fn a_loss_list_is_the_weighted_sum_of_its_parts() {
    let device = Device::flex();
    let t = |v: [f32; 3]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [3]), &device);
    let inputs = DpoInputs {
        policy_chosen: t([-12.5, -3.0, -40.0]),
        policy_chosen_raw: t([-12.5, -3.0, -40.0]),
        policy_rejected: t([-14.0, -2.0, -41.5]),
        reference_chosen: t([-13.0, -2.5, -39.0]),
        reference_rejected: t([-13.5, -2.5, -42.0]),
        chosen_tokens: t([5.0, 2.0, 17.0]),
        rejected_tokens: t([6.0, 1.0, 15.0]),
        chosen_whole: t([-20.0, -9.0, -50.0]),
        chosen_whole_tokens: t([9.0, 6.0, 21.0]),
        pair_weights: None,
    };
    let parts = [LossType::Sigmoid, LossType::BcoPair, LossType::Sft];
    let weights = [0.8, 0.2, 1.0];
    let mpo = DpoConfig {
        loss_type: parts.to_vec(),
        loss_weights: Some(weights.to_vec()),
        ..DpoConfig::default()
    };
    mpo.validate().unwrap();
    let values = |c: &DpoConfig| {
        let losses = dpo_loss(&inputs, c).losses.into_data();
        losses.try_to_vec::<f32>().unwrap()
    };
    let total = values(&mpo);
    let mut expect = [0.0f64; 3];
    for (part, w) in parts.into_iter().zip(weights) {
        for (e, v) in expect.iter_mut().zip(values(&DpoConfig::new(0.1, part))) {
            *e += w * v as f64;
        }
    }
    for i in 0..3 {
        assert_close(total[i] as f64, expect[i], 1e-5, &format!("MPO pair {i}"));
    }
}

/// What TRL 1.16 refuses, it refuses with its reasons.
#[test]
fn combinations_trl_refuses_are_refused() {
    let refused = |c: DpoConfig| c.validate().unwrap_err().to_string();
    let f = DpoConfig {
        f_divergence_type: FDivergence::ForwardKl,
        ..DpoConfig::new(0.1, LossType::BcoPair)
    };
    assert!(refused(f).contains("is only supported for the following loss types"));
    assert!(refused(DpoConfig::new(0.1, LossType::ExoPair)).contains("greater than 0.0"));
    let weights = DpoConfig {
        loss_type: vec![LossType::Sigmoid, LossType::Sft],
        loss_weights: Some(vec![1.0]),
        ..DpoConfig::default()
    };
    assert!(refused(weights).contains("Got 1 weights for 2 loss types"));
    let robust = DpoConfig {
        label_smoothing: 0.5,
        ..DpoConfig::new(0.1, LossType::Robust)
    };
    assert!(refused(robust).contains("[0.0, 0.5)"));
    assert!("simpo".parse::<LossType>().is_err());
    // One name or a list, as TRL's `loss_type`.
    let one: DpoConfig = serde_json::from_str(r#"{"beta": 0.1, "loss_type": "ipo"}"#).unwrap();
    let list: DpoConfig =
        serde_json::from_str(r#"{"beta": 0.1, "loss_type": ["sigmoid", "sft"]}"#).unwrap();
    assert_eq!(one.loss_type, [LossType::Ipo]);
    assert_eq!(list.loss_type, [LossType::Sigmoid, LossType::Sft]);
}

/// One row's completion tokens under the policy, computed in f64 from its logits: summed mean
/// logit, entropy, top-1 hits, label log-prob and `log Σ_v p_v²`, and the token count.
#[derive(Default)]
struct RowSums {
    mean_logit: f64,
    entropy: f64,
    top1: f64,
    logp: f64,
    log_sum_sq: f64,
    tokens: f64,
    /// Each completion token's log-prob, in order.
    token_logps: Vec<f64>,
    /// The log-probs of every token after the first, prompt included, and their count.
    whole_logp: f64,
    whole_tokens: f64,
}

fn row_sums(policy: &CausalLm, s: &SequenceBatch, device: &Device) -> Vec<RowSums> {
    let ids = TensorData::new(s.tokens.clone(), [s.rows, s.len]);
    let logits = policy.forward(Tensor::<2, Int>::from_data(ids, device), None);
    let logits = logits
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .unwrap();
    let vocab = logits.len() / (s.rows * s.len);
    let mut out: Vec<RowSums> = (0..s.rows).map(|_| RowSums::default()).collect();
    for (r, sums) in out.iter_mut().enumerate() {
        // The row ends with its completion: padding follows the last masked label.
        let labels = (0..s.len - 1)
            .rfind(|&t| s.mask[r * (s.len - 1) + t] == 1.0)
            .unwrap()
            + 1;
        for t in 0..s.len - 1 {
            let row = &logits[(r * s.len + t) * vocab..(r * s.len + t + 1) * vocab];
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let log_z = max + row.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
            let label = s.tokens[r * s.len + t + 1] as usize;
            if t < labels {
                sums.whole_logp += row[label] - log_z;
                sums.whole_tokens += 1.0;
            }
            if s.mask[r * (s.len - 1) + t] == 0.0 {
                continue;
            }
            sums.mean_logit += row.iter().sum::<f64>() / vocab as f64;
            sums.entropy += row
                .iter()
                .map(|&l| -(l - log_z).exp() * (l - log_z))
                .sum::<f64>();
            sums.top1 += f64::from(u8::from(row[label] == max));
            sums.logp += row[label] - log_z;
            sums.token_logps.push(row[label] - log_z);
            sums.log_sum_sq += row
                .iter()
                .map(|&l| (2.0 * (l - log_z)).exp())
                .sum::<f64>()
                .ln();
            sums.tokens += 1.0;
        }
    }
    out
}

/// TRL 1.16's token metrics, computed again in f64 from the policy's logits: the mean logit over
/// the vocabulary averaged over the chosen (rejected) completion tokens, the entropy over every
/// completion token, and the share of chosen tokens that are the most likely one.
#[test]
fn token_metrics_follow_trl_definitions() {
    let device = Device::flex();
    let policy = tiny_model(1, &device);
    let reference = Some(tiny_model(2, &device));
    let trainer =
        DpoTrainer::new(policy.clone(), reference, TrainConfig::default(), &device).unwrap();
    let batch = block_on(trainer.prepare(&tokenized_pairs(), 0)).unwrap();
    let m = block_on(trainer.evaluate(&batch)).unwrap().metrics();
    let rows = row_sums(&policy, &batch.sequences, &device);
    let (chosen, rejected) = rows.split_at(batch.n_pairs);
    let total = |rows: &[RowSums], f: fn(&RowSums) -> f64| rows.iter().map(f).sum::<f64>();
    let tokens = |rows: &[RowSums]| total(rows, |r| r.tokens);
    let expect = [
        (
            "logits/chosen",
            m.logits_chosen,
            total(chosen, |r| r.mean_logit) / tokens(chosen),
        ),
        (
            "logits/rejected",
            m.logits_rejected,
            total(rejected, |r| r.mean_logit) / tokens(rejected),
        ),
        (
            "entropy",
            m.entropy,
            total(&rows, |r| r.entropy) / tokens(&rows),
        ),
        (
            "mean_token_accuracy",
            m.mean_token_accuracy,
            total(chosen, |r| r.top1) / tokens(chosen),
        ),
    ];
    for (name, got, want) in expect {
        let got = got.unwrap_or_else(|| panic!("DPO logs {name}"));
        assert_close(got, want, 1e-4 * want.abs().max(1.0), name);
    }
    assert!(m.entropy.unwrap() > 0.0);
}

/// WPO as TRL 1.16 weighs pairs: each response's `exp(mean_t (log p_t − log Σ_v p_v²))` under the
/// policy, their product per pair, times the pair's loss; computed again in f64 from the logits.
#[test]
fn wpo_weights_pairs_as_trl_does() {
    let device = Device::flex();
    let policy = tiny_model(1, &device);
    let config = TrainConfig {
        dpo: DpoConfig {
            use_weighting: true,
            ..DpoConfig::default()
        },
        ..TrainConfig::default()
    };
    let reference = Some(tiny_model(2, &device));
    let trainer = DpoTrainer::new(policy.clone(), reference, config, &device).unwrap();
    let batch = block_on(trainer.prepare(&tokenized_pairs(), 0)).unwrap();
    let v = block_on(trainer.evaluate(&batch)).unwrap();
    let rows = row_sums(&policy, &batch.sequences, &device);
    let n = batch.n_pairs;
    let weight = |r: &RowSums| ((r.logp - r.log_sum_sq) / r.tokens).exp();
    for i in 0..n {
        let h = (v.policy_chosen[i] - v.reference_chosen[i]) as f64
            - (v.policy_rejected[i] - v.reference_rejected[i]) as f64;
        let expect = -ln_sigmoid(0.1 * h) * weight(&rows[i]) * weight(&rows[n + i]);
        assert_close(v.losses[i] as f64, expect, 1e-5, &format!("WPO pair {i}"));
    }
    let aot = DpoConfig {
        use_weighting: true,
        ..DpoConfig::new(0.1, LossType::Aot)
    };
    assert!(
        aot.validate()
            .unwrap_err()
            .to_string()
            .contains("WPO-style weighting")
    );
}

/// LD-DPO as TRL 1.16 computes it: each response's tokens past the pair's shared length count
/// `ld_alpha` times, for the policy and the reference; SFT's NLL reads the unweighted tokens.
#[test]
fn ld_alpha_weighs_the_tokens_past_the_shared_length() {
    let device = Device::flex();
    let (policy, reference) = (tiny_model(1, &device), tiny_model(2, &device));
    let alpha = 0.25;
    let config = TrainConfig {
        dpo: DpoConfig {
            loss_type: vec![LossType::Sigmoid, LossType::Sft],
            ld_alpha: Some(alpha),
            ..DpoConfig::default()
        },
        ..TrainConfig::default()
    };
    let trainer = DpoTrainer::new(policy.clone(), Some(reference.clone()), config, &device);
    let trainer = trainer.unwrap();
    let batch = block_on(trainer.prepare(&tokenized_pairs(), 0)).unwrap();
    let v = block_on(trainer.evaluate(&batch)).unwrap();
    let (p, r) = (
        row_sums(&policy, &batch.sequences, &device),
        row_sums(&reference, &batch.sequences, &device),
    );
    let n = batch.n_pairs;
    let ld = |t: &[f64], shared: usize| {
        t[..shared].iter().sum::<f64>() + alpha * t[shared..].iter().sum::<f64>()
    };
    let nll =
        -p[..n].iter().map(|r| r.logp).sum::<f64>() / p[..n].iter().map(|r| r.tokens).sum::<f64>();
    let lengths: Vec<usize> = p.iter().map(|r| r.token_logps.len()).collect();
    assert!(
        lengths[..n] != lengths[n..],
        "the fixture's pairs differ in length"
    );
    for i in 0..n {
        let shared = lengths[i].min(lengths[n + i]);
        let c = ld(&p[i].token_logps, shared) - ld(&r[i].token_logps, shared);
        let rj = ld(&p[n + i].token_logps, shared) - ld(&r[n + i].token_logps, shared);
        assert_close(
            v.policy_chosen[i] as f64,
            ld(&p[i].token_logps, shared),
            1e-4,
            "LD logps",
        );
        let expect = -ln_sigmoid(0.1 * (c - rj)) + nll;
        assert_close(
            v.losses[i] as f64,
            expect,
            1e-4,
            &format!("LD-DPO + SFT pair {i}"),
        );
    }
    let bad = DpoConfig {
        ld_alpha: Some(1.5),
        ..DpoConfig::default()
    };
    assert!(bad.validate().unwrap_err().to_string().contains("ld_alpha"));
}

/// TRL 1.16's experimental CPO (sigmoid, SimPO, AlphaPO) and ORPO, written out in f64 from their
/// source on the policy's own log-probs: no reference is run, the NLL of the chosen completion
/// tokens (ORPO: of the chosen rows' every token) is part of the loss, and ORPO logs its log
/// odds.
#[test]
fn reference_free_objectives_follow_trl() {
    let device = Device::flex();
    let policy = tiny_model(1, &device);
    let evaluate = |config: TrainConfig| {
        let trainer = DpoTrainer::new(policy.clone(), None, config, &device).unwrap();
        let batch = block_on(trainer.prepare(&tokenized_pairs(), 0)).unwrap();
        assert!(
            !batch.reference_run,
            "{:?} runs no reference",
            trainer.config().trainer
        );
        block_on(trainer.evaluate(&batch)).unwrap()
    };
    let batch = SequenceBatch::concatenated(&tokenized_pairs(), 0, 512).unwrap();
    let rows = row_sums(&policy, &batch, &device);
    let n = rows.len() / 2;
    let nll = -rows[..n].iter().map(|r| r.logp).sum::<f64>()
        / rows[..n].iter().map(|r| r.tokens).sum::<f64>();
    let avg = |r: &RowSums| r.logp / r.tokens;
    let shape = |x: f64, a: f64| {
        if a == 0.0 {
            x
        } else {
            (1.0 - (-a * x).exp()) / a
        }
    };
    for (loss_type, alpha, eps) in [
        (CpoLoss::Sigmoid, 0.0, 0.1),
        (CpoLoss::Simpo, 0.0, 0.0),
        (CpoLoss::Simpo, 0.5, 0.0),
        (CpoLoss::Hinge, 0.0, 0.0),
        (CpoLoss::Ipo, 0.0, 0.0),
    ] {
        let cpo = CpoConfig {
            beta: 0.2,
            loss_type,
            label_smoothing: eps,
            alpha,
            ..CpoConfig::default()
        };
        let v = evaluate(TrainConfig {
            trainer: Trainer::Cpo,
            cpo: cpo.clone(),
            ..TrainConfig::default()
        });
        let (b, g) = (cpo.beta, cpo.simpo_gamma);
        for i in 0..n {
            let averaged = matches!(loss_type, CpoLoss::Simpo | CpoLoss::Ipo);
            let logps = |r: &RowSums| if averaged { avg(r) } else { r.logp };
            let (uc, ur) = (
                shape(logps(&rows[i]), alpha),
                shape(logps(&rows[n + i]), alpha),
            );
            let z = uc - ur;
            let smoothed = |z: f64| -ln_sigmoid(b * z) * (1.0 - eps) - ln_sigmoid(-b * z) * eps;
            let loss = match loss_type {
                CpoLoss::Sigmoid => smoothed(z),
                CpoLoss::Simpo => smoothed(z - g / b),
                CpoLoss::Hinge => (1.0 - b * z).max(0.0),
                CpoLoss::Ipo => (z - 1.0 / (2.0 * b)).powi(2),
            };
            let what = format!("CPO {loss_type} α={alpha} pair {i}");
            assert_close(v.losses[i] as f64, loss + cpo.cpo_alpha * nll, 1e-4, &what);
            assert_close(
                v.chosen_rewards[i] as f64,
                b * uc,
                1e-4,
                "CPO rewards/chosen",
            );
        }
        assert_close(v.metrics().nll_loss.unwrap(), nll, 1e-5, "CPO nll_loss");
        let alphapo = TrainConfig {
            trainer: Trainer::Cpo,
            cpo: CpoConfig {
                cpo_alpha: 0.0,
                ..cpo.clone()
            },
            ..TrainConfig::default()
        };
        let logged = evaluate(alphapo).metrics().nll_loss;
        assert_eq!(logged, Some(0.0), "TRL logs nll_loss 0 without the term");
        assert!(
            v.metrics().entropy.is_none(),
            "CPO logs no DPO token metrics"
        );
    }
    let v = evaluate(TrainConfig {
        trainer: Trainer::Orpo,
        ..TrainConfig::default()
    });
    // ORPO's NLL is over the chosen rows' prompts too (TRL's ORPOTrainer labels the whole row).
    let nll = -rows[..n].iter().map(|r| r.whole_logp).sum::<f64>()
        / rows[..n].iter().map(|r| r.whole_tokens).sum::<f64>();
    let log1mexp = |x: f64| (-x.exp()).ln_1p();
    let mut odds = Vec::new();
    for i in 0..n {
        let (c, r) = (avg(&rows[i]), avg(&rows[n + i]));
        let o = (c - r) - (log1mexp(c) - log1mexp(r));
        odds.push(o);
        assert_close(
            v.losses[i] as f64,
            nll - 0.1 * ln_sigmoid(o),
            1e-4,
            "ORPO loss",
        );
        assert_close(
            v.policy_chosen[i] as f64,
            c,
            1e-5,
            "ORPO averages log-probs",
        );
    }
    let m = v.metrics();
    let mean = |f: &dyn Fn(f64) -> f64| odds.iter().map(|&o| f(o)).sum::<f64>() / n as f64;
    assert_close(
        m.log_odds_chosen.unwrap(),
        mean(&|o| o),
        1e-4,
        "log_odds_chosen",
    );
    assert_close(
        m.log_odds_ratio.unwrap(),
        mean(&ln_sigmoid),
        1e-4,
        "log_odds_ratio",
    );
    assert_close(m.nll_loss.unwrap(), nll, 1e-5, "ORPO nll_loss");
}

/// RPO as TRL 1.16 spells it (`rpo_alpha` is gone): the `sft` loss after DPO's in the list,
/// weighted α, so the loss is DPO's plus α times the chosen tokens' mean NLL.
#[test]
fn rpo_is_sft_in_the_loss_list() {
    let device = Device::flex();
    let policy = tiny_model(1, &device);
    let alpha = 0.5;
    let config = TrainConfig {
        dpo: DpoConfig {
            loss_type: vec![LossType::Sigmoid, LossType::Sft],
            loss_weights: Some(vec![1.0, alpha]),
            ..DpoConfig::default()
        },
        ..TrainConfig::default()
    };
    let reference = Some(tiny_model(2, &device));
    let mut trainer = DpoTrainer::new(policy.clone(), reference, config, &device).unwrap();
    let batch = block_on(trainer.prepare(&tokenized_pairs(), 0)).unwrap();
    let report = block_on(trainer.step(&batch)).unwrap();
    let rows = row_sums(&policy, &batch.sequences, &device);
    let n = batch.n_pairs;
    let nll = -rows[..n].iter().map(|r| r.logp).sum::<f64>()
        / rows[..n].iter().map(|r| r.tokens).sum::<f64>();
    let dpo = report
        .values
        .h
        .iter()
        .map(|&h| -ln_sigmoid(0.1 * h as f64))
        .sum::<f64>()
        / n as f64;
    assert_close(
        report.metrics.loss,
        dpo + alpha * nll,
        1e-5,
        "loss = DPO + α·NLL",
    );
}

/// The fixture's pairs as TRL's KTO sees them: unpaired, the chosen before the rejected.
fn tokenized_ratings() -> Vec<TokenizedRating> {
    let t = tokenizer();
    unpair(&pairs())
        .iter()
        .map(|r| TokenizedRating::new(&t, r).unwrap())
        .collect()
}

/// KTO as TRL 1.16's `KTOTrainer` computes it, written again in f64 from the logits: each row's
/// log-ratio, the reference point from the KL rows (each prompt with the previous row's
/// completion, the first with the last's; mean, clamped at 0), the weighted losses and every
/// logged metric; `apo_zero_unpaired` without a reference point.
#[test]
fn kto_follows_trl() {
    let device = Device::flex();
    let (policy, reference) = (tiny_model(1, &device), tiny_model(2, &device));
    let ratings = tokenized_ratings();
    let n = ratings.len();
    let labels: Vec<bool> = ratings.iter().map(|r| r.label).collect();
    assert_eq!(
        labels,
        [true, true, false, false],
        "unpaired as TRL orders it"
    );
    let rows: Vec<(&[u32], &[u32])> = ratings
        .iter()
        .map(|r| (&r.prompt[..], &r.completion[..]))
        .collect();
    let kl_rows: Vec<(&[u32], &[u32])> = (0..n)
        .map(|i| {
            (
                &ratings[i].prompt[..],
                &ratings[(i + n - 1) % n].completion[..],
            )
        })
        .collect();
    let sums = |model: &CausalLm, rows: &[(&[u32], &[u32])]| {
        row_sums(model, &SequenceBatch::new(rows, 0, 512).unwrap(), &device)
    };
    let (p, r) = (sums(&policy, &rows), sums(&reference, &rows));
    let (pk, rk) = (sums(&policy, &kl_rows), sums(&reference, &kl_rows));
    let log_ratio: Vec<f64> = (0..n).map(|i| p[i].logp - r[i].logp).collect();
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    for (loss_type, beta, weights) in [
        (KtoLoss::Kto, 0.1, (1.0, 1.0)),
        (KtoLoss::Kto, 0.5, (1.33, 0.75)),
        (KtoLoss::ApoZeroUnpaired, 0.3, (1.0, 2.0)),
    ] {
        let kto = KtoConfig {
            beta,
            loss_type,
            desirable_weight: weights.0,
            undesirable_weight: weights.1,
        };
        let config = TrainConfig {
            trainer: Trainer::Kto,
            kto,
            ..TrainConfig::default()
        };
        let trainer = DpoTrainer::new(policy.clone(), Some(reference.clone()), config, &device);
        let trainer = trainer.unwrap();
        let batch = block_on(trainer.prepare_rated(&ratings, 0)).unwrap();
        let m = block_on(trainer.evaluate_rated(&batch)).unwrap().metrics();
        let z0 = match loss_type {
            KtoLoss::Kto => mean((0..n).map(|i| pk[i].logp - rk[i].logp).collect()).max(0.0),
            KtoLoss::ApoZeroUnpaired => 0.0,
        };
        let loss = |i: usize| match (loss_type, labels[i]) {
            (KtoLoss::Kto, true) => weights.0 * (1.0 - sigmoid(beta * (log_ratio[i] - z0))),
            (KtoLoss::Kto, false) => weights.1 * (1.0 - sigmoid(beta * (z0 - log_ratio[i]))),
            (KtoLoss::ApoZeroUnpaired, true) => weights.0 * (1.0 - sigmoid(beta * log_ratio[i])),
            (KtoLoss::ApoZeroUnpaired, false) => weights.1 * sigmoid(beta * log_ratio[i]),
        };
        let of = |label: bool, f: &dyn Fn(usize) -> f64| {
            mean((0..n).filter(|&i| labels[i] == label).map(f).collect())
        };
        let pooled = |label: bool, f: fn(&RowSums) -> f64| {
            let picked = || p.iter().zip(&labels).filter(|&(_, &l)| l == label);
            picked().map(|(r, _)| f(r)).sum::<f64>() / picked().map(|(r, _)| r.tokens).sum::<f64>()
        };
        let reward = |i: usize| beta * log_ratio[i];
        let expect = [
            ("loss", Some(m.loss), mean((0..n).map(loss).collect())),
            ("kl", Some(m.kl), z0),
            ("rewards/chosen", m.rewards_chosen, of(true, &reward)),
            ("rewards/rejected", m.rewards_rejected, of(false, &reward)),
            (
                "rewards/margins",
                m.rewards_margins,
                of(true, &reward) - of(false, &reward),
            ),
            ("logps/chosen", m.logps_chosen, of(true, &|i| p[i].logp)),
            (
                "logps/rejected",
                m.logps_rejected,
                of(false, &|i| p[i].logp),
            ),
            (
                "logits/chosen",
                m.logits_chosen,
                pooled(true, |r| r.mean_logit),
            ),
            (
                "logits/rejected",
                m.logits_rejected,
                pooled(false, |r| r.mean_logit),
            ),
            (
                "entropy",
                Some(m.entropy),
                p.iter().map(|r| r.entropy).sum::<f64>() / p.iter().map(|r| r.tokens).sum::<f64>(),
            ),
        ];
        for (name, got, want) in expect {
            let got = got.unwrap_or_else(|| panic!("KTO logs {name}"));
            let what = format!("{loss_type} β={beta} {name}");
            assert_close(got, want, 1e-4 * want.abs().max(1.0), &what);
        }
        let expected_rows = if loss_type.uses_kl() { 2 * n } else { n };
        assert_eq!(batch.sequences.rows, expected_rows, "KL rows only for kto");
    }
}

/// Policy = reference: every log-ratio and the reference point are 0, so each KTO loss is
/// 1 − σ(0) = ½ times its weight; and the metrics TRL leaves out of a batch without undesirable
/// rows are absent.
#[test]
fn kto_at_the_reference_and_on_one_label() {
    let device = Device::flex();
    let config = TrainConfig {
        trainer: Trainer::Kto,
        kto: KtoConfig {
            desirable_weight: 2.0,
            ..KtoConfig::default()
        },
        ..TrainConfig::default()
    };
    let trainer = DpoTrainer::new(tiny_model(1, &device), None, config, &device).unwrap();
    let ratings = tokenized_ratings();
    let batch = block_on(trainer.prepare_rated(&ratings, 0)).unwrap();
    let m = block_on(trainer.evaluate_rated(&batch)).unwrap().metrics();
    assert_close(m.loss, (2.0 * 0.5 + 0.5) / 2.0, 1e-6, "weighted ½ losses");
    assert_eq!((m.kl, m.rewards_margins), (0.0, Some(0.0)));

    let desirable = block_on(trainer.prepare_rated(&ratings[..2], 0)).unwrap();
    let m = block_on(trainer.evaluate_rated(&desirable))
        .unwrap()
        .metrics();
    assert!(m.rewards_chosen.is_some() && m.logits_chosen.is_some());
    assert_eq!(
        (
            m.rewards_rejected,
            m.rewards_margins,
            m.logps_rejected,
            m.logits_rejected
        ),
        (None, None, None, None),
        "TRL logs no undesirable metrics without undesirable rows"
    );
    let json = serde_json::to_value(m).unwrap();
    assert!(json.get("rewards/rejected").is_none() && json["kl"].is_number());

    // Over batches, as TRL's evaluation: each metric the mean of the batches that logged it.
    let both = KtoMetrics::over_batches(&[(m, 2), (KtoMetrics { loss: 1.0, ..m }, 6)]);
    assert_close(
        both.loss,
        (m.loss * 2.0 + 6.0) / 8.0,
        1e-12,
        "row-weighted loss",
    );
    assert_eq!(both.rewards_rejected, None);
}

/// TRL's refusals and the unpaired data: `kto` with a batch size of one (its reference point
/// would be the row's own reward), ratings under a paired trainer and pairs under KTO; a rated JSONL, and
/// pairs unpaired as TRL orders them.
#[test]
fn kto_refusals_and_data() {
    let device = Device::flex();
    let kto = |loss_type| TrainConfig {
        trainer: Trainer::Kto,
        kto: KtoConfig {
            loss_type,
            ..KtoConfig::default()
        },
        ..TrainConfig::default()
    };
    let ratings = tokenized_ratings();
    let reference = Some(tiny_model(2, &device));
    let trainer = DpoTrainer::new(
        tiny_model(1, &device),
        reference,
        kto(KtoLoss::Kto),
        &device,
    );
    let trainer = trainer.unwrap();
    let err = KtoConfig::default().check_batch(1).unwrap_err().to_string();
    assert!(err.contains("at least 2 ratings"), "{err}");
    // A last, partial batch of one trains as in TRL: its KL row is the row itself.
    let one = block_on(trainer.prepare_rated(&ratings[..1], 0)).unwrap();
    let v = block_on(trainer.evaluate_rated(&one)).unwrap();
    let own = (v.policy[0] - v.reference[0]) as f64;
    assert_close(v.kl, own.max(0.0), 1e-5, "z₀ of a lone row");
    let err = block_on(trainer.prepare(&tokenized_pairs(), 0)).unwrap_err();
    assert!(
        err.to_string().contains("rated responses, not pairs"),
        "{err}"
    );

    let apo = kto(KtoLoss::ApoZeroUnpaired);
    let trainer = DpoTrainer::new(tiny_model(1, &device), None, apo, &device).unwrap();
    let one = block_on(trainer.prepare_rated(&ratings[..1], 0)).unwrap();
    assert!(
        block_on(trainer.evaluate_rated(&one)).is_ok(),
        "apo_zero_unpaired has no KL"
    );

    let dpo = DpoTrainer::new(
        tiny_model(1, &device),
        None,
        TrainConfig::default(),
        &device,
    );
    let err = block_on(dpo.unwrap().prepare_rated(&ratings, 0)).unwrap_err();
    assert!(err.to_string().contains("ratings train with KTO"), "{err}");
    let bad = KtoConfig {
        undesirable_weight: -1.0,
        ..KtoConfig::default()
    };
    assert!(bad.validate().is_err());
    assert!(
        "kto_pair"
            .parse::<KtoLoss>()
            .unwrap_err()
            .to_string()
            .contains("apo_zero_unpaired")
    );

    let rated = concat!(
        r#"{"prompt": "Hi", "completion": " there", "label": true}"#,
        "\n\n",
        r#"{"prompt": [{"role": "user", "content": "Hi"}], "#,
        r#""completion": [{"role": "assistant", "content": "no"}], "label": false}"#,
    );
    let rows = webdpo::train::parse_ratings(rated, "r.jsonl").unwrap();
    assert_eq!((rows.len(), rows[0].label, rows[1].label), (2, true, false));
    let err = webdpo::train::parse_ratings("{\"prompt\": \"x\"}", "r.jsonl").unwrap_err();
    assert!(err.to_string().starts_with("r.jsonl:1:"), "{err}");
    let paired = r#"{"prompt": "a", "chosen": "b", "rejected": "c"}"#;
    let rows = webdpo::train::parse_ratings(&format!("{paired}\n{paired}"), "p.jsonl").unwrap();
    let labels: Vec<bool> = rows.iter().map(|r| r.label).collect();
    assert_eq!(labels, [true, true, false, false]);
}
