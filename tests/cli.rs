//! The `webdpo` binary end to end: init → eval → train → eval, and its errors on bad files.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::process::Command;

fn webdpo(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_webdpo"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A test's scratch folder, removed when the test passes and kept to look at when it fails.
struct Workdir(PathBuf);

impl std::ops::Deref for Workdir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn workdir(name: &str) -> Workdir {
    let dir = std::env::temp_dir().join(format!("webdpo-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Workdir(dir)
}

const PAIRS: &str = concat!(
    r#"{"prompt": "Q: Is the sky blue?\nA:", "chosen": " Yes, it is blue.", "rejected": " No."}"#,
    "\n",
    r#"{"prompt": "Say something kind:", "chosen": " You did great today!", "#,
    r#""rejected": " Whatever."}"#,
    "\n",
    r#"{"prompt": "The end of the story:", "chosen": " and they all lived happily.", "#,
    r#""rejected": " and then it broke."}"#,
    "\n",
);

fn init_model(dir: &Path) -> String {
    let model = dir.join("model");
    let (ok, _, err) = webdpo(&[
        "init",
        "--out",
        model.to_str().unwrap(),
        "--hidden-size",
        "32",
        "--intermediate-size",
        "64",
        "--seed",
        "3",
    ]);
    assert!(ok, "{err}");
    model.to_str().unwrap().to_string()
}

fn eval(model: &str, reference: &str, data: &str) -> serde_json::Value {
    let (ok, out, err) = webdpo(&["eval", "--model", model, "--ref", reference, "--data", data]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "one JSON object: {out}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn train_then_eval_raises_the_margin() {
    let dir = workdir("train");
    let model = init_model(&dir);
    let data = dir.join("pairs.jsonl");
    std::fs::write(&data, PAIRS).unwrap();
    let data = data.to_str().unwrap();

    let before = eval(&model, &model, data);
    assert!(
        (before["loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-6,
        "{before}"
    );
    assert_eq!(before["rewards/margins"].as_f64().unwrap(), 0.0);
    for key in [
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
    ] {
        assert!(before[key].is_number(), "{key} missing: {before}");
    }

    let trained = dir.join("trained");
    let (ok, _, err) = webdpo(&[
        "train",
        "--model",
        &model,
        "--data",
        data,
        "--out",
        trained.to_str().unwrap(),
        "--lr",
        "1e-3",
        "--steps",
        "4",
        "--batch-size",
        "2",
    ]);
    assert!(ok, "{err}");
    let after = eval(trained.to_str().unwrap(), &model, data);
    assert!(
        after["rewards/margins"].as_f64().unwrap() > 0.05,
        "{before} → {after}"
    );
    assert!(after["loss"].as_f64().unwrap() < before["loss"].as_f64().unwrap());

    let (ok, out, err) = webdpo(&[
        "eval",
        "--model",
        trained.to_str().unwrap(),
        "--ref",
        &model,
        "--data",
        data,
        "--per-pair",
    ]);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines
            .iter()
            .all(|l| l["policy_chosen_logps"].is_number()
                && l["reference_rejected_logps"].is_number())
    );

    let (ok, out, err) = webdpo(&[
        "generate",
        "--model",
        trained.to_str().unwrap(),
        "--prompt",
        "Once",
        "-n",
        "2",
        "--max-new-tokens",
        "8",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2);
}

/// `--trainer kto` on rated rows (and on pairs, unpaired as TRL does): at the reference every
/// loss is ½ and the reference point 0; training raises the desirable rows' reward; a batch of
/// one is refused with TRL's reason.
#[test]
fn kto_evaluates_and_trains_on_rated_rows() {
    let dir = workdir("kto");
    let model = init_model(&dir);
    let rated = dir.join("rated.jsonl");
    std::fs::write(
        &rated,
        concat!(
            r#"{"prompt": "Q: Is the sky blue?\nA:", "completion": " Yes.", "label": true}"#,
            "\n",
            r#"{"prompt": "Say something kind:", "completion": " Whatever.", "label": false}"#,
            "\n",
            r#"{"prompt": "The end:", "completion": " they lived happily.", "label": true}"#,
            "\n",
        ),
    )
    .unwrap();
    let pairs = dir.join("pairs.jsonl");
    std::fs::write(&pairs, PAIRS).unwrap();
    let kto_eval = |model: &str, data: &Path, extra: &[&str]| {
        let data = data.to_str().unwrap();
        let args = [
            &["eval", "--trainer", "kto", "--model", model, "--data", data],
            extra,
        ];
        let (ok, out, err) = webdpo(&args.concat());
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    for data in [&rated, &pairs] {
        let m = kto_eval(&model, data, &[]);
        assert_eq!(
            (m["loss"].as_f64(), m["kl"].as_f64()),
            (Some(0.5), Some(0.0)),
            "{m}"
        );
        for key in [
            "rewards/chosen",
            "rewards/rejected",
            "logps/chosen",
            "logits/rejected",
            "entropy",
        ] {
            assert!(m[key].is_number(), "{key} missing: {m}");
        }
    }
    let (ok, _, err) = webdpo(&[
        "eval",
        "--trainer",
        "kto",
        "--model",
        &model,
        "--data",
        rated.to_str().unwrap(),
        "--batch-size",
        "1",
    ]);
    assert!(!ok && err.contains("at least 2 ratings"), "{err}");

    let trained = dir.join("trained");
    let (ok, _, err) = webdpo(&[
        "train",
        "--trainer",
        "kto",
        "--model",
        &model,
        "--data",
        rated.to_str().unwrap(),
        "--out",
        trained.to_str().unwrap(),
        "--lr",
        "1e-3",
        "--steps",
        "4",
        "--batch-size",
        "3",
        "--desirable-weight",
        "1.5",
    ]);
    assert!(ok, "{err}");
    let after = kto_eval(trained.to_str().unwrap(), &rated, &["--ref", &model]);
    assert!(after["rewards/chosen"].as_f64().unwrap() > 0.0, "{after}");
    assert!(after["loss"].as_f64().unwrap() < 0.5, "{after}");
}

#[test]
fn bad_files_are_named_and_nothing_is_overwritten() {
    let dir = workdir("bad");
    let model = init_model(&dir);
    let data = dir.join("pairs.jsonl");
    std::fs::write(
        &data,
        format!(
            "{}{{\"prompt\": \"x\", \"chosen\": 3}}\n",
            PAIRS.lines().next().unwrap().to_owned() + "\n"
        ),
    )
    .unwrap();
    let (ok, _, err) = webdpo(&["eval", "--model", &model, "--data", data.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("pairs.jsonl:2"),
        "the error names file and line: {err}"
    );

    std::fs::write(&data, PAIRS).unwrap();
    let weights = Path::new(&model).join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "precious").unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let (ok, _, err) = webdpo(&[
        "train",
        "--model",
        &model,
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("model.safetensors") && err.contains("truncated") && err.contains("tensor "),
        "names file and tensor: {err}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "precious",
        "a failed run must not touch --out"
    );

    // A successful run writes the model files and leaves the rest of --out (a model card) alone.
    std::fs::write(&weights, &bytes).unwrap();
    let (ok, _, err) = webdpo(&[
        "train",
        "--model",
        &model,
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "precious"
    );
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        assert!(names.iter().any(|n| n == file), "{file} written: {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.ends_with(".partial")),
        "no partial files left: {names:?}"
    );
}

#[test]
fn lora_training_on_a_hf_model_writes_merged_weights_and_a_peft_adapter() {
    let dir = workdir("lora");
    let hf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/llama");
    let hf = hf.to_str().unwrap();
    let data = dir.join("pairs.jsonl");
    // TRL's conversational form, formatted with the fixture's chat template.
    let chat = concat!(
        r#"{"prompt": [{"role": "user", "content": "Is the sky blue?"}], "#,
        r#""chosen": [{"role": "assistant", "content": "Yes."}], "#,
        r#""rejected": [{"role": "assistant", "content": "No."}]}"#
    );
    std::fs::write(&data, format!("{chat}\n{PAIRS}")).unwrap();
    let data = data.to_str().unwrap();
    let out = dir.join("trained");
    let (ok, _, err) = webdpo(&[
        "train",
        "--model",
        hf,
        "--data",
        data,
        "--out",
        out.to_str().unwrap(),
        "--lora",
        "4,8",
        "--lr",
        "1e-2",
        "--steps",
        "4",
        "--batch-size",
        "4",
    ]);
    assert!(ok, "{err}");
    for file in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "tokenizer_config.json",
        "chat_template.jinja",
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("config.json")).unwrap(),
        serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(
                &std::fs::read_to_string(Path::new(hf).join("config.json")).unwrap()
            )
            .unwrap()
        )
        .unwrap()
    );
    // The adapter on the base and the merged weights are the same trained policy.
    let adapter = out.join("adapter");
    let (ok, with_adapter, err) = webdpo(&[
        "eval",
        "--model",
        hf,
        "--adapter",
        adapter.to_str().unwrap(),
        "--data",
        data,
    ]);
    assert!(ok, "{err}");
    let with_adapter: serde_json::Value = serde_json::from_str(&with_adapter).unwrap();
    let merged = eval(out.to_str().unwrap(), hf, data);
    assert!(
        with_adapter["rewards/margins"].as_f64().unwrap() > 0.05,
        "{with_adapter}"
    );
    for key in ["loss", "rewards/margins", "logps/chosen"] {
        let (a, m) = (
            with_adapter[key].as_f64().unwrap(),
            merged[key].as_f64().unwrap(),
        );
        assert!(
            (a - m).abs() < 1e-3 * a.abs().max(1.0),
            "{key}: adapter {a}, merged {m}"
        );
    }
    // --lora on a model that has nothing to attach to is refused before any work.
    let (ok, _, err) = webdpo(&[
        "train",
        "--model",
        hf,
        "--data",
        data,
        "--out",
        dir.join("x").to_str().unwrap(),
        "--lora",
        "4",
    ]);
    assert!(!ok && err.contains("--lora"), "{err}");
    let (ok, _, err) = webdpo(&[
        "eval", "--model", hf, "--data", data, "--lora", "4,8", "--ref", hf,
    ]);
    assert!(!ok && err.contains("--ref"), "{err}");
}

#[test]
fn a_gguf_file_is_a_model_everywhere_a_folder_is() {
    let dir = workdir("gguf");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let gguf = root.join("tests/fixtures/gguf/llama.gguf");
    let (gguf, hf) = (gguf.to_str().unwrap(), root.join("tests/fixtures/hf/llama"));
    let hf = hf.to_str().unwrap();
    let data = dir.join("pairs.jsonl");
    std::fs::write(&data, PAIRS).unwrap();
    let data = data.to_str().unwrap();
    // The file converted from the folder: the same log-probs (on rows short enough for the
    // folder's 64 positions; the file's context is longer).
    let (from_gguf, from_folder) = (eval(gguf, hf, data), eval(hf, hf, data));
    for key in ["logps/chosen", "logps/rejected"] {
        let (g, f) = (
            from_gguf[key].as_f64().unwrap(),
            from_folder[key].as_f64().unwrap(),
        );
        assert!((g - f).abs() < 1e-4, "{key}: GGUF {g}, folder {f}");
    }
    // LoRA on top, the base frozen: a PEFT adapter and merged safetensors come out.
    let out = dir.join("trained");
    let (ok, _, err) = webdpo(&[
        "train",
        "--model",
        gguf,
        "--data",
        data,
        "--out",
        out.to_str().unwrap(),
        "--lora",
        "4,8",
        "--steps",
        "2",
    ]);
    assert!(ok, "{err}");
    for file in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "chat_template.jinja",
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
}

/// `export-trl` takes `train`'s arguments and writes a TRL job: the model webdpo loaded, the
/// rows, a script whose settings are the arguments' (TRL's names), accelerate's config. The
/// round trip through TRL itself is tools/trl_roundtrip.py's (it needs torch).
#[test]
fn export_trl_writes_a_job_with_the_same_objective() {
    let dir = workdir("export-trl");
    let model = init_model(&dir);
    let data = dir.join("pairs.jsonl");
    std::fs::write(&data, PAIRS).unwrap();
    let data = data.to_str().unwrap();
    let job = dir.join("job");
    let export = |job: &Path, extra: &[&str]| {
        let args = [
            &["export-trl", "--model", &model, "--data", data][..],
            &["--out", job.to_str().unwrap()],
            extra,
        ]
        .concat();
        webdpo(&args)
    };
    let (ok, _, err) = export(
        &job,
        &[
            "--loss",
            "ipo",
            "--beta",
            "0.25",
            "--lr",
            "3e-4",
            "--batch-size",
            "2",
            "--epochs",
            "2",
            "--lora",
            "4,8",
        ],
    );
    assert!(ok, "{err}");
    assert!(err.contains("3 rows"), "{err}");

    // The model is the one webdpo loaded: the same metrics against the original.
    let job_model = job.join("model");
    let same = eval(job_model.to_str().unwrap(), &model, data);
    assert_eq!(same["rewards/margins"].as_f64().unwrap(), 0.0, "{same}");
    assert_eq!(
        std::fs::read_to_string(job.join("data.jsonl")).unwrap(),
        PAIRS
    );

    let script = std::fs::read_to_string(job.join("train.py")).unwrap();
    for setting in [
        "from trl import DPOConfig, DPOTrainer",
        "beta=0.25,",
        r#"loss_type=["ipo"],"#,
        "learning_rate=0.0003,",
        r#"lr_scheduler_type="constant","#,
        "num_train_epochs=2,",
        "BATCH_SIZE = 2",
        "LoraConfig(r=4, lora_alpha=8.0,",
    ] {
        assert!(script.contains(setting), "{setting} not in:\n{script}");
    }
    for file in ["accelerate.yaml", "requirements.txt", "README.md"] {
        assert!(job.join(file).is_file(), "{file}");
    }
    // The script is Python (where there is one to ask).
    if let Ok(out) = Command::new("python3")
        .args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())"])
        .arg(job.join("train.py"))
        .output()
    {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The reference-free trainers come from TRL's experimental modules.
    let orpo = dir.join("orpo");
    let (ok, _, err) = export(&orpo, &["--trainer", "orpo", "--beta", "0.2"]);
    assert!(ok, "{err}");
    let script = std::fs::read_to_string(orpo.join("train.py")).unwrap();
    assert!(script.contains("from trl.experimental.orpo import ORPOConfig, ORPOTrainer"));
    assert!(script.contains("peft_config=None,"));

    // Refusals lose nothing: an existing folder, a separate reference, an adapter.
    let (ok, _, err) = export(&job, &[]);
    assert!(!ok && err.contains("exists"), "{err}");
    assert!(job.join("train.py").is_file());
    let (ok, _, err) = export(&dir.join("other"), &["--ref", &model]);
    assert!(!ok && err.contains("drop --ref"), "{err}");
    assert!(!dir.join("other").exists());
}
