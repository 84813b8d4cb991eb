//! The block-sparse engine every fixed-pattern mechanism runs on.
//!
//! The sequence is cut into blocks of `b` (padded internally to a whole number of blocks, padding
//! masked). Each query block gathers a fixed-size list of key blocks; every query may also see a
//! short list of *global keys*, and *global queries* see every key. Scores exist only for the
//! gathered pairs: `[B, H, N/b, b, K·b + G]`, so time and memory are O(N·(K·b + G)) instead of
//! O(N²). Inside the gathered blocks an [`ElementRule`] (window, dilation) refines the pattern;
//! causal and padding masks apply everywhere. A query that sees no key outputs zeros. On burn's
//! Flex backend in f32 the pattern runs as one fused operation (`eft_kernels::block_sparse_attention`:
//! one product per key block read in place, the scored pairs' probabilities kept); elsewhere as
//! tensor ops. Both are tested against the dense oracle.

use burn::tensor::{Bool, Device, IndexingUpdateOp, Int, Tensor, TensorData};

use std::sync::Arc;

pub use eft_kernels::{BlockPattern, ElementRule};

use crate::{AttentionCost, AttentionInput, AttentionShape, dense_reference};

/// FLOPs and saved bytes of `pattern` for `shape`, counting only the scored pairs.
pub fn pattern_cost(pattern: &BlockPattern, shape: AttentionShape) -> AttentionCost {
    let bh = (shape.batch * shape.heads) as f64;
    let pairs = pattern.scored_pairs();
    let d = shape.head_dim as f64;
    AttentionCost {
        forward_flops: bh * (4.0 * pairs * d + 6.0 * pairs),
        backward_flops: bh * (8.0 * pairs * d + 5.0 * pairs),
        saved_bytes: bh * pairs * 4.0,
    }
}

/// Runs attention over the pattern's pairs only: the fused kernel of `eft-kernels` where it runs
/// (burn's Flex backend, f32), else [`block_sparse_tensor_ops`].
///
/// # Shapes
/// - input: `[B, H, N, D]` with `N = pattern.len`; `pattern.heads` is 1 or `H`
/// - output: `[B, H, N, D]`
///
/// # Panics
/// Panics if the input's length or heads do not fit the pattern; mechanisms build the pattern
/// from the input's own shape.
pub fn block_sparse(input: AttentionInput, pattern: &BlockPattern) -> Tensor<4> {
    if !eft_kernels::fused_cpu(&input.q.device(), input.q.dtype()) {
        return block_sparse_tensor_ops(input, pattern);
    }
    let padding = input.key_padding.map(|p| p.float());
    eft_kernels::block_sparse_attention(
        input.q,
        input.k,
        input.v,
        padding,
        input.causal,
        Arc::new(pattern.clone()),
    )
}

/// [`block_sparse`] from burn tensor ops, on any backend: the pattern's key blocks gathered
/// into `[B, H, N/b, b, K·b + G]` scores with a mask built on the host.
///
/// # Shapes
/// As [`block_sparse`].
pub fn block_sparse_tensor_ops(input: AttentionInput, pattern: &BlockPattern) -> Tensor<4> {
    let [batch, heads, len, dim] = input.q.dims();
    assert_eq!(len, pattern.len, "pattern built for another length");
    assert!(
        pattern.heads == 1 || pattern.heads == heads,
        "pattern heads"
    );
    let (device, dtype) = (input.q.device(), input.q.dtype());
    let (b, nb, kq) = (pattern.block, pattern.n_blocks(), pattern.per_query);
    let padded = nb * b;
    let pad = |t: Tensor<4>| {
        if padded == len {
            return t;
        }
        let zeros = Tensor::<4>::zeros([batch, heads, padded - len, dim], (&device, dtype));
        Tensor::cat(vec![t, zeros], 2)
    };
    let (q, k, v) = (pad(input.q), pad(input.k), pad(input.v)); // [B, H, Np, D]
    let scale = 1.0 / (dim as f64).sqrt();

    // Key padding over the padded length, as floats (1 = padding) so it can be gathered.
    let key_pad: Tensor<2> = {
        let real = match input.key_padding {
            Some(m) => m.float().cast(dtype),
            None => Tensor::zeros([batch, len], (&device, dtype)),
        };
        let tail = Tensor::<2>::ones([batch, padded - len], (&device, dtype));
        if padded == len {
            real
        } else {
            Tensor::cat(vec![real, tail], 1)
        }
    };

    // Gathered key blocks: [B, H, nb, K·b, D].
    let kcat = kq * b;
    let slots = |h: usize| -> Tensor<1, Int> {
        let ids: Vec<i64> = pattern.key_blocks[h * nb * kq..(h + 1) * nb * kq]
            .iter()
            .map(|s| s.unwrap_or(0) as i64)
            .collect();
        Tensor::from_data(TensorData::new(ids, [nb * kq]), &device)
    };
    let gather = |t: &Tensor<4>| -> Tensor<5> {
        let blocks = t.clone().reshape([batch, heads, nb, b, dim]);
        if pattern.heads == 1 {
            return blocks
                .select(2, slots(0))
                .reshape([batch, heads, nb, kcat, dim]);
        }
        let per_head = (0..heads)
            .map(|h| {
                blocks
                    .clone()
                    .slice([0..batch, h..h + 1, 0..nb, 0..b, 0..dim])
                    .select(2, slots(h))
                    .reshape([batch, 1, nb, kcat, dim])
            })
            .collect();
        Tensor::cat(per_head, 1)
    };
    let (kg, vg) = (gather(&k), gather(&v));
    let qb = q.clone().reshape([batch, heads, nb, b, dim]);
    let local = qb.clone().matmul(kg.swap_dims(3, 4)) * scale; // [B, H, nb, b, K·b]

    // What the structure allows, per pattern head: [Hp, nb, b, K·b], built on the host (O(N·K·b)).
    let g = pattern.global_keys.len();
    let mut allowed = Vec::with_capacity(pattern.heads * padded * kcat);
    let mut key_pos = Vec::with_capacity(pattern.heads * nb * kcat);
    for h in 0..pattern.heads {
        for qblock in 0..nb {
            let slots = &pattern.key_blocks[(h * nb + qblock) * kq..(h * nb + qblock + 1) * kq];
            for i in qblock * b..(qblock + 1) * b {
                for slot in slots {
                    for off in 0..b {
                        let ok = slot.is_some_and(|kb| {
                            let j = kb * b + off;
                            j < len
                                && !pattern.global_keys.contains(&j)
                                && pattern.rule.allows(i, j)
                                && !(input.causal && j > i)
                        });
                        allowed.push(ok);
                    }
                }
            }
            for slot in slots {
                key_pos.extend((0..b).map(|off| (slot.unwrap_or(0) * b + off) as i64));
            }
        }
    }
    let hp = pattern.heads;
    let structure =
        Tensor::<5, Bool>::from_data(TensorData::new(allowed, [1, hp, nb, b, kcat]), &device);
    let key_pos = Tensor::<1, Int>::from_data(TensorData::new(key_pos, [hp * nb * kcat]), &device);
    let gathered_pad = key_pad
        .clone()
        .select(1, key_pos)
        .reshape([batch, hp, nb, 1, kcat])
        .greater_elem(0.5);
    let shape5 = [batch, heads, nb, b, kcat];
    let mut blocked = structure
        .expand(shape5)
        .bool_not()
        .bool_or(gathered_pad.expand(shape5));
    let mut scores = local;

    // Global keys: scored against every query, [B, H, nb, b, G].
    let globals = (g > 0).then(|| {
        let ids: Vec<i64> = pattern.global_keys.iter().map(|&j| j as i64).collect();
        Tensor::<1, Int>::from_data(TensorData::new(ids, [g]), &device)
    });
    if let Some(ids) = &globals {
        let kglob = k.clone().select(2, ids.clone()); // [B, H, G, D]
        let s = (q.clone().matmul(kglob.swap_dims(2, 3)) * scale).reshape([batch, heads, nb, b, g]);
        let after: Vec<bool> = (0..padded)
            .flat_map(|i| {
                pattern
                    .global_keys
                    .iter()
                    .map(move |&j| input.causal && j > i)
            })
            .collect();
        let causal_block =
            Tensor::<5, Bool>::from_data(TensorData::new(after, [1, 1, nb, b, g]), &device);
        let gpad = key_pad
            .clone()
            .select(1, ids.clone())
            .reshape([batch, 1, 1, 1, g])
            .greater_elem(0.5);
        let shape = [batch, heads, nb, b, g];
        let gblocked = causal_block.expand(shape).bool_or(gpad.expand(shape));
        scores = Tensor::cat(vec![scores, s], 4);
        blocked = Tensor::cat(vec![blocked, gblocked], 4);
    }

    let visible = crate::mask::visible_as(blocked.clone(), dtype);
    let weights = eft_kernels::softmax(crate::mask::block_out(scores, blocked)) * visible;
    let local_w = weights
        .clone()
        .slice([0..batch, 0..heads, 0..nb, 0..b, 0..kcat]);
    let mut out = local_w.matmul(vg).reshape([batch, heads, padded, dim]);
    if let Some(ids) = globals {
        let w = weights
            .slice([0..batch, 0..heads, 0..nb, 0..b, kcat..kcat + g])
            .reshape([batch, heads, padded, g]);
        out = out + w.matmul(v.clone().select(2, ids));
    }
    let mut out = out.slice([0..batch, 0..heads, 0..len, 0..dim]);

    // Global queries see everything: replace their rows with full attention rows.
    if !pattern.global_queries.is_empty() {
        let n = pattern.global_queries.len();
        let ids: Vec<i64> = pattern.global_queries.iter().map(|&i| i as i64).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [n]), &device);
        let unpad = |t: Tensor<4>| t.slice([0..batch, 0..heads, 0..len, 0..dim]);
        let qg = unpad(q).select(2, ids.clone());
        let later: Vec<bool> = pattern
            .global_queries
            .iter()
            .flat_map(|&i| (0..len).map(move |j| input.causal && j > i))
            .collect();
        let mut mask =
            Tensor::<4, Bool>::from_data(TensorData::new(later, [1, 1, n, len]), &device)
                .expand([batch, 1, n, len]);
        let real_pad = key_pad
            .slice([0..batch, 0..len])
            .greater_elem(0.5)
            .reshape([batch, 1, 1, len]);
        mask = mask.bool_or(real_pad.expand([batch, 1, n, len]));
        let rows = dense_reference(qg, unpad(k), unpad(v), Some(mask)); // [B, H, n, D]
        let current = out.clone().select(2, ids.clone());
        out = out.select_assign(2, ids, rows - current, IndexingUpdateOp::Add);
    }
    out
}

/// The dense oracle for `pattern`: `true` where query `i` must not see key `j`, `[1, Hp, N, N]`,
/// causal included (padding is added by the caller).
pub fn dense_blocked(pattern: &BlockPattern, causal: bool, device: &Device) -> Tensor<4, Bool> {
    let n = pattern.len;
    let mut blocked = Vec::with_capacity(pattern.heads * n * n);
    for h in 0..pattern.heads {
        for i in 0..n {
            for j in 0..n {
                blocked.push(!pattern.allows(h, i, j) || (causal && j > i));
            }
        }
    }
    Tensor::from_data(TensorData::new(blocked, [1, pattern.heads, n, n]), device)
}
