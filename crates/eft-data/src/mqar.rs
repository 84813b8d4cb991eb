//! Multi-query associative recall (MQAR; Arora et al. 2023, "Zoology").
//!
//! A sequence opens with `pairs` distinct key–value pairs `k₁ v₁ … k_D v_D`; later, each key is
//! asked again once, at a position drawn with a power-law gap after the pairs, among filler
//! tokens. The model must name the value at every query position; all other positions are
//! unsupervised. The value never follows its query in the input, so a bidirectional model cannot
//! read the answer off its neighbour: recall is the only way.

use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::{DataError, Dataset, Example};

/// Random stream of the MQAR splits.
const MQAR_STREAM: u64 = 0x3a9c;

/// `[task] name = "mqar"`: recall the value of each re-asked key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqarConfig {
    /// Sequence length N.
    pub len: usize,
    /// Key–value pairs D per sequence; each key is queried once (4D ≤ N).
    pub pairs: usize,
    /// Keys are drawn from `[1, vocab/2)` and values from `[vocab/2, vocab)` (vocab > N); the id
    /// `vocab` is the filler between queries.
    pub vocab: usize,
    /// Training sequences.
    pub train: usize,
    /// Validation sequences.
    pub val: usize,
    /// Test sequences.
    pub test: usize,
}

impl MqarConfig {
    /// Checks Zoology's constraints and the split sizes.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |field, value: usize, fix: String| Err(DataError::config(field, value, fix));
        if self.pairs == 0 {
            return bad("task.pairs", 0, "must be at least 1".into());
        }
        if 4 * self.pairs > self.len {
            return bad(
                "task.pairs",
                self.pairs,
                format!(
                    "4 × pairs must not exceed task.len = {} (pairs and queries need room)",
                    self.len
                ),
            );
        }
        if self.vocab <= self.len {
            return bad(
                "task.vocab",
                self.vocab,
                format!("must exceed task.len = {} (Zoology: V > N)", self.len),
            );
        }
        if self.vocab / 2 - 1 < self.pairs {
            return bad(
                "task.vocab",
                self.vocab,
                format!("holds fewer than {} distinct keys", self.pairs),
            );
        }
        crate::check_splits(self.train, self.val, self.test)
    }

    /// Draws the three splits from `seed`.
    pub fn build(&self, seed: u64) -> Result<Dataset, DataError> {
        self.validate()?;
        Ok(crate::rng::generated(
            seed,
            MQAR_STREAM,
            [self.train, self.val, self.test],
            [self.vocab + 1, self.vocab, self.len],
            |rng| self.sequence(rng),
        ))
    }

    /// One sequence with its query targets.
    pub fn sequence(&self, rng: &mut impl Rng) -> Example {
        let (d, half) = (self.pairs, self.vocab / 2);
        let mut keys: Vec<u32> = (1..half as u32).collect();
        keys.shuffle(rng);
        keys.truncate(d);
        let values: Vec<u32> = (0..d)
            .map(|_| rng.random_range(half as u32..self.vocab as u32))
            .collect();
        let mut tokens = vec![self.vocab as u32; self.len];
        for i in 0..d {
            tokens[2 * i] = keys[i];
            tokens[2 * i + 1] = values[i];
        }
        // Query positions: without replacement, weight ∝ gap^(−0.99) after the pairs (Zoology's
        // power law with a = 0.01), so most queries come soon and a few come late.
        let mut free: Vec<usize> = (2 * d..self.len).collect();
        let mut order: Vec<usize> = (0..d).collect();
        order.shuffle(rng);
        let mut targets = Vec::with_capacity(d);
        for &i in &order {
            let weights: Vec<f64> = free
                .iter()
                .map(|&p| ((p - 2 * d + 1) as f64).powf(-0.99))
                .collect();
            let mut u = rng.random_range(0.0..weights.iter().sum::<f64>());
            let mut pick = free.len() - 1;
            for (j, w) in weights.iter().enumerate() {
                if u < *w {
                    pick = j;
                    break;
                }
                u -= w;
            }
            let at = free.remove(pick);
            tokens[at] = keys[i];
            targets.push((at as u32, values[i]));
        }
        targets.sort_unstable();
        Example {
            tokens,
            label: 0,
            targets,
            second: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MqarConfig {
        MqarConfig {
            len: 64,
            pairs: 8,
            vocab: 128,
            train: 200,
            val: 10,
            test: 10,
        }
    }

    #[test]
    fn every_query_asks_a_key_of_the_prefix_for_its_value() {
        let data = config().build(3).unwrap();
        assert_eq!(data.train, config().build(3).unwrap().train);
        assert_ne!(data.train, config().build(4).unwrap().train);
        let mut gaps = Vec::new();
        for e in &data.train {
            assert_eq!(e.tokens.len(), 64);
            assert_eq!(e.targets.len(), 8);
            let pairs: std::collections::HashMap<u32, u32> = (0..8)
                .map(|i| (e.tokens[2 * i], e.tokens[2 * i + 1]))
                .collect();
            assert_eq!(pairs.len(), 8, "keys are distinct");
            assert!(pairs.keys().all(|&k| (1..64).contains(&k)));
            assert!(pairs.values().all(|&v| (64..128).contains(&v)));
            let mut asked = std::collections::HashSet::new();
            for &(at, value) in &e.targets {
                let key = e.tokens[at as usize];
                assert!(at >= 16, "queries come after the pairs");
                assert_eq!(pairs[&key], value, "the target is the key's value");
                assert!(asked.insert(key), "each key is asked once");
                gaps.push(at - 16);
            }
            let queries: Vec<usize> = e.targets.iter().map(|t| t.0 as usize).collect();
            for (p, &t) in e.tokens.iter().enumerate().skip(16) {
                assert_eq!(t == 128, !queries.contains(&p), "filler everywhere else");
            }
        }
        // Power-law gaps: far more queries in the first eighth of the room than in the last.
        let room = 64 - 16;
        let early = gaps.iter().filter(|&&g| g < room / 8).count();
        let late = gaps.iter().filter(|&&g| g >= room - room / 8).count();
        assert!(early > 3 * late, "{early} early vs {late} late");
        assert_eq!((data.vocab_size, data.n_classes), (129, 128));
    }

    #[test]
    fn zoology_constraints_are_enforced() {
        let e = MqarConfig {
            pairs: 17,
            ..config()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("4 × pairs"), "{e}");
        let e = MqarConfig {
            vocab: 64,
            ..config()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("V > N"), "{e}");
    }
}
