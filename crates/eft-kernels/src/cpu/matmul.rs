//! Bounds-checked single-threaded matrix products on `f32` slices, on the `gemm` crate's
//! micro-kernels (runtime-dispatched AVX2/AVX-512/NEON); the kernels thread over tiles themselves.

/// A strided `rows × cols` matrix inside a slice: element `(i, j)` is `data[i·row + j·col]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row: usize,
    col: usize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix of `rows × cols` at the start of `data`.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        let m = Self {
            data,
            rows,
            cols,
            row: cols,
            col: 1,
        };
        m.check();
        m
    }

    /// `rows × cols` with rows `row_stride` apart, contiguous within a row, at the start of `data`.
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        let m = Self {
            data,
            rows,
            cols,
            row: row_stride,
            col: 1,
        };
        m.check();
        m
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row: self.col,
            col: self.row,
            ..self
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row + (self.cols - 1) * self.col;
            assert!(last < self.data.len(), "matrix runs past its slice");
        }
    }
}

/// `dst ← scale·a·b` (or `dst + scale·a·b` when `accumulate`), `dst` row-major `a.rows × b.cols`.
pub(crate) fn matmul(dst: &mut [f32], a: Mat, b: Mat, scale: f32, accumulate: bool) {
    matmul_strided(dst, b.cols, a, b, scale, accumulate);
}

/// [`matmul`] into a destination whose rows lie `dst_row` elements apart (`dst_row ≥ b.cols`),
/// so a product can fill the left part of wider rows.
pub(crate) fn matmul_strided(
    dst: &mut [f32],
    dst_row: usize,
    a: Mat,
    b: Mat,
    scale: f32,
    accumulate: bool,
) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    assert!(dst_row >= n, "destination rows narrower than the product");
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() >= (m - 1) * dst_row + n, "destination too small");
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_row).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the asserts above and `Mat::check` keep every index gemm reads or writes inside
    // its slice; `dst` is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row as isize,
            accumulate,
            a.data.as_ptr(),
            a.col as isize,
            a.row as isize,
            b.data.as_ptr(),
            b.col as isize,
            b.row as isize,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, n: usize, k: usize, ta: bool, tb: bool) -> Vec<f32> {
        let at = |i: usize, p: usize| if ta { a[p * m + i] } else { a[i * k + p] };
        let bt = |p: usize, j: usize| if tb { b[j * k + p] } else { b[p * n + j] };
        (0..m * n)
            .map(|x| (0..k).map(|p| at(x / n, p) * bt(p, x % n)).sum())
            .collect()
    }

    #[test]
    fn strided_products_match_the_triple_loop() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let am = if ta {
                Mat::rows(&a, k, m).t()
            } else {
                Mat::rows(&a, m, k)
            };
            let bm = if tb {
                Mat::rows(&b, n, k).t()
            } else {
                Mat::rows(&b, k, n)
            };
            let want = naive(&a, &b, m, n, k, ta, tb);
            let mut dst = vec![1.0; m * n];
            matmul(&mut dst, am, bm, 2.0, true);
            for (got, w) in dst.iter().zip(&want) {
                assert!((got - (1.0 + 2.0 * w)).abs() < 1e-5, "{got} vs {w}");
            }
            // Into wider rows: the product fills the first n columns, the rest stay untouched.
            let wide = n + 3;
            let mut dst = vec![7.0; m * wide];
            matmul_strided(&mut dst, wide, am, bm, 1.0, false);
            for (i, row) in dst.chunks(wide).enumerate() {
                for (j, got) in row.iter().enumerate() {
                    let w = if j < n { want[i * n + j] } else { 7.0 };
                    assert!((got - w).abs() < 1e-5, "({i}, {j}): {got} vs {w}");
                }
            }
        }
    }
}
