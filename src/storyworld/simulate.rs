//! A simulated user who prefers one attribute: the browser's loop (two samples → a pick → the
//! DPO update) with the oracle as the person, measured as it goes; and the sweep of fresh runs
//! over β and objectives that draws the DPO paper's picture (rate against KL, one line per run).

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::measure::{Attribute, Meter};
use super::oracle::Oracle;
use super::{StoryWorld, format_prompt};
use crate::error::{Error, Result};
use crate::generate::{PairDecoder, PairStyle, SamplingConfig};
use crate::hf::tokenizer::TextTokenizer;
use crate::model::CausalLm;
use crate::train::data::PreferencePair;
use crate::train::dpo::LossType;
use crate::train::logps::TokenizedPair;
use crate::train::{DpoTrainer, TrainConfig, Trainer};

/// What a simulated user prefers and how the run is measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct SimulationConfig {
    pub attribute: Attribute,
    pub picks: usize,
    /// Measure after every this many picks (and at the start and the end).
    pub eval_every: usize,
    /// Stories per measurement.
    pub eval_samples: usize,
    /// How the user's pairs and the measurements are sampled.
    pub sampling: SamplingConfig,
    /// How the two stories of a pair are drawn.
    #[serde(default)]
    pub pairs: PairStyle,
    pub seed: u64,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        Self {
            attribute: Attribute::Happy,
            picks: 30,
            eval_every: 5,
            eval_samples: 64,
            sampling: SamplingConfig {
                max_new_tokens: 160,
                ..SamplingConfig::default()
            },
            pairs: PairStyle::default(),
            seed: 0,
        }
    }
}

impl SimulationConfig {
    pub fn validate(&self) -> Result<()> {
        if self.eval_every == 0 || self.eval_samples == 0 {
            return Err(Error::Setting(
                "a simulation measures every ≥ 1 picks on ≥ 1 stories".into(),
            ));
        }
        self.sampling.validate()
    }
}

/// One row of a simulation: after `picks` preferences, the attribute's rate (with its 95 %
/// interval) and the KL.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct SimulationPoint {
    pub picks: usize,
    pub rate: f64,
    pub rate_low: f64,
    pub rate_high: f64,
    pub well_formed: f64,
    pub kl: f64,
    /// The standard error of `kl` over the samples.
    pub kl_stderr: f64,
    /// The last update's loss and reward margin (NaN before the first).
    pub loss: f64,
    pub margin: f64,
}

/// What one step of a simulation did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Progress {
    /// The user picked and the policy updated; `picks` so far.
    Picked {
        picks: usize,
    },
    /// Both stories had the attribute, or neither: nothing to pick.
    Skipped {
        picks: usize,
    },
    Measured {
        point: SimulationPoint,
    },
}

/// Mixed into a simulation's seed for the prompts it measures on, so that they are not the
/// user's.
const EVAL_PROMPTS: u64 = 0x005E_ED0F_E7A1;

/// Pairs a simulation may sample per pick asked for before it ends for want of differing pairs.
pub const PAIRS_PER_PICK: usize = 10;

/// A simulated user who, for a random prompt, samples two stories from the current policy and
/// prefers the one with the attribute (ties, where both or neither have it, are skipped),
/// applying the update as the browser does, in steps. Measures every `eval_every` picks, always
/// on the same prompts, and where it ends. Ends early, after [`PAIRS_PER_PICK`] × `picks` pairs,
/// when too few pairs differ in the attribute to pick from.
pub struct Simulation {
    trainer: DpoTrainer,
    tokenizer: TextTokenizer,
    config: SimulationConfig,
    world: StoryWorld,
    oracle: Oracle,
    picks: usize,
    attempts: usize,
    pair_seed: u64,
    last: (f64, f64),
    points: Vec<SimulationPoint>,
    finished: bool,
}

impl Simulation {
    pub fn new(
        trainer: DpoTrainer,
        tokenizer: TextTokenizer,
        config: SimulationConfig,
    ) -> Result<Self> {
        config.validate()?;
        trainer.reference()?;
        if trainer.config().trainer.unpaired() {
            return Err(Error::Setting(
                "the simulated user picks between two stories; KTO learns from ratings".into(),
            ));
        }
        Ok(Self {
            world: StoryWorld::new(config.seed),
            pair_seed: config.seed.wrapping_mul(1_000_003),
            trainer,
            tokenizer,
            config,
            oracle: Oracle::new(),
            picks: 0,
            attempts: 0,
            last: (f64::NAN, f64::NAN),
            points: Vec::new(),
            finished: false,
        })
    }

    /// The measurements so far.
    pub fn points(&self) -> &[SimulationPoint] {
        &self.points
    }

    pub fn trainer(&self) -> &DpoTrainer {
        &self.trainer
    }

    /// Whether the run ended because too few pairs differed to pick from.
    pub fn exhausted(&self) -> bool {
        self.attempts >= PAIRS_PER_PICK * self.config.picks.max(1)
    }

    /// One pair (a pick or a skip) or one measurement; `None` once the run has ended.
    pub async fn step(&mut self) -> Result<Option<Progress>> {
        if self.finished {
            return Ok(None);
        }
        let end = self.picks >= self.config.picks || self.exhausted();
        let due = self.picks.is_multiple_of(self.config.eval_every) || end;
        if due && self.points.last().is_none_or(|p| p.picks != self.picks) {
            let point = self.measure().await?;
            self.points.push(point.clone());
            return Ok(Some(Progress::Measured { point }));
        }
        if end {
            self.finished = true;
            return Ok(None);
        }
        self.attempts += 1;
        Ok(Some(if self.pick().await? {
            self.picks += 1;
            Progress::Picked { picks: self.picks }
        } else {
            Progress::Skipped { picks: self.picks }
        }))
    }

    /// Every step at once; `on_point` sees each measurement as it is made.
    pub async fn run(mut self, mut on_point: impl FnMut(&SimulationPoint)) -> Result<Self> {
        while let Some(progress) = self.step().await? {
            if let Progress::Measured { point } = progress {
                on_point(&point);
            }
        }
        Ok(self)
    }

    async fn measure(&self) -> Result<SimulationPoint> {
        let sampling = SamplingConfig {
            seed: self.config.seed.wrapping_add(self.picks as u64 * 7919),
            ..self.config.sampling.clone()
        };
        let meter = Meter::new(
            self.trainer.policy(),
            self.trainer.reference()?.clone(),
            self.tokenizer.clone(),
            self.config.eval_samples,
            self.config.seed ^ EVAL_PROMPTS,
            sampling,
            self.trainer.device(),
        )?;
        let behaviour = meter.run().await?;
        let rate = behaviour.rates.get(self.config.attribute);
        Ok(SimulationPoint {
            picks: self.picks,
            rate: rate.rate,
            rate_low: rate.low,
            rate_high: rate.high,
            well_formed: behaviour.rates.well_formed.rate,
            kl: behaviour.kl.mean,
            kl_stderr: behaviour.kl.stderr,
            loss: self.last.0,
            margin: self.last.1,
        })
    }

    /// The user's turn: two samples for one prompt, and a preference (`true`) or a skip.
    async fn pick(&mut self) -> Result<bool> {
        let (prompt, _) = self.world.prompt();
        let formatted = format_prompt(&prompt);
        let ids = self.tokenizer.encode_prompt(&formatted)?;
        self.pair_seed = self.pair_seed.wrapping_add(1);
        let sampling = SamplingConfig {
            seed: self.pair_seed,
            ..self.config.sampling.clone()
        };
        let device = self.trainer.device().clone();
        let eos = self.tokenizer.eos_id();
        let style = self.config.pairs;
        let pair = PairDecoder::new(self.trainer.policy(), &ids, style, sampling, eos, &device)?
            .run()
            .await?;
        let stories = [
            self.tokenizer.decode(&pair[0])?,
            self.tokenizer.decode(&pair[1])?,
        ];
        let attribute = self.config.attribute;
        let has = stories
            .each_ref()
            .map(|s| attribute.of(&self.oracle.judge(&prompt, s)) == Some(true));
        if has[0] == has[1] {
            return Ok(false);
        }
        let [a, b] = stories;
        let (chosen, rejected) = if has[0] { (a, b) } else { (b, a) };
        let pair = PreferencePair {
            prompt: formatted.into(),
            chosen: chosen.into(),
            rejected: rejected.into(),
        };
        let tokenized = TokenizedPair::new(&self.tokenizer, &pair, self.trainer.config().trainer)?;
        let reports = self
            .trainer
            .learn(tokenized, self.tokenizer.pad_id())
            .await?;
        let first = &reports[0].metrics;
        self.last = (first.loss, first.rewards_margins);
        Ok(true)
    }
}

/// The sweep's runs: every DPO loss in `losses` at every β in `betas`, the rest of `train`
/// unchanged.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct SweepConfig {
    pub betas: Vec<f64>,
    pub losses: Vec<LossType>,
    pub train: TrainConfig,
    pub simulation: SimulationConfig,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            betas: vec![0.05, 0.1, 0.5, 1.0],
            losses: vec![LossType::Sigmoid],
            train: TrainConfig::default(),
            simulation: SimulationConfig::default(),
        }
    }
}

impl SweepConfig {
    /// The training configuration of each run, in order: loss by loss, β by β.
    pub fn runs(&self) -> Result<Vec<(LossType, f64, TrainConfig)>> {
        if self.betas.is_empty() || self.losses.is_empty() {
            return Err(Error::Setting(
                "a sweep needs at least one β and one loss".into(),
            ));
        }
        self.simulation.validate()?;
        let mut runs = Vec::new();
        for &loss in &self.losses {
            for &beta in &self.betas {
                let mut train = self.train.clone();
                train.trainer = Trainer::Dpo;
                train.dpo.beta = beta;
                train.dpo.loss_type = vec![loss];
                train.dpo.loss_weights = None;
                train.validate()?;
                runs.push((loss, beta, train));
            }
        }
        Ok(runs)
    }
}

/// One run of a sweep and its measurements.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct SweepRun {
    pub loss: LossType,
    pub beta: f64,
    pub points: Vec<SimulationPoint>,
}

/// Where a sweep stands after a step.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct SweepProgress {
    /// The run the step belonged to (0-based), of `runs`.
    pub run: usize,
    pub runs: usize,
    pub loss: LossType,
    pub beta: f64,
    pub progress: Progress,
}

/// Fresh copies of one model, each trained by its own simulated user (the same user: same
/// prompts, same seeds), one step at a time.
pub struct Sweep {
    model: CausalLm,
    tokenizer: TextTokenizer,
    simulation: SimulationConfig,
    pending: Vec<(LossType, f64, TrainConfig)>,
    current: Option<Simulation>,
    runs: Vec<SweepRun>,
    total: usize,
    device: Device,
}

impl Sweep {
    pub fn new(
        model: CausalLm,
        tokenizer: TextTokenizer,
        config: &SweepConfig,
        device: &Device,
    ) -> Result<Self> {
        let mut pending = config.runs()?;
        pending.reverse();
        Ok(Self {
            model,
            tokenizer,
            simulation: config.simulation.clone(),
            total: pending.len(),
            pending,
            current: None,
            runs: Vec::new(),
            device: device.clone(),
        })
    }

    pub fn attribute(&self) -> Attribute {
        self.simulation.attribute
    }

    /// The runs begun so far, each with its measurements.
    pub fn runs(&self) -> &[SweepRun] {
        &self.runs
    }

    /// One step of the current run (a new run starts from the untrained model); `None` when
    /// every run has ended.
    pub async fn step(&mut self) -> Result<Option<SweepProgress>> {
        loop {
            if self.current.is_none() {
                let Some((loss, beta, train)) = self.pending.pop() else {
                    return Ok(None);
                };
                let trainer = DpoTrainer::new(self.model.clone(), None, train, &self.device)?;
                let simulation =
                    Simulation::new(trainer, self.tokenizer.clone(), self.simulation.clone())?;
                self.current = Some(simulation);
                self.runs.push(SweepRun {
                    loss,
                    beta,
                    points: Vec::new(),
                });
            }
            let simulation = self.current.as_mut().expect("a run was just started");
            let index = self.runs.len() - 1;
            let run = &mut self.runs[index];
            match simulation.step().await? {
                Some(progress) => {
                    if let Progress::Measured { point } = &progress {
                        run.points.push(point.clone());
                    }
                    return Ok(Some(SweepProgress {
                        run: index,
                        runs: self.total,
                        loss: run.loss,
                        beta: run.beta,
                        progress,
                    }));
                }
                None => self.current = None,
            }
        }
    }
}

/// KL(Bernoulli(q) ‖ Bernoulli(p)) in nats.
fn binary_kl(q: f64, p: f64) -> f64 {
    let term = |a: f64, b: f64| if a > 0.0 { a * (a / b).ln() } else { 0.0 };
    term(q, p) + term(1.0 - q, 1.0 - p)
}

/// The reference's own behaviour, and what reweighting it by the attribute alone achieves.
///
/// No policy reaches a rate q with a KL below KL(Bernoulli(q) ‖ Bernoulli(p₀)) (p₀ the
/// reference's rate): the attribute is a function of the story, and KL only shrinks under a
/// function (data processing). A policy that reweights the reference's stories by the attribute
/// alone sits on that bound; best-of-n sampling (n stories, one with the attribute kept) is
/// such a policy, with q = 1 − (1 − p₀)ⁿ.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct Baselines {
    /// The reference's rate p₀ (at KL 0).
    pub reference_rate: f64,
    pub best_of_2_rate: f64,
    pub best_of_2_kl: f64,
}

impl Baselines {
    pub fn new(reference_rate: f64) -> Self {
        let best_of_2_rate = 1.0 - (1.0 - reference_rate).powi(2);
        Self {
            reference_rate,
            best_of_2_rate,
            best_of_2_kl: binary_kl(best_of_2_rate, reference_rate),
        }
    }

    /// The least KL at which any policy has the attribute at `rate`.
    pub fn bound(&self, rate: f64) -> f64 {
        if rate <= self.reference_rate {
            0.0
        } else {
            binary_kl(rate, self.reference_rate)
        }
    }

    /// The baselines of a sweep's runs, from their first measurement (the untrained policy, the
    /// same in every run); `None` before it is made.
    pub fn of(runs: &[SweepRun]) -> Option<Self> {
        let first = runs.first()?.points.first()?;
        Some(Self::new(first.rate))
    }
}
