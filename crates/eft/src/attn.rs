//! `eft attn`: one mechanism on tensors from a file, for checking other implementations against
//! eft (and eft against them).

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use eft_attention::{AttentionConfig, AttentionInput, AttentionLayout, AttentionShape};
use eft_train::params::{NamedArray, export_params, materialize};
use eft_train::safetensors_file::{decode_f32, encode_f32};
use eft_train::seeding::with_seed;
use safetensors::{Dtype, SafeTensors};

use crate::args::AttnArgs;

/// A problem with what the user gave: an input file (missing tensor, wrong dtype, shapes that do
/// not fit) or a name; exits 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

fn bad(path: &Path, problem: impl std::fmt::Display) -> anyhow::Error {
    BadInput(format!("{}: {problem}", path.display())).into()
}

/// A tensor read from the file: row-major values and shape.
struct Array {
    values: Vec<f32>,
    shape: Vec<usize>,
}

fn read(
    file: &SafeTensors,
    path: &Path,
    name: &str,
    required: bool,
) -> anyhow::Result<Option<Array>> {
    let view = match file.tensor(name) {
        Ok(v) => v,
        Err(_) if !required => return Ok(None),
        Err(_) => {
            return Err(bad(
                path,
                format!("tensor `{name}` is missing; it needs q, k and v"),
            ));
        }
    };
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => decode_f32(view.data()),
        // The padding mask may come as any 0/1 type.
        Dtype::U8 | Dtype::BOOL if name == "mask" => {
            view.data().iter().map(|&b| f32::from(b)).collect()
        }
        Dtype::I64 if name == "mask" => view
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        other => {
            return Err(bad(
                path,
                format!(
                    "tensor `{name}` is {other:?}; eft attn reads f32 (a mask may also be u8, bool or i64)"
                ),
            ));
        }
    };
    if let Some(i) = values.iter().position(|x| !x.is_finite()) {
        return Err(bad(
            path,
            format!(
                "tensor `{name}` holds {} at flat index {i}; eft attn needs finite inputs",
                values[i]
            ),
        ));
    }
    Ok(Some(Array {
        values,
        shape: view.shape().to_vec(),
    }))
}

/// What `eft attn` reads from its input file, checked: q, k and v of one B×H×N×D shape, an
/// optional 0/1 padding mask of B×N and an optional output gradient of q's shape, all finite.
struct Inputs {
    q: Array,
    k: Array,
    v: Array,
    mask: Option<Array>,
    grad_out: Option<Array>,
    shape: AttentionShape,
}

/// Reads and checks the safetensors bytes of the file at `path` (named in errors).
fn read_inputs(bytes: &[u8], path: &Path) -> anyhow::Result<Inputs> {
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(path, format!("not a safetensors file ({e})")))?;
    let get = |name| read(&file, path, name, true).map(|a| a.expect("required"));
    let (q, k, v) = (get("q")?, get("k")?, get("v")?);
    let [b, h, n, d]: [usize; 4] = q.shape.clone().try_into().map_err(|_| {
        bad(
            path,
            format!("q has shape {:?}; it must be B×H×N×D", q.shape),
        )
    })?;
    for (name, t) in [("k", &k), ("v", &v)] {
        if t.shape != q.shape {
            return Err(bad(
                path,
                format!("{name} has shape {:?} but q has {:?}", t.shape, q.shape),
            ));
        }
    }
    let mask = read(&file, path, "mask", false)?;
    if let Some(m) = &mask {
        if m.shape != [b, n] {
            return Err(bad(
                path,
                format!("mask has shape {:?}; it must be B×N = [{b}, {n}]", m.shape),
            ));
        }
        if m.values.iter().any(|&x| x != 0.0 && x != 1.0) {
            return Err(bad(
                path,
                "mask holds values other than 0 and 1 (1 = real token, 0 = padding)",
            ));
        }
    }
    let grad_out = read(&file, path, "grad_out", false)?;
    if let Some(g) = &grad_out
        && g.shape != q.shape
    {
        return Err(bad(
            path,
            format!("grad_out has shape {:?} but q has {:?}", g.shape, q.shape),
        ));
    }
    Ok(Inputs {
        q,
        k,
        v,
        mask,
        grad_out,
        shape: AttentionShape {
            batch: b,
            heads: h,
            len: n,
            head_dim: d,
        },
    })
}

/// Runs the command.
pub fn run(args: AttnArgs) -> anyhow::Result<ExitCode> {
    // `seed` draws the learned parameters; mechanisms with a seed of their own also receive it.
    let seed = match args.params.iter().rev().find(|(k, _)| k == "seed") {
        Some((_, raw)) => raw.parse::<u64>().map_err(|_| {
            BadInput(format!(
                "--param seed={raw}: the seed must be a whole number ≥ 0"
            ))
        })?,
        None => 0,
    };
    let params: Vec<(String, String)> = if AttentionConfig::has_param(&args.mechanism, "seed") {
        args.params.clone()
    } else {
        args.params
            .iter()
            .filter(|(k, _)| k != "seed")
            .cloned()
            .collect()
    };
    let config = AttentionConfig::from_name_and_params(&args.mechanism, &params)?;
    let path = &args.input;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let Inputs {
        q,
        k,
        v,
        mask,
        grad_out,
        shape,
    } = read_inputs(&bytes, path)?;
    config.check_causal(args.causal)?;
    config.check_input(shape)?;
    let [b, h, n, d] = [shape.batch, shape.heads, shape.len, shape.head_dim];

    let device = Device::flex().autodiff();
    let tensor = |a: &Array| {
        Tensor::<4>::from_data(TensorData::new(a.values.clone(), [b, h, n, d]), &device)
    };
    let (tq, tk, tv) = (
        tensor(&q).require_grad(),
        tensor(&k).require_grad(),
        tensor(&v).require_grad(),
    );
    let mut input =
        AttentionInput::new(tq.clone(), tk.clone(), tv.clone()).with_causal(args.causal);
    if let Some(m) = &mask {
        let padding: Vec<bool> = m.values.iter().map(|&x| x == 0.0).collect();
        input = input.with_key_padding(Tensor::<2, Bool>::from_data(
            TensorData::new(padding, [b, n]),
            &device,
        ));
    }
    let layout = AttentionLayout::for_shape(shape);
    let attention = with_seed(&device, seed, || {
        let a = config.init(layout, &device);
        materialize(&a);
        a
    });
    // What the call keeps for its backward pass: a 16 GiB score matrix from a 0.8 MB file
    // aborted the process allocating it.
    crate::memory::check_fits(
        format_args!("{} at this shape, for its backward pass,", args.mechanism),
        attention.cost(shape).saved_bytes,
    )
    .map_err(|e| bad(path, e))?;
    let out = attention.forward(input);
    let mut results: Vec<(String, NamedArray)> =
        vec![("out".into(), NamedArray::from_tensor(&out))];
    if let Some(g) = &grad_out {
        let grads = (out * tensor(g)).sum().backward();
        for (name, t) in [("dq", &tq), ("dk", &tk), ("dv", &tv)] {
            // An input the mechanism never reads (q, k of synthesizer-random) has gradient zero.
            let grad = t.grad(&grads).unwrap_or_else(|| t.zeros_like().inner());
            results.push((name.into(), NamedArray::from_tensor(&grad)));
        }
    }
    // The learned parameters used, so the output can be reproduced elsewhere.
    for (name, array) in export_params(&attention) {
        results.push((format!("param.{name}"), array));
    }
    write(&args.output, results)?;
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, arrays: Vec<(String, NamedArray)>) -> anyhow::Result<()> {
    let metadata = HashMap::from([(
        "producer".to_string(),
        format!("eft {}", env!("CARGO_PKG_VERSION")),
    )]);
    let bytes = encode_f32(arrays.iter().map(|(n, a)| (n.clone(), a)), metadata)
        .context("encoding the output")?;
    eft_train::write_atomic(path, &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use safetensors::tensor::TensorView;

    /// One tensor: a name `eft attn` looks for (or not), any of the dtypes it reads or refuses,
    /// a small shape, and bytes that are sometimes NaN, 2 or a wrong mask value.
    fn tensor() -> impl Strategy<Value = (String, Dtype, Vec<usize>, Vec<u8>)> {
        let name = prop::sample::select(vec!["q", "k", "v", "mask", "grad_out", "x"]);
        let dtype = prop::sample::select(vec![
            Dtype::F32,
            Dtype::U8,
            Dtype::BOOL,
            Dtype::I64,
            Dtype::F16,
        ]);
        let shape = prop::collection::vec(prop_oneof![3 => 1usize..4, 1 => Just(0usize)], 0..5);
        (name, dtype, shape, any::<u64>()).prop_map(|(name, dtype, shape, seed)| {
            let count: usize = shape.iter().product::<usize>() * dtype.bitsize() / 8;
            let pick = [0u8, 1, 2, 0x7f, 0xc0, 0x3f];
            let bytes = (0..count)
                .map(|i| pick[(seed.rotate_left(i as u32 * 3) % 6) as usize])
                .collect();
            (name.to_string(), dtype, shape, bytes)
        })
    }

    /// A file of up to six tensors (q, k and v of one shape in half the cases), maybe damaged.
    fn input_file() -> impl Strategy<Value = Vec<u8>> {
        let matched = (
            prop::collection::vec(1usize..4, 4),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(shape, mask, grad)| {
                let f32s = |n: usize| -> Vec<u8> {
                    (0..n)
                        .flat_map(|i| (i as f32 * 0.5 - 1.0).to_le_bytes())
                        .collect()
                };
                let n: usize = shape.iter().product();
                let mut ts: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = ["q", "k", "v"]
                    .iter()
                    .map(|name| (name.to_string(), Dtype::F32, shape.clone(), f32s(n)))
                    .collect();
                if mask {
                    let m = vec![shape[0], shape[2]];
                    ts.push(("mask".into(), Dtype::U8, m.clone(), vec![1; m[0] * m[1]]));
                }
                if grad {
                    ts.push(("grad_out".into(), Dtype::F32, shape, f32s(n)));
                }
                ts
            });
        let tensors = prop_oneof![matched, prop::collection::vec(tensor(), 0..6)];
        (
            tensors,
            any::<Option<(usize, u8)>>(),
            any::<Option<usize>>(),
        )
            .prop_map(|(tensors, flip, cut)| {
                let mut tensors = tensors;
                tensors.sort_by(|a, b| a.0.cmp(&b.0));
                tensors.dedup_by(|a, b| a.0 == b.0);
                let views: Vec<(String, TensorView)> = tensors
                    .iter()
                    .map(|(n, dt, shape, bytes)| {
                        (
                            n.clone(),
                            TensorView::new(*dt, shape.clone(), bytes).unwrap(),
                        )
                    })
                    .collect();
                let mut bytes = safetensors::serialize(views, None).unwrap();
                if let Some((at, x)) = flip {
                    let at = at % bytes.len();
                    bytes[at] ^= x;
                }
                if let Some(c) = cut {
                    bytes.truncate(c % (bytes.len() + 1));
                }
                bytes
            })
    }

    proptest! {
        #![proptest_config(eft_data::testing::fuzz_config())]

        /// Any file is read into q, k, v (and a mask and gradient) that fit together, or refused
        /// with an error naming it: never a panic.
        #[test]
        fn attn_input_reading_never_panics(bytes in input_file()) {
            let path = Path::new("in.safetensors");
            if let Ok(inputs) = read_inputs(&bytes, path) {
                let s = inputs.shape;
                let dims = vec![s.batch, s.heads, s.len, s.head_dim];
                for t in [&inputs.q, &inputs.k, &inputs.v].into_iter().chain(&inputs.grad_out) {
                    prop_assert_eq!(&t.shape, &dims);
                    prop_assert_eq!(t.values.len(), dims.iter().product::<usize>());
                    prop_assert!(t.values.iter().all(|x| x.is_finite()));
                }
                if let Some(m) = &inputs.mask {
                    prop_assert_eq!(&m.shape, &vec![s.batch, s.len]);
                    prop_assert!(m.values.iter().all(|&x| x == 0.0 || x == 1.0));
                }
            }
        }
    }
}
