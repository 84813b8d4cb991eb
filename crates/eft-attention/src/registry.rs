//! The one list of mechanisms. Each line names a mechanism, its config and its module; the macro
//! generates the config enum (serde tag `kind`), the module enum that burn's `derive(Module)`
//! needs, [`AttentionConfig::NAMES`] and every dispatch. Adding a mechanism is one file and one
//! line here.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::mechanism::out_of_range;
use crate::*;

macro_rules! mechanisms {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $config:ty => $module:ty; )*) => {
        /// Which attention mechanism a layer uses, with its parameters.
        ///
        /// In TOML: `attention = { kind = "full" }`; parameters sit beside `kind`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind")]
        #[non_exhaustive]
        pub enum AttentionConfig {
            $( $(#[$doc])* #[serde(rename = $name)] $variant($config), )*
        }

        /// An initialised attention mechanism; built from an [`AttentionConfig`].
        ///
        /// Nothing above this type knows which mechanism runs: the model calls
        /// [`Attention::forward`] and the meter calls [`Attention::cost`].
        // One value per layer, built once: the size gap between variants costs nothing worth
        // boxing for.
        #[allow(clippy::large_enum_variant)]
        #[derive(Module, Debug)]
        #[non_exhaustive]
        pub enum Attention {
            $( $(#[$doc])* $variant($module), )*
        }

        impl AttentionConfig {
            /// The names accepted for `kind`, in the registry's order.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// The mechanism's config name.
            pub fn name(&self) -> &'static str {
                match self { $(Self::$variant(_) => $name,)* }
            }

            /// Checks every parameter against its range; says which one is wrong and what would do.
            pub fn validate(&self) -> Result<(), AttentionError> {
                match self { $(Self::$variant(c) => c.validate(),)* }
            }

            /// Checks the parameters against a concrete sequence length and head count, strictly:
            /// a window, block or position that the length cannot hold is an error here (at run
            /// time the mechanisms cap them to shorter batches instead).
            pub fn check_shape(&self, len: usize, heads: usize) -> Result<(), AttentionError> {
                self.validate()?;
                match self { $(Self::$variant(c) => c.check_shape(len, heads),)* }
            }

            /// Checks an input's shape before a call: no dimension may be zero, then
            /// [`check_shape`](Self::check_shape) at its length and heads.
            pub fn check_input(&self, shape: AttentionShape) -> Result<(), AttentionError> {
                let dims = [
                    ("batch", shape.batch),
                    ("heads", shape.heads),
                    ("len", shape.len),
                    ("head_dim", shape.head_dim),
                ];
                if let Some((dim, _)) = dims.into_iter().find(|(_, n)| *n == 0) {
                    return Err(AttentionError::EmptyInput { dim });
                }
                self.check_shape(shape.len, shape.heads)
            }

            /// A lower bound on the floats one layer allocates when built; see
            /// [`MechanismConfig::floats_at_least`].
            pub fn floats_at_least(&self, layout: AttentionLayout) -> u64 {
                match self { $(Self::$variant(c) => c.floats_at_least(layout),)* }
            }

            /// Whether the mechanism defines a causal form.
            pub fn supports_causal(&self) -> bool {
                match self { $(Self::$variant(c) => c.supports_causal(),)* }
            }

            /// [`MechanismConfig::causal_leak`].
            pub fn causal_leak(&self) -> Option<&'static str> {
                match self { $(Self::$variant(c) => c.causal_leak(),)* }
            }

            /// The segment recurrence this mechanism asks the encoder for, if any.
            pub fn recurrence(&self) -> Option<Recurrence> {
                match self { $(Self::$variant(c) => c.recurrence(),)* }
            }

            /// Builds the mechanism for one layer; learned parameters are drawn from `device`'s
            /// generator and sized by `layout`.
            pub fn init(&self, layout: AttentionLayout, device: &Device) -> Attention {
                match self { $(Self::$variant(c) => Attention::$variant(c.init(layout, device)),)* }
            }
        }

        impl Attention {
            /// The mechanism's config name.
            pub fn name(&self) -> &'static str {
                match self { $(Self::$variant(_) => $name,)* }
            }

            /// The running mechanism, whichever it is.
            pub fn mechanism(&self) -> &dyn Mechanism {
                match self { $(Self::$variant(m) => m,)* }
            }

            /// The mechanism as it should be at training step `step` (see [`Mechanism::at_step`]).
            pub fn at_step(self, step: usize) -> Self {
                match self { $(Self::$variant(m) => Self::$variant(m.at_step(step)),)* }
            }
        }

        impl AttentionConfig {
            /// Whether the config ties a parameter across the layers that use it (Linformer's
            /// `share = "layerwise"`).
            pub fn shares_across_layers(&self) -> bool {
                matches!(self, Self::Linformer(c) if c.share == crate::LinformerShare::Layerwise)
            }

            /// The parameter an encoder owns and lends to every layer of this mechanism, when
            /// the config ties one across layers (Linformer's `share = "layerwise"`).
            pub fn layer_shared(
                &self,
                layout: AttentionLayout,
                device: &Device,
            ) -> Option<burn::module::Param<Tensor<3>>> {
                match self {
                    Self::Linformer(c) => c.layerwise_projection(layout, device),
                    _ => None,
                }
            }
        }

        impl Attention {
            /// The mechanism running on the parameter its encoder shares across layers (see
            /// [`AttentionConfig::layer_shared`]); other mechanisms are returned unchanged.
            pub fn with_layer_shared(self, shared: burn::module::Param<Tensor<3>>) -> Self {
                match self {
                    Self::Linformer(m) => Self::Linformer(m.with_projection(shared)),
                    other => other,
                }
            }
        }
    };
}

mechanisms! {
    /// Dense softmax attention.
    Full = "full", FullConfig => FullAttention;
    /// Exact attention in tiles, O(N) memory.
    Flash = "flash", FlashConfig => FlashAttention;
    /// Non-overlapping blocks.
    Local = "local", LocalConfig => LocalAttention;
    /// Sliding window.
    Sliding = "sliding", SlidingConfig => SlidingAttention;
    /// Sparse Transformer, strided.
    Strided = "strided", StridedConfig => StridedAttention;
    /// Sparse Transformer, fixed.
    Fixed = "fixed", FixedConfig => FixedAttention;
    /// Sliding window widening with depth; one layer of it is a sliding window of that width.
    Cascade = "cascade", CascadeConfig => SlidingAttention;
    /// Per-head block permutations.
    BlockBert = "blockbert", BlockBertConfig => BlockBertAttention;
    /// Dilated window plus global positions.
    Longformer = "longformer", LongformerConfig => LongformerAttention;
    /// Window, global and random blocks.
    BigBird = "bigbird", BigBirdConfig => BigBirdAttention;
    /// Kernel attention with `elu + 1` features, O(N·D²).
    Linear = "linear", LinearConfig => LinearAttention;
    /// FAVOR+ random-feature attention.
    Performer = "performer", PerformerConfig => PerformerAttention;
    /// Length-projected keys and values.
    Linformer = "linformer", LinformerConfig => LinformerAttention;
    /// Synthesised attention weights.
    Synthesizer = "synthesizer", SynthesizerConfig => SynthesizerAttention;
    /// Landmark (Nyström) approximation of softmax attention.
    Nystrom = "nystrom", NystromConfig => NystromAttention;
    /// Reformer's locality-sensitive-hashing attention.
    Lsh = "lsh", LshConfig => LshAttention;
    /// Learned block sorting.
    Sinkhorn = "sinkhorn", SinkhornConfig => SinkhornAttention;
    /// Relative attention with segment memory.
    Xl = "xl", XlConfig => XlAttention;
    /// Linear attention with ReLU features and cosine re-weighting (cosFormer).
    Cosformer = "cosformer", CosformerConfig => CosformerAttention;
}

impl Default for AttentionConfig {
    fn default() -> Self {
        AttentionConfig::Full(FullConfig::default())
    }
}

impl AttentionConfig {
    /// Builds a config from a name and `key=value` parameters, as the command line gives them.
    ///
    /// Values are read as TOML scalars (`3`, `0.5`, `true`), falling back to strings, so the same
    /// field names and types apply as in a config file.
    pub fn from_name_and_params(
        name: &str,
        params: &[(String, String)],
    ) -> Result<Self, AttentionError> {
        let mut table = toml::Table::new();
        table.insert("kind".into(), toml::Value::String(name.to_string()));
        for (key, raw) in params {
            table.insert(key.clone(), toml_scalar(raw));
        }
        let config: AttentionConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| AttentionError::OutOfRange {
                    field: "attention",
                    value: name.to_string(),
                    fix: format!(
                        "{}; known mechanisms: {}",
                        e.message().trim(),
                        Self::NAMES.join(", ")
                    ),
                })?;
        config.validate()?;
        Ok(config)
    }

    /// Mechanism `name` with the given parameters, checked, as a TOML table holding `kind` and
    /// those parameters only (typed), for layering over a config without resetting the others.
    pub fn named_table(
        name: &str,
        params: &[(String, String)],
    ) -> Result<toml::Value, AttentionError> {
        Ok(Self::from_name_and_params(name, params)?.given_table(params))
    }

    /// This config as a TOML table of `kind` and the parameters named in `params` (see
    /// [`AttentionConfig::named_table`]).
    pub fn given_table(&self, params: &[(String, String)]) -> toml::Value {
        let mut table = match toml::Value::try_from(self) {
            Ok(toml::Value::Table(t)) => t,
            _ => unreachable!("a mechanism config serialises to a table"),
        };
        table.retain(|k, _| k == "kind" || params.iter().any(|(p, _)| p == k));
        toml::Value::Table(table)
    }

    /// Whether mechanism `name` takes a parameter called `key` (e.g. `seed`).
    pub fn has_param(name: &str, key: &str) -> bool {
        Self::from_name_and_params(name, &[])
            .ok()
            .and_then(|c| toml::Value::try_from(c).ok())
            .is_some_and(|v| v.get(key).is_some())
    }

    /// Rejects a causal request for a mechanism without a causal form.
    pub fn check_causal(&self, causal: bool) -> Result<(), AttentionError> {
        if causal && !self.supports_causal() {
            return Err(out_of_range(
                "causal",
                true,
                format!(
                    "`{}` has no causal form; drop causal or pick another mechanism",
                    self.name()
                ),
            ));
        }
        Ok(())
    }
}

impl Attention {
    /// Runs the mechanism.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`]
    /// - output: `[B, H, N, D]`
    ///
    /// # Panics
    /// Panics when `input` carries memory and the mechanism does not read memory: the model only
    /// builds memory for layers that recur, so anything else is a caller's bug.
    pub fn forward(&self, input: AttentionInput) -> Tensor<4> {
        let mechanism = self.mechanism();
        assert!(
            input.memory.is_none() || mechanism.reads_memory(),
            "this mechanism does not read memory; do not pass memory to it"
        );
        mechanism.forward(input)
    }

    /// The sparse mechanisms' common interface; `None` for the dense ones.
    pub fn patterned(&self) -> Option<&dyn Patterned> {
        self.mechanism().patterned()
    }

    /// The segment recurrence this layer runs under, if any.
    pub fn recurrence(&self) -> Option<Recurrence> {
        self.mechanism().recurrence()
    }

    /// Analytic FLOPs and saved bytes for one call at `shape`.
    pub fn cost(&self, shape: AttentionShape) -> AttentionCost {
        self.mechanism().cost(shape)
    }
}

/// Reads a command-line value as TOML (`3`, `0.5`, `true`, `[1, 2]`, `{ kind = "x" }`), and as a
/// plain string when it is not valid TOML, so `--param global=0,40` and `name=mine` need no quotes.
pub fn toml_scalar(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_full_from_its_name() {
        let c = AttentionConfig::from_name_and_params("full", &[]).unwrap();
        assert_eq!(c, AttentionConfig::Full(FullConfig {}));
        assert!(c.supports_causal());
    }

    #[test]
    fn every_name_builds_with_defaults() {
        for name in AttentionConfig::NAMES {
            let c = AttentionConfig::from_name_and_params(name, &[]).unwrap();
            assert_eq!(c.name(), *name);
        }
    }

    /// A config's slot: the position of its name in NAMES (each built config names itself).
    fn slot(c: &AttentionConfig) -> usize {
        AttentionConfig::NAMES
            .iter()
            .position(|n| *n == c.name())
            .expect("every config's name is listed")
    }

    #[test]
    fn names_list_every_mechanism_once() {
        let mut slots: Vec<usize> = AttentionConfig::NAMES
            .iter()
            .map(|n| slot(&AttentionConfig::from_name_and_params(n, &[]).unwrap()))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots, (0..AttentionConfig::NAMES.len()).collect::<Vec<_>>());
    }

    /// The table a chosen mechanism is layered with holds its kind and the given parameters,
    /// typed, and nothing else, so parameters set elsewhere for the same kind survive.
    #[test]
    fn named_tables_hold_kind_and_given_parameters_typed() {
        let t = AttentionConfig::named_table("lsh", &[("chunk".into(), "8".into())]).unwrap();
        let t = t.as_table().unwrap();
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!(t["kind"].as_str(), Some("lsh"));
        assert_eq!(t["chunk"].as_integer(), Some(8));
        assert!(AttentionConfig::named_table("lsh", &[("buckets".into(), "3".into())]).is_err());
    }

    #[test]
    fn unknown_mechanism_names_the_choices() {
        let e = AttentionConfig::from_name_and_params("fulll", &[]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("fulll") && msg.contains("bigbird"), "{msg}");
    }

    #[test]
    fn unknown_parameter_is_rejected() {
        let e = AttentionConfig::from_name_and_params("full", &[("block".into(), "4".into())])
            .unwrap_err();
        assert!(e.to_string().contains("block"), "{e}");
    }

    #[test]
    fn out_of_range_parameters_name_the_field() {
        let p = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let e = |name, params: Vec<(String, String)>| {
            AttentionConfig::from_name_and_params(name, &params)
                .unwrap_err()
                .to_string()
        };
        assert!(e("local", p("block", "0")).contains("block"));
        assert!(e("strided", p("stride", "1")).contains("stride"));
        assert!(e("fixed", p("summary", "60")).contains("summary"));
        assert!(e("cascade", p("growth", "0.5")).contains("growth"));
        assert!(e("longformer", p("global", "0,x")).contains("global"));
        assert!(e("lsh", p("buckets", "3")).contains("even"));
        assert!(e("nystrom", p("conv_kernel", "4")).contains("odd"));
        let c = AttentionConfig::from_name_and_params("lsh", &p("chunk", "40")).unwrap();
        assert!(
            c.check_shape(32, 4)
                .unwrap_err()
                .to_string()
                .contains("chunk")
        );
        let c = AttentionConfig::from_name_and_params("sliding", &p("window", "40")).unwrap();
        assert!(
            c.check_shape(32, 4)
                .unwrap_err()
                .to_string()
                .contains("sequence length 32")
        );
        let c = AttentionConfig::from_name_and_params("longformer", &p("global", "0,40")).unwrap();
        assert!(
            c.check_shape(32, 4)
                .unwrap_err()
                .to_string()
                .contains("global")
        );
        c.check_shape(64, 4).unwrap();
        let c = AttentionConfig::from_name_and_params("strided", &p("stride", "4")).unwrap();
        assert!(
            c.check_shape(32, 1)
                .unwrap_err()
                .to_string()
                .contains("2 heads")
        );
    }

    #[test]
    fn learned_mechanisms_refuse_lengths_beyond_their_max_len() {
        let p = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        for name in ["linformer", "synthesizer"] {
            let c = AttentionConfig::from_name_and_params(name, &p("max_len", "32")).unwrap();
            c.check_shape(32, 4).unwrap();
            let e = c.check_shape(33, 4).unwrap_err().to_string();
            assert!(e.contains("max_len") && e.contains("33"), "{e}");
        }
        let e = AttentionConfig::from_name_and_params("synthesizer", &p("frozen", "true"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("frozen"), "{e}");
        assert!(
            !AttentionConfig::from_name_and_params("linformer", &[])
                .unwrap()
                .supports_causal()
        );
        assert!(AttentionConfig::has_param("performer", "seed"));
        assert!(!AttentionConfig::has_param("linformer", "seed"));
    }

    #[test]
    fn global_positions_read_from_text_lists_and_numbers() {
        let g = |raw: &str| match AttentionConfig::from_name_and_params(
            "longformer",
            &[("global".into(), raw.into())],
        )
        .unwrap()
        {
            AttentionConfig::Longformer(c) => c.global,
            _ => unreachable!(),
        };
        assert_eq!(g("0,40"), vec![0, 40]);
        assert_eq!(g("[3, 5]"), vec![3, 5]);
        assert_eq!(g("7"), vec![7]);
    }

    #[test]
    fn causal_support_is_declared() {
        let causal = |n| {
            AttentionConfig::from_name_and_params(n, &[])
                .unwrap()
                .supports_causal()
        };
        assert!(causal("local") && causal("sliding") && causal("longformer"));
        assert!(!causal("blockbert") && !causal("bigbird"));
        assert!(causal("sinkhorn") && causal("lsh") && !causal("nystrom"));
        let sortcut =
            AttentionConfig::from_name_and_params("sinkhorn", &[("sortcut".into(), "2".into())])
                .unwrap();
        assert!(
            sortcut
                .check_causal(true)
                .unwrap_err()
                .to_string()
                .contains("causal")
        );
    }

    #[test]
    fn command_line_values_read_as_toml_or_text() {
        assert_eq!(toml_scalar("3"), toml::Value::Integer(3));
        assert_eq!(toml_scalar("true"), toml::Value::Boolean(true));
        assert_eq!(toml_scalar("0,40"), toml::Value::String("0,40".into()));
        assert_eq!(toml_scalar("mine"), toml::Value::String("mine".into()));
    }

    #[test]
    fn toml_round_trip() {
        for name in AttentionConfig::NAMES {
            let c = AttentionConfig::from_name_and_params(name, &[]).unwrap();
            let s = toml::to_string(&c).unwrap();
            assert_eq!(toml::from_str::<AttentionConfig>(&s).unwrap(), c, "{s}");
        }
    }
}
