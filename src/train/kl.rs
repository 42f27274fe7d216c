//! KL(π ‖ π_ref) of the policy's own samples, the low-variance way: for each sampled completion,
//! the full-vocabulary KL of the two next-token distributions summed over its positions (EOS
//! included). Every term is ≥ 0, and by the chain rule its mean over y ~ π is the sequence KL,
//! where the mean log-ratio of the samples alone is as unbiased but goes negative and jumps.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::CausalLm;
use crate::runtime::read_all;
use crate::train::logps::{SequenceBatch, next_token_logps};

/// The estimate over `per_sample` values: their mean and its standard error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct KlEstimate {
    pub mean: f64,
    /// The sample standard deviation over √n (0 for a single sample).
    pub stderr: f64,
    pub per_sample: Vec<f64>,
}

impl KlEstimate {
    pub fn of(per_sample: Vec<f64>) -> Self {
        let n = per_sample.len() as f64;
        let mean = per_sample.iter().sum::<f64>() / n;
        let stderr = if per_sample.len() > 1 {
            let var = per_sample.iter().map(|k| (k - mean).powi(2)).sum::<f64>() / (n - 1.0);
            (var / n).sqrt()
        } else {
            0.0
        };
        Self {
            mean,
            stderr,
            per_sample,
        }
    }
}

/// The KL of the completions `rows` (prompt, completion) sampled from `policy`, against
/// `reference`, both on `device`.
pub async fn sequence_kl(
    policy: &CausalLm,
    reference: &CausalLm,
    rows: &[(&[u32], &[u32])],
    pad_id: u32,
    device: &Device,
) -> Result<KlEstimate> {
    let mut per_sample = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(16) {
        let batch = SequenceBatch::new(chunk, pad_id, policy.max_positions())?;
        let (p, mask) = next_token_logps(policy, &batch, device);
        let (r, _) = next_token_logps(reference, &batch, device);
        // Σ_v π_v (log π_v − log π_ref,v) at each position; ≥ 0 up to rounding.
        let per_position = (p.clone().exp() * (p - r))
            .sum_dim(2)
            .reshape([batch.rows, batch.len - 1])
            .clamp_min(0.0);
        let [kl] = read_all([(per_position * mask).sum_dim(1).reshape([batch.rows])]).await?;
        per_sample.extend(kl.iter().map(|&k| k as f64));
    }
    Ok(KlEstimate::of(per_sample))
}
