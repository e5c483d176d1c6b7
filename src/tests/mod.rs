//! loom models of the pool's concurrent paths (`RUSTFLAGS="--cfg loom"`; see `bin/loom.sh`).
//!
//! Each model runs the real pool code under loom's scheduler, which explores the
//! interleavings of its threads (bounded by `LOOM_MAX_PREEMPTIONS`), and checks properties
//! of the outcome: the bytes in the bounce buffers and the originals, that live runs of slots
//! are disjoint, the statistics, and that every slot can be had again once all is freed.
//!
//! The pools are tiny so that a model finishes in seconds: 64-byte slots, 4-slot segments,
//! 2 areas (of 4 slots each in an 8-slot pool), at a fixed device address so that every
//! iteration of a model places runs the same way. Threads pick the area they start in with
//! [`in_area`], which the pool's area hint reads.

mod elastic;
mod loom_coherent;
mod loom_fallback;
mod loom_grow;
mod loom_map;
mod loom_shrink;
mod loom_stats;
mod loom_sync;
mod loom_unmap;
mod loom_wait;

use crate::{Attrs, Config, Constraints, Direction, DmaAddr, MapError, Pool};
use core::ops::{Deref, Range};
use core::ptr::{self, NonNull};
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::Cell;
use std::vec::Vec;

/// Slot size of the tiny test pools.
pub(super) const SLOT: usize = 64;
/// Slots in a segment of the tiny test pools.
pub(super) const SEGMENT: usize = 4;
/// Device address of every test pool's first byte (a multiple of 64 KiB).
pub(super) const DMA_BASE: DmaAddr = 0x4000_0000;

loom::thread_local! {
    static AREA: Cell<usize> = Cell::new(0);
}

/// The area hint of the test pools: what the calling model thread last gave [`in_area`].
fn hinted_area() -> usize {
    AREA.with(Cell::get)
}

/// Makes the calling model thread start its searches in area `area`.
pub(super) fn in_area(area: usize) {
    AREA.with(|a| a.set(area));
}

/// Runs `f` under loom, in every interleaving within the preemption bound (2 unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise), and prints how many it explored.
pub(super) fn run_model(name: &'static str, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    // The models' bookkeeping in the main thread (filling the pool to prove nothing was
    // lost) is long but single-threaded; it needs more than loom's default of 1000.
    builder.max_branches = builder.max_branches.max(20_000);
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = runs.clone();
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    std::eprintln!(
        "loom model {name}: {} interleavings",
        runs.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// The configuration of the tiny pools: 64-byte slots, 4-slot segments, 2 areas, and the
/// model thread's own area hint.
pub(super) fn tiny_config() -> Config {
    Config::new()
        .with_slot_size(SLOT)
        .with_segment_slots(SEGMENT)
        .with_areas(2)
        .with_area_hint(hinted_area)
}

// === impl TestPool ===

/// A pool over its own heap region, at device address [`DMA_BASE`].
pub(super) struct TestPool {
    pool: core::mem::ManuallyDrop<Pool>,
    /// The region's CPU address (an integer, so the pool stays `Send + Sync`).
    mem: usize,
    layout: Layout,
}

impl TestPool {
    /// A pool of `slots` slots of `config`'s slot size.
    pub(super) fn new(slots: usize, config: Config) -> Self {
        let size = slots * config.slot_size();
        let layout = Layout::from_size_align(size, 1 << 16).expect("test pool layout");
        // SAFETY: the layout has a non-zero size (every test pool has slots).
        let mem = unsafe { alloc_zeroed(layout) };
        let cpu = NonNull::new(mem).expect("test pool memory");
        // SAFETY: `mem` is a fresh allocation of `size` bytes that only this pool uses and
        // that outlives it (freed in `drop` after the pool); the "device" of the models
        // reaches it through `Pool::translate`.
        let pool = unsafe { Pool::new(cpu, DMA_BASE, size, config) }.expect("test pool");
        Self {
            pool: core::mem::ManuallyDrop::new(pool),
            mem: mem as usize,
            layout,
        }
    }

    /// A tiny pool of `slots` 64-byte slots, 4-slot segments, 2 areas.
    pub(super) fn tiny(slots: usize) -> Self {
        Self::new(slots, tiny_config())
    }
}

impl Deref for TestPool {
    type Target = Pool;

    fn deref(&self) -> &Pool {
        &self.pool
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        // SAFETY: dropped once, here, and never used again.
        unsafe { core::mem::ManuallyDrop::drop(&mut self.pool) };
        // SAFETY: allocated in `new` with this layout; the pool that used it is gone.
        unsafe { dealloc(self.mem as *mut u8, self.layout) };
    }
}

// === impl Buffer ===

/// An original buffer: heap memory touched only through raw pointers, so that handing it to
/// the pool and reading it back after unmap is sound. Its start is `misalign` bytes past a
/// 4 KiB boundary, which fixes the address bits `min_align_mask` looks at.
pub(super) struct Buffer {
    base: usize,
    misalign: usize,
    len: usize,
}

impl Buffer {
    /// A buffer of `len` bytes holding [`pattern`]`(tag)`.
    pub(super) fn new(tag: u8, len: usize) -> Self {
        Self::misaligned(tag, len, 0)
    }

    /// A buffer of `len` bytes holding [`pattern`]`(tag)`, starting `misalign` bytes past
    /// a 4 KiB boundary.
    pub(super) fn misaligned(tag: u8, len: usize, misalign: usize) -> Self {
        let layout = Self::layout(len, misalign);
        // SAFETY: the layout's size is at least 1.
        let base = unsafe { alloc_zeroed(layout) };
        assert!(!base.is_null(), "test buffer allocation");
        let buf = Self {
            base: base as usize,
            misalign,
            len,
        };
        buf.write(&pattern(tag, len));
        buf
    }

    fn layout(len: usize, misalign: usize) -> Layout {
        Layout::from_size_align((misalign + len).max(1), 4096).expect("test buffer layout")
    }

    fn ptr(&self) -> *mut u8 {
        (self.base + self.misalign) as *mut u8
    }

    /// The buffer as the pool takes it.
    pub(super) fn as_slice_ptr(&self) -> NonNull<[u8]> {
        let data = NonNull::new(self.ptr()).expect("buffer pointer");
        NonNull::slice_from_raw_parts(data, self.len)
    }

    /// A copy of the buffer's bytes.
    pub(super) fn read(&self) -> Vec<u8> {
        let mut out = std::vec![0u8; self.len];
        // SAFETY: the buffer owns `len` bytes at `ptr()`; the caller does not hold it mapped
        // with a thread copying into it at the same time (the models read it between
        // pool calls of the thread that owns it).
        unsafe { ptr::copy_nonoverlapping(self.ptr(), out.as_mut_ptr(), self.len) };
        out
    }

    /// Overwrites the buffer's first `bytes.len()` bytes.
    pub(super) fn write(&self, bytes: &[u8]) {
        assert!(bytes.len() <= self.len);
        // SAFETY: as in `read`.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr(), bytes.len()) };
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `misaligned` with this layout.
        unsafe { dealloc(self.base as *mut u8, Self::layout(self.len, self.misalign)) };
    }
}

/// Bytes unique to `tag`: two patterns with different tags differ in every byte.
pub(super) fn pattern(tag: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| tag.wrapping_add((i as u8).wrapping_mul(7)))
        .collect()
}

// === impl Mapping ===

/// A live streaming mapping of a [`Buffer`] that holds [`pattern`]`(tag)`.
pub(super) struct Mapping {
    pub(super) dma: DmaAddr,
    pub(super) dir: Direction,
    pub(super) tag: u8,
    pub(super) buf: Buffer,
}

impl Mapping {
    /// Maps a fresh `len`-byte buffer holding `pattern(tag)` and checks that the bounce
    /// buffer holds the same bytes (the copy on map happens for every direction).
    pub(super) fn map(pool: &Pool, tag: u8, len: usize, dir: Direction) -> Result<Self, MapError> {
        Self::map_buffer(pool, tag, Buffer::new(tag, len), dir, &Constraints::NONE)
    }

    /// Maps `buf`, which holds `pattern(tag)`, under `constraints`.
    pub(super) fn map_buffer(
        pool: &Pool,
        tag: u8,
        buf: Buffer,
        dir: Direction,
        constraints: &Constraints,
    ) -> Result<Self, MapError> {
        // SAFETY: `buf` is owned by the mapping and only read or written through raw
        // pointers while it is mapped (by the pool, or by the model between pool calls of
        // the thread that owns the mapping).
        let dma = unsafe { pool.map(buf.as_slice_ptr(), dir, constraints) }?;
        let m = Self { dma, dir, tag, buf };
        assert_eq!(
            bounce(pool, dma, m.len()),
            pattern(tag, m.len()),
            "bounce buffer of mapping {tag} after map"
        );
        Ok(m)
    }

    pub(super) fn len(&self) -> usize {
        self.buf.len
    }

    /// Checks that the bounce buffer still holds this mapping's pattern: a mapping that
    /// overlapped it, or a copy into the wrong place, would have changed it.
    pub(super) fn check_bounce(&self, pool: &Pool) {
        assert_eq!(
            bounce(pool, self.dma, self.len()),
            pattern(self.tag, self.len()),
            "bounce buffer of mapping {} ({:#x}, {} bytes)",
            self.tag,
            self.dma,
            self.len()
        );
    }

    /// Unmaps, checks the call succeeded, and gives back the original buffer.
    pub(super) fn unmap(self, pool: &Pool) -> Buffer {
        // SAFETY: the mapping is live and this thread owns it; the buffer is alive.
        let r = unsafe { pool.unmap(self.dma, self.len(), self.dir, Attrs::NONE) };
        assert_eq!(r, Ok(()), "unmap of mapping {}", self.tag);
        self.buf
    }
}

/// A copy of the pool bytes at `dma..dma + len`, read as the device would.
pub(super) fn bounce(pool: &Pool, dma: DmaAddr, len: usize) -> Vec<u8> {
    let at = pool.translate(dma, len).expect("bounce range in the pool");
    let mut out = std::vec![0u8; len];
    // SAFETY: `translate` checked the range lies in the pool; the pool's memory is only
    // ever accessed by shared-memory copies, and the model reads bytes of a mapping it owns.
    unsafe { crate::shared::copy_from_shared(out.as_mut_ptr(), at.as_ptr(), len) };
    out
}

/// Writes `bytes` to the pool at `dma`, as the device would.
pub(super) fn device_write(pool: &Pool, dma: DmaAddr, bytes: &[u8]) {
    let at = pool
        .translate(dma, bytes.len())
        .expect("device range in the pool");
    // SAFETY: as in `bounce`.
    unsafe { crate::shared::copy_to_shared(at.as_ptr(), bytes.as_ptr(), bytes.len()) };
}

/// The pool slots that `dma..dma + len` touches.
pub(super) fn slots_of(pool: &Pool, dma: DmaAddr, len: usize) -> Range<u64> {
    let base = pool.dma_range().start;
    let slot = pool.slot_size() as u64;
    (dma - base) / slot..(dma + len as u64 - 1 - base) / slot + 1
}

/// Asserts that no two of `runs` (device address, length) share a slot.
pub(super) fn assert_disjoint(pool: &Pool, runs: &[(DmaAddr, usize)]) {
    for (i, &(a, alen)) in runs.iter().enumerate() {
        for &(b, blen) in &runs[i + 1..] {
            let (x, y) = (slots_of(pool, a, alen), slots_of(pool, b, blen));
            assert!(
                x.end <= y.start || y.end <= x.start,
                "runs {a:#x}+{alen} (slots {x:?}) and {b:#x}+{blen} (slots {y:?}) overlap"
            );
        }
    }
}

/// Asserts the pool's and every area's used count is `used`, and that the areas add up.
pub(super) fn assert_used(pool: &Pool, used: usize) {
    let stats = pool.stats();
    let areas: usize = (0..stats.areas)
        .map(|i| pool.area_stats(i).expect("area").used_slots)
        .sum();
    assert_eq!(stats.used_slots, used, "pool used slots: {stats:?}");
    assert_eq!(areas, used, "areas' used slots");
}

/// Asserts that every slot is free and can be had again: no use counted, and the whole pool
/// can be filled with one-segment mappings (one per segment, then the next is `Full`).
pub(super) fn assert_all_free(pool: &Pool) {
    assert_used(pool, 0);
    let stats = pool.stats();
    let segment = pool.slot_size() * pool.segment_slots();
    let segments = stats.total_slots / pool.segment_slots();
    let buf = Buffer::new(0xee, segment);
    let mut live = Vec::new();
    for i in 0..segments {
        // SAFETY: `buf` outlives the mappings and is only read (ToDevice).
        let r = unsafe { pool.map(buf.as_slice_ptr(), Direction::ToDevice, &Constraints::NONE) };
        match r {
            Ok(dma) => live.push(dma),
            Err(e) => panic!("segment {i} of {segments} could not be mapped again: {e}"),
        }
    }
    assert_used(pool, stats.total_slots);
    // SAFETY: as above.
    let more = unsafe { pool.map(buf.as_slice_ptr(), Direction::ToDevice, &Constraints::NONE) };
    assert!(
        matches!(more, Err(MapError::Full { .. })),
        "a full pool took one more segment: {more:?}"
    );
    for dma in live {
        // SAFETY: mapped above by this thread.
        let r = unsafe { pool.unmap(dma, segment, Direction::ToDevice, Attrs::NONE) };
        assert_eq!(r, Ok(()));
    }
    assert_used(pool, 0);
}
