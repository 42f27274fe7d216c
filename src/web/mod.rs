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
use crate::train::{ImportLimits, PreferenceReader, parse_jsonl};

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

/// The threaded build's pool: `initThreadPool(n)` starts `n` Web Workers sharing this module's
/// memory, once, before the first model loads (the calls into wasm then wait on them, so they
/// must come from a worker: a page's main thread may not block).
#[cfg(target_feature = "atomics")]
pub use wasm_bindgen_rayon::init_thread_pool;

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

/// A TRL JSONL file of either preference format, read chunk by chunk as the browser streams it,
/// under the app's caps ([`ImportLimits::BROWSER`]). `finish` gives `{kind: "pairs", rows}` or
/// `{kind: "ratings", rows}` (`{"prompt","completion","label"}` per line); a bad line, bytes that
/// are not UTF-8, or a file past a cap is refused naming the line and byte offset.
#[wasm_bindgen]
pub struct PreferenceImport(Option<PreferenceReader>);

#[wasm_bindgen]
impl PreferenceImport {
    /// An import of `file`, of `size` bytes (a file past the cap is refused before any is read).
    #[wasm_bindgen(constructor)]
    pub fn new(file: &str, size: f64) -> Result<PreferenceImport, Error> {
        let reader = PreferenceReader::new(file, ImportLimits::BROWSER);
        reader.check_size(size as u64)?;
        Ok(PreferenceImport(Some(reader)))
    }

    /// The next chunk of the file.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), Error> {
        self.reader()?.push(chunk)
    }

    /// Rows read so far.
    #[wasm_bindgen(getter)]
    pub fn rows(&self) -> usize {
        self.0.as_ref().map_or(0, PreferenceReader::rows_read)
    }

    /// The rows of the whole file; the import is used up.
    #[wasm_bindgen(unchecked_return_type = "PreferenceRows")]
    pub fn finish(&mut self) -> Result<JsValue, Error> {
        let reader = self.0.take().ok_or_else(Self::used)?;
        Ok(to_js(&reader.finish()?))
    }

    fn reader(&mut self) -> Result<&mut PreferenceReader, Error> {
        self.0.as_mut().ok_or_else(Self::used)
    }

    fn used() -> Error {
        Error::Setting("this import is finished; start another".into())
    }
}

/// How long (in ms) a GPU read-back may wait before the device is taken as lost or stuck: the
/// call then fails with a "device" error (default 300 000).
#[wasm_bindgen(js_name = setReadbackTimeout)]
pub fn set_readback_timeout(ms: u32) {
    crate::runtime::set_readback_timeout(ms);
}

/// The caps every [`PreferenceImport`] is read under.
#[wasm_bindgen(js_name = importLimits, unchecked_return_type = "ImportLimits")]
pub fn import_limits() -> JsValue {
    to_js(&ImportLimits::BROWSER)
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
