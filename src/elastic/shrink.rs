//! Shrink: regions that stayed empty past the idle time go back to the backend. The
//! writer's side, under the growth lock.
//!
//! A region is given back in two steps, each ending in a grace period:
//!
//! 1. it is *closed*: a table without it among the regions maps try is published, and
//!    `synchronize` waits out every map that may still have chosen it (their reservations
//!    are then visible);
//! 2. if it is still empty, nothing can ever be mapped in it again: a table without it is
//!    published, `synchronize` waits out every lookup, unmap or sync that may still hold
//!    it, and only then its metadata is freed and its memory unshared. A region that is
//!    not empty after step 1 (a map got in first) is opened again.
//!
//! So a shrink racing a map, an unmap or a lookup never unshares memory a mapping lives
//! in, and never frees what a reader holds (loom models in `src/tests/loom_elastic*.rs`).

use super::table::Member;
use super::ElasticPool;
use crate::sync::Ordering;
use alloc::boxed::Box;
use alloc::vec::Vec;
use lock_api::RawMutex;

impl<R: RawMutex> ElasticPool<R> {
    /// Gives back every region (never the first) that has been empty, with no map landing
    /// in it, for at least the idle time, as far as
    /// [`keep_free`](crate::ElasticConfig::with_keep_free) allows. Returns how many.
    ///
    /// Idleness is what this call sees: a region is measured from the first call that
    /// found it empty and untouched since the call before, so call it periodically (a
    /// timer, an idle loop; with an idle time of 0, whenever you want regions back).
    /// Waits (like growth) for lookups of other regions in flight; see the pool's
    /// "Where growth and shrink may run".
    pub fn shrink(&self) -> usize {
        let Some(backend) = self.backend.as_deref() else {
            return 0;
        };
        let mut grower = self.grower.lock();
        if grower.subs.is_empty() {
            return 0;
        }
        let now = (self.config.clock())();
        let idle = self.config.idle_time_ns();
        self.sample_use();

        // Free bytes across the pool, for the threshold.
        let slot = self.slot_size();
        let mut free = self.first.pool.total_slots() - self.first.pool.used_now();
        for &(sub, _) in &grower.subs {
            // SAFETY: the grower owns the regions it lists (we hold its lock).
            let sub = unsafe { &*sub };
            free += sub.pool.total_slots() - sub.pool.used_now();
        }
        let mut free = free * slot;

        let mut candidates = Vec::new();
        for (k, (sub, empty_since)) in grower.subs.iter_mut().enumerate() {
            // SAFETY: as above.
            let sub = unsafe { &**sub };
            let touched = sub.touched.swap(false, Ordering::Relaxed);
            if sub.pool.used_now() != 0 {
                *empty_since = None;
                continue;
            }
            let since = match *empty_since {
                Some(t) if !touched => t,
                _ => {
                    *empty_since = Some(now);
                    now
                }
            };
            if now.saturating_sub(since) < idle {
                continue;
            }
            // `free` was summed from counters read a moment ago (a region may have emptied
            // since): saturate rather than trust it exactly.
            let bytes = sub.pool.total_slots() * slot;
            if free.saturating_sub(bytes) < self.config.keep_free() {
                continue;
            }
            free = free.saturating_sub(bytes);
            candidates.push(k);
        }
        if candidates.is_empty() {
            return 0;
        }

        // Step 1: close them, and wait out the maps that may have chosen them.
        let closed: Vec<*const _> = candidates
            .iter()
            .map(|&k| grower.subs[k].0.cast_const())
            .collect();
        let members: Vec<Member<R>> = self
            .current_members()
            .into_iter()
            .map(|m| Member {
                open: m.open && !closed.contains(&m.sub),
                sub: m.sub,
            })
            .collect();
        let old = self.publish(super::table::Table::build(&self.first, &members));
        self.epoch.synchronize();
        grower.retire_table(old);

        // Step 2: those still empty go; the others open again.
        let mut gone = Vec::new();
        for &k in &candidates {
            // SAFETY: as above.
            let sub = unsafe { &*grower.subs[k].0 };
            if sub.pool.used_now() == 0 {
                gone.push(grower.subs[k].0.cast_const());
            } else {
                grower.subs[k].1 = None;
            }
        }
        let reopened = gone.len() < candidates.len();
        let members: Vec<Member<R>> = members
            .into_iter()
            .filter(|m| !gone.contains(&m.sub))
            .map(|m| Member {
                open: m.open || closed.contains(&m.sub),
                sub: m.sub,
            })
            .collect();
        let old = self.publish(super::table::Table::build(&self.first, &members));
        self.epoch.synchronize();
        grower.retire_table(old);

        let mut k = 0;
        while k < grower.subs.len() {
            if gone.contains(&grower.subs[k].0.cast_const()) {
                let (sub, _) = grower.subs.swap_remove(k);
                // SAFETY: the grower owned it (from `Box::into_raw`); it is in no table,
                // and every reader that could hold it has been waited out.
                let sub = unsafe { Box::from_raw(sub) };
                grower.give_back(Some(backend), sub, &self.counters);
                self.counters.shrank();
            } else {
                k += 1;
            }
        }
        self.counters.set_held(grower.held);
        drop(grower);
        if reopened {
            // Maps may have failed while those regions were closed.
            self.wake_all();
        }
        gone.len()
    }
}
