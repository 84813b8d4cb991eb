//! Decoding a chunk at a time equals the causal pass over the whole sequence, at every position,
//! for every mechanism a language model may use (through its incremental state, or by
//! recomputing where it has none), with padding at both ends of one sequence in a batch of two,
//! and for the model's other forms (reversible blocks, Switch layers, a tied head, sinusoidal
//! positions).

use burn::tensor::{Bool, Device, Int, Tensor, TensorData, s};
use eft_attention::AttentionConfig;
use eft_attention::testing::{small_configs, to_f64};
use eft_model::{
    Classifier, FeedForwardConfig, Head, ModelConfig, Pool, Positions, Residual, SwitchConfig,
    TaskShape,
};

const LEN: usize = 12;
const CHUNKS: [usize; 6] = [4, 1, 3, 1, 1, 2];

fn model(config: ModelConfig, seed: u64) -> (Classifier, Device) {
    let device = Device::flex();
    device.seed(seed);
    let dims = TaskShape {
        vocab_size: 20,
        max_len: LEN,
        n_classes: 19,
        paired: false,
    };
    (config.init(dims, &device).unwrap(), device)
}

/// A small causal per-position model.
fn lm() -> ModelConfig {
    ModelConfig {
        d_model: 16,
        n_heads: 2,
        n_layers: 2,
        d_ff: 32,
        dropout: 0.0,
        causal: true,
        pool: Pool::None,
        ..ModelConfig::default()
    }
}

/// The largest difference between chunked decoding and the causal pass, relative to the
/// largest logit, and whether decoding was incremental.
fn worst_difference(model: &Classifier, device: &Device) -> (f64, bool) {
    let tokens: Vec<i64> = (0..2 * LEN as i64).map(|i| 1 + (i * 7) % 19).collect();
    // Sequence 1 is padded at both ends.
    let pad: Vec<bool> = (0..2 * LEN)
        .map(|x| x / LEN == 1 && (x % LEN < 2 || x % LEN >= LEN - 2))
        .collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [2, LEN]), device);
    let pad = Tensor::<2, Bool>::from_data(TensorData::new(pad, [2, LEN]), device);
    let whole = to_f64(model.forward(tokens.clone(), pad.clone()).logits);
    let (mut state, mut slow) = (
        model.decoder(LEN).unwrap(),
        model.recomputing_decoder(LEN).unwrap(),
    );
    let mut start = 0;
    let (mut pieces, mut recomputed) = (Vec::new(), Vec::new());
    for n in CHUNKS {
        let range = start..start + n;
        let feed = |state| {
            model
                .decode(
                    state,
                    tokens.clone().slice(s![.., range.clone()]),
                    pad.clone().slice(s![.., range.clone()]),
                )
                .unwrap()
        };
        pieces.push(feed(&mut state));
        recomputed.push(feed(&mut slow));
        start += n;
    }
    assert_eq!(state.position(), LEN);
    let decoded = to_f64(Tensor::cat(pieces, 1)); // [2, LEN, C], the pass's row order
    let recomputed = to_f64(Tensor::cat(recomputed, 1));
    let scale = whole.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let worst = decoded
        .iter()
        .chain(&recomputed)
        .zip(whole.iter().chain(&whole))
        .map(|(a, b)| (a - b).abs() / scale)
        .fold(0.0, f64::max);
    (worst, state.recompute_reason().is_none())
}

#[test]
fn decoding_equals_the_causal_pass_for_every_mechanism() {
    let mut incremental = Vec::new();
    for (seed, attention) in small_configs().into_iter().enumerate() {
        if !attention.supports_causal() || attention.causal_leak().is_some() {
            continue;
        }
        let name = attention.name();
        let (model, device) = model(ModelConfig { attention, ..lm() }, seed as u64);
        let (worst, fast) = worst_difference(&model, &device);
        assert!(worst <= 1e-5, "{name}: decoding differs by {worst:e}");
        if fast {
            incremental.push(name);
        }
    }
    for name in [
        "full",
        "flash",
        "local",
        "sliding",
        "strided",
        "fixed",
        "cascade",
        "longformer",
        "linear",
        "performer",
        "xl",
    ] {
        assert!(
            incremental.contains(&name),
            "{name} did not decode incrementally"
        );
    }
}

#[test]
fn decoding_equals_the_causal_pass_for_every_model_form() {
    let xl = AttentionConfig::from_name_and_params(
        "xl",
        &[
            ("segment".into(), "5".into()),
            ("mem_len".into(), "3".into()),
        ],
    )
    .unwrap();
    let forms = [
        (
            "reversible",
            ModelConfig {
                residual: Residual::Reversible,
                ..lm()
            },
        ),
        (
            "tied head, sinusoidal",
            ModelConfig {
                head: Head::Tied,
                positions: Positions::Sinusoidal,
                ..lm()
            },
        ),
        (
            "xl, segment 5",
            ModelConfig {
                attention: xl,
                ..lm()
            },
        ),
        (
            "switch",
            ModelConfig {
                // Capacity for every token: with drops, a token's output depends on how many
                // tokens are routed with it, later ones included, and no causal pass is
                // autoregressive (a language model refuses such a layer).
                feed_forward: FeedForwardConfig::Switch(SwitchConfig {
                    capacity_factor: 2.0,
                    ..SwitchConfig::with_experts(2)
                }),
                ..lm()
            },
        ),
    ];
    for (seed, (what, config)) in forms.into_iter().enumerate() {
        let (model, device) = model(config, 40 + seed as u64);
        let (worst, fast) = worst_difference(&model, &device);
        assert!(worst <= 1e-5, "{what}: decoding differs by {worst:e}");
        assert_eq!(fast, what != "switch", "{what}");
    }
}

#[test]
fn decoding_refuses_what_it_cannot_serve() {
    let (encoder, _) = model(
        ModelConfig {
            causal: false,
            ..lm()
        },
        1,
    );
    assert!(
        encoder
            .decoder(LEN)
            .unwrap_err()
            .to_string()
            .contains("causal")
    );
    let (causal, device) = model(lm(), 2);
    let err = causal.decoder(LEN + 1).unwrap_err().to_string();
    assert!(err.contains("learned 12 positions"), "{err}");
    let mut state = causal.decoder(4).unwrap();
    let tokens = Tensor::<2, Int>::ones([1, 5], &device);
    let pad = Tensor::<2, Bool>::from_data(TensorData::new(vec![false; 5], [1, 5]), &device);
    let err = causal
        .decode(&mut state, tokens, pad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds 4 positions"), "{err}");
}
