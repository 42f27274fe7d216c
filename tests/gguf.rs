//! GGUF files read as gguf-py reads them: the fixtures in tests/fixtures/gguf were written by
//! gguf-py, and quants-expected.gguf holds gguf-py's own `quants.dequantize` of every tensor
//! (tools/gguf_fixtures.py). Every type must give exactly those f32 values.

use std::path::PathBuf;

use webdpo::hf::gguf::{GgmlType, Gguf, Value};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_type_dequantizes_bit_exactly_as_gguf_py() {
    let (bytes, expected) = (fixture("quants.gguf"), fixture("quants-expected.gguf"));
    let file = Gguf::parse(&bytes, "quants.gguf").unwrap();
    let truth = Gguf::parse(&expected, "quants-expected.gguf").unwrap();
    let types: Vec<GgmlType> = file.tensors.iter().map(|t| t.ggml_type).collect();
    use GgmlType::*;
    assert_eq!(
        types,
        [
            F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2K, Q3K, Q4K, Q5K, Q6K
        ]
    );
    for t in &file.tensors {
        assert_eq!(t.shape(), [2, 512], "{}", t.name);
        let want = truth.tensor(&t.name).unwrap();
        assert_eq!(want.ggml_type, F32);
        let (got, want) = (file.dequantize(t).unwrap(), truth.dequantize(want).unwrap());
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(w.is_finite(), "{}[{i}]", t.name);
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "{}[{i}]: {g} vs gguf-py's {w}",
                t.name
            );
        }
    }
}

#[test]
fn metadata_of_every_value_type_reads_back() {
    let bytes = fixture("quants.gguf");
    let file = Gguf::parse(&bytes, "quants.gguf").unwrap();
    assert_eq!(file.version, 3);
    let get = |k: &str| file.get(k).unwrap_or_else(|| panic!("{k} missing")).clone();
    assert_eq!(get("general.architecture").as_str(), Some("llama"));
    assert_eq!(get("test.u8"), Value::U8(200));
    assert_eq!(get("test.i8"), Value::I8(-100));
    assert_eq!(get("test.u16"), Value::U16(60000));
    assert_eq!(get("test.i16"), Value::I16(-30000));
    assert_eq!(get("test.u32"), Value::U32(4_000_000_000));
    assert_eq!(get("test.i32"), Value::I32(-2_000_000_000));
    assert_eq!(get("test.u64"), Value::U64((1 << 63) + 5));
    assert_eq!(get("test.i64"), Value::I64(-(1 << 62)));
    assert_eq!(get("test.f32"), Value::F32(0.1));
    assert_eq!(get("test.f64"), Value::F64(0.1));
    assert_eq!(get("test.bool"), Value::Bool(true));
    assert_eq!(get("test.string").as_str(), Some("Grüße, 世界"));
    let strings: Vec<_> = get("test.strings").as_array().unwrap().to_vec();
    assert_eq!(strings, ["a", "bc", ""].map(|s| Value::String(s.into())));
    let ints = get("test.ints");
    let ints: Vec<i64> = ints
        .as_array()
        .unwrap()
        .iter()
        .map(|v| match v {
            Value::I32(v) => i64::from(*v),
            Value::I64(v) => *v,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ints, [1, -2, 3]);
}

#[test]
fn a_truncated_or_unsupported_file_is_refused_naming_what() {
    let truncated = fixture("truncated.gguf");
    let e = Gguf::parse(&truncated, "truncated.gguf")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("checkpoint truncated.gguf: tensor 'q6_k'") && e.contains("truncated"),
        "{e}"
    );
    let unknown = fixture("unknown-type.gguf");
    let e = Gguf::parse(&unknown, "unknown-type.gguf")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tensor 'blk.0.attn_q.weight' has ggml type 16, which is not read here"),
        "{e}"
    );
    // Cut inside the metadata: the key being read is named.
    let whole = fixture("quants.gguf");
    let e = Gguf::parse(&whole[..200], "cut.gguf")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("truncated: the file ends at byte 200 while reading"),
        "{e}"
    );
    let e = Gguf::parse(b"GGML\x03\x00\x00\x00", "old.bin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a GGUF file"), "{e}");
}

/// The largest difference between `model`'s logits of the token `rows` and `want` (flat).
fn max_logit_diff(
    model: &webdpo::CausalLm,
    rows: &serde_json::Value,
    want: &serde_json::Value,
) -> f64 {
    use burn::tensor::{Int, Tensor, TensorData};
    let rows: Vec<Vec<i64>> = serde_json::from_value(rows.clone()).unwrap();
    let (b, t) = (rows.len(), rows[0].len());
    let device = burn::tensor::Device::flex();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(rows.concat(), [b, t]), &device);
    let got = model
        .forward(tokens, None)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let want: Vec<f64> = serde_json::from_value(want.clone()).unwrap();
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(&want)
        .map(|(g, w)| (f64::from(*g) - w).abs())
        .fold(0.0, f64::max)
}

#[test]
fn llama_and_qwen2_gguf_files_give_transformers_logits_of_the_same_weights() {
    let device = burn::tensor::Device::flex();
    for (name, tied) in [("llama", false), ("qwen2", true)] {
        let file = format!("{name}.gguf");
        let bytes = fixture(&file);
        let (config, model) = webdpo::hf::gguf::load_model(&bytes, &file, &device).unwrap();
        // The config transformers builds from the metadata: that of the safetensors model.
        let hf_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hf")
            .join(name);
        let read = |f: &str| std::fs::read_to_string(hf_dir.join(f)).unwrap();
        let hf = webdpo::model::ModelConfig::from_json(&read("config.json")).unwrap();
        assert_eq!(config.arch(), hf.arch());
        let shape = |c: &webdpo::model::ModelConfig| {
            let heads = (c.num_attention_heads, c.num_key_value_heads);
            (
                c.vocab_size,
                c.hidden_size,
                c.num_hidden_layers,
                heads,
                c.intermediate_size,
            )
        };
        assert_eq!(shape(&config), shape(&hf), "{name}");
        // GGUF stores the ε as f32; transformers reads that f32 value.
        assert_eq!(
            (config.rope_theta, config.norm_eps),
            (hf.rope_theta, f64::from(hf.norm_eps as f32)),
            "{name}"
        );
        assert_eq!(config.tie_word_embeddings, tied, "{name}");
        // transformers' logits of the safetensors model (f32 on both sides: the same weights).
        let expected: serde_json::Value = serde_json::from_str(&read("expected.json")).unwrap();
        let diff = max_logit_diff(&model, &expected["input_ids"], &expected["logits"]);
        assert!(
            diff < 1e-4,
            "{name}: logits differ from transformers' by {diff}"
        );
    }
}

#[test]
fn another_architecture_is_refused_naming_it() {
    // A GGUF v3 file with one metadata key and no tensors, written by hand.
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    let key = "general.architecture";
    bytes.extend((key.len() as u64).to_le_bytes());
    bytes.extend(key.as_bytes());
    bytes.extend(8u32.to_le_bytes());
    bytes.extend(5u64.to_le_bytes());
    bytes.extend(b"mamba");
    let device = burn::tensor::Device::flex();
    let e = webdpo::hf::gguf::load_model(&bytes, "m.gguf", &device)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "checkpoint m.gguf: general.architecture is 'mamba': only llama and qwen2 GGUF files are read"
    );
}

#[test]
fn the_gguf_vocabulary_tokenizes_as_the_models_tokenizer_json() {
    for name in ["llama", "qwen2"] {
        let bytes = fixture(&format!("{name}.gguf"));
        let file = Gguf::parse(&bytes, name).unwrap();
        let from_gguf = tokenizers::Tokenizer::from_bytes(file.tokenizer_json().unwrap()).unwrap();
        let hf_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hf")
            .join(name);
        let truth = tokenizers::Tokenizer::from_file(hf_dir.join("tokenizer.json")).unwrap();
        for text in [
            "Tell me a story about a shy fox.",
            "  two spaces, tabs\tand\nnew lines; ünïcödé and 世界 🦊",
            "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
        ] {
            for special in [false, true] {
                let ids =
                    |t: &tokenizers::Tokenizer| t.encode(text, special).unwrap().get_ids().to_vec();
                let (got, want) = (ids(&from_gguf), ids(&truth));
                assert_eq!(got, want, "{name}: {text:?}");
                assert_eq!(
                    from_gguf.decode(&got, true).unwrap(),
                    truth.decode(&want, true).unwrap()
                );
            }
        }
        let template = std::fs::read_to_string(hf_dir.join("chat_template.jinja")).ok();
        assert_eq!(file.chat_template(), template.as_deref(), "{name}");
    }
}

/// What transformers itself gives loading each fixture file (tools/gguf_expected.py): the tokens
/// of its GGUF tokenizer and the logits of the model it dequantizes.
fn transformers_on(file: &str) -> serde_json::Value {
    let all: serde_json::Value = serde_json::from_slice(&fixture("expected.json")).unwrap();
    all[file].clone()
}

/// A SentencePiece vocabulary (`tokenizer.ggml.model` "llama": no merges listed, scores, byte
/// fallback, BOS added) tokenizes and decodes as transformers' tokenizer of the same file; and
/// the byte-level files (gpt2) too.
#[test]
fn gguf_vocabularies_tokenize_as_transformers_reads_the_file() {
    for file in ["llama-spm-q8_0.gguf", "llama.gguf", "qwen2.gguf"] {
        let bytes = fixture(file);
        let gguf = Gguf::parse(&bytes, file).unwrap();
        let tokenizer = tokenizers::Tokenizer::from_bytes(gguf.tokenizer_json().unwrap()).unwrap();
        let want = transformers_on(file);
        let texts: Vec<String> = serde_json::from_value(want["texts"].clone()).unwrap();
        let ids: Vec<Vec<u32>> = serde_json::from_value(want["input_ids"].clone()).unwrap();
        let decoded: Vec<String> = serde_json::from_value(want["decoded"].clone()).unwrap();
        for ((text, ids), decoded) in texts.iter().zip(&ids).zip(&decoded) {
            let got = tokenizer.encode(text.as_str(), true).unwrap();
            assert_eq!(got.get_ids(), &ids[..], "{file}: {text:?}");
            assert_eq!(
                &tokenizer.decode(ids, true).unwrap(),
                decoded,
                "{file}: {text:?}"
            );
        }
    }
}

/// transformers loads each fixture file (the Q8_0 one dequantized by its own code) to the same
/// logits as the model read here.
#[test]
fn gguf_files_give_the_logits_transformers_gives_loading_them() {
    let device = burn::tensor::Device::flex();
    for file in ["llama-spm-q8_0.gguf", "llama.gguf", "qwen2.gguf"] {
        let (_, model) = webdpo::hf::gguf::load_model(&fixture(file), file, &device).unwrap();
        let want = transformers_on(file);
        let diff = max_logit_diff(&model, &want["rows"], &want["logits"]);
        assert!(
            diff < 1e-4,
            "{file}: logits differ from transformers' by {diff}"
        );
    }
}
