//! Pathfinder and Path-X (LRA): do the two round markers sit on the same snake?
//!
//! A snake is a chain of short straight "paddles" separated by small gaps; each turn is drawn
//! with weight cos²(min(|Δθ|·continuity, π/2)), so snakes bend smoothly. Two target snakes start
//! `seed_distance` apart; one marker sits at the start tip of the first, the other at its far tip
//! (label 1) or at the far tip of the second (label 0). Distractor snakes a third as long fill the
//! rest. Snakes of different identity never come within `reach` pixels of each other, so a flood
//! fill over lit pixels that bridges gaps up to `reach` connects exactly one snake: the label is a
//! property of the image, not only of how it was drawn.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{DataError, Dataset, Example, seeded_rng};

/// Random stream of the Pathfinder splits (other tasks use other streams).
const PATHFINDER_STREAM: u64 = 0x9a7f;
/// Tries for one paddle before the snake (and image) is started again.
const PADDLE_TRIES: usize = 24;
/// Tries for one snake from its start point before the image is started again.
const SNAKE_TRIES: usize = 8;
/// Fresh starts of one image before the geometry is declared not to fit.
const IMAGE_TRIES: usize = 500;
/// Turning angles are drawn from this many equally spaced directions.
const DIRECTIONS: usize = 24;

/// `[task] name = "pathfinder"` or `"pathx"`: the snake images as grey-level token sequences.
///
/// Geometry fields left out take LRA's values for the image size: its 32-pixel Pathfinder settings
/// below 64 pixels, its 128-pixel Path-X settings from 64 on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathfinderConfig {
    /// Image side in pixels; the sequence has `size²` tokens (32 → 1024, 128 → 16,384).
    pub size: usize,
    /// Paddles per target snake: 6 (easy), 9 or 14 (hard, what later papers use).
    pub contour_length: usize,
    /// Training examples.
    pub train: usize,
    /// Validation examples.
    pub val: usize,
    /// Test examples.
    pub test: usize,
    /// Overrides of LRA's drawing parameters for this size.
    #[serde(default, flatten)]
    pub geometry: GeometryOverrides,
}

/// Drawing parameters a config may set; the rest come from [`Geometry::lra`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeometryOverrides {
    /// Length of one paddle in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paddle_length: Option<f64>,
    /// Line width in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thickness: Option<f64>,
    /// Gap between consecutive paddles in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    /// Radius of the round markers in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_radius: Option<f64>,
    /// Distance between the two target snakes' start points in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_distance: Option<f64>,
    /// How strongly turns are penalised (1 allows up to 90°, 1.8 up to 50°).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuity: Option<f64>,
    /// Grey level of a fully covered snake pixel, as a share of white (markers are white).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contrast: Option<f64>,
    /// Distractor snakes to place (fewer when the image is full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distractors: Option<usize>,
}

/// The resolved drawing parameters of one image size.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    /// Length of one paddle in pixels.
    pub paddle_length: f64,
    /// Line width in pixels.
    pub thickness: f64,
    /// Gap between consecutive paddles in pixels.
    pub margin: f64,
    /// Marker radius in pixels.
    pub marker_radius: f64,
    /// Distance between the target snakes' start points.
    pub seed_distance: f64,
    /// Turn penalty.
    pub continuity: f64,
    /// Grey level of snake pixels as a share of white.
    pub contrast: f64,
    /// Distractor snakes.
    pub distractors: usize,
    /// Border in pixels that stays black.
    pub padding: usize,
    /// Sub-samples per pixel side for anti-aliasing.
    pub antialias: usize,
}

impl Geometry {
    /// LRA's settings: Pathfinder-32 below 64 pixels, Path-X-128 from 64 on.
    pub fn lra(size: usize) -> Self {
        if size < 64 {
            Geometry {
                paddle_length: 2.0,
                thickness: 0.5,
                margin: 1.0,
                marker_radius: 1.5,
                seed_distance: 7.0_f64.min(size as f64 / 4.0),
                continuity: 1.0,
                contrast: 0.75,
                distractors: size / 8,
                padding: 1,
                antialias: 2,
            }
        } else {
            Geometry {
                paddle_length: 5.0,
                thickness: 1.5,
                margin: 2.0,
                marker_radius: 3.0,
                seed_distance: 20.0,
                continuity: 1.8,
                contrast: 0.9,
                distractors: size / 6,
                padding: 1,
                antialias: 2,
            }
        }
    }

    /// The Chebyshev distance in pixels a flood fill must bridge to follow one snake.
    pub fn reach(&self) -> usize {
        self.margin.ceil() as usize + 1
    }
}

impl PathfinderConfig {
    /// LRA's Pathfinder-32 at `contour_length` with the given split sizes.
    pub fn lra32(contour_length: usize, train: usize, val: usize, test: usize) -> Self {
        PathfinderConfig {
            size: 32,
            contour_length,
            train,
            val,
            test,
            geometry: GeometryOverrides::default(),
        }
    }

    /// The drawing parameters: LRA's for this size with the config's overrides.
    pub fn geometry(&self) -> Geometry {
        let o = &self.geometry;
        let d = Geometry::lra(self.size);
        Geometry {
            paddle_length: o.paddle_length.unwrap_or(d.paddle_length),
            thickness: o.thickness.unwrap_or(d.thickness),
            margin: o.margin.unwrap_or(d.margin),
            marker_radius: o.marker_radius.unwrap_or(d.marker_radius),
            seed_distance: o.seed_distance.unwrap_or(d.seed_distance),
            continuity: o.continuity.unwrap_or(d.continuity),
            contrast: o.contrast.unwrap_or(d.contrast),
            distractors: o.distractors.unwrap_or(d.distractors),
            ..d
        }
    }

    /// The images in words: "16×16 pixels (256 tokens), target snakes of 3 paddles, 0
    /// distractor snakes".
    pub fn describe(&self) -> String {
        format!(
            "{s}×{s} pixels ({} tokens), target snakes of {} paddles, {} distractor snakes",
            self.size * self.size,
            self.contour_length,
            self.geometry().distractors,
            s = self.size
        )
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |field, value: String, fix: &str| Err(DataError::config(field, value, fix));
        if !(8..=256).contains(&self.size) {
            return bad(
                "task.size",
                self.size.to_string(),
                "must be 8 to 256 pixels (LRA: 32 for pathfinder, 128 for pathx)",
            );
        }
        if self.contour_length < 2 {
            return bad(
                "task.contour_length",
                self.contour_length.to_string(),
                "must be at least 2 paddles (LRA: 6, 9 or 14)",
            );
        }
        crate::check_splits(self.train, self.val, self.test)?;
        let g = self.geometry();
        for (field, v) in [
            ("task.paddle_length", g.paddle_length),
            ("task.thickness", g.thickness),
            ("task.marker_radius", g.marker_radius),
            ("task.seed_distance", g.seed_distance),
            ("task.continuity", g.continuity),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(field, v.to_string(), "must be a positive number of pixels");
            }
        }
        if !(g.margin.is_finite() && g.margin >= 0.0) {
            return bad(
                "task.margin",
                g.margin.to_string(),
                "must be 0 or more pixels",
            );
        }
        if !(g.contrast > 0.0 && g.contrast <= 1.0) {
            return bad(
                "task.contrast",
                g.contrast.to_string(),
                "must be in (0, 1]: a share of white",
            );
        }
        Ok(())
    }

    /// Draws the three splits from `seed`.
    pub fn build(&self, seed: u64) -> Result<Dataset, DataError> {
        self.validate()?;
        let split = |stream: u64, n: usize| -> Result<Vec<Example>, DataError> {
            let mut rng = seeded_rng(seed, PATHFINDER_STREAM + stream);
            (0..n)
                .map(|_| {
                    let label = rng.random_bool(0.5);
                    let image = self.draw(&mut rng, label)?;
                    Ok(Example {
                        tokens: image.grey.iter().map(|&g| u32::from(g) + 1).collect(),
                        label: u32::from(label),
                        targets: Vec::new(),
                        second: None,
                    })
                })
                .collect()
        };
        Ok(Dataset {
            train: split(0, self.train)?,
            val: split(1, self.val)?,
            test: split(2, self.test)?,
            vocab_size: 257,
            n_classes: 2,
            max_len: self.size * self.size,
        })
    }

    /// One image whose markers are on one snake exactly when `connected`.
    pub fn draw(&self, rng: &mut ChaCha8Rng, connected: bool) -> Result<Image, DataError> {
        let g = self.geometry();
        for _ in 0..IMAGE_TRIES {
            if let Some(image) =
                Canvas::new(self.size, &g).try_draw(rng, self.contour_length, connected)
            {
                return Ok(image);
            }
        }
        Err(DataError::config(
            "task.contour_length",
            self.contour_length,
            format!(
                "two snakes of {} paddles of {} px do not fit a {}-pixel image {IMAGE_TRIES} times in a row; use a larger size or shorter snakes",
                self.contour_length, g.paddle_length, self.size
            ),
        ))
    }
}

/// A rendered image: grey levels row-major, and where its markers are.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Side in pixels.
    pub size: usize,
    /// Grey level per pixel, row-major; 0 is background.
    pub grey: Vec<u8>,
    /// The two markers' centre pixels as (row, column).
    pub markers: [(usize, usize); 2],
}

/// A straight piece of a snake from `a` to `b` (x = column, y = row, pixel centres at +0.5).
#[derive(Debug, Clone, Copy)]
struct Segment {
    a: (f64, f64),
    b: (f64, f64),
}

impl Segment {
    fn distance(&self, p: (f64, f64)) -> f64 {
        let (dx, dy) = (self.b.0 - self.a.0, self.b.1 - self.a.1);
        let len2 = dx * dx + dy * dy;
        let t = if len2 == 0.0 {
            0.0
        } else {
            (((p.0 - self.a.0) * dx + (p.1 - self.a.1) * dy) / len2).clamp(0.0, 1.0)
        };
        let (x, y) = (self.a.0 + t * dx - p.0, self.a.1 + t * dy - p.1);
        (x * x + y * y).sqrt()
    }
}

/// Pixels a shape covers, with the share of each pixel's sub-samples inside it.
type Coverage = Vec<(usize, f64)>;

/// The image being drawn: coverage per pixel and which snake owns each lit pixel.
struct Canvas<'g> {
    size: usize,
    g: &'g Geometry,
    /// Brightness per pixel in [0, 1].
    light: Vec<f64>,
    /// Snake id + 1 of each lit pixel (0: empty) and the paddle index that lit it.
    owner: Vec<(u16, u16)>,
}

impl<'g> Canvas<'g> {
    fn new(size: usize, g: &'g Geometry) -> Self {
        Canvas {
            size,
            g,
            light: vec![0.0; size * size],
            owner: vec![(0, 0); size * size],
        }
    }

    /// Sub-sampled coverage of the points within `radius` of `inside`'s shape, or `None` when
    /// any of it leaves the image's inner area.
    fn cover(
        &self,
        centre: (f64, f64),
        extent: f64,
        inside: impl Fn((f64, f64)) -> bool,
    ) -> Option<Coverage> {
        let aa = self.g.antialias;
        let lo = |v: f64| (v - extent).floor() as i64;
        let hi = |v: f64| (v + extent).floor() as i64;
        let (min, max) = (
            self.g.padding as i64,
            (self.size - self.g.padding) as i64 - 1,
        );
        let mut out = Vec::new();
        for r in lo(centre.1)..=hi(centre.1) {
            for c in lo(centre.0)..=hi(centre.0) {
                let mut hits = 0;
                for i in 0..aa {
                    for j in 0..aa {
                        let p = (
                            c as f64 + (j as f64 + 0.5) / aa as f64,
                            r as f64 + (i as f64 + 0.5) / aa as f64,
                        );
                        hits += usize::from(inside(p));
                    }
                }
                if hits > 0 {
                    if r < min || r > max || c < min || c > max {
                        return None;
                    }
                    out.push((
                        r as usize * self.size + c as usize,
                        hits as f64 / (aa * aa) as f64,
                    ));
                }
            }
        }
        Some(out)
    }

    fn paddle(&self, s: Segment) -> Option<Coverage> {
        // Widening by half a sub-sample spacing keeps thin lines unbroken at any angle.
        let radius = self.g.thickness / 2.0 + 0.5 / self.g.antialias as f64;
        let centre = ((s.a.0 + s.b.0) / 2.0, (s.a.1 + s.b.1) / 2.0);
        let extent = self.g.paddle_length / 2.0 + radius + 1.0;
        self.cover(centre, extent, |p| s.distance(p) <= radius)
    }

    fn disk(&self, centre: (f64, f64)) -> Option<Coverage> {
        let r = self.g.marker_radius;
        self.cover(centre, r + 1.0, |p| {
            ((p.0 - centre.0).powi(2) + (p.1 - centre.1).powi(2)).sqrt() <= r
        })
    }

    /// Whether `cov` keeps `reach` away from every other snake and does not cross its own
    /// snake's paddles other than the one before it.
    fn free(&self, cov: &Coverage, snake: u16, paddle: u16) -> bool {
        let reach = self.g.reach() as i64;
        let n = self.size as i64;
        cov.iter().all(|&(at, _)| {
            let (r, c) = ((at / self.size) as i64, (at % self.size) as i64);
            let (o, p) = self.owner[at];
            if o == snake + 1 && p + 1 < paddle {
                return false;
            }
            (r - reach..=r + reach).all(|rr| {
                (c - reach..=c + reach).all(|cc| {
                    if rr < 0 || cc < 0 || rr >= n || cc >= n {
                        return true;
                    }
                    let o = self.owner[(rr * n + cc) as usize].0;
                    o == 0 || o == snake + 1
                })
            })
        })
    }

    fn paint(&mut self, cov: &Coverage, snake: u16, paddle: u16, level: f64) {
        for &(at, share) in cov {
            self.light[at] = self.light[at].max(share * level);
            if self.owner[at].0 == 0 {
                self.owner[at] = (snake + 1, paddle);
            }
        }
    }

    /// Grows snake `id` of `paddles` paddles from `start`; returns its two tips, or `None`.
    fn snake(
        &mut self,
        rng: &mut ChaCha8Rng,
        id: u16,
        start: (f64, f64),
        paddles: usize,
    ) -> Option<[(f64, f64); 2]> {
        let g = self.g;
        let (mut at, mut heading) = (start, 0.0);
        for k in 0..paddles {
            let mut placed = false;
            for _ in 0..PADDLE_TRIES {
                let theta = if k == 0 {
                    rng.random_range(0.0..std::f64::consts::TAU)
                } else {
                    heading + turn(rng, g.continuity)
                };
                let from = if k == 0 {
                    at
                } else {
                    (at.0 + g.margin * theta.cos(), at.1 + g.margin * theta.sin())
                };
                let to = (
                    from.0 + g.paddle_length * theta.cos(),
                    from.1 + g.paddle_length * theta.sin(),
                );
                let Some(cov) = self.paddle(Segment { a: from, b: to }) else {
                    continue;
                };
                if self.free(&cov, id, k as u16) {
                    self.paint(&cov, id, k as u16, g.contrast);
                    (at, heading, placed) = (to, theta, true);
                    break;
                }
            }
            if !placed {
                return None;
            }
        }
        Some([start, at])
    }

    /// [`Self::snake`] tried up to `SNAKE_TRIES` times from the same start; a failed try is erased.
    fn snake_retrying(
        &mut self,
        rng: &mut ChaCha8Rng,
        id: u16,
        start: (f64, f64),
        paddles: usize,
    ) -> Option<[(f64, f64); 2]> {
        for _ in 0..SNAKE_TRIES {
            let (light, owner) = (self.light.clone(), self.owner.clone());
            if let Some(tips) = self.snake(rng, id, start, paddles) {
                return Some(tips);
            }
            (self.light, self.owner) = (light, owner);
        }
        None
    }

    fn marker(&mut self, centre: (f64, f64), snake: u16) -> Option<(usize, usize)> {
        let cov = self.disk(centre)?;
        if !self.free(&cov, snake, 0) {
            return None;
        }
        self.paint(&cov, snake, 0, 1.0);
        Some((centre.1 as usize, centre.0 as usize))
    }

    fn try_draw(mut self, rng: &mut ChaCha8Rng, contour: usize, connected: bool) -> Option<Image> {
        let g = self.g;
        let inner = (g.padding as f64 + 1.0)..(self.size - g.padding) as f64 - 1.0;
        let first = (
            rng.random_range(inner.clone()),
            rng.random_range(inner.clone()),
        );
        let one = self.snake_retrying(rng, 0, first, contour)?;
        // The first marker goes down before the second snake, which must then keep clear of it.
        let a = self.marker(one[0], 0)?;
        let mut two = None;
        for _ in 0..SNAKE_TRIES {
            let angle = rng.random_range(0.0..std::f64::consts::TAU);
            let second = (
                first.0 + g.seed_distance * angle.cos(),
                first.1 + g.seed_distance * angle.sin(),
            );
            two = self.snake_retrying(rng, 1, second, contour);
            if two.is_some() {
                break;
            }
        }
        let two = two?;
        let b = if connected {
            self.marker(one[1], 0)?
        } else {
            self.marker(two[1], 1)?
        };
        let short = contour.div_ceil(3).max(1);
        for d in 0..g.distractors {
            let id = 2 + d as u16;
            let start = (
                rng.random_range(inner.clone()),
                rng.random_range(inner.clone()),
            );
            // A distractor that does not fit is dropped.
            let _ = self.snake_retrying(rng, id, start, short);
        }
        Some(Image {
            size: self.size,
            grey: self
                .light
                .iter()
                .map(|&l| (l * 255.0).round().clamp(0.0, 255.0) as u8)
                .collect(),
            markers: [a, b],
        })
    }
}

/// A turn drawn from `DIRECTIONS` equally spaced angles with weight cos²(min(|Δθ|·c, π/2)).
fn turn(rng: &mut ChaCha8Rng, continuity: f64) -> f64 {
    let step = std::f64::consts::TAU / DIRECTIONS as f64;
    let angles: Vec<f64> = (0..DIRECTIONS)
        .map(|i| (i as f64 - (DIRECTIONS / 2) as f64 + 1.0) * step)
        .collect();
    let weights: Vec<f64> = angles
        .iter()
        .map(|a| {
            (a.abs() * continuity)
                .min(std::f64::consts::FRAC_PI_2)
                .cos()
                .powi(2)
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.random_range(0.0..total);
    for (a, w) in angles.iter().zip(&weights) {
        if u < *w {
            return *a;
        }
        u -= w;
    }
    0.0
}

/// Whether pixel `to` is reached from `from` over lit pixels (grey > 0), stepping to any lit
/// pixel within Chebyshev distance `reach`.
pub fn flood_connects(image: &Image, reach: usize) -> bool {
    let n = image.size;
    let lit = |r: usize, c: usize| image.grey[r * n + c] > 0;
    let (from, to) = (image.markers[0], image.markers[1]);
    let mut seen = vec![false; n * n];
    let mut stack = vec![from];
    seen[from.0 * n + from.1] = true;
    while let Some((r, c)) = stack.pop() {
        if (r, c) == to {
            return true;
        }
        for rr in r.saturating_sub(reach)..(r + reach + 1).min(n) {
            for cc in c.saturating_sub(reach)..(c + reach + 1).min(n) {
                if lit(rr, cc) && !seen[rr * n + cc] {
                    seen[rr * n + cc] = true;
                    stack.push((rr, cc));
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(size: usize, contour: usize) -> PathfinderConfig {
        PathfinderConfig {
            size,
            contour_length: contour,
            train: 60,
            val: 10,
            test: 10,
            geometry: GeometryOverrides::default(),
        }
    }

    #[test]
    fn the_label_is_what_a_flood_fill_of_the_image_says() {
        for (size, contour) in [(32, 6), (32, 9), (32, 14), (128, 14)] {
            let config = small(size, contour);
            let reach = config.geometry().reach();
            let mut rng = seeded_rng(3, 1);
            for i in 0..40 {
                let connected = i % 2 == 0;
                let image = config.draw(&mut rng, connected).unwrap();
                assert_eq!(
                    flood_connects(&image, reach),
                    connected,
                    "size {size} contour {contour} image {i}"
                );
                for (r, c) in image.markers {
                    assert_eq!(image.grey[r * size + c], 255, "markers are white");
                }
            }
        }
    }

    #[test]
    fn splits_reproduce_by_seed_and_labels_are_balanced() {
        let config = PathfinderConfig {
            train: 400,
            ..small(32, 6)
        };
        let a = config.build(5).unwrap();
        assert_eq!(a.train, config.build(5).unwrap().train);
        assert_ne!(a.train, config.build(6).unwrap().train);
        assert_ne!(
            a.train[..10],
            a.val[..10],
            "splits draw from their own streams"
        );
        let ones = a.train.iter().filter(|e| e.label == 1).count();
        assert!((160..=240).contains(&ones), "{ones} of 400 connected");
        assert!(a.train.iter().all(|e| e.tokens.len() == 1024));
        assert!(
            a.train
                .iter()
                .flat_map(|e| &e.tokens)
                .all(|&t| (1..=256).contains(&t))
        );
        // Pictures, not noise: a snake image is mostly background with some lit pixels.
        let lit = a.train[0].tokens.iter().filter(|&&t| t > 1).count();
        assert!((30..500).contains(&lit), "{lit} lit pixels");
        assert_eq!((a.vocab_size, a.n_classes, a.max_len), (257, 2, 1024));
    }

    #[test]
    fn configs_name_their_task_and_reject_typos() {
        let parse = |json: &str| serde_json::from_str::<crate::TaskConfig>(json);
        let base = r#""size":128,"contour_length":14,"train":1,"val":1,"test":1"#;
        let x = parse(&format!(r#"{{"name":"pathx",{base},"thickness":2.0}}"#)).unwrap();
        let crate::TaskConfig::PathX(c) = &x else {
            panic!("{x:?}")
        };
        assert_eq!(
            (c.geometry().thickness, c.geometry().marker_radius),
            (2.0, 3.0)
        );
        let e = parse(&format!(r#"{{"name":"pathfinder",{base},"thicknes":2.0}}"#)).unwrap_err();
        assert!(e.to_string().contains("thicknes"), "{e}");
    }

    #[test]
    fn path_x_geometry_and_bad_configs() {
        let x = small(128, 14).geometry();
        assert_eq!(
            (x.thickness, x.marker_radius, x.seed_distance),
            (1.5, 3.0, 20.0)
        );
        let mut rng = seeded_rng(0, 0);
        let image = small(128, 14).draw(&mut rng, false).unwrap();
        assert!(!flood_connects(&image, x.reach()));
        let e = small(4, 6).validate().unwrap_err().to_string();
        assert!(e.contains("task.size"), "{e}");
        let e = small(32, 1).validate().unwrap_err().to_string();
        assert!(e.contains("contour_length"), "{e}");
        let e = small(10, 14).draw(&mut rng, true).unwrap_err().to_string();
        assert!(e.contains("do not fit"), "{e}");
        let mut c = small(32, 6);
        c.geometry.contrast = Some(2.0);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("task.contrast")
        );
    }
}
