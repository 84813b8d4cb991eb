//! The Switch Transformer's feed-forward layer (Fedus et al. 2021): `E` expert MLPs and a router
//! that sends each token to one of them ([`crate::route`]). Each expert runs on the tokens it was
//! given, gathered into one matrix, never on the others: the work per token is one expert's,
//! whatever `E` is. Padding positions are neither routed nor computed.

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Bool, Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::{FeedForward, ModelConfig, ModelCost, expert_capacity, in_f32, linear_flops, route};

/// FLOPs per router score of the softmax: the max, the shift and exponential, the sum, the
/// division.
pub const SOFTMAX_FLOPS: f64 = 5.0;

/// The Switch layer's settings. TOML: `model.feed_forward = { kind = "switch", experts = 4 }`
/// with the optional fields below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchConfig {
    /// Experts `E`, each an MLP of width `model.d_ff`; at least 2.
    pub experts: usize,
    /// Tokens an expert takes, as a multiple of an even share: capacity `⌈c · tokens / E⌉`.
    /// Default 1.25 (the paper's training value).
    #[serde(default = "default_capacity_factor")]
    pub capacity_factor: f64,
    /// Weight α of the load-balancing loss `α·E·Σᵢ fᵢ·Pᵢ`. Default 0.01.
    #[serde(default = "default_balance")]
    pub balance: f64,
    /// Weight β of the router z-loss `β·mean (log Σ exp z)²`. Default 0 (off).
    #[serde(default)]
    pub z_loss: f64,
    /// Multiplicative noise `U(1−ε, 1+ε)` on the router's input while training. Default 0.
    #[serde(default)]
    pub jitter: f64,
    /// Every k-th block (counting from 1) is a Switch layer, the others dense. Default 1 (all).
    #[serde(default = "default_every")]
    pub every: usize,
}

fn default_capacity_factor() -> f64 {
    1.25
}

fn default_balance() -> f64 {
    0.01
}

fn default_every() -> usize {
    1
}

impl SwitchConfig {
    /// `experts` experts with every other field at its default.
    pub fn with_experts(experts: usize) -> Self {
        Self {
            experts,
            capacity_factor: default_capacity_factor(),
            balance: default_balance(),
            z_loss: 0.0,
            jitter: 0.0,
            every: default_every(),
        }
    }

    /// Whether block `layer` (counting from 0) is a Switch layer.
    pub fn at(&self, layer: usize) -> bool {
        (layer + 1).is_multiple_of(self.every.max(1))
    }
}

/// What one Switch layer did in a forward pass: its weighted auxiliary losses, how many tokens it
/// routed and dropped, and the forward FLOPs its analytic count includes that it did not run.
#[derive(Debug, Clone)]
pub struct SwitchReport {
    /// `α·E·Σᵢ fᵢ·Pᵢ`.
    pub balance: Tensor<1>,
    /// `β·mean (log Σ exp z)²`.
    pub z_loss: Tensor<1>,
    /// Real (non-padding) tokens routed.
    pub tokens: usize,
    /// Tokens over their expert's capacity, passed through the residual unchanged.
    pub dropped: usize,
    /// Forward FLOPs of [`Switch::cost`] not executed: padding positions (not routed) and
    /// dropped tokens (no expert).
    pub skipped_flops: f64,
}

/// `E` expert MLPs behind a top-1 router.
#[derive(Module, Debug)]
pub struct Switch {
    /// `[d, E]`, no bias.
    router: Linear,
    experts: Vec<FeedForward>,
    #[module(skip)]
    config: SwitchConfig,
}

impl Switch {
    /// Builds the layer: each expert is the dense MLP of `config` (width `d_ff`).
    pub fn new(config: &ModelConfig, switch: &SwitchConfig, device: &Device) -> Self {
        Self {
            router: LinearConfig::new(config.d_model, switch.experts)
                .with_bias(false)
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .init(device),
            experts: (0..switch.experts)
                .map(|_| FeedForward::dense(config, device))
                .collect(),
            config: switch.clone(),
        }
    }

    /// Routes the real tokens of `x`, runs each expert on its kept tokens and scales its output by
    /// the token's gate; dropped and padding positions get zeros (the residual passes them on).
    ///
    /// # Shapes
    /// - x: `[B, n, d]`; padding: `[B, n]`, `true` at padding → `[B, n, d]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
    ) -> (Tensor<3>, SwitchReport) {
        let [batch, len, d] = x.dims();
        let device = x.device();
        let flat = x.reshape([batch * len, d]);
        let real: Vec<usize> = match padding {
            None => (0..batch * len).collect(),
            Some(p) => p
                .into_data()
                .iter::<bool>()
                .enumerate()
                .filter(|(_, pad)| !pad)
                .map(|(i, _)| i)
                .collect(),
        };
        let rows = |ids: &[usize]| eft_attention::index_tensor(ids, &device);
        let tokens = flat.clone().select(0, rows(&real)); // [T, d]
        let experts = self.experts.len();
        let routing = route(
            self.router_logits(tokens.clone()),
            self.capacity(real.len()),
        );

        // Each expert's kept tokens in one matrix; the output's rows are theirs, in expert order,
        // then one zero row that dropped and padding positions read.
        let mut outputs = Vec::with_capacity(experts + 1);
        let mut row_of = vec![None; batch * len];
        let mut next = 0;
        for (e, expert) in self.experts.iter().enumerate() {
            let mine = routing.tokens_of(e);
            if mine.is_empty() {
                continue;
            }
            let picked = rows(&mine);
            let input = tokens.clone().select(0, picked.clone()).unsqueeze_dim(0);
            let gate = routing.gate.clone().select(0, picked).unsqueeze_dim(1);
            let out = expert.forward(input).squeeze_dim::<2>(0);
            outputs.push(out.clone() * gate.cast(out.dtype()));
            for &t in &mine {
                row_of[real[t]] = Some(next);
                next += 1;
            }
        }
        outputs.push(Tensor::<2>::zeros([1, d], &device).cast(flat.dtype()));
        let gather: Vec<usize> = row_of.iter().map(|r| r.unwrap_or(next)).collect();
        let out = Tensor::cat(outputs, 0).select(0, rows(&gather));

        let dropped = routing.dropped();
        let kept = real.len() - dropped;
        let skipped = self.cost(batch * len).forward_flops - self.executed_flops(real.len(), kept);
        let report = SwitchReport {
            balance: routing.balance_loss * self.config.balance,
            z_loss: routing.z_loss * self.config.z_loss,
            tokens: real.len(),
            dropped,
            skipped_flops: skipped,
        };
        (out.reshape([batch, len, d]), report)
    }

    /// Router scores `[T, E]` in f32, the input jittered while training.
    fn router_logits(&self, tokens: Tensor<2>) -> Tensor<2> {
        let jitter = self.config.jitter;
        let tokens = in_f32(tokens);
        let tokens = if jitter > 0.0 && self.experts[0].training() && tokens.device().is_autodiff()
        {
            let noise = Tensor::random(
                tokens.dims(),
                Distribution::Uniform(1.0 - jitter, 1.0 + jitter),
                &tokens.device(),
            );
            tokens * noise
        } else {
            tokens
        };
        tokens.matmul(in_f32(self.router.weight.val()))
    }

    /// Tokens each expert takes out of `tokens` routed.
    pub fn capacity(&self, tokens: usize) -> usize {
        expert_capacity(tokens, self.experts.len(), self.config.capacity_factor)
    }

    /// Forward FLOPs when `routed` tokens are routed and `kept` of them run an expert: the router
    /// and its softmax per routed token, one expert and the gate's scaling per kept token. The
    /// auxiliary losses (`O(T·E)`) are not counted.
    pub fn executed_flops(&self, routed: usize, kept: usize) -> f64 {
        let [d, experts] = self.router.weight.dims();
        linear_flops(routed, d, experts, false)
            + SOFTMAX_FLOPS * (routed * experts) as f64
            + self.experts[0].cost(kept).forward_flops
            + (kept * d) as f64
    }

    /// The analytic cost for `rows` positions, as if every one were routed and kept: one
    /// expert's work per token plus the router. Activations kept: one expert's per token, the
    /// router's probabilities and the gated output.
    pub fn cost(&self, rows: usize) -> ModelCost {
        let [d, experts] = self.router.weight.dims();
        let flops = self.executed_flops(rows, rows);
        let saved =
            self.experts[0].cost(rows).activation_bytes / 4.0 + (rows * (experts + d)) as f64;
        ModelCost::layer(flops, saved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::GradientsParams;
    use burn::tensor::TensorData;
    use burn::tensor::activation::softmax;
    use eft_attention::testing::{assert_close, to_f64};

    fn layer(experts: usize, capacity_factor: f64, device: &Device) -> Switch {
        let config = ModelConfig {
            d_model: 8,
            d_ff: 12,
            dropout: 0.0,
            ..ModelConfig::default()
        };
        let switch = SwitchConfig {
            experts,
            capacity_factor,
            balance: 0.3,
            z_loss: 0.2,
            jitter: 0.0,
            every: 1,
        };
        Switch::new(&config, &switch, device)
    }

    /// The obviously-right form: each real token on its own, in sequence order, scored by the
    /// router, counted against its expert's capacity, and run through that expert alone.
    fn per_token(
        s: &Switch,
        x: Tensor<3>,
        pad: &[bool],
    ) -> (Tensor<3>, Tensor<1>, Tensor<1>, usize) {
        let [batch, len, d] = x.dims();
        let experts = s.experts.len();
        let real = pad.iter().filter(|p| !**p).count();
        let capacity = s.capacity(real);
        let mut load = vec![0; experts];
        let (mut rows, mut probs, mut lses, mut firsts) = (vec![], vec![], vec![], vec![]);
        let mut dropped = 0;
        for (t, &padded) in pad.iter().enumerate() {
            let (b, n) = (t / len, t % len);
            let xt = x.clone().slice([b..b + 1, n..n + 1, 0..d]); // [1, 1, d]
            if padded {
                rows.push(Tensor::zeros([1, 1, d], &x.device()));
                continue;
            }
            let z = xt.clone().reshape([1, d]).matmul(s.router.weight.val()); // [1, E]
            let p = softmax(z.clone(), 1);
            let e = to_f64(z.clone())
                .iter()
                .enumerate()
                .fold(0, |best, (i, v)| {
                    if *v > to_f64(z.clone())[best] {
                        i
                    } else {
                        best
                    }
                });
            lses.push(z.exp().sum_dim(1).log().reshape([1]));
            probs.push(p.clone());
            firsts.push(e);
            load[e] += 1;
            if load[e] > capacity {
                dropped += 1;
                rows.push(Tensor::zeros([1, 1, d], &x.device()));
                continue;
            }
            let gate = p.slice([0..1, e..e + 1]).reshape([1, 1, 1]);
            rows.push(s.experts[e].forward(xt) * gate);
        }
        let out = Tensor::cat(rows, 0).reshape([batch, len, d]);
        let mean_p = Tensor::cat(probs, 0).mean_dim(0).reshape([experts]); // [E]
        let f: Vec<f32> = (0..experts)
            .map(|i| firsts.iter().filter(|&&e| e == i).count() as f32 / real as f32)
            .collect();
        let f = Tensor::<1>::from_data(TensorData::new(f, [experts]), &x.device());
        let balance = (f * mean_p).sum() * (experts as f64 * 0.3);
        let z = Tensor::cat(lses, 0).powi_scalar(2).mean() * 0.2;
        (out, balance.reshape([1]), z.reshape([1]), dropped)
    }

    /// Outputs, losses, drops and the gradients of the router, every expert and the input equal
    /// the per-token reference, with padding in the batch and capacity tight enough to drop.
    #[test]
    fn gathered_experts_equal_a_per_token_reference_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(11);
        let s = layer(3, 0.6, &device);
        let (batch, len) = (2, 7);
        let x = Tensor::<3>::random([batch, len, 8], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let pad: Vec<bool> = (0..batch * len)
            .map(|t| t == 5 || t == 6 || t == 13)
            .collect();
        let padding =
            Tensor::<2, Bool>::from_data(TensorData::new(pad.clone(), [batch, len]), &device);
        let w = Tensor::<3>::random([batch, len, 8], Distribution::Normal(0.0, 1.0), &device);

        let (out, report) = s.forward(x.clone(), Some(padding));
        let (want, balance, z, dropped) = per_token(&s, x.clone(), &pad);
        assert_eq!(report.tokens, 11);
        assert_eq!(report.dropped, dropped);
        assert!(
            dropped > 0,
            "capacity ⌈0.6·11/3⌉ = 3 must drop some of 11 tokens"
        );
        for (name, got, want) in [
            ("output", to_f64(out.clone()), to_f64(want.clone())),
            (
                "balance",
                to_f64(report.balance.clone()),
                to_f64(balance.clone()),
            ),
            ("z", to_f64(report.z_loss.clone()), to_f64(z.clone())),
        ] {
            assert_close(name, &got, &want, 1e-5, 1e-6);
        }

        let loss = |o: Tensor<3>, b: Tensor<1>, z: Tensor<1>| (o * w.clone()).sum() + b + z;
        let mut g1 = loss(out, report.balance, report.z_loss).backward();
        let mut g2 = loss(want, balance, z).backward();
        let gx = |g: &burn::tensor::Gradients| to_f64(x.grad(g).unwrap());
        assert_close("input gradient", &gx(&g1), &gx(&g2), 1e-5, 1e-6);
        let (p1, p2) = (
            GradientsParams::from_module(&mut g1, &s),
            GradientsParams::from_module(&mut g2, &s),
        );
        let router = s.router.weight.id;
        let grad = |p: &GradientsParams, id| to_f64(p.get::<2>(id).expect("a gradient"));
        assert_close("router", &grad(&p1, router), &grad(&p2, router), 1e-5, 1e-6);
        for (e, expert) in s.experts.iter().enumerate() {
            for id in expert.weight_ids() {
                // An expert with no kept token has no gradient in either form.
                match (p1.get::<2>(id), p2.get::<2>(id)) {
                    (Some(a), Some(b)) => {
                        assert_close(&format!("expert {e}"), &to_f64(a), &to_f64(b), 1e-5, 1e-6)
                    }
                    (None, None) => {}
                    (a, b) => panic!(
                        "expert {e}: gradient {:?} vs {:?}",
                        a.is_some(),
                        b.is_some()
                    ),
                }
            }
        }
    }

    /// Padding positions get zeros whatever they hold and take no capacity.
    #[test]
    fn padding_is_neither_routed_nor_computed() {
        let device = Device::flex();
        device.seed(12);
        let s = layer(2, 1.0, &device);
        let x = Tensor::<3>::random([1, 6, 8], Distribution::Normal(0.0, 1.0), &device);
        let pad = Tensor::<2, Bool>::from_data(
            TensorData::new(vec![false, false, false, false, true, true], [1, 6]),
            &device,
        );
        let (a, ra) = s.forward(x.clone(), Some(pad.clone()));
        let noise = Tensor::<3>::random([1, 2, 8], Distribution::Normal(5.0, 3.0), &device);
        let moved = x.clone().slice_assign([0..1, 4..6, 0..8], noise);
        let (b, rb) = s.forward(moved, Some(pad));
        assert_close("padding ignored", &to_f64(a.clone()), &to_f64(b), 0.0, 0.0);
        assert_eq!((ra.tokens, rb.tokens), (4, 4));
        let tail = to_f64(a.slice([0..1, 4..6, 0..8]));
        assert!(tail.iter().all(|v| *v == 0.0));
        // The analytic count runs six positions; two were never routed.
        let whole = s.cost(6).forward_flops;
        let four = s.executed_flops(4, 4 - ra.dropped);
        assert_eq!(ra.skipped_flops, whole - four);
        assert!(ra.skipped_flops >= 2.0 * s.executed_flops(1, 1) - 1e-9);
    }
}
