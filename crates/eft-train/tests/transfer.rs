//! Transfer from a pretraining run: the embeddings and encoder of a masked-byte model land in a
//! classifier of another vocabulary, length and head, row for row where the tables differ, and
//! nothing else moves.

use burn::tensor::Device;
use eft_model::{ModelConfig, Pool, TaskShape};
use eft_train::params::{export_params, materialize, transfer_params};

/// A pretraining model (258 tokens, 256 classes at every position, 16 positions) and a Text-like
/// classifier (257 tokens, 2 classes, CLS pooling: 17 positions), both of width 16.
fn models(device: &Device) -> (eft_model::Classifier, eft_model::Classifier) {
    let config = |pool| ModelConfig {
        d_model: 16,
        n_heads: 2,
        d_ff: 32,
        pool,
        ..ModelConfig::default()
    };
    let shape = |vocab_size, n_classes| TaskShape {
        vocab_size,
        n_classes,
        max_len: 16,
        paired: false,
    };
    device.seed(1);
    let pretrained = config(Pool::None).init(shape(258, 256), device).unwrap();
    materialize(&pretrained);
    device.seed(2);
    let text = config(Pool::Cls).init(shape(257, 2), device).unwrap();
    materialize(&text);
    (pretrained, text)
}

#[test]
fn the_encoder_transfers_and_the_head_starts_fresh() {
    let device = Device::flex();
    let (pretrained, text) = models(&device);
    let source = export_params(&pretrained);
    let before = export_params(&text);
    let (text, whole, partial) =
        transfer_params(text, &source, &["embeddings.", "encoder."]).unwrap();
    let after = export_params(&text);
    // Token table 258 → 257 rows and position table 16 → 17 rows are the partial ones.
    assert_eq!(partial, 2);
    let encoder = after.keys().filter(|k| k.starts_with("encoder.")).count();
    assert_eq!(whole, encoder);
    for (name, array) in &after {
        let rows = |a: &eft_train::params::NamedArray, n: usize| {
            let width: usize = a.shape[1..].iter().product();
            a.values[..n * width].to_vec()
        };
        match name.as_str() {
            "embeddings.tokens.weight" => {
                assert_eq!(rows(array, 257), rows(&source[name], 257));
            }
            "embeddings.positions.weight" => {
                assert_eq!(rows(array, 16), rows(&source[name], 16));
                assert_eq!(array.values[16 * 16..], before[name].values[16 * 16..]);
            }
            n if n.starts_with("encoder.") => assert_eq!(array, &source[name], "{n}"),
            // The CLS vector and the head keep the classifier's own initialisation.
            n => assert_eq!(array, &before[name], "{n}"),
        }
    }
}

#[test]
fn an_encoder_of_another_width_is_refused_by_name() {
    let device = Device::flex();
    let (pretrained, _) = models(&device);
    let wide = ModelConfig {
        d_model: 32,
        n_heads: 2,
        d_ff: 32,
        ..ModelConfig::default()
    }
    .init(
        TaskShape {
            vocab_size: 257,
            n_classes: 2,
            max_len: 16,
            paired: false,
        },
        &device,
    )
    .unwrap();
    materialize(&wide);
    let problems = transfer_params(wide, &export_params(&pretrained), &["encoder."])
        .err()
        .unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("encoder.blocks.0.attention.query.weight")),
        "{problems:?}"
    );
}
