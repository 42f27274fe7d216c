//! In a real browser (wasm-pack test --headless --chrome): the DPO update on WebGPU and on the
//! wasm CPU fallback, the step-1 invariant, and agreement between the two devices. One file, long,
//! because each test file is its own wasm build (minutes each on two cores).
#![cfg(target_arch = "wasm32")]

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;
use webdpo::hf::tokenizer::{TextTokenizer, byte_level_tokenizer_json};
use webdpo::model::CausalLm;
use webdpo::train::data::PreferencePair;
use webdpo::train::logps::TokenizedPair;
use webdpo::train::{DpoTrainer, StepReport, TrainConfig, Trainer};
use webdpo::{ComputeDevice, ModelConfig};

wasm_bindgen_test_configure!(run_in_browser);

fn config() -> ModelConfig {
    let mut c = ModelConfig::byte_level(32, 2, 4, 64);
    c.num_key_value_heads = Some(2);
    c.max_position_embeddings = 64;
    c
}

fn pairs() -> Vec<TokenizedPair> {
    let t = TextTokenizer::from_bytes(byte_level_tokenizer_json().as_bytes(), &config()).unwrap();
    [
        ("A fox", " ran home happy.", " got lost."),
        ("Be kind:", " Thank you!", " Go away."),
    ]
    .iter()
    .map(|(p, c, r)| {
        TokenizedPair::new(
            &t,
            &PreferencePair {
                prompt: (*p).into(),
                chosen: (*c).into(),
                rejected: (*r).into(),
            },
            Trainer::Dpo,
        )
        .unwrap()
    })
    .collect()
}

/// Two updates from the same seeded weights; the reports of both.
async fn two_steps(device: &ComputeDevice) -> Vec<StepReport> {
    let model = CausalLm::init(&config(), 0, &device.device).unwrap();
    let mut trainer = DpoTrainer::new(
        model,
        None,
        TrainConfig {
            learning_rate: 1e-3,
            ..TrainConfig::default()
        },
        &device.device,
    )
    .unwrap();
    let batch = trainer.prepare(&pairs(), 0).await.unwrap();
    vec![
        trainer.step(&batch).await.unwrap(),
        trainer.step(&batch).await.unwrap(),
    ]
}

/// WebGPU, for the tests that run on it. Headless Chromium has it on SwiftShader, and Firefox
/// on Mesa's lavapipe (Vulkan) with `dom.webgpu.enabled` (webdriver.json): there it must work.
/// Another browser without an adapter runs the CPU cases alone, and says so.
async fn webgpu() -> Option<ComputeDevice> {
    let navigator = js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).unwrap();
    let agent = js_sys::Reflect::get(&navigator, &"userAgent".into())
        .unwrap()
        .as_string()
        .unwrap_or_default();
    // A software GPU sharing two cores with the app's build can take minutes over one read;
    // the test runner's own limit (WASM_BINDGEN_TEST_TIMEOUT) is what stops a stuck one here.
    webdpo::runtime::readback::set_readback_timeout(1_200_000);
    let gpu = ComputeDevice::gpu().await;
    if agent.contains("Chrome/") || agent.contains("Firefox/") {
        let gpu = gpu.expect(
            "a WebGPU adapter: SwiftShader in headless Chromium; in Firefox, dom.webgpu.enabled \
             (webdriver.json) and a Vulkan driver (mesa-vulkan-drivers)",
        );
        web_sys::console::log_1(&format!("WebGPU cases on {}", gpu.description).into());
        return Some(gpu);
    }
    match gpu {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            web_sys::console::log_1(&format!("WebGPU cases skipped in {agent}: {e}").into());
            None
        }
    }
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-4, "{what}: WebGPU {a} vs CPU {b}");
}

#[wasm_bindgen_test]
async fn dpo_update_on_webgpu_and_cpu_agree() {
    webdpo::web::init_runtime();
    let Some(gpu) = webgpu().await else { return };
    assert!(
        gpu.is_gpu && gpu.description.starts_with("GPU: "),
        "{}",
        gpu.description
    );
    let cpu = ComputeDevice::cpu();
    let (g, c) = (two_steps(&gpu).await, two_steps(&cpu).await);
    for reports in [&g, &c] {
        let m = reports[0].metrics;
        assert!(
            (m.loss - std::f64::consts::LN_2).abs() < 1e-6,
            "step-1 loss {}",
            m.loss
        );
        assert_eq!(m.rewards_margins, 0.0);
        assert!(reports.iter().all(|r| r.skipped.is_none()));
    }
    for (step, (g, c)) in g.iter().zip(&c).enumerate() {
        let (g, c) = (g.metrics, c.metrics);
        for (what, a, b) in [
            ("loss", g.loss, c.loss),
            ("rewards/chosen", g.rewards_chosen, c.rewards_chosen),
            ("rewards/rejected", g.rewards_rejected, c.rewards_rejected),
            ("rewards/margins", g.rewards_margins, c.rewards_margins),
            (
                "rewards/accuracies",
                g.rewards_accuracies,
                c.rewards_accuracies,
            ),
            ("logps/chosen", g.logps_chosen, c.logps_chosen),
            ("logps/rejected", g.logps_rejected, c.logps_rejected),
            ("grad_norm", g.grad_norm.unwrap(), c.grad_norm.unwrap()),
        ] {
            close(a, b, &format!("step {} {what}", step + 1));
        }
    }
    // The second step sees the first update: training moved the policy on both devices.
    assert!(g[1].metrics.rewards_margins > 0.0 && c[1].metrics.rewards_margins > 0.0);
}

/// One update with `train`'s objective from a policy that differs from its reference: its loss
/// and gradient norm.
async fn one_step(device: &ComputeDevice, train: TrainConfig) -> (f64, f64) {
    let policy = CausalLm::init(&config(), 1, &device.device).unwrap();
    let reference = CausalLm::init(&config(), 0, &device.device).unwrap();
    let unpaired = train.trainer.unpaired();
    let mut trainer = DpoTrainer::new(policy, Some(reference), train, &device.device).unwrap();
    if unpaired {
        // The pairs unpaired as TRL does: the chosen rows, then the rejected.
        let rated = |label: bool| {
            pairs().into_iter().map(move |p| webdpo::TokenizedRating {
                completion: if label { p.chosen } else { p.rejected },
                prompt: p.prompt,
                label,
            })
        };
        let ratings: Vec<_> = rated(true).chain(rated(false)).collect();
        let batch = trainer.prepare_rated(&ratings, 0).await.unwrap();
        let m = trainer.step_rated(&batch).await.unwrap().metrics;
        assert!(m.kl >= 0.0);
        return (m.loss, m.grad_norm.unwrap());
    }
    let batch = trainer.prepare(&pairs(), 0).await.unwrap();
    let m = trainer.step(&batch).await.unwrap().metrics;
    (m.loss, m.grad_norm.unwrap())
}

/// Objectives beyond DPO's sigmoid (length-normalised, sorted, modulated, unpaired-style, a
/// weighted list, the reference-free SimPO and ORPO, and KTO on rated rows) give the same loss
/// and gradient on WebGPU and on the CPU fallback.
#[wasm_bindgen_test]
async fn objectives_agree_on_webgpu_and_cpu() {
    use webdpo::LossType;
    webdpo::web::init_runtime();
    let Some(gpu) = webgpu().await else { return };
    let cpu = ComputeDevice::cpu();
    let one = |l| webdpo::DpoConfig::new(0.1, l);
    let mpo = webdpo::DpoConfig {
        loss_type: vec![LossType::Sigmoid, LossType::BcoPair, LossType::Sft],
        loss_weights: Some(vec![0.8, 0.2, 1.0]),
        ..webdpo::DpoConfig::default()
    };
    let dpo = |dpo| TrainConfig {
        dpo,
        ..TrainConfig::default()
    };
    let simpo = TrainConfig {
        trainer: webdpo::train::Trainer::Cpo,
        cpo: webdpo::train::CpoConfig {
            loss_type: webdpo::train::CpoLoss::Simpo,
            ..Default::default()
        },
        ..TrainConfig::default()
    };
    let orpo = TrainConfig {
        trainer: webdpo::train::Trainer::Orpo,
        ..TrainConfig::default()
    };
    let kto = |loss_type| TrainConfig {
        trainer: webdpo::train::Trainer::Kto,
        kto: webdpo::KtoConfig {
            loss_type,
            undesirable_weight: 1.5,
            ..Default::default()
        },
        ..TrainConfig::default()
    };
    for train in [
        dpo(one(LossType::Ipo)),
        dpo(one(LossType::Aot)),
        dpo(one(LossType::Discopop)),
        dpo(one(LossType::ApoZero)),
        dpo(mpo),
        simpo,
        orpo,
        kto(webdpo::train::KtoLoss::Kto),
        kto(webdpo::train::KtoLoss::ApoZeroUnpaired),
    ] {
        let what = match train.trainer {
            webdpo::train::Trainer::Kto => format!("kto {}", train.kto.loss_type),
            trainer => format!("{trainer} {:?}", train.dpo.loss_type),
        };
        let (g, c) = (
            one_step(&gpu, train.clone()).await,
            one_step(&cpu, train).await,
        );
        close(g.0, c.0, &format!("{what} loss"));
        close(g.1, c.1, &format!("{what} grad_norm"));
    }
}

/// The app's whole loop through the `Session` API on one backend: stream two responses, learn
/// from a pick, score tokens, save and reload the training state, undo, reset.
async fn session_loop(backend: &str) {
    use webdpo::web::{Session, byte_level_tokenizer, init_weights};
    webdpo::web::init_runtime();
    let weights = init_weights(config().to_json(), 1).await.unwrap();
    let create = || {
        Session::create(
            config().to_json(),
            byte_level_tokenizer().into_bytes(),
            weights.clone(),
            backend.into(),
        )
    };
    let mut session = create().await.unwrap();
    assert_eq!(
        session.is_gpu(),
        backend == "webgpu",
        "{}",
        session.device()
    );

    // Streaming: every call extends the texts, until the generation ends.
    let sampling = serde_wasm_bindgen::to_value(&webdpo::generate::SamplingConfig {
        max_new_tokens: 12,
        ..Default::default()
    })
    .unwrap();
    let mut generation = session
        .start_generation(
            "Hello".into(),
            2,
            sampling.clone(),
            false,
            JsValue::UNDEFINED,
        )
        .unwrap();
    let mut texts: Vec<String> = vec![String::new(); 2];
    let mut calls = 0;
    loop {
        let next = generation.next().await.unwrap();
        if next.is_undefined() {
            break;
        }
        let now: Vec<String> = serde_wasm_bindgen::from_value(next).unwrap();
        assert!(
            now.iter()
                .zip(&texts)
                .all(|(now, before)| now.starts_with(before.as_str()))
        );
        texts = now;
        calls += 1;
    }
    assert!((1..=12).contains(&calls));

    // A branched pair: the second response starts with the first's text up to the branch.
    let branched = serde_wasm_bindgen::to_value(&webdpo::generate::PairStyle::Branched).unwrap();
    let mut pair = session
        .start_generation("Hello".into(), 2, sampling, false, branched)
        .unwrap();
    let mut last = JsValue::UNDEFINED;
    loop {
        let next = pair.next().await.unwrap();
        if next.is_undefined() {
            break;
        }
        last = next;
    }
    let both: Vec<String> = serde_wasm_bindgen::from_value(last).unwrap();
    // A cut inside a character's bytes decodes as U+FFFD at the end of the shared text.
    let shared = pair.shared().unwrap();
    let shared = shared.trim_end_matches('\u{FFFD}');
    assert!(both.iter().all(|text| text.starts_with(shared)));

    let before = session.policy_weights().await.unwrap();
    let undo = session.snapshot();
    let reports: Vec<StepReport> = serde_wasm_bindgen::from_value(
        session
            .prefer(
                serde_wasm_bindgen::to_value(&webdpo::PreferencePair {
                    prompt: "Hello".into(),
                    chosen: texts[0].clone().into(),
                    rejected: texts[1].clone().into(),
                })
                .unwrap(),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    assert!((reports[0].metrics.loss - std::f64::consts::LN_2).abs() < 1e-6);
    let after = session.policy_weights().await.unwrap();
    assert_eq!(after.len(), weights.len());
    assert_ne!(after, before, "the update changed the policy");
    assert_eq!(session.steps(), 1.0);

    // Per-token scores: the policy moved up on the chosen tokens overall, the reference did not.
    let scores = session
        .token_scores("Hello".into(), texts[0].clone().into())
        .await
        .unwrap();
    let get = |key: &str| js_sys::Reflect::get(&scores, &key.into()).unwrap();
    let policy: Vec<f32> = serde_wasm_bindgen::from_value(get("policy")).unwrap();
    let reference: Vec<f32> = serde_wasm_bindgen::from_value(get("reference")).unwrap();
    let tokens: Vec<String> = serde_wasm_bindgen::from_value(get("tokens")).unwrap();
    assert_eq!(
        (tokens.len(), policy.len()),
        (reference.len(), reference.len())
    );
    assert_eq!(tokens.last().unwrap(), "</s>");
    assert!(policy.iter().sum::<f32>() > reference.iter().sum::<f32>());

    // Saved state (read asynchronously, as WebGPU requires) continues in a fresh session.
    let state = session.save_state().await.unwrap();
    let bytes = |key: &str| {
        js_sys::Uint8Array::new(&js_sys::Reflect::get(&state, &key.into()).unwrap()).to_vec()
    };
    let mut reloaded = create().await.unwrap();
    reloaded
        .load_state(bytes("weights"), Some(bytes("optimizer")))
        .unwrap();
    assert_eq!(
        (reloaded.steps(), reloaded.policy_weights().await.unwrap()),
        (1.0, after.clone())
    );
    assert!(reloaded.load_state(vec![1, 2, 3], None).is_err());
    assert_eq!(
        reloaded.policy_weights().await.unwrap(),
        after,
        "a bad file changed nothing"
    );

    // Undo gives the exact previous weights; reset gives the reference.
    session.restore(&undo);
    assert_eq!(
        (session.steps(), session.policy_weights().await.unwrap()),
        (0.0, before)
    );
    reloaded.reset().unwrap();
    assert_eq!(reloaded.policy_weights().await.unwrap(), weights);
}

/// The `kind` JS code reads off an error the bindings threw.
fn kind_of(error: &wasm_bindgen::JsValue) -> String {
    js_sys::Reflect::get(error, &"kind".into())
        .unwrap()
        .as_string()
        .expect("every error has a kind")
}

/// Errors reach JS as `Error`s carrying the message and a machine-readable kind, one per cause.
#[wasm_bindgen_test]
async fn errors_reach_js_with_their_kind() {
    use webdpo::web::{Session, byte_level_tokenizer, init_weights, parse_pairs};
    webdpo::web::init_runtime();
    let thrown = |e: webdpo::Error| wasm_bindgen::JsValue::from(e);
    let tokenizer = || byte_level_tokenizer().into_bytes();
    let bad_weights = Session::create(config().to_json(), tokenizer(), vec![1, 2, 3], "cpu".into())
        .await
        .err()
        .unwrap();
    assert_eq!(kind_of(&thrown(bad_weights)), "format");
    let weights = init_weights(config().to_json(), 1).await.unwrap();
    let no_such_backend = Session::create(
        config().to_json(),
        tokenizer(),
        weights.clone(),
        "tpu".into(),
    )
    .await
    .err()
    .unwrap();
    let no_such_backend = thrown(no_such_backend);
    assert_eq!(kind_of(&no_such_backend), "setting");
    let message = no_such_backend
        .dyn_into::<js_sys::Error>()
        .unwrap()
        .message()
        .as_string()
        .unwrap();
    assert!(
        message.contains("backend") && message.contains("webgpu"),
        "{message}"
    );
    let mut session = Session::create(config().to_json(), tokenizer(), weights, "cpu".into())
        .await
        .unwrap();
    let mut train = session.train_config();
    let dpo = js_sys::Reflect::get(&train, &"dpo".into()).unwrap();
    js_sys::Reflect::set(&dpo, &"beta".into(), &(-1.0).into()).unwrap();
    assert_eq!(
        kind_of(&thrown(
            session.set_train_config(train.clone()).err().unwrap()
        )),
        "setting"
    );
    train = js_sys::Reflect::get(&train, &"dpo".into()).unwrap();
    assert_eq!(
        kind_of(&thrown(session.set_train_config(train).err().unwrap())),
        "setting"
    );
    let bad_line = parse_pairs(
        "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n{\"prompt\": 3}\n",
        "bad.jsonl",
    );
    let bad_line = thrown(bad_line.err().unwrap());
    assert_eq!(kind_of(&bad_line), "data");
    assert!(
        bad_line
            .dyn_into::<js_sys::Error>()
            .unwrap()
            .message()
            .as_string()
            .unwrap()
            .starts_with("bad.jsonl:2: ")
    );
    let lost = thrown(webdpo::Error::Device("the adapter was lost".into()));
    assert_eq!(kind_of(&lost), "device");
    assert_eq!(
        lost.dyn_into::<js_sys::Error>()
            .unwrap()
            .message()
            .as_string()
            .unwrap(),
        "device: the adapter was lost"
    );
}

/// The page's prompts for the built-in model are the corpus's: the instruction, trimmed, and a
/// newline (what `webdpo pretrain` trained it on).
#[wasm_bindgen_test]
fn story_prompts_are_the_corpus_format() {
    webdpo::web::init_runtime();
    let typed = "  Write a story about a shy fox who finds a red kite. ";
    let prompt = webdpo::web::story_prompt(typed);
    assert_eq!(prompt, webdpo::storyworld::format_prompt(typed.trim()));
    assert_eq!(
        prompt,
        "Write a story about a shy fox who finds a red kite.\n"
    );
}

/// A TRL JSONL file's text and conversational rows, as the page imports them.
#[wasm_bindgen_test]
fn pairs_parse_as_text_and_conversational_rows() {
    use webdpo::train::data::{Message, PreferencePair, Turns};
    webdpo::web::init_runtime();
    let text = concat!(
        "{\"prompt\": \"Hi\", \"chosen\": \" yes\", \"rejected\": \" no\"}\n\n",
        "{\"prompt\": [{\"role\": \"user\", \"content\": \"Hi\"}], ",
        "\"chosen\": [{\"role\": \"assistant\", \"content\": \"yes\"}], ",
        "\"rejected\": [{\"role\": \"assistant\", \"content\": \"no\"}]}\n",
    );
    let pairs: Vec<PreferencePair> =
        serde_wasm_bindgen::from_value(webdpo::web::parse_pairs(text, "pairs.jsonl").unwrap())
            .unwrap();
    let said = |role: &str, content: &str| {
        Turns::Messages(vec![Message {
            role: role.into(),
            content: content.into(),
        }])
    };
    assert_eq!(
        pairs[0],
        PreferencePair {
            prompt: "Hi".into(),
            chosen: " yes".into(),
            rejected: " no".into()
        }
    );
    assert_eq!(
        pairs[1],
        PreferencePair {
            prompt: said("user", "Hi"),
            chosen: said("assistant", "yes"),
            rejected: said("assistant", "no")
        }
    );
}

#[wasm_bindgen_test]
async fn session_loop_on_webgpu() {
    webdpo::web::init_runtime();
    if webgpu().await.is_some() {
        session_loop("webgpu").await;
    }
}

#[wasm_bindgen_test]
async fn session_loop_on_the_cpu_fallback() {
    session_loop("cpu").await;
    assert!(
        webdpo::web::Session::create("{}".into(), vec![], vec![], "cpu".into())
            .await
            .is_err()
    );
}

/// A fixture of tests/fixtures/hf as the files a user would pick.
macro_rules! fixture_files {
    ($name:literal: $($file:literal),+) => {
        webdpo::hf::model_files::ModelFiles::new([$((
            $file.to_string(),
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf/", $name, "/", $file
            ))
            .to_vec(),
        )),+])
    };
}

fn hf_fixtures() -> Vec<(
    &'static str,
    webdpo::hf::model_files::ModelFiles,
    &'static [u8],
    &'static str,
)> {
    macro_rules! extra {
        ($name:literal) => {
            (
                include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/hf/",
                    $name,
                    "/reference/model.safetensors"
                )) as &[u8],
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/hf/",
                    $name,
                    "/expected.json"
                )),
            )
        };
    }
    let (lr, le) = extra!("llama");
    let (qr, qe) = extra!("qwen2");
    let (gr, ge) = extra!("gpt2");
    vec![
        (
            "llama",
            fixture_files!("llama": "config.json", "tokenizer.json", "tokenizer_config.json",
                "chat_template.jinja", "model.safetensors.index.json",
                "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"),
            lr,
            le,
        ),
        (
            "qwen2",
            fixture_files!("qwen2": "config.json", "tokenizer.json", "tokenizer_config.json",
                "chat_template.jinja", "model.safetensors"),
            qr,
            qe,
        ),
        (
            "gpt2",
            fixture_files!("gpt2": "config.json", "tokenizer.json", "tokenizer_config.json",
                "chat_template.jinja", "model.safetensors"),
            gr,
            ge,
        ),
    ]
}

/// Hugging Face parity in the browser, on WebGPU and the CPU fallback: transformers' logits and
/// the DPO metrics of TRL's formulas (tests/fixtures/hf, as natively in tests/hf.rs).
#[wasm_bindgen_test]
async fn hf_checkpoints_match_transformers_and_trl_in_the_browser() {
    use burn::tensor::{Int, Tensor, TensorData};
    webdpo::web::init_runtime();
    let numbers = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect::<Vec<f64>>()
    };
    let ids = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect::<Vec<u32>>()
    };
    for device in webgpu().await.into_iter().chain([ComputeDevice::cpu()]) {
        for (name, files, reference, expected) in hf_fixtures() {
            let expected: serde_json::Value = serde_json::from_str(expected).unwrap();
            let config = files.config().unwrap();
            let model = files.model(&config, &device.device).unwrap();
            let rows: Vec<Vec<u32>> = expected["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(ids)
                .collect();
            let tokens = Tensor::<2, Int>::from_data(
                TensorData::new(
                    rows.concat().iter().map(|&i| i as i64).collect::<Vec<_>>(),
                    [rows.len(), rows[0].len()],
                ),
                &device.device,
            );
            let logits = model
                .forward(tokens, None)
                .into_data_async()
                .await
                .unwrap()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap();
            let want = numbers(&expected["logits"]);
            let diff = logits
                .iter()
                .zip(&want)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(
                diff < 1e-4,
                "{name} on {}: logits differ from transformers' by {diff}",
                device.description
            );
            let reference = webdpo::hf::safetensors::from_safetensors(
                &config,
                reference,
                "reference",
                &device.device,
            )
            .unwrap();
            let dpo = &expected["dpo"];
            let train = TrainConfig {
                dpo: webdpo::train::dpo::DpoConfig {
                    beta: dpo["beta"].as_f64().unwrap(),
                    ..Default::default()
                },
                ..TrainConfig::default()
            };
            let trainer = DpoTrainer::new(model, Some(reference), train, &device.device).unwrap();
            let pairs: Vec<TokenizedPair> = expected["pairs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| TokenizedPair {
                    prompt: ids(&p["prompt"]),
                    chosen: ids(&p["chosen"]),
                    rejected: ids(&p["rejected"]),
                })
                .collect();
            let batch = trainer.prepare(&pairs, 0).await.unwrap();
            let got =
                serde_json::to_value(trainer.evaluate(&batch).await.unwrap().metrics()).unwrap();
            for metric in [
                "loss",
                "rewards/chosen",
                "rewards/rejected",
                "rewards/accuracies",
                "rewards/margins",
                "logps/chosen",
                "logps/rejected",
            ] {
                let (g, w) = (got[metric].as_f64().unwrap(), dpo[metric].as_f64().unwrap());
                assert!(
                    (g - w).abs() < 1e-4 * w.abs().max(1.0),
                    "{name} on {} {metric}: ours {g}, TRL's formulas {w}",
                    device.description
                );
            }
        }
    }
}

/// A model of SmolLM2-135M's shape (random weights drawn here, nothing downloaded) with LoRA on
/// WebGPU: the memory check the app runs admits all 30 layers, and one DPO update on two of
/// them (the real vocabulary, widths and grouped heads: its largest buffers and every kernel
/// shape; 30 identical layers would take minutes more on SwiftShader) completes at ln 2.
#[wasm_bindgen_test]
async fn smollm2_135m_shape_with_lora_trains_on_webgpu() {
    use webdpo::LoraConfig;
    use webdpo::runtime::memory::{MemoryEstimate, MemoryLimits};
    webdpo::web::init_runtime();
    let Some(gpu) = webgpu().await else { return };
    let mut c = ModelConfig::new(49152, 576, 30, 9, 1536);
    (
        c.num_key_value_heads,
        c.tie_word_embeddings,
        c.rope_theta,
        c.norm_eps,
        c.max_position_embeddings,
        c.eos_token_id,
    ) = (Some(3), true, 100000.0, 1e-5, 8192, Some(2));
    let lora = LoraConfig::attention(c.arch(), 8, 16.0);
    let train = TrainConfig {
        max_length: 64,
        optim: webdpo::train::optimizer::Optim::AdamW,
        learning_rate: 1e-3,
        ..TrainConfig::default()
    };
    let estimate = MemoryEstimate::new(&c, Some(&lora), train.optim, 1, train.max_length);
    let limits = MemoryLimits {
        max_buffer: gpu.max_buffer,
        budget: 4_000_000_000,
    };
    web_sys::console::log_1(
        &format!(
            "SmolLM2-135M shape, LoRA r=8 on {}: estimate {} = {} bytes; adapter binds up to {:?} \
             bytes, largest tensor {} bytes",
            gpu.description,
            estimate.breakdown(),
            estimate.total,
            gpu.max_buffer,
            estimate.largest_buffer
        )
        .into(),
    );
    estimate
        .check(&limits, None)
        .expect("admitted by the memory check");
    // Without LoRA, on a 2 GB budget, the page's check refuses it with the message a user sees.
    use serde::Serialize;
    let options = serde_json::json!({"backend": "webgpu", "budget": 2e9, "max_length": 64})
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap();
    let refused = webdpo::web::check_memory(c.to_json(), options)
        .await
        .err()
        .expect("full fine-tuning does not fit in 2 GB");
    let refused = wasm_bindgen::JsValue::from(refused);
    assert_eq!(kind_of(&refused), "memory");
    let message = refused
        .dyn_into::<js_sys::Error>()
        .unwrap()
        .message()
        .as_string()
        .unwrap();
    web_sys::console::log_1(
        &format!("SmolLM2-135M shape without LoRA, 2 GB budget: {message}").into(),
    );
    assert!(message.contains("turn LoRA on"), "{message}");
    c.num_hidden_layers = 2;
    let model = lora
        .apply(CausalLm::init(&c, 0, &gpu.device).unwrap(), 0)
        .unwrap();
    let mut trainer = DpoTrainer::new(model, None, train, &gpu.device).unwrap();
    let pair = TokenizedPair {
        prompt: (10..18).collect(),
        chosen: (100..108).collect(),
        rejected: (200..208).collect(),
    };
    let batch = trainer.prepare(&[pair], 0).await.unwrap();
    let report = trainer.step(&batch).await.unwrap();
    assert!(report.skipped.is_none(), "{:?}", report.skipped);
    assert!(
        (report.metrics.loss - std::f64::consts::LN_2).abs() < 1e-5,
        "step-1 loss {}",
        report.metrics.loss
    );
    assert!(report.metrics.grad_norm.unwrap() > 0.0);
    web_sys::console::log_1(
        &format!(
            "SmolLM2-135M shape, 2 layers, LoRA: one update in {:.0} ms (forward + backward)",
            report.forward_backward_ms
        )
        .into(),
    );
}
