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
    /// Its hint index, beside the pointer: a release clears its hint without reading the
    /// sub-pool.
    pub(crate) id: u32,
    /// Its position in the order maps try the open regions, or [`CLOSED`]: a shrink
    /// closes a region before it checks it is empty.
    pub(crate) pos: u32,
}

/// [`Entry::pos`] of a region maps may not go to.
pub(crate) const CLOSED: u32 = u32::MAX;

impl<R: RawMutex> Entry<R> {
    /// Whether maps may go there.
    pub(crate) fn open(&self) -> bool {
        self.pos != CLOSED
    }
}

/// An open sub-pool in the order maps try them: its hint index beside its pointer, so that
/// skipping a full one reads nothing else.
#[derive(Debug)]
pub(crate) struct Open<R: RawMutex> {
    pub(crate) id: usize,
    pub(crate) sub: *const SubPool<R>,
}

/// A snapshot of the sub-pools.
///
/// The searches run over arrays of keys alone (8 bytes a region, so 16 regions are two
/// cache lines), branch-free: a lookup costs the same few instructions a step whether the
/// address is in the first region or the last, and a step per doubling of the regions.
#[derive(Debug)]
pub(crate) struct Table<R: RawMutex> {
    /// Sorted by device address.
    pub(crate) by_dma: Box<[Entry<R>]>,
    /// `by_dma[i].start`, the keys of its search.
    dma_starts: Box<[DmaAddr]>,
    /// The open sub-pools, oldest first.
    pub(crate) order: Box<[Open<R>]>,
    /// The CPU ranges of every sub-pool, sorted: their starts (the keys) and their ends.
    cpu_starts: Box<[usize]>,
    cpu_ends: Box<[usize]>,
    /// Maps of at least `cursor_len` bytes start looking at this position of `order`:
    /// every region before it refused such a map since its last release. A release
    /// before it moves it back.
    pub(crate) cursor: AtomicUsize,
    pub(crate) cursor_len: AtomicUsize,
    pub(crate) track: TrackCell,
}

/// What a table is built from: each sub-pool with its serial and whether it is open.
pub(crate) struct Member<R: RawMutex> {
    pub(crate) sub: *const SubPool<R>,
    pub(crate) open: bool,
}

/// How many of `keys` (sorted) are at most `x`: a binary search without branches on the
/// keys (each step a load, a compare and a conditional move), so its cost depends only
/// on how many keys there are.
#[inline(always)]
fn count_at_most<K: Copy + PartialOrd>(keys: &[K], x: K) -> usize {
    if keys.is_empty() {
        return 0;
    }
    // The answer lies in `base..=base + size` (the keys before `base` are at most `x`),
    // and each step halves `size`.
    let mut base = 0;
    let mut size = keys.len();
    while size > 1 {
        let half = size / 2;
        let mid = base + half;
        // SAFETY: `mid < base + size <= keys.len()`: each step keeps `base + size` at most
        // the length (`base` moves up by `half` only when `size` goes down by as much).
        let key = unsafe { *keys.get_unchecked(mid) };
        if key <= x {
            base = mid;
        }
        size -= half;
    }
    base + usize::from(keys[base] <= x)
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
        let pos_of = |sub: *const SubPool<R>| {
            order
                .iter()
                .position(|o| o.sub == sub)
                .map_or(CLOSED, |k| k as u32)
        };
        let mut by_dma: Vec<Entry<R>> = members
            .iter()
            .map(|m| {
                let range = resolve(m).pool.dma_range();
                Entry {
                    start: range.start,
                    end: range.end,
                    sub: m.sub,
                    id: resolve(m).id as u32,
                    pos: pos_of(m.sub),
                }
            })
            .collect();
        by_dma.sort_unstable_by_key(|e| e.start);
        let dma_starts = by_dma.iter().map(|e| e.start).collect();
        let mut by_cpu: Vec<Range<usize>> = members
            .iter()
            .map(|m| resolve(m).pool.cpu_range())
            .collect();
        by_cpu.sort_unstable_by_key(|r| r.start);
        Box::new(Self {
            by_dma: by_dma.into_boxed_slice(),
            dma_starts,
            order: order.into_boxed_slice(),
            cpu_starts: by_cpu.iter().map(|r| r.start).collect(),
            cpu_ends: by_cpu.iter().map(|r| r.end).collect(),
            cursor: AtomicUsize::new(0),
            cursor_len: AtomicUsize::new(usize::MAX),
            track: TrackCell::new(),
        })
    }

    /// The entry whose slots hold `dma`: a binary search.
    #[inline(always)]
    pub(crate) fn find(&self, dma: DmaAddr) -> Option<&Entry<R>> {
        let after = count_at_most(&self.dma_starts, dma);
        let e = self.by_dma.get(after.checked_sub(1)?)?;
        (dma < e.end).then_some(e)
    }

    /// Whether the CPU range `addr..end` (not empty) overlaps a sub-pool's slots: a binary
    /// search.
    #[inline(always)]
    pub(crate) fn overlaps_cpu(&self, addr: usize, end: usize) -> bool {
        // The last region starting before `end` is the only one that can overlap (they
        // are disjoint and sorted).
        let before = count_at_most(&self.cpu_starts, end.wrapping_sub(1));
        before
            .checked_sub(1)
            .and_then(|i| self.cpu_ends.get(i))
            .is_some_and(|&e| e > addr)
    }

    /// A release in the region at position `pos` of the order (or [`CLOSED`]): if maps
    /// start past it, they start at it again (a load, and a read-modify-write only then).
    #[inline(always)]
    pub(crate) fn released_at(&self, pos: u32) {
        if pos != CLOSED && self.cursor.load(Ordering::Relaxed) > pos as usize {
            self.cursor.fetch_min(pos as usize, Ordering::Relaxed);
        }
    }

    /// The members this table was built from.
    pub(crate) fn members(&self) -> Vec<Member<R>> {
        self.by_dma
            .iter()
            .map(|e| Member {
                sub: e.sub,
                open: e.open(),
            })
            .collect()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::count_at_most;
    use alloc::vec::Vec;

    /// The branch-free search answers as `partition_point` does, for every length up to
    /// past two doublings of 16 regions and every probe below, at, between and above the
    /// keys (with repeated keys too, though region starts never repeat).
    #[test]
    fn count_at_most_matches_partition_point() {
        for n in 0..=40usize {
            for step in [1usize, 2, 3] {
                // Keys 10, 10 + step, ...: with step 1 and a repeat every 4th for variety.
                let keys: Vec<usize> = (0..n)
                    .map(|i| 10 + (i - i / 4 * usize::from(step == 1)) * step)
                    .collect();
                assert!(keys.windows(2).all(|w| w[0] <= w[1]));
                let top = keys.last().copied().unwrap_or(10) + 2;
                for x in 0..=top {
                    assert_eq!(
                        count_at_most(&keys, x),
                        keys.partition_point(|&k| k <= x),
                        "n {n} step {step} x {x}"
                    );
                }
                assert_eq!(count_at_most(&keys, usize::MAX), n);
            }
        }
    }
}
