//! The sub-pools and the table that finds them: an immutable snapshot, replaced whole by
//! the writer (growth, shrink) and read under an epoch pin.
//!
//! The table lists every sub-pool three ways: by device address (binary search for unmap,
//! sync, lookup and free: O(log n)), by CPU address (the check that a buffer to map is not
//! pool memory), and the open ones in the order maps try them (oldest first, so that new
//! sub-pools drain and can be given back).

use crate::backend::SharedRange;
use crate::pool::Pool;
use crate::request::DmaAddr;
use crate::sync::{AtomicBool, Ordering, TrackCell};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ops::Range;
use lock_api::RawMutex;

/// Why a sub-pool exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubPoolKind {
    /// The pool's first region, never given back.
    First,
    /// Added by growth at the configured size (or a halving of it).
    Grown,
    /// Added by growth at the size of one request that needed more than the configured
    /// size (Linux's "transient" pool; given back like any other once idle).
    Transient,
}

// === impl SubPool ===

/// One region and its allocator.
#[derive(Debug)]
pub(crate) struct SubPool<R: RawMutex> {
    pub(crate) pool: Pool<R>,
    /// The range the backend gave (`None` for a first sub-pool whose memory the user
    /// brought).
    pub(crate) range: Option<SharedRange>,
    /// Its index in the per-sub-pool hints (unique among live sub-pools; reused after it
    /// is given back).
    pub(crate) id: usize,
    /// Creation order: maps try older sub-pools first.
    pub(crate) serial: u64,
    pub(crate) kind: SubPoolKind,
    /// Set by a map that lands here, cleared by each shrink pass that looks: a region is
    /// idle when two passes far enough apart both found it empty and untouched.
    pub(crate) touched: AtomicBool,
    /// Checks, under loom, that nothing reads a freed sub-pool.
    pub(crate) track: TrackCell,
}

impl<R: RawMutex> SubPool<R> {
    pub(crate) fn new(
        pool: Pool<R>,
        range: Option<SharedRange>,
        id: usize,
        serial: u64,
        kind: SubPoolKind,
    ) -> Self {
        Self {
            pool,
            range,
            id,
            serial,
            kind,
            touched: AtomicBool::new(false),
            track: TrackCell::new(),
        }
    }

    /// Records that a map landed here (a load, and a store only when a shrink pass has
    /// looked since the last one).
    #[inline]
    pub(crate) fn touch(&self) {
        if !self.touched.load(Ordering::Relaxed) {
            self.touched.store(true, Ordering::Relaxed);
        }
    }

    /// Bytes the backend gave for it (the region as given, which may hold a partial slot
    /// the pool leaves out).
    pub(crate) fn bytes(&self) -> usize {
        match self.range {
            Some(r) => r.size,
            None => self.pool.total_slots() * self.pool.slot_size(),
        }
    }
}

// === impl Table ===

/// One sub-pool in the table.
#[derive(Debug)]
pub(crate) struct Entry<R: RawMutex> {
    /// Device addresses of its slots.
    pub(crate) start: DmaAddr,
    pub(crate) end: DmaAddr,
    /// The sub-pool; null for the first, which lives inside the elastic pool itself (so
    /// that the pool can move).
    pub(crate) sub: *const SubPool<R>,
    /// Whether maps may go there (a shrink closes a region before it checks it is empty).
    pub(crate) open: bool,
}

/// A snapshot of the sub-pools.
#[derive(Debug)]
pub(crate) struct Table<R: RawMutex> {
    /// Sorted by device address.
    pub(crate) by_dma: Box<[Entry<R>]>,
    /// The open sub-pools, as indexes into `by_dma`, oldest first.
    pub(crate) order: Box<[u32]>,
    /// The CPU ranges of every sub-pool, sorted.
    pub(crate) by_cpu: Box<[Range<usize>]>,
    pub(crate) track: TrackCell,
}

/// What a table is built from: each sub-pool with its serial and whether it is open.
pub(crate) struct Member<R: RawMutex> {
    pub(crate) sub: *const SubPool<R>,
    pub(crate) open: bool,
}

impl<R: RawMutex> Table<R> {
    /// A table of `members`; `first` is the sub-pool a null pointer stands for.
    pub(crate) fn build(first: &SubPool<R>, members: &[Member<R>]) -> Box<Self> {
        let resolve = |m: &Member<R>| -> &SubPool<R> {
            if m.sub.is_null() {
                first
            } else {
                // SAFETY: the writer builds tables from sub-pools it owns and has not freed.
                unsafe { &*m.sub }
            }
        };
        let mut by_dma: Vec<Entry<R>> = members
            .iter()
            .map(|m| {
                let range = resolve(m).pool.dma_range();
                Entry {
                    start: range.start,
                    end: range.end,
                    sub: m.sub,
                    open: m.open,
                }
            })
            .collect();
        by_dma.sort_unstable_by_key(|e| e.start);
        let mut order: Vec<u32> = (0..by_dma.len() as u32)
            .filter(|&i| by_dma[i as usize].open)
            .collect();
        let serial = |i: &u32| {
            let e = &by_dma[*i as usize];
            resolve(&Member {
                sub: e.sub,
                open: e.open,
            })
            .serial
        };
        order.sort_unstable_by_key(serial);
        let mut by_cpu: Vec<Range<usize>> = members
            .iter()
            .map(|m| resolve(m).pool.cpu_range())
            .collect();
        by_cpu.sort_unstable_by_key(|r| r.start);
        Box::new(Self {
            by_dma: by_dma.into_boxed_slice(),
            order: order.into_boxed_slice(),
            by_cpu: by_cpu.into_boxed_slice(),
            track: TrackCell::new(),
        })
    }

    /// The entry whose slots hold `dma`: a binary search.
    #[inline]
    pub(crate) fn find(&self, dma: DmaAddr) -> Option<&Entry<R>> {
        let after = self.by_dma.partition_point(|e| e.start <= dma);
        let e = self.by_dma.get(after.checked_sub(1)?)?;
        (dma < e.end).then_some(e)
    }

    /// Whether the CPU range `addr..end` overlaps a sub-pool's slots: a binary search.
    #[inline]
    pub(crate) fn overlaps_cpu(&self, addr: usize, end: usize) -> bool {
        // The last region starting before `end` is the only one that can overlap (they
        // are disjoint and sorted).
        let before = self.by_cpu.partition_point(|r| r.start < end);
        before
            .checked_sub(1)
            .is_some_and(|i| self.by_cpu[i].end > addr)
    }

    /// The members this table was built from.
    pub(crate) fn members(&self) -> Vec<Member<R>> {
        self.by_dma
            .iter()
            .map(|e| Member {
                sub: e.sub,
                open: e.open,
            })
            .collect()
    }
}
