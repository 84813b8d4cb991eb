//! Removing heads from a layer (head pruning): which mechanisms compute the same thing for the
//! heads they keep, and the per-head parameters that shrink with them.

use burn::module::Param;
use burn::tensor::Tensor;

use crate::{Attention, AttentionConfig, AttentionError};

impl AttentionConfig {
    /// Whether a layer of this mechanism can lose heads while each kept head computes what it
    /// did before. Refused: mechanisms that give a head its pattern, permutation or random draw
    /// by its index (pruning would hand a kept head another head's), and Nyströmformer's value
    /// convolution (one grouped convolution over all heads).
    pub fn check_head_removal(&self) -> Result<(), AttentionError> {
        let why = match self {
            Self::Strided(_) | Self::Fixed(_) => "splits its heads into two sets by index",
            Self::BlockBert(_) => "gives each head its own permutation by index",
            Self::BigBird(_) => "draws each head's random blocks by its index",
            Self::Lsh(_) => "draws each head's hash rotations by its index",
            Self::Nystrom(c) if c.conv_kernel.is_some() => {
                "convolves the values of all heads in one grouped convolution (conv_kernel)"
            }
            _ => return Ok(()),
        };
        Err(AttentionError::OutOfRange {
            field: "kind",
            value: self.name().to_string(),
            fix: format!(
                "this mechanism {why}, so removing heads would change what the kept ones \
                 compute; prune heads of full, flash, local, sliding, cascade, longformer, \
                 linear, performer, cosformer, nystrom (no conv), linformer, synthesizer, \
                 sinkhorn or xl layers"
            ),
        })
    }
}

impl Attention {
    /// The layer with only heads `kept` (ascending indices into its heads): per-head parameters
    /// keep those heads' slices; everything shared by all heads is unchanged. The config must
    /// have passed [`AttentionConfig::check_head_removal`].
    pub fn keep_heads(self, kept: &[usize]) -> Self {
        let heads = |p| select_param(p, 0, kept);
        let some_heads = |p: Option<_>| p.map(|p| select_param(p, 0, kept));
        match self {
            Self::Xl(mut x) => {
                x.content_bias = heads(x.content_bias);
                x.position_bias = heads(x.position_bias);
                x.position_proj = select_param(x.position_proj, 0, kept);
                Self::Xl(x)
            }
            Self::Synthesizer(mut s) => {
                s.hidden = some_heads(s.hidden);
                s.hidden_bias = some_heads(s.hidden_bias);
                s.first = select_param(s.first, 0, kept);
                s.first_bias = some_heads(s.first_bias);
                s.second = some_heads(s.second);
                s.second_bias = some_heads(s.second_bias);
                Self::Synthesizer(s)
            }
            // One projection per head (`share = "none"`) shrinks; one shared by all heads stays.
            Self::Linformer(mut l) => {
                let per_head = |p: Option<Param<Tensor<3>>>| match p {
                    Some(p) if p.dims()[0] > 1 => Some(select_param(p, 0, kept)),
                    p => p,
                };
                l.keys = per_head(l.keys);
                l.values = per_head(l.values);
                Self::Linformer(l)
            }
            other => other,
        }
    }
}

/// `param` with only the slices `indices` along dimension `dim`, keeping its id and whether it
/// is trained.
pub fn select_param<const D: usize>(
    param: Param<Tensor<D>>,
    dim: usize,
    indices: &[usize],
) -> Param<Tensor<D>> {
    let (id, tensor, mapper) = param.consume();
    let require_grad = tensor.is_require_grad();
    // On the inner (untracked) tensor: the slice is a new leaf, not a node of a graph.
    let inner = tensor.inner();
    let indices = crate::index_tensor(indices, &inner.device());
    let mut selected = Tensor::from_inner(inner.select(dim, indices));
    if require_grad {
        selected = selected.require_grad();
    }
    Param::from_mapped_value(id, selected, mapper)
}
