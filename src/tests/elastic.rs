//! What the elastic pool's models share (`loom_grow`, `loom_shrink`, `loom_wait`): a
//! backend whose ranges are checked against their use, tiny elastic pools, and map helpers.
//!
//! Tiny pools: 64-byte slots, 4-slot segments; a first region of 4 slots and regions of 4
//! slots added by growth, from a backend with a 256-byte granule. Every read of a region's
//! metadata or of a table is checked against its free (`TrackCell`), and every use of a
//! region's memory by a model thread is checked against its unshare (the backend's cells):
//! a free or an unshare that is not ordered after a use fails the model.

use super::*;
use crate::backend::{Backend, BackendError, SharedRange};
use crate::sync::TrackCell;
pub(super) use crate::Direction::{Bidirectional, ToDevice};
pub(super) use crate::{ElasticConfig, ElasticPool};
pub(super) use loom::sync::Arc;
pub(super) use loom::thread;
use std::sync::Mutex as StdMutex;

/// Bytes of every region: one 4-slot segment.
pub(super) const REGION: usize = 4 * SLOT;

// === impl LoomBackend ===

/// A heap block, kept until the backend is dropped (so that a model that used a region
/// after its unshare fails on the check, not on freed memory).
struct Block(NonNull<u8>, Layout);

// SAFETY: only used to free the block when the backend is dropped.
unsafe impl Send for Block {}

struct Shared {
    dma: DmaAddr,
    size: usize,
    cpu: NonNull<u8>,
    live: bool,
    /// Written by the unshare; read after every use by the model threads.
    cell: std::sync::Arc<TrackCell>,
}

// SAFETY: `cpu` is only compared, never dereferenced, by the backend.
unsafe impl Send for Shared {}

struct BackendState {
    next: DmaAddr,
    ranges: Vec<Shared>,
    blocks: Vec<Block>,
    shares: usize,
    unshares: usize,
}

/// Heap memory at device addresses of its own, 256-byte granules.
#[derive(Clone)]
pub(super) struct LoomBackend(std::sync::Arc<StdMutex<BackendState>>);

impl LoomBackend {
    pub(super) fn new() -> Self {
        Self(std::sync::Arc::new(StdMutex::new(BackendState {
            next: DMA_BASE,
            ranges: Vec::new(),
            blocks: Vec::new(),
            shares: 0,
            unshares: 0,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BackendState> {
        self.0.lock().expect("backend lock")
    }

    /// A model thread is done with the region memory at `dma` for now: fails the model if
    /// the region's unshare is not ordered after this (or already happened).
    pub(super) fn used(&self, dma: DmaAddr) {
        let cell = {
            let state = self.state();
            let r = state
                .ranges
                .iter()
                .rev()
                .find(|r| (r.dma..r.dma + r.size as u64).contains(&dma))
                .expect("an address some share gave");
            r.cell.clone()
        };
        cell.read();
    }

    /// Whether `dma` is in a range shared now.
    pub(super) fn is_live(&self, dma: DmaAddr) -> bool {
        self.state()
            .ranges
            .iter()
            .any(|r| r.live && (r.dma..r.dma + r.size as u64).contains(&dma))
    }

    /// Every share was unshared.
    pub(super) fn assert_balanced(&self) {
        let state = self.state();
        assert!(state.ranges.iter().all(|r| !r.live), "ranges still shared");
        assert_eq!(state.shares, state.unshares);
    }
}

impl Drop for BackendState {
    fn drop(&mut self) {
        for Block(ptr, layout) in self.blocks.drain(..) {
            // SAFETY: allocated in `share` with this layout; every pool using it is gone.
            unsafe { dealloc(ptr.as_ptr(), layout) };
        }
    }
}

// SAFETY: each share is a fresh zeroed allocation of `size` bytes aligned to `align`,
// kept (never reused) until the backend is dropped, at a device address from a counter
// that only grows, aligned too; `unshare` never fails.
unsafe impl Backend for LoomBackend {
    fn granule(&self) -> usize {
        REGION
    }

    fn share(&self, size: usize, align: usize) -> Result<SharedRange, BackendError> {
        let layout =
            Layout::from_size_align(size, align).map_err(|_| BackendError::NoMemory { size })?;
        // SAFETY: the size is a non-zero multiple of the granule.
        let cpu = NonNull::new(unsafe { alloc_zeroed(layout) }).expect("loom backend memory");
        let mut state = self.state();
        let dma = state.next.next_multiple_of(align as u64);
        state.next = dma + size as u64 + REGION as u64;
        state.blocks.push(Block(cpu, layout));
        state.ranges.push(Shared {
            dma,
            size,
            cpu,
            live: true,
            cell: std::sync::Arc::new(TrackCell::new()),
        });
        state.shares += 1;
        Ok(SharedRange {
            cpu,
            dma,
            size,
            token: 0,
        })
    }

    unsafe fn unshare(&self, range: SharedRange) -> Result<(), BackendError> {
        let cell = {
            let mut state = self.state();
            state.unshares += 1;
            let r = state
                .ranges
                .iter_mut()
                .find(|r| {
                    r.live && r.dma == range.dma && r.cpu == range.cpu && r.size == range.size
                })
                .expect("unshare of a live range this backend shared");
            r.live = false;
            r.cell.clone()
        };
        cell.free();
        Ok(())
    }
}

// === helpers ===

/// An elastic pool of 4-slot regions over `backend`: first region full after one 4-slot
/// map; growth by one region at a time, up to 4; idle time 0.
pub(super) fn elastic(backend: &LoomBackend, grow_on_map: bool) -> ElasticPool {
    let config = ElasticConfig::new()
        .with_pool(tiny_config())
        .with_initial(REGION)
        .with_grow(REGION, REGION)
        .with_max_bytes(4 * REGION)
        .with_max_sub_pools(4)
        .with_idle_time_ns(0)
        .with_grow_on_map(grow_on_map);
    ElasticPool::new(backend.clone(), config).expect("elastic pool")
}

pub(super) fn emap(pool: &ElasticPool, buf: &Buffer, dir: Direction) -> Result<DmaAddr, MapError> {
    // SAFETY: the buffer outlives its mapping and is touched only between pool calls of
    // the thread that owns it.
    unsafe { pool.try_map(buf.as_slice_ptr(), dir, &Constraints::NONE) }
}

pub(super) fn eunmap(pool: &ElasticPool, dma: DmaAddr, buf: &Buffer, dir: Direction) {
    // SAFETY: `dma` is the live mapping of `buf`, owned by the calling thread.
    let r = unsafe { pool.unmap_into(dma, buf.as_slice_ptr(), dir, Attrs::NONE) };
    assert_eq!(r, Ok(()), "unmap of {dma:#x}");
}

/// The bytes at `dma`, read as the device would.
pub(super) fn ebounce(pool: &ElasticPool, dma: DmaAddr, len: usize) -> Vec<u8> {
    let at = pool.translate(dma, len).expect("bounce range in a region");
    let mut out = std::vec![0u8; len];
    // SAFETY: `translate` checked the range lies in a region, which holds the caller's
    // live mapping and so stays shared.
    unsafe { crate::shared::copy_from_shared(out.as_mut_ptr(), at.as_ptr(), len) };
    out
}

pub(super) fn edevice_write(pool: &ElasticPool, dma: DmaAddr, bytes: &[u8]) {
    let at = pool
        .translate(dma, bytes.len())
        .expect("device range in a region");
    // SAFETY: as in `ebounce`.
    unsafe { crate::shared::copy_to_shared(at.as_ptr(), bytes.as_ptr(), bytes.len()) };
}

pub(super) fn slots(dma: DmaAddr, len: usize) -> Range<u64> {
    (dma - DMA_BASE) / SLOT as u64..(dma + len as u64 - 1 - DMA_BASE) / SLOT as u64 + 1
}

pub(super) fn assert_apart(a: (DmaAddr, usize), b: (DmaAddr, usize)) {
    let (x, y) = (slots(a.0, a.1), slots(b.0, b.1));
    assert!(
        x.end <= y.start || y.end <= x.start,
        "{a:x?} and {b:x?} share a slot"
    );
}
