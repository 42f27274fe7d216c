//! PEFT's adapter format: `adapter_config.json` + `adapter_model.safetensors`
//! with tensors named `base_model.model.<module>.lora_A.weight` / `.lora_B.weight`, as
//! `PeftModel.save_pretrained` writes them, so an adapter trained here loads in PEFT and the
//! reverse.

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::hf::safetensors::{Dtype, parse_safetensors, write_safetensors};
use crate::model::{CausalLm, LoraConfig};

const PREFIX: &str = "base_model.model.";

/// PEFT's `adapter_config.json` for `model`'s adapters: every key `LoraConfig` 0.21 writes.
fn peft_config(model: &CausalLm, config: &LoraConfig) -> Value {
    let spec = model.arch().spec();
    let (class, library) = (spec.class, spec.module);
    json!({
        "alora_invocation_tokens": null, "alpha_pattern": {}, "arrow_config": null,
        "auto_mapping": { "base_model_class": class, "parent_library": library },
        "base_model_name_or_path": null, "bias": "none", "corda_config": null,
        "ensure_weight_tying": false, "eva_config": null, "exclude_modules": null,
        "fan_in_fan_out": spec.conv1d, "inference_mode": true,
        "init_lora_weights": true, "kasa_config": null, "layer_replication": null,
        "layers_pattern": null, "layers_to_transform": null, "loftq_config": {},
        "lora_alpha": config.alpha, "lora_bias": false, "lora_dropout": 0.0,
        "lora_ga_config": null, "megatron_config": null, "megatron_core": "megatron.core",
        "modules_to_save": null, "monteclora_config": null, "peft_type": "LORA",
        "peft_version": "0.21.2", "qalora_group_size": 16, "r": config.r, "rank_pattern": {},
        "revision": null, "target_modules": config.targets, "target_parameters": null,
        "task_type": "CAUSAL_LM", "trainable_token_indices": null, "use_bdlora": null,
        "use_dora": false, "use_qalora": false, "use_rslora": false, "velora_config": null,
    })
}

/// The adapters of `model` as PEFT's two files: `adapter_config.json` text and
/// `adapter_model.safetensors` bytes (one device read).
pub async fn to_peft(model: &CausalLm, config: &LoraConfig) -> Result<(String, Vec<u8>)> {
    if !model.has_adapters() {
        return Err(Error::Setting(
            "the model has no LoRA adapters to export".into(),
        ));
    }
    Ok((
        serde_json::to_string_pretty(&peft_config(model, config)).expect("JSON serialises"),
        adapter_safetensors(model).await?,
    ))
}

/// The adapters of `model` as PEFT's adapter_model.safetensors (one device read).
pub async fn adapter_safetensors(model: &CausalLm) -> Result<Vec<u8>> {
    let tensors: Vec<_> = model
        .trainable_tensors()
        .into_iter()
        .map(|(name, shape, t)| (format!("{PREFIX}{name}"), shape, t))
        .collect();
    write_safetensors(&tensors, &[], Dtype::F32).await
}

/// The LoRA settings of a PEFT `adapter_config.json`; a setting this crate does not implement
/// (DoRA, rsLoRA, per-module ranks, trained biases) is refused.
pub fn peft_config_from_json(config_json: &str) -> Result<LoraConfig> {
    let err = |m: String| Error::checkpoint("adapter_config.json", m);
    let c: Value =
        serde_json::from_str(config_json).map_err(|e| err(format!("not valid JSON: {e}")))?;
    if c["peft_type"] != "LORA" {
        return Err(err(format!("peft_type {} is not LORA", c["peft_type"])));
    }
    for (key, off) in [
        ("use_dora", json!(false)),
        ("use_rslora", json!(false)),
        ("bias", json!("none")),
        ("rank_pattern", json!({})),
        ("alpha_pattern", json!({})),
    ] {
        if c.get(key).is_some_and(|v| !v.is_null() && *v != off) {
            return Err(err(format!(
                "{key} = {}; only plain LoRA is supported",
                c[key]
            )));
        }
    }
    let r = c["r"].as_u64().ok_or_else(|| err("no rank r".into()))? as usize;
    let alpha = c["lora_alpha"]
        .as_f64()
        .ok_or_else(|| err("no lora_alpha".into()))?;
    let targets = match &c["target_modules"] {
        Value::Array(t) => t
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        Value::String(t) => vec![t.clone()],
        _ => Vec::new(),
    };
    Ok(LoraConfig { r, alpha, targets })
}

/// Attaches a PEFT LoRA adapter (`adapter_config.json` text, `adapter_model.safetensors` bytes)
/// to `model`. Every tensor of the file must belong to a linear layer of this model.
pub fn from_peft(
    model: CausalLm,
    config_json: &str,
    weights: &[u8],
    file: &str,
) -> Result<(CausalLm, LoraConfig)> {
    let config = peft_config_from_json(config_json)?;
    Ok((
        attach_peft_weights(model, config.r, config.alpha, weights, file)?,
        config,
    ))
}

/// Attaches the adapters of an adapter_model.safetensors (rank `r`, scaled by `alpha / r`) to
/// the layers it names.
pub fn attach_peft_weights(
    model: CausalLm,
    r: usize,
    alpha: f64,
    weights: &[u8],
    file: &str,
) -> Result<CausalLm> {
    let err = |m: String| Error::checkpoint(file, m);
    let (tensors, _) = parse_safetensors(weights, file)?;
    let mut modules: Vec<String> = Vec::new();
    for name in tensors.keys() {
        let module = name.strip_prefix(PREFIX).and_then(|n| {
            n.strip_suffix(".lora_A.weight")
                .or_else(|| n.strip_suffix(".lora_B.weight"))
        });
        let module = module.ok_or_else(|| {
            err(format!(
                "tensor {name} is not a PEFT LoRA factor ({PREFIX}<module>.lora_A.weight)"
            ))
        })?;
        if !model.linears().iter().any(|l| l.name == module) {
            return Err(err(format!(
                "tensor {name}: this model has no linear layer {module}"
            )));
        }
        if !modules.iter().any(|m| m == module) {
            modules.push(module.to_string());
        }
    }
    let targets: Vec<&str> = modules.iter().map(String::as_str).collect();
    model.with_adapters_from(&targets, r, alpha, &mut |name, shape| {
        let key = format!("{PREFIX}{name}");
        let entry = tensors
            .get(&key)
            .ok_or_else(|| err(format!("tensor {key} is missing")))?;
        if entry.shape != shape {
            return Err(err(format!(
                "tensor {key} has shape {:?}; rank {r} needs {shape:?}",
                entry.shape
            )));
        }
        Ok(burn::tensor::TensorData::new(
            entry.to_f32(),
            shape.to_vec(),
        ))
    })
}
