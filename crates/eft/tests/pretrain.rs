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
    let init = format!("train.init_from={:?}", source.display().to_string());
    let fine_tune = |extra: &[&str]| {
        eft(data.path())
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
            .arg(out.path())
            .output()
            .unwrap()
    };
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
