//! The language-modelling task end to end, on a small stand-in for the IMDb package (EFT_DATA
//! points at a folder holding a `reviews.json` of generated English-like reviews): a quick causal
//! model learns, well below 8 bits per byte and below the unigram baseline the record states, and
//! a mechanism whose causal form leaks is refused before anything trains.

use std::path::Path;
use std::process::Command;

mod common;

use common::fake_imdb;

fn eft(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eft"));
    c.env_remove("EFT_LOG").env("EFT_DATA", data);
    c
}

#[test]
fn a_quick_language_model_learns_below_the_unigram_baseline() {
    let data = tempfile::tempdir().unwrap();
    fake_imdb(data.path());
    let out = tempfile::tempdir().unwrap();
    let run = eft(data.path())
        .args([
            "train", "--task", "lm", "--preset", "quick", "--steps", "150", "--name", "lm",
        ])
        .args([
            "--set",
            "task.len=32",
            "--set",
            "task.train=3000",
            "--set",
            "model.d_model=32",
        ])
        .args(["--set", "model.d_ff=64", "--no-progress", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("lm").join("record.json")).unwrap(),
    )
    .unwrap();
    let bpb = &record["bits_per_byte"];
    let (test, unigram) = (
        bpb["test"].as_f64().unwrap(),
        bpb["unigram"].as_f64().unwrap(),
    );
    assert!(
        test < 0.8 * unigram && unigram < 8.0,
        "{test} bits per byte, unigram {unigram}"
    );
    assert!(stdout.contains("bits per byte"), "{stdout}");

    // Generation: the same seed gives the same text, greedy decoding repeats itself exactly,
    // and bad settings are one line and exit 2.
    let run_dir = out.path().join("lm");
    let generate = |extra: &[&str]| {
        let out = eft(data.path())
            .arg("generate")
            .arg(&run_dir)
            .args(["--tokens", "40"])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let with_prompt = |extra: &[&str]| generate(&[&["--prompt", "the film"][..], extra].concat());
    let (code, text, err) = with_prompt(&["--seed", "5"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        text.starts_with("the film") && text.trim_end().len() > "the film".len(),
        "{text}"
    );
    assert_eq!(with_prompt(&["--seed", "5"]).1, text, "seeded");
    let greedy = |seed| with_prompt(&["--top-k", "1", "--seed", seed]).1;
    assert_eq!(greedy("1"), greedy("2"), "greedy decoding draws nothing");
    for (flag, value) in [("--temperature", "0"), ("--top-k", "0")] {
        let (code, _, err) = with_prompt(&[flag, value]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(flag), "{err}");
    }
    let long = "a".repeat(40);
    let (code, _, err) = generate(&["--prompt", &long]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("32 positions"), "{err}");

    let leaky = eft(data.path())
        .args(["train", "--task", "lm", "--attention", "lsh", "--dry-run"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&leaky.stderr);
    assert_eq!(leaky.status.code(), Some(2), "{err}");
    assert!(
        err.contains("model.attention") && err.contains("later bytes"),
        "{err}"
    );
    let dropping = eft(data.path())
        .args([
            "train",
            "--task",
            "lm",
            "--set",
            "model.feed_forward={ kind = \"switch\", experts = 4 }",
            "--dry-run",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&dropping.stderr);
    assert_eq!(dropping.status.code(), Some(2), "{err}");
    assert!(err.contains("capacity_factor"), "{err}");
    let encoder = eft(data.path())
        .args([
            "train",
            "--task",
            "lm",
            "--set",
            "model.causal=false",
            "--dry-run",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&encoder.stderr);
    assert_eq!(encoder.status.code(), Some(2), "{err}");
    assert!(err.contains("model.causal"), "{err}");
}
