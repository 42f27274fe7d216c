//! TRL's logged metrics of a batch (`rewards/chosen`, `logps/rejected`, …), from the values read
//! back after a forward: the same for every objective.

use serde::{Deserialize, Serialize};

/// TRL's logged metrics for a batch, means over its pairs, plus the gradient norm of a step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct DpoMetrics {
    pub loss: f64,
    #[serde(rename = "rewards/chosen")]
    pub rewards_chosen: f64,
    #[serde(rename = "rewards/rejected")]
    pub rewards_rejected: f64,
    #[serde(rename = "rewards/accuracies")]
    pub rewards_accuracies: f64,
    #[serde(rename = "rewards/margins")]
    pub rewards_margins: f64,
    #[serde(rename = "logps/chosen")]
    pub logps_chosen: f64,
    #[serde(rename = "logps/rejected")]
    pub logps_rejected: f64,
    /// The policy's logit averaged over the vocabulary, then over the chosen (rejected)
    /// completion tokens of the batch.
    /// (DPO's; CPO and ORPO log theirs over whole sequences, which this crate does not.)
    #[serde(
        rename = "logits/chosen",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub logits_chosen: Option<f64>,
    #[serde(
        rename = "logits/rejected",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub logits_rejected: Option<f64>,
    /// The policy's next-token entropy, averaged over every completion token of the batch.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub entropy: Option<f64>,
    /// The share of chosen completion tokens that are the policy's most likely token.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mean_token_accuracy: Option<f64>,
    /// Global L2 norm of the gradient before clipping (training steps only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grad_norm: Option<f64>,
    /// NLL per chosen token (CPO, ORPO).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nll_loss: Option<f64>,
    /// ORPO's mean log σ(log odds) and mean log odds of the chosen over the rejected response.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub log_odds_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub log_odds_chosen: Option<f64>,
}

/// Host-side values of one batch, from which [`DpoMetrics`] follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct PairValues {
    pub losses: Vec<f32>,
    pub chosen_rewards: Vec<f32>,
    pub rejected_rewards: Vec<f32>,
    pub policy_chosen: Vec<f32>,
    pub policy_rejected: Vec<f32>,
    pub reference_chosen: Vec<f32>,
    pub reference_rejected: Vec<f32>,
    /// The margin of log-ratios,
    /// `h = (log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))`.
    #[serde(default)]
    pub h: Vec<f32>,
    /// `σ(β·h)`: how strongly the implicit reward already prefers the chosen response.
    #[serde(default)]
    pub sigma: Vec<f32>,
    #[serde(default)]
    pub tokens: TokenSums,
    /// The mean NLL of the chosen tokens, where the objective has one (CPO, ORPO, RPO).
    #[serde(default)]
    pub nll_loss: Option<f64>,
    /// ORPO's log odds of each pair.
    #[serde(default)]
    pub log_odds: Option<Vec<f32>>,
}

/// The batch's sums over completion tokens of what TRL logs per token (the policy's mean logit,
/// entropy, top-1 hits), with the token counts they are averaged over.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct TokenSums {
    pub chosen_logits: f64,
    pub rejected_logits: f64,
    pub entropy: f64,
    pub chosen_top1: f64,
    pub chosen_tokens: f64,
    pub rejected_tokens: f64,
}

impl TokenSums {
    fn add(&mut self, other: TokenSums) {
        self.chosen_logits += other.chosen_logits;
        self.rejected_logits += other.rejected_logits;
        self.entropy += other.entropy;
        self.chosen_top1 += other.chosen_top1;
        self.chosen_tokens += other.chosen_tokens;
        self.rejected_tokens += other.rejected_tokens;
    }
}

impl PairValues {
    /// The read-back losses, rewards and sequence log-probs `[π(y_w), π(y_l), π_ref(y_w),
    /// π_ref(y_l)]` of one batch; `h` and `σ(β·h)` follow from them.
    pub fn new(
        losses: Vec<f32>,
        [chosen_rewards, rejected_rewards]: [Vec<f32>; 2],
        [pc, pr, rc, rr]: [Vec<f32>; 4],
        tokens: TokenSums,
        beta: f64,
    ) -> Self {
        let h: Vec<f32> = (0..pc.len())
            .map(|i| (pc[i] - rc[i]) - (pr[i] - rr[i]))
            .collect();
        let sigma = h
            .iter()
            .map(|&h| (1.0 / (1.0 + (-beta * h as f64).exp())) as f32)
            .collect();
        Self {
            losses,
            chosen_rewards,
            rejected_rewards,
            policy_chosen: pc,
            policy_rejected: pr,
            reference_chosen: rc,
            reference_rejected: rr,
            h,
            sigma,
            tokens,
            nll_loss: None,
            log_odds: None,
        }
    }
}

impl PairValues {
    pub fn metrics(&self) -> DpoMetrics {
        let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let (c, r) = (&self.chosen_rewards, &self.rejected_rewards);
        let t = &self.tokens;
        // Absent for objectives that do not log them (no token counts), as TRL: 0 without tokens.
        let logged = t.chosen_tokens > 0.0;
        let per_token = |sum: f64, n: f64| logged.then_some(if n > 0.0 { sum / n } else { 0.0 });
        let log_sigmoid = |x: f64| -(1.0 + (-x).exp()).ln();
        let log_odds = self.log_odds.as_deref();
        DpoMetrics {
            loss: mean(&self.losses),
            rewards_chosen: mean(c),
            rewards_rejected: mean(r),
            rewards_accuracies: c.iter().zip(r).filter(|(c, r)| c > r).count() as f64
                / c.len() as f64,
            rewards_margins: c.iter().zip(r).map(|(c, r)| (c - r) as f64).sum::<f64>()
                / c.len() as f64,
            logps_chosen: mean(&self.policy_chosen),
            logps_rejected: mean(&self.policy_rejected),
            logits_chosen: per_token(t.chosen_logits, t.chosen_tokens),
            logits_rejected: per_token(t.rejected_logits, t.rejected_tokens),
            entropy: per_token(t.entropy, t.chosen_tokens + t.rejected_tokens),
            mean_token_accuracy: per_token(t.chosen_top1, t.chosen_tokens),
            grad_norm: None,
            nll_loss: self.nll_loss,
            log_odds_ratio: log_odds
                .map(|o| o.iter().map(|&x| log_sigmoid(x as f64)).sum::<f64>() / o.len() as f64),
            log_odds_chosen: log_odds
                .map(|o| o.iter().map(|&x| x as f64).sum::<f64>() / o.len() as f64),
        }
    }
}

impl PairValues {
    /// Appends the pairs of another batch.
    pub fn extend(&mut self, other: PairValues) {
        let (a, b) = (self.losses.len() as f64, other.losses.len() as f64);
        self.losses.extend(other.losses);
        self.chosen_rewards.extend(other.chosen_rewards);
        self.rejected_rewards.extend(other.rejected_rewards);
        self.policy_chosen.extend(other.policy_chosen);
        self.policy_rejected.extend(other.policy_rejected);
        self.reference_chosen.extend(other.reference_chosen);
        self.reference_rejected.extend(other.reference_rejected);
        self.h.extend(other.h);
        self.sigma.extend(other.sigma);
        // The NLL is a batch mean: weighted by pairs across batches.
        self.nll_loss = match (self.nll_loss, other.nll_loss) {
            (Some(x), Some(y)) => Some((x * a + y * b) / (a + b)),
            (x, y) => x.or(y),
        };
        if let (Some(mine), Some(theirs)) = (&mut self.log_odds, other.log_odds) {
            mine.extend(theirs);
        }
        self.tokens.add(other.tokens);
    }
}

/// TRL's `KTOTrainer` logs for a batch of rated rows: means over its desirable (`chosen`) and
/// undesirable (`rejected`) rows, absent where the batch has none of them, as TRL omits them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct KtoMetrics {
    pub loss: f64,
    /// The reference point `z₀`, the clamped mean log-ratio of the KL rows (0 without them).
    pub kl: f64,
    #[serde(
        rename = "rewards/chosen",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub rewards_chosen: Option<f64>,
    #[serde(
        rename = "rewards/rejected",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub rewards_rejected: Option<f64>,
    #[serde(
        rename = "rewards/margins",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub rewards_margins: Option<f64>,
    #[serde(
        rename = "logps/chosen",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub logps_chosen: Option<f64>,
    #[serde(
        rename = "logps/rejected",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub logps_rejected: Option<f64>,
    /// The policy's logit averaged over the vocabulary, then over every desirable (undesirable)
    /// completion token of the batch.
    #[serde(
        rename = "logits/chosen",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub logits_chosen: Option<f64>,
    #[serde(
        rename = "logits/rejected",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub logits_rejected: Option<f64>,
    /// The policy's next-token entropy over every completion token of the rated rows.
    pub entropy: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grad_norm: Option<f64>,
}

impl KtoMetrics {
    /// An evaluation's metrics over batches, as TRL reports them: each metric the mean of the
    /// batches that logged it, and the loss weighted by each batch's `rows` (the Trainer's
    /// `eval_loss`).
    pub fn over_batches(batches: &[(KtoMetrics, usize)]) -> KtoMetrics {
        let mean = |of: fn(&KtoMetrics) -> Option<f64>| {
            let logged: Vec<f64> = batches.iter().filter_map(|(m, _)| of(m)).collect();
            (!logged.is_empty()).then(|| logged.iter().sum::<f64>() / logged.len() as f64)
        };
        let rows: usize = batches.iter().map(|(_, n)| n).sum();
        KtoMetrics {
            loss: batches.iter().map(|(m, n)| m.loss * *n as f64).sum::<f64>() / rows as f64,
            kl: mean(|m| Some(m.kl)).unwrap_or(0.0),
            rewards_chosen: mean(|m| m.rewards_chosen),
            rewards_rejected: mean(|m| m.rewards_rejected),
            rewards_margins: mean(|m| m.rewards_margins),
            logps_chosen: mean(|m| m.logps_chosen),
            logps_rejected: mean(|m| m.logps_rejected),
            logits_chosen: mean(|m| m.logits_chosen),
            logits_rejected: mean(|m| m.logits_rejected),
            entropy: mean(|m| Some(m.entropy)).unwrap_or(0.0),
            grad_norm: mean(|m| m.grad_norm),
        }
    }
}

/// Host-side values of one batch of rated rows, from which [`KtoMetrics`] follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct RatingValues {
    pub labels: Vec<bool>,
    /// Each row's weighted loss.
    pub losses: Vec<f32>,
    /// `β·r`, `r = log π(y|x) − log π_ref(y|x)`.
    pub rewards: Vec<f32>,
    pub policy: Vec<f32>,
    pub reference: Vec<f32>,
    /// The reference point `z₀`.
    pub kl: f64,
    /// Over the desirable (`chosen_*`) and undesirable (`rejected_*`) rows.
    pub tokens: TokenSums,
}

impl RatingValues {
    pub fn metrics(&self) -> KtoMetrics {
        let labels = &self.labels;
        let mean_where = |v: &[f32], label: bool| {
            let picked: Vec<f64> = v
                .iter()
                .zip(labels)
                .filter(|&(_, &l)| l == label)
                .map(|(&x, _)| x as f64)
                .collect();
            (!picked.is_empty()).then(|| picked.iter().sum::<f64>() / picked.len() as f64)
        };
        let per_token = |sum: f64, n: f64| (n > 0.0).then(|| sum / n);
        let t = &self.tokens;
        let rewards_chosen = mean_where(&self.rewards, true);
        let rewards_rejected = mean_where(&self.rewards, false);
        let all_tokens = t.chosen_tokens + t.rejected_tokens;
        KtoMetrics {
            loss: self.losses.iter().map(|&x| x as f64).sum::<f64>() / self.losses.len() as f64,
            kl: self.kl,
            rewards_chosen,
            rewards_rejected,
            rewards_margins: rewards_chosen.zip(rewards_rejected).map(|(c, r)| c - r),
            logps_chosen: mean_where(&self.policy, true),
            logps_rejected: mean_where(&self.policy, false),
            logits_chosen: per_token(t.chosen_logits, t.chosen_tokens),
            logits_rejected: per_token(t.rejected_logits, t.rejected_tokens),
            entropy: per_token(t.entropy, all_tokens).unwrap_or(0.0),
            grad_norm: None,
        }
    }
}
