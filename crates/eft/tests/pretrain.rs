//! Masked-byte pretraining end to end on small stand-ins for the IMDb and Brown packages: a quick
//! model learns to fill masked bytes well above the majority byte, its encoder fine-tunes on Text
//! through `train.init_from`, and an encoder of another width is refused in one line, leaving no
//! folder.

use std::path::Path;
use std::process::Command;

mod common;

use common::{fake_brown, fake_imdb};

fn eft(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eft"));
    c.env_remove("EFT_LOG").env("EFT_DATA", data);
    c
}

const SMALL: [&str; 4] = ["--set", "model.d_model=32", "--set", "model.d_ff=64"];

/// Five steps of Text at 32 bytes from the encoder of the run in `source`.
fn fine_tune(data: &Path, out: &Path, source: &Path, extra: &[&str]) -> std::process::Output {
    let init = format!("train.init_from={:?}", source.display().to_string());
    eft(data)
        .args([
            "train", "--task", "text", "--preset", "quick", "--steps", "5",
        ])
        .args(["--set", "task.max_len=32", "--set", "task.train=200"])
        .args([
            "--set",
            "task.val=20",
            "--set",
            "task.test=50",
            "--set",
            &init,
        ])
        .args(extra)
        .arg("--no-progress")
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn pretraining_learns_and_its_encoder_fine_tunes_on_text() {
    let data = tempfile::tempdir().unwrap();
    fake_imdb(data.path());
    fake_brown(data.path());
    let out = tempfile::tempdir().unwrap();
    let pretrain = eft(data.path())
        .args([
            "train", "--task", "mlm", "--preset", "quick", "--steps", "400",
        ])
        .args([
            "--name",
            "mlm",
            "--set",
            "task.len=32",
            "--set",
            "task.train=3000",
        ])
        .args([
            "--set",
            "train.schedule={ kind = \"cosine\", lr = 0.003, warmup = 20 }",
        ])
        .args(SMALL)
        .arg("--no-progress")
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        pretrain.status.success(),
        "{}",
        String::from_utf8_lossy(&pretrain.stderr)
    );
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("mlm/record.json")).unwrap())
            .unwrap();
    let accuracy = record["test"]["accuracy"].as_f64().unwrap();
    let majority = record["majority_baseline"]["test_accuracy"]
        .as_f64()
        .unwrap();
    assert!(
        accuracy > majority + 0.05,
        "{accuracy} vs majority {majority}"
    );

    let source = out.path().join("mlm");
    let fine_tune = |extra: &[&str]| fine_tune(data.path(), out.path(), &source, extra);
    let tuned = fine_tune(&[&SMALL[..], &["--name", "text"]].concat());
    assert!(
        tuned.status.success(),
        "{}",
        String::from_utf8_lossy(&tuned.stderr)
    );
    let wide = fine_tune(&["--set", "model.d_ff=64", "--name", "wide"]);
    let err = String::from_utf8_lossy(&wide.stderr);
    assert_eq!(wide.status.code(), Some(2), "{err}");
    // The error is one line after the run's start line, and the refused run leaves no folder.
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(
        last.contains("encoder does not fit") && last.contains("query"),
        "{err}"
    );
    assert!(!out.path().join("wide").exists());
}

/// `eft pretrain --objective electra --flops B` runs the whole steps B pays for (by the meter's
/// count), records the objective and the detection statistics, names ELECTRA in `eft report`,
/// and its discriminator fine-tunes on Text; bad settings are one-line errors, exit 2.
#[test]
fn electra_spends_its_flop_budget_and_fine_tunes() {
    let data = tempfile::tempdir().unwrap();
    fake_imdb(data.path());
    fake_brown(data.path());
    let out = tempfile::tempdir().unwrap();
    let budget = 1e10;
    let pretrain = |extra: &[&str]| {
        eft(data.path())
            .args(["pretrain", "--objective", "electra", "--no-progress"])
            .args(["--set", "task.len=32", "--set", "task.train=3000"])
            .args([
                "--set",
                "train.schedule={ kind = \"constant\", lr = 0.003 }",
            ])
            .args(SMALL)
            .args(extra)
            .arg("--out")
            .arg(out.path())
            .output()
            .unwrap()
    };
    let run = pretrain(&["--flops", &budget.to_string(), "--name", "electra"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("electra/record.json")).unwrap(),
    )
    .unwrap();
    let total = record["meter"]["total_flops"].as_f64().unwrap();
    let steps = record["steps_done"].as_f64().unwrap();
    assert!(
        total <= budget && total + total / steps > budget,
        "{steps} steps, {total} FLOPs"
    );
    assert_eq!(record["config"]["train"]["electra"]["rtd_weight"], 50.0);
    let stats = &record["evals"][0]["layer_stats"];
    let share = stats["replaced_share"][0].as_f64().unwrap();
    assert!(share > 0.0 && share <= 0.16, "{share}");
    assert!(stats["rtd_accuracy"][0].as_f64().unwrap() > 0.0);
    let report = eft(data.path())
        .arg("report")
        .arg(out.path().join("electra"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&report.stdout).contains("ELECTRA (generator ×0.25, λ 50)"));

    let tuned = fine_tune(
        data.path(),
        out.path(),
        &out.path().join("electra"),
        &[&SMALL[..], &["--name", "text"]].concat(),
    );
    assert!(
        tuned.status.success(),
        "{}",
        String::from_utf8_lossy(&tuned.stderr)
    );

    for (extra, field) in [
        (&["--generator", "0"][..], "train.electra.generator"),
        (&["--rtd-weight=-1"][..], "train.electra.rtd_weight"),
        (&["--flops", "10"][..], "--flops"),
        (
            &["--set", "model.recompute=\"every\""][..],
            "model.recompute",
        ),
    ] {
        let bad = pretrain(extra);
        let err = String::from_utf8_lossy(&bad.stderr);
        assert_eq!(bad.status.code(), Some(2), "{extra:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(field), "{extra:?}: {err}");
    }
    let other_task = eft(data.path())
        .args([
            "train",
            "--task",
            "text",
            "--set",
            "train.electra={}",
            "--dry-run",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&other_task.stderr);
    assert_eq!(other_task.status.code(), Some(2), "{err}");
    assert!(
        err.contains("train.electra") && err.contains("task mlm"),
        "{err}"
    );
}
