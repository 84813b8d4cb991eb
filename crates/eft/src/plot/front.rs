//! An architecture search's candidates: accuracy against GFLOP per step and against
//! milliseconds per step, side by side, the Pareto front joined and highlighted, the starting
//! population and the baseline model marked.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Chart, Heading, accuracy_chart, layout, mesh, plot_err, write_both};

/// One candidate in the chart.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Accuracy in percent.
    pub accuracy: f64,
    /// GFLOP per training step.
    pub gflop: f64,
    /// Milliseconds per training step.
    pub ms: f64,
    /// On the Pareto front of the search's objectives.
    pub front: bool,
    /// One of the randomly drawn starting population.
    pub initial: bool,
}

struct Front<'a> {
    heading: Heading<'a>,
    candidates: &'a [Candidate],
    baseline: Option<&'a Candidate>,
}

const FRONT: RGBColor = RGBColor(200, 60, 30);
const OTHER: RGBColor = RGBColor(150, 150, 150);
const BASELINE: RGBColor = RGBColor(30, 90, 200);

impl Front<'_> {
    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        x_desc: &str,
        x: impl Fn(&Candidate) -> f64,
    ) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let all = self.candidates.iter().chain(self.baseline);
        let mut chart = accuracy_chart(
            area,
            all.clone().map(&x),
            all.map(|c| c.accuracy),
            (1.25, 2.0),
        )?;
        mesh(&mut chart)
            .x_desc(x_desc)
            .y_desc("proxy accuracy (%)")
            .x_label_formatter(&|v| super::style::short(*v))
            .y_label_formatter(&|v| super::style::short(*v))
            .y_labels(8)
            .draw()
            .map_err(plot_err)?;
        for c in self.candidates.iter().filter(|c| !c.front) {
            let at = (x(c), c.accuracy);
            let shape = match c.initial {
                true => Circle::new(at, 4, OTHER.stroke_width(1)),
                false => Circle::new(at, 3, OTHER.filled()),
            };
            chart.plotting_area().draw(&shape).map_err(plot_err)?;
        }
        // The front on these two axes: each point is the best accuracy at or below its cost.
        let mut front: Vec<(f64, f64)> = self
            .candidates
            .iter()
            .filter(|c| c.front)
            .map(|c| (x(c), c.accuracy))
            .collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut best = f64::NEG_INFINITY;
        let steps: Vec<(f64, f64)> = front
            .iter()
            .filter(|p| {
                let better = p.1 > best;
                best = best.max(p.1);
                better
            })
            .copied()
            .collect();
        // A staircase: each step holds its accuracy until the next dearer, better point.
        let stairs: Vec<(f64, f64)> = steps
            .iter()
            .enumerate()
            .flat_map(|(i, &(sx, sy))| {
                let next = steps.get(i + 1).map(|n| (n.0, sy));
                std::iter::once((sx, sy)).chain(next)
            })
            .collect();
        chart
            .draw_series(LineSeries::new(stairs, FRONT.stroke_width(2)))
            .map_err(plot_err)?;
        for &(fx, fy) in &front {
            chart
                .plotting_area()
                .draw(&Circle::new((fx, fy), 5, FRONT.filled()))
                .map_err(plot_err)?;
        }
        if let Some(b) = self.baseline {
            let at = (x(b), b.accuracy);
            chart
                .plotting_area()
                .draw(&TriangleMarker::new(at, 9, BASELINE.filled()))
                .map_err(plot_err)?;
        }
        Ok(())
    }

    fn key<DB: DrawingBackend>(&self, side: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let font = ("sans-serif", 14).into_font();
        let labels = [
            "Pareto front",
            "starting population",
            "other candidates",
            "baseline: full",
        ];
        for (i, label) in labels.iter().enumerate() {
            let y = 30 + 28 * i as i32;
            let at = (20, y);
            match i {
                0 => side.draw(&Circle::new(at, 5, FRONT.filled())),
                1 => side.draw(&Circle::new(at, 4, OTHER.stroke_width(1))),
                2 => side.draw(&Circle::new(at, 3, OTHER.filled())),
                _ => side.draw(&TriangleMarker::new(at, 9, BASELINE.filled())),
            }
            .map_err(plot_err)?;
            side.draw(&Text::new(*label, (38, y - 8), font.clone()))
                .map_err(plot_err)?;
        }
        Ok(())
    }
}

impl Chart for Front<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (plot, side) = layout(&root, self.heading)?;
        let (w, _) = plot.dim_in_pixel();
        let (left, right) = plot.split_horizontally(w / 2);
        self.panel(&left, "GFLOP per training step", |c| c.gflop)?;
        self.panel(&right, "ms per training step", |c| c.ms)?;
        self.key(&side)?;
        root.present().map_err(plot_err)
    }
}

/// Writes `stem.png` and `stem.svg`: the candidates' accuracy against GFLOP/step and ms/step.
pub fn front(
    stem: &Path,
    heading: Heading,
    candidates: &[Candidate],
    baseline: Option<&Candidate>,
) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(!candidates.is_empty(), "no candidate to plot");
    write_both(
        stem,
        &Front {
            heading,
            candidates,
            baseline,
        },
    )
}
