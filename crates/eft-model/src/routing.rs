//! Switch Transformer routing (Fedus et al. 2021): each token goes to the one expert its router
//! scores highest; an expert takes at most `capacity` tokens, in sequence order, and the rest pass
//! through the residual unchanged (dropped). Two auxiliary losses keep the router healthy: the
//! load-balancing loss `α·E·Σᵢ fᵢ·Pᵢ` (fᵢ the fraction of tokens whose top expert is i, Pᵢ the mean
//! router probability of i) and the router z-loss `β·mean_t (log Σⱼ exp zₜⱼ)²`.

use burn::tensor::{Tensor, TensorData};

/// Tokens an expert takes: `⌈factor · tokens / experts⌉`.
pub fn expert_capacity(tokens: usize, experts: usize, factor: f64) -> usize {
    (factor * tokens as f64 / experts as f64).ceil() as usize
}

/// Where every token of a batch goes, and the router's auxiliary losses.
#[derive(Debug, Clone)]
pub struct Routing {
    /// The expert each token's router scores highest, `[T]`.
    pub expert: Vec<usize>,
    /// Whether the token fits in its expert's capacity (else it is dropped), `[T]`.
    pub kept: Vec<bool>,
    /// The router probability of each token's expert, `[T]`: the gate its expert's output is
    /// scaled by (the router's gradient flows through it).
    pub gate: Tensor<1>,
    /// `E·Σᵢ fᵢ·Pᵢ`, 1 when routing is uniform (multiply by α).
    pub balance_loss: Tensor<1>,
    /// `mean_t (log Σⱼ exp zₜⱼ)²` (multiply by β).
    pub z_loss: Tensor<1>,
}

impl Routing {
    /// Tokens dropped for lack of capacity.
    pub fn dropped(&self) -> usize {
        self.kept.iter().filter(|k| !**k).count()
    }

    /// The kept tokens of `expert`, in sequence order.
    pub fn tokens_of(&self, expert: usize) -> Vec<usize> {
        (0..self.expert.len())
            .filter(|&t| self.kept[t] && self.expert[t] == expert)
            .collect()
    }
}

/// Routes `T` tokens by their router logits `[T, E]` (compute them in f32) with `capacity` tokens
/// per expert.
pub fn route(logits: Tensor<2>, capacity: usize) -> Routing {
    let [tokens, experts] = logits.dims();
    let device = logits.device();
    let probs = burn::tensor::activation::softmax(logits.clone(), 1); // [T, E]
    let expert: Vec<usize> = logits
        .clone()
        .argmax(1)
        .into_data()
        .iter::<i64>()
        .map(|e| e as usize)
        .collect();
    let mut load = vec![0usize; experts];
    let kept: Vec<bool> = expert
        .iter()
        .map(|&e| {
            load[e] += 1;
            load[e] <= capacity
        })
        .collect();
    let index = eft_attention::index_tensor(&expert, &device).reshape([tokens, 1]);
    let gate = probs.clone().gather(1, index).reshape([tokens]);
    // fᵢ counts every token's first choice, dropped or not (it carries no gradient).
    let fraction: Vec<f32> = (0..experts)
        .map(|i| expert.iter().filter(|&&e| e == i).count() as f32 / tokens as f32)
        .collect();
    let fraction = Tensor::<1>::from_data(TensorData::new(fraction, [experts]), &device);
    let mean_prob = probs.mean_dim(0).reshape([experts]);
    let balance_loss = (fraction * mean_prob).sum() * experts as f64;
    let lse =
        logits.clone().max_dim(1) + (logits.clone() - logits.max_dim(1)).exp().sum_dim(1).log(); // [T, 1]
    let z_loss = lse.powi_scalar(2).mean().reshape([1]);
    Routing {
        expert,
        kept,
        gate,
        balance_loss,
        z_loss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn logits(rows: &[[f32; 2]]) -> Tensor<2> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), 2]), &Device::flex())
    }

    /// Five tokens, two experts, capacity ⌈1.0 · 5 / 2⌉ = 3: tokens 0, 1, 3 and 4 prefer expert 0,
    /// so token 4 (its fourth, in order) is dropped; token 2 prefers expert 1.
    #[test]
    fn routes_by_the_top_logit_and_drops_over_capacity() {
        let capacity = expert_capacity(5, 2, 1.0);
        assert_eq!(capacity, 3);
        let r = route(
            logits(&[[2.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.5, 0.0], [4.0, 1.0]]),
            capacity,
        );
        assert_eq!(r.expert, [0, 0, 1, 0, 0]);
        assert_eq!(r.kept, [true, true, true, true, false]);
        assert_eq!(r.dropped(), 1);
        assert_eq!(r.tokens_of(0), [0, 1, 3]);
        assert_eq!(r.tokens_of(1), [2]);
        let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
        let gate: Vec<f32> = r.gate.into_data().iter::<f32>().collect();
        let want = [
            sigmoid(2.0),
            sigmoid(1.0),
            sigmoid(3.0),
            sigmoid(0.5),
            sigmoid(3.0),
        ];
        for (g, w) in gate.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{gate:?}");
        }
    }

    /// The losses by hand: f = (4/5, 1/5), P = the mean of each column of the softmax;
    /// balance = 2·(f₀P₀ + f₁P₁); z = the mean of squared log-sum-exps.
    #[test]
    fn balance_and_z_losses_match_a_hand_computation() {
        let rows = [
            [2.0f32, 0.0],
            [1.0, 0.0],
            [0.0, 3.0],
            [0.5, 0.0],
            [4.0, 1.0],
        ];
        let r = route(logits(&rows), 3);
        let p0: Vec<f64> = rows
            .iter()
            .map(|[a, b]| 1.0 / (1.0 + f64::from(b - a).exp()))
            .collect();
        let mean0 = p0.iter().sum::<f64>() / 5.0;
        let balance = 2.0 * (0.8 * mean0 + 0.2 * (1.0 - mean0));
        let z = rows
            .iter()
            .map(|[a, b]| (f64::from(*a).exp() + f64::from(*b).exp()).ln().powi(2))
            .sum::<f64>()
            / 5.0;
        let got = r.balance_loss.into_scalar::<f64>();
        assert!((got - balance).abs() < 1e-5, "{got} vs {balance}");
        let got = r.z_loss.into_scalar::<f64>();
        assert!((got - z).abs() < 1e-4, "{got} vs {z}");
        // Uniform routing balances exactly: loss 1.
        let even = route(logits(&[[1.0, 0.0], [0.0, 1.0]]), 1);
        let b = even.balance_loss.into_scalar::<f64>();
        assert!((b - 1.0).abs() < 1e-6, "{b}");
    }
}
