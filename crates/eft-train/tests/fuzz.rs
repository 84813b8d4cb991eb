//! Hostile input never panics: property tests over the config parser (presets, `--set` layering,
//! validation and the pre-flight size check), the checkpoint reader and the attention parameter
//! and shape checks. CI runs a few hundred cases per target; `bench/fuzz.sh` runs each for as
//! many as it is given (`PROPTEST_CASES`) and records the counts in `bench/results/fuzz.md`.
//! A panic fails the property with the input that caused it, shrunk.

use eft_attention::{AttentionConfig, AttentionShape};
use eft_train::{Checkpoint, PRESETS, RunConfig, fields, layered, preflight, preset};
use proptest::prelude::*;

/// Every settable field path of the listops quick preset, and each mechanism's parameters.
fn field_paths() -> Vec<String> {
    let base = preset("listops", "quick").unwrap();
    let mut paths: Vec<String> = fields::fields(&base).into_iter().map(|f| f.path).collect();
    for (_, mechanism) in fields::mechanism_fields() {
        paths.extend(mechanism.into_iter().map(|f| f.path));
    }
    paths.extend(["model.attention.kind", "task.name", "train.schedule.kind"].map(String::from));
    paths
}

/// Values a hostile user types: extremes, non-numbers, names, lists, inline tables, junk.
fn raw_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<u64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| v.to_string()),
        prop::sample::select(vec![
            "0",
            "-1",
            "1",
            "2",
            "nan",
            "inf",
            "-inf",
            "1e308",
            "1e-320",
            "true",
            "false",
            "\"\"",
            "[]",
            "[0, 1]",
            "{}",
            "{ kind = \"cosine\" }",
            "full",
            "performer",
            "xl",
            "listops",
            "pathx",
            "mean",
            "none",
            "cls",
            "9223372036854775807",
            "18446744073709551616",
            "4294967296",
            "0.5",
            "1.0",
            "-0.0",
            "0,40",
            "\"0,1,2\"",
            "all",
            "every",
            "{ cycle = 3 }",
            "{ sequence = 0 }",
            "{ every = 0 }",
            "{ every = 9223372036854775807 }",
        ])
        .prop_map(String::from),
        "[ -~]{0,12}",
    ]
}

/// A mechanism parameter's name (any mechanism's, so also ones the chosen one lacks), or junk.
fn parameter_name() -> impl Strategy<Value = String> {
    let mut names: Vec<String> = fields::mechanism_fields()
        .into_iter()
        .flat_map(|(_, f)| {
            f.into_iter()
                .map(|f| f.path.replace("model.attention.", ""))
        })
        .collect();
    names.sort();
    names.dedup();
    prop_oneof![4 => prop::sample::select(names), 1 => "[a-z_]{1,14}"]
}

fn overrides(paths: Vec<String>) -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop_oneof![
        4 => prop::sample::select(paths),
        1 => "[a-z_.]{1,20}",
    ];
    prop::collection::vec((key, raw_value()), 0..5)
}

fn config_case() -> impl Strategy<Value = (String, String, Vec<(String, String)>)> {
    let tasks: Vec<&str> = eft_data::TaskConfig::NAMES.to_vec();
    (
        prop::sample::select(tasks).prop_map(String::from),
        prop::sample::select(PRESETS.to_vec()).prop_map(String::from),
        overrides(field_paths()),
    )
}

/// A tiny valid checkpoint's bytes, written once.
fn checkpoint_bytes() -> Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(write_checkpoint).clone()
}

/// The checkpoint those bytes hold.
fn written() -> Checkpoint {
    let array = |n: usize| eft_train::params::NamedArray {
        shape: vec![n],
        values: (0..n).map(|i| i as f32 * 0.25).collect(),
    };
    Checkpoint {
        config: preset("listops", "quick").unwrap(),
        state: Default::default(),
        adam_steps: 3,
        model: [("w".to_string(), array(4))].into(),
        adam: [("m.w".to_string(), array(4)), ("v.w".to_string(), array(4))].into(),
        masks: Default::default(),
    }
}

fn write_checkpoint() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    written().save(&path).unwrap();
    std::fs::read(path).unwrap()
}

fn checkpoint_mutation() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>()), 0..6)
}

proptest! {
    #![proptest_config(eft_data::testing::fuzz_config())]

    /// Any preset with any overrides resolves to a config or a config error, and a config that
    /// resolves passes or fails the pre-flight check: never a panic, an abort or a hang.
    #[test]
    fn config_parsing_never_panics((task, preset_name, sets) in config_case()) {
        let Ok(base) = preset(&task, &preset_name) else { return Ok(()) };
        if let Ok(config) = layered(&base, None, &sets) {
            let _ = preflight(&config);
            let _ = RunConfig::from_toml(&config.to_toml());
        }
    }

    /// A checkpoint with bytes changed, cut short or grown never loads wrong silently and never
    /// panics: it loads only with the contents that were written.
    #[test]
    fn checkpoint_reading_never_panics(
        flips in checkpoint_mutation(),
        cut in any::<Option<usize>>(),
        extra in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        let good = checkpoint_bytes();
        let mut bytes = good.clone();
        for (at, x) in flips {
            let n = bytes.len();
            bytes[at % n] ^= x;
        }
        if let Some(c) = cut {
            bytes.truncate(c % (good.len() + 1));
        }
        bytes.extend(extra);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        // Loading is allowed only where nothing that matters changed (e.g. a tab for a space in
        // the header's JSON padding): the contents must be the written ones.
        if let Ok(c) = Checkpoint::load(&path) {
            let want = written();
            prop_assert_eq!(&c.model, &want.model);
            prop_assert_eq!(&c.adam, &want.adam);
            prop_assert_eq!(&c.state, &want.state);
            prop_assert_eq!(&c.config, &want.config);
            prop_assert_eq!(c.adam_steps, want.adam_steps);
        }
    }

    /// Any mechanism with any parameters either builds a config or names the parameter; the
    /// shape check of a config that builds says yes or no for any shape.
    #[test]
    fn attention_parameters_and_shapes_never_panic(
        name in prop::sample::select(AttentionConfig::NAMES.to_vec()),
        params in prop::collection::vec((parameter_name(), raw_value()), 0..4),
        dims in prop::array::uniform4(prop_oneof![
            Just(0usize), 1usize..70, Just(usize::MAX), any::<usize>()
        ]),
    ) {
        if let Ok(config) = AttentionConfig::from_name_and_params(name, &params) {
            let [batch, heads, len, head_dim] = dims;
            let _ = config.check_input(AttentionShape { batch, heads, len, head_dim });
        }
    }
}
