//! Line charts: a quantity against sequence length on log-log axes (the sweeps), and training
//! curves of several runs against steps.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::style::{SeriesStyle, Unit, draw_legend, draw_series, style, unit_ticks};
use super::{Chart, Heading, Series, frame, layout, mesh, plot_err, span, write_both};

/// An axis: its description and the unit its ticks read in.
#[derive(Debug, Clone, Copy)]
pub struct Axis<'a> {
    /// Text beside the axis.
    pub label: &'a str,
    /// How tick values are written.
    pub unit: Unit,
}

struct LogLog<'a> {
    heading: Heading<'a>,
    x: Axis<'a>,
    y: Axis<'a>,
    series: &'a [Series],
}

/// Tick positions: the measured lengths themselves on a length axis, 1-2-5 steps otherwise.
fn ticks(unit: Unit, values: &[f64], range: &std::ops::Range<f64>) -> Vec<f64> {
    if unit == Unit::Length {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        v.dedup();
        // Every other length when they crowd the axis.
        if v.len() > 9 {
            v = v.into_iter().step_by(2).collect();
        }
        return v;
    }
    unit_ticks(unit, range.start, range.end)
}

impl Chart for LogLog<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (plot, side) = layout(&root, self.heading)?;
        let points = self.series.iter().flat_map(|s| s.points.iter());
        let xs = span(points.clone().map(|p| p.0), 1.15);
        let ys = span(points.clone().map(|p| p.1), 1.3);
        let x_values: Vec<f64> = points.clone().map(|p| p.0).collect();
        let y_values: Vec<f64> = points.map(|p| p.1).collect();
        let (x_ticks, y_ticks) = (
            ticks(self.x.unit, &x_values, &xs),
            ticks(self.y.unit, &y_values, &ys),
        );
        let mut chart = frame(&plot)
            .build_cartesian_2d(
                xs.log_scale().with_key_points(x_ticks),
                ys.log_scale().with_key_points(y_ticks),
            )
            .map_err(plot_err)?;
        let (xu, yu) = (self.x.unit, self.y.unit);
        mesh(&mut chart)
            .x_desc(self.x.label)
            .y_desc(self.y.label)
            .x_label_formatter(&|v| xu.label(*v))
            .y_label_formatter(&|v| yu.label(*v))
            .draw()
            .map_err(plot_err)?;
        let mut legend = Vec::new();
        for (i, s) in self.series.iter().enumerate() {
            let look = style(i);
            draw_series(&mut chart, &s.points, &look)?;
            legend.push((s.name.clone(), look));
        }
        draw_legend(&side, "", &legend)?;
        root.present().map_err(plot_err)
    }
}

/// `y` against `x` on log-log axes, one styled line per series and the legend beside the plot;
/// writes `stem.png` and `stem.svg`.
pub fn log_log(
    stem: &Path,
    heading: Heading,
    x: Axis,
    y: Axis,
    series: &[Series],
) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(
        series.iter().any(|s| !s.points.is_empty()),
        "nothing to plot for {}",
        heading.title
    );
    write_both(
        stem,
        &LogLog {
            heading,
            x,
            y,
            series,
        },
    )
}

/// One run's training curves: `(step, value)` points.
#[derive(Debug, Clone, Default)]
pub struct Curves {
    /// The run's name, for the legend.
    pub name: String,
    /// Mean training loss per logged window.
    pub train_loss: Vec<(f64, f64)>,
    /// Validation loss per evaluation.
    pub val_loss: Vec<(f64, f64)>,
    /// Training accuracy (%) per logged window.
    pub train_accuracy: Vec<(f64, f64)>,
    /// Validation accuracy (%) per evaluation.
    pub val_accuracy: Vec<(f64, f64)>,
}

/// A curve's `(step, value)` points.
type Points = Vec<(f64, f64)>;

struct CurvesChart<'a> {
    heading: Heading<'a>,
    runs: &'a [Curves],
}

/// Run `i`'s colour and marker; validation curves dashed.
fn run_style(i: usize, validation: bool) -> SeriesStyle {
    SeriesStyle {
        dashed: validation,
        ..style(i)
    }
}

impl CurvesChart<'_> {
    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        y_label: &str,
        pick: fn(&Curves) -> [&Points; 2],
    ) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let all = self.runs.iter().flat_map(|r| pick(r).into_iter().flatten());
        let last_step = all.clone().map(|p| p.0).fold(1.0, f64::max);
        let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
        let pad = ((hi - lo) * 0.05).max(1e-3);
        let mut chart = frame(area)
            .build_cartesian_2d(0.0..last_step * 1.02, (lo - pad).max(0.0)..hi + pad)
            .map_err(plot_err)?;
        mesh(&mut chart)
            .x_desc("step")
            .y_desc(y_label)
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|v| Unit::Plain.label(*v))
            .y_label_formatter(&|v| super::style::short(*v))
            .draw()
            .map_err(plot_err)?;
        for (i, run) in self.runs.iter().enumerate() {
            let [train, val] = pick(run);
            draw_series(&mut chart, train, &run_style(i, false))?;
            draw_series(&mut chart, val, &run_style(i, true))?;
        }
        Ok(())
    }
}

impl Chart for CurvesChart<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (plot, side) = layout(&root, self.heading)?;
        let (w, _) = plot.dim_in_pixel();
        let (loss, accuracy) = plot.split_horizontally(w / 2);
        self.panel(&loss, "cross-entropy loss", |r| {
            [&r.train_loss, &r.val_loss]
        })?;
        self.panel(&accuracy, "accuracy (%)", |r| {
            [&r.train_accuracy, &r.val_accuracy]
        })?;
        let mut legend: Vec<(String, SeriesStyle)> = self
            .runs
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), run_style(i, false)))
            .collect();
        let grey = SeriesStyle {
            colour: RGBColor(90, 90, 90),
            ..style(0)
        };
        legend.push(("training (window mean)".into(), grey));
        legend.push((
            "validation".into(),
            SeriesStyle {
                dashed: true,
                ..grey
            },
        ));
        draw_legend(&side, "", &legend)?;
        root.present().map_err(plot_err)
    }
}

/// Loss and accuracy against steps for several runs, training solid and validation dashed;
/// writes `stem.png` and `stem.svg`.
pub fn curves(stem: &Path, heading: Heading, runs: &[Curves]) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(
        runs.iter().any(|r| !r.train_loss.is_empty()),
        "no metrics to plot: the runs have no metrics.jsonl lines yet"
    );
    write_both(stem, &CurvesChart { heading, runs })
}
