//! Effective context: how much of the earlier text a language model actually uses.
//!
//! A simplified form of Dai et al. 2019's relative effective context length (RECL): for a fixed
//! set of test targets (the byte after each test window), bits per byte when the model is given
//! only the last `c` bytes before the target, fed as a sequence of its own from position 0, for a
//! ladder of `c`. Where the curve stops falling, more context no longer helps: the effective
//! context is the smallest `c` whose bits per byte is within a tolerance of the curve's best
//! (which need not be at the longest context: a model can do worse with more). RECL compares a group of models against their best and over two context
//! lengths at a time; this measures each model against itself, on one corpus.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use eft_data::Example;
use eft_model::Classifier;

/// Windows run at once.
const BATCH: usize = 64;

/// Bits per byte of the byte after each window (its last target) when the model sees only the
/// window's last `context` bytes.
///
/// # Panics
/// Panics if a window is shorter than `context` or has no targets.
pub fn bits_at_context(
    model: &Classifier,
    windows: &[Example],
    context: usize,
    device: &Device,
) -> f64 {
    let mut nats = 0.0;
    for batch in windows.chunks(BATCH) {
        let b = batch.len();
        let mut tokens = Vec::with_capacity(b * context);
        let mut targets = Vec::with_capacity(b);
        for e in batch {
            let n = e.tokens.len();
            tokens.extend(e.tokens[n - context..].iter().map(|&t| i64::from(t)));
            let &(_, next) = e.targets.last().expect("an lm window has targets");
            targets.push(i64::from(next));
        }
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [b, context]), device);
        let padding = Tensor::<2, Bool>::from_data(
            TensorData::new(vec![false; b * context], [b, context]),
            device,
        );
        let logits = model.forward(tokens, padding).logits; // [b · context, C]
        let classes = logits.dims()[1];
        let last = logits
            .reshape([b, context, classes])
            .slice([0..b, context - 1..context, 0..classes])
            .reshape([b, classes]);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [b]), device);
        nats += crate::cross_entropy_rows(last, targets)
            .sum()
            .into_scalar::<f64>();
    }
    nats / windows.len() as f64 / std::f64::consts::LN_2
}

/// The smallest context whose bits per byte is at most `(1 + tolerance)` times the curve's
/// best, from a curve of `(context, bits)` points in increasing context.
///
/// # Panics
/// Panics on an empty curve.
pub fn effective_context(curve: &[(usize, f64)], tolerance: f64) -> usize {
    let best = curve
        .iter()
        .map(|p| p.1)
        .reduce(f64::min)
        .expect("a curve with points");
    curve
        .iter()
        .find(|&&(_, bits)| bits <= best * (1.0 + tolerance))
        .map_or(0, |&(c, _)| c)
}

/// The contexts measured by default for windows of `len` bytes: powers of two, then `len`.
pub fn default_contexts(len: usize) -> Vec<usize> {
    let mut c: Vec<usize> = std::iter::successors(Some(1usize), |c| Some(c * 2))
        .take_while(|&c| c < len)
        .collect();
    c.push(len);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation::log_softmax;

    #[test]
    fn effective_context_is_where_the_curve_flattens() {
        let curve = [(1, 4.0), (2, 3.0), (4, 2.5), (8, 2.02), (16, 2.0)];
        assert_eq!(effective_context(&curve, 0.01), 8);
        assert_eq!(effective_context(&curve, 0.0), 16);
        assert_eq!(effective_context(&curve, 0.5), 2);
        // Worse with more context: measured against the best, not the longest.
        let rising = [(1, 4.0), (2, 3.0), (4, 3.2), (8, 3.5)];
        assert_eq!(effective_context(&rising, 0.01), 2);
        assert_eq!(default_contexts(12), vec![1, 2, 4, 8, 12]);
        assert_eq!(default_contexts(8), vec![1, 2, 4, 8]);
    }

    /// At the whole window, the bits are the model's loss at the window's last position.
    #[test]
    fn bits_at_the_whole_window_are_the_last_positions_loss() {
        use eft_attention::AttentionConfig;
        use eft_model::{ModelConfig, Pool, TaskShape};
        let device = Device::flex();
        device.seed(3);
        let dims = TaskShape {
            vocab_size: 257,
            max_len: 8,
            n_classes: 256,
            paired: false,
        };
        let model = ModelConfig {
            d_model: 16,
            n_heads: 2,
            n_layers: 1,
            d_ff: 32,
            dropout: 0.0,
            causal: true,
            pool: Pool::None,
            positions: eft_model::Positions::Sinusoidal,
            attention: AttentionConfig::from_name_and_params(
                "sliding",
                &[("window".into(), "7".into())],
            )
            .unwrap(),
            ..ModelConfig::default()
        }
        .init(dims, &device)
        .unwrap();
        let windows: Vec<Example> = (0..5u8)
            .map(|i| eft_data::lm::window(&[i, 7, 30, 2, 9, 100, i + 40, 3, 65 + i], 0, 8))
            .collect();
        let whole = bits_at_context(&model, &windows, 8, &device);
        let mut nats = 0.0;
        for e in &windows {
            let tokens: Vec<i64> = e.tokens.iter().map(|&t| i64::from(t)).collect();
            let logits = model
                .forward(
                    Tensor::from_data(TensorData::new(tokens, [1, 8]), &device),
                    Tensor::from_data(TensorData::new(vec![false; 8], [1, 8]), &device),
                )
                .logits;
            let row: Vec<f64> = log_softmax(logits, 1)
                .slice([7..8, 0..256])
                .into_data()
                .iter::<f64>()
                .collect();
            nats -= row[e.targets[7].1 as usize];
        }
        assert!((whole - nats / 5.0 / std::f64::consts::LN_2).abs() < 1e-4);
    }
}
