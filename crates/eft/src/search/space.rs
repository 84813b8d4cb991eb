//! A search space (a TOML file): the mechanisms a candidate may use with choices for their
//! parameters, and choices or ranges for other config fields; the genomes drawn from it, their
//! one-change mutations, and the run configs they make.
//!
//! ```toml
//! [mechanisms]
//! full = {}
//! local = { block = [8, 16, 32] }
//!
//! [fields]
//! "model.n_layers" = { low = 1, high = 4 }
//! "model.d_model" = [32, 64]
//! ffn_ratio = [1, 2, 4]              # model.d_ff = ffn_ratio × model.d_model
//! "model.share" = ["none", "all"]
//! ```

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use eft_attention::AttentionConfig;
use eft_train::{RunConfig, layered_with};
use rand::Rng;
use serde::Deserialize;

/// The gene naming the mechanism; its parameters are genes `mechanism.<param>`.
pub const MECHANISM: &str = "mechanism";

/// The derived field setting `model.d_ff` to a multiple of `model.d_model`.
pub const FFN_RATIO: &str = "ffn_ratio";

/// Tries a mutation or a draw makes before giving up on a valid candidate.
const TRIES: usize = 200;

/// The values one gene may take.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// One of these.
    Choices(Vec<toml::Value>),
    /// An integer in `low..=high`.
    Range {
        /// Smallest value.
        low: i64,
        /// Largest value.
        high: i64,
    },
}

impl Values {
    fn read(entry: &str, value: &toml::Value) -> anyhow::Result<Self> {
        match value {
            toml::Value::Array(choices) if choices.is_empty() => {
                bail!("space entry `{entry}` has no choices: list at least one value, or remove it")
            }
            toml::Value::Array(choices) => Ok(Self::Choices(choices.clone())),
            toml::Value::Table(t) if t.contains_key("low") || t.contains_key("high") => {
                let bound = |k: &str| {
                    t.get(k).and_then(toml::Value::as_integer).with_context(|| {
                        format!(
                            "space entry `{entry}`: a range needs integer `low` and `high`, e.g. \
                             {{ low = 1, high = 4 }}"
                        )
                    })
                };
                let (low, high) = (bound("low")?, bound("high")?);
                if low > high {
                    bail!("space entry `{entry}`: low = {low} is above high = {high}; swap them");
                }
                Ok(Self::Range { low, high })
            }
            other => bail!(
                "space entry `{entry}` = {other}: give a list of choices [a, b, …] or a range \
                 {{ low = …, high = … }}"
            ),
        }
    }

    /// How many values there are.
    fn len(&self) -> usize {
        match self {
            Self::Choices(c) => c.len(),
            Self::Range { low, high } => (high - low + 1) as usize,
        }
    }

    /// Value `i` of [`Self::len`].
    fn get(&self, i: usize) -> toml::Value {
        match self {
            Self::Choices(c) => c[i].clone(),
            Self::Range { low, .. } => toml::Value::Integer(low + i as i64),
        }
    }

    fn draw(&self, rng: &mut impl Rng) -> toml::Value {
        self.get(rng.random_range(0..self.len()))
    }

    /// Another value than `current`, if there is one.
    fn other(&self, current: &toml::Value, rng: &mut impl Rng) -> Option<toml::Value> {
        let others: Vec<toml::Value> = (0..self.len())
            .map(|i| self.get(i))
            .filter(|v| v != current)
            .collect();
        (!others.is_empty()).then(|| others[rng.random_range(0..others.len())].clone())
    }
}

/// A candidate: one value per gene (the mechanism, its parameters, the space's fields).
pub type Genome = BTreeMap<String, toml::Value>;

/// The space read from its file.
#[derive(Debug, Clone)]
pub struct Space {
    /// Each mechanism and the values of each of its parameters.
    pub mechanisms: BTreeMap<String, BTreeMap<String, Values>>,
    /// Other fields (dotted config paths, or [`FFN_RATIO`]) and their values.
    pub fields: BTreeMap<String, Values>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpaceFile {
    mechanisms: toml::Table,
    #[serde(default)]
    fields: toml::Table,
}

impl Space {
    /// Reads and checks a space file's text against `base` (the task's config): every entry
    /// must name a field the config has and each value must fit it.
    pub fn parse(text: &str, base: &RunConfig) -> anyhow::Result<Self> {
        let file: SpaceFile = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{}: a space has [mechanisms] and [fields] tables",
                e.message().trim()
            )
        })?;
        if file.mechanisms.is_empty() {
            bail!("[mechanisms] is empty: list at least one, e.g. full = {{}}");
        }
        let mut mechanisms = BTreeMap::new();
        for (name, params) in &file.mechanisms {
            let table = params.as_table().with_context(|| {
                format!("space entry `mechanisms.{name}`: give a table of parameter choices")
            })?;
            let mut values = BTreeMap::new();
            for (param, v) in table {
                let entry = format!("mechanisms.{name}.{param}");
                let v = Values::read(&entry, v)?;
                for i in 0..v.len() {
                    let given = [(param.clone(), text_of(&v.get(i)))];
                    AttentionConfig::from_name_and_params(name, &given)
                        .with_context(|| format!("space entry `{entry}`"))?;
                }
                values.insert(param.clone(), v);
            }
            AttentionConfig::from_name_and_params(name, &[])
                .with_context(|| format!("space entry `mechanisms.{name}`"))?;
            mechanisms.insert(name.clone(), values);
        }
        let mut fields = BTreeMap::new();
        for (key, v) in &file.fields {
            let entry = format!("fields.\"{key}\"");
            if key == MECHANISM || key.starts_with("mechanism.") || key == "model.attention" {
                bail!("space entry `{entry}`: mechanisms and their parameters go in [mechanisms]");
            }
            let v = Values::read(&entry, v)?;
            for i in 0..v.len() {
                let value = v.get(i);
                let checked = match key.as_str() {
                    FFN_RATIO => match value.as_integer() {
                        Some(r) if r >= 1 => Ok(()),
                        _ => Err(anyhow::anyhow!("ffn_ratio values are integers from 1")),
                    },
                    _ => layered_with(base, None, &[(key.clone(), value.clone())], &[])
                        .map(|_| ())
                        .map_err(anyhow::Error::from),
                };
                checked.with_context(|| format!("space entry `{entry}` = {value}"))?;
            }
            fields.insert(key.clone(), v);
        }
        Ok(Self { mechanisms, fields })
    }

    /// A genome drawn uniformly, valid or not.
    fn draw(&self, rng: &mut impl Rng) -> Genome {
        let names: Vec<&String> = self.mechanisms.keys().collect();
        let name = names[rng.random_range(0..names.len())].clone();
        let mut genome = Genome::new();
        genome.insert(MECHANISM.into(), toml::Value::String(name.clone()));
        for (param, v) in &self.mechanisms[&name] {
            genome.insert(format!("{MECHANISM}.{param}"), v.draw(rng));
        }
        for (key, v) in &self.fields {
            genome.insert(key.clone(), v.draw(rng));
        }
        genome
    }

    /// A valid genome drawn uniformly (by rejection): `None` if [`TRIES`] draws find none.
    pub fn sample(&self, base: &RunConfig, rng: &mut impl Rng) -> Option<Genome> {
        (0..TRIES)
            .map(|_| self.draw(rng))
            .find(|g| self.config(base, g).is_ok())
    }

    /// `parent` with one gene changed (the mechanism, with fresh parameters; one of its
    /// parameters; or one field), valid: `None` if [`TRIES`] attempts find no valid change.
    pub fn mutate(&self, base: &RunConfig, parent: &Genome, rng: &mut impl Rng) -> Option<Genome> {
        let genes: Vec<String> = parent
            .keys()
            .filter(|g| self.values_of(parent, g).is_some_and(|v| v.len() > 1))
            .cloned()
            .collect();
        if genes.is_empty() {
            return None;
        }
        for _ in 0..TRIES {
            let gene = &genes[rng.random_range(0..genes.len())];
            let values = self.values_of(parent, gene).expect("listed above");
            let Some(value) = values.other(&parent[gene], rng) else {
                continue;
            };
            let mut child = parent.clone();
            if gene == MECHANISM {
                child.retain(|k, _| !k.starts_with("mechanism."));
                let name = value.as_str().expect("mechanism names are strings");
                for (param, v) in &self.mechanisms[name] {
                    child.insert(format!("{MECHANISM}.{param}"), v.draw(rng));
                }
            }
            child.insert(gene.clone(), value);
            if self.config(base, &child).is_ok() {
                return Some(child);
            }
        }
        None
    }

    /// The values gene `gene` of `genome` may take.
    fn values_of(&self, genome: &Genome, gene: &str) -> Option<Values> {
        if gene == MECHANISM {
            let names = self.mechanisms.keys().cloned().map(toml::Value::String);
            return Some(Values::Choices(names.collect()));
        }
        if let Some(param) = gene.strip_prefix("mechanism.") {
            let name = genome.get(MECHANISM)?.as_str()?;
            return self.mechanisms.get(name)?.get(param).cloned();
        }
        self.fields.get(gene).cloned()
    }

    /// The run config of `genome` on `base`, checked as `eft train` checks it before training.
    pub fn config(&self, base: &RunConfig, genome: &Genome) -> anyhow::Result<RunConfig> {
        let name = genome
            .get(MECHANISM)
            .and_then(toml::Value::as_str)
            .context("a genome names its mechanism")?;
        let params: Vec<(String, String)> = genome
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("mechanism.")?.to_string(), text_of(v))))
            .collect();
        let attention = AttentionConfig::from_name_and_params(name, &params)?;
        let values: Vec<(String, toml::Value)> = genome
            .iter()
            .filter(|(k, _)| k.as_str() != MECHANISM && !k.starts_with("mechanism."))
            .filter(|(k, _)| k.as_str() != FFN_RATIO)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut config = layered_with(base, None, &values, &[])?;
        config.model.attention = attention;
        if let Some(ratio) = genome.get(FFN_RATIO).and_then(toml::Value::as_integer) {
            config.model.d_ff = ratio as usize * config.model.d_model;
        }
        config.validate()?;
        eft_train::preflight(&config)?;
        Ok(config)
    }
}

/// A TOML value as `key=value` text takes it (strings without quotes).
fn text_of(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A genome as one short line: `local block=16 L2 d64 h4 ff×2 share=all switch`.
pub fn describe(genome: &Genome) -> String {
    let mut parts = vec![genome.get(MECHANISM).map_or("?".into(), text_of)];
    for (key, value) in genome.iter().filter(|(k, _)| k.as_str() != MECHANISM) {
        let v = text_of(value);
        parts.push(match key.as_str() {
            "model.n_layers" => format!("L{v}"),
            "model.d_model" => format!("d{v}"),
            "model.n_heads" => format!("h{v}"),
            FFN_RATIO => format!("ff×{v}"),
            // Tables by their kind (a Switch layer with its experts).
            _ if value.is_table() => {
                let kind = value.get("kind").map_or("?".into(), text_of);
                match value.get("experts") {
                    Some(e) => format!("{kind}×{}", text_of(e)),
                    None => kind,
                }
            }
            _ => format!(
                "{}={v}",
                key.trim_start_matches("mechanism.")
                    .trim_start_matches("model.")
            ),
        });
    }
    parts.join(" ")
}

/// The space shipped with eft (every task): the quick arena's families and the general
/// techniques, at the quick model's scale.
pub const DEFAULT_SPACE: &str = include_str!("default_space.toml");

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn base() -> RunConfig {
        eft_train::preset("listops", "quick").unwrap()
    }

    fn space() -> Space {
        Space::parse(DEFAULT_SPACE, &base()).unwrap()
    }

    /// The genes whose values differ between two genomes.
    fn changed(a: &Genome, b: &Genome) -> Vec<String> {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        keys.into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// From any seed, a drawn candidate and its mutation pass every check the run config
        /// makes, and the mutation changes one gene (a new mechanism brings its own parameters).
        #[test]
        fn mutation_keeps_every_constraint(seed in any::<u64>()) {
            let (space, base) = (space(), base());
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let parent = space.sample(&base, &mut rng).expect("the default space has candidates");
            prop_assert!(space.config(&base, &parent).is_ok());
            let child = space.mutate(&base, &parent, &mut rng).expect("a valid mutation");
            let config = space.config(&base, &child);
            prop_assert!(config.is_ok(), "{:?}", config.err());
            let genes = changed(&parent, &child);
            let fields: Vec<&String> = genes.iter().filter(|g| !g.starts_with("mechanism")).collect();
            prop_assert!(!genes.is_empty(), "nothing changed");
            if genes.iter().any(|g| g == MECHANISM) {
                prop_assert!(fields.is_empty(), "{genes:?}");
            } else {
                prop_assert_eq!(genes.len(), 1, "{:?}", genes);
            }
        }
    }

    #[test]
    fn mutations_reach_every_kind_of_gene() {
        let (space, base) = (space(), base());
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut seen = std::collections::BTreeSet::new();
        let mut genome = space.sample(&base, &mut rng).unwrap();
        for _ in 0..300 {
            let child = space.mutate(&base, &genome, &mut rng).unwrap();
            seen.extend(changed(&genome, &child));
            genome = child;
        }
        for gene in [
            MECHANISM,
            "model.n_layers",
            "model.d_model",
            "model.n_heads",
            FFN_RATIO,
            "model.share",
            "model.residual",
            "model.recompute",
            "model.feed_forward",
        ] {
            assert!(seen.contains(gene), "{gene} never mutated: {seen:?}");
        }
    }

    #[test]
    fn bad_spaces_are_refused_naming_the_entry() {
        let refused = |text: &str, says: &[&str]| {
            let e = format!("{:#}", Space::parse(text, &base()).unwrap_err());
            for s in says {
                assert!(e.contains(s), "`{e}` should say `{s}`");
            }
        };
        refused(
            "[mechanisms]\nfull = {}\n[fields]\n\"model.n_layers\" = []\n",
            &["fields.\"model.n_layers\"", "no choices"],
        );
        refused(
            "[mechanisms]\nfull = {}\n[fields]\n\"model.n_layers\" = { low = 4, high = 1 }\n",
            &["low = 4 is above high = 1"],
        );
        refused(
            "[mechanisms]\nfull = {}\n[fields]\n\"model.d_modle\" = [32]\n",
            &["fields.\"model.d_modle\"", "d_modle"],
        );
        refused(
            "[mechanisms]\nlocal = { blok = [8] }\n",
            &["mechanisms.local.blok"],
        );
        refused("[mechanisms]\nfulll = {}\n", &["mechanisms.fulll"]);
        refused("[mechanisms]\n", &["[mechanisms] is empty"]);
        refused(
            "[mechanisms]\nfull = {}\n[fields]\nffn_ratio = [0]\n",
            &["ffn_ratio"],
        );
        refused("[mechanism]\nfull = {}\n", &["[mechanisms]"]);
    }
}
