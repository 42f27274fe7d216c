//! Browser bindings: a thin async JS class over the core. Errors become JS `Error`s with the
//! core's message and kind; nothing here panics on user input. The types that cross to JS are
//! declared in `pkg/webdpo.d.ts` from the Rust structs themselves (tsify).

mod options;
mod session;
mod story;

use std::sync::Once;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::error::Error;
use crate::hf::ModelFiles;
use crate::hf::safetensors::{self, Dtype};
use crate::model::{CausalLm, ModelConfig};
use crate::runtime::ComputeDevice;
use crate::train::parse_jsonl;

pub use options::{Backend, LoadOptions, LoraOptions, MemoryReport, check_memory};
pub use session::{Generation, PeftAdapter, Session, Snapshot, TokenScores, TrainingState};
pub use story::{Measurement, Sweep, default_sweep_config};

unsafe extern "C" {
    fn __wasm_call_ctors();
}

/// Runs the linker's static constructors once. cubecl registers its kernels through
/// `inventory`; without this, the wasm linker re-runs every constructor on each exported call.
/// Called by the start function and at the top of every wasm test (tests skip `start`).
pub fn init_runtime() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        unsafe { __wasm_call_ctors() };
        console_error_panic_hook::set_once();
    });
}

#[wasm_bindgen(start)]
fn start() {
    init_runtime();
}

/// What JS receives when a call fails: an `Error` (`Error & { kind: ErrorKind }`) with the message
/// the user reads and the `kind` code acts on (the page falls back to the CPU on `"device"`,
/// never on the text).
impl From<Error> for JsValue {
    fn from(e: Error) -> Self {
        let error = js_sys::Error::new(&e.to_string());
        // A fresh Error object takes any property.
        let _ = js_sys::Reflect::set(&error, &"kind".into(), &e.kind().as_str().into());
        error.into()
    }
}

/// Our own reports as plain JS values (they hold only strings, numbers within 2^53 and lists).
fn to_js<T: Serialize>(value: &T) -> JsValue {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .expect("a report serializes")
}

fn from_js<T: serde::de::DeserializeOwned>(value: JsValue, what: &str) -> Result<T, Error> {
    serde_wasm_bindgen::from_value(value)
        .map_err(|e| Error::Setting(format!("invalid {what}: {e}")))
}

fn bytes(b: &[u8]) -> JsValue {
    js_sys::Uint8Array::from(b).into()
}

/// A plain JS object of the given fields.
fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let out = js_sys::Object::new();
    for (name, value) in fields {
        // A fresh object takes any property.
        let _ = js_sys::Reflect::set(&out, &(*name).into(), value);
    }
    out.into()
}

/// The built-in model's files, from their bytes.
fn builtin_files(config_json: String, tokenizer_json: Vec<u8>, weights: Vec<u8>) -> ModelFiles {
    ModelFiles::new([
        ("config.json".to_string(), config_json.into_bytes()),
        ("tokenizer.json".to_string(), tokenizer_json),
        ("model.safetensors".to_string(), weights),
    ])
}

/// A randomly initialised model's safetensors bytes, for demos and tests without a download.
#[wasm_bindgen(js_name = initWeights)]
pub async fn init_weights(config_json: String, seed: u64) -> Result<Vec<u8>, Error> {
    init_runtime();
    let config = ModelConfig::from_json(&config_json)?;
    let model = CausalLm::init(&config, seed, &ComputeDevice::cpu().device)?;
    safetensors::to_safetensors(&model, Dtype::F32).await
}

/// A byte-level tokenizer.json matching [`initWeights`] models whose vocab is 259.
#[wasm_bindgen(js_name = byteLevelTokenizer)]
pub fn byte_level_tokenizer() -> String {
    crate::hf::tokenizer::byte_level_tokenizer_json()
}

/// The preference pairs of a TRL JSONL file (`{"prompt","chosen","rejected"}` per line, each
/// text or a list of messages); a bad line is refused naming `file` and the line.
#[wasm_bindgen(js_name = parsePairs, unchecked_return_type = "PreferencePair[]")]
pub fn parse_pairs(text: &str, file: &str) -> Result<JsValue, Error> {
    Ok(to_js(&parse_jsonl(text, file)?))
}

/// The rows of a TRL JSONL file of either preference format: `{kind: "pairs", rows}` or
/// `{kind: "ratings", rows}` (`{"prompt","completion","label"}` per line).
#[wasm_bindgen(js_name = parsePreferences, unchecked_return_type = "PreferenceRows")]
pub fn parse_preferences(text: &str, file: &str) -> Result<JsValue, Error> {
    Ok(to_js(&crate::train::parse_preferences(text, file)?))
}

/// A prompt in the format the built-in story model was trained on (the story world's); other
/// models take the text as it is, formatted by their chat template when they have one.
#[wasm_bindgen(js_name = storyPrompt)]
pub fn story_prompt(instruction: &str) -> String {
    crate::storyworld::format_prompt(instruction.trim())
}

/// The files among `names` that loading the model folder `folder` reads (the page sends no
/// other); refused when the folder has no config.json.
#[wasm_bindgen(js_name = selectModelFiles)]
pub fn select_model_files(names: Vec<String>, folder: &str) -> Result<Vec<String>, Error> {
    ModelFiles::select(&names, folder)
}

/// The learning rate the page switches to when the user chooses an optimizer.
#[wasm_bindgen(js_name = defaultLearningRate)]
pub fn default_learning_rate(
    #[wasm_bindgen(unchecked_param_type = "Optim")] optim: JsValue,
) -> Result<f64, Error> {
    Ok(from_js::<crate::train::optimizer::Optim>(optim, "optimizer")?.default_learning_rate())
}
