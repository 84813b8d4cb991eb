//! `eft search`: the same seed proposes the same candidates; killed at any point and rerun, a
//! search continues where it stopped without training a finished candidate again; bad spaces
//! and impossible budgets stop it before anything trains, with exit 2 and one line.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::ok;

mod common;

/// A search small enough for a test: tiny ListOps, 8 proxy steps, population 3.
fn search(out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eft"));
    c.args([
        "search",
        "--task",
        "listops",
        "--budget-evals",
        "6",
        "--proxy-steps",
        "8",
    ])
    .args(["--population", "3", "--sample", "2", "--seed", "5"])
    .args([
        "--set",
        "task.train=96",
        "--set",
        "task.val=16",
        "--set",
        "task.test=16",
    ])
    .args(["--set", "train.batch_size=8", "--set", "task.max_len=40"])
    .arg("--out")
    .arg(out)
    .env_remove("EFT_LOG");
    c
}

fn log(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("search.json")).unwrap()).unwrap()
}

/// Each proposal's candidate, parent and outcome kind, with its accuracy (measured times
/// differ between runs; training does not).
fn proposals(log: &serde_json::Value) -> Vec<String> {
    log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let o = &e["outcome"];
            format!(
                "{} {} {} {}",
                e["genome"], e["parent"], o["kind"], o["point"]["acc"]
            )
        })
        .collect()
}

#[test]
fn a_killed_search_continues_without_training_a_candidate_twice() {
    let root = tempfile::tempdir().unwrap();
    let whole = root.path().join("whole");
    ok(search(&whole).output().unwrap());
    let want = proposals(&log(&whole));
    assert!(want.len() >= 6, "{want:?}");
    assert!(whole.join("front.md").is_file() && whole.join("front.json").is_file());
    // Evolution mutated members once the population was full.
    assert!(log(&whole)["entries"][5]["parent"].is_number(), "{want:?}");

    let killed = root.path().join("killed");
    let mut child = search(&killed)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let entries = |d: &Path| {
        std::fs::read_to_string(d.join("search.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map_or(0, |l| l["entries"].as_array().unwrap().len())
    };
    while entries(&killed) < 2 {
        assert!(started.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        entries(&killed) < want.len(),
        "the kill came after the search ended; it tested no resume"
    );
    // What was finished before the kill, byte for byte.
    let finished: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(killed.join("cands"))
        .unwrap()
        .map(|e| e.unwrap().path().join("record.json"))
        .filter_map(|p| {
            let bytes = std::fs::read(&p).ok()?;
            let record: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
            (record["status"] == "finished").then_some((p, bytes))
        })
        .collect();
    assert!(finished.len() >= 2, "{} finished", finished.len());
    ok(search(&killed).output().unwrap());
    assert_eq!(
        proposals(&log(&killed)),
        want,
        "the rerun proposed other candidates"
    );
    for (path, bytes) in finished {
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{} was trained again",
            path.display()
        );
    }
    // A rerun of a finished search trains nothing and writes the same front.
    ok(search(&killed).output().unwrap());
    assert_eq!(proposals(&log(&killed)), want);
}

#[test]
fn bad_spaces_and_impossible_budgets_stop_before_anything_trains() {
    let root = tempfile::tempdir().unwrap();
    let space = root.path().join("space.toml");
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "[mechanisms]\nfull = {}\n[fields]\n\"model.n_layers\" = []\n",
            &[],
            "no choices",
        ),
        (
            "[mechanisms]\nfull = {}\n[fields]\n\"model.n_layers\" = { low = 3, high = 1 }\n",
            &[],
            "low = 3 is above high = 1",
        ),
        (
            "[mechanisms]\nfull = {}\n[fields]\n\"model.widht\" = [8]\n",
            &[],
            "model.widht",
        ),
        (
            "[mechanisms]\nfull = {}\n",
            &["--max-gflop-per-step", "1e-9"],
            "no candidate",
        ),
    ];
    for (i, (text, extra, says)) in cases.iter().enumerate() {
        std::fs::write(&space, text).unwrap();
        let out = root.path().join(format!("s{i}"));
        let run = search(&out)
            .arg("--space")
            .arg(&space)
            .args(*extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err} should say {says}");
        assert!(!out.exists(), "{} was written", out.display());
    }
}

/// A budget on the analytic cost rejects candidates before training: the log says why, no run
/// folder is made for them, and they do not count against the evaluations.
#[test]
fn candidates_over_the_budget_are_rejected_before_training() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("budget");
    ok(search(&out)
        .args(["--max-gflop-per-step", "0.02", "--strategy", "random"])
        .output()
        .unwrap());
    let log = log(&out);
    let entries = log["entries"].as_array().unwrap();
    let rejected: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["outcome"]["kind"] == "rejected")
        .collect();
    assert!(!rejected.is_empty(), "nothing rejected at 0.02 GFLOP/step");
    for e in &rejected {
        let why = e["outcome"]["why"].as_str().unwrap();
        assert!(why.contains("over --max-gflop-per-step 0.02"), "{why}");
        let dir = out
            .join("cands")
            .join(format!("{:03}", e["id"].as_u64().unwrap()));
        assert!(!dir.exists(), "{} was trained", dir.display());
    }
    let evaluated = entries.len() - rejected.len();
    assert_eq!(evaluated, 6);
    for e in entries.iter().filter(|e| e["outcome"]["kind"] == "trained") {
        let gflop = e["outcome"]["point"]["flops"].as_f64().unwrap() / 1e9;
        assert!(gflop <= 0.02, "{gflop} GFLOP/step trained");
    }
}
