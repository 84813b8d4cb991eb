//! LRA's findings as checked statements: sparse attention is the most accurate, kernel attention
//! the fastest, low-rank attention the lightest, and no mechanism is best on every task. Each is
//! judged on this arena's cells (per task, at its length, with the seed spread) and the speed and
//! memory findings again on single attention calls at long lengths (`eft profile`).

use super::report::{Accuracy, Row, first_seen};

/// The family an attention kind (`[model.attention] kind`) belongs to, in the taxonomy of the
/// notes (Tay et al.'s survey).
pub fn family(attention: &str) -> &'static str {
    match attention {
        "full" | "flash" => "exact",
        "local" | "sliding" | "strided" | "fixed" | "cascade" | "blockbert" | "longformer"
        | "bigbird" => "sparse",
        "lsh" => "hashing",
        "linformer" | "nystrom" => "low-rank",
        "linear" | "performer" | "cosformer" => "kernel",
        "sinkhorn" | "synthesizer" => "learned pattern",
        "xl" => "recurrence",
        _ => "other",
    }
}

/// Relative difference below which two single timings or memory peaks count as a tie: single
/// runs on a shared 2-core host move by this much.
pub const COST_TOLERANCE: f64 = 0.10;

/// One attention call's measured cost at a length (from the arena's `eft profile` sweep).
#[derive(Debug, Clone)]
pub struct Profiled {
    /// Attention kind (`eft profile` measures an attention, not a column's techniques).
    pub mechanism: String,
    /// Sequence length N.
    pub len: usize,
    /// Median seconds of a forward+backward pass, if measured.
    pub seconds: Option<f64>,
    /// Peak heap of a pass in bytes, if measured.
    pub heap: Option<f64>,
}

/// How a statement fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    Holds,
    DoesNotHold,
    Undecided,
}

impl Judgement {
    fn show(self) -> &'static str {
        match self {
            Self::Holds => "**holds**",
            Self::DoesNotHold => "**does not hold**",
            Self::Undecided => "undecided",
        }
    }

    /// From how often the family won and how often another did (ties count for neither).
    fn from_wins(family: usize, others: usize) -> Self {
        match family.cmp(&others) {
            std::cmp::Ordering::Greater => Self::Holds,
            std::cmp::Ordering::Less => Self::DoesNotHold,
            std::cmp::Ordering::Equal => Self::Undecided,
        }
    }
}

/// One line of the verdict table.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The statement, as LRA makes it.
    pub statement: String,
    /// The comparisons it rests on, one per task or length.
    pub evidence: Vec<String>,
    pub judgement: Judgement,
}

/// Each column's family, from the attention kind of its cells' configs: a column's name
/// (`full+switch`, `nystrom-pinv_iters6`) is for people, not to be parsed.
struct Families<'a>(Vec<(&'a str, &'static str)>);

impl<'a> Families<'a> {
    fn of_rows(rows: &'a [Row]) -> Self {
        Self(
            rows.iter()
                .map(|r| (r.mechanism.as_str(), family(&r.attention)))
                .collect(),
        )
    }

    /// The family of column `mechanism` ("other" for a column without rows).
    fn of(&self, mechanism: &str) -> &'static str {
        self.0
            .iter()
            .find(|(m, _)| *m == mechanism)
            .map_or("other", |(_, f)| f)
    }
}

/// A task's accuracy figures: each mechanism's over its seeds, and the majority baseline.
struct TaskAccuracy<'a> {
    task: &'a str,
    baseline: f64,
    cells: Vec<(&'a str, Accuracy)>,
}

fn task_accuracies(rows: &[Row]) -> Vec<TaskAccuracy<'_>> {
    let mechanisms = first_seen(rows, |r| &r.mechanism);
    first_seen(rows, |r| &r.task)
        .into_iter()
        .filter_map(|task| {
            let baseline = rows
                .iter()
                .find(|r| r.task == task)
                .and_then(|r| r.majority_baseline)?;
            let cells = mechanisms
                .iter()
                .filter_map(|m| Some((*m, Accuracy::of_cell(rows, m, task)?)))
                .collect();
            Some(TaskAccuracy {
                task,
                baseline,
                cells,
            })
        })
        .collect()
}

/// Each task with a baseline, in order, and whether it learned: `full` (or, without it, the
/// best mechanism) is above the majority baseline by more than its seed spread, and by more
/// than its test split's sampling error (what one seed has instead of a spread).
pub fn learned_tasks(rows: &[Row]) -> Vec<(&str, bool)> {
    task_accuracies(rows)
        .iter()
        .map(|t| (t.task, learned(t)))
        .collect()
}

fn learned(t: &TaskAccuracy) -> bool {
    let full = t.cells.iter().find(|(m, _)| *m == "full");
    full.or_else(|| best(&t.cells, |_| true))
        .is_some_and(|(_, a)| a.learned(t.baseline))
}

/// The best cell by mean among those `keep` admits.
fn best<'a>(
    cells: &'a [(&'a str, Accuracy)],
    keep: impl Fn(&str) -> bool,
) -> Option<&'a (&'a str, Accuracy)> {
    cells
        .iter()
        .filter(|(m, _)| keep(m))
        .max_by(|a, b| a.1.mean.total_cmp(&b.1.mean))
}

/// "Sparse attention is the most accurate": per learned task, the best sparse mechanism against
/// the best of every other family; a difference within the larger seed spread is a tie.
fn sparse_most_accurate(tasks: &[TaskAccuracy], families: &Families) -> Finding {
    let (mut wins, mut losses) = (0, 0);
    let mut evidence = Vec::new();
    for t in tasks {
        let (Some(s), Some(o)) = (
            best(&t.cells, |m| families.of(m) == "sparse"),
            best(&t.cells, |m| families.of(m) != "sparse"),
        ) else {
            continue;
        };
        let outcome = if s.1.ties(&o.1) || s.1.mean == o.1.mean {
            "tie"
        } else if s.1.mean > o.1.mean {
            wins += 1;
            "sparse ahead"
        } else {
            losses += 1;
            families.of(o.0)
        };
        evidence.push(format!(
            "{}: {} {} vs {} {} → {outcome}",
            t.task,
            s.0,
            s.1.show(),
            o.0,
            o.1.show()
        ));
    }
    Finding {
        statement: "sparse attention is the most accurate".into(),
        evidence,
        judgement: Judgement::from_wins(wins, losses),
    }
}

/// The cheapest of `points` by `cost` (lower is better) among those `keep` admits.
fn cheapest<'a>(points: &[(&'a str, f64)], keep: impl Fn(&str) -> bool) -> Option<(&'a str, f64)> {
    points
        .iter()
        .filter(|(m, _)| keep(m))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .copied()
}

/// Compares the family's cheapest against everyone else's at each place (a task or a length):
/// `points` are (place, [(mechanism, cost)]) with lower cost better, `family_of` names a
/// mechanism's family, `show` writes a cost.
fn family_cheapest(
    statement: &str,
    wanted: &str,
    places: Vec<(String, Vec<(&str, f64)>)>,
    family_of: &dyn Fn(&str) -> &'static str,
    show: fn(f64) -> String,
) -> Finding {
    let (mut wins, mut losses) = (0, 0);
    let mut evidence = Vec::new();
    for (place, points) in places {
        let (Some(f), Some(o)) = (
            cheapest(&points, |m| family_of(m) == wanted),
            cheapest(&points, |m| family_of(m) != wanted),
        ) else {
            continue;
        };
        let outcome = if (f.1 - o.1).abs() <= COST_TOLERANCE * f.1.max(o.1) {
            "tie".to_string()
        } else if f.1 < o.1 {
            wins += 1;
            format!("{wanted} ahead")
        } else {
            losses += 1;
            family_of(o.0).to_string()
        };
        evidence.push(format!(
            "{place}: {} {} vs {} {} → {outcome}",
            f.0,
            show(f.1),
            o.0,
            show(o.1)
        ));
    }
    Finding {
        statement: statement.into(),
        evidence,
        judgement: Judgement::from_wins(wins, losses),
    }
}

/// "No mechanism is best on every task": is any mechanism best or tied with the best on every
/// learned task?
fn none_best_everywhere(tasks: &[TaskAccuracy]) -> Finding {
    let mut evidence = Vec::new();
    let mut everywhere: Option<Vec<&str>> = None;
    for t in tasks {
        let Some(top) = best(&t.cells, |_| true) else {
            continue;
        };
        let leaders: Vec<&str> = t
            .cells
            .iter()
            .filter(|(_, a)| a.mean == top.1.mean || a.ties(&top.1))
            .map(|(m, _)| *m)
            .collect();
        evidence.push(format!("{}: {}", t.task, leaders.join(", ")));
        everywhere = Some(match everywhere {
            None => leaders,
            Some(before) => before.into_iter().filter(|m| leaders.contains(m)).collect(),
        });
    }
    let judgement = match &everywhere {
        _ if evidence.len() < 2 => Judgement::Undecided,
        Some(all) if !all.is_empty() => {
            evidence.push(format!("best or tied on every task: {}", all.join(", ")));
            Judgement::DoesNotHold
        }
        _ => Judgement::Holds,
    };
    Finding {
        statement: "no mechanism is best on every task".into(),
        evidence,
        judgement,
    }
}

fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

fn mebibytes(b: f64) -> String {
    format!("{:.0} MiB", b / f64::from(1u32 << 20))
}

fn length(n: usize) -> String {
    if n.is_multiple_of(1024) {
        format!("N = {}K", n / 1024)
    } else {
        format!("N = {n}")
    }
}

/// Every finding, judged on the arena's rows (first seed's costs) and the profiled lengths.
pub fn findings(rows: &[Row], profiled: &[Profiled]) -> Vec<Finding> {
    let learned: Vec<TaskAccuracy> = task_accuracies(rows).into_iter().filter(learned).collect();
    let first = |cost: fn(&Row) -> Option<f64>| -> Vec<(String, Vec<(&str, f64)>)> {
        first_seen(rows, |r| &r.task)
            .into_iter()
            .map(|task| {
                let points = rows
                    .iter()
                    .filter(|r| r.task == task && r.replica == 0)
                    .filter_map(|r| Some((r.mechanism.as_str(), cost(r)?)))
                    .collect();
                (task.to_string(), points)
            })
            .collect()
    };
    let mut lens: Vec<usize> = profiled.iter().map(|p| p.len).collect();
    lens.sort_unstable();
    lens.dedup();
    let at = |cost: fn(&Profiled) -> Option<f64>| -> Vec<(String, Vec<(&str, f64)>)> {
        lens.iter()
            .map(|&n| {
                let points = profiled
                    .iter()
                    .filter(|p| p.len == n)
                    .filter_map(|p| Some((p.mechanism.as_str(), cost(p)?)))
                    .collect();
                (length(n), points)
            })
            .collect()
    };
    let families = Families::of_rows(rows);
    let column = |m: &str| families.of(m);
    let mut out = vec![sparse_most_accurate(&learned, &families)];
    out.push(family_cheapest(
        "kernel attention is the fastest (training step, each task at its length)",
        "kernel",
        first(|r| r.steps_per_second.map(|s| 1.0 / s)),
        &column,
        seconds,
    ));
    out.push(family_cheapest(
        "low-rank attention is the lightest (peak heap of a training step, each task)",
        "low-rank",
        first(|r| r.peak_step_heap_bytes.map(|b| b as f64)),
        &column,
        mebibytes,
    ));
    if !lens.is_empty() {
        out.push(family_cheapest(
            "kernel attention is the fastest (one attention call, forward+backward)",
            "kernel",
            at(|p| p.seconds),
            &family,
            seconds,
        ));
        out.push(family_cheapest(
            "low-rank attention is the lightest (one attention call, peak heap)",
            "low-rank",
            at(|p| p.heap),
            &family,
            mebibytes,
        ));
    }
    out.push(none_best_everywhere(&learned));
    out
}

/// The verdict section of the report.
pub fn markdown(findings: &[Finding], profile_note: Option<&str>) -> String {
    let mut s = String::from(
        "## Verdict on LRA's findings\n\nEach of Long Range Arena's conclusions checked on this \
         arena. Accuracy claims use only the tasks that learned (`full` above the majority \
         baseline by more than its seed spread and its test split's sampling error), with differences within the larger seed spread \
         counted as ties; speed and memory use every task's first-seed cell, with differences \
         within 10% counted as ties (single runs on a shared host move by that much). A finding \
         holds when its family comes out ahead more often than another does, and does not hold \
         when another family does.\n\n| finding | evidence | verdict |\n|---|---|---|\n",
    );
    for f in findings {
        let evidence = if f.evidence.is_empty() {
            "no comparable cells".to_string()
        } else {
            f.evidence.join("; ")
        };
        s += &format!(
            "| {} | {evidence} | {} |\n",
            f.statement,
            f.judgement.show()
        );
    }
    if let Some(note) = profile_note {
        s += &format!("\n{note}\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learned(rows: &[Row], task: &str) -> Option<bool> {
        learned_tasks(rows)
            .into_iter()
            .find(|(t, _)| *t == task)
            .map(|(_, l)| l)
    }

    fn cell(task: &str, mechanism: &str, replica: u64, acc: f64, speed: f64, heap: u64) -> Row {
        let mut r = Row::finished(task, mechanism, acc);
        r.replica = replica;
        r.steps_per_second = Some(speed);
        r.peak_step_heap_bytes = Some(heap << 20);
        r.majority_baseline = Some(50.0);
        r
    }

    /// Three seeds of each mechanism with the given accuracies on one task.
    fn seeded(task: &str, mechanism: &str, accs: [f64; 3], speed: f64, heap: u64) -> Vec<Row> {
        (0..3)
            .map(|r| cell(task, mechanism, r, accs[r as usize], speed, heap))
            .collect()
    }

    /// One seed has no spread: the test split's sampling error decides instead, and it also
    /// bounds a spread smaller than itself.
    #[test]
    fn learning_is_judged_beyond_the_test_splits_sampling_error() {
        let one = |acc: f64, examples: usize| {
            let mut r = cell("pathfinder", "local", 0, acc, 1.0, 1);
            r.test_examples = Some(examples);
            vec![r]
        };
        // 2,000 examples at 50%: a sampling error of 1.1 points.
        assert_eq!(learned(&one(50.3, 2000), "pathfinder"), Some(false));
        assert_eq!(learned(&one(51.0, 2000), "pathfinder"), Some(false));
        assert_eq!(learned(&one(51.5, 2000), "pathfinder"), Some(true));
        assert_eq!(learned(&one(51.5, 200), "pathfinder"), Some(false));
        // Three close seeds on 500 examples (2.2 points): the spread of 0.1 is not enough.
        let mut three = seeded("text", "full", [52.9, 53.0, 53.1], 1.0, 1);
        assert_eq!(
            learned(&three, "text"),
            Some(true),
            "Row::finished: 500 examples"
        );
        for r in &mut three {
            r.majority_baseline = Some(51.0);
        }
        assert_eq!(learned(&three, "text"), Some(false));
    }

    #[test]
    fn families_follow_the_notes_taxonomy() {
        assert_eq!(family("bigbird"), "sparse");
        assert_eq!(family("performer"), "kernel");
        assert_eq!(family("nystrom"), "low-rank");
        assert_eq!(family("xl"), "recurrence");
    }

    /// A column's family is its cells' attention kind, whatever the column is called: a
    /// technique column and a renamed one are judged as the attention they run.
    #[test]
    fn a_columns_family_comes_from_its_config_not_its_name() {
        let named = |mechanism: &str, attention: &str| {
            let mut r = cell("listops", mechanism, 0, 60.0, 1.0, 1);
            r.attention = attention.into();
            r
        };
        let rows = [
            named("full+switch-experts8", "full"),
            named("linear-like", "bigbird"),
            named("bigbird", "bigbird"),
        ];
        let families = Families::of_rows(&rows);
        assert_eq!(families.of("full+switch-experts8"), "exact");
        assert_eq!(families.of("linear-like"), "sparse");
        assert_eq!(families.of("absent"), "other");
    }

    /// Sparse wins a task only beyond the spread, a task at chance says nothing, kernel speed and
    /// low-rank memory are judged with a tolerance, and a mechanism tied for best everywhere
    /// refutes "no mechanism is best on every task".
    #[test]
    fn findings_count_wins_beyond_the_spread_on_learned_tasks() {
        let mut rows = Vec::new();
        // listops learned: bigbird 70 ± 1 beats full 60 ± 1 and linear 55 ± 1.
        rows.extend(seeded("listops", "full", [59.0, 60.0, 61.0], 10.0, 40));
        rows.extend(seeded("listops", "bigbird", [69.0, 70.0, 71.0], 10.5, 30));
        rows.extend(seeded("listops", "linear", [54.0, 55.0, 56.0], 20.0, 20));
        rows.extend(seeded("listops", "linformer", [54.0, 55.0, 56.0], 12.0, 21));
        // text learned: bigbird 70 ± 1 ties full 70.5 ± 1.
        rows.extend(seeded("text", "full", [69.5, 70.5, 71.5], 10.0, 40));
        rows.extend(seeded("text", "bigbird", [69.0, 70.0, 71.0], 9.0, 30));
        rows.extend(seeded("text", "linear", [60.0, 61.0, 62.0], 10.5, 35));
        rows.extend(seeded("text", "linformer", [60.0, 61.0, 62.0], 12.0, 25));
        // pathfinder at chance: full 50.5 ± 1 against 50; linear "best" but meaningless.
        rows.extend(seeded("pathfinder", "full", [49.5, 50.5, 51.5], 5.0, 80));
        rows.extend(seeded("pathfinder", "bigbird", [49.0, 50.0, 51.0], 6.0, 60));
        rows.extend(seeded("pathfinder", "linear", [79.0, 80.0, 81.0], 8.0, 30));
        rows.extend(seeded(
            "pathfinder",
            "linformer",
            [49.0, 50.0, 51.0],
            9.0,
            31,
        ));
        assert_eq!(learned(&rows, "listops"), Some(true));
        assert_eq!(learned(&rows, "pathfinder"), Some(false));
        let profiled = vec![
            Profiled {
                mechanism: "full".into(),
                len: 4096,
                seconds: Some(0.3),
                heap: Some(300e6),
            },
            Profiled {
                mechanism: "linear".into(),
                len: 4096,
                seconds: Some(0.02),
                heap: Some(50e6),
            },
            Profiled {
                mechanism: "linformer".into(),
                len: 4096,
                seconds: Some(0.01),
                heap: Some(48e6),
            },
        ];
        let f = findings(&rows, &profiled);
        let sparse = &f[0];
        assert_eq!(sparse.evidence.len(), 2, "pathfinder did not learn");
        assert!(sparse.evidence[0].contains("sparse ahead"), "{sparse:?}");
        assert!(sparse.evidence[1].ends_with("→ tie"), "{sparse:?}");
        assert_eq!(sparse.judgement, Judgement::Holds);
        // Speed: listops linear 20 vs linformer 12 → kernel; text linformer 12 vs linear 10.5
        // → low-rank; pathfinder linformer 9 vs linear 8 → low-rank (11% apart).
        let speed = &f[1];
        assert_eq!(speed.judgement, Judgement::DoesNotHold, "{speed:?}");
        assert!(speed.evidence[0].ends_with("kernel ahead"), "{speed:?}");
        // Memory: listops linear 20 vs linformer 21 → tie (within 10%); text linformer 25
        // vs bigbird 30 → low-rank; pathfinder linear 30 vs linformer 31 → tie.
        let memory = &f[2];
        assert!(memory.evidence[0].ends_with("→ tie"), "{memory:?}");
        assert_eq!(memory.judgement, Judgement::Holds, "{memory:?}");
        // At 4K linformer is 2× faster than linear: kernel is not the fastest there.
        assert_eq!(f[3].judgement, Judgement::DoesNotHold, "{:?}", f[3]);
        assert!(f[3].evidence[0].starts_with("N = 4K"), "{:?}", f[3]);
        assert_eq!(f[4].judgement, Judgement::Undecided, "48 vs 50 MiB: a tie");
        // bigbird leads listops and ties full on text: best or tied everywhere.
        let none = &f[5];
        assert!(none.evidence[1].contains("text: full, bigbird"), "{none:?}");
        assert_eq!(none.judgement, Judgement::DoesNotHold, "{none:?}");
        assert!(
            none.evidence[2].ends_with("every task: bigbird"),
            "{none:?}"
        );
        let md = markdown(&f, None);
        assert!(
            md.contains("| sparse attention is the most accurate |"),
            "{md}"
        );
        assert_eq!(md.matches("**holds**").count(), 2, "{md}");
    }

    /// One mechanism best or tied everywhere refutes the fourth finding; with a single learned
    /// task it is undecided.
    #[test]
    fn a_mechanism_best_everywhere_refutes_generalisation() {
        let mut rows = Vec::new();
        for task in ["listops", "image"] {
            rows.extend(seeded(task, "full", [70.0, 71.0, 72.0], 10.0, 40));
            rows.extend(seeded(task, "local", [60.0, 61.0, 62.0], 10.0, 40));
        }
        let f = findings(&rows, &[]);
        assert_eq!(f.len(), 4, "no profiled lengths, no length findings");
        let none = f.last().unwrap();
        assert_eq!(none.judgement, Judgement::DoesNotHold);
        assert!(
            none.evidence.last().unwrap().ends_with(": full"),
            "{none:?}"
        );
        let one: Vec<Row> = rows.into_iter().filter(|r| r.task == "image").collect();
        assert_eq!(
            findings(&one, &[]).last().unwrap().judgement,
            Judgement::Undecided
        );
    }
}
