#!/usr/bin/env python3
"""GGUF files written by gguf-py, and gguf-py's own dequantization of them: the fixtures that
webdpo's GGUF reader (src/hf/gguf.rs) is tested against (tests/fixtures/gguf/).

Run once, by hand (CI never needs Python); the output is small and committed:

    python3 -m venv tools/.venv && tools/.venv/bin/pip install gguf numpy
    tools/.venv/bin/python tools/gguf_fixtures.py --out tests/fixtures/gguf

quants.gguf holds one tensor per type read (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 from
gguf-py's quantizer; Q2_K to Q6_K, which gguf-py cannot quantize, as random blocks with finite
scales), two rows of 512 values each, and metadata of every value type. quants-expected.gguf
holds `gguf.quants.dequantize` of each as F32, under the same names: the reader must give
exactly those values. truncated.gguf is quants.gguf cut inside its last tensor;
unknown-type.gguf names a tensor of a type not read (IQ2_XXS). llama.gguf and qwen2.gguf are the
Llama and Qwen2 fixtures of tests/fixtures/hf converted as llama.cpp's convert_hf_to_gguf.py does
(Llama's query and key rows permuted, llama.cpp's tensor names from gguf-py's map, the BPE
vocabulary, merges and token types, the chat template), in f32. llama-spm-q8_0.gguf is the
Llama fixture's weights quantized to Q8_0 with a SentencePiece vocabulary; transformers itself
loads it for its logits and tokens (tools/gguf_expected.py, with torch).
"""

import argparse
import json
import os

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

QUANTIZED = [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
K_QUANTS = [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
SHAPE = (2, 512)


def random_blocks(rng, qtype, n_values):
    """Random bytes for `n_values` of a K-quant, with the f16 scales made finite and small."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_values // block, size), dtype=np.uint8)
    # Where each K-quant keeps its f16 scale(s): d (and dmin).
    halves = {T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}
    for at in halves[qtype]:
        scale = rng.uniform(-0.05, 0.05, size=len(blocks)).astype(np.float16)
        blocks[:, at : at + 2] = scale.view(np.uint8).reshape(-1, 2)
    return blocks


def write(path, tensors, metadata=True):
    writer = gguf.GGUFWriter(path, arch="llama")
    if metadata:
        writer.add_uint8("test.u8", 200)
        writer.add_int8("test.i8", -100)
        writer.add_uint16("test.u16", 60000)
        writer.add_int16("test.i16", -30000)
        writer.add_uint32("test.u32", 4_000_000_000)
        writer.add_int32("test.i32", -2_000_000_000)
        writer.add_uint64("test.u64", 2**63 + 5)
        writer.add_int64("test.i64", -(2**62))
        writer.add_float32("test.f32", 0.1)
        writer.add_float64("test.f64", 0.1)
        writer.add_bool("test.bool", True)
        writer.add_string("test.string", "Grüße, 世界")
        writer.add_array("test.strings", ["a", "bc", ""])
        writer.add_array("test.ints", [1, -2, 3])
    for name, (data, raw_dtype) in tensors.items():
        if raw_dtype is None:
            writer.add_tensor(name, data)
        else:
            writer.add_tensor(name, data, raw_dtype=raw_dtype)
    finish(writer)


def read_safetensors(path):
    """The tensors of a safetensors file, as f32 (the fixtures store f32 or bf16)."""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        chunk = raw[8 + n + start : 8 + n + end]
        if info["dtype"] == "F32":
            data = np.frombuffer(chunk, dtype=np.float32)
        else:
            assert info["dtype"] == "BF16", (name, info["dtype"])
            data = (np.frombuffer(chunk, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        tensors[name] = data.reshape(info["shape"])
    return tensors


def permute(weights, n_head, n_head_kv):
    """convert_hf_to_gguf.py's LlamaModel.permute: each head's rotary halves interleaved."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def llama_writer(hf_dir, path, arch):
    """A GGUF writer with a fixture folder's hyperparameters, as llama.cpp's converter names them,
    and the folder's config."""
    config = json.load(open(os.path.join(hf_dir, "config.json")))
    writer = gguf.GGUFWriter(path, arch=arch)
    # Raised from the folder's 64 (as the app's test raises the folder's) so that a prompt in
    # the chat template fits; positions do not change the logits of shorter inputs.
    writer.add_context_length(512)
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    return writer, config


def converted_tensors(hf_dir, arch, config):
    """The folder's tensors under llama.cpp's names, Llama's query and key rows interleaved as
    the converter interleaves them (only Llama's)."""
    tensors = {}
    for f in sorted(os.listdir(hf_dir)):
        if f.endswith(".safetensors"):
            tensors.update(read_safetensors(os.path.join(hf_dir, f)))
    model_arch = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}[arch]
    names = gguf.get_tensor_name_map(model_arch, config["num_hidden_layers"])
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    for name, data in tensors.items():
        if arch == "llama" and name.endswith("q_proj.weight"):
            data = permute(data, heads, heads)
        elif arch == "llama" and name.endswith("k_proj.weight"):
            data = permute(data, heads, kv_heads)
        new_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        assert new_name is not None, name
        yield new_name, np.ascontiguousarray(data)


def finish(writer):
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def hf_gguf(hf_dir, path, arch):
    """A fixture of tests/fixtures/hf as llama.cpp's converter writes it, in f32 (lossless for its
    f32 or bf16 weights): its logits must be transformers' logits of the folder (expected.json)."""
    writer, config = llama_writer(hf_dir, path, arch)
    tokenizer = json.load(open(os.path.join(hf_dir, "tokenizer.json")))
    vocab = sorted(tokenizer["model"]["vocab"].items(), key=lambda kv: kv[1])
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([token for token, _ in vocab])
    merges = tokenizer["model"]["merges"]
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    special = {t["id"] for t in tokenizer["added_tokens"] if t["special"]}
    writer.add_token_types(
        [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(vocab))]
    )
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    template = os.path.join(hf_dir, "chat_template.jinja")
    if os.path.exists(template):
        writer.add_chat_template(open(template).read())
    for name, data in converted_tensors(hf_dir, arch, config):
        writer.add_tensor(name, data)
    finish(writer)


def spm_vocab(size):
    """A SentencePiece-style (llama.cpp "llama") vocabulary of `size` tokens, as llama.cpp's
    converter writes one: <unk>, <s>, </s>, the 256 byte-fallback tokens, then pieces with
    scores (higher merges first) and no merges list, so readers derive the merges from scores."""
    special = [("<unk>", gguf.TokenType.UNKNOWN), ("<s>", gguf.TokenType.CONTROL), ("</s>", gguf.TokenType.CONTROL)]
    tokens = special + [(f"<0x{b:02X}>", gguf.TokenType.BYTE) for b in range(256)]
    pieces = list("▁etaoinshrdlucmwfgypb,.")
    candidates = ["he", "▁t", "▁the", "in", "er", "▁a", "on", "an", "re", "at", "en", "nd", "▁s",
                  "es", "is", "or", "ed", "▁o", "▁h", "ha", "▁i", "▁in", "it", "▁it", "st",
                  "ar", "▁and", "▁w", "▁c", "ou", "ing", "ng", "▁to", "▁of", "ll", "▁he"]
    for piece in candidates:
        if any(piece[:i] in pieces and piece[i:] in pieces for i in range(1, len(piece))):
            pieces.append(piece)
    pieces = pieces[: size - len(tokens)]
    tokens += [(p, gguf.TokenType.NORMAL) for p in pieces]
    assert len(tokens) == size, (len(tokens), size)
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    return [t for t, _ in tokens], scores, [k for _, k in tokens]


def spm_gguf(hf_dir, path, qtype):
    """The Llama fixture's weights, 2-D ones quantized to `qtype` by gguf-py, with a SentencePiece
    vocabulary of the same size (spm_vocab) that asks for BOS: transformers loads this file
    itself (tools/gguf_expected.py records its logits and tokens)."""
    writer, config = llama_writer(hf_dir, path, "llama")
    tokens, scores, types = spm_vocab(config["vocab_size"])
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    for name, data in converted_tensors(hf_dir, "llama", config):
        if data.ndim == 2 and data.shape[1] % gguf.GGML_QUANT_SIZES[qtype][0] == 0:
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, data)
    finish(writer)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    out = parser.parse_args().out
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    tensors = {"f32": (rng.standard_normal(SHAPE).astype(np.float32), None)}
    for qtype in QUANTIZED:
        values = rng.standard_normal(SHAPE).astype(np.float32)
        tensors[qtype.name.lower()] = (gguf.quants.quantize(values, qtype), qtype)
    for qtype in K_QUANTS:
        blocks = random_blocks(rng, qtype, SHAPE[0] * SHAPE[1])
        tensors[qtype.name.lower()] = (blocks.reshape(SHAPE[0], -1), qtype)
    write(os.path.join(out, "quants.gguf"), tensors)

    expected = {}
    for name, (data, qtype) in tensors.items():
        values = data if qtype is None else gguf.quants.dequantize(data, qtype)
        expected[name] = (np.ascontiguousarray(values, dtype=np.float32).reshape(SHAPE), None)
    write(os.path.join(out, "quants-expected.gguf"), expected, metadata=False)

    whole = open(os.path.join(out, "quants.gguf"), "rb").read()
    open(os.path.join(out, "truncated.gguf"), "wb").write(whole[:-100])

    unknown = rng.integers(0, 256, size=(1, gguf.GGML_QUANT_SIZES[T.IQ2_XXS][1]), dtype=np.uint8)
    writer = gguf.GGUFWriter(os.path.join(out, "unknown-type.gguf"), arch="llama")
    writer.add_tensor("blk.0.attn_q.weight", unknown, raw_dtype=T.IQ2_XXS)
    finish(writer)

    for arch in ["llama", "qwen2"]:
        hf_dir = os.path.join(os.path.dirname(out), "hf", arch)
        hf_gguf(hf_dir, os.path.join(out, f"{arch}.gguf"), arch)
    spm_gguf(os.path.join(os.path.dirname(out), "hf", "llama"), os.path.join(out, "llama-spm-q8_0.gguf"), T.Q8_0)


if __name__ == "__main__":
    main()
