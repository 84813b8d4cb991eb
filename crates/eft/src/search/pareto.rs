//! Pareto dominance between candidates on accuracy (higher is better) and costs (lower is
//! better), and the front of those no other candidate dominates.

use serde::{Deserialize, Serialize};

/// What the search optimises besides accuracy, and reads from each candidate's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Proxy accuracy (validation), higher is better.
    Acc,
    /// The meter's FLOPs per training step.
    Flops,
    /// Median measured milliseconds per training step.
    Latency,
    /// Peak heap bytes while training.
    Memory,
    /// Parameters.
    Params,
}

impl Objective {
    /// Reads `acc,flops,latency,memory,params` (any subset, accuracy always included).
    pub fn parse_list(text: &str) -> anyhow::Result<Vec<Self>> {
        let mut out = vec![Self::Acc];
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let o = match part {
                "acc" => Self::Acc,
                "flops" => Self::Flops,
                "latency" => Self::Latency,
                "memory" => Self::Memory,
                "params" => Self::Params,
                other => anyhow::bail!(
                    "--objectives: unknown objective `{other}`; choose from acc, flops, \
                     latency, memory, params"
                ),
            };
            if !out.contains(&o) {
                out.push(o);
            }
        }
        Ok(out)
    }
}

/// A candidate's measured values of every objective.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Proxy (validation) accuracy.
    pub acc: f64,
    /// FLOPs per training step.
    pub flops: f64,
    /// Milliseconds per training step.
    pub latency: f64,
    /// Peak heap bytes.
    pub memory: f64,
    /// Parameters.
    pub params: f64,
}

impl Point {
    /// The value of `o`, oriented so that larger is better.
    fn better(&self, o: Objective) -> f64 {
        match o {
            Objective::Acc => self.acc,
            Objective::Flops => -self.flops,
            Objective::Latency => -self.latency,
            Objective::Memory => -self.memory,
            Objective::Params => -self.params,
        }
    }

    /// Whether `self` is at least as good as `other` on every objective and better on one.
    pub fn dominates(&self, other: &Point, objectives: &[Objective]) -> bool {
        let (mut strictly, mut never_worse) = (false, true);
        for &o in objectives {
            let (a, b) = (self.better(o), other.better(o));
            never_worse &= a >= b;
            strictly |= a > b;
        }
        never_worse && strictly
    }
}

/// Indices of the points no other point dominates, in the given order.
pub fn front(points: &[Point], objectives: &[Objective]) -> Vec<usize> {
    (0..points.len())
        .filter(|&i| !points.iter().any(|q| q.dominates(&points[i], objectives)))
        .collect()
}

/// How many of `points` dominate each of them.
pub fn dominated_by(points: &[Point], objectives: &[Objective]) -> Vec<usize> {
    points
        .iter()
        .map(|p| points.iter().filter(|q| q.dominates(p, objectives)).count())
        .collect()
}

/// The area the (accuracy, FLOPs) front of `points` dominates above accuracy `floor` and below
/// `ceiling` FLOPs, on a log scale of FLOPs: one number to compare two searches' fronts.
pub fn area(points: &[Point], floor: f64, ceiling: f64) -> f64 {
    let objectives = [Objective::Acc, Objective::Flops];
    let mut front: Vec<Point> = front(points, &objectives)
        .into_iter()
        .map(|i| points[i])
        .filter(|p| p.acc > floor && p.flops < ceiling)
        .collect();
    // Cheapest first: between a point's FLOPs and the next dearer point's, the front's height
    // is the best accuracy at or below those FLOPs.
    front.sort_by(|a, b| a.flops.total_cmp(&b.flops));
    let mut total = 0.0;
    let mut height = floor;
    for (i, p) in front.iter().enumerate() {
        height = height.max(p.acc);
        let next = front.get(i + 1).map_or(ceiling, |q| q.flops);
        total += (height - floor) * (next.ln() - p.flops.ln());
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(acc: f64, flops: f64) -> Point {
        Point {
            acc,
            flops,
            latency: flops,
            memory: 1.0,
            params: 1.0,
        }
    }

    #[test]
    fn the_front_keeps_exactly_the_undominated_points() {
        let both = [Objective::Acc, Objective::Flops];
        let points = [
            p(0.5, 10.0),  // front: cheapest
            p(0.6, 20.0),  // front
            p(0.55, 30.0), // dominated by (0.6, 20)
            p(0.7, 40.0),  // front: most accurate
            p(0.7, 50.0),  // dominated by (0.7, 40): equal accuracy, dearer
            p(0.4, 10.0),  // dominated by (0.5, 10)
        ];
        assert_eq!(front(&points, &both), vec![0, 1, 3]);
        assert_eq!(dominated_by(&points, &both), vec![0, 0, 1, 0, 1, 1]);
        // On accuracy alone the front is the most accurate points (ties kept).
        assert_eq!(front(&points, &[Objective::Acc]), vec![3, 4]);
        // Identical points do not dominate each other.
        assert_eq!(front(&[p(0.5, 1.0), p(0.5, 1.0)], &both), vec![0, 1]);
    }

    #[test]
    fn the_area_grows_with_a_better_front() {
        let base = [p(0.5, 10.0), p(0.6, 100.0)];
        let better = [p(0.5, 10.0), p(0.6, 50.0)];
        let (a, b) = (area(&base, 0.4, 1000.0), area(&better, 0.4, 1000.0));
        assert!(b > a, "{b} should exceed {a}");
        // By hand: 0.1·ln(100/10) + 0.2·ln(1000/100).
        let want = 0.1 * (10f64).ln() + 0.2 * (10f64).ln();
        assert!((a - want).abs() < 1e-12, "{a} vs {want}");
    }

    #[test]
    fn objectives_read_from_a_list() {
        assert_eq!(
            Objective::parse_list("flops, latency").unwrap(),
            vec![Objective::Acc, Objective::Flops, Objective::Latency]
        );
        assert!(Objective::parse_list("speed").is_err());
    }
}
