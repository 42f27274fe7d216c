//! Model weights as safetensors bytes with HF Llama tensor names: `model.safetensors` from
//! transformers loads here, ours loads there. Same bytes natively and in wasm.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData, Transaction};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::model::CausalLm;
use crate::model::ModelConfig;

/// How tensors are stored in a written file (always computed in f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
pub enum Dtype {
    #[default]
    F32,
    /// Half the bytes; round-to-nearest-even from f32.
    F16,
}

/// Serialises every parameter with its HF name (one device read for the whole model).
pub async fn to_safetensors(model: &CausalLm, dtype: Dtype) -> Result<Vec<u8>> {
    write_safetensors(&model.named_tensors(), &[], dtype).await
}

/// A safetensors file of flattened tensors with their shapes, and `__metadata__` strings; one
/// device read for all of them.
pub async fn write_safetensors(
    tensors: &[(String, Vec<usize>, Tensor<1>)],
    metadata: &[(String, String)],
    dtype: Dtype,
) -> Result<Vec<u8>> {
    let mut tx = Transaction::default();
    for (_, _, t) in tensors {
        tx = tx.register(t.clone());
    }
    let datas = crate::runtime::readback::execute(tx).await?;
    let mut meta = serde_json::Map::new();
    meta.insert("format".into(), json!("pt"));
    for (k, v) in metadata {
        meta.insert(k.clone(), json!(v));
    }
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), Value::Object(meta));
    let mut body = Vec::new();
    for ((name, shape, _), data) in tensors.iter().zip(datas) {
        let values = data
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| Error::Device(format!("reading {name}: {e:?}")))?;
        let start = body.len();
        let name_of_dtype = match dtype {
            Dtype::F32 => {
                body.extend(values.iter().flat_map(|v| v.to_le_bytes()));
                "F32"
            }
            Dtype::F16 => {
                body.extend(values.iter().flat_map(|&v| f32_to_f16(v).to_le_bytes()));
                "F16"
            }
        };
        header.insert(
            name.clone(),
            json!({ "dtype": name_of_dtype, "shape": shape, "data_offsets": [start, body.len()] }),
        );
    }
    let mut header = serde_json::to_vec(&Value::Object(header)).expect("header serialises");
    // The data section starts 8-byte aligned, as the reference writer does.
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + header.len() + body.len());
    out.extend((header.len() as u64).to_le_bytes());
    out.extend(header);
    out.extend(body);
    Ok(out)
}

/// One tensor of a safetensors file: its dtype, shape and bytes.
pub struct TensorEntry<'a> {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub bytes: &'a [u8],
}

/// Parses a safetensors buffer, refusing a malformed header or a tensor whose bytes are missing
/// (a truncated download), by name.
/// Returns the tensors by name and the `__metadata__` strings.
pub fn parse_safetensors<'a>(
    bytes: &'a [u8],
    file: &str,
) -> Result<(BTreeMap<String, TensorEntry<'a>>, BTreeMap<String, String>)> {
    let err = |m: String| Error::checkpoint(file, m);
    let header_len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
        .ok_or_else(|| {
            err(
                "file is shorter than the 8-byte safetensors header length; is it truncated?"
                    .into(),
            )
        })?;
    let header_end = 8usize
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            err(format!(
                "header claims {header_len} bytes but the file has {}; the file \
                is truncated or not safetensors",
                bytes.len()
            ))
        })?;
    let header: BTreeMap<String, Value> = serde_json::from_slice(&bytes[8..header_end])
        .map_err(|e| err(format!("header is not valid JSON: {e}")))?;
    let data = &bytes[header_end..];
    let mut out = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, info) in header {
        if name == "__metadata__" {
            if let Value::Object(m) = info {
                metadata.extend(
                    m.into_iter()
                        .filter_map(|(k, v)| Some((k, v.as_str()?.to_string()))),
                );
            }
            continue;
        }
        let dtype = info["dtype"]
            .as_str()
            .ok_or_else(|| err(format!("tensor {name} has no dtype")))?
            .to_string();
        let shape = info["shape"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|d| d.as_u64().map(|d| d as usize))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| err(format!("tensor {name} has no valid shape")))?;
        let offsets = info["data_offsets"]
            .as_array()
            .and_then(|a| Some((a.first()?.as_u64()? as usize, a.get(1)?.as_u64()? as usize)))
            .ok_or_else(|| err(format!("tensor {name} has no valid data_offsets")))?;
        let (start, end) = offsets;
        if start > end || end > data.len() {
            return Err(err(format!(
                "tensor {name} needs bytes {start}..{end} but only {} data bytes are present; the \
                file is truncated",
                data.len()
            )));
        }
        let width = match dtype.as_str() {
            "F32" => 4,
            "F16" | "BF16" => 2,
            other => {
                return Err(err(format!(
                    "tensor {name} has dtype {other}; only F32, F16 and BF16 are supported"
                )));
            }
        };
        if shape.iter().product::<usize>() * width != end - start {
            return Err(err(format!(
                "tensor {name}: shape {shape:?} of {dtype} does not match its {} bytes",
                end - start
            )));
        }
        out.insert(
            name,
            TensorEntry {
                dtype,
                shape,
                bytes: &data[start..end],
            },
        );
    }
    Ok((out, metadata))
}

impl TensorEntry<'_> {
    /// The values as f32 (f16 and bf16 are widened exactly).
    pub fn to_f32(&self) -> Vec<f32> {
        match self.dtype.as_str() {
            "F32" => self
                .bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            "BF16" => self
                .bytes
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                .collect(),
            _ => self
                .bytes
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
        }
    }
}

/// IEEE half precision, rounding to nearest even; overflow gives ±inf.
fn f32_to_f16(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Subnormal half (or zero): shift the implicit-1 mantissa into place, rounding.
        if e < -10 {
            return sign;
        }
        let m = mant | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rounded = (m + half - 1 + ((m >> shift) & 1)) >> shift;
        return sign | rounded as u16;
    }
    let rounded = mant + 0xfff + ((mant >> 13) & 1);
    // A mantissa carry rolls into the exponent, which is exactly right (up to inf).
    sign | (((e as u32) << 10) + (rounded >> 13)) as u16
}

pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    sign * match exp {
        0 => frac * 2f32.powi(-24),
        31 if frac == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        _ => (1.0 + frac / 1024.0) * 2f32.powi(exp - 15),
    }
}

/// Loads a model from safetensors bytes; every tensor the config needs must be present with
/// its exact shape. Nothing is kept on failure.
pub fn from_safetensors(
    config: &ModelConfig,
    bytes: &[u8],
    file: &str,
    device: &Device,
) -> Result<CausalLm> {
    from_safetensors_shards(config, &[(file.to_string(), bytes)], device)
}

/// Loads a model whose tensors are spread over several safetensors files (`(file name, bytes)`,
/// as `save_pretrained` shards them); a tensor must be in exactly one of them.
pub fn from_safetensors_shards(
    config: &ModelConfig,
    shards: &[(String, &[u8])],
    device: &Device,
) -> Result<CausalLm> {
    let mut tensors = BTreeMap::new();
    for (file, bytes) in shards {
        for (name, entry) in parse_safetensors(bytes, file)?.0 {
            if let Some((other, _)) = tensors.insert(name.clone(), (file.as_str(), entry)) {
                return Err(Error::checkpoint(
                    file,
                    format!("tensor {name} is also in {other}"),
                ));
            }
        }
    }
    let files = shards
        .iter()
        .map(|(f, _)| f.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    CausalLm::load(
        config,
        &mut |name, shape| {
            let (file, entry) = tensors
                .get(name)
                .ok_or_else(|| Error::checkpoint(&files, format!("tensor {name} is missing")))?;
            if entry.shape != shape {
                return Err(Error::checkpoint(
                    file,
                    format!(
                        "tensor {name} has shape {:?}, the config needs {shape:?}",
                        entry.shape
                    ),
                ));
            }
            Ok(TensorData::new(entry.to_f32(), shape.to_vec()))
        },
        device,
    )
}
