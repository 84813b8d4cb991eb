//! Dropout whose mask is a hash of (seed, element index): drawn in parallel and vectorised, and
//! recomputed in the backward pass instead of stored, so the op holds no mask at all.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Tensor, TensorData};

use crate::cpu;
use crate::routing::extension_runs_on;

/// The backend operation behind [`dropout`].
#[backend_extension(Autodiff, Flex)]
pub trait DropoutBackend: Backend {
    /// `x ∘ keep/(1 − prob)`, where element `i` is kept when [`keeps`]`(seed, i, prob)`.
    fn hashed_dropout(x: FloatTensor<Self>, prob: f32, seed: usize) -> FloatTensor<Self> {
        generic_dropout::<Self>(x, prob, seed)
    }
}

/// The portable dropout: the mask built on the host, one multiply.
fn generic_dropout<B: Backend>(x: FloatTensor<B>, prob: f32, seed: usize) -> FloatTensor<B> {
    let shape = x.shape();
    let scale: Vec<f32> = (0..shape.num_elements())
        .map(|i| mask_value(seed as u64, i, prob))
        .collect();
    let mask = B::float_from_data(TensorData::new(scale, shape), &x.device());
    let mask = B::float_cast(mask, crate::flash_reference::dtype_of::<B>(&x));
    B::float_mul(x, mask)
}

/// 32-bit finaliser of MurmurHash3: every input bit affects every output bit.
#[inline(always)]
fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Whether dropout with `seed` keeps element `i` (probability `1 − prob`).
#[inline(always)]
pub(crate) fn keeps(seed: u64, i: usize, prob: f32) -> bool {
    let (lo, hi) = (seed as u32, (seed >> 32) as u32);
    let h = mix(mix((i as u32).wrapping_mul(0x9e37_79b9) ^ lo) ^ hi ^ ((i as u64 >> 32) as u32));
    // The top 24 bits as a uniform in [0, 1), exact in f32.
    ((h >> 8) as f32) * (1.0 / (1u32 << 24) as f32) >= prob
}

/// `1/(1 − prob)` where element `i` is kept, else 0.
#[inline(always)]
pub(crate) fn mask_value(seed: u64, i: usize, prob: f32) -> f32 {
    if keeps(seed, i, prob) {
        1.0 / (1.0 - prob)
    } else {
        0.0
    }
}

/// Dropout of `x` with drop probability `prob`, its mask a function of `seed` (draw a fresh seed
/// per call); differentiable, fused on burn's Flex backend in f32.
pub fn dropout<const D: usize>(x: Tensor<D>, prob: f64, seed: u64) -> Tensor<D> {
    let extension = extension_runs_on(&x.device());
    let (x, prob, seed) = (x.into_dispatch(), prob as f32, seed as usize);
    Tensor::from_dispatch(match extension {
        true => <Dispatch as DropoutBackend>::hashed_dropout(x, prob, seed),
        false => generic_dropout::<Dispatch>(x, prob, seed),
    })
}

impl DropoutBackend for Flex {
    fn hashed_dropout(x: FloatTensor<Self>, prob: f32, seed: usize) -> FloatTensor<Self> {
        match cpu::contiguous_f32(&x) {
            Some(c) => {
                let y = cpu::rowwise::dropout(cpu::values(&c), prob, seed as u64);
                cpu::tensor(y, c.layout().shape().clone())
            }
            None => generic_dropout::<Self>(x, prob, seed),
        }
    }
}

#[derive(Debug)]
struct DropoutGrad;

impl<B: Backend + DropoutBackend> Backward<B, 1> for DropoutGrad {
    type State = (f32, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<B>(&ops.node);
        let (prob, seed) = ops.state;
        if let Some(parent) = &ops.parents[0] {
            // The same mask, recomputed: dx = dy ∘ keep/(1 − prob).
            grads.register::<B>(parent.id, B::hashed_dropout(dy, prob, seed));
        }
    }
}

impl<B: Backend + DropoutBackend, C: CheckpointStrategy> DropoutBackend for Autodiff<B, C> {
    fn hashed_dropout(x: FloatTensor<Self>, prob: f32, seed: usize) -> FloatTensor<Self> {
        match DropoutGrad
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                (prob, seed),
                B::hashed_dropout(x.into_primitive(), prob, seed),
            ),
            OpsKind::UnTracked(prep) => {
                prep.finish(B::hashed_dropout(x.into_primitive(), prob, seed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::test_util::{random, values};

    #[test]
    fn fused_and_portable_masks_agree_and_the_gradient_uses_the_same_mask() {
        let device = Device::flex().autodiff();
        let x = random([3, 50, 70], 1, &device).require_grad();
        let y = dropout(x.clone(), 0.3, 12345);
        let (xv, yv) = (values(x.clone()), values(y.clone()));
        let mut kept = 0;
        for (i, (x, y)) in xv.iter().zip(&yv).enumerate() {
            let want = x * mask_value(12345, i, 0.3);
            assert!(
                (y - want).abs() <= 1e-6 * want.abs().max(1.0),
                "element {i}"
            );
            kept += usize::from(keeps(12345, i, 0.3));
        }
        // 10 500 Bernoulli(0.7) draws: mean 7350, sd 47.
        assert!((7150..7550).contains(&kept), "kept {kept}");
        let grads = y.sum().backward();
        let g = values(x.grad(&grads).unwrap());
        for (i, g) in g.iter().enumerate() {
            assert_eq!(*g, mask_value(12345, i, 0.3), "gradient {i}");
        }
        // Another seed draws another mask.
        let other = values(dropout(x.inner(), 0.3, 999));
        assert!(other.iter().zip(&yv).any(|(a, b)| a != b));
    }
}

/// Dropout with one mask stream per row of `x` (its first dimension): element `j` of row `r`
/// (counting within the row) is kept when [`keeps`]`(row_seed(seed, keys[r]), j, prob)`. A row's
/// mask depends on its key and its own elements only, not on the other rows or where it sits in
/// the batch: data-parallel ranks holding different slices of a batch, keyed by example, draw
/// the masks one process draws for the whole batch. The mask is built on the host and the
/// product differentiated by autodiff.
///
/// # Panics
/// Panics if `keys` does not have one key per row of `x`.
pub fn dropout_rows<const D: usize>(x: Tensor<D>, prob: f64, seed: u64, keys: &[u64]) -> Tensor<D> {
    let dims = x.dims();
    assert_eq!(dims[0], keys.len(), "one dropout key per row");
    let per_row: usize = dims[1..].iter().product();
    let prob = prob as f32;
    let mask: Vec<f32> = keys
        .iter()
        .flat_map(|&key| {
            let seed = row_seed(seed, key);
            (0..per_row).map(move |j| mask_value(seed, j, prob))
        })
        .collect();
    let mask = Tensor::<D>::from_data(TensorData::new(mask, dims), &x.device()).cast(x.dtype());
    x * mask
}

/// Dropout of columns `offset..offset + w` (`w` = `x`'s last dimension) of an activation `full`
/// columns wide: each element gets the mask it has in the whole activation under [`dropout`]
/// (`keys` = `None`) or [`dropout_rows`] (one key per row of `x`'s first dimension). Ranks that
/// each hold a block of a split layer's columns drop what one process drops. The mask is built
/// on the host and the product differentiated by autodiff.
///
/// # Panics
/// Panics if the block does not fit in `full` columns, or `keys` does not have one key per row.
pub fn dropout_columns<const D: usize>(
    x: Tensor<D>,
    prob: f64,
    seed: u64,
    keys: Option<&[u64]>,
    full: usize,
    offset: usize,
) -> Tensor<D> {
    let dims = x.dims();
    let width = dims[D - 1];
    assert!(offset + width <= full, "columns beyond the activation");
    let rows: usize = dims[..D - 1].iter().product();
    let prob = prob as f32;
    let (seeds, per_key) = match keys {
        Some(keys) => {
            assert_eq!(dims[0], keys.len(), "one dropout key per row");
            let seeds: Vec<u64> = keys.iter().map(|&k| row_seed(seed, k)).collect();
            (seeds, rows / keys.len().max(1))
        }
        None => (vec![seed], rows),
    };
    let mask: Vec<f32> = (0..rows)
        .flat_map(|r| {
            let (seed, inner) = (seeds[r / per_key.max(1)], r % per_key.max(1));
            (0..width).map(move |c| mask_value(seed, inner * full + offset + c, prob))
        })
        .collect();
    let mask = Tensor::<D>::from_data(TensorData::new(mask, dims), &x.device()).cast(x.dtype());
    x * mask
}

/// The seed of the row keyed `key` under the call's `seed`.
fn row_seed(seed: u64, key: u64) -> u64 {
    let lo = mix(seed as u32 ^ mix(key as u32));
    let hi = mix((seed >> 32) as u32 ^ mix((key >> 32) as u32 ^ 0x9e37_79b9));
    (u64::from(hi) << 32) | u64::from(lo)
}

#[cfg(test)]
mod row_tests {
    use super::*;

    /// Blocks of columns, each dropped with its offset, put side by side drop what the whole
    /// activation drops, keyed by row or not.
    #[test]
    fn column_blocks_drop_what_the_whole_activation_drops() {
        let device = burn::tensor::Device::flex();
        let x = crate::test_util::random([3, 4, 12], 5, &device);
        let keys = [7u64, 1, 90];
        for keyed in [None, Some(&keys[..])] {
            let whole = match keyed {
                Some(k) => dropout_rows(x.clone(), 0.4, 77, k),
                None => dropout(x.clone(), 0.4, 77),
            };
            let blocks: Vec<Tensor<3>> = (0..3)
                .map(|b| {
                    let part = x
                        .clone()
                        .slice(burn::tensor::s![.., .., 4 * b..4 * (b + 1)]);
                    dropout_columns(part, 0.4, 77, keyed, 12, 4 * b)
                })
                .collect();
            let joined = Tensor::cat(blocks, 2);
            let (w, j) = (whole.into_data(), joined.into_data());
            assert_eq!(w, j, "keyed {}", keyed.is_some());
        }
    }

    /// A row's mask is the same wherever the row sits and however long the batch's other rows
    /// are padded; rows with different keys differ; about `prob` of the elements drop.
    #[test]
    fn a_rows_mask_follows_its_key_not_its_place() {
        let device = burn::tensor::Device::flex();
        let x = Tensor::<3>::ones([3, 5, 8], &device);
        let whole = dropout_rows(x, 0.25, 42, &[7, 8, 9]);
        let alone = dropout_rows(Tensor::<3>::ones([1, 5, 8], &device), 0.25, 42, &[8]);
        let values = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().unwrap();
        let whole = values(whole);
        assert_eq!(whole[40..80], values(alone)[..]);
        assert_ne!(whole[..40], whole[40..80]);
        let dropped = whole.iter().filter(|&&v| v == 0.0).count() as f64 / whole.len() as f64;
        assert!((dropped - 0.25).abs() < 0.1, "{dropped}");
        assert!(
            whole
                .iter()
                .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6)
        );
    }
}
