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
use crate::sync::{AtomicBool, AtomicUsize, Ordering, TrackCell};
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

/// An open sub-pool in the order maps try them: its hint index beside its pointer, so that
/// skipping a full one reads nothing else.
#[derive(Debug)]
pub(crate) struct Open<R: RawMutex> {
    pub(crate) id: usize,
    pub(crate) sub: *const SubPool<R>,
}

/// A snapshot of the sub-pools.
#[derive(Debug)]
pub(crate) struct Table<R: RawMutex> {
    /// Sorted by device address.
    pub(crate) by_dma: Box<[Entry<R>]>,
    /// The open sub-pools, oldest first.
    pub(crate) order: Box<[Open<R>]>,
    /// The CPU ranges of every sub-pool, sorted.
    pub(crate) by_cpu: Box<[Range<usize>]>,
    /// Maps of at least `cursor_len` bytes start looking at this position of `order`:
    /// every region before it refused such a map since its last release. A release
    /// before it moves it back.
    pub(crate) cursor: AtomicUsize,
    pub(crate) cursor_len: AtomicUsize,
    /// The position in `order` of each hint index (`u32::MAX`: not open).
    pub(crate) position: Box<[u32]>,
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
        let mut order: Vec<(u64, Open<R>)> = members
            .iter()
            .filter(|m| m.open)
            .map(|m| {
                let sub = resolve(m);
                (
                    sub.serial,
                    Open {
                        id: sub.id,
                        sub: m.sub,
                    },
                )
            })
            .collect();
        order.sort_unstable_by_key(|(serial, _)| *serial);
        let order: Vec<Open<R>> = order.into_iter().map(|(_, o)| o).collect();
        let ids = members.iter().map(|m| resolve(m).id + 1).max().unwrap_or(0);
        let mut position = alloc::vec![u32::MAX; ids];
        for (k, o) in order.iter().enumerate() {
            position[o.id] = k as u32;
        }
        let mut by_cpu: Vec<Range<usize>> = members
            .iter()
            .map(|m| resolve(m).pool.cpu_range())
            .collect();
        by_cpu.sort_unstable_by_key(|r| r.start);
        Box::new(Self {
            by_dma: by_dma.into_boxed_slice(),
            order: order.into_boxed_slice(),
            by_cpu: by_cpu.into_boxed_slice(),
            cursor: AtomicUsize::new(0),
            cursor_len: AtomicUsize::new(usize::MAX),
            position: position.into_boxed_slice(),
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

    /// A release in the region with hint index `id`: if maps start past it, they start at
    /// it again (a load, and a read-modify-write only then).
    #[inline]
    pub(crate) fn released_at(&self, id: usize) {
        let Some(&k) = self.position.get(id) else {
            return;
        };
        if k != u32::MAX && self.cursor.load(Ordering::Relaxed) > k as usize {
            self.cursor.fetch_min(k as usize, Ordering::Relaxed);
        }
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
