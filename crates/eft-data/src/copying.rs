//! Selective copying and induction heads (Gu & Dao 2023, "Mamba", appendix): two synthetic
//! tasks graded per position that separate content-aware mixing from position-fixed mixing.
//!
//! - Selective copying: `tokens` data tokens sit at random places among noise; the last `tokens`
//!   positions hold a marker, and the i-th marker must name the i-th data token.
//! - Induction heads: random tokens with one trigger inside, followed by an answer token; the
//!   sequence ends with the trigger again, which must name that answer.

use rand::Rng;
use rand::seq::index::sample;
use serde::{Deserialize, Serialize};

use crate::{DataError, Dataset, Example};

/// Random stream of the selective-copying splits.
const COPYING_STREAM: u64 = 0xc0b1;
/// Random stream of the induction-heads splits.
const INDUCTION_STREAM: u64 = 0x1d0c;

/// `[task] name = "copying"`: copy the data tokens, in order, to the marked positions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyingConfig {
    /// Sequence length, markers included (Mamba: 4096).
    pub len: usize,
    /// Data tokens to copy (Mamba: 16).
    pub tokens: usize,
    /// Distinct data token ids, `1..=vocab` (Mamba: 16); `vocab + 1` is noise, `vocab + 2` the
    /// marker.
    pub vocab: usize,
    /// Training sequences.
    pub train: usize,
    /// Validation sequences.
    pub val: usize,
    /// Test sequences.
    pub test: usize,
}

/// `[task] name = "induction"`: after the trigger's second appearance, name what followed its first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InductionConfig {
    /// Sequence length (Mamba trains at 256).
    pub len: usize,
    /// Distinct ordinary token ids, `1..=vocab` (Mamba: 16); `vocab + 1` is the trigger.
    pub vocab: usize,
    /// Training sequences.
    pub train: usize,
    /// Validation sequences.
    pub val: usize,
    /// Test sequences.
    pub test: usize,
}

fn bad(field: &'static str, value: usize, fix: String) -> Result<(), DataError> {
    Err(DataError::config(field, value, fix))
}

/// The vocabulary and split sizes both tasks check.
fn check_vocab_and_splits(vocab: usize, [train, val, test]: [usize; 3]) -> Result<(), DataError> {
    if vocab < 2 {
        return bad("task.vocab", vocab, "must be at least 2".into());
    }
    crate::check_splits(train, val, test)
}

impl CopyingConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.tokens == 0 {
            return bad("task.tokens", 0, "must be at least 1".into());
        }
        if self.len < 3 * self.tokens {
            return bad(
                "task.len",
                self.len,
                format!(
                    "must be at least 3 × tokens = {} (the data, as much noise, and the markers)",
                    3 * self.tokens
                ),
            );
        }
        check_vocab_and_splits(self.vocab, [self.train, self.val, self.test])
    }

    /// Draws the three splits from `seed`.
    pub fn build(&self, seed: u64) -> Result<Dataset, DataError> {
        self.validate()?;
        Ok(crate::rng::generated(
            seed,
            COPYING_STREAM,
            [self.train, self.val, self.test],
            [self.vocab + 3, self.vocab + 1, self.len],
            |rng| self.sequence(rng),
        ))
    }

    /// One sequence and its targets.
    pub fn sequence(&self, rng: &mut impl Rng) -> Example {
        let (noise, marker) = (self.vocab as u32 + 1, self.vocab as u32 + 2);
        let room = self.len - self.tokens;
        let mut places = sample(rng, room, self.tokens).into_vec();
        places.sort_unstable();
        let mut tokens = vec![noise; self.len];
        tokens[room..].fill(marker);
        let mut targets = Vec::with_capacity(self.tokens);
        for (i, &at) in places.iter().enumerate() {
            let t = rng.random_range(1..=self.vocab as u32);
            tokens[at] = t;
            targets.push(((room + i) as u32, t));
        }
        Example {
            tokens,
            label: 0,
            targets,
            second: None,
        }
    }
}

impl InductionConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.len < 4 {
            return bad(
                "task.len",
                self.len,
                "must be at least 4 (trigger, answer, something between, trigger)".into(),
            );
        }
        check_vocab_and_splits(self.vocab, [self.train, self.val, self.test])
    }

    /// Draws the three splits from `seed`.
    pub fn build(&self, seed: u64) -> Result<Dataset, DataError> {
        self.validate()?;
        Ok(crate::rng::generated(
            seed,
            INDUCTION_STREAM,
            [self.train, self.val, self.test],
            [self.vocab + 2, self.vocab + 1, self.len],
            |rng| self.sequence(rng),
        ))
    }

    /// One sequence and its single target at the last position.
    pub fn sequence(&self, rng: &mut impl Rng) -> Example {
        let trigger = self.vocab as u32 + 1;
        let mut tokens: Vec<u32> = (0..self.len)
            .map(|_| rng.random_range(1..=self.vocab as u32))
            .collect();
        let at = rng.random_range(0..self.len - 2);
        tokens[at] = trigger;
        tokens[self.len - 1] = trigger;
        Example {
            targets: vec![((self.len - 1) as u32, tokens[at + 1])],
            tokens,
            label: 0,
            second: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copying_targets_are_the_data_tokens_in_order_at_the_markers() {
        let c = CopyingConfig {
            len: 24,
            tokens: 4,
            vocab: 6,
            train: 100,
            val: 5,
            test: 5,
        };
        let d = c.build(1).unwrap();
        assert_eq!(d.train, c.build(1).unwrap().train);
        assert_ne!(d.train, c.build(2).unwrap().train);
        for e in &d.train {
            let data: Vec<u32> = e.tokens[..20].iter().copied().filter(|&t| t <= 6).collect();
            assert_eq!(data.len(), 4, "{:?}", e.tokens);
            assert!(e.tokens[20..].iter().all(|&t| t == 8), "markers at the end");
            let want: Vec<(u32, u32)> = (0..4).map(|i| (20 + i as u32, data[i])).collect();
            assert_eq!(e.targets, want);
        }
        assert_eq!((d.vocab_size, d.n_classes), (9, 7));
        let e = CopyingConfig { len: 11, ..c }.validate().unwrap_err();
        assert!(e.to_string().contains("3 × tokens"), "{e}");
    }

    #[test]
    fn induction_asks_what_followed_the_trigger() {
        let c = InductionConfig {
            len: 16,
            vocab: 5,
            train: 200,
            val: 5,
            test: 5,
        };
        let d = c.build(3).unwrap();
        assert_eq!(d.train, c.build(3).unwrap().train);
        let mut answers = [0; 6];
        for e in &d.train {
            let triggers: Vec<usize> = (0..16).filter(|&i| e.tokens[i] == 6).collect();
            assert_eq!(triggers.len(), 2, "one trigger inside, one at the end");
            assert_eq!(triggers[1], 15);
            assert_eq!(e.targets, vec![(15, e.tokens[triggers[0] + 1])]);
            answers[e.tokens[triggers[0] + 1] as usize] += 1;
        }
        assert!(
            answers[1..].iter().all(|&n| n > 20),
            "answers spread: {answers:?}"
        );
        assert!(InductionConfig { len: 3, ..c }.validate().is_err());
    }
}
