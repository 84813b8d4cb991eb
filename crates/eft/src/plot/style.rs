//! How charts look: a colour, marker and dash for each series (so 19 mechanisms stay apart, in
//! colour and in greyscale print), a legend beside the plot instead of over it, and tick values as
//! a person writes them (1K, 0.01 s, 64 MiB).

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::plot_err;

/// Tableau's ten categorical colours: distinct, and none too pale to read on white.
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Marker outlines, as pixel offsets around the point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
    Plus,
}

const MARKERS: [Marker; 5] = [
    Marker::Circle,
    Marker::Square,
    Marker::Triangle,
    Marker::Diamond,
    Marker::Plus,
];

/// The look of one series.
#[derive(Debug, Clone, Copy)]
pub struct SeriesStyle {
    pub colour: RGBColor,
    pub dashed: bool,
    pub marker: Marker,
}

/// Series `i`'s look: the ten colours solid, then again dashed, with the markers shifted each
/// round, so no two of the first twenty share colour and dash, nor colour and marker.
pub fn style(i: usize) -> SeriesStyle {
    let round = i / COLOURS.len();
    SeriesStyle {
        colour: COLOURS[i % COLOURS.len()],
        dashed: round % 2 == 1,
        marker: MARKERS[(i + round) % MARKERS.len()],
    }
}

/// The marker's outline around (0, 0), `r` pixels across half its width.
fn outline(marker: Marker, r: i32) -> Vec<(i32, i32)> {
    match marker {
        Marker::Circle => (0..12)
            .map(|k| {
                let a = f64::from(k) * std::f64::consts::PI / 6.0;
                let r = f64::from(r);
                ((r * a.cos()).round() as i32, (r * a.sin()).round() as i32)
            })
            .collect(),
        Marker::Square => vec![(-r, -r), (r, -r), (r, r), (-r, r)],
        Marker::Triangle => vec![(0, -r - 1), (r + 1, r), (-r - 1, r)],
        Marker::Diamond => vec![(0, -r - 1), (r + 1, 0), (0, r + 1), (-r - 1, 0)],
        Marker::Plus => {
            let t = (r / 3).max(1);
            vec![
                (-t, -r),
                (t, -r),
                (t, -t),
                (r, -t),
                (r, t),
                (t, t),
                (t, r),
                (-t, r),
                (-t, t),
                (-r, t),
                (-r, -t),
                (-t, -t),
            ]
        }
    }
}

/// The series' marker as pixel offsets, to add to `EmptyElement::at(point)`.
pub fn marker(s: &SeriesStyle) -> Polygon<(i32, i32)> {
    Polygon::new(outline(s.marker, 4), s.colour.filled())
}

/// Draws `points` as the series' line (solid or dashed) with its markers.
pub fn draw_series<DB, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    points: &[(f64, f64)],
    s: &SeriesStyle,
) -> anyhow::Result<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let line = s.colour.stroke_width(2);
    if s.dashed {
        chart
            .draw_series(DashedLineSeries::new(points.iter().copied(), 9, 5, line))
            .map_err(plot_err)?;
    } else {
        chart
            .draw_series(LineSeries::new(points.iter().copied(), line))
            .map_err(plot_err)?;
    }
    chart
        .draw_series(points.iter().map(|&p| EmptyElement::at(p) + marker(s)))
        .map_err(plot_err)?;
    Ok(())
}

/// A sample of the series' line and marker, 36 px wide, with its left end at `at`.
pub fn draw_sample<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    s: &SeriesStyle,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let (x, y) = at;
    let line = s.colour.stroke_width(2);
    let pieces: Vec<(i32, i32)> = if s.dashed {
        vec![(x, x + 9), (x + 14, x + 23), (x + 28, x + 36)]
    } else {
        vec![(x, x + 36)]
    };
    for (a, b) in pieces {
        area.draw(&PathElement::new(vec![(a, y), (b, y)], line))
            .map_err(plot_err)?;
    }
    area.draw(&(EmptyElement::at((x + 18, y)) + marker(s)))
        .map_err(plot_err)
}

/// A legend in its own panel: one row per entry, its sample and its name.
pub fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    heading: &str,
    entries: &[(String, SeriesStyle)],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let rows = entries.len().max(1) as i32;
    // Rows shrink to fit a tall legend in the panel.
    let (_, height) = area.dim_in_pixel();
    let row = ((height as i32 - 60) / (rows + 1)).clamp(12, 22);
    let font: TextStyle = ("sans-serif", if row < 18 { 12 } else { 14 }).into();
    area.draw(&Text::new(heading.to_string(), (8, 8), font.clone()))
        .map_err(plot_err)?;
    for (k, (name, s)) in entries.iter().enumerate() {
        let y = 8 + row * (k as i32 + 1) + row / 2;
        draw_sample(area, (8, y), s)?;
        area.draw(&Text::new(
            name.clone(),
            (52, y),
            font.clone().pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(plot_err)?;
    }
    Ok(())
}

/// What an axis's values are, which decides how its ticks read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    /// Sequence lengths: 512, 1K, 2K, … 64K.
    Length,
    /// Seconds: 0.01 s, 0.1 s, 1 s.
    Seconds,
    /// Mebibytes: 10 MiB, 1 GiB.
    Mebibytes,
    /// A ratio: 0.5×, 1×, 2×.
    Ratio,
    /// A plain number (steps, tokens/s): 200, 1.5K, 20K.
    Plain,
}

impl Unit {
    /// The tick label of `v`.
    pub fn label(self, v: f64) -> String {
        match self {
            Unit::Length if v >= 1024.0 && (v / 1024.0).fract() == 0.0 => {
                format!("{}K", v / 1024.0)
            }
            Unit::Length => format!("{}", v.round()),
            Unit::Seconds => format!("{} s", short(v)),
            Unit::Mebibytes if v >= 1024.0 => format!("{} GiB", short(v / 1024.0)),
            Unit::Mebibytes => format!("{} MiB", short(v)),
            Unit::Ratio => format!("{}×", short(v)),
            Unit::Plain if v.abs() >= 1000.0 => format!("{}K", short(v / 1000.0)),
            Unit::Plain => short(v),
        }
    }
}

/// `v` to three significant digits, without trailing zeros or float noise (`0.1`, not
/// `0.10000000000000002`).
pub fn short(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = 2 - v.abs().log10().floor() as i32;
    let scale = 10f64.powi(digits);
    let rounded = (v * scale).round() / scale;
    let text = format!("{:.*}", digits.max(0) as usize, rounded);
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Tick values on a log axis of `unit` from `lo` to `hi`: powers of two for memory (so they
/// read 16 MiB, 64 MiB, 1 GiB, not 1.95 GiB), [`log_ticks`] otherwise.
pub fn unit_ticks(unit: Unit, lo: f64, hi: f64) -> Vec<f64> {
    if unit != Unit::Mebibytes {
        return log_ticks(lo, hi);
    }
    let all: Vec<f64> = (lo.log2().ceil() as i32..=hi.log2().floor() as i32)
        .map(|e| 2f64.powi(e))
        .collect();
    let step = all.len().div_ceil(6).max(1);
    // Keep the ticks on even powers when thinning, so 1 GiB stays a tick.
    let keep = |v: &f64| (v.log2().round() as i32).rem_euclid(step as i32) == 0;
    all.into_iter().filter(keep).collect()
}

/// Tick values on a log axis from `lo` to `hi`: 1-2-5 steps per decade, only decades when that
/// would crowd the axis, and 1-1.5-2-3-5-7 steps when it spans less than a decade.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let within = |mantissas: &[f64]| -> Vec<f64> {
        let mut out = Vec::new();
        let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        for e in first..=last {
            for m in mantissas {
                // Dividing for negative exponents keeps 0.7 from becoming 0.7000000000000001.
                let v = if e < 0 {
                    m / 10f64.powi(-e)
                } else {
                    m * 10f64.powi(e)
                };
                if v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9) {
                    out.push(v);
                }
            }
        }
        out
    };
    let fine = within(&[1.0, 2.0, 5.0]);
    if fine.len() > 9 {
        return within(&[1.0]);
    }
    if fine.len() < 3 {
        return within(&[1.0, 1.5, 2.0, 3.0, 5.0, 7.0]);
    }
    fine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_series_differ_in_colour_and_dash_or_marker() {
        for i in 0..20 {
            for j in 0..i {
                let (a, b) = (style(i), style(j));
                assert!(
                    a.colour != b.colour || a.dashed != b.dashed,
                    "{i} and {j} look alike"
                );
                assert!(
                    a.colour != b.colour || a.marker != b.marker,
                    "{i} and {j} share a marker"
                );
            }
        }
    }

    #[test]
    fn ticks_read_as_people_write_them() {
        assert_eq!(Unit::Length.label(1024.0), "1K");
        assert_eq!(Unit::Length.label(65536.0), "64K");
        assert_eq!(Unit::Length.label(1000.0), "1000");
        assert_eq!(Unit::Seconds.label(0.1 + 0.2), "0.3 s");
        assert_eq!(Unit::Seconds.label(0.01), "0.01 s");
        assert_eq!(Unit::Mebibytes.label(2048.0), "2 GiB");
        assert_eq!(Unit::Ratio.label(11.200000000000001), "11.2×");
        assert_eq!(Unit::Plain.label(1500.0), "1.5K");
        assert_eq!(short(123456.0), "123000");
        assert_eq!(log_ticks(0.004, 30.0), [0.01, 0.1, 1.0, 10.0]);
        assert_eq!(log_ticks(0.3, 3.0), [0.5, 1.0, 2.0]);
        assert_eq!(log_ticks(0.6, 1.1), [0.7, 1.0]);
        assert_eq!(
            unit_ticks(Unit::Mebibytes, 9.0, 2100.0),
            [16.0, 64.0, 256.0, 1024.0]
        );
        assert_eq!(unit_ticks(Unit::Mebibytes, 9.0, 40.0), [16.0, 32.0]);
    }
}
