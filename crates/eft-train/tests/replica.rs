//! `train.replica`: another seed of the same run trains other weights on the same data, and
//! reproduces itself bit for bit.

use common::weights;
use eft_train::{TrainOptions, train};

mod common;

#[test]
fn a_replica_keeps_the_data_and_changes_the_weights() {
    let root = tempfile::tempdir().unwrap();
    let run = |replica: u64, name: &str| {
        let mut c = common::tiny_listops(name, 64, 16);
        c.train.replica = replica;
        let dir = root.path().join(name);
        let record = train(c, &dir, &TrainOptions::default()).unwrap();
        (record, weights(&dir))
    };
    let (a, wa) = run(0, "a");
    let (b, wb) = run(1, "b");
    let (c, wc) = run(1, "c");
    // The same data: split sizes and the majority class's test accuracy.
    assert_eq!(a.split_sizes, b.split_sizes);
    assert_eq!(
        a.majority_baseline.test_accuracy,
        b.majority_baseline.test_accuracy
    );
    let data = |r: &eft_train::RunRecord| eft_train::build_data(&r.config).unwrap();
    let (da, db) = (data(&a), data(&b));
    assert!(
        da.train == db.train && da.test == db.test,
        "the same examples"
    );
    assert_ne!(wa, wb, "replica 1 starts from other weights");
    assert_eq!(wb, wc, "a replica reproduces itself");
    assert_eq!(b.test, c.test);
}
