//! Charts as PNG and SVG: log-log curves per mechanism, and LRA's accuracy/speed/memory bubbles.
//!
//! Text needs a TrueType font; plotters is built without system font discovery (which needs
//! fontconfig at build time), so one is loaded from the usual system paths at first use.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;

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

const SIZE: (u32, u32) = (900, 600);

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

/// White background, title and margins shared by every chart.
fn frame<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
) -> anyhow::Result<ChartBuilder<'a, 'a, DB>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(plot_err)?;
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70);
    Ok(builder)
}

/// The lowest and highest of `values`, widened by `factor` on a log scale.
fn span(values: impl Iterator<Item = f64> + Clone, factor: f64) -> std::ops::Range<f64> {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    (lo / factor)..(hi * factor)
}

struct LogLog<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    series: &'a [Series],
}

impl Chart for LogLog<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let points = self.series.iter().flat_map(|s| s.points.iter());
        let xs = span(points.clone().map(|p| p.0), 1.5);
        let ys = span(points.map(|p| p.1), 1.5);
        let mut chart = frame(&root, self.title)?
            .build_cartesian_2d(xs.log_scale(), ys.log_scale())
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .draw()
            .map_err(plot_err)?;
        for (i, s) in self.series.iter().enumerate() {
            let color = Palette99::pick(i).mix(0.95);
            chart
                .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
                .map_err(plot_err)?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)
    }
}

/// `log y` against `log x`, one line with markers per series; writes `stem.png` and `stem.svg`.
pub fn log_log(
    stem: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(
        series.iter().any(|s| !s.points.is_empty()),
        "nothing to plot for {title}"
    );
    write_both(
        stem,
        &LogLog {
            title,
            x_label,
            y_label,
            series,
        },
    )
}

struct Bubbles<'a> {
    title: &'a str,
    speed_label: &'a str,
    runs: &'a [Bubble],
}

impl Chart for Bubbles<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let xs = span(self.runs.iter().map(|b| b.speed), 1.3);
        let acc = span(self.runs.iter().map(|b| b.accuracy), 1.0);
        let ys = (acc.start - 2.0).max(0.0)..(acc.end + 2.0).min(100.0);
        let mut chart = frame(&root, self.title)?
            .build_cartesian_2d(xs.log_scale(), ys)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(self.speed_label)
            .y_desc("test accuracy (%)")
            .draw()
            .map_err(plot_err)?;
        let biggest = self
            .runs
            .iter()
            .map(|b| b.memory)
            .fold(0.0, f64::max)
            .max(1e-9);
        for (i, b) in self.runs.iter().enumerate() {
            let color = Palette99::pick(i).mix(0.6);
            // Area ∝ memory: radius ∝ √memory, the largest 40 px.
            let radius = (40.0 * (b.memory / biggest).sqrt()).max(3.0) as i32;
            let at = (b.speed, b.accuracy);
            chart
                .draw_series(std::iter::once(Circle::new(at, radius, color.filled())))
                .map_err(plot_err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    b.name.clone(),
                    at,
                    ("sans-serif", 14).into_font(),
                )))
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)
    }
}

/// Accuracy (y) against speed (x, log scale), bubble area proportional to memory, in the form of
/// LRA's Figure 3; writes `stem.png` and `stem.svg`.
pub fn bubbles(
    stem: &Path,
    title: &str,
    speed_label: &str,
    runs: &[Bubble],
) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(!runs.is_empty(), "no runs to plot");
    write_both(
        stem,
        &Bubbles {
            title,
            speed_label,
            runs,
        },
    )
}

/// Draws `args.count` Pathfinder images and writes each as a PNG, enlarged to about 512 px.
pub fn pathfinder_pngs(args: &crate::args::PathfinderArgs) -> anyhow::Result<Vec<PathBuf>> {
    use eft_data::pathfinder::{GeometryOverrides, PathfinderConfig};
    let config = PathfinderConfig {
        size: args.size,
        contour_length: args.contour_length,
        train: 1,
        val: 1,
        test: 1,
        geometry: GeometryOverrides::default(),
    };
    config.validate()?;
    std::fs::create_dir_all(&args.png)
        .map_err(|e| anyhow!("cannot create {}: {e}", args.png.display()))?;
    let scale = (512 / args.size).max(1) as u32;
    let side = args.size as u32 * scale;
    let mut rng = eft_data::seeded_rng(args.seed, 0);
    let mut written = Vec::new();
    for i in 0..args.count {
        let connected = i % 2 == 0;
        let image = config.draw(&mut rng, connected)?;
        let path = args.png.join(format!(
            "pathfinder-{i}-{}.png",
            if connected { "connected" } else { "apart" }
        ));
        let root = BitMapBackend::new(&path, (side, side)).into_drawing_area();
        for (at, &g) in image.grey.iter().enumerate() {
            let (r, c) = (
                (at / args.size) as u32 * scale,
                (at % args.size) as u32 * scale,
            );
            let colour = RGBColor(g, g, g);
            for dy in 0..scale {
                for dx in 0..scale {
                    root.draw_pixel(((c + dx) as i32, (r + dy) as i32), &colour)
                        .map_err(plot_err)?;
                }
            }
        }
        root.present().map_err(plot_err)?;
        drop(root);
        written.push(path);
    }
    Ok(written)
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
        match log_log(&dir.path().join("time"), "time", "N", "seconds", &series) {
            Ok(paths) => {
                assert_eq!(paths.len(), 2);
                non_empty(&paths);
                let svg = std::fs::read_to_string(&paths[1]).unwrap();
                assert!(
                    svg.contains("local") && svg.contains("full"),
                    "legend is drawn"
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
        match bubbles(&dir.path().join("bubbles"), "arena", "steps/s", &runs) {
            Ok(paths) => non_empty(&paths),
            Err(e) => assert!(e.to_string().contains("fonts-dejavu-core"), "{e}"),
        }
    }
}
