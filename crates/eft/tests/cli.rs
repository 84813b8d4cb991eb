//! The `eft` binary as a user meets it: bad input gets one line and a non-zero exit, never a
//! panic; Ctrl-C and `kill -9` mid-run both resume to the weights of an uninterrupted run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use eft_train::{CHECKPOINT_FILE, Checkpoint, RECORD_FILE};

fn eft() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eft"));
    c.env_remove("EFT_LOG");
    c
}

fn run(args: &[&str]) -> Output {
    eft().args(args).output().expect("eft runs")
}

/// Asserts a clean failure: non-zero exit, no panic, one line on stderr containing `needles`.
fn fails_with(args: &[&str], needles: &[&str]) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "{args:?} printed more than one line: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "{args:?}: `{n}` not in: {err}");
    }
}

#[test]
fn bad_input_is_one_line_and_a_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    fails_with(
        &["train", "--out", out, "--task", "sudoku"],
        &["sudoku", "listops"],
    );
    fails_with(
        &["train", "--out", out, "--preset", "huge"],
        &["huge", "quick, paper"],
    );
    fails_with(
        &["train", "--out", out, "--attention", "fulll"],
        &["fulll", "full"],
    );
    fails_with(&["train", "--out", out, "--param", "block=4"], &["block"]);
    fails_with(
        &["train", "--out", out, "--set", "model.d_model=wide"],
        &["wide"],
    );
    fails_with(
        &["train", "--out", out, "--set", "model.d_model=0"],
        &["model.d_model", "at least 1"],
    );
    fails_with(
        &["train", "--out", out, "--set", "model.d_model=-8"],
        &["-8"],
    );
    fails_with(
        &["train", "--out", out, "--set", "model.n_heads=3"],
        &["model.n_heads", "divide"],
    );
    fails_with(
        &["train", "--out", out, "--set", "model.depth=3"],
        &["`model.depth` = 3", "list-fields"],
    );
    fails_with(
        &["train", "--out", out, "--set", "train.batch_size=0"],
        &["train.batch_size"],
    );
    fails_with(
        &["train", "--out", out, "--set", "model.share={ cycle = 3 }"],
        &["model.share", "must divide model.n_layers = 2"],
    );
    fails_with(
        &["train", "--out", out, "--set", "model.share=some"],
        &["model.share", "{ cycle = k }"],
    );
    fails_with(
        &[
            "train",
            "--out",
            out,
            "--set",
            "model.recompute={ every = 0 }",
        ],
        &["model.recompute", "at least 1"],
    );
    fails_with(
        &["train", "--out", out, "--set", "model.recompute=sometimes"],
        &["model.recompute", "{ every = k }"],
    );
    let reversible = ["--set", "model.residual=reversible"];
    fails_with(
        &[
            &["train", "--out", out][..],
            &reversible,
            &["--set", "model.d_model=63", "--set", "model.n_heads=1"],
        ]
        .concat(),
        &["model.d_model", "even"],
    );
    fails_with(
        &[
            &["train", "--out", out][..],
            &reversible,
            &["--set", "model.n_heads=64"],
        ]
        .concat(),
        &["model.n_heads", "must divide 32"],
    );
    fails_with(
        &[
            &["train", "--out", out][..],
            &reversible,
            &["--set", "model.recompute=every"],
        ]
        .concat(),
        &["model.recompute", "already rebuild"],
    );
    fails_with(
        &["train", "--out", out, "--set", "model.residual=mirrored"],
        &["model.residual"],
    );
    fails_with(
        &["train", "--out", out, "--set", "model.ffn_chunk=0"],
        &["model.ffn_chunk", "at least 1"],
    );
    let switch = |fields: &str| format!("model.feed_forward={{ kind = \"switch\", {fields} }}");
    for (fields, want) in [
        ("experts = 1", "at least 2 experts"),
        ("experts = 4, capacity_factor = 0", "positive"),
        ("experts = 4, jitter = 1.5", "jitter"),
        ("capacity_factor = 2.0", "experts"),
    ] {
        fails_with(&["train", "--out", out, "--set", &switch(fields)], &[want]);
    }
    for threshold in ["0", "1.5"] {
        let exits = format!("model.exits={{ kind = \"confidence\", threshold = {threshold} }}");
        fails_with(
            &["train", "--out", out, "--set", &exits],
            &["model.exits.threshold"],
        );
    }
    for (fields, want) in [
        ("max_steps = 0", "model.depth.max_steps"),
        ("max_steps = 3, threshold = 1.5", "model.depth.threshold"),
    ] {
        let depth = format!("model.depth={{ kind = \"act\", {fields} }}");
        fails_with(&["train", "--out", out, "--set", &depth], &[want]);
    }
    fails_with(
        &["train", "--out", out, "--set", "train.precision=fp8"],
        &["train.precision", "bf16"],
    );
    fails_with(
        &[
            "train",
            "--out",
            out,
            "--attention",
            "lsh",
            "--set",
            "train.precision=f16",
        ],
        &["train.precision", "lsh", "no low-precision path"],
    );
    fails_with(
        &[
            "profile",
            "memory",
            "--techniques",
            "plain,magic",
            "--out",
            out,
        ],
        &["magic", "plain, recompute, reversible, shared, bf16, f16"],
    );
    fails_with(
        &["train", "--out", out, "--set", "task.max_len=3"],
        &["task.max_len"],
    );
    fails_with(
        &[
            "train",
            "--out",
            out,
            "--attention",
            "longformer",
            "--param",
            "window=4611686018427387904",
            "--param",
            "dilation=4",
        ],
        &["window"],
    );
    // Sizes that aborted or panicked allocating (or overflowed computing) their memory.
    for set in [
        "model.d_model=17179869184",
        "model.d_ff=1099511627776",
        "model.n_layers=1000000",
        "task.train=1000000000000",
        "task.train=9223372036854775807",
        "model.n_layers=4611686018427387904",
    ] {
        fails_with(
            &["train", "--out", out, "--set", set],
            &["out of memory", "GiB is available"],
        );
    }
    // eft profile at a shape whose score matrices (4 TiB) or model step cannot fit.
    let huge = ["--len", "1048576", "--batch", "64"];
    let profile = ["profile", "attention", "--mechanism", "full"];
    fails_with(&[&profile[..], &huge].concat(), &["GiB is available"]);
    fails_with(
        &[&profile[..], &huge, &["--model", "quick"]].concat(),
        &["GiB is available"],
    );
    fails_with(
        &[
            "train",
            "--out",
            out,
            "--set",
            "model.d_model=9223372036854775807",
        ],
        &["model.n_heads", "must divide"],
    );
    fails_with(
        &[
            "train",
            "--out",
            out,
            "--attention",
            "performer",
            "--param",
            "features=1000000000",
        ],
        &["out of memory", "GiB is available"],
    );
    for price in ["nan", "-1", "inf"] {
        fails_with(
            &[
                "train",
                "--out",
                out,
                "--set",
                &format!("meter.usd_per_hour={price}"),
            ],
            &["meter.usd_per_hour", "0 or more"],
        );
    }
    for lr in ["nan", "0", "-1"] {
        fails_with(
            &[
                "train",
                "--out",
                out,
                "--set",
                &format!("train.schedule.lr={lr}"),
            ],
            &["train.schedule.lr", "positive"],
        );
    }
    fails_with(
        &["train", "--out", out, "--config", "/nonexistent/run.toml"],
        &["/nonexistent/run.toml"],
    );
    fails_with(
        &["train", "--resume", out],
        &["no checkpoint here", "checkpoint.safetensors"],
    );
    fails_with(&["eval", out], &["no checkpoint here"]);
    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join(CHECKPOINT_FILE), b"\x10\0\0\0\0\0\0\0{\"a\":").unwrap();
    fails_with(
        &["train", "--resume", corrupt.to_str().unwrap()],
        &["corrupt"],
    );
    fails_with(&["eval", corrupt.to_str().unwrap()], &["corrupt"]);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() == 1,
        "failed runs wrote nothing but the test's own folder"
    );
}

/// Counts of zero (which gave meaningless JSON with exit 0), unknown task names (exit 0 in
/// silence) and unreadable config files (exit 1, the OS error printed twice) are usage errors.
#[test]
fn zero_counts_unknown_tasks_and_unreadable_configs_exit_2() {
    let usage = |args: &[&str], needle: &str| {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert!(err.contains(needle), "{args:?}: `{needle}` not in: {err}");
    };
    let profile = ["profile", "attention", "--mechanism", "full", "--len", "8"];
    for flag in ["--len", "--batch", "--heads", "--head-dim", "--repeats"] {
        let mut args = profile.to_vec();
        args.extend([flag, "0"]);
        usage(&args, flag);
    }
    usage(&["profile", "sweep", "--lens", "8,0"], "--lens");
    usage(&["profile", "matmul", "--size", "0"], "--size");
    usage(&["data", "fetch", "nosuch"], "listops");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let binary = env!("CARGO_BIN_EXE_eft");
    for config in [out, binary, "/nonexistent/run.toml"] {
        fails_with(&["train", "--out", out, "--config", config], &["--config"]);
        usage(&["train", "--out", out, "--config", config], config);
        let err = String::from_utf8_lossy(&run(&["train", "--config", config]).stderr).to_string();
        let os = err.split(": ").nth(1).unwrap_or_default().to_string();
        assert_eq!(err.matches(&os).count(), 1, "the OS error once: {err}");
    }
}

#[test]
fn dry_run_prints_the_resolved_config() {
    let out = run(&[
        "train",
        "--dry-run",
        "--steps",
        "321",
        "--seed",
        "5",
        "--set",
        "model.d_model=32",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let config = eft_train::RunConfig::from_toml(&text).unwrap();
    assert_eq!(config.train.steps, 321);
    assert_eq!(config.seed, 5);
    assert_eq!(config.model.d_model, 32);
    assert_eq!(config.name, "listops-full-quick");
}

/// What a new user tries first: a short run, a mechanism chosen through --set, a dry run on a
/// device this build lacks, a misspelt split, and a log that is not a terminal.
#[test]
fn first_commands_just_work() {
    let dry = |extra: &[&str]| {
        let out = run(&[&["train", "--dry-run"], extra].concat());
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{extra:?}: {err}");
        eft_train::RunConfig::from_toml(&String::from_utf8(out.stdout).unwrap()).unwrap()
    };
    // The quick preset warms up for 100 steps; a 60-step run scales that instead of failing.
    let short = dry(&["--task", "listops", "--preset", "quick", "--steps", "60"]);
    assert!(
        matches!(short.train.schedule, eft_train::Schedule::Cosine { warmup, .. } if warmup < 60),
        "{:?}",
        short.train.schedule
    );
    let local = dry(&["--set", "model.attention={ kind = \"local\", block = 8 }"]);
    assert_eq!(
        local.name, "listops-local-quick",
        "the run is named for its mechanism"
    );
    dry(&["--device", "wgpu"]);
    let listed = run(&["train", "--list-fields", "--task", "mqar"]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    for field in [
        "model.d_model",
        "task.pairs",
        "linformer:",
        "model.attention.max_len",
    ] {
        assert!(listed.contains(field), "{field} not listed: {listed}");
    }
    let typo = run(&["train", "--dry-run", "--set", "model.widht=3"]);
    assert!(String::from_utf8_lossy(&typo.stderr).contains("--list-fields"));
    let split = run(&["eval", "no-such-run", "--split", "valid"]);
    assert_eq!(split.status.code(), Some(2), "a bad split is a usage error");
    assert!(String::from_utf8_lossy(&split.stderr).contains("valid"));

    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    let out = eft()
        .args(["train", "--steps", "40", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(dir.path().join("runs"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().filter(|l| l.contains("step 2/40")).count() == 1
            && err.contains("step 40/40")
            && err.contains("tok/s")
            && err.contains("ETA"),
        "plain progress lines: {err}"
    );
    assert!(
        !err.contains('\x1b'),
        "no terminal codes into a pipe: {err}"
    );
}

#[test]
fn repeating_a_command_never_overwrites_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    let out = dir.path().join("runs");
    let train = |extra: &[&str]| {
        eft()
            .args(["train", "--no-progress", "--steps", "20", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(train(&[]).status.success());
    assert!(train(&[]).status.success());
    assert!(out.join("listops-full-quick/record.json").exists());
    assert!(out.join("listops-full-quick-2/record.json").exists());
    let before = std::fs::read(out.join("listops-full-quick/checkpoint.safetensors")).unwrap();
    let taken = train(&["--name", "listops-full-quick"]);
    assert_eq!(taken.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&taken.stderr).contains("already holds a run"));
    let after = std::fs::read(out.join("listops-full-quick/checkpoint.safetensors")).unwrap();
    assert_eq!(before, after);
}

#[test]
fn help_explains_every_option() {
    let out = run(&["train", "--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--task",
        "--preset",
        "--config",
        "--attention",
        "--param",
        "--steps",
        "--seed",
        "--batch-size",
        "--name",
        "--out",
        "--set",
        "--resume",
        "--stop-after",
        "--dry-run",
        "--no-progress",
        "--device",
    ] {
        assert!(help.contains(flag), "{flag} missing from train --help");
    }
    assert!(
        String::from_utf8(run(&["--help"]).stdout)
            .unwrap()
            .contains("eval")
    );
}

/// A run small enough to take a few seconds, checkpointing every step so a kill lands mid-run.
/// `eft prune` writes a new run beside the source, pruned as asked, and refuses a sparsity out
/// of range or a missing source in one line, before anything trains.
#[test]
fn prune_writes_a_new_run_and_names_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    let config_path = config.to_str().unwrap();
    let out = dir.path().join("runs");
    let trained = eft()
        .args(["train", "--no-progress", "--steps", "20", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .args(["--set", "train.keep_at=[0]"])
        .output()
        .unwrap();
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    let source = out.join("listops-full-quick");
    let before = std::fs::read(source.join("checkpoint.safetensors")).unwrap();
    let pruned = eft()
        .arg("prune")
        .arg(&source)
        .args(["--sparsity", "0.75", "--finetune", "5", "--no-progress"])
        .args([
            "--set",
            "train.schedule={ kind = \"constant\", lr = 0.001 }",
        ])
        .output()
        .unwrap();
    assert!(
        pruned.status.success(),
        "{}",
        String::from_utf8_lossy(&pruned.stderr)
    );
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("listops-full-quick-prune75/record.json")).unwrap(),
    )
    .unwrap();
    let sparsity = record["prune"]["sparsity"].as_f64().unwrap();
    assert!((sparsity - 0.75).abs() < 1e-3, "{sparsity}");
    assert_eq!(record["steps_done"], 5);
    assert_eq!(
        std::fs::read(source.join("checkpoint.safetensors")).unwrap(),
        before
    );
    // Two lottery rounds: a ticket rewound to the initialisation and a control per round.
    let lottery = eft()
        .arg("prune")
        .arg(&source)
        .args([
            "--lottery",
            "--rounds",
            "2",
            "--rate",
            "0.5",
            "--no-progress",
        ])
        .args([
            "--set",
            "train.schedule={ kind = \"constant\", lr = 0.001 }",
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&lottery.stdout);
    assert!(
        lottery.status.success(),
        "{}",
        String::from_utf8_lossy(&lottery.stderr)
    );
    assert!(table.contains("| 2 | 75.0% |"), "{table}");
    for run in ["r1-ticket", "r1-control", "r2-ticket", "r2-control"] {
        let record = out.join(format!("listops-full-quick-lottery-{run}/record.json"));
        assert!(record.exists(), "{run}");
    }
    // Half the heads removed (one of each layer's two), fine-tuned for 3 steps.
    let heads = eft()
        .arg("prune")
        .arg(&source)
        .args([
            "--heads",
            "0.5",
            "--finetune",
            "3",
            "--importance-batches",
            "2",
        ])
        .arg("--no-progress")
        .output()
        .unwrap();
    assert!(
        heads.status.success(),
        "{}",
        String::from_utf8_lossy(&heads.stderr)
    );
    let table = String::from_utf8_lossy(&heads.stdout);
    assert_eq!(table.matches("| yes |").count(), 2, "{table}");
    let pruned_dir = out.join("listops-full-quick-heads50");
    let config: toml::Table =
        toml::from_str(&std::fs::read_to_string(pruned_dir.join("config.toml")).unwrap()).unwrap();
    let kept = config["model"]["kept_heads"].as_array().unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(
        kept.iter().all(|l| l.as_array().unwrap().len() == 1),
        "{kept:?}"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pruned_dir.join("record.json")).unwrap()).unwrap();
    assert_eq!(record["steps_done"], 3);
    // Its checkpoint loads into the model its config builds.
    let eval = eft().arg("eval").arg(&pruned_dir).output().unwrap();
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    // The report names the technique and where the weights came from.
    let report = eft().arg("report").arg(&pruned_dir).output().unwrap();
    let table = String::from_utf8_lossy(&report.stdout);
    assert!(
        table.contains("heads 2 of 4 kept") && table.contains("from listops-full-quick"),
        "{table}"
    );
    let source = source.to_str().unwrap();
    fails_with(&["prune", source, "--heads", "1"], &["--heads", "[0, 1)"]);
    fails_with(
        &["prune", source, "--heads", "0.75"],
        &["--heads", "removes 3 of the 4 heads", "at most 2"],
    );
    fails_with(
        &[
            "train",
            "--config",
            config_path,
            "--attention",
            "strided",
            "--set",
            "model.kept_heads=[[0], [1]]",
        ],
        &["strided", "index"],
    );
    fails_with(
        &[
            "train",
            "--config",
            config_path,
            "--set",
            "model.kept_heads=[[0], [2]]",
        ],
        &["model.kept_heads", "below n_heads = 2"],
    );
    fails_with(
        &["prune", source, "--lottery", "--rewind", "3"],
        &["--rewind", "keep_at=[3]"],
    );
    fails_with(
        &["prune", source, "--sparsity", "1"],
        &["train.prune.sparsity", "[0, 1)"],
    );
    fails_with(
        &["prune", "/nonexistent/run", "--sparsity", "0.5"],
        &["no checkpoint"],
    );
}

fn tiny_config(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(
        &path,
        r#"
seed = 3
[task]
min_len = 5
max_len = 30
max_depth = 3
train = 128
val = 16
test = 2000
[model]
d_model = 16
n_heads = 2
d_ff = 32
dropout = 0.1
[train]
steps = 300
batch_size = 8
eval_every = 100
checkpoint_every = 1
schedule = { kind = "cosine", lr = 0.003, warmup = 10 }
"#,
    )
    .unwrap();
    path
}

fn start(config: &Path, out: &Path, name: &str) -> Child {
    eft()
        .args(["train", "--no-progress", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(["--name", name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until the run's record shows at least `steps` steps done.
fn wait_for_steps(run: &Path, steps: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(run.join(RECORD_FILE))
            && let Ok(r) = serde_json::from_str::<serde_json::Value>(&text)
            && r["steps_done"].as_u64().unwrap_or(0) >= steps as u64
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} never reached step {steps}", run.display());
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Kills a run with `kill -9` at 20 points spread over its 300 steps, each a seeded few
/// milliseconds after a step's record appeared (so kills land in steps, checkpoint writes and
/// validation), resuming after each, and the last just after the final checkpoint (during the
/// test evaluation). After every kill the run folder holds a loadable checkpoint and a record that
/// never says finished without a test result. Leaves the run killed, for the caller to resume.
fn kill_at_twenty_points(config: &Path, run: &Path) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let out = run.parent().unwrap();
    let name = run.file_name().unwrap().to_str().unwrap();
    for point in 0..20usize {
        let mut child = match point {
            0 => start(config, out, name),
            _ => eft()
                .args(["train", "--no-progress", "--resume"])
                .arg(run)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        };
        let target = if point == 19 {
            300
        } else {
            15 * point + 1 + next(10) as usize
        };
        wait_for_steps(run, target);
        if point < 19 {
            std::thread::sleep(Duration::from_micros(next(8000)));
        }
        signal(&child, "-KILL");
        child.wait().unwrap();
        let c = Checkpoint::load(&run.join(CHECKPOINT_FILE))
            .unwrap_or_else(|e| panic!("kill {point} at step {target}: {e}"));
        assert!(
            c.state.step >= target.min(300) - 1,
            "kill {point}: checkpoint behind"
        );
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join(RECORD_FILE)).unwrap()).unwrap();
        assert!(
            record["status"] != "finished" || record["test"].is_object(),
            "kill {point}: finished without a test result"
        );
        let leftovers: Vec<_> = std::fs::read_dir(run)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.len() <= 1, "kill {point}: {leftovers:?}");
    }
}

#[test]
#[cfg(unix)]
fn killed_or_interrupted_runs_resume_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    let out = dir.path().join("runs");

    let mut straight = start(&config, &out, "straight");
    assert!(straight.wait().unwrap().success());

    kill_at_twenty_points(&config, &out.join("killed"));

    let mut interrupted = start(&config, &out, "interrupted");
    wait_for_steps(&out.join("interrupted"), 5);
    signal(&interrupted, "-INT");
    let status = interrupted.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "Ctrl-C exits 130 after checkpointing"
    );

    let reference = Checkpoint::load(&out.join("straight").join(CHECKPOINT_FILE)).unwrap();
    for name in ["killed", "interrupted"] {
        let run_dir = out.join(name);
        let before = Checkpoint::load(&run_dir.join(CHECKPOINT_FILE)).unwrap();
        assert!(before.state.step <= 300, "{name} has a checkpoint");
        let record = std::fs::read_to_string(run_dir.join(RECORD_FILE)).unwrap();
        // A machine fast enough to finish the test evaluation before the last kill leaves
        // nothing to resume.
        if !record.contains("\"status\": \"finished\"") {
            let resumed = eft()
                .args(["train", "--no-progress", "--resume"])
                .arg(&run_dir)
                .output()
                .unwrap();
            assert!(
                resumed.status.success(),
                "{}",
                String::from_utf8_lossy(&resumed.stderr)
            );
        }
        let after = Checkpoint::load(&run_dir.join(CHECKPOINT_FILE)).unwrap();
        assert_eq!(after.state.step, 300);
        assert_eq!(after.model, reference.model, "{name}: final weights differ");
        assert_eq!(
            after.adam, reference.adam,
            "{name}: final optimizer state differs"
        );
        same_metrics(&out.join("straight"), &run_dir);
    }

    let eval = run(&["eval", out.join("straight").to_str().unwrap()]);
    assert!(eval.status.success());
    let text = String::from_utf8(eval.stdout).unwrap();
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("straight").join(RECORD_FILE)).unwrap(),
    )
    .unwrap();
    let acc = record["test"]["accuracy"].as_f64().unwrap();
    assert!(
        text.contains(&format!("{:.2}%", 100.0 * acc)),
        "eval agrees with the record: {text}"
    );
    // A run without exits has no thresholds to sweep.
    let straight = out.join("straight");
    fails_with(
        &[
            "eval",
            straight.to_str().unwrap(),
            "--exit-threshold",
            "0.5",
        ],
        &["--exit-threshold", "no exits"],
    );
}

/// The metrics stream of a killed or interrupted and resumed run holds every line of the
/// uninterrupted run's once, in order, with the same values (timings aside; values that pass
/// through the checkpoint's JSON may differ in the last bit).
fn same_metrics(reference: &Path, run: &Path) {
    let lines = eft_train::metrics::read;
    let (want, got) = (lines(reference), lines(run));
    let key = |l: &eft_train::metrics::MetricsLine| (l.kind, l.step);
    assert_eq!(
        got.iter().map(key).collect::<Vec<_>>(),
        want.iter().map(key).collect::<Vec<_>>(),
        "{}: metrics lines missing, repeated or out of order",
        run.display()
    );
    // 300 steps, a line every 10, validation every 100, one test line.
    assert_eq!(want.len(), 30 + 3 + 1);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(1.0);
    for (w, g) in want.iter().zip(&got) {
        assert!(
            close(w.loss, g.loss)
                && close(w.accuracy, g.accuracy)
                && w.lr == g.lr
                && w.grad_norm
                    .zip(g.grad_norm)
                    .is_none_or(|(a, b)| close(a, b)),
            "{}: {w:?} became {g:?}",
            run.display()
        );
    }
    let csv = std::fs::read_to_string(run.join(eft_train::metrics::METRICS_CSV)).unwrap();
    assert_eq!(
        csv.lines().count(),
        want.len() + 1,
        "the CSV has the same lines"
    );
}

/// A run folder belongs to one process: a second `eft train` with the same --name, and a
/// --resume while it trains, are refused naming the owner (both ran and overwrote it before);
/// two runs started together without --name get folders of their own.
#[test]
#[cfg(unix)]
fn a_run_folder_belongs_to_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    let out = dir.path().join("runs");
    let mut first = start(&config, &out, "taken");
    wait_for_steps(&out.join("taken"), 2);
    let owner = format!("in use by process {}", first.id());
    let config_arg = config.to_str().unwrap();
    let out_arg = out.to_str().unwrap();
    let taken = out.join("taken");
    for args in [
        vec![
            "train", "--config", config_arg, "--out", out_arg, "--name", "taken",
        ],
        vec!["train", "--resume", taken.to_str().unwrap()],
    ] {
        let refused = run(&args);
        let err = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(&owner), "{args:?}: {err}");
    }
    signal(&first, "-KILL");
    first.wait().unwrap();

    let unnamed = || {
        eft()
            .args([
                "train",
                "--no-progress",
                "--stop-after",
                "3",
                "--config",
                config_arg,
            ])
            .args(["--out", out_arg])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (unnamed(), unnamed());
    let (a, b) = (a.wait().unwrap(), b.wait().unwrap());
    assert_eq!(
        (a.code(), b.code()),
        (Some(130), Some(130)),
        "both stop after 3 steps"
    );
    let mut runs: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "taken")
        .collect();
    runs.sort();
    assert_eq!(runs.len(), 2, "two folders: {runs:?}");
    for run in runs {
        let c = Checkpoint::load(&out.join(&run).join(CHECKPOINT_FILE)).unwrap();
        assert_eq!(c.state.step, 3, "{run} holds one run's 3 steps");
        assert_eq!(c.state.sessions, 1, "{run} was never shared");
    }
}

#[test]
fn profile_measures_one_call_and_a_sweep_writes_its_table() {
    let out = run(&[
        "profile",
        "attention",
        "--mechanism",
        "sliding",
        "--param",
        "window=8",
        "--len",
        "64",
        "--repeats",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(m["seconds"].as_f64().unwrap() > 0.0);
    assert!(m["flops"].as_f64().unwrap() > 0.0);

    // A whole training step of the quick model: more FLOPs than the attention call alone.
    let model = run(&[
        "profile",
        "attention",
        "--mechanism",
        "sliding",
        "--param",
        "window=8",
        "--len",
        "64",
        "--repeats",
        "1",
        "--model",
        "quick",
    ]);
    assert!(
        model.status.success(),
        "{}",
        String::from_utf8_lossy(&model.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&model.stdout).unwrap();
    assert!(s["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(s["head_dim"], 16, "the quick model's heads");
    assert!(s["flops"].as_f64().unwrap() > m["flops"].as_f64().unwrap());

    let dir = tempfile::tempdir().unwrap();
    let sweep = eft()
        .args([
            "profile",
            "sweep",
            "--mechanisms",
            "full,local",
            "--lens",
            "64,128",
            "--repeats",
            "1",
            "--max-gib",
            "1",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        sweep.status.success(),
        "{}",
        String::from_utf8_lossy(&sweep.stderr)
    );
    let table = std::fs::read_to_string(dir.path().join("attention-cpu.md")).unwrap();
    assert!(
        table.contains("| full |") && table.contains("| local |") && table.contains("N=128"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("attention-cpu.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 4);

    // A second sweep of one mechanism keeps the other's results.
    let again = eft()
        .args([
            "profile",
            "sweep",
            "--mechanisms",
            "local",
            "--lens",
            "64,128",
            "--repeats",
            "1",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(again.status.success());
    let table = std::fs::read_to_string(dir.path().join("attention-cpu.md")).unwrap();
    assert!(
        table.contains("| full |") && table.contains("| local |"),
        "{table}"
    );
    assert!(table.contains("LRA Table 2"), "{table}");
    let csv = std::fs::read_to_string(dir.path().join("attention-cpu.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    for chart in ["attention-time.png", "attention-memory.svg"] {
        let len = std::fs::metadata(dir.path().join(chart)).map_or(0, |m| m.len());
        assert!(len > 1000, "{chart}: {len} bytes");
    }

    // `all` mechanisms at a chosen shape, with the issue's spelling of the options.
    let everything = tempfile::tempdir().unwrap();
    let all = eft()
        .args([
            "profile",
            "sweep",
            "--mechanisms",
            "all",
            "--lengths",
            "64",
            "--batch",
            "2",
            "--heads",
            "2",
            "--head-dim",
            "8",
            "--repeats",
            "1",
            "--out",
        ])
        .arg(everything.path())
        .output()
        .unwrap();
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    let csv = std::fs::read_to_string(everything.path().join("attention-cpu.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + eft_attention::AttentionConfig::NAMES.len(),
        "{csv}"
    );
    assert!(
        csv.lines().skip(1).all(|l| l.contains(",2,2,64,8,")),
        "{csv}"
    );
    let md = std::fs::read_to_string(everything.path().join("attention-cpu.md")).unwrap();
    assert!(md.contains("B=2, H=2, D=8"), "{md}");

    // A time budget stops a mechanism cleanly: recorded, and longer lengths not tried.
    let budget = eft()
        .args([
            "profile",
            "sweep",
            "--mechanisms",
            "full",
            "--lens",
            "256,512",
            "--repeats",
            "1",
            "--max-seconds",
            "0.001",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        budget.status.success(),
        "{}",
        String::from_utf8_lossy(&budget.stderr)
    );
    let table = std::fs::read_to_string(dir.path().join("attention-cpu.md")).unwrap();
    assert!(
        table.contains("over budget: more than 0.001 s")
            && table.contains("over budget at a shorter length"),
        "{table}"
    );
}

/// The arena runs every cell as its own run, records a failing cell without stopping the others,
/// writes the report, and on a rerun keeps finished cells instead of training them again.
#[test]
fn arena_runs_cells_records_failures_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let arena_of = |mechanisms: &str, steps: &str, extra: &[&str]| {
        eft()
            .args([
                "arena",
                "--preset",
                "quick",
                "--tasks",
                "listops",
                "--mechanisms",
                mechanisms,
                "--set",
                steps,
                "--set",
                "train.schedule.warmup=1",
                "--set",
                "train.batch_size=8",
                "--set",
                "train.eval_every=2",
                "--set",
                "train.checkpoint_every=2",
                "--set",
                "task.train=64",
                "--set",
                "task.val=16",
                "--set",
                "task.test=16",
                "--seeds",
                "1",
                "--verdict-lens",
                "64,128",
                "--no-progress",
                "--name",
                "tiny",
                "--out",
            ])
            .arg(dir.path())
            .args(extra)
            .output()
            .unwrap()
    };
    let arena = |steps: &str| arena_of("full,local:block=500,linear", steps, &[]);
    let first = arena("train.steps=4");
    let err = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(1), "one cell fails: {err}");
    assert!(
        err.contains("[3/3] listops × linear"),
        "the last cell still ran: {err}"
    );
    let root = dir.path().join("tiny");
    let md = std::fs::read_to_string(root.join("report.md")).unwrap();
    assert!(md.contains("| full |") && md.contains("| linear |"), "{md}");
    assert!(
        md.contains("failed") && md.contains("block"),
        "the failure is explained: {md}"
    );
    assert!(md.contains("(36.4%)"), "LRA's figure beside full: {md}");
    assert!(md.contains("majority class"), "{md}");
    assert!(md.contains("| learned? |"), "{md}");
    assert!(
        md.contains("## Verdict on LRA's findings") && md.contains("N = 128:"),
        "the verdict rests on the profiled lengths too: {md}"
    );
    assert!(
        root.join("attention-cpu.json").exists(),
        "the profile is kept for a rerun"
    );
    // linear's trained attention measured against softmax on its own activations; full's is
    // softmax itself.
    assert!(
        md.contains("## How close each mechanism is to softmax attention")
            && md.contains("· <0.01% |"),
        "{md}"
    );
    let layers = std::fs::read_to_string(root.join("fidelity.csv")).unwrap();
    assert!(
        layers.lines().any(|l| l.starts_with("listops,linear,0,1,")),
        "{layers}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("report.json")).unwrap()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    assert!(root.join("listops-full").join("record.json").exists());
    assert!(
        md.contains("peak heap/step"),
        "the memory column says which: {md}"
    );

    // eft report over the arena's runs: both memory figures, named; curves and bubbles drawn.
    let charts = dir.path().join("charts");
    let report = run(&[
        "report",
        root.to_str().unwrap(),
        "--curves",
        charts.to_str().unwrap(),
        "--plots",
        charts.to_str().unwrap(),
    ]);
    let table = String::from_utf8_lossy(&report.stdout);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    assert!(
        table.contains("peak heap/step") && table.contains("peak RSS"),
        "{table}"
    );
    for chart in ["curves.png", "curves.svg", "bubbles.png"] {
        assert!(charts.join(chart).exists(), "{chart} not drawn");
    }
    let svg = std::fs::read_to_string(charts.join("curves.svg")).unwrap();
    assert!(
        svg.contains("listops-full"),
        "curves are labelled by run name"
    );

    // eft export: the weights alone in PyTorch's layout, and a check batch with eft's logits.
    let (weights, check) = (
        dir.path().join("w.safetensors"),
        dir.path().join("c.safetensors"),
    );
    let export = run(&[
        "export",
        root.join("listops-full").to_str().unwrap(),
        weights.to_str().unwrap(),
        "--format",
        "pytorch",
        "--check-batch",
        check.to_str().unwrap(),
    ]);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let bytes = std::fs::read(&weights).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let shape = |name: &str| file.tensor(name).unwrap().shape().to_vec();
    // The quick model: width 64, MLP 128, ListOps' 10 classes; Linear as [out, in].
    assert_eq!(shape("head_out.weight"), [10, 128]);
    assert_eq!(shape("encoder.blocks.0.feed_forward.up.weight"), [128, 64]);
    assert_eq!(shape("encoder.final_norm.weight"), [64]);
    assert!(
        file.names().iter().all(|n| !n.starts_with("adam")),
        "no optimiser state"
    );
    let bytes = std::fs::read(&check).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.tensor("logits").unwrap().shape(), [8, 10]);

    // A finished cell's measurement is kept beside it and reused by a rerun: marked here with
    // an error no model would give, it reaches the rerun's report.
    let kept = root.join("listops-linear").join("fidelity.json");
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&kept).unwrap()).unwrap();
    for layer in saved["layers"].as_array_mut().unwrap() {
        layer["vs_softmax"] = serde_json::json!(0.0777);
    }
    std::fs::write(&kept, serde_json::to_vec(&saved).unwrap()).unwrap();
    let again = arena("train.steps=4");
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(err.matches("ended earlier: kept").count(), 2, "{err}");
    let md = std::fs::read_to_string(root.join("report.md")).unwrap();
    assert!(
        md.contains("· 7.77% |"),
        "the kept measurement is reused: {md}"
    );

    // --report-only trains nothing: the report holds the cells that ended, not performer's.
    let only = arena_of("full,linear,performer", "train.steps=4", &["--report-only"]);
    let err = String::from_utf8_lossy(&only.stderr);
    assert!(only.status.success(), "{err}");
    assert!(
        err.contains("report only: 2 of 3 cells have ended"),
        "{err}"
    );
    assert!(!root.join("listops-performer").exists(), "nothing trained");
    let md = std::fs::read_to_string(root.join("report.md")).unwrap();
    assert!(
        md.contains("| linear |") && !md.contains("| performer |"),
        "{md}"
    );
    let none = arena_of("performer", "train.steps=4", &["--report-only"]);
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(
        !none.status.success() && err.contains("none of the 1 cells"),
        "{err}"
    );

    // Other settings under the same name: the old cells are neither reused nor overwritten.
    let record = std::fs::read(root.join("listops-full").join("record.json")).unwrap();
    let changed = arena("train.steps=6");
    let err = String::from_utf8_lossy(&changed.stderr);
    assert_eq!(changed.status.code(), Some(1), "{err}");
    assert!(
        err.contains("holds a run with other settings") && err.contains("steps = 4"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(root.join("listops-full").join("record.json")).unwrap(),
        record
    );
}

/// Without npm on the PATH, fetching the image data says what to install, in one line.
#[test]
fn data_fetch_without_its_client_says_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let out = eft()
        .args(["data", "fetch", "image"])
        .env("EFT_DATA", dir.path())
        .env("PATH", "")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("`npm` is needed") && err.contains("apt-get install npm"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// `eft data pathfinder --png` writes images a person can open, labelled in their names, and a
/// geometry that cannot fit is one line and a non-zero exit.
#[test]
fn pathfinder_pngs_are_written_for_people_to_look_at() {
    let dir = tempfile::tempdir().unwrap();
    let out = eft()
        .args([
            "data",
            "pathfinder",
            "--count",
            "3",
            "--size",
            "32",
            "--png",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "pathfinder-0-connected.png",
            "pathfinder-1-apart.png",
            "pathfinder-2-connected.png"
        ]
    );
    let png = std::fs::read(dir.path().join(&names[0])).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let bad = eft()
        .args(["data", "pathfinder", "--size", "10", "--png"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "a parameter error: {err}");
    assert!(
        err.contains("do not fit") && !err.contains("panicked"),
        "{err}"
    );
}
