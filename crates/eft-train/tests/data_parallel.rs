//! Data parallelism with ranks as threads: K ranks, each on its slice of a global batch of B,
//! train the model one process trains on batches of B, to f32 reduction-order tolerance; rank
//! 0 alone writes the run; the ranks' evaluations of slices of a split add up to the whole; a
//! batch the ranks cannot split evenly is refused on every rank.

use common::{train_ranks, train_ranks_with, weights};
use eft_train::{RunConfig, RunRecord, TrainOptions, train};

mod common;

fn tiny() -> RunConfig {
    let mut c = common::tiny_listops("run", 128, 16);
    c.model.dropout = 0.0;
    c.train.set_steps(20, 10);
    c
}

/// A stop request (Ctrl-C) seen by one rank stops every rank after the same step.
#[test]
fn a_stop_on_one_rank_stops_every_rank_after_the_same_step() {
    let root = tempfile::tempdir().unwrap();
    let results = train_ranks_with(&tiny(), &root.path().join("run"), 2, |rank| TrainOptions {
        stop: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(rank == 1)),
        ..TrainOptions::default()
    });
    for r in results {
        let r = r.unwrap();
        assert_eq!(r.status, eft_train::RunStatus::Interrupted);
        assert_eq!(r.steps_done, 1, "the request rode on step 1's sum");
    }
}

#[test]
fn k_ranks_train_the_model_one_process_trains() {
    same_model_on_ranks(&tiny());
}

/// With dropout, each example drawing its own masks, the ranks draw the one process's masks.
#[test]
fn k_ranks_with_dropout_train_the_model_one_process_trains() {
    let mut config = tiny();
    config.model.dropout = 0.1;
    config.train.per_example_dropout = true;
    same_model_on_ranks(&config);
}

fn same_model_on_ranks(config: &RunConfig) {
    let root = tempfile::tempdir().unwrap();
    let one = root.path().join("one");
    let single = train(config.clone(), &one, &TrainOptions::default()).unwrap();
    for ranks in [2, 4] {
        let dir = root.path().join(format!("ranks{ranks}"));
        let results = train_ranks(config, &dir, ranks);
        let record = results[0].clone().unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let parallel = record.parallel.unwrap();
        assert_eq!(parallel.ranks, ranks);
        assert!(parallel.all_reduce_seconds_per_step > 0.0);
        // Every slice's FLOPs and tokens, whichever rank computed them: the same tokens, and
        // no more FLOPs than the whole batch (a slice pads only to its own longest sequence).
        let (a, b) = (
            single.meter.as_ref().unwrap(),
            record.meter.as_ref().unwrap(),
        );
        assert!(b.total_flops <= a.total_flops && b.total_flops > 0.5 * a.total_flops);
        assert_eq!(single.tokens, record.tokens);
        let mut diffs = Vec::new();
        for ((name, x), (other, y)) in weights(&one).iter().zip(weights(&dir)) {
            assert_eq!(name, &other);
            diffs.extend(x.iter().zip(&y).map(|(p, q)| (p - q).abs()));
        }
        let worst = diffs.iter().copied().fold(0f32, f32::max);
        let off = diffs.iter().filter(|&&d| d > 1e-6).count();
        eprintln!("{ranks} ranks: largest weight difference {worst}, {off} over 1e-6");
        // Adam moves a weight by up to lr = 3e-3 a step. The order of the f32 sums moves all but
        // a few by under 1e-6 (measured: 2.4e-7); a weight whose gradient is zero up to rounding
        // can take a different Adam step (with dropout at 4 ranks: one weight, 1.3e-5).
        assert!(
            off * 1000 <= diffs.len(),
            "{ranks} ranks: {off} of {} differ",
            diffs.len()
        );
        assert!(worst < 1e-4, "{ranks} ranks: weights differ by {worst}");
        let losses = |r: &RunRecord| r.evals.iter().map(|e| e.train_loss).collect::<Vec<_>>();
        for (p, q) in losses(&single).iter().zip(losses(&record)) {
            assert!((p - q).abs() < 1e-4, "train loss {p} vs {q}");
        }
        // Each rank evaluated a slice of the split; the sums are the whole split's.
        let (a, b) = (single.test.unwrap(), record.test.unwrap());
        assert_eq!((a.accuracy, a.examples), (b.accuracy, b.examples));
        assert!(
            (a.loss - b.loss).abs() < 1e-5,
            "test loss {} vs {}",
            a.loss,
            b.loss
        );
        for (p, q) in single.evals.iter().zip(&record.evals) {
            assert_eq!(p.val_accuracy, q.val_accuracy);
            assert!((p.val_loss - q.val_loss).abs() < 1e-5);
        }
        // Only rank 0 wrote into the run's folder.
        let files = std::fs::read_dir(&dir).unwrap().count();
        assert!(files >= 3, "{files}");
    }
}

#[test]
fn a_batch_the_ranks_cannot_split_is_refused_everywhere() {
    let root = tempfile::tempdir().unwrap();
    let mut config = tiny();
    config.train.batch_size = 6;
    let results = train_ranks(&config, &root.path().join("run"), 4);
    for r in &results {
        let e = r.as_ref().unwrap_err();
        assert!(
            e.contains("train.batch_size") && e.contains("multiple of 4"),
            "{e}"
        );
    }
    // Dropout drawn per batch would differ from one process's: refused until asked per example.
    let mut config = tiny();
    config.model.dropout = 0.1;
    for r in &train_ranks(&config, &root.path().join("dropout"), 2) {
        let e = r.as_ref().unwrap_err();
        assert!(e.contains("train.per_example_dropout"), "{e}");
    }
}
