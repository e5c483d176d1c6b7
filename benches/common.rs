//! What every group shares.

use std::hint::black_box;
use swiotlb_bench::{AnyPool, Bounce, Buffer, Direction, Kind};

/// Pool size of the groups that do not vary it: Linux's default.
pub const POOL: usize = 64 << 20;

/// Builds a pool of `kind`, or stops the benchmark with the reason.
pub fn build(kind: Kind, size: usize) -> AnyPool {
    kind.build(size)
        .unwrap_or_else(|e| panic!("cannot build {kind} over {size} bytes: {e}"))
}

/// A page-aligned source buffer of `len` bytes.
pub fn source(len: usize) -> Buffer {
    Buffer::new(len, 0x5a).unwrap_or_else(|e| panic!("source of {len} bytes: {e}"))
}

/// One map and unmap of `buf`: the operation most groups time.
#[inline(always)]
pub fn map_unmap(pool: &AnyPool, buf: &mut Buffer, len: usize, dir: Direction, skip: bool) {
    let ptr = buf.slice(len);
    // SAFETY: `buf` is borrowed mutably for the call, so nothing else touches it while it
    // is mapped, and it is not pool memory.
    let dma = unsafe { pool.map(black_box(ptr), dir) }.expect("map");
    // SAFETY: `dma` is the live mapping of `ptr` made just above.
    unsafe { pool.unmap(black_box(dma), ptr, dir, skip) }.expect("unmap");
}

/// A size as criterion parameter text: `4MiB`, `1GiB`.
pub fn size_label(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b => b.to_string(),
    }
}
