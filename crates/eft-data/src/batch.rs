//! Ordering and padding examples into batches.
//!
//! The order of training batches is a pure function of (seed, step), so a resumed run sees the
//! same batches as one that never stopped.

use rand::seq::SliceRandom;

use crate::{Example, seeded_rng};

/// Stream of [`seeded_rng`] reserved for shuffling the training split.
const SHUFFLE_STREAM: u64 = 7;

/// A padded batch, flattened row-major, ready to become tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Token ids, `[batch, len]`, 0 at padding.
    pub tokens: Vec<u32>,
    /// `true` at padding positions, `[batch, len]`.
    pub padding: Vec<bool>,
    /// Class labels: one per row, or one per graded position when `rows` is not empty.
    pub labels: Vec<u32>,
    /// Flat indices `row · len + position` of the graded positions, in `labels`' order; empty
    /// for tasks graded per sequence.
    pub rows: Vec<usize>,
    /// Rows: one per example, two per example of a pair task.
    pub batch: usize,
    /// Columns: the longest example in the batch.
    pub len: usize,
}

impl Batch {
    /// Pads `examples` to the longest of them; a pair task's example becomes two consecutive
    /// rows (its first and second passage).
    pub fn from_examples<'a>(examples: impl IntoIterator<Item = &'a Example>) -> Self {
        let examples: Vec<&Example> = examples.into_iter().collect();
        let sequences: Vec<&[u32]> = examples
            .iter()
            .flat_map(|e| std::iter::once(e.tokens.as_slice()).chain(e.second.as_deref()))
            .collect();
        let len = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut tokens = Vec::with_capacity(sequences.len() * len);
        let mut padding = Vec::with_capacity(sequences.len() * len);
        for s in &sequences {
            tokens.extend_from_slice(s);
            tokens.resize(tokens.len() + len - s.len(), 0);
            padding.extend((0..len).map(|i| i >= s.len()));
        }
        let (rows, labels) = if examples.iter().any(|e| !e.targets.is_empty()) {
            examples
                .iter()
                .enumerate()
                .flat_map(|(r, e)| {
                    e.targets
                        .iter()
                        .map(move |&(p, l)| (r * len + p as usize, l))
                })
                .unzip()
        } else {
            (Vec::new(), examples.iter().map(|e| e.label).collect())
        };
        Batch {
            tokens,
            padding,
            labels,
            rows,
            batch: sequences.len(),
            len,
        }
    }

    /// Number of real (non-padding) tokens.
    pub fn real_tokens(&self) -> usize {
        self.padding.iter().filter(|p| !**p).count()
    }
}

/// The shuffled order of `n` training examples in `epoch`.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = seeded_rng(
        seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        SHUFFLE_STREAM,
    );
    order.shuffle(&mut rng);
    order
}

/// Indices of the training examples in batch `step` (counting from 0).
///
/// Each epoch is a fresh shuffle cut into `n / batch_size` full batches; the few left over at the
/// end of an epoch are skipped for that epoch only.
///
/// # Panics
/// Panics if `batch_size` is 0 or larger than `n`; configs are validated before this is called.
pub fn train_batch_indices(n: usize, batch_size: usize, seed: u64, step: u64) -> Vec<usize> {
    assert!(
        batch_size > 0 && batch_size <= n,
        "batch size {batch_size} for {n} examples"
    );
    let per_epoch = (n / batch_size) as u64;
    let (epoch, b) = (step / per_epoch, (step % per_epoch) as usize);
    epoch_order(n, seed, epoch)[b * batch_size..(b + 1) * batch_size].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(tokens: &[u32], label: u32) -> Example {
        Example::classified(tokens.to_vec(), label)
    }

    #[test]
    fn pads_to_longest_and_marks_padding() {
        let b = Batch::from_examples(&[ex(&[3, 4, 5], 1), ex(&[7], 2)]);
        assert_eq!(b.len, 3);
        assert_eq!(b.tokens, vec![3, 4, 5, 7, 0, 0]);
        assert_eq!(b.padding, vec![false, false, false, false, true, true]);
        assert_eq!(b.labels, vec![1, 2]);
        assert_eq!(b.real_tokens(), 4);
        assert!(b.rows.is_empty());
    }

    #[test]
    fn graded_positions_index_the_padded_batch() {
        let mut a = ex(&[3, 4, 5], 0);
        a.targets = vec![(1, 9), (2, 8)];
        let mut b = ex(&[7, 6], 0);
        b.targets = vec![(0, 5)];
        let batch = Batch::from_examples(&[a, b]);
        assert_eq!(batch.rows, vec![1, 2, 3]);
        assert_eq!(batch.labels, vec![9, 8, 5]);
        assert_eq!(batch.tokens[batch.rows[2]], 7);
    }

    #[test]
    fn pairs_become_consecutive_rows() {
        let mut a = ex(&[3, 4], 1);
        a.second = Some(vec![5, 6, 7]);
        let mut b = ex(&[8], 0);
        b.second = Some(vec![9]);
        let batch = Batch::from_examples(&[a, b]);
        assert_eq!((batch.batch, batch.len), (4, 3));
        assert_eq!(batch.tokens, vec![3, 4, 0, 5, 6, 7, 8, 0, 0, 9, 0, 0]);
        assert_eq!(batch.labels, vec![1, 0]);
    }

    #[test]
    fn batches_cover_each_epoch_once_and_reproduce() {
        let (n, bs) = (10, 3);
        let mut seen: Vec<usize> = (0..3)
            .flat_map(|s| train_batch_indices(n, bs, 5, s))
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(
            seen.len(),
            9,
            "three batches of an epoch hold nine distinct examples"
        );
        assert_eq!(
            train_batch_indices(n, bs, 5, 4),
            train_batch_indices(n, bs, 5, 4)
        );
        assert_ne!(epoch_order(n, 5, 0), epoch_order(n, 5, 1));
        assert_ne!(epoch_order(n, 5, 0), epoch_order(n, 6, 0));
    }
}
