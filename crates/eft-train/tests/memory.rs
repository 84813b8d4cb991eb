//! A run whose training step cannot fit in memory is refused before its first step, with an
//! error that says so, instead of the allocator aborting the process mid-step.

use eft_train::{CHECKPOINT_FILE, TrainError, TrainOptions, preset, train};

#[test]
fn a_step_larger_than_the_machine_is_refused_up_front() {
    let Some(available) = eft_meter::available_memory_bytes() else {
        return; // Only Linux reports available memory.
    };
    // Full attention holds B·H·N² scores: 512 × 4 × 4096² × 4 bytes = 128 GiB, more than any
    // CI machine has; the estimate must say so before anything trains.
    let mut c = preset("mqar", "quick").unwrap();
    if let eft_data::TaskConfig::Mqar(t) = &mut c.task {
        (t.len, t.pairs, t.vocab, t.train, t.val, t.test) = (4096, 16, 8192, 512, 1, 1);
    }
    c.train.batch_size = 512;
    let dir = tempfile::tempdir().unwrap();
    let e = train(c.clone(), dir.path(), &TrainOptions::default()).unwrap_err();
    let TrainError::OutOfMemory {
        needed,
        available: seen,
    } = &e
    else {
        panic!("{e}");
    };
    assert!(*needed > 100 << 30 && *seen <= available.max(*seen), "{e}");
    let message = e.to_string();
    assert!(
        message.contains("out of memory") && message.contains("train.batch_size"),
        "{message}"
    );
    assert!(
        !dir.path().join(CHECKPOINT_FILE).exists(),
        "nothing trained"
    );

    // The same task at a size that fits trains as usual.
    c.train.batch_size = 1;
    if let eft_data::TaskConfig::Mqar(t) = &mut c.task {
        (t.len, t.pairs, t.vocab, t.train, t.val, t.test) = (32, 4, 64, 8, 2, 2);
    }
    c.train.set_steps(2, 2);
    c.train.schedule = eft_train::Schedule::Cosine {
        lr: 1e-3,
        warmup: 1,
        min_lr: 0.0,
    };
    let ok = tempfile::tempdir().unwrap();
    assert!(train(c, ok.path(), &TrainOptions::default()).is_ok());
}
