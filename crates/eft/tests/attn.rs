//! `eft attn`: file in, mechanism, file out, checked against the dense reference computed here.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use burn::tensor::{Bool, Device, Tensor, TensorData};
use eft_attention::{AttentionConfig, dense_reference, testing::assert_close, testing::to_f64};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

const DIMS: [usize; 4] = [2, 2, 13, 4];

fn write(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views = tensors.iter().map(|(n, dt, shape, raw)| {
        (
            n.to_string(),
            TensorView::new(*dt, shape.clone(), raw).unwrap(),
        )
    });
    std::fs::write(
        path,
        safetensors::serialize(views, None::<HashMap<String, String>>).unwrap(),
    )
    .unwrap();
}

fn f32_bytes(t: &Tensor<4>) -> Vec<u8> {
    to_f64(t.clone())
        .iter()
        .flat_map(|&v| (v as f32).to_le_bytes())
        .collect()
}

fn read(path: &Path, name: &str) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let t = file.tensor(name).unwrap();
    assert_eq!(t.dtype(), Dtype::F32);
    t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
        .collect()
}

fn attn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eft"))
        .arg("attn")
        .args(args)
        .output()
        .unwrap()
}

/// Writes a full input file; returns the tensors it holds.
fn input(path: &Path, seed: u64) -> [Tensor<4>; 4] {
    let device = Device::flex().autodiff();
    let (q, k, v, g) = eft_attention::testing::random_qkv(DIMS, seed, &device);
    let [b, _, n, _] = DIMS;
    let mask: Vec<u8> = (0..b * n)
        .flat_map(|p| if p % n < [13, 9][p / n] { 1.0f32 } else { 0.0 }.to_le_bytes())
        .collect();
    let shape = DIMS.to_vec();
    write(
        path,
        &[
            ("q", Dtype::F32, shape.clone(), f32_bytes(&q)),
            ("k", Dtype::F32, shape.clone(), f32_bytes(&k)),
            ("v", Dtype::F32, shape.clone(), f32_bytes(&v)),
            ("grad_out", Dtype::F32, shape, f32_bytes(&g)),
            ("mask", Dtype::F32, vec![b, n], mask),
        ],
    );
    [q, k, v, g]
}

#[test]
fn outputs_and_gradients_match_the_dense_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (
        dir.path().join("in.safetensors"),
        dir.path().join("out.safetensors"),
    );
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
    let cases: &[Case] = &[
        ("full", &[], true),
        ("sliding", &[("window", "3")], true),
        ("longformer", &[("window", "2"), ("global", "0,7")], false),
        (
            "bigbird",
            &[("block", "3"), ("random_blocks", "1"), ("seed", "4")],
            false,
        ),
    ];
    for (seed, &(name, params, causal)) in cases.iter().enumerate() {
        let [q, k, v, g] = input(&inp, seed as u64);
        let mut args = vec![
            "--mechanism",
            name,
            "--input",
            inp.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        let pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for p in &pairs {
            args.extend(["--param", p]);
        }
        if causal {
            args.push("--causal");
        }
        let run = attn(&args);
        assert!(
            run.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&run.stderr)
        );

        // The same computation here, through the dense reference and the mechanism's own pattern.
        let config =
            AttentionConfig::from_name_and_params(name, &eft_attention::testing::params(params))
                .unwrap();
        let [b, h, n, _] = DIMS;
        let device = q.device();
        let pad: Vec<bool> = (0..b * n).map(|p| p % n >= [13, 9][p / n]).collect();
        let pad = Tensor::<2, Bool>::from_data(TensorData::new(pad, [b, n]), &device);
        let mut blocked = eft_attention::blocked_positions(Some(pad), causal, n, &device)
            .unwrap()
            .expand([b, h, n, n]);
        if let Some(m) = config
            .init(eft_attention::testing::layout(0), &Device::flex())
            .patterned()
        {
            blocked = blocked.bool_or(
                m.plan(n, h, causal)
                    .dense_blocked(h, n, false, &device)
                    .expand([b, h, n, n]),
            );
        }
        let (q, k, v) = (q.require_grad(), k.require_grad(), v.require_grad());
        let reference = dense_reference(q.clone(), k.clone(), v.clone(), Some(blocked));
        let grads = (reference.clone() * g).sum().backward();
        assert_close(
            &format!("{name} out"),
            &read(&out, "out"),
            &to_f64(reference),
            1e-5,
            1e-6,
        );
        for (t, x) in [("dq", &q), ("dk", &k), ("dv", &v)] {
            assert_close(
                &format!("{name} {t}"),
                &read(&out, t),
                &to_f64(x.grad(&grads).unwrap()),
                1e-5,
                1e-6,
            );
        }
    }
}

fn fails_with(args: &[&str], needle: &str) {
    let run = attn(args);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: `{needle}` not in {err}");
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let good = p("good.safetensors");
    input(Path::new(&good), 1);
    let out = p("out.safetensors");
    let run = |mech: &str, file: &str, extra: &[&str], needle: &str| {
        let mut args = vec![
            "--mechanism",
            mech,
            "--input",
            file,
            "--output",
            out.as_str(),
        ];
        args.extend(extra);
        fails_with(&args, needle);
    };
    run("fulll", &good, &[], "bigbird");
    run("local", &good, &["--param", "block=0"], "block");
    run(
        "sliding",
        &good,
        &["--param", "window=40"],
        "sequence length 13",
    );
    run(
        "longformer",
        &good,
        &["--param", "window=2", "--param", "global=0,20"],
        "global",
    );
    run("bigbird", &good, &["--causal"], "no causal form");
    run("local", &good, &["--param", "width=3"], "width");
    // Limits of the second half of the zoo.
    run("linformer", &good, &["--param", "max_len=8"], "max_len");
    run(
        "synthesizer",
        &good,
        &["--param", "mode=random", "--param", "max_len=8"],
        "built for sequences up to 8",
    );
    run("lsh", &good, &["--param", "chunk=20"], "chunk");
    run("lsh", &good, &["--param", "buckets=3"], "even");
    run("nystrom", &good, &["--causal"], "no causal form");
    run("linformer", &good, &["--causal"], "no causal form");
    run(
        "sinkhorn",
        &good,
        &["--param", "block=4", "--param", "sortcut=1", "--causal"],
        "no causal form",
    );
    run("synthesizer", &good, &["--param", "seed=x"], "seed");

    let shape = DIMS.to_vec();
    let zeros = |n: usize| vec![0u8; n * 4];
    let numel: usize = DIMS.iter().product();
    let missing = p("missing.safetensors");
    write(
        Path::new(&missing),
        &[
            ("q", Dtype::F32, shape.clone(), zeros(numel)),
            ("k", Dtype::F32, shape.clone(), zeros(numel)),
        ],
    );
    run("full", &missing, &[], "`v` is missing");
    let mismatched = p("mismatched.safetensors");
    write(
        Path::new(&mismatched),
        &[
            ("q", Dtype::F32, shape.clone(), zeros(numel)),
            ("k", Dtype::F32, vec![2, 2, 12, 4], zeros(2 * 2 * 12 * 4)),
            ("v", Dtype::F32, shape.clone(), zeros(numel)),
        ],
    );
    run("full", &mismatched, &[], "k has shape [2, 2, 12, 4]");
    let wide = p("f64.safetensors");
    write(
        Path::new(&wide),
        &[
            ("q", Dtype::F64, shape.clone(), vec![0u8; numel * 8]),
            ("k", Dtype::F32, shape.clone(), zeros(numel)),
            ("v", Dtype::F32, shape.clone(), zeros(numel)),
        ],
    );
    run("full", &wide, &[], "F64");
    let junk = p("junk.safetensors");
    std::fs::write(&junk, b"hello").unwrap();
    run("full", &junk, &[], "not a safetensors file");
    assert!(!Path::new(&out).exists(), "a failed call wrote no output");
}

/// Shapes with a zero dimension (which panicked in six mechanisms and hung performer) and
/// non-finite values are refused, for every mechanism, before any work.
#[test]
fn empty_and_non_finite_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let qkv = |name: &str, shape: [usize; 4], q: Vec<f32>| {
        let path = dir.path().join(name);
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let zeros = vec![0.0; shape.iter().product()];
        write(
            &path,
            &[
                ("q", Dtype::F32, shape.to_vec(), bytes(&q)),
                ("k", Dtype::F32, shape.to_vec(), bytes(&zeros)),
                ("v", Dtype::F32, shape.to_vec(), bytes(&zeros)),
            ],
        );
        path.to_str().unwrap().to_string()
    };
    let empty_len = qkv("len0.safetensors", [1, 2, 0, 4], vec![]);
    let empty_dim = qkv("dim0.safetensors", [1, 2, 8, 0], vec![]);
    let mut nan = vec![0.5; 64];
    nan[37] = f32::NAN;
    let nan = qkv("nan.safetensors", [1, 2, 8, 4], nan);
    let infinite = qkv("inf.safetensors", [1, 2, 8, 4], vec![f32::INFINITY; 64]);
    let out = out.to_str().unwrap();
    for &mechanism in AttentionConfig::NAMES {
        for (file, needle) in [
            (&empty_len, "len = 0"),
            (&empty_dim, "head_dim = 0"),
            (&nan, "`q` holds NaN at flat index 37"),
            (&infinite, "`q` holds inf at flat index 0"),
        ] {
            let args = ["--mechanism", mechanism, "--input", file, "--output", out];
            fails_with(&args, needle);
        }
    }
    let huge = dir.path().join("huge.safetensors");
    let len = 1 << 20;
    let bytes = vec![0u8; len * 4];
    let shape = vec![1, 1, len, 1];
    write(
        &huge,
        &[
            ("q", Dtype::F32, shape.clone(), bytes.clone()),
            ("k", Dtype::F32, shape.clone(), bytes.clone()),
            ("v", Dtype::F32, shape, bytes),
        ],
    );
    // A 4 TiB score matrix from a 12 MiB file: refused before it is allocated.
    let args = [
        "--mechanism",
        "full",
        "--input",
        huge.to_str().unwrap(),
        "--output",
        out,
    ];
    fails_with(&args, "GiB is available");
    assert!(!Path::new(out).exists(), "a refused call wrote no output");
}

/// A learned mechanism writes the parameters it used: softmax(R)·V computed here from OUT's own
/// `R` reproduces OUT's output, and the same seed gives the same parameters.
#[test]
fn learned_parameters_are_written_and_reproduce_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let inp = dir.path().join("in.safetensors");
    let [_, _, v, _] = input(&inp, 9);
    let run = |seed: &str, out: &Path| {
        let o = attn(&[
            "--mechanism",
            "synthesizer",
            "--param",
            "mode=random",
            "--param",
            &format!("seed={seed}"),
            "--input",
            inp.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let (a, b, c) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
        dir.path().join("c.safetensors"),
    );
    run("3", &a);
    run("3", &b);
    run("4", &c);
    let names: Vec<String> = {
        let bytes = std::fs::read(&a).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        file.names().into_iter().map(String::from).collect()
    };
    assert!(
        names.contains(&"param.Synthesizer.first".to_string()),
        "{names:?}"
    );
    let r = read(&a, "param.Synthesizer.first"); // [H, N, N]
    assert_eq!(
        r,
        read(&b, "param.Synthesizer.first"),
        "same seed, same parameters"
    );
    assert_ne!(
        r,
        read(&c, "param.Synthesizer.first"),
        "another seed, other parameters"
    );

    let [bsz, h, n, d] = DIMS;
    let real = [13, 9];
    let vals = to_f64(v);
    let mut expected = vec![0.0; bsz * h * n * d];
    for bi in 0..bsz {
        for hh in 0..h {
            for i in 0..n {
                let row: Vec<f64> = (0..real[bi]).map(|j| r[(hh * n + i) * n + j]).collect();
                let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = row.iter().map(|x| (x - max).exp()).sum();
                for (j, x) in row.iter().enumerate() {
                    for e in 0..d {
                        expected[((bi * h + hh) * n + i) * d + e] +=
                            (x - max).exp() / z * vals[((bi * h + hh) * n + j) * d + e];
                    }
                }
            }
        }
    }
    assert_close("softmax(R)·V", &read(&a, "out"), &expected, 1e-5, 1e-6);
}
