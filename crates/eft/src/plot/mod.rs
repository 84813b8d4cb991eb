//! Charts as PNG and SVG: log-log curves per mechanism, training curves of runs, and LRA's
//! accuracy/speed/memory bubbles. Every chart has a title, a subtitle saying what was measured
//! where, and its legend or key beside the plot.
//!
//! Text needs a TrueType font; plotters is built without system font discovery (which needs
//! fontconfig at build time), so one is loaded from the usual system paths at first use.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;

mod bubbles;
mod front;
mod lines;
mod pathfinder;
mod style;

pub use bubbles::bubbles;
pub use front::{Candidate, front};
pub use lines::{Axis, Curves, curves, log_log};
pub use pathfinder::pathfinder_pngs;
pub use style::Unit;

/// Where Debian, Fedora, Arch and macOS keep a plain sans-serif font.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// Registers the first font found as `sans-serif`, once.
fn font() -> anyhow::Result<()> {
    static FOUND: OnceLock<Result<(), String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let bytes = FONT_PATHS
                .iter()
                .find_map(|p| std::fs::read(p).ok())
                .ok_or_else(|| {
                    "no TrueType font for chart text; install one, e.g. `sudo apt-get install \
                     fonts-dejavu-core`"
                        .to_string()
                })?;
            plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into()))
                .map_err(|_| "the system font could not be read".to_string())
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// One named line of `(x, y)` points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points, in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// One run in the bubble chart.
#[derive(Debug, Clone)]
pub struct Bubble {
    /// Label drawn beside it.
    pub name: String,
    /// Speed (x).
    pub speed: f64,
    /// Accuracy in percent (y).
    pub accuracy: f64,
    /// Memory, which sets the area.
    pub memory: f64,
}

/// A chart's title and the line under it that says what was measured, how and where.
#[derive(Debug, Clone, Copy)]
pub struct Heading<'a> {
    /// What the chart shows.
    pub title: &'a str,
    /// Shapes, dtype, machine.
    pub subtitle: &'a str,
}

const SIZE: (u32, u32) = (1000, 620);

/// Width of the legend or key panel at the right.
const SIDE_PANEL: u32 = 260;

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the chart: {e:?}")
}

/// Something drawable on any plotters backend.
trait Chart {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static;
}

/// Draws `chart` into `stem.png` and `stem.svg`; returns their paths.
fn write_both(stem: &Path, chart: &impl Chart) -> anyhow::Result<Vec<PathBuf>> {
    font()?;
    let (png, svg) = (stem.with_extension("png"), stem.with_extension("svg"));
    chart.draw(BitMapBackend::new(&png, SIZE).into_drawing_area())?;
    chart.draw(SVGBackend::new(&svg, SIZE).into_drawing_area())?;
    Ok(vec![png, svg])
}

/// Fills the background, draws the heading and returns the plot area and the side panel.
fn layout<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    heading: Heading,
) -> anyhow::Result<(DrawingArea<DB, Shift>, DrawingArea<DB, Shift>)>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(plot_err)?;
    let (top, body) = root.split_vertically(62);
    top.draw(&Text::new(
        heading.title.to_string(),
        (20, 10),
        ("sans-serif", 22).into_font(),
    ))
    .map_err(plot_err)?;
    top.draw(&Text::new(
        heading.subtitle.to_string(),
        (20, 40),
        ("sans-serif", 14).into_font().color(&RGBColor(80, 80, 80)),
    ))
    .map_err(plot_err)?;
    let (w, _) = body.dim_in_pixel();
    Ok(body.split_horizontally(w - SIDE_PANEL))
}

/// Margins and label areas shared by every plot.
fn frame<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>) -> ChartBuilder<'_, '_, DB> {
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(78);
    builder
}

/// The lowest and highest of `values`, widened by `factor` on a log scale.
fn span(values: impl Iterator<Item = f64> + Clone, factor: f64) -> std::ops::Range<f64> {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    (lo / factor)..(hi * factor)
}

/// Log-scaled x with labelled ticks against linear accuracy.
type AccuracyAxes = Cartesian2d<
    plotters::coord::combinators::WithKeyPoints<plotters::coord::combinators::LogCoord<f64>>,
    plotters::coord::types::RangedCoordf64,
>;

/// A chart drawn on [`AccuracyAxes`].
type AccuracyChart<'a, DB> = ChartContext<'a, DB, AccuracyAxes>;

/// A chart of accuracy in percent (y, padded by `pad` points within 0–100) against a log-scaled
/// x spanning `xs` widened by `widen`, with labelled log ticks.
fn accuracy_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    xs: impl Iterator<Item = f64> + Clone,
    accuracy: impl Iterator<Item = f64> + Clone,
    (widen, pad): (f64, f64),
) -> anyhow::Result<AccuracyChart<'a, DB>>
where
    DB::ErrorType: 'static,
{
    let xs = span(xs, widen);
    let acc = span(accuracy, 1.0);
    let ys = (acc.start - pad).max(0.0)..(acc.end + pad).min(100.0);
    frame(area)
        .build_cartesian_2d(
            xs.clone()
                .log_scale()
                .with_key_points(style::log_ticks(xs.start, xs.end)),
            ys,
        )
        .map_err(plot_err)
}

/// The axes every chart shares: light grey grid lines at the ticks only, 14 px tick labels and
/// 15 px axis descriptions; callers add descriptions and tick formats.
fn mesh<'a, 'b, DB, X, Y>(
    chart: &'b mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
) -> plotters::chart::MeshStyle<'a, 'b, X, Y, DB>
where
    DB: DrawingBackend,
    X: Ranged + plotters::coord::ranged1d::ValueFormatter<X::ValueType>,
    Y: Ranged + plotters::coord::ranged1d::ValueFormatter<Y::ValueType>,
{
    let mut m = chart.configure_mesh();
    m.bold_line_style(RGBColor(215, 215, 215).stroke_width(1))
        .light_line_style(WHITE)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn non_empty(paths: &[PathBuf]) {
        for p in paths {
            let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            assert!(len > 1000, "{} has {len} bytes", p.display());
        }
    }

    /// Both charts are written as PNG and SVG with real content, or, on a machine without a
    /// font, the error says which package to install.
    #[test]
    fn charts_are_written_and_non_empty() {
        let dir = tempfile::tempdir().unwrap();
        let series = vec![
            Series {
                name: "full".into(),
                points: vec![(1024.0, 0.1), (2048.0, 0.4), (4096.0, 1.6)],
            },
            Series {
                name: "local".into(),
                points: vec![(1024.0, 0.02), (2048.0, 0.04), (4096.0, 0.08)],
            },
        ];
        let heading = Heading {
            title: "time",
            subtitle: "B=1, H=4, D=64",
        };
        let (x, y) = (
            Axis {
                label: "N",
                unit: Unit::Length,
            },
            Axis {
                label: "seconds",
                unit: Unit::Seconds,
            },
        );
        match log_log(&dir.path().join("time"), heading, x, y, &series) {
            Ok(paths) => {
                assert_eq!(paths.len(), 2);
                non_empty(&paths);
                let svg = std::fs::read_to_string(&paths[1]).unwrap();
                assert!(
                    svg.contains("local") && svg.contains("full"),
                    "legend is drawn"
                );
                assert!(
                    svg.contains("2K") && svg.contains("B=1, H=4, D=64"),
                    "ticks, subtitle"
                );
            }
            Err(e) => assert!(e.to_string().contains("fonts-dejavu-core"), "{e}"),
        }
        let runs = vec![
            Bubble {
                name: "full".into(),
                speed: 10.0,
                accuracy: 39.0,
                memory: 60.0,
            },
            Bubble {
                name: "linear".into(),
                speed: 20.0,
                accuracy: 37.0,
                memory: 20.0,
            },
        ];
        match bubbles(
            &dir.path().join("bubbles"),
            heading,
            y,
            Unit::Mebibytes,
            &runs,
        ) {
            Ok(paths) => non_empty(&paths),
            Err(e) => assert!(e.to_string().contains("fonts-dejavu-core"), "{e}"),
        }
        let run = Curves {
            name: "run-a".into(),
            train_loss: vec![(10.0, 2.0), (20.0, 1.5)],
            val_loss: vec![(20.0, 1.7)],
            train_accuracy: vec![(10.0, 20.0), (20.0, 30.0)],
            val_accuracy: vec![(20.0, 25.0)],
        };
        match curves(&dir.path().join("curves"), heading, &[run]) {
            Ok(paths) => non_empty(&paths),
            Err(e) => assert!(e.to_string().contains("fonts-dejavu-core"), "{e}"),
        }
        let candidate = |accuracy, gflop, front| Candidate {
            accuracy,
            gflop,
            ms: 10.0 * gflop,
            front,
            initial: !front,
        };
        let candidates = [
            candidate(30.0, 0.1, true),
            candidate(35.0, 0.4, true),
            candidate(25.0, 0.3, false),
        ];
        match front(
            &dir.path().join("front"),
            heading,
            &candidates,
            Some(&candidate(33.0, 0.2, false)),
        ) {
            Ok(paths) => {
                non_empty(&paths);
                let svg = std::fs::read_to_string(&paths[1]).unwrap();
                assert!(
                    svg.contains("Pareto front") && svg.contains("baseline"),
                    "key is drawn"
                );
            }
            Err(e) => assert!(e.to_string().contains("fonts-dejavu-core"), "{e}"),
        }
    }
}
