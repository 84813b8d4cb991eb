//! Row operations of the softmax on `f32` slices, compiled for the baseline target, for AVX2 +
//! FMA and for AVX-512, chosen at run time.
//!
//! The exponential is a branch-free polynomial (Cody–Waite range reduction, degree-6 minimax
//! polynomial as in Cephes' `expf`, relative error below 2e-7) so the compiler can vectorise it;
//! arguments below −87.3 give exactly zero, as `f32::exp` does for the blocked score.

use std::sync::OnceLock;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this `exp` underflows: the result is taken as exactly zero.
const EXP_MIN: f32 = -87.3;
/// Above this the result would overflow 2¹²⁷ scaling; the softmax only passes arguments ≤ 0.
const EXP_MAX: f32 = 88.0;
/// Adding then subtracting 1.5·2²³ rounds an `f32` of magnitude below 2²² to the nearest integer.
const ROUNDER: f32 = 12_582_912.0;

// The coefficients are kept as published, though f32 rounds their last digit.
#[allow(clippy::excessive_precision)]
#[inline(always)]
fn exp(x: f32) -> f32 {
    let c = x.clamp(EXP_MIN, EXP_MAX);
    let t = c * LOG2E + ROUNDER;
    let n = t - ROUNDER;
    let r = c - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let y = p * r * r + r + 1.0;
    // t's low mantissa bits hold n itself: integer arithmetic on them builds 2ⁿ without a
    // float-to-int conversion (whose saturation semantics would not vectorise).
    let k = t.to_bits().wrapping_sub(ROUNDER.to_bits());
    let scale = f32::from_bits(k.wrapping_add(127) << 23);
    if x < EXP_MIN { 0.0 } else { y * scale }
}

/// Lanes summed separately so the loop vectorises; the order is fixed, so sums reproduce.
const LANES: usize = 16;

#[inline(always)]
fn exp_sub_sum(row: &mut [f32], sub: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (x, a) in chunk.iter_mut().zip(acc.iter_mut()) {
            *x = exp(*x - sub);
            *a += *x;
        }
    }
    let mut tail = 0.0;
    for x in chunks.into_remainder() {
        *x = exp(*x - sub);
        tail += *x;
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (x, a) in chunk.iter().zip(acc.iter_mut()) {
            *a = a.max(*x);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, x| m.max(*x));
    acc.iter().fold(tail, |m, x| m.max(*x))
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for ((x, y), s) in x.iter().zip(y).zip(acc.iter_mut()) {
            *s += x * y;
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// `ds = p ∘ (dp − delta) · scale`, in place in `dp`.
#[inline(always)]
fn softmax_grad(dp: &mut [f32], p: &[f32], delta: f32, scale: f32) {
    for (d, p) in dp.iter_mut().zip(p) {
        *d = p * (*d - delta) * scale;
    }
}

/// `row ← row · c`.
#[inline(always)]
fn scale(row: &mut [f32], c: f32) {
    for x in row {
        *x *= c;
    }
}

const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// Φ(x), the standard normal CDF, from `erfc` in Numerical Recipes' Chebyshev form (fractional
/// error below 1.2e-7 everywhere), so the tail keeps its relative accuracy.
#[allow(clippy::excessive_precision)]
#[inline(always)]
fn normal_cdf(x: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let mut p = 0.170_872_77_f32;
    p = p * t - 0.822_152_23;
    p = p * t + 1.488_515_9;
    p = p * t - 1.135_203_9;
    p = p * t + 0.278_868_07;
    p = p * t - 0.186_288_06;
    p = p * t + 0.096_784_18;
    p = p * t + 0.374_091_96;
    p = p * t + 1.000_023_7;
    p = p * t - 1.265_512_2;
    let half_erfc = 0.5 * t * exp(p - z * z);
    if x >= 0.0 { 1.0 - half_erfc } else { half_erfc }
}

/// `out ← x·Φ(x)` (exact GELU).
#[inline(always)]
fn gelu(x: &[f32], out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(x) {
        *o = x * normal_cdf(x);
    }
}

/// `out ← dy · (Φ(x) + x·φ(x))`, the gradient of exact GELU.
#[inline(always)]
fn gelu_grad(x: &[f32], dy: &[f32], out: &mut [f32]) {
    for ((o, &x), &g) in out.iter_mut().zip(x).zip(dy) {
        *o = g * (normal_cdf(x) + x * FRAC_1_SQRT_2PI * exp(-0.5 * x * x));
    }
}

/// `out ← elu(x) + 1`: `x + 1` above zero, `exp(x)` at or below (linear attention's map).
#[inline(always)]
fn elu_plus_one(x: &[f32], out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(x) {
        let e = exp(x.min(0.0));
        *o = if x > 0.0 { x + 1.0 } else { e };
    }
}

/// `out ← dy · min(y, 1)`: the gradient of `elu + 1` from its output `y` (1 above zero, where
/// `y > 1`; `exp(x) = y` at or below).
#[inline(always)]
fn elu_plus_one_grad(y: &[f32], dy: &[f32], out: &mut [f32]) {
    for ((o, &y), &g) in out.iter_mut().zip(y).zip(dy) {
        *o = g * y.min(1.0);
    }
}

/// One row of layer normalisation: `y ← (x − μ)/σ · γ + β`; returns `(μ, 1/σ)`.
#[inline(always)]
fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32]) -> (f32, f32) {
    let ones = |v: &[f32]| {
        let mut acc = [0.0f32; LANES];
        let mut c = v.chunks_exact(LANES);
        for chunk in &mut c {
            for (a, x) in acc.iter_mut().zip(chunk) {
                *a += x;
            }
        }
        acc.iter().sum::<f32>() + c.remainder().iter().sum::<f32>()
    };
    let n = x.len() as f32;
    let mean = ones(x) / n;
    for (y, x) in y.iter_mut().zip(x) {
        *y = x - mean;
    }
    let var = dot(y, y) / n;
    let rstd = 1.0 / (var + eps).sqrt();
    for ((y, g), b) in y.iter_mut().zip(gamma).zip(beta) {
        *y = *y * rstd * g + b;
    }
    (mean, rstd)
}

/// One row of layer normalisation's backward pass: writes `dx`, adds this row's `dγ` and `dβ`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn layer_norm_grad(
    x: &[f32],
    gamma: &[f32],
    dy: &[f32],
    (mean, rstd): (f32, f32),
    dx: &mut [f32],
    d_gamma: &mut [f32],
    d_beta: &mut [f32],
) {
    let n = x.len() as f32;
    // dx holds x̂ first, then the gradient.
    for (h, x) in dx.iter_mut().zip(x) {
        *h = (x - mean) * rstd;
    }
    let (mut sum_g, mut sum_gh) = (0.0f32, 0.0f32);
    for (((h, g), dy), (dg, db)) in dx
        .iter()
        .zip(gamma)
        .zip(dy)
        .zip(d_gamma.iter_mut().zip(d_beta.iter_mut()))
    {
        *dg += dy * h;
        *db += dy;
        let gy = dy * g;
        sum_g += gy;
        sum_gh += gy * h;
    }
    let (mean_g, mean_gh) = (sum_g / n, sum_gh / n);
    for ((h, g), dy) in dx.iter_mut().zip(gamma).zip(dy) {
        *h = rstd * (dy * g - mean_g - *h * mean_gh);
    }
}

/// The row kernels of one instruction set.
#[derive(Clone, Copy)]
pub(crate) struct RowOps {
    /// `row ← exp(row − sub)`; returns the row's new sum.
    pub exp_sub_sum: fn(&mut [f32], f32) -> f32,
    /// The row's largest element (−∞ when empty).
    pub max: fn(&[f32]) -> f32,
    /// `Σ a·b`.
    pub dot: fn(&[f32], &[f32]) -> f32,
    /// `dp ← p ∘ (dp − delta) · scale`.
    pub softmax_grad: fn(&mut [f32], &[f32], f32, f32),
    /// `row ← row · c`.
    pub scale: fn(&mut [f32], f32),
    /// `out ← gelu(x)`.
    pub gelu: fn(&[f32], &mut [f32]),
    /// `out ← dy · gelu′(x)`.
    pub gelu_grad: fn(&[f32], &[f32], &mut [f32]),
    /// `out ← elu(x) + 1`.
    pub elu_plus_one: fn(&[f32], &mut [f32]),
    /// `out ← dy · min(y, 1)`, from the output `y` of `elu + 1`.
    pub elu_plus_one_grad: fn(&[f32], &[f32], &mut [f32]),
    /// One layer-norm row: `(x, γ, β, ε, y) → (μ, 1/σ)`.
    pub layer_norm: LayerNormRow,
    /// One layer-norm backward row: `(x, γ, dy, (μ, 1/σ), dx, dγ += …, dβ += …)`.
    pub layer_norm_grad: LayerNormGrad,
}

/// The signature of [`RowOps::layer_norm`].
pub(crate) type LayerNormRow = fn(&[f32], &[f32], &[f32], f32, &mut [f32]) -> (f32, f32);

/// The signature of [`RowOps::layer_norm_grad`].
pub(crate) type LayerNormGrad =
    fn(&[f32], &[f32], &[f32], (f32, f32), &mut [f32], &mut [f32], &mut [f32]);

macro_rules! row_ops {
    ($name:ident $(, $feature:literal)?) => {
        mod $name {
            $(#[target_feature(enable = $feature)])?
            pub(super) fn exp_sub_sum(row: &mut [f32], sub: f32) -> f32 {
                super::exp_sub_sum(row, sub)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) fn max(row: &[f32]) -> f32 {
                super::max(row)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
                super::dot(a, b)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) fn softmax_grad(dp: &mut [f32], p: &[f32], delta: f32, scale: f32) {
                super::softmax_grad(dp, p, delta, scale)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) fn scale(row: &mut [f32], c: f32) {
                super::scale(row, c)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) fn gelu(x: &[f32], out: &mut [f32]) {
                super::gelu(x, out)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) fn gelu_grad(x: &[f32], dy: &[f32], out: &mut [f32]) {
                super::gelu_grad(x, dy, out)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) fn elu_plus_one(x: &[f32], out: &mut [f32]) {
                super::elu_plus_one(x, out)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) fn elu_plus_one_grad(y: &[f32], dy: &[f32], out: &mut [f32]) {
                super::elu_plus_one_grad(y, dy, out)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) fn layer_norm(x: &[f32], g: &[f32], b: &[f32], eps: f32, y: &mut [f32]) -> (f32, f32) {
                super::layer_norm(x, g, b, eps, y)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) fn layer_norm_grad(
                x: &[f32],
                g: &[f32],
                dy: &[f32],
                stats: (f32, f32),
                dx: &mut [f32],
                dg: &mut [f32],
                db: &mut [f32],
            ) {
                super::layer_norm_grad(x, g, dy, stats, dx, dg, db)
            }
        }

        impl RowOps {
            #[allow(dead_code, unused_unsafe)]
            /// The kernels of this module. Only call where the CPU has its features.
            unsafe fn $name() -> Self {
                // SAFETY: the caller checked the CPU for every feature these functions enable.
                unsafe {
                    Self {
                        exp_sub_sum: |r, s| unsafe { $name::exp_sub_sum(r, s) },
                        max: |r| unsafe { $name::max(r) },
                        dot: |a, b| unsafe { $name::dot(a, b) },
                        softmax_grad: |d, p, delta, c| unsafe { $name::softmax_grad(d, p, delta, c) },
                        scale: |r, c| unsafe { $name::scale(r, c) },
                        gelu: |x, o| unsafe { $name::gelu(x, o) },
                        gelu_grad: |x, g, o| unsafe { $name::gelu_grad(x, g, o) },
                        elu_plus_one: |x, o| unsafe { $name::elu_plus_one(x, o) },
                        elu_plus_one_grad: |y, g, o| unsafe { $name::elu_plus_one_grad(y, g, o) },
                        layer_norm: |x, g, b, e, y| unsafe { $name::layer_norm(x, g, b, e, y) },
                        layer_norm_grad: |x, g, dy, s, dx, dg, db| unsafe {
                            $name::layer_norm_grad(x, g, dy, s, dx, dg, db)
                        },
                    }
                }
            }
        }
    };
}

row_ops!(portable);
#[cfg(target_arch = "x86_64")]
row_ops!(avx2, "avx2,fma");
#[cfg(target_arch = "x86_64")]
row_ops!(avx512, "avx512f,avx2,fma");

/// The portable row kernels (what every other instruction set is tested against).
pub(crate) fn portable() -> RowOps {
    // SAFETY: the portable kernels enable no feature beyond the compilation target's.
    unsafe { RowOps::portable() }
}

/// The fastest row kernels this CPU runs, detected once.
pub(crate) fn best() -> RowOps {
    static BEST: OnceLock<RowOps> = OnceLock::new();
    *BEST.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let (avx512, avx2, fma) = (
                is_x86_feature_detected!("avx512f"),
                is_x86_feature_detected!("avx2"),
                is_x86_feature_detected!("fma"),
            );
            if avx512 && avx2 && fma {
                // SAFETY: the CPU has every feature these kernels enable.
                return unsafe { RowOps::avx512() };
            }
            if avx2 && fma {
                // SAFETY: as above.
                return unsafe { RowOps::avx2() };
            }
        }
        portable()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<f32> {
        let mut x: Vec<f32> = (0..4001).map(|i| -90.0 + i as f32 * 0.0445).collect();
        x.extend([0.0, -0.0, 1e-30, -1e9, -87.29, 88.0, 0.5, -0.5]);
        x
    }

    #[test]
    fn exp_matches_std_within_two_ulps_of_relative_error() {
        for x in samples() {
            let (got, want) = (exp(x), x.exp());
            if x < EXP_MIN {
                assert_eq!(got, 0.0, "exp({x})");
            } else {
                assert!(
                    ((got - want) / want).abs() < 4e-7,
                    "exp({x}) = {got}, std {want}"
                );
            }
        }
    }

    fn gelu_f64(x: f64) -> f64 {
        // The Maclaurin series of erf, exact to ~1e-11 in f64 for |x| ≤ 5 (cancellation grows
        // beyond that).
        let z = x / std::f64::consts::SQRT_2;
        let mut term = z;
        let mut sum = z;
        for n in 1..200 {
            term *= -z * z / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        0.5 * x * (1.0 + 2.0 / std::f64::consts::PI.sqrt() * sum)
    }

    #[test]
    fn gelu_and_its_gradient_match_f64() {
        let x: Vec<f32> = (0..1001).map(|i| -5.0 + i as f32 * 0.01).collect();
        let mut y = vec![0.0; x.len()];
        gelu(&x, &mut y);
        let mut dy = vec![0.0; x.len()];
        gelu_grad(&x, &vec![1.0; x.len()], &mut dy);
        for ((&x, y), dy) in x.iter().zip(&y).zip(&dy) {
            let want = gelu_f64(f64::from(x));
            let err = (f64::from(*y) - want).abs();
            assert!(
                err <= 3e-6 * want.abs().max(1e-3),
                "gelu({x}) = {y}, f64 {want}"
            );
            let h = 1e-4;
            let slope = (gelu_f64(f64::from(x) + h) - gelu_f64(f64::from(x) - h)) / (2.0 * h);
            assert!(
                (f64::from(*dy) - slope).abs() < 1e-6,
                "gelu'({x}) = {dy}, f64 {slope}"
            );
        }
    }

    #[test]
    fn layer_norm_rows_match_f64_and_their_gradient_matches_finite_differences() {
        let d = 37;
        let x: Vec<f32> = (0..d).map(|i| ((i * 29 % 17) as f32 - 8.0) * 0.3).collect();
        let gamma: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 * 0.03).collect();
        let beta: Vec<f32> = (0..d).map(|i| i as f32 * -0.01).collect();
        let dy: Vec<f32> = (0..d).map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.4).collect();
        let eps = 1e-6;
        let f64_norm = |x: &[f64]| -> Vec<f64> {
            let mean = x.iter().sum::<f64>() / d as f64;
            let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
            let rstd = 1.0 / (var + eps).sqrt();
            (0..d)
                .map(|i| (x[i] - mean) * rstd * f64::from(gamma[i]) + f64::from(beta[i]))
                .collect()
        };
        let mut y = vec![0.0; d];
        let stats = layer_norm(&x, &gamma, &beta, eps as f32, &mut y);
        let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        for (a, b) in y.iter().zip(f64_norm(&x64)) {
            assert!((f64::from(*a) - b).abs() < 1e-5, "{a} vs {b}");
        }
        let (mut dx, mut dg, mut db) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        layer_norm_grad(&x, &gamma, &dy, stats, &mut dx, &mut dg, &mut db);
        let loss = |x: &[f64]| -> f64 {
            f64_norm(x)
                .iter()
                .zip(&dy)
                .map(|(y, g)| y * f64::from(*g))
                .sum()
        };
        for i in 0..d {
            let (mut up, mut down) = (x64.clone(), x64.clone());
            up[i] += 1e-5;
            down[i] -= 1e-5;
            let slope = (loss(&up) - loss(&down)) / 2e-5;
            assert!(
                (f64::from(dx[i]) - slope).abs() < 1e-4,
                "dx[{i}] {} vs {slope}",
                dx[i]
            );
            let xhat = (x64[i] - f64::from(stats.0)) * f64::from(stats.1);
            assert!((f64::from(dg[i]) - f64::from(dy[i]) * xhat).abs() < 1e-5);
            assert_eq!(db[i], dy[i]);
        }
    }

    #[test]
    fn every_instruction_set_agrees_with_the_portable_kernels() {
        let (fast, slow) = (best(), portable());
        for len in [0, 1, 7, 16, 33, 257] {
            let row: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.7)
                .collect();
            let other: Vec<f32> = (0..len)
                .map(|i| ((i * 11 % 7) as f32 - 3.0) * 0.3)
                .collect();
            assert_eq!((fast.max)(&row).to_bits(), (slow.max)(&row).to_bits());
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * a.abs().max(b.abs()).max(1.0);
            assert!(close((fast.dot)(&row, &other), (slow.dot)(&row, &other)));
            let (mut a, mut b) = (row.clone(), row.clone());
            let (sa, sb) = (
                (fast.exp_sub_sum)(&mut a, 1.5),
                (slow.exp_sub_sum)(&mut b, 1.5),
            );
            assert!(close(sa, sb));
            let want: f32 = row.iter().map(|x| (x - 1.5).exp()).sum();
            assert!(close(sa, want), "sum {sa} vs {want}");
            for (x, y) in a.iter().zip(&b) {
                assert!(close(*x, *y));
            }
            let (mut da, mut db) = (other.clone(), other.clone());
            (fast.softmax_grad)(&mut da, &a, 0.25, 0.125);
            (slow.softmax_grad)(&mut db, &b, 0.25, 0.125);
            for (x, y) in da.iter().zip(&db) {
                assert!(close(*x, *y));
            }
            let (mut ga, mut gb) = (vec![0.0; len], vec![0.0; len]);
            (fast.gelu)(&row, &mut ga);
            (slow.gelu)(&row, &mut gb);
            (fast.gelu_grad)(&row, &other, &mut da);
            (slow.gelu_grad)(&row, &other, &mut db);
            for (x, y) in ga.iter().zip(&gb).chain(da.iter().zip(&db)) {
                assert!(close(*x, *y));
            }
            (fast.elu_plus_one)(&row, &mut ga);
            (slow.elu_plus_one)(&row, &mut gb);
            (fast.elu_plus_one_grad)(&ga, &other, &mut da);
            (slow.elu_plus_one_grad)(&gb, &other, &mut db);
            for (x, y) in ga.iter().zip(&gb).chain(da.iter().zip(&db)) {
                assert!(close(*x, *y));
            }
            if len > 0 {
                let (beta, gamma) = (other.clone(), vec![1.5; len]);
                let sa = (fast.layer_norm)(&row, &gamma, &beta, 1e-6, &mut ga);
                let sb = (slow.layer_norm)(&row, &gamma, &beta, 1e-6, &mut gb);
                assert!(close(sa.0, sb.0) && close(sa.1, sb.1));
                let mut acc = [
                    vec![0.0; len],
                    vec![0.0; len],
                    vec![0.0; len],
                    vec![0.0; len],
                ];
                let [g1, b1, g2, b2] = &mut acc;
                (fast.layer_norm_grad)(&row, &gamma, &other, sa, &mut da, g1, b1);
                (slow.layer_norm_grad)(&row, &gamma, &other, sb, &mut db, g2, b2);
                for (x, y) in ga
                    .iter()
                    .zip(&gb)
                    .chain(da.iter().zip(&db))
                    .chain(g1.iter().zip(g2.iter()))
                {
                    assert!(close(*x, *y));
                }
            }
        }
    }
}
