//! What every fused attention kernel reads: the `[B, H, N, D]` shape, heads viewed in place in
//! burn Flex's storage, the key bias, and which keys each batch row can use.

use std::ops::Range;

use burn::backend::flex::FlexTensor;
use burn::tensor::DType;

use super::matmul::Mat;
use super::{contiguous_f32, tensor, values};
use crate::BLOCKED_SCORE;

/// The shape of an attention call: q and the output `[batch, heads, len, dim]`, k and v
/// `[batch, heads, keys, dim]` (`keys = len` for self-attention).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub batch: usize,
    pub heads: usize,
    pub len: usize,
    pub keys: usize,
    pub dim: usize,
}

impl Dims {
    /// Zeroed `dq`, `dk`, `dv` for a backward pass to accumulate into.
    pub fn zero_grads(&self) -> [Vec<f32>; 3] {
        let bh = self.batch * self.heads;
        let (queries, keys) = (bh * self.len * self.dim, bh * self.keys * self.dim);
        [
            vec![0.0f32; queries],
            vec![0.0f32; keys],
            vec![0.0f32; keys],
        ]
    }
}

/// A `[B, H, N, D]` tensor in a slice, contiguous along D, any non-negative strides otherwise:
/// the heads split out of `[B, N, H·D]` projections are read where they lie, without a copy.
#[derive(Clone, Copy)]
pub(crate) struct Heads<'a> {
    data: &'a [f32],
    offset: usize,
    /// Strides of B, H and N.
    strides: [usize; 3],
    dim: usize,
}

impl<'a> Heads<'a> {
    /// The last dimension, `D` (or the feature count of mapped queries and keys).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// A contiguous `[B, H, N, D]` slice.
    #[cfg(test)]
    pub fn contiguous(data: &'a [f32], d: Dims) -> Self {
        Self {
            data,
            offset: 0,
            strides: [d.heads * d.len * d.dim, d.len * d.dim, d.dim],
            dim: d.dim,
        }
    }

    /// Query or key rows `r` of head `h` of batch row `b`, as a `len × D` matrix.
    pub fn rows(&self, b: usize, h: usize, r: &Range<usize>) -> Mat<'a> {
        let [sb, sh, sn] = self.strides;
        let start = self.offset + b * sb + h * sh + r.start * sn;
        Mat::strided(&self.data[start..], r.len(), self.dim, sn)
    }

    /// Row `i` of head `h` of batch row `b`.
    pub fn row(&self, b: usize, h: usize, i: usize) -> &'a [f32] {
        let [sb, sh, sn] = self.strides;
        let start = self.offset + b * sb + h * sh + i * sn;
        &self.data[start..start + self.dim]
    }

    /// The same rows copied out contiguously.
    pub fn copy_rows(&self, b: usize, h: usize, r: &Range<usize>) -> Vec<f32> {
        let [sb, sh, sn] = self.strides;
        let start = self.offset + b * sb + h * sh;
        r.clone()
            .flat_map(|i| &self.data[start + i * sn..start + i * sn + self.dim])
            .copied()
            .collect()
    }
}

/// One attention call's inputs: `q`, `k`, `v` `[B, H, N, D]`, `bias` `[B, N]`.
pub(crate) struct Inputs<'a> {
    pub q: Heads<'a>,
    pub k: Heads<'a>,
    pub v: Heads<'a>,
    pub bias: &'a [f32],
    pub dims: Dims,
    pub causal: bool,
    pub tile: usize,
}

/// A bias entry at or below this blocks its key (the scores themselves stay far above it).
pub(crate) const BLOCKED_BELOW: f32 = BLOCKED_SCORE / 2.0;

/// Which keys each batch row can use: the first real key, and for each key tile whether it
/// holds any real key (a tile of padding only adds exactly zero, so it is skipped).
pub(crate) struct Visibility {
    first_real: Vec<Option<usize>>,
    tile_used: Vec<Vec<bool>>,
}

impl Visibility {
    pub fn new(bias: &[f32], d: Dims, tile: usize) -> Self {
        let rows = || bias.chunks(d.keys.max(1));
        Self {
            first_real: rows()
                .map(|r| r.iter().position(|&b| b > BLOCKED_BELOW))
                .collect(),
            tile_used: rows()
                .map(|r| {
                    r.chunks(tile)
                        .map(|t| t.iter().any(|&b| b > BLOCKED_BELOW))
                        .collect()
                })
                .collect(),
        }
    }

    /// Whether query `i` of batch row `b` sees at least one key.
    pub fn sees_any(&self, b: usize, i: usize, causal: bool) -> bool {
        self.first_real[b].is_some_and(|f| !causal || f <= i)
    }

    /// Whether query rows `rows` of batch row `b` need key tile `t` starting at `start`.
    pub fn needs(
        &self,
        b: usize,
        t: usize,
        start: usize,
        rows: &Range<usize>,
        causal: bool,
    ) -> bool {
        self.tile_used[b][t] && (!causal || start < rows.end)
    }
}

/// Flex tensors as the kernel reads them; `None` (use the portable path) unless all are f32.
pub(crate) struct FlexInputs {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    bias: FlexTensor,
    dims: Dims,
}

/// `t` itself when the kernel can read its layout (f32, contiguous along D, non-negative
/// strides), else a contiguous copy; `None` unless f32.
pub(crate) fn readable(t: &FlexTensor) -> Option<FlexTensor> {
    let layout = t.layout();
    let strides = layout.strides();
    let direct = t.dtype() == DType::F32
        && strides.len() == 4
        && strides.iter().all(|&s| s >= 0)
        && (strides[3] == 1 || layout.shape()[3] == 1);
    if direct {
        Some(t.clone())
    } else {
        contiguous_f32(t)
    }
}

/// The `[B, H, N, D]` view of a tensor [`readable`] returned.
pub(crate) fn heads(t: &FlexTensor) -> Heads<'_> {
    let layout = t.layout();
    let s = layout.strides();
    Heads {
        data: t.storage::<f32>(),
        offset: layout.start_offset(),
        strides: [s[0] as usize, s[1] as usize, s[2] as usize],
        dim: layout.shape()[3],
    }
}

impl FlexInputs {
    /// `q` `[B, H, N, D]`, `k` and `v` `[B, H, Nk, D]` (`v` may have another last dimension) and
    /// the key bias `[B, 1, 1, Nk]`.
    pub fn new(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor, bias: &FlexTensor) -> Option<Self> {
        let s = q.layout().shape();
        let dims = Dims {
            batch: s[0],
            heads: s[1],
            len: s[2],
            keys: k.layout().shape()[2],
            dim: s[3],
        };
        Some(Self {
            q: readable(q)?,
            k: readable(k)?,
            v: readable(v)?,
            bias: contiguous_f32(bias)?,
            dims,
        })
    }

    pub fn inputs(&self, causal: bool, tile: usize) -> Inputs<'_> {
        Inputs {
            q: heads(&self.q),
            k: heads(&self.k),
            v: heads(&self.v),
            bias: values(&self.bias),
            dims: self.dims,
            causal,
            tile,
        }
    }

    /// `[B, H, N, D]`.
    pub fn shape(&self) -> [usize; 4] {
        let d = self.dims;
        [d.batch, d.heads, d.len, d.dim]
    }

    /// `(dq, dk, dv)` from a fused backward `kernel` given the two tensors its forward pass saved
    /// (the output first) and the output's gradient; `None` unless they are f32.
    pub fn gradients(
        &self,
        (out, stat): (&FlexTensor, &FlexTensor),
        grad_out: &FlexTensor,
        (causal, tile): (bool, usize),
        kernel: &BackwardKernel,
    ) -> Option<(FlexTensor, FlexTensor, FlexTensor)> {
        let (out, stat, grad) = (
            contiguous_f32(out)?,
            contiguous_f32(stat)?,
            readable(grad_out)?,
        );
        let x = self.inputs(causal, tile);
        let [dq, dk, dv] = kernel(&x, values(&out), values(&stat), heads(&grad));
        let shape = |t: &FlexTensor| t.layout().shape().clone();
        Some((
            tensor(dq, shape(&self.q)),
            tensor(dk, shape(&self.k)),
            tensor(dv, shape(&self.v)),
        ))
    }
}

/// A fused backward pass: `(dq, dk, dv)` from the inputs, the output, what else the forward
/// pass saved, and the output's gradient.
pub(crate) type BackwardKernel<'a> = dyn Fn(&Inputs, &[f32], &[f32], Heads) -> [Vec<f32>; 3] + 'a;
