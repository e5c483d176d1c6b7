//! Helpers shared by the integration tests: original buffers at chosen addresses, device
//! reads and writes of pool memory, and filler mappings that move the free slots around.
#![allow(dead_code)]

use core::ptr::NonNull;
use swiotlb::{Attrs, Config, Constraints, Direction, DmaAddr, Pool, Stats};

/// A pool of `slots` 2 KiB slots with one area (so placement is deterministic).
pub fn pool(slots: usize) -> Pool {
    Pool::allocate(slots * 2048, Config::new().with_areas(1)).expect("pool")
}

/// An original buffer of `len` bytes whose address has low 16 bits `low`, filled with a
/// pattern derived from `seed`.
pub struct Orig {
    storage: Vec<u8>,
    at: usize,
    len: usize,
}

impl Orig {
    pub fn new(len: usize, low: usize, seed: u8) -> Self {
        let mut storage = vec![0u8; len + 0x10000];
        let at = (low & 0xffff).wrapping_sub(storage.as_ptr() as usize) & 0xffff;
        for (i, b) in storage[at..at + len].iter_mut().enumerate() {
            *b = pattern(seed, i);
        }
        Self { storage, at, len }
    }

    pub fn ptr(&mut self) -> NonNull<[u8]> {
        NonNull::from(&mut self.storage[self.at..self.at + self.len])
    }

    pub fn addr(&self) -> u64 {
        self.as_ptr().addr() as u64
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.storage[self.at..].as_ptr()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.storage[self.at..self.at + self.len]
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.at..self.at + self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Maps the buffer (panics on error).
    pub fn map(&mut self, pool: &Pool, dir: Direction, c: &Constraints) -> DmaAddr {
        self.try_map(pool, dir, c).expect("map")
    }

    pub fn try_map(
        &mut self,
        pool: &Pool,
        dir: Direction,
        c: &Constraints,
    ) -> Result<DmaAddr, swiotlb::MapError> {
        // SAFETY: the buffer lives in `self`, which every test keeps alive and otherwise
        // untouched while mapped (tests touch it only between pool calls, as a driver does).
        unsafe { pool.map(self.ptr(), dir, c) }
    }

    /// Unmaps it (panics on error), copying back through a fresh pointer to the buffer
    /// (tests write it between pool calls, which invalidates the one given at map).
    pub fn unmap(&mut self, pool: &Pool, dma: DmaAddr, dir: Direction) {
        let buf = self.ptr();
        // SAFETY: as in `try_map`; `buf` is the mapping's original.
        unsafe { pool.unmap_into(dma, buf, dir, Attrs::NONE) }.expect("unmap")
    }
}

/// Byte `i` of the pattern for `seed`: never constant over a run, differs between seeds.
pub fn pattern(seed: u8, i: usize) -> u8 {
    seed.wrapping_mul(31)
        .wrapping_add((i as u8).wrapping_mul(7))
        .wrapping_add((i >> 8) as u8)
        ^ 0x5a
}

/// What the device reads at `dma`.
pub fn device_read(pool: &Pool, dma: DmaAddr, len: usize) -> Vec<u8> {
    let p = pool.translate(dma, len).expect("range in pool");
    let mut out = vec![0u8; len];
    // SAFETY: `translate` checked the range; a shared-memory copy out of the pool.
    unsafe { swiotlb::shared::copy_from_shared(out.as_mut_ptr(), p.as_ptr(), len) };
    out
}

/// The device writes `bytes` at `dma`.
pub fn device_write(pool: &Pool, dma: DmaAddr, bytes: &[u8]) {
    let p = pool.translate(dma, bytes.len()).expect("range in pool");
    // SAFETY: `translate` checked the range; a shared-memory copy into the pool.
    unsafe { swiotlb::shared::copy_to_shared(p.as_ptr(), bytes.as_ptr(), bytes.len()) };
}

/// Runs `check` `rounds` times; before each round a filler mapping of 1 to 3 slots (and
/// every third round, a coherent page) is added and kept, so each round meets the pool
/// with its free slots in a different place. Everything is released at the end and the
/// pool must be empty.
pub fn with_fillers(pool: &Pool, rounds: usize, mut check: impl FnMut(&Pool, usize)) {
    let mut fillers = Vec::new();
    let mut coherent = Vec::new();
    for round in 0..rounds {
        let mut f = Orig::new(1 + (round * 1500) % 6000, round * 64, round as u8);
        if let Ok(dma) = f.try_map(pool, Direction::ToDevice, &Constraints::NONE) {
            fillers.push((f, dma));
        }
        if round % 3 == 2 {
            if let Ok(c) = pool.alloc(100, &Constraints::NONE) {
                coherent.push(c);
            }
        }
        check(pool, round);
    }
    for (mut f, dma) in fillers {
        f.unmap(pool, dma, Direction::ToDevice);
    }
    for c in coherent {
        pool.free(c).expect("free");
    }
    assert_eq!(
        pool.stats().used_slots,
        0,
        "fillers and checks left slots in use"
    );
}

/// What must not change when a call is refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub stats: Stats,
    pub areas: Vec<swiotlb::AreaStats>,
    pub bytes: Vec<u8>,
}

/// Statistics of the pool and every byte of it.
pub fn snapshot(pool: &Pool) -> Snapshot {
    let r = pool.dma_range();
    Snapshot {
        stats: pool.stats(),
        areas: (0..pool.areas())
            .map(|a| pool.area_stats(a).unwrap())
            .collect(),
        bytes: device_read(pool, r.start, (r.end - r.start) as usize),
    }
}

/// xorshift64*: a small, seeded generator, so each thread's choices in the stress tests are
/// reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Bytes unique to `id` (a 64-bit stream seeded by it).
pub fn unique_bytes(id: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    (0..len).map(|_| rng.next() as u8).collect()
}
