//! Images already turned into tokens, with their labels: what the image readers produce.

/// Images already as tokens, with their labels.
pub(crate) struct Pool {
    /// One token sequence per image.
    pub(crate) images: Vec<Vec<u32>>,
    /// One label per image.
    pub(crate) labels: Vec<u8>,
}
