//! The story world in the page: the behaviour meter (the oracle reading fresh samples of the
//! policy) and the sweep (fresh copies of the built-in model trained by the simulated user).

use wasm_bindgen::prelude::*;

use super::options::{Admission, LoadOptions};
use super::{builtin_files, from_js, init_runtime, to_js};
use crate::error::Error;
use crate::storyworld::measure::Meter;
use crate::storyworld::report;
use crate::storyworld::simulate::{self, Baselines, SweepConfig};

/// A behaviour measurement under way; see [`super::Session::start_measurement`]. It holds its
/// own copies of the two models, so updates meanwhile do not change what it measures.
#[wasm_bindgen]
pub struct Measurement(pub(super) Meter);

#[wasm_bindgen]
impl Measurement {
    /// Samples the next token of the current prompt's stories, or judges them once they have
    /// ended (so a step takes about one token's time); `false` once all are in.
    pub async fn next(&mut self) -> Result<bool, Error> {
        self.0.step().await
    }

    /// The rates and the KL over the stories measured so far.
    #[wasm_bindgen(unchecked_return_type = "Behaviour")]
    pub fn behaviour(&self) -> JsValue {
        to_js(&self.0.behaviour())
    }

    #[wasm_bindgen(getter)]
    pub fn measured(&self) -> usize {
        self.0.measured()
    }

    #[wasm_bindgen(getter)]
    pub fn total(&self) -> usize {
        self.0.total()
    }
}

/// The settings of a sweep as the app runs it by default: the app's training settings, the
/// paper's β values, and the simulated user's measurements sized for the browser.
#[wasm_bindgen(js_name = defaultSweepConfig, unchecked_return_type = "SweepConfig")]
pub fn default_sweep_config() -> JsValue {
    let mut config = SweepConfig::default();
    config.simulation.picks = 20;
    config.simulation.eval_samples = 24;
    to_js(&config)
}

/// A β sweep of the built-in model, one step (a pair or a measurement) per [`Sweep::next`].
#[wasm_bindgen]
pub struct Sweep(simulate::Sweep);

#[wasm_bindgen]
impl Sweep {
    /// Loads the model from the bytes of config.json, tokenizer.json and model.safetensors; each
    /// run trains a fresh copy of it.
    pub async fn create(
        config_json: String,
        tokenizer_json: Vec<u8>,
        weights: Vec<u8>,
        #[wasm_bindgen(unchecked_param_type = "Backend")] backend: JsValue,
        #[wasm_bindgen(unchecked_param_type = "SweepConfig")] sweep: JsValue,
    ) -> Result<Sweep, Error> {
        init_runtime();
        let backend = from_js(backend, "backend")?;
        let sweep: SweepConfig = from_js(sweep, "sweep settings")?;
        let files = builtin_files(config_json, tokenizer_json, weights);
        let config = files.config()?;
        let tokenizer = files.tokenizer(&config)?;
        let options = LoadOptions {
            backend,
            lora: None,
            budget: None,
            max_length: None,
        };
        let Admission { device, .. } = options.admit(&config).await?;
        let model = files.model(&config, &device.device)?;
        Ok(Sweep(simulate::Sweep::new(
            model,
            tokenizer,
            &sweep,
            &device.device,
        )?))
    }

    /// One step of the current run; `undefined` once every run has ended.
    #[wasm_bindgen(unchecked_return_type = "SweepProgress | undefined")]
    pub async fn next(&mut self) -> Result<JsValue, Error> {
        Ok(match self.0.step().await? {
            Some(progress) => to_js(&progress),
            None => JsValue::UNDEFINED,
        })
    }

    /// The runs so far with their measurements.
    #[wasm_bindgen(unchecked_return_type = "SweepRun[]")]
    pub fn runs(&self) -> JsValue {
        to_js(&self.0.runs())
    }

    /// The reference and best-of-2 baselines, once the first measurement is made.
    #[wasm_bindgen(unchecked_return_type = "Baselines | undefined")]
    pub fn baselines(&self) -> JsValue {
        Baselines::of(self.0.runs()).map_or(JsValue::UNDEFINED, |b| to_js(&b))
    }

    /// The runs so far as CSV (as `webdpo simulate --sweep --csv` writes it).
    pub fn csv(&self) -> String {
        report::sweep_csv(self.0.runs(), self.0.attribute().name())
    }

    /// The figure so far as SVG (as `webdpo simulate --sweep --svg` draws it).
    pub fn svg(&self) -> String {
        report::sweep_svg(self.0.runs(), self.0.attribute().name())
    }
}
