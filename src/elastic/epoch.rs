//! Reader protection for the sub-pool table: readers pin, the one writer waits for the
//! readers that may hold what it unpublished, then frees it.
//!
//! # The scheme
//!
//! A global epoch counter and, per reader slot (one per area hint, each on its own cache
//! line), two counters of pinned readers, one per epoch parity. A reader:
//!
//! 1. reads the epoch `e`;
//! 2. increments its slot's counter for `e`'s parity (`SeqCst`);
//! 3. reads the epoch again; if it moved, it undoes the increment and starts over;
//! 4. reads the table (`SeqCst`) and uses it; then decrements the counter (`Release`).
//!
//! The writer (the holder of the growth lock, so there is one) publishes the new table
//! (`SeqCst`), moves the epoch from `e` to `e + 1` (`SeqCst`), then waits until every
//! slot's counter for `e`'s parity reads zero. Then it frees what it unpublished.
//!
//! # Why it is enough
//!
//! A reader that loaded the old table loaded it before the writer's publication in the
//! single order of `SeqCst` accesses; its second epoch read came before that too, so it
//! read `e` (the epoch moves only under the growth lock), and its increment came before
//! the writer's counter loads, which therefore see it until the matching decrement. That
//! decrement is a release and the writer's load that reads zero an acquire of the same
//! read-modify-write chain, so everything the reader did happens before the free. A
//! reader that read the epoch again after the move loads the new table. Readers of
//! earlier epochs are all gone: the writer that moved the epoch past theirs waited for
//! them, and a reader only keeps a pin whose epoch it saw again after incrementing (step
//! 3), so no late increment can hide under a parity nobody waits for. New readers count
//! under the other parity, so a stream of readers cannot starve the writer.
//!
//! The epoch is a full counter, not a bit: step 3 could only be fooled by the epoch
//! moving 2^64 (2^32 on 32-bit targets) times while one reader stands between steps 1
//! and 2, and each move is one growth or one shrink.
//!
//! # Why not crossbeam-epoch
//!
//! crossbeam-epoch needs a registered participant per thread (a thread-local handle with
//! `std`; by hand without), collects garbage whenever some later pin gets round to it
//! (the pool wants an idle region unshared at a known point, not whenever), and runs
//! under loom only with its own `crossbeam_loom` configuration and a loom of its choosing.
//! What the pool needs is one writer at a time that can afford to wait: a few lines whose
//! every step the loom models in `src/tests/loom_elastic*.rs` drive, with the free
//! checked by [`TrackCell`](crate::sync::TrackCell). The read side costs two uncontended
//! read-modify-writes on the reader's own cache line, taken only by calls that reach a
//! sub-pool other than the first (which is never freed and needs no pin).

use crate::sync::{seq_cst_point, spin_hint, AtomicUsize, Ordering};
use alloc::boxed::Box;
use alloc::vec::Vec;
use crossbeam_utils::CachePadded;

/// The epoch and the reader slots.
#[derive(Debug)]
pub(crate) struct Epoch {
    epoch: CachePadded<AtomicUsize>,
    /// Pinned readers per slot, by epoch parity.
    slots: Box<[CachePadded<[AtomicUsize; 2]>]>,
    /// `slots.len() - 1` (a power of two less one): a hint's slot is `hint & mask`.
    mask: usize,
    /// The user's area hint, if one was given; else the default, read inline (as a region
    /// does: a call through the pointer costs more than the rest of a pin).
    hint: Option<fn() -> usize>,
}

/// A pinned reader: what it loads from the table stays valid until the guard is dropped.
#[derive(Debug)]
pub(crate) struct Guard<'a> {
    counter: &'a AtomicUsize,
}

impl Epoch {
    /// `slots` reader slots (rounded up to a power of two), chosen by `hint` (the default
    /// thread hint when `None`).
    pub(crate) fn new(slots: usize, hint: Option<fn() -> usize>) -> Self {
        let n = slots.max(1).next_power_of_two();
        let slots: Vec<_> = (0..n)
            .map(|_| CachePadded::new([AtomicUsize::new(0), AtomicUsize::new(0)]))
            .collect();
        Self {
            epoch: CachePadded::new(AtomicUsize::new(0)),
            slots: slots.into_boxed_slice(),
            mask: n - 1,
            hint,
        }
    }

    /// Pins the calling reader. Loads of the table made while the guard lives are
    /// `SeqCst` and see a table the writer cannot free before the guard is dropped.
    #[inline(always)]
    pub(crate) fn pin(&self) -> Guard<'_> {
        let i = if self.mask == 0 {
            0
        } else {
            match self.hint {
                Some(hint) => hint(),
                None => crate::sync::thread_hint(),
            }
        };
        let slot = &self.slots[i & self.mask];
        loop {
            let e = self.epoch.load(Ordering::SeqCst);
            let counter = &slot[e & 1];
            counter.fetch_add(1, Ordering::SeqCst);
            seq_cst_point();
            if self.epoch.load(Ordering::SeqCst) == e {
                return Guard { counter };
            }
            // The writer moved the epoch meanwhile: count under the new one instead.
            counter.fetch_sub(1, Ordering::Release);
        }
    }

    /// Waits until every reader that pinned before this call has dropped its guard.
    ///
    /// Call it after unpublishing (with a `SeqCst` store) what is to be freed, holding the
    /// writer's lock (one writer at a time) and no guard (it would wait for itself).
    pub(crate) fn synchronize(&self) {
        let e = self.epoch.load(Ordering::Relaxed);
        self.epoch.store(e.wrapping_add(1), Ordering::SeqCst);
        seq_cst_point();
        for slot in self.slots.iter() {
            let backoff = crossbeam_utils::Backoff::new();
            while slot[e & 1].load(Ordering::SeqCst) != 0 {
                // A reader's pin covers a bounded piece of work (one search, one copy): wait
                // by spinning, then (with `std`) by yielding to it.
                if cfg!(loom) {
                    spin_hint();
                } else {
                    backoff.snooze();
                }
            }
        }
    }
}

impl Drop for Guard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Release);
    }
}
