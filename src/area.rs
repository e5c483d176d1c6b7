//! Areas: the unit of locking. Each owns a contiguous run of slots, a two-level bitmap of
//! which are in use, and its counters.
//!
//! # Search
//!
//! First fit, from the bottom of the area, over device slot numbers (`origin + index`):
//!
//! 1. jump to the first free slot at or after the candidate (the summary level skips full
//!    words 64 at a time);
//! 2. round up to the next slot with the required phase (alignment and `min_align_mask`);
//! 3. if the run would cross a window (segment or `seg_boundary_mask`), jump to the next
//!    window;
//! 4. if any slot of the run is in use, jump past the last used one.
//!
//! Every step moves the candidate forward, so a search ends after at most one pass over the
//! area, whatever the constraints (Linux's 2022 "fix the deadlock in find_slots" is about a
//! search that did not). First fit rather than Linux's next fit keeps reusing the same
//! low slots, which are warm in the cache when the copy runs, and keeps fragmentation low
//! (address-ordered first fit is among the least fragmenting policies known).
//!
//! Before any search, a request looks among the runs given back lately by unmaps of its
//! size class ([`cache`](crate::cache)), which the area keeps (bits still set) for the next
//! mapping of their size; a search that fails gives them all back and searches again.

use crate::cache::{Run, RunCache};
use crate::padded::Padded;
use crate::slot::Slots;
use crate::sync::{AtomicUsize, Mutex, MutexGuard, Ordering};
use lock_api::RawMutex;

const WORD: usize = u64::BITS as usize;

/// Where a run of slots may go, in device slot numbers (device address >> slot shift).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    /// Length of the run in slots, front padding included.
    pub(crate) slots: usize,
    /// The first slot's device slot number must be `phase` modulo `stride` (a power of two).
    pub(crate) stride: u64,
    pub(crate) phase: u64,
    /// The run must not cross a multiple of `window` (a power of two) device slots.
    pub(crate) window: u64,
    /// The first slot's device slot number must be below this (the device's address limit).
    pub(crate) limit: u64,
    /// Search from the top of the area down (last fit) instead of first fit: for coherent
    /// allocations, which live long, so that they gather at the top and leave the large
    /// free run below them to the short-lived streaming mappings.
    pub(crate) from_top: bool,
}

// === impl Bitmap ===

/// One bit a slot, set when the slot is in use, with a summary bit a word that is set when
/// the word has a free slot. Bits past the end of the area are set, so they are never free.
#[derive(Debug)]
pub(crate) struct Bitmap {
    words: Padded<u64>,
    summary: Padded<u64>,
    len: usize,
}

impl Bitmap {
    /// A bitmap of `len` free slots, or `None` if the memory cannot be had.
    pub(crate) fn new(len: usize) -> Option<Self> {
        let nwords = len.div_ceil(WORD);
        let mut words = Padded::new(nwords, || 0u64)?;
        if len % WORD != 0 {
            words.as_mut_slice()[nwords - 1] = !0 << (len % WORD);
        }
        let mut summary = Padded::new(nwords.div_ceil(WORD), || 0u64)?;
        for (w, word) in words.iter().enumerate() {
            if *word != !0 {
                summary.as_mut_slice()[w / WORD] |= 1 << (w % WORD);
            }
        }
        Some(Self {
            words,
            summary,
            len,
        })
    }

    /// The first free slot in `from..end`.
    #[inline(always)]
    fn next_free(&self, from: usize, end: usize) -> Option<usize> {
        if from >= end {
            return None;
        }
        let mut w = from / WORD;
        debug_assert!(w < self.words.len());
        let free = !self.words[w] & (!0u64 << (from % WORD));
        if free != 0 {
            let bit = w * WORD + free.trailing_zeros() as usize;
            return (bit < end).then_some(bit);
        }
        // Find the next word with a free slot through the summary.
        w += 1;
        let mut s = w / WORD;
        let mut bits = match self.summary.get(s) {
            Some(bits) => bits & (!0u64).checked_shl((w % WORD) as u32).unwrap_or(0),
            None => return None,
        };
        loop {
            if bits != 0 {
                let w = s * WORD + bits.trailing_zeros() as usize;
                let bit = w * WORD + (!self.words[w]).trailing_zeros() as usize;
                return (bit < end).then_some(bit);
            }
            s += 1;
            if s * WORD * WORD >= end {
                return None;
            }
            bits = self.summary[s];
        }
    }

    /// The last used slot in `from..end`.
    #[inline(always)]
    fn last_used(&self, from: usize, end: usize) -> Option<usize> {
        debug_assert!(from < end && end <= self.len);
        let first = from / WORD;
        let mut w = (end - 1) / WORD;
        loop {
            let mut used = self.words[w];
            if w == (end - 1) / WORD {
                used &= !0u64 >> (WORD - 1 - (end - 1) % WORD);
            }
            if w == first {
                used &= !0u64 << (from % WORD);
            }
            if used != 0 {
                return Some(w * WORD + (WORD - 1 - used.leading_zeros() as usize));
            }
            if w == first {
                return None;
            }
            w -= 1;
        }
    }

    /// The last free slot before `before`.
    #[inline]
    fn prev_free(&self, before: usize) -> Option<usize> {
        let b = before.checked_sub(1)?;
        let w = b / WORD;
        let free = !self.words[w] & (!0u64 >> (WORD - 1 - b % WORD));
        if free != 0 {
            return Some(w * WORD + (WORD - 1 - free.leading_zeros() as usize));
        }
        // The previous word with a free slot, through the summary.
        let mut s = w / WORD;
        let mut bits = self.summary[s] & ((1u64 << (w % WORD)) - 1);
        loop {
            if bits != 0 {
                let w = s * WORD + (WORD - 1 - bits.leading_zeros() as usize);
                let free = !self.words[w];
                return Some(w * WORD + (WORD - 1 - free.leading_zeros() as usize));
            }
            s = s.checked_sub(1)?;
            bits = self.summary[s];
        }
    }

    /// The first used slot in `from..end`.
    #[inline]
    fn first_used(&self, from: usize, end: usize) -> Option<usize> {
        debug_assert!(from < end && end <= self.len);
        let last = (end - 1) / WORD;
        let mut w = from / WORD;
        loop {
            let mut used = self.words[w];
            if w == from / WORD {
                used &= !0u64 << (from % WORD);
            }
            if w == last {
                used &= !0u64 >> (WORD - 1 - (end - 1) % WORD);
            }
            if used != 0 {
                return Some(w * WORD + used.trailing_zeros() as usize);
            }
            if w == last {
                return None;
            }
            w += 1;
        }
    }

    /// Sets (`used`) or clears every bit of `start..start + count`.
    #[inline(always)]
    fn fill(&mut self, start: usize, count: usize, used: bool) {
        debug_assert!(count > 0 && start + count <= self.len);
        let end = start + count;
        let w = start / WORD;
        if (end - 1) / WORD == w {
            // The common case: one word.
            let mask = (!0u64 >> (WORD - count)) << (start % WORD);
            self.set_word(w, mask, used);
            return;
        }
        let mut at = start;
        while at < end {
            let w = at / WORD;
            let hi = end.min((w + 1) * WORD);
            let mask = (!0u64 << (at % WORD)) & (!0u64 >> (WORD - 1 - (hi - 1) % WORD));
            self.set_word(w, mask, used);
            at = hi;
        }
    }

    /// Sets or clears the bits of `mask` in word `w`, keeping the summary current.
    #[inline(always)]
    fn set_word(&mut self, w: usize, mask: u64, used: bool) {
        let words = self.words.as_mut_slice();
        let word = if used {
            debug_assert_eq!(words[w] & mask, 0, "slots already in use");
            words[w] | mask
        } else {
            debug_assert_eq!(words[w] & mask, mask, "slots already free");
            words[w] & !mask
        };
        words[w] = word;
        // The summary bit changes only when the word becomes full or stops being full:
        // write it only then, to leave its line clean.
        let bit = 1u64 << (w % WORD);
        let summary = &mut self.summary.as_mut_slice()[w / WORD];
        let has_free = if word == !0 { 0 } else { bit };
        if *summary & bit != has_free {
            *summary ^= bit;
        }
    }
}

/// Which slots a search may treat as free.
trait Occupancy {
    fn next_free(&self, from: usize, end: usize) -> Option<usize>;
    fn last_used(&self, from: usize, end: usize) -> Option<usize>;
    fn prev_free(&self, before: usize) -> Option<usize>;
    fn first_used(&self, from: usize, end: usize) -> Option<usize>;
}

impl Occupancy for Bitmap {
    #[inline(always)]
    fn next_free(&self, from: usize, end: usize) -> Option<usize> {
        Bitmap::next_free(self, from, end)
    }
    #[inline(always)]
    fn last_used(&self, from: usize, end: usize) -> Option<usize> {
        Bitmap::last_used(self, from, end)
    }
    fn prev_free(&self, before: usize) -> Option<usize> {
        Bitmap::prev_free(self, before)
    }
    fn first_used(&self, from: usize, end: usize) -> Option<usize> {
        Bitmap::first_used(self, from, end)
    }
}

/// An area with every slot free: tells whether a placement can exist at all.
struct Empty;

impl Occupancy for Empty {
    fn next_free(&self, from: usize, end: usize) -> Option<usize> {
        (from < end).then_some(from)
    }
    fn last_used(&self, _: usize, _: usize) -> Option<usize> {
        None
    }
    fn prev_free(&self, before: usize) -> Option<usize> {
        before.checked_sub(1)
    }
    fn first_used(&self, _: usize, _: usize) -> Option<usize> {
        None
    }
}

/// First fit for `p` among `len` slots whose first has device slot number `origin`.
#[inline(always)]
fn search(bits: &impl Occupancy, len: usize, origin: u64, p: &Placement) -> Option<usize> {
    debug_assert!(p.stride.is_power_of_two() && p.window.is_power_of_two());
    debug_assert!(p.slots as u64 <= p.window);
    let mut at = 0usize;
    loop {
        at = bits.next_free(at, len)?;
        let dev = origin + at as u64;
        let skip = p.phase.wrapping_sub(dev) & (p.stride - 1);
        let dev = dev.checked_add(skip)?;
        if dev >= p.limit || skip >= (len - at) as u64 {
            return None;
        }
        at += skip as usize;
        if p.slots > len - at {
            return None;
        }
        let last = dev + p.slots as u64 - 1;
        if (dev ^ last) & !(p.window - 1) != 0 {
            // Crosses a window: the next candidate is the next window's first slot.
            at += ((dev | (p.window - 1)) + 1 - dev) as usize;
            continue;
        }
        match bits.last_used(at, at + p.slots) {
            None => return Some(at),
            Some(used) => at = used + 1,
        }
    }
}

/// Last fit: the highest placement for `p` among `len` slots whose first has device slot
/// number `origin`. The mirror of [`search`]: every step moves the end of the candidate run
/// down, so it too ends in one pass.
fn search_down(bits: &impl Occupancy, len: usize, origin: u64, p: &Placement) -> Option<usize> {
    debug_assert!(p.stride.is_power_of_two() && p.window.is_power_of_two());
    // The run must end at or before `end`.
    let mut end = len;
    loop {
        let top = bits.prev_free(end)? + 1;
        let mut at = top.checked_sub(p.slots)?;
        // The first slot's device slot number must be below the limit.
        let highest = p.limit.checked_sub(origin + 1)?;
        if at as u64 > highest {
            at = highest as usize;
        }
        let dev = origin + at as u64;
        let down = dev.wrapping_sub(p.phase) & (p.stride - 1);
        at = at.checked_sub(down as usize)?;
        let dev = dev - down;
        let last = dev + p.slots as u64 - 1;
        if (dev ^ last) & !(p.window - 1) != 0 {
            // Crosses a window: the run must end where the window holding its last slot
            // begins.
            end = ((last & !(p.window - 1)) - origin) as usize;
            continue;
        }
        match bits.first_used(at, at + p.slots) {
            None => return Some(at),
            Some(used) => end = used,
        }
    }
}

// === impl Area ===

/// A contiguous range of the pool's slots with its own lock.
pub(crate) struct Area<R> {
    /// Pool slot number of the area's first slot.
    pub(crate) first: usize,
    /// Number of slots in the area.
    pub(crate) len: usize,
    /// Device slot number of the area's first slot.
    pub(crate) origin: u64,
    /// Slots in a segment (no run crosses a multiple of it in device slot numbers).
    segment: u64,
    /// What each of the area's slots holds. Written under the lock, read anywhere.
    pub(crate) slots: Slots,
    state: Mutex<R, State>,
    /// Slots in use. Written only under the lock, read anywhere.
    used: AtomicUsize,
    /// Highest `used` has been. Written only under the lock.
    high_water: AtomicUsize,
    /// Searches of this area that found no room (counted once the map has succeeded
    /// elsewhere or failed with `Full`).
    failed: AtomicUsize,
}

impl<R> core::fmt::Debug for Area<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Area")
            .field("first", &self.first)
            .field("len", &self.len)
            .field("origin", &self.origin)
            .field("used", &self.used.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Figures of one area.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AreaStats {
    /// Slots in the area.
    pub total_slots: usize,
    /// Slots in use (front padding included).
    pub used_slots: usize,
    /// Most slots ever in use at once in this area.
    pub high_water: usize,
    /// Searches of this area that found no room (a map that then succeeded in another area
    /// counts here too).
    pub failed_searches: usize,
}

/// What an area's lock protects: which slots are taken, and the runs given back lately.
#[derive(Debug)]
struct State {
    /// Slots of live runs and of the runs in `cache` are set.
    bitmap: Bitmap,
    cache: RunCache,
}

/// An area's lock, held.
pub(crate) struct AreaGuard<'a, R: RawMutex> {
    area: &'a Area<R>,
    state: MutexGuard<'a, R, State>,
}

impl<R: RawMutex> Area<R> {
    /// An area of `len` free slots from pool slot `first` (device slot number `origin`) in
    /// a pool of `segment`-slot segments, or `None` if its metadata cannot be allocated.
    pub(crate) fn new(first: usize, len: usize, origin: u64, segment: u64) -> Option<Self> {
        Some(Self {
            first,
            len,
            origin,
            segment,
            slots: Slots::new(first, len)?,
            state: Mutex::new(State {
                bitmap: Bitmap::new(len)?,
                cache: RunCache::default(),
            }),
            used: AtomicUsize::new(0),
            high_water: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
        })
    }

    #[inline]
    pub(crate) fn lock(&self) -> AreaGuard<'_, R> {
        AreaGuard {
            area: self,
            state: self.state.lock(),
        }
    }

    #[inline]
    pub(crate) fn try_lock(&self) -> Option<AreaGuard<'_, R>> {
        Some(AreaGuard {
            area: self,
            state: self.state.try_lock()?,
        })
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> AreaStats {
        AreaStats {
            total_slots: self.len,
            used_slots: self.used.load(Ordering::Relaxed),
            high_water: self.high_water.load(Ordering::Relaxed),
            failed_searches: self.failed.load(Ordering::Relaxed),
        }
    }

    /// Starts the area's high-water mark again from its use now (under the lock, as every
    /// write of the mark).
    pub(crate) fn reset_high_water(&self) {
        let guard = self.lock();
        self.high_water
            .store(self.used.load(Ordering::Relaxed), Ordering::Relaxed);
        drop(guard);
    }

    /// Whether `p` could be placed in this area were every slot free.
    pub(crate) fn could_hold(&self, p: &Placement) -> bool {
        search(&Empty, self.len, self.origin, p).is_some()
    }

    /// Counts a search of this area that found no room.
    pub(crate) fn note_failed_search(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether pool slot `slot` is in this area.
    pub(crate) fn holds(&self, slot: usize) -> bool {
        slot.wrapping_sub(self.first) < self.len
    }
}

impl<'a, R: RawMutex> AreaGuard<'a, R> {
    /// Finds room for `p`, marks it used and returns its first pool slot number; `None`
    /// when there is none.
    #[inline(always)]
    pub(crate) fn take(&mut self, p: &Placement) -> Option<TakeResult> {
        let area = self.area;
        let used = area.used.load(Ordering::Relaxed);
        if p.slots > area.len - used {
            return None;
        }
        let at = self.find(p)?;
        let used = used + p.slots;
        area.used.store(used, Ordering::Relaxed);
        let raised = used > area.high_water.load(Ordering::Relaxed);
        if raised {
            area.high_water.store(used, Ordering::Relaxed);
        }
        Some(TakeResult {
            start: area.first + at,
            raised_high_water: raised,
        })
    }

    /// Finds room for `p` and sets its bits: a run given back lately if one of its class
    /// fits (the rest of that run goes back to the bitmap), else a search of the bitmap, and
    /// if that fails while runs are held back, another once they are all given back.
    #[inline(always)]
    fn find(&mut self, p: &Placement) -> Option<usize> {
        let origin = self.area.origin;
        let State { bitmap, cache } = &mut *self.state;
        if !p.from_top {
            let segment = self.area.segment;
            if let Some(run) = cache.take(p.slots, |at| fits(origin + at as u64, p, segment)) {
                let at = run.start as usize;
                let rest = run.slots as usize - p.slots;
                if rest != 0 {
                    bitmap.fill(at + p.slots, rest, false);
                }
                return Some(at);
            }
        }
        if let Some(at) = self.search(p) {
            return Some(at);
        }
        let State { bitmap, cache } = &mut *self.state;
        if cache.is_empty() {
            return None;
        }
        cache.drain(|run| bitmap.fill(run.start as usize, run.slots as usize, false));
        self.search(p)
    }

    /// Searches the bitmap for `p` and sets the bits of what it finds.
    #[inline(always)]
    fn search(&mut self, p: &Placement) -> Option<usize> {
        let area = self.area;
        let bitmap = &mut self.state.bitmap;
        let at = if p.slots == 1 && p.stride == 1 && !p.from_top {
            // The most common request: any free slot below the limit will do.
            bitmap
                .next_free(0, area.len)
                .filter(|at| area.origin + (*at as u64) < p.limit)
        } else if p.from_top {
            search_down(&*bitmap, area.len, area.origin, p)
        } else {
            search(&*bitmap, area.len, area.origin, p)
        }?;
        bitmap.fill(at, p.slots, true);
        Some(at)
    }

    /// The area whose lock this is (for as long as the area lives, not only the guard).
    #[inline(always)]
    pub(crate) fn area(&self) -> &'a Area<R> {
        self.area
    }

    /// Gives back `count` slots from pool slot `start`, which `take` handed out. With
    /// `keep`, the run waits in the area's cache for the next request of its size (see
    /// [`cache`](crate::cache)); without, it goes straight back to the bitmap.
    #[inline(always)]
    pub(crate) fn give(&mut self, start: usize, count: usize, keep: bool) {
        let area = self.area;
        debug_assert!(area.holds(start) && area.holds(start + count - 1));
        let State { bitmap, cache } = &mut *self.state;
        let at = start - area.first;
        // The cache keeps 32-bit slot indices (a run is at most a segment, 16384 slots): a
        // run past the 2^32nd slot of a huge area (256 GiB of 64-byte slots) goes straight
        // back.
        let back = match u32::try_from(at) {
            Ok(start) if keep => cache
                .push(Run {
                    start,
                    slots: count as u32,
                })
                .map(|run| (run.start as usize, run.slots as usize)),
            _ => Some((at, count)),
        };
        if let Some((at, count)) = back {
            bitmap.fill(at, count, false);
        }
        let used = area.used.load(Ordering::Relaxed);
        debug_assert!(used >= count);
        area.used.store(used - count, Ordering::Relaxed);
    }
}

/// Whether a run for `p` may start at device slot number `dev` (the run itself is known to
/// be free, to lie in the area and not to cross a segment: every run was placed so).
#[inline(always)]
fn fits(dev: u64, p: &Placement, segment: u64) -> bool {
    let last = dev + p.slots as u64 - 1;
    // The limit and window tests are written so that they vanish for the common request,
    // whose limit is `u64::MAX` and whose window is a segment.
    dev.wrapping_sub(p.phase) & (p.stride - 1) == 0
        && (p.limit == u64::MAX || dev < p.limit)
        && (p.window == segment || (dev ^ last) & !(p.window - 1) == 0)
}

/// What [`AreaGuard::take`] found.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TakeResult {
    /// Pool slot number of the run's first slot.
    pub(crate) start: usize,
    /// Whether the area's high-water mark rose.
    pub(crate) raised_high_water: bool,
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn p(slots: usize) -> Placement {
        Placement {
            slots,
            stride: 1,
            phase: 0,
            window: 128,
            limit: u64::MAX,
            from_top: false,
        }
    }

    type TestArea = Area<crate::sync::SpinRawMutex>;

    /// Takes `p` in `area`, returning the pool slot it got.
    fn take(area: &TestArea, p: &Placement) -> Option<usize> {
        area.lock().take(p).map(|t| t.start)
    }

    #[test]
    fn a_run_given_back_is_taken_again_by_the_next_request_of_its_class() {
        let area = TestArea::new(0, 256, 0, 128).unwrap();
        let a = take(&area, &p(1)).unwrap();
        let b = take(&area, &p(1)).unwrap();
        assert_eq!((a, b), (0, 1));
        area.lock().give(a, 1, true);
        assert_eq!(area.used(), 1);
        // First fit would give 0 too; give back 1 and 0 is still the lower, but 1 is newer.
        area.lock().give(b, 1, true);
        assert_eq!(take(&area, &p(1)), Some(1));
        assert_eq!(take(&area, &p(1)), Some(0));
        // A run of 8 serves a request of 5 (same class); its last 3 slots go back free.
        let big = take(&area, &p(8)).unwrap();
        area.lock().give(big, 8, true);
        assert_eq!(take(&area, &p(5)), Some(big));
        assert_eq!(take(&area, &p(3)), Some(big + 5));
        assert_eq!(area.used(), 2 + 8);
        // Not kept: straight back to the bitmap, found by first fit.
        area.lock().give(0, 1, false);
        assert_eq!(take(&area, &p(1)), Some(0));
    }

    #[test]
    fn a_run_in_the_cache_must_fit_the_placement() {
        let area = TestArea::new(0, 256, 0, 128).unwrap();
        let a = take(&area, &p(1)).unwrap();
        let odd = take(&area, &p(2)).unwrap();
        assert_eq!((a, odd), (0, 1));
        area.lock().give(odd, 2, true);
        // Two slots aligned to 2: the cached run at 1 does not do, and its slots stay
        // taken while it waits, so first fit finds 4.
        let aligned = Placement { stride: 2, ..p(2) };
        assert_eq!(take(&area, &aligned), Some(4));
        // Starting below device slot 1: nothing, even once the cache is given back.
        let limited = Placement { limit: 1, ..p(2) };
        assert_eq!(take(&area, &limited), None);
        // The failed search gave the run at 1 back to the bitmap, where first fit finds it.
        assert_eq!(take(&area, &p(2)), Some(1));
    }

    #[test]
    fn a_search_that_fails_gives_back_the_held_runs_and_searches_again() {
        let area = TestArea::new(0, 64, 0, 128).unwrap();
        for s in 0..64 {
            assert_eq!(take(&area, &p(1)), Some(s));
        }
        for s in 0..64 {
            area.lock().give(s, 1, true);
        }
        assert_eq!(area.used(), 0);
        // Some of those wait in the cache with their bits set; the whole area is free.
        assert_eq!(take(&area, &p(64)), Some(0));
        assert_eq!(take(&area, &p(1)), None);
        area.lock().give(0, 64, true);
        // Too long for any class: straight back.
        assert_eq!(take(&area, &p(2)), Some(0));
    }

    #[test]
    fn bitmap_tail_is_never_free() {
        let b = Bitmap::new(70).unwrap();
        assert_eq!(b.next_free(69, 70), Some(69));
        assert_eq!(b.next_free(70, 128), None);
        assert_eq!(b.last_used(64, 70), None);
    }

    #[test]
    fn next_free_skips_full_words_through_the_summary() {
        let mut b = Bitmap::new(64 * 70).unwrap();
        b.fill(0, 64 * 67 + 5, true);
        assert_eq!(b.next_free(0, 64 * 70), Some(64 * 67 + 5));
        assert_eq!(b.next_free(0, 64 * 67 + 5), None);
        b.fill(64 * 3, 64, false);
        assert_eq!(b.next_free(10, 64 * 70), Some(64 * 3));
        b.fill(64 * 67 + 5, 64 * 3 - 5, true);
        assert_eq!(b.next_free(0, 64 * 70), Some(64 * 3));
        assert_eq!(b.next_free(64 * 4, 64 * 70), None);
    }

    #[test]
    fn last_used_looks_at_exactly_the_range() {
        let mut b = Bitmap::new(256).unwrap();
        b.fill(63, 1, true);
        b.fill(130, 2, true);
        assert_eq!(b.last_used(0, 63), None);
        assert_eq!(b.last_used(0, 64), Some(63));
        assert_eq!(b.last_used(64, 130), None);
        assert_eq!(b.last_used(64, 256), Some(131));
        assert_eq!(b.last_used(131, 132), Some(131));
        assert_eq!(b.last_used(132, 256), None);
    }

    #[test]
    fn search_respects_phase_window_and_limit() {
        let mut b = Bitmap::new(512).unwrap();
        assert_eq!(search(&b, 512, 0, &p(1)), Some(0));
        b.fill(0, 1, true);
        // Phase 0 modulo 4, from an origin of 2: index 2 is device slot 4.
        let aligned = Placement { stride: 4, ..p(2) };
        assert_eq!(search(&b, 512, 2, &aligned), Some(2));
        // A run of 100 from index 1 would cross the 128 window (origin 0): goes to 128.
        b.fill(0, 1, false);
        b.fill(20, 1, true);
        assert_eq!(search(&b, 512, 0, &p(100)), Some(21));
        assert_eq!(search(&b, 512, 0, &p(110)), Some(128));
        // The limit bounds the first slot.
        let limited = Placement {
            limit: 128,
            ..p(110)
        };
        assert_eq!(search(&b, 512, 0, &limited), None);
        assert_eq!(search(&Empty, 512, 0, &limited), Some(0));
    }

    #[test]
    fn search_of_a_nearly_full_area_with_an_unmeetable_alignment_ends() {
        // Linux 2022 "fix the deadlock in find_slots": every other slot used, and a
        // 2-slot request with stride 2 can never fit.
        let mut b = Bitmap::new(256).unwrap();
        for i in (0..256).step_by(2) {
            b.fill(i, 1, true);
        }
        let q = Placement { stride: 2, ..p(2) };
        assert_eq!(search(&b, 256, 0, &q), None);
        assert_eq!(search(&b, 256, 0, &p(1)), Some(1));
    }

    #[test]
    fn prev_free_and_first_used_look_at_exactly_the_range() {
        let mut b = Bitmap::new(6400).unwrap();
        assert_eq!(b.prev_free(6400), Some(6399));
        assert_eq!(b.prev_free(0), None);
        b.fill(128, 6400 - 128, true);
        assert_eq!(b.prev_free(6400), Some(127));
        b.fill(4872, 1, false);
        assert_eq!(b.prev_free(6400), Some(4872));
        assert_eq!(b.prev_free(4872), Some(127));
        assert_eq!(b.first_used(0, 6400), Some(128));
        assert_eq!(b.first_used(0, 128), None);
        assert_eq!(b.first_used(4872, 4873), None);
        assert_eq!(b.first_used(4872, 4874), Some(4873));
    }

    #[test]
    fn search_down_finds_the_highest_placement() {
        let down = |q: Placement| Placement {
            from_top: true,
            ..q
        };
        let mut b = Bitmap::new(512).unwrap();
        assert_eq!(search_down(&b, 512, 0, &down(p(1))), Some(511));
        // Aligned to 4 from an origin of 2: the highest start is device slot 512, index 510.
        let aligned = down(Placement { stride: 4, ..p(2) });
        assert_eq!(search_down(&b, 512, 2, &aligned), Some(510));
        // 100 slots may not cross a 128 window: the highest run ends at 512.
        assert_eq!(search_down(&b, 512, 0, &down(p(100))), Some(412));
        b.fill(450, 1, true);
        // The top window [384, 512) holds no free run of 100 any more.
        assert_eq!(search_down(&b, 512, 0, &down(p(100))), Some(284));
        let limited = down(Placement {
            limit: 200,
            ..p(100)
        });
        assert_eq!(search_down(&b, 512, 0, &limited), Some(156));
        assert_eq!(search_down(&b, 512, 300, &limited), None);
        // Same answers as the forward search on whether a placement exists at all.
        for slots in [1, 2, 3, 64, 100, 128] {
            for stride in [1, 2, 8, 64] {
                let q = Placement {
                    stride,
                    phase: 1 % stride,
                    ..p(slots)
                };
                assert_eq!(
                    search(&b, 512, 0, &q).is_some(),
                    search_down(&b, 512, 0, &down(q)).is_some(),
                    "{slots} slots, stride {stride}"
                );
            }
        }
    }
}
