//! Sequence log-probabilities of completions given prompts: the quantity DPO compares.
//!
//! Rows are right-padded; only completion tokens count (prompt and padding are masked out), as in
//! TRL's `get_batch_logps`. Chosen and rejected of a batch of pairs go through the model as one
//! concatenated batch (Mitchell's `concatenated_forward`): rows `0..n` chosen, `n..2n` rejected.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hf::tokenizer::TextTokenizer;
use crate::model::CausalLm;
use crate::train::Trainer;
use crate::train::data::{PreferencePair, RatedResponse};

/// Token ids of one pair; both completions end with EOS (with a chat template, with the end of
/// the assistant turn the template writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct TokenizedPair {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
}

impl TokenizedPair {
    /// Tokenised as TRL's `trainer` does ([`TextTokenizer::encode_row`]): the prompt is what
    /// chosen and rejected share.
    pub fn new(tokenizer: &TextTokenizer, pair: &PreferencePair, trainer: Trainer) -> Result<Self> {
        let (prompt, completions) = tokenizer.encode_row(
            &pair.prompt,
            &[&pair.chosen, &pair.rejected],
            trainer.tokenization(),
        )?;
        let [chosen, rejected] = <[Vec<u32>; 2]>::try_from(completions).expect("two completions");
        Ok(Self {
            prompt,
            chosen,
            rejected,
        })
    }
}

/// Token ids of one rated response (KTO's row); the completion ends as [`TokenizedPair`]'s do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizedRating {
    pub prompt: Vec<u32>,
    pub completion: Vec<u32>,
    pub label: bool,
}

impl TokenizedRating {
    pub fn new(tokenizer: &TextTokenizer, rated: &RatedResponse) -> Result<Self> {
        let (prompt, mut completions) = tokenizer.encode_row(
            &rated.prompt,
            &[&rated.completion],
            Trainer::Kto.tokenization(),
        )?;
        Ok(Self {
            prompt,
            completion: completions.remove(0),
            label: rated.label,
        })
    }
}

/// Right-padded (prompt ++ completion) rows and the mask of the completion tokens, on the host.
#[derive(Debug, Clone)]
pub struct SequenceBatch {
    pub rows: usize,
    pub len: usize,
    /// `[rows, len]`
    pub tokens: Vec<i64>,
    /// `[rows, len - 1]`: 1 where the token at position `t + 1` is a completion token.
    pub mask: Vec<f32>,
    /// `[rows, len - 1]`: 1 where the token at position `t + 1` is a token of the row, prompt
    /// or completion, rather than padding (ORPO's NLL counts the prompt too).
    pub whole: Vec<f32>,
}

impl SequenceBatch {
    /// Rows of (prompt, completion). A row longer than `max_len` keeps the end of its prompt
    /// (TRL's `keep_end`) and, if the completion alone is too long, the start of the completion.
    pub fn new(rows: &[(&[u32], &[u32])], pad_id: u32, max_len: usize) -> Result<Self> {
        room(max_len)?;
        let fitted: Vec<(&[u32], &[u32])> = rows
            .iter()
            .map(|&(p, c)| {
                let c = &c[..c.len().min(max_len - 1)];
                let keep = p.len().min(max_len - c.len()).max(1.min(p.len()));
                (&p[p.len() - keep..], c)
            })
            .collect();
        Self::padded(&fitted, pad_id)
    }

    /// KTO's rows: each rating's (prompt, completion), then with `kl` its KL row (TRL's
    /// mismatched pair: this prompt, the previous rating's completion, the first taking the
    /// last's). Rows longer than `max_len` lose their end (TRL's KTO truncation); a prompt that
    /// fills `max_len` alone is refused (TRL drops it).
    pub fn rated(
        ratings: &[TokenizedRating],
        kl: bool,
        pad_id: u32,
        max_len: usize,
    ) -> Result<Self> {
        room(max_len)?;
        if let Some(i) = ratings.iter().position(|r| r.prompt.len() >= max_len) {
            return Err(Error::Setting(format!(
                "rating {i}: its prompt alone fills max_length ({max_len} tokens), leaving no \
                 completion to learn from; shorten it or raise max_length"
            )));
        }
        let n = ratings.len();
        let kl_rows = (0..n).filter(|_| kl).map(|i| {
            (
                &ratings[i].prompt[..],
                &ratings[(i + n - 1) % n].completion[..],
            )
        });
        let fitted: Vec<(&[u32], &[u32])> = ratings
            .iter()
            .map(|r| (&r.prompt[..], &r.completion[..]))
            .chain(kl_rows)
            .map(|(p, c)| (p, &c[..c.len().min(max_len - p.len())]))
            .collect();
        Self::padded(&fitted, pad_id)
    }

    /// The batch of rows that already fit.
    fn padded(fitted: &[(&[u32], &[u32])], pad_id: u32) -> Result<Self> {
        if fitted.is_empty() {
            return Err(Error::Setting("a batch needs at least one sequence".into()));
        }
        if let Some(i) = fitted
            .iter()
            .position(|(p, c)| p.is_empty() || c.is_empty())
        {
            return Err(Error::Setting(format!(
                "sequence {i} has an empty prompt or completion; both need at least one token"
            )));
        }
        let len = fitted.iter().map(|(p, c)| p.len() + c.len()).max().unwrap();
        let mut tokens = vec![pad_id as i64; fitted.len() * len];
        let mut mask = vec![0.0; fitted.len() * (len - 1)];
        let mut whole = mask.clone();
        for (r, (p, c)) in fitted.iter().enumerate() {
            for (t, &id) in p.iter().chain(c.iter()).enumerate() {
                tokens[r * len + t] = id as i64;
            }
            // Label at position t is token t + 1: completion labels are t + 1 in
            // p.len()..p.len() + c.len().
            for t in p.len() - 1..p.len() + c.len() - 1 {
                mask[r * (len - 1) + t] = 1.0;
            }
            whole[r * (len - 1)..r * (len - 1) + p.len() + c.len() - 1].fill(1.0);
        }
        Ok(Self {
            rows: fitted.len(),
            len,
            tokens,
            mask,
            whole,
        })
    }

    /// The concatenated batch of `pairs`: chosen rows first, then rejected rows.
    pub fn concatenated(pairs: &[TokenizedPair], pad_id: u32, max_len: usize) -> Result<Self> {
        let rows: Vec<(&[u32], &[u32])> = pairs
            .iter()
            .map(|p| (&p.prompt[..], &p.chosen[..]))
            .chain(pairs.iter().map(|p| (&p.prompt[..], &p.rejected[..])))
            .collect();
        Self::new(&rows, pad_id, max_len)
    }

    /// LD-DPO's split of the completion tokens of `n_pairs` concatenated pairs (rows `i` and
    /// `n + i` are one pair): the first `min(chosen, rejected)` tokens of each row are shared,
    /// the rest its tail. `[rows, len - 1]` masks each, as [`SequenceBatch::mask`].
    pub fn ld_masks(&self, n_pairs: usize) -> (Vec<f32>, Vec<f32>) {
        let width = self.len - 1;
        let counts = self.counts();
        let (mut shared, mut tail) = (vec![0.0; self.mask.len()], vec![0.0; self.mask.len()]);
        for r in 0..self.rows {
            let pair = r % n_pairs;
            let common = counts[pair].min(counts[n_pairs + pair]);
            let mut seen = 0.0;
            for t in 0..width {
                let k = r * width + t;
                if self.mask[k] == 0.0 {
                    continue;
                }
                seen += 1.0;
                if seen <= common {
                    shared[k] = 1.0;
                } else {
                    tail[k] = 1.0;
                }
            }
        }
        (shared, tail)
    }

    /// Completion-token count of each row (TRL's `size_completion`).
    pub fn counts(&self) -> Vec<f32> {
        self.row_sums(&self.mask)
    }

    /// Each row's count of tokens after the first, prompt included (see `whole`).
    pub fn whole_counts(&self) -> Vec<f32> {
        self.row_sums(&self.whole)
    }

    fn row_sums(&self, mask: &[f32]) -> Vec<f32> {
        mask.chunks(self.len - 1).map(|m| m.iter().sum()).collect()
    }
}

fn room(max_len: usize) -> Result<()> {
    if max_len < 2 {
        return Err(Error::Setting(
            "sequences need room for at least one prompt and one completion token".into(),
        ));
    }
    Ok(())
}

/// Sum of completion-token log-probs of each row: `[rows]`. Differentiable when `model` is.
pub fn sequence_logps(model: &CausalLm, batch: &SequenceBatch, device: &Device) -> Tensor<1> {
    token_logps(model, batch, device)
        .sum_dim(1)
        .reshape([batch.rows])
}

/// Log-prob of each label token, zero outside completions: `[rows, len - 1]`.
pub fn token_logps(model: &CausalLm, batch: &SequenceBatch, device: &Device) -> Tensor<2> {
    let (logits, labels, mask) = next_token_logits(model, batch, device);
    let labels = if logits.is_tracked() {
        let softmax = Softmax::of(&logits);
        label_logps(logits, labels, &softmax)
    } else {
        let lse = log_sum_exp(&logits);
        let [rows, len, _] = logits.dims();
        (logits.gather(2, labels) - lse).reshape([rows, len])
    };
    labels * mask
}

/// What TRL 1.16 reads of the policy's forward besides log-probs, per completion token: the mean
/// logit over the vocabulary, the entropy of the next-token distribution, whether the label is
/// the most likely token, and `log Σ_v p_v²` (WPO's weights). Detached; summed over each row's
/// completion tokens, `[rows]` each.
pub struct TokenStats {
    pub mean_logits: Tensor<1>,
    pub entropy: Tensor<1>,
    pub top1: Tensor<1>,
    pub log_sum_sq_probs: Tensor<1>,
}

/// [`token_logps`], the sum of each row's log-probs over all its tokens after the first
/// (prompt included; `[rows]`, differentiable: ORPO's NLL) and, detached, the [`TokenStats`] of
/// the same forward.
pub fn token_logps_and_stats(
    model: &CausalLm,
    batch: &SequenceBatch,
    device: &Device,
) -> (Tensor<2>, Tensor<1>, TokenStats) {
    let (logits, labels, mask) = next_token_logits(model, batch, device);
    let softmax = Softmax::of(&logits);
    let logits_fixed = logits.clone().detach();
    let label_logits = logits_fixed.clone().gather(2, labels.clone());
    let labels = label_logps(logits, labels, &softmax);
    let shape = [batch.rows, batch.len - 1];
    let whole = Tensor::<2>::from_data(TensorData::new(batch.whole.clone(), shape), device);
    let whole_logps = (labels.clone() * whole).sum_dim(1).reshape([batch.rows]);
    let token_logps = labels * mask.clone();
    let rows = batch.rows;
    let per_row = |t: Tensor<3>| {
        t.reshape([rows, batch.len - 1])
            .mul(mask.clone())
            .sum_dim(1)
    };
    let mean_logits = per_row(logits_fixed.mean_dim(2));
    let top1 = per_row(label_logits.greater_equal(softmax.max).float());
    // −Σ p·log p with log p = shifted − log_sum and Σ p = 1: both terms are at least zero, so
    // a peaked distribution's entropy is not the difference of two large numbers.
    let Softmax {
        shifted,
        log_sum,
        probs,
        ..
    } = softmax;
    let entropy = per_row(log_sum - (probs.clone() * shifted).sum_dim(2));
    // log Σ p² (TRL: logsumexp(2·log p)) needs no shift: Σ p² ≥ (max p)² ≥ 1/vocab².
    let log_sum_sq = per_row((probs.clone() * probs).sum_dim(2).log());
    let stats = TokenStats {
        mean_logits: mean_logits.reshape([rows]),
        entropy: entropy.reshape([rows]),
        top1: top1.reshape([rows]),
        log_sum_sq_probs: log_sum_sq.reshape([rows]),
    };
    (token_logps, whole_logps, stats)
}

/// The model's log-softmax over the vocabulary at every position `[rows, len − 1, vocab]`, and the
/// mask of those that predict a completion token `[rows, len − 1]`.
pub fn next_token_logps(
    model: &CausalLm,
    batch: &SequenceBatch,
    device: &Device,
) -> (Tensor<3>, Tensor<2>) {
    let (logits, _, mask) = next_token_logits(model, batch, device);
    (log_softmax(logits, 2), mask)
}

/// The logits of every position that predicts a token `[rows, len − 1, vocab]` (the last
/// predicts none, so the head skips it), the tokens they predict `[rows, len − 1, 1]` and the
/// completion mask `[rows, len − 1]`.
fn next_token_logits(
    model: &CausalLm,
    batch: &SequenceBatch,
    device: &Device,
) -> (Tensor<3>, Tensor<3, Int>, Tensor<2>) {
    let (rows, len) = (batch.rows, batch.len);
    let tokens =
        Tensor::<2, Int>::from_data(TensorData::new(batch.tokens.clone(), [rows, len]), device);
    let mask = Tensor::<2>::from_data(TensorData::new(batch.mask.clone(), [rows, len - 1]), device);
    let hidden = model.hidden(tokens.clone(), None);
    let [_, _, width] = hidden.dims();
    let logits = model.head(hidden.slice([0..rows, 0..len - 1, 0..width]));
    let labels = tokens.slice([0..rows, 1..len]).unsqueeze_dim::<3>(2);
    (logits, labels, mask)
}

/// Per position of logits `[rows, len, vocab]`, detached: the maximum `[.., 1]`, the logits less
/// it, the log of the sum of their exponentials `[.., 1]` (so `log p = shifted − log_sum`) and
/// the softmax.
struct Softmax {
    max: Tensor<3>,
    shifted: Tensor<3>,
    log_sum: Tensor<3>,
    probs: Tensor<3>,
}

impl Softmax {
    fn of(logits: &Tensor<3>) -> Self {
        let logits = logits.clone().detach();
        let max = logits.clone().max_dim(2);
        let shifted = logits - max.clone();
        let exp = shifted.clone().exp();
        let sum = exp.clone().sum_dim(2);
        Self {
            max,
            shifted,
            log_sum: sum.clone().log(),
            probs: exp / sum,
        }
    }
}

/// `log Σ exp(logits)` over the vocabulary `[.., 1]`, detached.
fn log_sum_exp(logits: &Tensor<3>) -> Tensor<3> {
    let logits = logits.clone().detach();
    let max = logits.clone().max_dim(2);
    max.clone() + (logits - max).exp().sum_dim(2).log()
}

/// `log p(label) = logit_label − log Σ exp(logits)` at each position `[rows, len]`, without
/// burn's log-softmax over the whole vocabulary (five ops, each a pass over it and again in the
/// backward). The log-sum-exp joins the graph through `Σ_v p_v · logit_v` less its own detached
/// value: nothing in the forward, and the softmax `p` in the backward, so the gradient with
/// respect to the logits is the log-softmax's, `onehot(label) − p`.
fn label_logps(logits: Tensor<3>, labels: Tensor<3, Int>, softmax: &Softmax) -> Tensor<2> {
    let [rows, len, _] = logits.dims();
    let expected = (logits.clone() * softmax.probs.clone()).sum_dim(2);
    let lse = expected.clone() - expected.detach() + softmax.max.clone() + softmax.log_sum.clone();
    (logits.gather(2, labels) - lse).reshape([rows, len])
}
