//! `mpirun -np K eft train` (built with `--features mpi`): K ranks × a global batch train the
//! parameters one process trains on the same batch, with and without dropout, and so do two
//! ranks that each hold half of every layer (tensor parallelism); a killed rank
//! takes the others down within seconds and the run resumes from its last checkpoint, with
//! another number of ranks; a batch the ranks cannot split stops every rank with exit 2 and
//! one line.
#![cfg(feature = "mpi")]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::ok;

mod common;

use eft_train::{CHECKPOINT_FILE, Checkpoint};

const RUN: [&str; 16] = [
    "train",
    "--task",
    "listops",
    "--set",
    "model.dropout=0.0",
    "--set",
    "task.train=256",
    "--set",
    "task.val=32",
    "--set",
    "task.test=32",
    "--set",
    "train.batch_size=8",
    "--set",
    "train.eval_every=10",
    "--no-progress",
];

fn eft(ranks: usize) -> Command {
    let mut c = match ranks {
        1 => Command::new(env!("CARGO_BIN_EXE_eft")),
        k => {
            let mut c = Command::new("mpirun");
            c.args([
                "--allow-run-as-root",
                "--oversubscribe",
                "-np",
                &k.to_string(),
            ])
            .arg(env!("CARGO_BIN_EXE_eft"));
            c
        }
    };
    c.env_remove("EFT_LOG");
    c
}

fn weights(dir: &Path) -> Vec<Vec<f32>> {
    Checkpoint::load(&dir.join(CHECKPOINT_FILE))
        .unwrap()
        .model
        .into_values()
        .map(|a| a.values)
        .collect()
}

#[test]
fn ranks_train_what_one_process_trains() {
    same_model_on_ranks(&[], &[2, 4]);
}

/// With dropout, each example drawing its own masks (`train.per_example_dropout`).
#[test]
fn ranks_with_dropout_train_what_one_process_trains() {
    let dropout = [
        "--set",
        "model.dropout=0.1",
        "--set",
        "train.per_example_dropout=true",
    ];
    same_model_on_ranks(&dropout, &[2]);
}

fn same_model_on_ranks(extra: &[&str], rank_counts: &[usize]) {
    let out = tempfile::tempdir().unwrap();
    let train = |ranks: usize, name: &str| {
        ok(eft(ranks)
            .args(RUN)
            .args(extra)
            .args(["--steps", "20", "--name", name, "--out"])
            .arg(out.path())
            .output()
            .unwrap())
    };
    train(1, "one");
    let one = weights(&out.path().join("one"));
    for &ranks in rank_counts {
        let name = format!("ranks{ranks}");
        train(ranks, &name);
        let diffs = differences(&one, &out.path().join(&name));
        let worst = diffs.iter().copied().fold(0f32, f32::max);
        let off = diffs.iter().filter(|&&d| d > 1e-6).count();
        eprintln!(
            "{ranks} ranks: largest difference {worst}, {off} of {} over 1e-6",
            diffs.len()
        );
        // The order of the f32 sums: all but a few weights agree within 1e-6; a weight whose
        // gradient is zero up to rounding can take a different Adam step (ε = 1e-9 makes any
        // sign a step of up to lr, 2e-4 in this warm-up): measured 2 of 83,786 at 2.6e-5.
        assert!(
            off <= diffs.len() / 10_000,
            "{ranks} ranks: {off} weights differ"
        );
        assert!(worst < 1e-4, "{ranks} ranks: weights differ by {worst}");
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.path().join(&name).join("record.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(record["parallel"]["ranks"], ranks);
    }
}

/// Each weight's difference between `one`'s weights and those of the run in `dir`.
fn differences(one: &[Vec<f32>], dir: &Path) -> Vec<f32> {
    one.iter()
        .zip(weights(dir))
        .flat_map(|(a, b)| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `model.tensor_parallel = 2` under two ranks, each holding half of every layer's heads and
/// MLP columns, trains the one-process model (dropout keyed per example in both) and writes the
/// whole model; a split that does not divide the heads stops every rank with exit 2.
#[test]
fn ranks_splitting_the_layers_train_what_one_process_trains() {
    let out = tempfile::tempdir().unwrap();
    let keyed = [
        "--set",
        "model.dropout=0.1",
        "--set",
        "train.per_example_dropout=true",
    ];
    let train = |ranks: usize, name: &str, split: &[&str]| {
        eft(ranks)
            .args(RUN)
            .args(keyed)
            .args(split)
            .args(["--steps", "20", "--name", name, "--out"])
            .arg(out.path())
            .output()
            .unwrap()
    };
    ok(train(1, "one", &[]));
    ok(train(2, "split", &["--set", "model.tensor_parallel=2"]));
    let one = weights(&out.path().join("one"));
    let worst = differences(&one, &out.path().join("split"))
        .into_iter()
        .fold(0f32, f32::max);
    eprintln!("tensor parallel, 2 ranks: largest difference {worst}");
    assert!(worst < 1e-4, "weights differ by {worst}");
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("split").join("record.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["parallel"]["tensor_parallel"], 2);

    let odd = train(2, "odd", &["--set", "model.tensor_parallel=3"]);
    let err = String::from_utf8_lossy(&odd.stderr);
    assert_eq!(odd.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines.iter().all(|l| l.contains("model.tensor_parallel")),
        "{err}"
    );
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let child: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            // Fields after the command's closing parenthesis: state, then the parent's pid.
            let after = &stat[stat.rfind(')')? + 2..];
            let parent: u32 = after.split(' ').nth(1)?.parse().ok()?;
            (parent == pid).then_some(child)
        })
        .collect()
}

#[test]
fn a_killed_rank_stops_the_others_and_the_run_resumes() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    let mut launch = eft(2)
        .args(RUN)
        .args(["--steps", "100000", "--set", "train.checkpoint_every=20"])
        .args(["--name", "run", "--out"])
        .arg(out.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !dir.join(CHECKPOINT_FILE).exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let ranks = children(launch.id());
    assert_eq!(ranks.len(), 2, "{ranks:?}");
    // The shell's own kill: no procps needed.
    Command::new("sh")
        .args(["-c", &format!("kill -9 {}", ranks[1])])
        .status()
        .unwrap();
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = launch.try_wait().unwrap() {
            break status;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the other rank still runs"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    // Resumed by one process, then by two, from the last checkpoint.
    let done = |d: &Path| -> u64 {
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("record.json")).unwrap()).unwrap();
        r["steps_done"].as_u64().unwrap()
    };
    let before = done(&dir);
    assert!(before >= 20);
    let resume = |ranks: usize, stop: u64| {
        eft(ranks)
            .args(["train", "--resume"])
            .arg(&dir)
            .args(["--stop-after", &stop.to_string(), "--no-progress"])
            .output()
            .unwrap()
    };
    resume(1, before + 10);
    assert_eq!(done(&dir), before + 10);
    resume(2, before + 20);
    assert_eq!(done(&dir), before + 20);
}

#[test]
fn a_batch_the_ranks_cannot_split_stops_every_rank() {
    let out = tempfile::tempdir().unwrap();
    let run = eft(4)
        .args(RUN)
        .args(["--set", "train.batch_size=6", "--name", "odd", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    // Every rank refuses it before training starts, prints one line and exits with 2.
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 4, "{err}");
    for line in lines {
        assert!(
            line.starts_with("error: config field `train.batch_size` = 6")
                && line.ends_with("use a multiple of 4"),
            "{err}"
        );
    }
    let unnamed = eft(2)
        .args(RUN)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&unnamed.stderr).contains("give --name"));
}
