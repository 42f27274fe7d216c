//! The model, sequence log-probs, generation, tokenizer and checkpoint, each against an
//! independent computation.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::*;
use webdpo::block_on;
use webdpo::generate::{PairDecoder, PairStyle, SamplingConfig, generate, sample_token};
use webdpo::hf::safetensors::{
    Dtype, from_safetensors, parse_safetensors, to_safetensors, write_safetensors,
};
use webdpo::model::{CausalLm, KvCache};
use webdpo::rng::Rng;
use webdpo::train::logps::{SequenceBatch, sequence_logps};

fn tokens(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(
        TensorData::new(
            ids.iter().map(|&t| t as i64).collect::<Vec<_>>(),
            [1, ids.len()],
        ),
        device,
    )
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// Logits of `ids` fed to `model` one token at a time through `cache`.
fn decoded(model: &CausalLm, cache: &mut KvCache, ids: &[u32], device: &Device) -> Vec<f32> {
    ids.iter()
        .flat_map(|&id| values(model.forward(tokens(&[id], device), Some(cache))))
        .collect()
}

/// Asserts that `got` is the sum of `terms` (f32 products, here in f64) within the worst case
/// of any f32 summation order: a unit of rounding of `Σ|term|` per term.
fn assert_sum_within_rounding(got: f32, terms: impl Iterator<Item = f64>, at: String) {
    let (want, scale, count) =
        terms.fold((0.0, 0.0, 0), |(s, a, n), t| (s + t, a + t.abs(), n + 1));
    let bound = count as f64 * f64::from(f32::EPSILON) / 2.0 * scale;
    assert!((got as f64 - want).abs() <= bound, "{at}: {got} vs {want}");
}

#[test]
fn kv_cache_decoding_matches_a_full_forward() {
    let device = Device::flex();
    let model = tiny_model(3, &device);
    let ids: Vec<u32> = tokenizer()
        .encode_prompt("Once upon a time, a fox")
        .unwrap();
    let full = values(model.forward(tokens(&ids, &device), None));
    // Prefill 5 tokens, then one token at a time (the cache's buffers grow on the way).
    let mut cache = KvCache::default();
    let mut incremental = values(model.forward(tokens(&ids[..5], &device), Some(&mut cache)));
    incremental.extend(decoded(&model, &mut cache, &ids[5..], &device));
    assert_eq!(cache.len(), ids.len());
    let max_diff = max_abs_diff(&full, &incremental);
    assert!(
        max_diff < 1e-4,
        "cached and full logits differ by {max_diff}"
    );
}

/// The cache's buffers are written in place: a clone must not see the other's writes.
#[test]
fn a_cloned_kv_cache_continues_on_its_own() {
    let device = Device::flex();
    let model = tiny_model(3, &device);
    let t = tokenizer();
    let (prefix, a, b) = (
        t.encode_prompt("Once upon a time").unwrap(),
        t.encode_completion(", a fox ran.").unwrap(),
        t.encode_completion(" there was a hen").unwrap(),
    );
    let mut cache = KvCache::default();
    model.forward(tokens(&prefix, &device), Some(&mut cache));
    let mut fork = cache.clone();
    // Interleaved, so each writes between the other's steps.
    let (mut from_cache, mut from_fork) = (Vec::new(), Vec::new());
    for i in 0..a.len().max(b.len()) {
        if let Some(&id) = a.get(i) {
            from_cache.extend(decoded(&model, &mut cache, &[id], &device));
        }
        if let Some(&id) = b.get(i) {
            from_fork.extend(decoded(&model, &mut fork, &[id], &device));
        }
    }
    for (continuation, logits) in [(&a, from_cache), (&b, from_fork)] {
        let ids = [prefix.as_slice(), continuation].concat();
        let full = values(model.forward(tokens(&ids, &device), None));
        let vocab = full.len() / ids.len();
        let max_diff = max_abs_diff(&full[prefix.len() * vocab..], &logits);
        assert!(
            max_diff < 1e-4,
            "logits after the fork differ by {max_diff}"
        );
    }
}

#[test]
fn completion_logps_are_the_masked_sum_of_token_logps() {
    let device = Device::flex();
    let model = tiny_model(4, &device);
    let t = tokenizer();
    let (prompt, completion) = (
        t.encode_prompt("The cat").unwrap(),
        t.encode_completion(" sat.").unwrap(),
    );
    let batch = SequenceBatch::new(&[(&prompt, &completion)], 0, 128).unwrap();
    let got = values(sequence_logps(&model, &batch, &device))[0];
    // Independent: log-softmax of the full logits, summed over the completion's labels only.
    let ids: Vec<u32> = prompt.iter().chain(&completion).copied().collect();
    let logp = values(log_softmax(model.forward(tokens(&ids, &device), None), 2));
    let vocab = tiny_config().vocab_size;
    let expect: f64 = (prompt.len()..ids.len())
        .map(|pos| logp[(pos - 1) * vocab + ids[pos] as usize] as f64)
        .sum();
    assert_close(got as f64, expect, 1e-4, "sequence log-prob");
    assert_eq!(batch.counts(), vec![completion.len() as f32]);
}

#[test]
fn padding_and_batch_neighbours_do_not_change_logps() {
    let device = Device::flex();
    let model = tiny_model(5, &device);
    let t = tokenizer();
    let (p, c) = (
        t.encode_prompt("Hi").unwrap(),
        t.encode_completion(" there").unwrap(),
    );
    let (lp, lc) = (
        t.encode_prompt("A much longer prompt than the first")
            .unwrap(),
        t.encode_completion(" and a long completion too").unwrap(),
    );
    let alone = values(sequence_logps(
        &model,
        &SequenceBatch::new(&[(&p, &c)], 0, 128).unwrap(),
        &device,
    ))[0];
    for pad in [0u32, 2, 77, 250] {
        let padded = values(sequence_logps(
            &model,
            &SequenceBatch::new(&[(&p, &c), (&lp, &lc)], pad, 128).unwrap(),
            &device,
        ))[0];
        assert_close(
            padded as f64,
            alone as f64,
            1e-5,
            &format!("row padded with garbage id {pad}"),
        );
    }
}

#[test]
fn long_rows_keep_the_end_of_the_prompt() {
    let (p, c): (Vec<u32>, Vec<u32>) = ((10..30).collect(), (40..45).collect());
    let batch = SequenceBatch::new(&[(&p, &c)], 0, 12).unwrap();
    assert_eq!(batch.len, 12);
    assert_eq!(&batch.tokens[..7], &[23, 24, 25, 26, 27, 28, 29]);
    assert_eq!(batch.counts(), vec![5.0]);
    assert!(SequenceBatch::new(&[(&[], &c)], 0, 12).is_err());
}

#[test]
fn generation_is_reproducible_with_a_seed() {
    let device = Device::flex();
    let model = tiny_model(6, &device);
    let prompt = tokenizer().encode_prompt("Tell me").unwrap();
    let run = |seed| {
        block_on(generate(
            model.clone(),
            &prompt,
            2,
            SamplingConfig {
                seed,
                max_new_tokens: 20,
                ..SamplingConfig::default()
            },
            2,
            &device,
        ))
        .unwrap()
    };
    let a = run(7);
    assert_eq!(a, run(7));
    assert_ne!(a, run(8));
    assert_eq!(a.len(), 2);
    assert!(a.iter().all(|s| s.len() <= 20 && !s.contains(&2)));
    assert_ne!(a[0], a[1], "the two samples of a pair should differ");
}

#[test]
fn greedy_generation_follows_the_argmax_of_full_forwards() {
    let device = Device::flex();
    let model = tiny_model(9, &device);
    let prompt = tokenizer().encode_prompt("Go").unwrap();
    let greedy = SamplingConfig {
        temperature: 0.0,
        max_new_tokens: 8,
        ..SamplingConfig::default()
    };
    let got = block_on(generate(
        model.clone(),
        &prompt,
        1,
        greedy,
        u32::MAX,
        &device,
    ))
    .unwrap()
    .remove(0);
    let mut ids = prompt.clone();
    let vocab = tiny_config().vocab_size;
    for _ in 0..8 {
        let logits = values(model.forward(tokens(&ids, &device), None));
        let last = &logits[(ids.len() - 1) * vocab..];
        ids.push(
            last.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0 as u32,
        );
    }
    assert_eq!(got, ids[prompt.len()..]);
}

#[test]
fn a_branched_pair_differs_from_the_first_responses_most_uncertain_token() {
    let device = Device::flex();
    let model = tiny_model(4, &device);
    let prompt = tokenizer().encode_prompt("Tell me").unwrap();
    let eos = 2;
    let sampling = SamplingConfig {
        seed: 3,
        max_new_tokens: 24,
        ..SamplingConfig::default()
    };
    let mut decoder = PairDecoder::new(
        model.clone(),
        &prompt,
        PairStyle::Branched,
        sampling,
        eos,
        &device,
    )
    .unwrap();
    while block_on(decoder.step()).unwrap() {}
    let shared = decoder.shared();
    let [a, b] = decoder.samples();
    // The entropy of each of the first response's next-token distributions, by full forwards.
    let vocab = tiny_config().vocab_size;
    let mut ids = prompt.clone();
    ids.extend(&a);
    let logits = values(model.forward(tokens(&ids, &device), None));
    let positions = (a.len() + 1).min(24);
    let entropy: Vec<f64> = (0..positions)
        .map(|t| {
            let row = &logits[(prompt.len() - 1 + t) * vocab..][..vocab];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let z: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
            row.iter()
                .map(|&l| (l as f64 - max).exp() / z)
                .map(|p| if p > 0.0 { -p * p.ln() } else { 0.0 })
                .sum()
        })
        .collect();
    // The first token aside: a branch there would make two independent samples.
    let most = (1..positions)
        .max_by(|&x, &y| entropy[x].total_cmp(&entropy[y]))
        .unwrap();
    assert_eq!(shared, most, "entropies {entropy:?}");
    assert_eq!(a[..shared], b[..shared]);
    // From there on the second is its own: another token (or the end) where the first went on.
    assert_ne!(a.get(shared), b.get(shared));
    assert!(b.len() <= 24 && !b.contains(&eos));
}

#[test]
fn sampling_filters_follow_hf_warpers() {
    let logits = [1.0f32, 3.0, 2.0, -1.0];
    let mut rng = Rng::new(0);
    let cfg = |temperature, top_k, top_p| SamplingConfig {
        temperature,
        top_k,
        top_p,
        ..SamplingConfig::default()
    };
    for _ in 0..50 {
        assert_eq!(sample_token(&logits, &cfg(0.0, 0, 1.0), &mut rng), 1);
        assert_eq!(sample_token(&logits, &cfg(1.0, 1, 1.0), &mut rng), 1);
        assert_eq!(sample_token(&logits, &cfg(1.0, 0, 0.1), &mut rng), 1);
        assert!([1, 2].contains(&sample_token(&logits, &cfg(1.0, 2, 1.0), &mut rng)));
    }
    // Full distribution at temperature 1: frequencies approach softmax.
    let n = 20000;
    let mut counts = [0usize; 4];
    for _ in 0..n {
        counts[sample_token(&logits, &cfg(1.0, 0, 1.0), &mut rng) as usize] += 1;
    }
    let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
    for i in 0..4 {
        assert_close(
            counts[i] as f64 / n as f64,
            (logits[i] as f64).exp() / z,
            0.015,
            &format!("frequency of token {i}"),
        );
    }
}

/// HF's warpers written again in f64: the finite logits by value (ties by id), the first `top_k`,
/// softmax at `temperature`, the shortest head reaching `top_p`, renormalised.
fn warped_distribution(logits: &[f32], temperature: f64, top_k: usize, top_p: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i].is_finite())
        .collect();
    order.sort_by(|&a, &b| logits[b].partial_cmp(&logits[a]).unwrap().then(a.cmp(&b)));
    if top_k > 0 {
        order.truncate(top_k);
    }
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| (logits[i] as f64 / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let (mut kept, mut cumulative) = (0, 0.0);
    while kept < order.len() && (kept == 0 || cumulative < top_p) {
        cumulative += weights[kept] / total;
        kept += 1;
    }
    let mut p = vec![0.0; logits.len()];
    for (&i, w) in order.iter().zip(&weights).take(kept) {
        p[i] = w / total / cumulative;
    }
    p
}

#[test]
fn sampled_frequencies_match_the_warped_distribution() {
    // Ties (ids 0 and 3, 1 and 6), negative logits, and ones that may never be drawn.
    let logits = [
        -0.5f32,
        0.25,
        1.5,
        -0.5,
        f32::NEG_INFINITY,
        -2.0,
        0.25,
        f32::NAN,
        0.75,
    ];
    let mut rng = Rng::new(5);
    let n = 40000;
    for (temperature, top_k, top_p) in [
        (1.0, 0, 1.0),
        (0.7, 0, 1.0),
        (1.0, 3, 1.0),
        (1.0, 5, 1.0),
        (1.3, 0, 0.8),
        (1.0, 6, 0.9),
    ] {
        let config = SamplingConfig {
            temperature,
            top_k,
            top_p,
            ..SamplingConfig::default()
        };
        let mut counts = vec![0usize; logits.len()];
        for _ in 0..n {
            counts[sample_token(&logits, &config, &mut rng) as usize] += 1;
        }
        let expected = warped_distribution(&logits, temperature, top_k, top_p);
        for (i, (&count, &p)) in counts.iter().zip(&expected).enumerate() {
            let at = format!("token {i} at T={temperature}, top_k={top_k}, top_p={top_p}");
            if p == 0.0 {
                assert_eq!(count, 0, "{at} is outside the kept set");
            } else {
                assert_close(count as f64 / n as f64, p, 0.01, &at);
            }
        }
    }
}

#[test]
fn checkpoint_round_trip_is_bit_exact() {
    let device = Device::flex();
    for tie in [false, true] {
        let mut config = tiny_config();
        config.tie_word_embeddings = tie;
        let model = CausalLm::init(&config, 11, &device).unwrap();
        let bytes = block_on(to_safetensors(&model, Dtype::F32)).unwrap();
        let loaded = from_safetensors(&config, &bytes, "model.safetensors", &device).unwrap();
        assert!(bytes == block_on(to_safetensors(&loaded, Dtype::F32)).unwrap());
        let ids = tokens(&[1, 40, 50], &device);
        assert_eq!(
            values(model.forward(ids.clone(), None)),
            values(loaded.forward(ids, None))
        );
        // The file holds exactly the HF names; a tied head is not written twice.
        let names: Vec<String> = parse_safetensors(&bytes, "model.safetensors")
            .unwrap()
            .0
            .into_keys()
            .collect();
        let mut expected: Vec<String> = model
            .named_tensors()
            .into_iter()
            .map(|(n, _, _)| n)
            .collect();
        expected.sort();
        assert_eq!(names, expected);
        assert!(names.contains(&"model.layers.1.self_attn.k_proj.weight".to_string()));
        assert_eq!(names.contains(&"lm_head.weight".to_string()), !tie);
    }
}

/// F16 files: round to nearest even from f32 (ties, subnormals, overflow to infinity), as
/// numpy's `astype(float16)` writes them, and read back exactly.
#[test]
fn f16_checkpoints_round_to_nearest_even() {
    let cases = [
        (1.0f32, 0x3c00u16),
        (-2.0, 0xc000),
        (0.1, 0x2e66),
        (65504.0, 0x7bff),
        (65520.0, 0x7c00),
        (2f32.powi(-24), 0x0001),
        (2f32.powi(-14), 0x0400),
        (1.0 + 2f32.powi(-11), 0x3c00),
        (1.0 + 3.0 * 2f32.powi(-11), 0x3c02),
        (0.0, 0),
        (f32::NAN, 0x7e00),
    ];
    let device = Device::flex();
    let inputs: Vec<f32> = cases.iter().map(|c| c.0).collect();
    let tensor = Tensor::<1>::from_data(TensorData::new(inputs, [cases.len()]), &device);
    let file = vec![("t".to_string(), vec![cases.len()], tensor)];
    let bytes = block_on(write_safetensors(&file, &[], Dtype::F16)).unwrap();
    let (entries, _) = parse_safetensors(&bytes, "t.safetensors").unwrap();
    let entry = &entries["t"];
    assert_eq!(entry.dtype, "F16");
    let halves: Vec<u16> = entry
        .bytes
        .chunks(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    for ((v, h), (&written, read)) in cases.iter().zip(halves.iter().zip(entry.to_f32())) {
        if v.is_nan() {
            assert!(written & 0x7c00 == 0x7c00 && written & 0x03ff != 0 && read.is_nan());
            continue;
        }
        assert_eq!(written, *h, "{v}");
        if h & 0x7c00 == 0x7c00 {
            assert_eq!(read, f32::INFINITY, "{v}");
        } else {
            assert!(
                (read - v).abs() <= v.abs() * 2f32.powi(-11),
                "{v} read as {read}"
            );
        }
    }
}

#[test]
fn broken_checkpoints_are_refused_by_name() {
    let device = Device::flex();
    let config = tiny_config();
    let bytes = block_on(to_safetensors(&tiny_model(0, &device), Dtype::F32)).unwrap();
    let err = from_safetensors(
        &config,
        &bytes[..bytes.len() - 100],
        "m.safetensors",
        &device,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("m.safetensors")
            && err.contains("truncated")
            && err.contains("lm_head.weight"),
        "{err}"
    );
    let err = from_safetensors(&config, &bytes[..4], "m.safetensors", &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("truncated"), "{err}");
    let mut wider = config.clone();
    wider.intermediate_size = 96;
    let err = from_safetensors(&wider, &bytes, "m.safetensors", &device)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.layers.0.mlp.gate_proj.weight") && err.contains("shape"),
        "{err}"
    );
}

#[test]
fn tokenizer_keeps_the_prompt_completion_boundary() {
    let t = tokenizer();
    let prompt = t.encode_prompt("Hello,").unwrap();
    let completion = t.encode_completion(" world! é").unwrap();
    assert_eq!(prompt[0], 1, "the post-processor adds BOS to prompts");
    assert_eq!(*completion.last().unwrap(), 2, "completions end with EOS");
    assert!(
        !completion[..completion.len() - 1].contains(&1),
        "no BOS inside completions"
    );
    assert_eq!(t.decode(&prompt).unwrap(), "Hello,");
    assert_eq!(t.decode(&completion).unwrap(), " world! é");
}

/// Distance in representable f32 values (both finite and of one sign, or equal).
fn ulps(a: f32, b: f32) -> u32 {
    if a == b || (a.is_nan() && b.is_nan()) {
        return 0;
    }
    assert_eq!(a.is_sign_negative(), b.is_sign_negative(), "{a} vs {b}");
    a.to_bits().abs_diff(b.to_bits())
}

/// The CPU backend's exp, sigmoid and softmax (vendor/burn-flex: exp as a vectorised polynomial
/// instead of libm's call) against f64, over every binade an f32 exponent reaches, the values
/// around overflow and underflow, and the special values; on a tensor owned by the op (in
/// place), shared (a new buffer) and strided (the general path).
#[test]
fn cpu_exp_sigmoid_and_softmax_match_f64() {
    let device = Device::flex();
    let mut xs: Vec<f32> = (0..0x42dc_0000u32) // up to 110
        .step_by(997)
        .map(f32::from_bits)
        .flat_map(|x| [x, -x])
        .collect();
    xs.extend([
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -1e9,
        1e9,
        88.722_83,
        88.722_84,
        -87.336_55,
        -103.972_08,
        -103.972_09,
    ]);
    xs.truncate(xs.len() / 2 * 2);
    let n = xs.len();
    let tensor = || Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &device);
    let check = |name: &str, got: Vec<f32>, f: fn(f64) -> f64, max_ulps: u32| {
        for (&x, &y) in xs.iter().zip(&got) {
            let want = f(x as f64) as f32;
            let d = ulps(y, want);
            assert!(
                d <= max_ulps,
                "{name}({x:e}) = {y:e}, f64 gives {want:e} ({d} ulps)"
            );
        }
    };
    let exp = |x: f64| x.exp();
    check("exp", values(tensor().exp()), exp, 1);
    let shared = tensor();
    check("exp (shared)", values(shared.clone().exp()), exp, 1);
    drop(shared);
    let strided = tensor().reshape([n / 2, 2]).transpose().exp().transpose();
    check("exp (strided)", values(strided.reshape([n])), exp, 1);
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let got = values(burn::tensor::activation::sigmoid(tensor()));
    check("sigmoid", got, sigmoid, 2);

    // Rows of attention scores: a wide range, masked entries at −1e9, one row of equal values.
    let mut rng = Rng::new(3);
    let width = 97;
    let mut rows: Vec<f32> = (0..6 * width).map(|_| rng.normal() * 20.0).collect();
    rows[..width / 2].fill(-1e9);
    rows[width..2 * width].fill(0.5);
    let t = Tensor::<2>::from_data(TensorData::new(rows.clone(), [6, width]), &device);
    let got = values(burn::tensor::activation::softmax(t, 1));
    for (row, out) in rows.chunks(width).zip(got.chunks(width)) {
        // The shift by the row's maximum is an f32 subtraction in the kernel (its rounding is
        // the input's, not the kernel's error), the rest in f64 here.
        let max = row.iter().fold(f32::MIN, |m, &v| m.max(v));
        let shifted: Vec<f64> = row.iter().map(|&v| (v - max) as f64).collect();
        let sum: f64 = shifted.iter().map(|d| d.exp()).sum();
        for (&d, &y) in shifted.iter().zip(out) {
            let want = d.exp() / sum;
            // Relative, down to a few units of the subnormal range's fixed spacing (1.4e-45).
            let close = (y as f64 - want).abs() <= 2e-6 * want + 1e-44;
            assert!(close, "softmax {y:e} vs {want:e}");
        }
    }
}

/// Work long enough to be split over threads (vendor/burn-flex splits element-wise ops from 64K
/// elements and matmuls from 100³ multiply-adds) on a pool of two: element-wise results bit for
/// bit those of one pass in f32, written into either operand; exp within its 1 ulp, in place and
/// into a new buffer; a matmul against f64.
#[test]
fn cpu_work_split_over_threads_matches_one_pass() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| {
        let device = Device::flex();
        let mut rng = Rng::new(5);
        let n = 300_000;
        let xs: Vec<f32> = (0..n).map(|_| rng.normal() * 30.0).collect();
        let ys: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        let tensor = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [n]), &device);
        let same = |name: &str, got: Vec<f32>, want: &dyn Fn(usize) -> f32| {
            for (i, &g) in got.iter().enumerate() {
                let w = want(i);
                assert!(
                    g.to_bits() == w.to_bits(),
                    "{name} [{i}]: {g:e}, one pass {w:e}"
                );
            }
        };
        // In place: the scalar ops, then the binary op, write into the tensor they own.
        let got = tensor(&xs).mul_scalar(3.0).add_scalar(1.0).sub(tensor(&ys));
        same("x·3 + 1 − y", values(got), &|i| {
            xs[i] * 3.0 + 1.0 - ys[i]
        });
        // A shared left operand: the result goes into the right one (the reversed kernels).
        let (x, y) = (tensor(&xs), tensor(&ys));
        same("x·y", values(x.clone().mul(tensor(&ys))), &|i| {
            xs[i] * ys[i]
        });
        same("x / y", values(x.clone().div(tensor(&ys))), &|i| {
            xs[i] / ys[i]
        });
        same("x − y", values(x.clone().sub(tensor(&ys))), &|i| {
            xs[i] - ys[i]
        });
        for (name, got) in [
            ("exp", y.clone().exp()),
            ("exp in place", tensor(&ys).exp()),
        ] {
            for (&v, g) in ys.iter().zip(values(got)) {
                assert!(
                    ulps(g, (v as f64).exp() as f32) <= 1,
                    "{name}({v:e}) = {g:e}"
                );
            }
        }
        drop((x, y));

        let (m, k, p) = (128, 96, 128);
        let a: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
        let b: Vec<f32> = (0..k * p).map(|_| rng.normal()).collect();
        let matrix = |v: &[f32], rows, cols| {
            Tensor::<2>::from_data(TensorData::new(v.to_vec(), [rows, cols]), &device)
        };
        let got = values(matrix(&a, m, k).matmul(matrix(&b, k, p)));
        for i in 0..m {
            for j in 0..p {
                let terms = (0..k).map(|l| a[i * k + l] as f64 * b[l * p + j] as f64);
                assert_sum_within_rounding(got[i * p + j], terms, format!("[{i}, {j}]"));
            }
        }
    });
}

/// Products by a wide matrix whose columns vendor/burn-flex splits over the pool (a few rows: a
/// sampled token per sequence, from 64K elements of the matrix; fewer rows than columns: a
/// layer over the batch's tokens, from 100³ multiply-adds): on two threads the same bits as on
/// one, for a matrix as stored and for a transposed view (a tied output head), with a width
/// that leaves a partial block and a partial SIMD vector; no rows gives no rows.
#[test]
fn products_split_by_columns_over_threads_match_one_thread() {
    let (k, n) = (96, 1000);
    let mut rng = Rng::new(9);
    let w: Vec<f32> = (0..k * n).map(|_| rng.normal()).collect();
    let x: Vec<f32> = (0..40 * k).map(|_| rng.normal()).collect();
    let products = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let device = Device::flex();
            let stored = Tensor::<2>::from_data(TensorData::new(w.clone(), [k, n]), &device);
            let transposed =
                Tensor::<2>::from_data(TensorData::new(w.clone(), [n, k]), &device).transpose();
            let mut out = Vec::new();
            for m in [1, 2, 3, 8, 0, 40] {
                let lhs =
                    Tensor::<2>::from_data(TensorData::new(x[..m * k].to_vec(), [m, k]), &device);
                out.push(values(lhs.clone().matmul(stored.clone())));
                out.push(values(lhs.matmul(transposed.clone())));
            }
            out
        })
    };
    let (one, two) = (products(1), products(2));
    for (p, (a, b)) in one.iter().zip(&two).enumerate() {
        let same = a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same && a.len() == b.len(),
            "product {p} differs on two threads"
        );
    }
    // And right: the first row against f64, within the worst case of any summation order.
    let got = &one[0];
    for j in 0..n {
        let terms = (0..k).map(|l| x[l] as f64 * w[l * n + j] as f64);
        assert_sum_within_rounding(got[j], terms, format!("[0, {j}]"));
    }
}

/// Two to eight rows (sampled sequences' tokens) by a transposed view (the tied head's `x·Eᵀ`)
/// are dot products column by column (vendor/burn-flex, `few_rows_by_columns`): a row must
/// come out bit for bit the same among any other rows, and right against f64. 700 columns
/// leave a partial group of eight; a depth of 257, a partial SIMD vector.
#[test]
fn a_few_rows_by_a_transposed_view_are_the_same_among_any_rows() {
    let (k, n) = (257, 700);
    let mut rng = Rng::new(12);
    let w: Vec<f32> = (0..n * k).map(|_| rng.normal()).collect();
    let x: Vec<f32> = (0..9 * k).map(|_| rng.normal()).collect();
    let device = Device::flex();
    let view = Tensor::<2>::from_data(TensorData::new(w.clone(), [n, k]), &device).transpose();
    let product = |rows: &[f32]| {
        let lhs =
            Tensor::<2>::from_data(TensorData::new(rows.to_vec(), [rows.len() / k, k]), &device);
        values(lhs.matmul(view.clone()))
    };
    // Rows 1..9 as eight, then each with row 0 before it.
    let eight = product(&x[k..]);
    for (i, row) in eight.chunks_exact(n).enumerate() {
        let pair = product(&[&x[..k], &x[(i + 1) * k..(i + 2) * k]].concat());
        let differ = row
            .iter()
            .zip(&pair[n..])
            .position(|(a, b)| a.to_bits() != b.to_bits());
        assert!(differ.is_none(), "row {}: column {differ:?} differs", i + 1);
        for (j, &got) in row.iter().enumerate() {
            let terms = (0..k).map(|l| x[(i + 1) * k + l] as f64 * w[j * k + l] as f64);
            assert_sum_within_rounding(got, terms, format!("[{}, {j}]", i + 1));
        }
    }
}

/// A product by a transposed view (a linear layer's backward `dy·Wᵀ`, a tied head's `x·Eᵀ`),
/// whose packing vendor/gemm-common transposes 8 × 8 at a time in AVX registers, against the
/// same matrix stored in that order: the same bits. Rows (203) and depth (99) leave partial
/// blocks of 8 and a partial panel; products of stored matrices are checked against f64 above.
/// Products of at most 8 rows are dot products instead (the test above).
#[test]
fn products_by_a_transposed_view_match_the_matrix_stored_transposed() {
    let (m, k, n) = (150, 99, 203);
    let mut rng = Rng::new(11);
    let w: Vec<f32> = (0..n * k).map(|_| rng.normal()).collect();
    let x: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
    let w_t: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
    let device = Device::flex();
    let view = Tensor::<2>::from_data(TensorData::new(w, [n, k]), &device).transpose();
    let stored = Tensor::<2>::from_data(TensorData::new(w_t, [k, n]), &device);
    for rows in [13, m] {
        let x = Tensor::<2>::from_data(TensorData::new(x[..rows * k].to_vec(), [rows, k]), &device);
        let (a, b) = (
            values(x.clone().matmul(view.clone())),
            values(x.matmul(stored.clone())),
        );
        let differ = a
            .iter()
            .zip(&b)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        assert!(differ.is_none(), "{rows} rows: element {differ:?} differs");
    }
}
