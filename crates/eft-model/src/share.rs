//! Parameter sharing across depth: one set of block weights used at several depths (ALBERT's
//! all-layer sharing, and Takase & Kiyono's cycle and sequence patterns), truly tied: one
//! parameter per tensor, so autodiff sums its gradients over the depths that use it and the
//! optimiser updates it once.

use crate::toml_form::{self, Form};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which block each depth runs. TOML `model.share`: `"none"` (default), `"all"`,
/// `{ cycle = k }` or `{ sequence = k }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Share {
    /// Every depth has its own block.
    #[default]
    None,
    /// One block for every depth (ALBERT).
    All,
    /// `k` blocks used in turn: depth `i` runs block `i mod k` (1 2 3 1 2 3 for k = 3).
    Cycle(usize),
    /// `k` blocks, each for `n_layers / k` consecutive depths (1 1 2 2 3 3 for k = 3, 6 layers).
    Sequence(usize),
}

const EXPECTED: &str = "\"none\", \"all\", { cycle = k } or { sequence = k }";

impl Share {
    /// Distinct blocks for `n_layers` depths.
    pub fn blocks(self, n_layers: usize) -> usize {
        match self {
            Share::None => n_layers,
            Share::All => 1,
            Share::Cycle(k) | Share::Sequence(k) => k,
        }
    }

    /// The block run at `depth` of `n_layers`.
    pub fn block_at(self, depth: usize, n_layers: usize) -> usize {
        match self {
            Share::None => depth,
            Share::All => 0,
            Share::Cycle(k) => depth % k,
            Share::Sequence(k) => depth / (n_layers / k),
        }
    }

    /// Whether `depth` is the first depth to run its block (the one whose layout builds it).
    pub fn owns(self, depth: usize, n_layers: usize) -> bool {
        match self {
            Share::None => true,
            Share::All => depth == 0,
            Share::Cycle(k) => depth < k,
            Share::Sequence(k) => depth.is_multiple_of(n_layers / k),
        }
    }

    /// Why this pattern cannot tie `n_layers` depths, if it cannot.
    pub fn problem(self, n_layers: usize) -> Option<String> {
        match self {
            Share::Cycle(0) | Share::Sequence(0) => Some("k must be at least 1".into()),
            Share::Cycle(k) | Share::Sequence(k) if !n_layers.is_multiple_of(k) => Some(format!(
                "k = {k} must divide model.n_layers = {n_layers}, so every block runs equally often"
            )),
            _ => None,
        }
    }
}

impl std::fmt::Display for Share {
    /// As TOML writes the value: `none`, `all`, `{ cycle = k }`, `{ sequence = k }`.
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Share::None => f.write_str("none"),
            Share::All => f.write_str("all"),
            Share::Cycle(k) => write!(f, "{{ cycle = {k} }}"),
            Share::Sequence(k) => write!(f, "{{ sequence = {k} }}"),
        }
    }
}

impl Serialize for Share {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        toml_form::serialize(
            s,
            match *self {
                Share::None => Form::Name("none"),
                Share::All => Form::Name("all"),
                Share::Cycle(k) => Form::Entry("cycle", k),
                Share::Sequence(k) => Form::Entry("sequence", k),
            },
        )
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        toml_form::deserialize(d, "model.share", EXPECTED, |form| match form {
            Form::Name("none") => Some(Share::None),
            Form::Name("all") => Some(Share::All),
            Form::Entry("cycle", k) => Some(Share::Cycle(k)),
            Form::Entry("sequence", k) => Some(Share::Sequence(k)),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_map_depths_to_blocks() {
        let at = |s: Share, n| (0..n).map(|d| s.block_at(d, n)).collect::<Vec<_>>();
        assert_eq!(at(Share::None, 4), [0, 1, 2, 3]);
        assert_eq!(at(Share::All, 4), [0, 0, 0, 0]);
        assert_eq!(at(Share::Cycle(3), 6), [0, 1, 2, 0, 1, 2]);
        assert_eq!(at(Share::Sequence(3), 6), [0, 0, 1, 1, 2, 2]);
        assert_eq!(Share::Cycle(3).blocks(6), 3);
        let owners = |s: Share, n| (0..n).filter(|&d| s.owns(d, n)).collect::<Vec<_>>();
        assert_eq!(owners(Share::Cycle(3), 6), [0, 1, 2]);
        assert_eq!(owners(Share::Sequence(3), 6), [0, 2, 4]);
        assert_eq!(owners(Share::All, 6), [0]);
        assert!(Share::Cycle(4).problem(6).unwrap().contains("divide"));
        assert!(Share::Sequence(0).problem(6).is_some());
        assert_eq!(Share::Cycle(2).to_string(), "{ cycle = 2 }");
        assert_eq!(Share::All.to_string(), "all");
    }

    #[test]
    fn reads_and_writes_its_toml_forms() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct M {
            share: Share,
        }
        for (text, want) in [
            ("share = \"none\"", Share::None),
            ("share = \"all\"", Share::All),
            ("share = { cycle = 2 }", Share::Cycle(2)),
            ("share = { sequence = 4 }", Share::Sequence(4)),
        ] {
            let m: M = toml::from_str(text).unwrap();
            assert_eq!(m.share, want);
            assert_eq!(
                toml::from_str::<M>(&toml::to_string(&m).unwrap()).unwrap(),
                m
            );
        }
        let e = toml::from_str::<M>("share = \"some\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cycle = k"), "{e}");
        let e = toml::from_str::<M>("share = { ring = 2 }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sequence = k"), "{e}");
    }
}
