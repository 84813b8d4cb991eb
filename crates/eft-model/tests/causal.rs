//! Causal masking leaks nothing through the whole model: for every mechanism with a causal form,
//! the logits at positions up to t do not change when the tokens after t do (what a language
//! model's next-token loss relies on) — except where the mechanism says its routing reads the
//! whole sequence (`causal_leak`: lsh, sinkhorn), whose leak this test also shows, so the list
//! cannot go stale.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use eft_attention::testing::{small_configs, to_f64};
use eft_model::{ModelConfig, Pool, TaskShape};

const LEN: usize = 16;

#[test]
fn logits_before_t_ignore_the_tokens_after_it() {
    let dims = TaskShape {
        vocab_size: 20,
        max_len: LEN,
        n_classes: 20,
        paired: false,
    };
    for attention in small_configs() {
        if !attention.supports_causal() {
            continue;
        }
        let name = attention.name();
        let leaks = attention.causal_leak().is_some();
        let mut worst = 0.0f64;
        let device = Device::flex();
        device.seed(9);
        let model = ModelConfig {
            d_model: 16,
            n_heads: 4,
            n_layers: 2,
            d_ff: 32,
            dropout: 0.0,
            causal: true,
            pool: Pool::None,
            attention,
            ..ModelConfig::default()
        }
        .init(dims, &device)
        .unwrap();
        let tokens: Vec<i64> = (0..LEN as i64).map(|i| 1 + (i * 7) % 19).collect();
        let run = |tokens: &[i64]| {
            let t =
                Tensor::<2, Int>::from_data(TensorData::new(tokens.to_vec(), [1, LEN]), &device);
            let p =
                Tensor::<2, Bool>::from_data(TensorData::new(vec![false; LEN], [1, LEN]), &device);
            to_f64(model.forward(t, p).logits) // [LEN · 20]
        };
        let before = run(&tokens);
        for t in [0, 5, LEN - 2] {
            let mut changed = tokens.clone();
            // Every later token becomes another one (1..=19 cycled by one).
            for v in changed.iter_mut().skip(t + 1) {
                *v = 1 + *v % 19;
            }
            let after = run(&changed);
            let upto = (t + 1) * 20;
            let leak = before[..upto]
                .iter()
                .zip(&after[..upto])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            worst = worst.max(leak);
            if !leaks {
                assert!(leak <= 1e-5, "{name}: position ≤ {t} moved by {leak}");
            }
            let moved = before[upto..]
                .iter()
                .zip(&after[upto..])
                .any(|(a, b)| (a - b).abs() > 1e-4);
            assert!(moved, "{name}: the changed tokens change the later logits");
        }
        if leaks {
            assert!(
                worst > 1e-4,
                "{name} says it leaks but moved by only {worst}"
            );
        }
    }
}
