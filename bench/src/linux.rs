//! Linux's SWIOTLB allocator, before and after areas, written from its published design
//! (`kernel/dma/swiotlb.c`: `swiotlb_find_slots` / `area_find_slots` and
//! `swiotlb_release_slots`), for comparison.
//!
//! # The design
//!
//! Each slot has a counter, `list`: the number of free slots from it to the end of its
//! segment's free run (0 when the slot is in use). A search is *next fit*: it starts at the
//! area's cursor, steps by the alignment stride and takes the first slot whose counter is at
//! least the number of slots needed, wrapping round the area once at most. Taking a run
//! zeroes its counters and renumbers the free slots in front of it, down to the start of
//! the segment or the previous used slot (so that their counters end at the new run);
//! freeing a run renumbers it and the free slots in front of it the other way, continuing
//! the count of the free run after it. Both walks can touch a whole segment (127 stores).
//! The cursor moves past each new run.
//!
//! Each slot also records the original buffer's address of the bytes it holds and the
//! bytes of the mapping from it on (`orig_addr`, `alloc_size`), which unmap reads to copy
//! back and to know how many slots to free.
//!
//! Before Linux 5.19 there was one lock and one cursor for the whole pool (`linux_style`
//! here: one area); the global lock was what collapsed under parallel I/O. Since then the
//! pool is split into per-CPU areas, each with its lock, cursor and used count, tried in turn
//! from the current CPU's (`linux_areas`: one area per CPU, our thread number standing in for
//! the CPU number). Since 6.3, with `CONFIG_DEBUG_FS`, a pool-wide used count and high-water
//! mark are also updated with atomics on every map and unmap; `linux_areas` does so too.
//!
//! Locks are `parking_lot` mutexes, as in our pool with `std` (the kernel uses spin locks
//! with interrupts off, which user-space threads that can be preempted must not), so that
//! the comparison is of the allocators rather than of lock implementations.

use crate::region::Region;
use crate::{thread_hint, Bounce, Direction, DmaAddr, Error, PAGE_SIZE, SEGMENT_SLOTS, SLOT_SIZE};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

/// `orig` of a slot that holds no mapping (Linux's `INVALID_PHYS_ADDR`).
const INVALID: usize = usize::MAX;

/// One area's state, under its lock.
#[derive(Debug)]
struct Area {
    /// Free-run counters of the area's slots (area-relative index).
    list: Box<[u32]>,
    /// Where the next search starts (area-relative).
    index: usize,
    /// Slots in use.
    used: usize,
    /// Most slots in use at once (kept only with one area; with several the pool-wide
    /// atomics below hold it, as in Linux).
    high_water: usize,
}

/// A Linux-style slot pool with `areas` areas (one: the pre-5.19 design).
#[derive(Debug)]
pub struct LinuxSlots {
    region: Region,
    area_slots: usize,
    areas: Box<[CachePadded<Mutex<Area>>]>,
    /// Per slot: the original's address of the slot's bytes (`io_tlb_slot.orig_addr`).
    orig: Box<[AtomicUsize]>,
    /// Per slot: bytes of the mapping from this slot on (`io_tlb_slot.alloc_size`).
    alloc_size: Box<[AtomicUsize]>,
    /// Pool-wide used slots and high-water mark, updated on every map and unmap when there
    /// is more than one area (Linux 6.3+ `total_used` / `used_hiwater`).
    total_used: CachePadded<AtomicUsize>,
    used_hiwater: CachePadded<AtomicUsize>,
}

impl LinuxSlots {
    /// A pool over `size` bytes (rounded down to whole segments) with `areas` areas
    /// (rounded down to a power of two, and to at most one per segment).
    ///
    /// # Errors
    ///
    /// If the size holds no whole segment, `areas` is 0, or memory cannot be had.
    pub fn new(size: usize, areas: usize) -> Result<Self, String> {
        let segments = size / (SLOT_SIZE * SEGMENT_SLOTS);
        if segments == 0 {
            return Err(format!(
                "a Linux-style pool needs at least one {}-byte segment, not {size} bytes",
                SLOT_SIZE * SEGMENT_SLOTS
            ));
        }
        if areas == 0 {
            return Err("at least one area".into());
        }
        let nareas = 1 << areas.min(segments).ilog2();
        let area_slots = segments / nareas * SEGMENT_SLOTS;
        let nslots = area_slots * nareas;
        let region = Region::new(nslots * SLOT_SIZE)?;
        // Every slot's counter is the distance to the end of its segment.
        let list: Box<[u32]> = (0..area_slots)
            .map(|i| (SEGMENT_SLOTS - i % SEGMENT_SLOTS) as u32)
            .collect();
        let areas = (0..nareas)
            .map(|_| {
                CachePadded::new(Mutex::new(Area {
                    list: list.clone(),
                    index: 0,
                    used: 0,
                    high_water: 0,
                }))
            })
            .collect();
        Ok(Self {
            region,
            area_slots,
            areas,
            orig: (0..nslots).map(|_| AtomicUsize::new(INVALID)).collect(),
            alloc_size: (0..nslots).map(|_| AtomicUsize::new(0)).collect(),
            total_used: CachePadded::new(AtomicUsize::new(0)),
            used_hiwater: CachePadded::new(AtomicUsize::new(0)),
        })
    }

    /// Number of areas.
    pub fn areas(&self) -> usize {
        self.areas.len()
    }

    /// Searches area `a` for `nslots` slots whose first is aligned to `align` slots, and
    /// takes them: Linux's `area_find_slots`. Returns the pool slot number.
    #[inline]
    fn find_in_area(&self, a: usize, len: usize, nslots: usize, align: usize) -> Option<usize> {
        let n = self.area_slots;
        let base = a * n;
        let mut area = self.areas[a].lock();
        if nslots > n - area.used {
            return None;
        }
        let wrap = |i: usize| if i >= n { 0 } else { i };
        let mut index = area.index;
        let mut checked = 0;
        let found = loop {
            if checked >= n {
                return None;
            }
            // Areas start on a segment, and the region on a page, so alignment in slots
            // is alignment in device addresses.
            if !(base + index).is_multiple_of(align) {
                index = wrap(index + 1);
                checked += 1;
                continue;
            }
            if area.list[index] as usize >= nslots {
                break index;
            }
            index = wrap(index + align);
            checked += align;
        };
        for i in found..found + nslots {
            area.list[i] = 0;
            let size = len - (i - found) * SLOT_SIZE;
            self.alloc_size[base + i].store(size, Ordering::Relaxed);
        }
        // The free slots in front, down to the segment's start, now end at this run.
        let mut count = 0;
        let mut i = found;
        while i % SEGMENT_SLOTS != 0 && area.list[i - 1] != 0 {
            i -= 1;
            count += 1;
            area.list[i] = count;
        }
        area.index = wrap(found + nslots);
        area.used += nslots;
        if self.areas.len() == 1 {
            area.high_water = area.high_water.max(area.used);
        }
        drop(area);
        if self.areas.len() > 1 {
            let used = self.total_used.fetch_add(nslots, Ordering::Relaxed) + nslots;
            let mut high = self.used_hiwater.load(Ordering::Relaxed);
            while used > high {
                match self.used_hiwater.compare_exchange_weak(
                    high,
                    used,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) => high = now,
                }
            }
        }
        Some(base + found)
    }

    /// Gives back `nslots` slots from pool slot `index`: Linux's `swiotlb_release_slots`.
    #[inline]
    fn release(&self, index: usize, nslots: usize) {
        let n = self.area_slots;
        let (a, local) = (index / n, index % n);
        let mut area = self.areas[a].lock();
        let end = local + nslots;
        // Continue the count of the free run after this one, if it is in the same segment.
        let mut count = if !end.is_multiple_of(SEGMENT_SLOTS) {
            area.list[end]
        } else {
            0
        };
        for i in (local..end).rev() {
            count += 1;
            area.list[i] = count;
            self.orig[index - local + i].store(INVALID, Ordering::Relaxed);
            self.alloc_size[index - local + i].store(0, Ordering::Relaxed);
        }
        let mut i = local;
        while i % SEGMENT_SLOTS != 0 && area.list[i - 1] != 0 {
            i -= 1;
            count += 1;
            area.list[i] = count;
        }
        area.used -= nslots;
        drop(area);
        if self.areas.len() > 1 {
            self.total_used.fetch_sub(nslots, Ordering::Relaxed);
        }
    }
}

impl Bounce for LinuxSlots {
    fn name(&self) -> &'static str {
        if self.areas.len() == 1 {
            "linux_style"
        } else {
            "linux_areas"
        }
    }

    fn capacity(&self) -> usize {
        self.region.len()
    }

    fn used_bytes(&self) -> usize {
        self.areas.iter().map(|a| a.lock().used).sum::<usize>() * SLOT_SIZE
    }

    fn high_water_bytes(&self) -> usize {
        if self.areas.len() == 1 {
            self.areas[0].lock().high_water * SLOT_SIZE
        } else {
            self.used_hiwater.load(Ordering::Relaxed) * SLOT_SIZE
        }
    }

    #[inline]
    unsafe fn map(&self, buf: NonNull<[u8]>, _dir: Direction) -> Result<DmaAddr, Error> {
        let len = buf.len();
        if len == 0 || len > SLOT_SIZE * SEGMENT_SLOTS {
            return Err(Error::Refused);
        }
        let nslots = len.div_ceil(SLOT_SIZE);
        let align = if len >= PAGE_SIZE {
            PAGE_SIZE / SLOT_SIZE
        } else {
            1
        };
        let n = self.areas.len();
        let first = if n == 1 { 0 } else { thread_hint() & (n - 1) };
        let index = (0..n)
            .find_map(|k| self.find_in_area((first + k) & (n - 1), len, nslots, align))
            .ok_or(Error::Full)?;
        let orig = buf.cast::<u8>().as_ptr();
        for i in 0..nslots {
            self.orig[index + i].store(orig as usize + i * SLOT_SIZE, Ordering::Relaxed);
        }
        let off = index * SLOT_SIZE;
        // SAFETY: `buf` is readable for `len` bytes and outside the pool (caller's
        // promise); the slots from `index` are ours (just taken) and hold `len` bytes.
        unsafe { crate::copy(orig, self.region.base().add(off), len) };
        Ok(self.region.dma(off))
    }

    #[inline]
    unsafe fn unmap(
        &self,
        dma: DmaAddr,
        _buf: NonNull<[u8]>,
        dir: Direction,
        skip_sync: bool,
    ) -> Result<(), Error> {
        let off = self.region.offset(dma).ok_or(Error::NotMapped)?;
        if off % SLOT_SIZE != 0 {
            return Err(Error::NotMapped);
        }
        let index = off / SLOT_SIZE;
        let orig = self.orig[index].load(Ordering::Relaxed);
        let size = self.alloc_size[index].load(Ordering::Relaxed);
        if orig == INVALID || size == 0 {
            return Err(Error::NotMapped);
        }
        if dir.from_device() && !skip_sync {
            // SAFETY: the mapping is live (its slot records an original), the original is
            // writable for `size` bytes (caller's promise at map), and the bytes lie in the
            // mapping's slots.
            unsafe { crate::copy(self.region.base().add(off), orig as *mut u8, size) };
        }
        self.release(index, size.div_ceil(SLOT_SIZE));
        Ok(())
    }

    fn translate(&self, dma: DmaAddr, len: usize) -> Option<NonNull<u8>> {
        self.region.translate(dma, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counters must always be what a fresh count of free runs gives.
    fn check_counters(pool: &LinuxSlots) {
        for area in pool.areas.iter() {
            let area = area.lock();
            for i in 0..pool.area_slots {
                let expected = if area.list[i] == 0 {
                    0
                } else {
                    let seg_end = (i / SEGMENT_SLOTS + 1) * SEGMENT_SLOTS;
                    (i..seg_end).take_while(|&j| area.list[j] != 0).count() as u32
                };
                assert_eq!(area.list[i], expected, "slot {i}");
            }
        }
    }

    #[test]
    fn counters_stay_exact_through_maps_and_unmaps() {
        let pool = LinuxSlots::new(4 * SLOT_SIZE * SEGMENT_SLOTS, 1).unwrap();
        let mut src = vec![1u8; 20000];
        let mut live = Vec::new();
        for (k, len) in [100, 5000, 2048, 4096, 20000, 1, 3000]
            .into_iter()
            .enumerate()
        {
            let buf = NonNull::from(&mut src[..len]);
            // SAFETY: ToDevice mappings only read `src`, which outlives the pool's use.
            let dma = unsafe { pool.map(buf, Direction::ToDevice) }.unwrap();
            if len >= PAGE_SIZE {
                assert_eq!(dma % PAGE_SIZE as u64, 0);
            }
            live.push((dma, buf));
            check_counters(&pool);
            if k % 2 == 1 {
                let (dma, buf) = live.remove(0);
                // SAFETY: a live mapping of `buf`.
                unsafe { pool.unmap(dma, buf, Direction::ToDevice, false) }.unwrap();
                check_counters(&pool);
            }
        }
        for (dma, buf) in live {
            // SAFETY: a live mapping of `buf`.
            unsafe { pool.unmap(dma, buf, Direction::ToDevice, false) }.unwrap();
            check_counters(&pool);
        }
        assert_eq!(pool.used_bytes(), 0);
        // SAFETY: never mapped, so refused without touching anything.
        let again = unsafe {
            pool.unmap(
                pool.region.dma(0),
                NonNull::from(&mut src[..1]),
                Direction::ToDevice,
                false,
            )
        };
        assert_eq!(again, Err(Error::NotMapped));
    }

    #[test]
    fn areas_split_the_pool_and_fall_back() {
        let pool = LinuxSlots::new(2 * SLOT_SIZE * SEGMENT_SLOTS, 4).unwrap();
        assert_eq!(pool.areas(), 2);
        let mut src = vec![0u8; SLOT_SIZE * SEGMENT_SLOTS];
        let buf = NonNull::from(&mut src[..]);
        // Two whole-segment mappings fill both areas whatever this thread's hint is.
        // SAFETY: ToDevice mappings only read `src`.
        let a = unsafe { pool.map(buf, Direction::ToDevice) }.unwrap();
        // SAFETY: as above.
        let b = unsafe { pool.map(buf, Direction::ToDevice) }.unwrap();
        assert_ne!(a, b);
        // SAFETY: as above.
        let c = unsafe { pool.map(buf, Direction::ToDevice) };
        assert_eq!(c, Err(Error::Full));
        assert_eq!(pool.high_water_bytes(), pool.capacity());
    }
}
