//! How long the cells still to train will take, from the cells trained so far.

/// Minutes the `left` cells' tasks will take: each is expected to last the mean of this
/// session's cells of its task, or of all cells trained so far when its task has none yet
/// (cells of different tasks differ tenfold); `None` before any cell was timed.
pub fn minutes_left<'a>(
    timed: &[(String, f64)],
    left: impl IntoIterator<Item = &'a str>,
) -> Option<f64> {
    if timed.is_empty() {
        return None;
    }
    let mean = |of: &mut dyn Iterator<Item = f64>| {
        let (sum, n) = of.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
        (n > 0).then(|| sum / n as f64)
    };
    let overall = mean(&mut timed.iter().map(|t| t.1))?;
    let seconds: f64 = left
        .into_iter()
        .map(|task| mean(&mut timed.iter().filter(|t| t.0 == task).map(|t| t.1)).unwrap_or(overall))
        .sum();
    Some(seconds / 60.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_of_a_timed_task_take_its_mean_and_others_the_overall_mean() {
        assert_eq!(minutes_left(&[], ["listops"]), None);
        let timed = vec![
            ("listops".to_string(), 60.0),
            ("listops".to_string(), 120.0),
            ("image".to_string(), 300.0),
        ];
        // listops: 90 s; image: 300 s; text (none yet): the mean of all, 160 s.
        let got = minutes_left(&timed, ["listops", "image", "text"]).unwrap();
        assert!((got - (90.0 + 300.0 + 160.0) / 60.0).abs() < 1e-12, "{got}");
    }
}
