//! LRA's Figure 3: accuracy against speed, bubble area proportional to memory, with labelled log
//! ticks, a key for bubble size, and labels placed where they cover no other label.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::style::{Unit, style};
use super::{Bubble, Chart, Heading, accuracy_chart, layout, mesh, plot_err, write_both};

/// Radius in pixels of the largest bubble.
const LARGEST: f64 = 40.0;

struct Bubbles<'a> {
    heading: Heading<'a>,
    speed: super::Axis<'a>,
    memory: Unit,
    runs: &'a [Bubble],
}

/// Area ∝ memory: radius ∝ √memory.
fn radius(memory: f64, biggest: f64) -> i32 {
    (LARGEST * (memory / biggest).sqrt()).max(4.0) as i32
}

/// A label's box: left, top, right, bottom, in pixels.
type Rect = (i32, i32, i32, i32);

fn overlaps(a: Rect, b: Rect) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

/// Where to write a `w`×`h` label for the bubble at `c` of radius `r`: right, left, above or
/// below it, then further up or down, the first place that covers no placed label and no other
/// bubble's centre.
fn place(
    c: (i32, i32),
    r: i32,
    (w, h): (i32, i32),
    placed: &[Rect],
    centres: &[(i32, i32)],
) -> Rect {
    let mut tries = vec![
        (c.0 + r + 4, c.1 - h / 2),
        (c.0 - r - 4 - w, c.1 - h / 2),
        (c.0 - w / 2, c.1 - r - 4 - h),
        (c.0 - w / 2, c.1 + r + 4),
    ];
    for k in 1..8 {
        tries.push((c.0 + r + 4, c.1 - h / 2 - k * h));
        tries.push((c.0 + r + 4, c.1 - h / 2 + k * h));
    }
    let rect = |(x, y): (i32, i32)| (x, y, x + w, y + h);
    let free = |b: Rect| {
        placed.iter().all(|&p| !overlaps(b, p))
            && centres
                .iter()
                .filter(|&&o| o != c)
                .all(|&(x, y)| !overlaps(b, (x - 2, y - 2, x + 2, y + 2)))
    };
    tries
        .iter()
        .map(|&t| rect(t))
        .find(|&b| free(b))
        .unwrap_or_else(|| rect(tries[0]))
}

impl Chart for Bubbles<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (plot, side) = layout(&root, self.heading)?;
        let mut chart = accuracy_chart(
            &plot,
            self.runs.iter().map(|b| b.speed),
            self.runs.iter().map(|b| b.accuracy),
            (1.35, 2.5),
        )?;
        let unit = self.speed.unit;
        mesh(&mut chart)
            .x_desc(self.speed.label)
            .y_desc("test accuracy (%)")
            .x_label_formatter(&|v| unit.label(*v))
            .y_label_formatter(&|v| super::style::short(*v))
            .y_labels(8)
            .draw()
            .map_err(plot_err)?;
        let biggest = self
            .runs
            .iter()
            .map(|b| b.memory)
            .fold(0.0, f64::max)
            .max(1e-12);
        let base = plot.get_base_pixel();
        let pixel = |b: &Bubble| {
            let (x, y) = chart.backend_coord(&(b.speed, b.accuracy));
            (x - base.0, y - base.1)
        };
        let centres: Vec<(i32, i32)> = self.runs.iter().map(pixel).collect();
        // Largest first, so small bubbles stay visible on top.
        let mut order: Vec<usize> = (0..self.runs.len()).collect();
        order.sort_by(|&a, &b| self.runs[b].memory.total_cmp(&self.runs[a].memory));
        for &i in &order {
            let b = &self.runs[i];
            let colour = style(i).colour;
            let r = radius(b.memory, biggest);
            plot.draw(&Circle::new(centres[i], r, colour.mix(0.45).filled()))
                .map_err(plot_err)?;
            plot.draw(&Circle::new(centres[i], r, colour.stroke_width(2)))
                .map_err(plot_err)?;
        }
        let font: TextStyle = ("sans-serif", 15).into();
        let mut placed: Vec<Rect> = Vec::new();
        for (i, b) in self.runs.iter().enumerate() {
            let (w, h) = plot.estimate_text_size(&b.name, &font).map_err(plot_err)?;
            let r = radius(b.memory, biggest);
            let at = place(centres[i], r, (w as i32, h as i32), &placed, &centres);
            placed.push(at);
            plot.draw(&Text::new(b.name.clone(), (at.0, at.1), font.clone()))
                .map_err(plot_err)?;
        }
        self.size_key(&side, biggest)?;
        root.present().map_err(plot_err)
    }
}

impl Bubbles<'_> {
    /// Three reference bubbles (the largest memory, a quarter and a sixteenth of it), labelled.
    fn size_key<DB: DrawingBackend>(
        &self,
        side: &DrawingArea<DB, Shift>,
        biggest: f64,
    ) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let font = ("sans-serif", 14).into_font();
        side.draw(&Text::new(
            "bubble area: peak heap of a step",
            (10, 20),
            font.clone(),
        ))
        .map_err(plot_err)?;
        let mut y = 60;
        for fraction in [1.0, 0.25, 1.0 / 16.0] {
            let memory = biggest * fraction;
            let r = radius(memory, biggest);
            y += r;
            let grey = RGBColor(120, 120, 120);
            side.draw(&Circle::new((55, y), r, grey.mix(0.3).filled()))
                .map_err(plot_err)?;
            side.draw(&Circle::new((55, y), r, grey.stroke_width(1)))
                .map_err(plot_err)?;
            side.draw(&Text::new(
                self.memory.label(memory),
                (105, y - 7),
                font.clone(),
            ))
            .map_err(plot_err)?;
            y += r + 18;
        }
        Ok(())
    }
}

/// Accuracy (y) against speed (x, log scale), bubble area proportional to memory (in `memory`
/// units), in the form of LRA's Figure 3; writes `stem.png` and `stem.svg`.
pub fn bubbles(
    stem: &Path,
    heading: Heading,
    speed: super::Axis,
    memory: Unit,
    runs: &[Bubble],
) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(!runs.is_empty(), "no runs to plot");
    write_both(
        stem,
        &Bubbles {
            heading,
            speed,
            memory,
            runs,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_of_bubbles_at_one_spot_do_not_overlap() {
        let centres = [(100, 100), (104, 100), (100, 104)];
        let mut placed = Vec::new();
        for &c in &centres {
            let at = place(c, 20, (60, 16), &placed, &centres);
            assert!(
                placed.iter().all(|&p| !overlaps(at, p)),
                "{at:?} over {placed:?}"
            );
            placed.push(at);
        }
    }
}
