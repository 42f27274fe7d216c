//! llama.cpp's GGUF files (versions 2 and 3): the metadata, the tensor infos and the tensors,
//! dequantized to f32 on load exactly as gguf-py's `quants.dequantize` does (the same f32
//! operations in the same order, so the values are bit-identical).
//!
//! A file is a header (`GGUF`, version, counts), metadata key/value pairs, tensor infos (name,
//! dimensions innermost first, ggml type, offset) and, at the next multiple of
//! `general.alignment` (32 by default), the tensor data.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::{Error, Result};
use crate::hf::safetensors::f16_to_f32;
use crate::model::ModelConfig;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// An integer value of any width, if it is one and is not negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The tensor types read here (ggml's numbering), with their block layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

const QK_K: usize = 256;

impl GgmlType {
    /// The type of ggml's number `id`, or None for types not read here.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// Values per block and bytes per block.
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
            Self::Q2K => (QK_K, 84),
            Self::Q3K => (QK_K, 110),
            Self::Q4K => (QK_K, 144),
            Self::Q5K => (QK_K, 176),
            Self::Q6K => (QK_K, 210),
        }
    }

    /// One block's values (`out.len()` of them) from its bytes, as gguf-py computes them.
    fn dequantize_block(self, b: &[u8], out: &mut [f32]) {
        let half = |i: usize| f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]));
        match self {
            Self::F32 => out[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Self::F16 => out[0] = half(0),
            Self::BF16 => {
                out[0] = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
            }
            Self::Q4_0 | Self::Q4_1 => {
                let (d, m, qs) = if self == Self::Q4_0 {
                    (half(0), None, &b[2..18])
                } else {
                    (half(0), Some(half(2)), &b[4..20])
                };
                for (j, &q) in qs.iter().enumerate() {
                    for (k, nibble) in [q & 0x0F, q >> 4].into_iter().enumerate() {
                        out[j + 16 * k] = match m {
                            None => d * (nibble as i8 - 8) as f32,
                            Some(m) => d * nibble as f32 + m,
                        };
                    }
                }
            }
            Self::Q5_0 | Self::Q5_1 => {
                let (d, m, at) = if self == Self::Q5_0 {
                    (half(0), None, 2)
                } else {
                    (half(0), Some(half(2)), 4)
                };
                let qh = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
                let qs = &b[at + 4..at + 20];
                for (i, v) in out.iter_mut().enumerate() {
                    let low = (qs[i % 16] >> (4 * (i / 16))) & 0x0F;
                    let q = low | ((((qh >> i) & 1) as u8) << 4);
                    *v = match m {
                        None => d * (q as i8 - 16) as f32,
                        Some(m) => d * q as f32 + m,
                    };
                }
            }
            Self::Q8_0 => {
                let d = half(0);
                for (v, &q) in out.iter_mut().zip(&b[2..34]) {
                    *v = (q as i8) as f32 * d;
                }
            }
            Self::Q2K => {
                let (scales, qs) = (&b[..16], &b[16..80]);
                let (d, dmin) = (half(80), half(82));
                for (e, v) in out.iter_mut().enumerate() {
                    let (h, s, j) = (e / 128, (e % 128) / 32, e % 32);
                    let q = ((qs[h * 32 + j] >> (2 * s)) & 3) as f32;
                    let sc = scales[e / 16];
                    let dl = d * (sc & 0x0F) as f32;
                    let ml = dmin * (sc >> 4) as f32;
                    *v = dl * q - ml;
                }
            }
            Self::Q3K => {
                let (hmask, qs, scales, d) = (&b[..32], &b[32..96], &b[96..108], half(108));
                for (e, v) in out.iter_mut().enumerate() {
                    let g = e / 16;
                    let low = if g < 8 { scales[g] } else { scales[g - 8] >> 4 } & 0x0F;
                    let high = (scales[8 + g % 4] >> (2 * (g / 4))) & 0x03;
                    let scale = ((low | (high << 4)) as i8).wrapping_sub(32) as f32;
                    let dl = d * scale;
                    let (h, s, j) = (e / 128, (e % 128) / 32, e % 32);
                    let ql = ((qs[h * 32 + j] >> (2 * s)) & 3) as i8;
                    let qh = ((hmask[e % 32] >> (e / 32)) & 1) ^ 1;
                    *v = dl * (ql - ((qh << 2) as i8)) as f32;
                }
            }
            Self::Q4K | Self::Q5K => {
                let (d, dmin, scales) = (half(0), half(2), &b[4..16]);
                let (qh, qs) = if self == Self::Q5K {
                    (Some(&b[16..48]), &b[48..176])
                } else {
                    (None, &b[16..144])
                };
                let (sc, mins) = k_scale_min(scales);
                for (e, v) in out.iter_mut().enumerate() {
                    let (g, j) = (e / 32, e % 32);
                    let low = (qs[(g / 2) * 32 + j] >> (4 * (g % 2))) & 0x0F;
                    let q = match qh {
                        Some(qh) => low | (((qh[j] >> g) & 1) << 4),
                        None => low,
                    };
                    let dl = d * sc[g] as f32;
                    let dm = dmin * mins[g] as f32;
                    *v = dl * q as f32 - dm;
                }
            }
            Self::Q6K => {
                let (ql, qh, scales, d) = (&b[..128], &b[128..192], &b[192..208], half(208));
                for (e, v) in out.iter_mut().enumerate() {
                    let (h, r) = (e / 128, e % 128);
                    let low = (ql[h * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
                    let high = (qh[h * 32 + r % 32] >> (2 * (r / 32))) & 0x03;
                    let q = ((low | (high << 4)) as i8).wrapping_sub(32) as f32;
                    *v = d * (scales[e / 16] as i8) as f32 * q;
                }
            }
        }
    }
}

/// The 8 six-bit scales and mins of a Q4_K/Q5_K block, packed in 12 bytes.
fn k_scale_min(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0; 8];
    let mut min = [0; 8];
    for i in 0..4 {
        sc[i] = s[i] & 0x3F;
        min[i] = s[4 + i] & 0x3F;
        sc[4 + i] = (s[8 + i] & 0x0F) | ((s[i] >> 2) & 0x30);
        min[4 + i] = (s[8 + i] >> 4) | ((s[4 + i] >> 2) & 0x30);
    }
    (sc, min)
}

/// A tensor's description: `dims` innermost first, as ggml lists them (PyTorch's shape is
/// their reverse), and where its data starts in the data section.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    pub offset: u64,
}

impl TensorInfo {
    /// The shape as PyTorch (and transformers) sees it: the dims, outermost first.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// The number of values (0 when the dimensions overflow: such a tensor is refused at parse).
    pub fn len(&self) -> usize {
        self.count().unwrap_or(0)
    }

    fn count(&self) -> Option<usize> {
        let n = self.dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d))?;
        usize::try_from(n).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A parsed GGUF file over its bytes.
#[derive(Debug)]
pub struct Gguf<'a> {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    data: &'a [u8],
    file: String,
}

const MAGIC: &[u8; 4] = b"GGUF";

impl<'a> Gguf<'a> {
    /// Parses the header, metadata and tensor infos of `bytes` (named `file` in errors). A
    /// truncated file, an unknown value or tensor type, or a tensor past the end is refused,
    /// naming the key or tensor.
    pub fn parse(bytes: &'a [u8], file: &str) -> Result<Self> {
        let mut r = Reader { bytes, at: 0, file };
        if r.take(4, "the magic number")? != MAGIC {
            return Err(r.error("not a GGUF file (it does not start with \"GGUF\")"));
        }
        let version = r.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(r.error(format!(
                "GGUF version {version} is not read here (2 and 3 are)"
            )));
        }
        let tensor_count = r.u64("the tensor count")?;
        let kv_count = r.u64("the metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = r.string("a metadata key")?;
            let kind = r.u32(&format!("the type of metadata key '{key}'"))?;
            let value = r.value(kind, &key)?;
            metadata.insert(key, value);
        }
        let mut tensors = Vec::new();
        for _ in 0..tensor_count {
            let name = r.string("a tensor name")?;
            let n_dims = r.u32(&format!("the rank of tensor '{name}'"))?;
            if n_dims > 4 {
                return Err(r.error(format!(
                    "tensor '{name}' has {n_dims} dimensions (at most 4)"
                )));
            }
            let dims = (0..n_dims)
                .map(|_| r.u64(&format!("the shape of tensor '{name}'")))
                .collect::<Result<Vec<_>>>()?;
            let id = r.u32(&format!("the type of tensor '{name}'"))?;
            let ggml_type = GgmlType::from_id(id).ok_or_else(|| {
                r.error(format!(
                    "tensor '{name}' has ggml type {id}, which is not read here (F32, F16, BF16, \
                     Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K to Q6_K are)"
                ))
            })?;
            let offset = r.u64(&format!("the offset of tensor '{name}'"))?;
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a as usize,
                _ => return Err(r.error(format!("general.alignment is {v:?}, not a power of two"))),
            },
        };
        let start = r.at.div_ceil(alignment) * alignment;
        let data = bytes.get(start..).unwrap_or(&[]);
        let gguf = Gguf {
            version,
            metadata,
            tensors,
            data,
            file: file.to_string(),
        };
        for t in &gguf.tensors {
            gguf.tensor_bytes(t)?;
        }
        Ok(gguf)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The bytes of `t`'s data, checked against its type's block size and the file's end.
    fn tensor_bytes(&self, t: &TensorInfo) -> Result<&'a [u8]> {
        let (block, size) = t.ggml_type.block();
        let n = t.count().ok_or_else(|| {
            Error::checkpoint(
                &self.file,
                format!(
                    "tensor '{}' has dimensions {:?}, too many values",
                    t.name, t.dims
                ),
            )
        })?;
        let rows = t.dims.first().copied().unwrap_or(1) as usize;
        if n % block != 0 || rows % block != 0 {
            return Err(Error::checkpoint(
                &self.file,
                format!(
                    "tensor '{}' has rows of {rows} values, not a multiple of {:?}'s block of {block}",
                    t.name, t.ggml_type
                ),
            ));
        }
        let len = (n / block).saturating_mul(size);
        let start = usize::try_from(t.offset).unwrap_or(usize::MAX);
        self.data
            .get(start..start.saturating_add(len))
            .ok_or_else(|| {
                Error::checkpoint(
                    &self.file,
                    format!(
                        "tensor '{}' ({len} bytes at offset {start} of the data) runs past the end \
                         of the file: it is truncated",
                        t.name
                    ),
                )
            })
    }

    /// `t`'s values as f32, in its stored order (innermost dimension fastest).
    pub fn dequantize(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        let bytes = self.tensor_bytes(t)?;
        let (block, size) = t.ggml_type.block();
        let mut out = vec![0f32; t.len()];
        for (values, b) in out.chunks_exact_mut(block).zip(bytes.chunks_exact(size)) {
            t.ggml_type.dequantize_block(b, values);
        }
        Ok(out)
    }
}

/// A bounds-checked little-endian reader over the header.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    file: &'a str,
}

impl<'a> Reader<'a> {
    fn error(&self, msg: impl std::fmt::Display) -> Error {
        Error::checkpoint(self.file, msg)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.error(format!(
                "truncated: the file ends at byte {} while reading {what}",
                self.bytes.len()
            )));
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self.take(N, what)?.try_into().unwrap())
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        let bytes = self.take(usize::try_from(len).unwrap_or(usize::MAX), what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.error(format!("{what} is not UTF-8")))
    }

    fn value(&mut self, kind: u32, key: &str) -> Result<Value> {
        let what = format!("the value of metadata key '{key}'");
        Ok(match kind {
            0 => Value::U8(self.array::<1>(&what)?[0]),
            1 => Value::I8(self.array::<1>(&what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            4 => Value::U32(u32::from_le_bytes(self.array(&what)?)),
            5 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            7 => Value::Bool(self.array::<1>(&what)?[0] != 0),
            8 => Value::String(self.string(&what)?),
            9 => {
                let inner = self.u32(&what)?;
                if inner == 9 {
                    return Err(self.error(format!("{what} is an array of arrays")));
                }
                let n = self.u64(&what)?;
                // Each element takes at least one byte: a count past the file is a bad file.
                if n > (self.bytes.len() - self.at) as u64 {
                    return Err(self.error(format!("truncated: {what} claims {n} elements")));
                }
                Value::Array(
                    (0..n)
                        .map(|_| self.value(inner, key))
                        .collect::<Result<_>>()?,
                )
            }
            10 => Value::U64(u64::from_le_bytes(self.array(&what)?)),
            11 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            other => {
                return Err(self.error(format!("metadata key '{key}' has unknown type {other}")));
            }
        })
    }
}

/// The HF architectures a GGUF file's `general.architecture` names, as transformers maps them.
fn hf_class(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "llama" => "LlamaForCausalLM",
        "qwen2" => "Qwen2ForCausalLM",
        _ => return None,
    })
}

impl Gguf<'_> {
    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| {
            Error::checkpoint(&self.file, format!("metadata key '{key}' is missing"))
        })
    }

    fn number(&self, key: &str) -> Result<f64> {
        let value = self.require(key)?;
        value.as_f64().ok_or_else(|| {
            Error::checkpoint(
                &self.file,
                format!("metadata key '{key}' is {value:?}, not a number"),
            )
        })
    }

    /// `general.architecture`, refused unless transformers' class for it is implemented here.
    fn architecture(&self) -> Result<(&str, &'static str)> {
        let key = "general.architecture";
        let arch = self.require(key)?.as_str().unwrap_or("");
        let class = hf_class(arch).ok_or_else(|| {
            Error::checkpoint(
                &self.file,
                format!("{key} is '{arch}': only llama and qwen2 GGUF files are read"),
            )
        })?;
        Ok((arch, class))
    }

    /// The config.json transformers writes for this file (`from_pretrained(…, gguf_file=…)`):
    /// the shapes, RoPE base and norm ε from `{arch}.*`, the vocabulary from the token list,
    /// the special tokens from `tokenizer.ggml.*`, a tied head when there is no `output.weight`.
    pub fn config_json(&self) -> Result<serde_json::Value> {
        let (arch, class) = self.architecture()?;
        let key = |k: &str| format!("{arch}.{k}");
        let heads = self.number(&key("attention.head_count"))?;
        let kv_heads = match self.get(&key("attention.head_count_kv")) {
            Some(_) => self.number(&key("attention.head_count_kv"))?,
            None => heads,
        };
        let vocab = match self.get("tokenizer.ggml.tokens").and_then(Value::as_array) {
            Some(tokens) => tokens.len() as f64,
            None => self.number(&key("vocab_size"))?,
        };
        let optional =
            |k: &str, default: f64| self.get(k).and_then(Value::as_f64).unwrap_or(default);
        let token = |k: &str| self.get(k).and_then(Value::as_u64);
        Ok(serde_json::json!({
            "architectures": [class],
            "model_type": arch,
            "vocab_size": vocab as usize,
            "hidden_size": self.number(&key("embedding_length"))? as usize,
            "num_hidden_layers": self.number(&key("block_count"))? as usize,
            "num_attention_heads": heads as usize,
            "num_key_value_heads": kv_heads as usize,
            "intermediate_size": self.number(&key("feed_forward_length"))? as usize,
            "max_position_embeddings": self.number(&key("context_length"))? as usize,
            "rope_theta": optional(&key("rope.freq_base"), 10_000.0),
            "rms_norm_eps": self.number(&key("attention.layer_norm_rms_epsilon"))?,
            "tie_word_embeddings": self.tensor("output.weight").is_none(),
            "hidden_act": "silu",
            "bos_token_id": token("tokenizer.ggml.bos_token_id"),
            "eos_token_id": token("tokenizer.ggml.eos_token_id"),
            "torch_dtype": "float32",
        }))
    }

    /// The GGUF tensor that holds the HF tensor `name` (llama.cpp's names for Llama and Qwen2).
    fn gguf_name(name: &str) -> Option<String> {
        let top = match name {
            "model.embed_tokens.weight" => Some("token_embd.weight"),
            "model.norm.weight" => Some("output_norm.weight"),
            "lm_head.weight" => Some("output.weight"),
            _ => None,
        };
        if let Some(top) = top {
            return Some(top.to_string());
        }
        let rest = name.strip_prefix("model.layers.")?;
        let (block, module) = rest.split_once('.')?;
        let (module, kind) = module.rsplit_once('.')?;
        let gguf = match module {
            "input_layernorm" => "attn_norm",
            "post_attention_layernorm" => "ffn_norm",
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            _ => return None,
        };
        Some(format!("blk.{block}.{gguf}.{kind}"))
    }

    /// The values of HF tensor `name` with `shape`, dequantized; for Llama, the query and key
    /// rows back in transformers' order (llama.cpp's converter interleaves each head's two
    /// rotary halves; transformers' `reverse_permute_weights` undoes it, as here).
    pub fn hf_tensor(&self, name: &str, shape: &[usize], config: &ModelConfig) -> Result<Vec<f32>> {
        let missing = || Error::checkpoint(&self.file, format!("tensor {name} is missing"));
        let gguf = Self::gguf_name(name).ok_or_else(missing)?;
        let t = self.tensor(&gguf).ok_or_else(|| {
            Error::checkpoint(
                &self.file,
                format!("tensor '{gguf}' (transformers' {name}) is missing"),
            )
        })?;
        if t.shape() != shape {
            return Err(Error::checkpoint(
                &self.file,
                format!(
                    "tensor '{gguf}' has shape {:?}, the config needs {shape:?}",
                    t.shape()
                ),
            ));
        }
        let values = self.dequantize(t)?;
        let (arch, _) = self.architecture()?;
        let heads = if gguf.ends_with("attn_q.weight") || gguf.ends_with("attn_q.bias") {
            Some(config.num_attention_heads)
        } else if gguf.ends_with("attn_k.weight") || gguf.ends_with("attn_k.bias") {
            Some(
                config
                    .num_key_value_heads
                    .unwrap_or(config.num_attention_heads),
            )
        } else {
            None
        };
        Ok(match heads {
            Some(heads) if arch == "llama" => unpermute(&values, shape, heads),
            _ => values,
        })
    }
}

impl Gguf<'_> {
    /// The tokenizer.json transformers 5 builds from `tokenizer.ggml.*`: a byte-level BPE
    /// vocabulary (`tokenizer.ggml.model` "gpt2": GPT-2, SmolLM, Qwen2, Llama 3; GPT-2's
    /// byte-level pre-tokenizer, or the split of `tokenizer.ggml.pre` where transformers knows
    /// it) or a SentencePiece BPE one ("llama": Llama 2, TinyLlama, Mistral; `Metaspace`, byte
    /// fallback, merges derived from the scores when the file lists none). Control tokens and
    /// the named special tokens (BOS, EOS, unknown, padding) are special added tokens,
    /// user-defined ones plain added tokens; BOS and EOS are added as `add_bos_token` and
    /// `add_eos_token` say (a "llama" vocabulary adds BOS unless told not to).
    pub fn tokenizer_json(&self) -> Result<String> {
        let model = self.require("tokenizer.ggml.model")?.as_str().unwrap_or("");
        let spm = match model {
            "gpt2" => false,
            "llama" => true,
            _ => {
                return Err(Error::checkpoint(
                    &self.file,
                    format!(
                        "tokenizer.ggml.model is '{model}': byte-level BPE (gpt2) and \
                         SentencePiece BPE (llama) vocabularies are read"
                    ),
                ));
            }
        };
        let strings = |key: &str| -> Result<Vec<&str>> {
            let bad = || Error::checkpoint(&self.file, format!("{key} is not a list of strings"));
            let list = self.require(key)?.as_array().ok_or_else(bad)?;
            list.iter().map(|v| v.as_str().ok_or_else(bad)).collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = if self.get("tokenizer.ggml.merges").is_some() || !spm {
            strings("tokenizer.ggml.merges")?
                .iter()
                .map(|m| {
                    let (l, r) = m.split_once(' ').unwrap_or((m, ""));
                    (l.to_string(), r.to_string())
                })
                .collect()
        } else {
            let bad = || {
                Error::checkpoint(
                    &self.file,
                    "tokenizer.ggml.scores is not a list of numbers, one per token",
                )
            };
            let scores = self
                .require("tokenizer.ggml.scores")?
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|v| v.as_f64().ok_or_else(bad))
                .collect::<Result<Vec<f64>>>()?;
            if scores.len() != tokens.len() {
                return Err(bad());
            }
            merges_from_scores(&tokens, &scores)
        };
        let types: Vec<u64> = match self
            .get("tokenizer.ggml.token_type")
            .and_then(Value::as_array)
        {
            Some(types) => types.iter().map(|t| t.as_u64().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        let vocab: serde_json::Map<String, serde_json::Value> = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| (t.to_string(), serde_json::json!(id)))
            .collect();
        let id_of = |key: &str| {
            let id = self.get(key)?.as_u64()? as usize;
            Some((id, *tokens.get(id)?))
        };
        let named: Vec<usize> = ["bos", "eos", "unknown", "padding"]
            .iter()
            .filter_map(|name| id_of(&format!("tokenizer.ggml.{name}_token_id")))
            .map(|(id, _)| id)
            .collect();
        // 3: control, 4: user-defined (llama.cpp's token types).
        let added: Vec<serde_json::Value> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(id, (_, kind))| **kind == 3 || **kind == 4 || named.contains(id))
            .map(|(id, (content, kind))| {
                let special = *kind != 4 || named.contains(&id);
                serde_json::json!({"id": id, "content": content, "single_word": false,
                    "lstrip": false, "rstrip": false, "normalized": false, "special": special})
            })
            .collect();
        let flag = |key: &str| match self.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        };
        let add_bos = flag("tokenizer.ggml.add_bos_token").unwrap_or(spm);
        let add_eos = flag("tokenizer.ggml.add_eos_token").unwrap_or(false);
        let bos = id_of("tokenizer.ggml.bos_token_id").filter(|_| add_bos);
        let eos = id_of("tokenizer.ggml.eos_token_id").filter(|_| add_eos);
        let (pre_tokenizer, decoder, bpe) = if spm {
            (
                serde_json::json!({"type": "Metaspace", "replacement": "\u{2581}",
                                   "prepend_scheme": "first", "split": false}),
                serde_json::json!({"type": "Sequence", "decoders": [
                    {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
                    {"type": "ByteFallback"}, {"type": "Fuse"},
                    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}),
                (true, true),
            )
        } else {
            let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false,
                                                "trim_offsets": false, "use_regex": true});
            let pre = self.get("tokenizer.ggml.pre").and_then(Value::as_str);
            let pre_tokenizer = match pre.and_then(pre_tokenizer_split) {
                Some(split) => serde_json::json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": split}, "behavior": "Isolated",
                     "invert": false},
                    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                     "use_regex": false}]}),
                None => byte_level.clone(),
            };
            (pre_tokenizer, byte_level, (false, false))
        };
        let (fuse_unk, byte_fallback) = bpe;
        Ok(serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": post_processor(bos, eos),
            "decoder": decoder,
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": fuse_unk, "byte_fallback": byte_fallback,
                      "ignore_merges": false, "vocab": vocab, "merges": merges}
        })
        .to_string())
    }

    /// `tokenizer.chat_template`, when the file has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.get("tokenizer.chat_template").and_then(Value::as_str)
    }

    /// tokenizer_config.json's special tokens as transformers names them from
    /// `tokenizer.ggml.{bos,eos}_token_id` (chat templates and TRL's CPO/ORPO refer to them).
    pub fn tokenizer_config_json(&self) -> serde_json::Value {
        let tokens = self.get("tokenizer.ggml.tokens").and_then(Value::as_array);
        let token = |key: &str| {
            let id = self.get(key)?.as_u64()?;
            Some(tokens?.get(id as usize)?.as_str()?.to_string())
        };
        let mut config = serde_json::Map::new();
        for (name, key) in [
            ("bos_token", "tokenizer.ggml.bos_token_id"),
            ("eos_token", "tokenizer.ggml.eos_token_id"),
        ] {
            if let Some(t) = token(key) {
                config.insert(name.into(), t.into());
            }
        }
        config.into()
    }
}

/// transformers' `update_post_processor`: BOS before and EOS after each sequence, as asked;
/// `null` when neither is.
fn post_processor(bos: Option<(usize, &str)>, eos: Option<(usize, &str)>) -> serde_json::Value {
    if bos.is_none() && eos.is_none() {
        return serde_json::Value::Null;
    }
    let special = |t: Option<(usize, &str)>, type_id: u32| {
        t.map(|(_, token)| serde_json::json!({"SpecialToken": {"id": token, "type_id": type_id}}))
    };
    let sequence = |id: &str, type_id: u32| {
        Some(serde_json::json!({"Sequence": {"id": id, "type_id": type_id}}))
    };
    let single: Vec<_> = [special(bos, 0), sequence("A", 0), special(eos, 0)]
        .into_iter()
        .flatten()
        .collect();
    let pair: Vec<_> = [special(bos, 0), sequence("A", 0), special(eos, 0)]
        .into_iter()
        .chain([special(bos, 1), sequence("B", 1), special(eos, 1)])
        .flatten()
        .collect();
    let tokens: serde_json::Map<String, serde_json::Value> = [bos, eos]
        .into_iter()
        .flatten()
        .map(|(id, t)| {
            (
                t.to_string(),
                serde_json::json!({"id": t, "ids": [id], "tokens": [t]}),
            )
        })
        .collect();
    serde_json::json!({"type": "TemplateProcessing", "single": single, "pair": pair,
                       "special_tokens": tokens})
}

/// transformers' `generate_merges` for a vocabulary with scores: every split of a token into two
/// tokens of the vocabulary (in the order of their ids), all ordered by the whole token's score,
/// best first, then by the pieces' lengths, longer first; ties keep their order.
fn merges_from_scores(tokens: &[&str], scores: &[f64]) -> Vec<(String, String)> {
    // As Python's dicts: a repeated token keeps its last id and score, its first position.
    let vocab: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, &t)| (t, i)).collect();
    let score: HashMap<&str, f64> = tokens.iter().copied().zip(scores.iter().copied()).collect();
    let mut seen = HashSet::new();
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for &token in tokens.iter().filter(|t| seen.insert(**t)) {
        let mut local: Vec<(&str, &str, f64)> = token
            .char_indices()
            .skip(1)
            .map(|(i, _)| token.split_at(i))
            .filter(|(l, r)| vocab.contains_key(l) && vocab.contains_key(r))
            .map(|(l, r)| (l, r, score[token]))
            .collect();
        local.sort_by_key(|(l, r, _)| (vocab[l], vocab[r]));
        merges.extend(local);
    }
    let key = |(l, r, s): &(&str, &str, f64)| (*s, l.chars().count(), r.chars().count());
    merges.sort_by(|a, b| {
        let (a, b) = (key(a), key(b));
        b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2))
    });
    merges
        .into_iter()
        .map(|(l, r, _)| (l.to_string(), r.to_string()))
        .collect()
}

/// The split regex transformers puts before the byte-level step for a byte-level vocabulary's
/// `tokenizer.ggml.pre` (`GGUF_PRE_TOKENIZER_SPLITS`); others keep GPT-2's.
fn pre_tokenizer_split(pre: &str) -> Option<&'static str> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2,
        "qwen35" => QWEN35,
        "tekken" => TEKKEN,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O,
        _ => return None,
    })
}

/// transformers' `reverse_permute_weights`: row (head h, half p, i) of the HF tensor is row
/// (h, i, p) of llama.cpp's.
fn unpermute(values: &[f32], shape: &[usize], heads: usize) -> Vec<f32> {
    let rows = shape[0];
    let width = values.len() / rows;
    let half = rows / heads / 2;
    let mut out = vec![0f32; values.len()];
    for h in 0..heads {
        for p in 0..2 {
            for i in 0..half {
                let to = (h * 2 * half + p * half + i) * width;
                let from = (h * 2 * half + i * 2 + p) * width;
                out[to..to + width].copy_from_slice(&values[from..from + width]);
            }
        }
    }
    out
}

/// The model in a GGUF file: the config transformers builds from its metadata and the weights,
/// dequantized and named as transformers names them. Nothing is kept on failure.
pub fn load_model(
    bytes: &[u8],
    file: &str,
    device: &burn::tensor::Device,
) -> Result<(ModelConfig, crate::model::CausalLm)> {
    let gguf = Gguf::parse(bytes, file)?;
    let config = ModelConfig::from_json(&gguf.config_json()?.to_string())?;
    let model = crate::model::CausalLm::load(
        &config,
        &mut |name, shape| {
            let values = gguf.hf_tensor(name, shape, &config)?;
            Ok(burn::tensor::TensorData::new(values, shape.to_vec()))
        },
        device,
    )?;
    Ok((config, model))
}
