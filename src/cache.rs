//! Recently freed runs, kept by size class for the next mapping of their size.
//!
//! A run given back by an unmap does not go straight back to its area's bitmap: it waits
//! here, its bits still set, so that the next request of its size class takes it again
//! instead of searching. That run is the memory most recently touched (an unmap that copied
//! back just read all of it), so the copy into it finds it in the cache; its dirty prefixes
//! are those of a mapping of about the same size, so little needs zeroing around the new
//! data; and in a steady stream of same-sized mappings (a ring of receive buffers, a
//! disk's blocks) the search and both bitmap updates are skipped.
//!
//! Nothing here changes what a caller can observe: a run here is free (its slots are not
//! counted as used, and its tags are clear), and whenever a search of the bitmap finds no
//! room the area gives every run here back to the bitmap and searches again, so a request
//! fails only if there is no room at all, as it would without the cache.
//!
//! Each class holds the last [`WAYS`] runs given back (older ones go back to the bitmap),
//! newest first. Class `c` holds runs of `2^(c-1) + 1 ..= 2^c` slots; a request takes a run of
//! its own class that is at least as long and placed as it must be, and gives the slots it
//! does not need back to the bitmap. All of it lives under the area's lock.

/// Runs kept per size class.
pub(crate) const WAYS: usize = 4;
/// Size classes: runs of 1, 2, 3-4, 5-8, ..., 8193-16384 slots (the longest segment).
const CLASSES: usize = 15;

/// A run of slots: the area index of its first slot, and its length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) start: u32,
    pub(crate) slots: u32,
}

/// The runs of one size class, oldest first.
#[derive(Clone, Copy, Debug, Default)]
struct Class {
    runs: [Run; WAYS],
    len: u8,
}

/// Recently freed runs of one area, by size class. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct RunCache {
    classes: [Class; CLASSES],
}

/// The class of a run of `slots` slots (at least 1): `ceil(log2(slots))`.
#[inline(always)]
fn class(slots: usize) -> usize {
    debug_assert!(slots > 0);
    (usize::BITS - (slots - 1).leading_zeros()) as usize
}

impl RunCache {
    /// Whether no run is held (a look at every class: for the rare failed search, not for
    /// the common path, which looks at one class).
    pub(crate) fn is_empty(&self) -> bool {
        self.classes.iter().all(|c| c.len == 0)
    }

    /// Keeps `run` as the newest of its class. Returns the run it displaces (the class's
    /// oldest, when the class is full), which the caller gives back to the bitmap, or the
    /// run itself if it is too long to keep.
    #[inline(always)]
    pub(crate) fn push(&mut self, run: Run) -> Option<Run> {
        let Some(class) = self.classes.get_mut(class(run.slots as usize)) else {
            return Some(run);
        };
        let len = class.len as usize;
        if len < WAYS {
            class.runs[len] = run;
            class.len += 1;
            return None;
        }
        let oldest = class.runs[0];
        for j in 0..WAYS - 1 {
            class.runs[j] = class.runs[j + 1];
        }
        class.runs[WAYS - 1] = run;
        Some(oldest)
    }

    /// Takes the newest run of the class of `slots` that is at least that long and for
    /// which `fits(start)` holds.
    #[inline(always)]
    pub(crate) fn take(&mut self, slots: usize, fits: impl Fn(usize) -> bool) -> Option<Run> {
        let class = self.classes.get_mut(class(slots))?;
        let len = class.len as usize;
        for i in (0..len.min(WAYS)).rev() {
            let run = class.runs[i];
            if run.slots as usize >= slots && fits(run.start as usize) {
                // Close the gap (nothing to move when the newest is taken, the usual case).
                for j in i..len - 1 {
                    class.runs[j] = class.runs[j + 1];
                }
                class.len -= 1;
                return Some(run);
            }
        }
        None
    }

    /// Removes every run, calling `give` with each.
    pub(crate) fn drain(&mut self, mut give: impl FnMut(Run)) {
        for class in &mut self.classes {
            for run in &class.runs[..class.len as usize] {
                give(*run);
            }
            class.len = 0;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn run(start: u32, slots: u32) -> Run {
        Run { start, slots }
    }

    #[test]
    fn classes_are_powers_of_two() {
        let classes: Vec<usize> = [1, 2, 3, 4, 5, 8, 9, 128, 129, 16384]
            .into_iter()
            .map(class)
            .collect();
        assert_eq!(classes, [0, 1, 2, 2, 3, 3, 4, 7, 8, 14]);
    }

    #[test]
    fn newest_fitting_run_of_the_class_first() {
        let mut c = RunCache::default();
        assert_eq!(c.push(run(0, 5)), None);
        assert_eq!(c.push(run(10, 8)), None);
        assert_eq!(c.push(run(20, 6)), None);
        assert!(!c.is_empty());
        // 7 slots: class 3 (5-8); the newest run of at least 7 is the one at 10.
        assert_eq!(c.take(7, |_| true), Some(run(10, 8)));
        // 5 slots, not at 20: the one at 0.
        assert_eq!(c.take(5, |at| at != 20), Some(run(0, 5)));
        assert_eq!(c.take(2, |_| true), None);
        assert_eq!(c.take(5, |_| true), Some(run(20, 6)));
        assert!(c.is_empty());
    }

    #[test]
    fn a_full_class_gives_back_its_oldest_and_drain_gives_back_all() {
        let mut c = RunCache::default();
        for i in 0..WAYS as u32 {
            assert_eq!(c.push(run(i, 1)), None);
        }
        assert_eq!(c.push(run(99, 1)), Some(run(0, 1)));
        assert_eq!(c.push(run(7, 3)), None);
        let mut given = Vec::new();
        c.drain(|r| given.push(r));
        given.sort_by_key(|r| r.start);
        let mut expected: Vec<Run> = (1..WAYS as u32).map(|i| run(i, 1)).collect();
        expected.extend([run(7, 3), run(99, 1)]);
        assert_eq!(given, expected);
        assert!(c.is_empty());
        assert_eq!(c.take(1, |_| true), None);
    }
}
