//! Which candidate comes next: regularised (aging) evolution (Real et al. 2019) or random
//! search, decided from the search's log alone so that a rerun after a kill proposes the same
//! candidates in the same order.

use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::pareto::{Objective, Point};
use super::space::{Genome, Space};
use eft_train::RunConfig;

/// Draws or mutations tried for a candidate not proposed before, before a repeat is accepted.
const NOVELTY_TRIES: usize = 20;

/// How candidates are proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Aging evolution: the first `population` candidates drawn at random, then each a one-gene
    /// mutation of the best of `sample` members drawn from the `population` most recent.
    Evolution {
        /// Members alive at once (P).
        population: usize,
        /// Tournament size (S).
        sample: usize,
    },
    /// Every candidate drawn at random from the space.
    Random,
}

/// What became of one proposed candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Trained for the proxy steps; its measured point and test accuracy.
    Trained {
        /// Measured objectives.
        point: Point,
        /// Test accuracy after the proxy steps.
        test_accuracy: f64,
        /// Wall-clock seconds the run trained.
        seconds: f64,
    },
    /// The same config as an earlier candidate: its result, not trained again.
    Repeat {
        /// The earlier candidate.
        of: usize,
        /// Its measured objectives.
        point: Point,
    },
    /// Refused before training by a budget on its analytic cost.
    Rejected {
        /// The budget and the cost.
        why: String,
    },
    /// Trained but failed (diverged, out of memory).
    Failed {
        /// What happened.
        why: String,
    },
}

/// One proposal in the search's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, from 0: also the candidate's folder name.
    pub id: usize,
    /// The candidate.
    pub genome: Genome,
    /// The member it mutates, under evolution.
    pub parent: Option<usize>,
    /// What became of it.
    pub outcome: Outcome,
}

impl Entry {
    /// The measured point, if it was evaluated.
    pub fn point(&self) -> Option<Point> {
        match &self.outcome {
            Outcome::Trained { point, .. } | Outcome::Repeat { point, .. } => Some(*point),
            _ => None,
        }
    }

    /// Whether it counts against the evaluation budget (trained, repeated or failed).
    pub fn evaluated(&self) -> bool {
        !matches!(self.outcome, Outcome::Rejected { .. })
    }
}

/// The living population: the `size` most recently evaluated candidates with a result, oldest
/// first (older ones have aged out).
pub fn population(log: &[Entry], size: usize) -> Vec<&Entry> {
    let alive: Vec<&Entry> = log.iter().filter(|e| e.point().is_some()).collect();
    alive[alive.len().saturating_sub(size)..].to_vec()
}

/// The tournament's winner among `sample`: the one the fewest others in the sample dominate
/// on `objectives`, then the most accurate, then the youngest.
fn winner<'a>(sample: &[&'a Entry], objectives: &[Objective]) -> &'a Entry {
    let points: Vec<Point> = sample.iter().map(|e| e.point().expect("alive")).collect();
    let beaten = super::pareto::dominated_by(&points, objectives);
    let best = (0..sample.len())
        .min_by(|&a, &b| {
            beaten[a]
                .cmp(&beaten[b])
                .then(points[b].acc.total_cmp(&points[a].acc))
                .then(sample[b].id.cmp(&sample[a].id))
        })
        .expect("a non-empty sample");
    sample[best]
}

/// The next candidate after `log` and the member it mutates (`None` for a random draw), or
/// `None` when the space offers no valid candidate. Depends only on the arguments: the draw is
/// seeded by `seed` and the log's length.
pub fn propose(
    strategy: Strategy,
    space: &Space,
    base: &RunConfig,
    log: &[Entry],
    seed: u64,
    objectives: &[Objective],
) -> Option<(Genome, Option<usize>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(eft_data::derived_seed(seed, log.len() as u64));
    let seen = |g: &Genome| log.iter().any(|e| &e.genome == g);
    // A candidate already proposed is drawn again, up to NOVELTY_TRIES times: a repeat costs an
    // evaluation and teaches nothing.
    let fresh = |rng: &mut ChaCha8Rng| {
        let mut last = None;
        for _ in 0..NOVELTY_TRIES {
            let g = space.sample(base, rng)?;
            if !seen(&g) {
                return Some(g);
            }
            last = Some(g);
        }
        last
    };
    let Strategy::Evolution {
        population: p,
        sample: s,
    } = strategy
    else {
        return fresh(&mut rng).map(|g| (g, None));
    };
    let alive = population(log, p);
    if alive.len() < p {
        return fresh(&mut rng).map(|g| (g, None));
    }
    let picked: Vec<&Entry> = sample(&mut rng, alive.len(), s.min(alive.len()))
        .into_iter()
        .map(|i| alive[i])
        .collect();
    // Measured time and memory vary between runs of the same search; tournaments rank on the
    // deterministic objectives, so that a seed always proposes the same candidates.
    let ranked: Vec<Objective> = objectives
        .iter()
        .copied()
        .filter(|o| matches!(o, Objective::Acc | Objective::Flops | Objective::Params))
        .collect();
    let parent = winner(&picked, &ranked);
    let mut child = None;
    for _ in 0..NOVELTY_TRIES {
        match space.mutate(base, &parent.genome, &mut rng) {
            Some(c) if seen(&c) => child = Some(c),
            Some(c) => return Some((c, Some(parent.id))),
            None => break,
        }
    }
    match child {
        Some(c) => Some((c, Some(parent.id))),
        // A parent none of whose genes can change validly: draw afresh.
        None => fresh(&mut rng).map(|g| (g, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: usize, acc: Option<f64>) -> Entry {
        Entry {
            id,
            genome: Genome::new(),
            parent: None,
            outcome: match acc {
                Some(acc) => Outcome::Trained {
                    point: Point {
                        acc,
                        flops: 1.0,
                        latency: 1.0,
                        memory: 1.0,
                        params: 1.0,
                    },
                    test_accuracy: acc,
                    seconds: 1.0,
                },
                None => Outcome::Rejected {
                    why: "budget".into(),
                },
            },
        }
    }

    #[test]
    fn aging_removes_the_oldest_not_the_worst() {
        // Five evaluated (the best, 0.9, is the oldest) and one rejected.
        let log: Vec<Entry> = [Some(0.9), Some(0.1), None, Some(0.2), Some(0.3), Some(0.4)]
            .into_iter()
            .enumerate()
            .map(|(i, a)| entry(i, a))
            .collect();
        let ids: Vec<usize> = population(&log, 3).iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![3, 4, 5]);
        let ids: Vec<usize> = population(&log, 10).iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![0, 1, 3, 4, 5], "rejected candidates never join");
    }

    /// With two of three candidates of a space already proposed, the next is the third.
    #[test]
    fn a_candidate_already_proposed_is_drawn_again() {
        let base = eft_train::preset("listops", "quick").unwrap();
        let text = "[mechanisms]\nfull = {}\n[fields]\n\"model.n_layers\" = [1, 2, 3]\n";
        let space = Space::parse(text, &base).unwrap();
        let genome = |layers: i64| {
            let mut g = Genome::new();
            g.insert("mechanism".into(), toml::Value::String("full".into()));
            g.insert("model.n_layers".into(), toml::Value::Integer(layers));
            g
        };
        let log: Vec<Entry> = [1, 2]
            .into_iter()
            .enumerate()
            .map(|(i, layers)| Entry {
                genome: genome(layers),
                ..entry(i, Some(0.5))
            })
            .collect();
        for seed in 0..10 {
            let evolution = Strategy::Evolution {
                population: 2,
                sample: 2,
            };
            for strategy in [Strategy::Random, evolution] {
                let (next, _) =
                    propose(strategy, &space, &base, &log, seed, &[Objective::Acc]).unwrap();
                assert_eq!(next, genome(3), "seed {seed}, {strategy:?}");
            }
        }
    }

    #[test]
    fn the_tournament_picks_the_least_dominated_then_the_most_accurate() {
        let log: Vec<Entry> = [0.5, 0.7, 0.6]
            .into_iter()
            .enumerate()
            .map(|(i, a)| entry(i, Some(a)))
            .collect();
        let sample: Vec<&Entry> = log.iter().collect();
        assert_eq!(winner(&sample, &[Objective::Acc, Objective::Flops]).id, 1);
    }
}
