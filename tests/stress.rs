//! Stress: several threads map, sync, unmap, allocate and free at random on a small pool
//! kept near full, for a bounded number of operations each.
//!
//! Every mapping's bytes are unique to it (original, and what the "device" writes), and each
//! thread keeps the bytes it expects in every bounce buffer and original it owns. They are
//! checked before every unmap or free and at random in between, so two live runs that
//! overlap, a copy to or from the wrong place, a lost copy or a coherent allocation that was
//! not zeroed all show as wrong bytes. At the end every slot must be free, the figures must
//! add up (used zero, every `Full` counted once) and the whole pool must be mappable again.
//!
//! Not a timing test: it runs a fixed number of operations (fewer in debug builds). Run it
//! as `cargo test --release --test stress` (a few seconds here).

mod common;

use common::{unique_bytes, Rng};
use core::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use swiotlb::shared::{copy_from_shared, copy_to_shared};
use swiotlb::{
    Attrs, Coherent, Config, Constraints, Direction, DmaAddr, LookupError, MapError, Pool,
};

const THREADS: usize = 6;
/// Operations per thread.
const OPS: usize = if cfg!(debug_assertions) {
    5_000
} else {
    250_000
};
/// Live mappings and allocations a thread holds at most: 6 threads x 12 x ~6 slots is well
/// over the pool's 256 slots, so it stays near full and `Full` is common.
const MAX_LIVE: usize = 12;
const SLOT: usize = 256;
const SEGMENT: usize = 32;
const SLOTS: usize = 256;

fn read_pool(pool: &Pool, dma: DmaAddr, len: usize) -> Vec<u8> {
    let at = pool.translate(dma, len).expect("range in the pool");
    let mut out = vec![0u8; len];
    // SAFETY: `translate` checked the range is in the pool; pool memory is only accessed by
    // raw copies, and this thread owns the mapping that holds the range.
    unsafe { copy_from_shared(out.as_mut_ptr(), at.as_ptr(), len) };
    out
}

fn write_pool(pool: &Pool, dma: DmaAddr, data: &[u8]) {
    let at = pool.translate(dma, data.len()).expect("range in the pool");
    // SAFETY: as in `read_pool`.
    unsafe { copy_to_shared(at.as_ptr(), data.as_ptr(), data.len()) };
}

/// A live streaming mapping and what its owner expects of it.
struct Live {
    dma: DmaAddr,
    dir: Direction,
    /// Backing store of the original; the original is `store[at..at + len]`.
    store: Box<[u8]>,
    at: usize,
    len: usize,
    /// What the bounce buffer must hold.
    bounce: Vec<u8>,
}

impl Live {
    fn orig_ptr(&mut self) -> NonNull<[u8]> {
        NonNull::from(&mut self.store[self.at..self.at + self.len])
    }

    fn orig(&self) -> &[u8] {
        &self.store[self.at..self.at + self.len]
    }
}

/// A live coherent allocation and the bytes it must hold.
struct Held {
    handle: Coherent,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Tally {
    maps: usize,
    full: usize,
    allocs: usize,
    syncs: usize,
    refused: usize,
}

fn random_constraints(rng: &mut Rng, pool: &Pool) -> Constraints {
    let mut c = Constraints::new();
    c.min_align_mask = [0, 0, 0x3f, 0x7ff, 0xfff][rng.below(5)];
    c.alloc_align_mask = [0, 0, 0x1ff, 0xfff][rng.below(4)];
    if rng.chance(20) {
        c.seg_boundary_mask = 0x1fff;
    }
    if rng.chance(20) {
        // A device that reaches only the lower half of the pool.
        let range = pool.dma_range();
        c.dma_limit = range.start + (range.end - range.start) / 2 - 1;
    }
    c
}

fn check_live(pool: &Pool, m: &Live, what: &str) {
    assert!(
        read_pool(pool, m.dma, m.len) == m.bounce,
        "{what}: bounce buffer of the mapping at {:#x} ({} bytes, {:?}) changed under it",
        m.dma,
        m.len,
        m.dir
    );
}

fn worker(pool: &Pool, thread: usize, tally_full: &AtomicUsize) -> Tally {
    let mut rng = Rng(0x5eed_0000 + thread as u64 * 7919);
    let mut live: Vec<Live> = Vec::new();
    let mut held: Vec<Held> = Vec::new();
    let mut tally = Tally::default();
    let mut next_id = (thread as u64) << 40;
    let mut id = || {
        next_id += 1;
        next_id
    };

    for _ in 0..OPS {
        let room = live.len() + held.len() < MAX_LIVE;
        match rng.below(100) {
            // Map.
            0..=34 if room => {
                let cap = if rng.chance(70) { 600 } else { 4096 };
                let len = 1 + rng.below(cap);
                let at = rng.below(4096);
                let dir = [
                    Direction::ToDevice,
                    Direction::FromDevice,
                    Direction::Bidirectional,
                ][rng.below(3)];
                let c = random_constraints(&mut rng, pool);
                let mut store = vec![0u8; at + len].into_boxed_slice();
                store[at..].copy_from_slice(&unique_bytes(id(), len));
                let mut m = Live {
                    dma: 0,
                    dir,
                    store,
                    at,
                    len,
                    bounce: Vec::new(),
                };
                // SAFETY: `m.store` is a heap allocation that stays alive, unmoved and
                // otherwise untouched (this thread only uses it between its own pool calls)
                // until the mapping is unmapped below.
                match unsafe { pool.map(m.orig_ptr(), dir, &c) } {
                    Ok(dma) => {
                        m.dma = dma;
                        assert_eq!(
                            dma & c.min_align_mask,
                            (m.orig().as_ptr() as u64) & c.min_align_mask
                        );
                        assert!(dma + len as u64 - 1 <= c.dma_limit);
                        m.bounce = m.orig().to_vec();
                        check_live(pool, &m, "copy on map");
                        tally.maps += 1;
                        live.push(m);
                    }
                    Err(MapError::Full { .. }) => {
                        tally.full += 1;
                        tally_full.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("map of {len} bytes under {c:?}: {e}"),
                }
            }
            // Coherent allocation.
            35..=44 if room => {
                let cap = if rng.chance(70) { 1000 } else { 8192 };
                let size = 1 + rng.below(cap);
                match pool.alloc(size, &Constraints::NONE) {
                    Ok(c) => {
                        let order = size.div_ceil(4096).next_power_of_two() * 4096;
                        assert_eq!(c.dma() % order as u64, 0, "alignment of {size} bytes");
                        let whole = size.div_ceil(SLOT) * SLOT;
                        assert!(read_pool(pool, c.dma(), whole).iter().all(|&b| b == 0));
                        let fill = unique_bytes(id(), size);
                        write_pool(pool, c.dma(), &fill);
                        tally.allocs += 1;
                        held.push(Held {
                            handle: c,
                            bytes: fill,
                        });
                    }
                    Err(MapError::Full { .. }) => {
                        tally.full += 1;
                        tally_full.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("alloc of {size} bytes: {e}"),
                }
            }
            // The device writes part of a mapping; the CPU syncs it back.
            45..=59 if !live.is_empty() => {
                let i = rng.below(live.len());
                let m = &mut live[i];
                check_live(pool, m, "before a sync");
                let off = rng.below(m.len);
                let len = 1 + rng.below(m.len - off);
                let dma = m.dma + off as u64;
                if m.dir.from_device() {
                    let data = unique_bytes(id(), len);
                    write_pool(pool, dma, &data);
                    m.bounce[off..off + len].copy_from_slice(&data);
                }
                let before = m.orig().to_vec();
                // SAFETY: the mapping is live and this thread's; its store is alive.
                unsafe { pool.sync_for_cpu(dma, len, m.dir) }.expect("sync for cpu");
                let mut want = before;
                if m.dir.from_device() {
                    want[off..off + len].copy_from_slice(&m.bounce[off..off + len]);
                }
                assert!(m.orig() == &want[..], "sync_for_cpu copied the wrong bytes");
                tally.syncs += 1;
            }
            // The CPU writes part of a mapping's original and syncs it to the device.
            60..=69 if !live.is_empty() => {
                let i = rng.below(live.len());
                let m = &mut live[i];
                let off = rng.below(m.len);
                let len = 1 + rng.below(m.len - off);
                let data = unique_bytes(id(), len);
                let at = m.at + off;
                m.store[at..at + len].copy_from_slice(&data);
                // SAFETY: as above.
                unsafe { pool.sync_for_device(m.dma + off as u64, len, m.dir) }
                    .expect("sync for device");
                if m.dir.to_device() {
                    m.bounce[off..off + len].copy_from_slice(&data);
                }
                check_live(pool, m, "after sync_for_device");
                tally.syncs += 1;
            }
            // A wrong call on a live mapping: refused, nothing changes.
            70..=74 if !live.is_empty() => {
                let m = &live[rng.below(live.len())];
                // SAFETY: the length is wrong, so the pool must refuse without copying.
                let r = unsafe { pool.unmap(m.dma, m.len + 1, m.dir, Attrs::NONE) };
                assert!(
                    matches!(r, Err(LookupError::LengthMismatch { .. })),
                    "wrong-length unmap: {r:?}"
                );
                // SAFETY: as above: runs past the end of the mapping.
                let r = unsafe { pool.sync_for_cpu(m.dma, m.len + 1, m.dir) };
                assert!(matches!(r, Err(LookupError::OutOfRange { .. })), "{r:?}");
                check_live(pool, m, "after refused calls");
                tally.refused += 1;
            }
            // Unmap.
            75..=89 if !live.is_empty() => {
                let mut m = live.swap_remove(rng.below(live.len()));
                unmap(pool, &mut m, &mut rng, &mut id);
            }
            // Free.
            90..=99 if !held.is_empty() => {
                let h = held.swap_remove(rng.below(held.len()));
                free(pool, h);
            }
            _ => {}
        }
    }
    for mut m in live.drain(..) {
        unmap(pool, &mut m, &mut rng, &mut id);
    }
    for h in held.drain(..) {
        free(pool, h);
    }
    tally
}

fn unmap(pool: &Pool, m: &mut Live, rng: &mut Rng, id: &mut impl FnMut() -> u64) {
    check_live(pool, m, "before unmap");
    // Sometimes the device answers the whole buffer first.
    if m.dir.from_device() && rng.chance(50) {
        let data = unique_bytes(id(), m.len);
        write_pool(pool, m.dma, &data);
        m.bounce = data;
    }
    let skip = rng.chance(10);
    let before = m.orig().to_vec();
    let attrs = if skip {
        Attrs::SKIP_CPU_SYNC
    } else {
        Attrs::NONE
    };
    // SAFETY: the mapping is live and this thread's; its store is alive.
    unsafe { pool.unmap(m.dma, m.len, m.dir, attrs) }.expect("unmap");
    if m.dir.from_device() && !skip {
        assert!(m.orig() == &m.bounce[..], "unmap did not copy back");
    } else {
        assert!(m.orig() == &before[..], "unmap wrote the original");
    }
}

fn free(pool: &Pool, h: Held) {
    let (dma, size) = (h.handle.dma(), h.handle.size());
    assert!(
        read_pool(pool, dma, size) == h.bytes,
        "coherent allocation at {dma:#x} ({size} bytes) changed under it",
    );
    pool.free(h.handle).expect("free");
}

#[test]
fn threads_on_a_nearly_full_pool_keep_every_byte_and_slot() {
    let config = Config::new()
        .with_slot_size(SLOT)
        .with_segment_slots(SEGMENT)
        .with_areas(4);
    let pool = Pool::allocate(SLOTS * SLOT, config).expect("pool");
    assert_eq!(pool.stats().total_slots, SLOTS);
    assert_eq!(pool.areas(), 4);
    let full = AtomicUsize::new(0);

    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (pool, full) = (&pool, &full);
                s.spawn(move || worker(pool, t, full))
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    let sum = |f: fn(&Tally) -> usize| tallies.iter().map(f).sum::<usize>();
    let (maps, fulls, allocs) = (sum(|t| t.maps), sum(|t| t.full), sum(|t| t.allocs));
    eprintln!(
        "stress: {THREADS} threads x {OPS} ops: {maps} maps, {allocs} allocs, {} syncs, \
         {} refused calls, {fulls} full, high water {} of {SLOTS} slots",
        sum(|t| t.syncs),
        sum(|t| t.refused),
        pool.stats().high_water
    );
    // The pool was kept busy: real work happened and it ran out of room at times.
    assert!(maps > THREADS * OPS / 10 && allocs > THREADS * OPS / 50);
    assert!(
        fulls > 0,
        "the pool never filled up: the test is not near full"
    );

    let stats = pool.stats();
    assert_eq!(stats.used_slots, 0, "{stats:?}");
    assert_eq!(stats.failed_maps, fulls, "every Full counted once");
    assert_eq!(fulls, full.load(Ordering::Relaxed));
    assert!(stats.high_water <= SLOTS);
    for i in 0..stats.areas {
        let area = pool.area_stats(i).unwrap();
        assert_eq!(area.used_slots, 0, "area {i}: {area:?}");
        assert!(area.high_water <= area.total_slots);
    }

    // Every slot can be had again: exactly one 1-slot mapping per slot, then `Full`. (Whole
    // segments would not do: the region is page-aligned, so its first and last segments may
    // be partial.)
    let buf = vec![0x5a_u8; SLOT];
    let map_one = || {
        // SAFETY: `buf` outlives the mappings and is only read (ToDevice).
        unsafe {
            pool.map(
                NonNull::from(&buf[..]),
                Direction::ToDevice,
                &Constraints::NONE,
            )
        }
    };
    let all: Vec<DmaAddr> = (0..SLOTS)
        .map(|i| map_one().unwrap_or_else(|e| panic!("slot {i} of {SLOTS}: {e}")))
        .collect();
    let more = map_one();
    assert!(matches!(more, Err(MapError::Full { .. })), "{more:?}");
    for dma in all {
        // SAFETY: mapped above.
        unsafe { pool.unmap(dma, SLOT, Direction::ToDevice, Attrs::NONE) }.unwrap();
    }
    assert_eq!(pool.stats().used_slots, 0);
}
