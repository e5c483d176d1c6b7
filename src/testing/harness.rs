//! The harness: building a pool, applying operations, checking every invariant.

use super::*;

impl Harness {
    /// Builds a pool as `cfg` (normalized) says, over a fresh region.
    pub fn new(cfg: HarnessConfig) -> Result<Self, ConfigError> {
        let cfg = cfg.normalized();
        let slot = cfg.slot_size();
        let skip = (cfg.dma_base.wrapping_neg() & (slot as u64 - 1)) as usize;
        let size = skip + cfg.slots as usize * slot;
        let layout =
            Layout::from_size_align(size + cfg.cpu_offset as usize, 4096).expect("small layout");
        // SAFETY: non-zero size.
        let mem = NonNull::new(unsafe { alloc_zeroed(layout) }).expect("allocation");
        // SAFETY: `cpu_offset` is within the allocation.
        let cpu = unsafe { NonNull::new_unchecked(mem.as_ptr().add(cfg.cpu_offset as usize)) };
        // What a region holds before it becomes a pool (an earlier user's data): the pool
        // must never show it to a device.
        // SAFETY: the region is ours and not yet shared.
        unsafe { core::ptr::write_bytes(cpu.as_ptr(), 0xa5, size) };
        // SAFETY: the region is ours, lives as long as the harness (dropped after the pool is
        // done with it), and is touched only through the pool and `translate`.
        let pool = unsafe { Pool::new(cpu, cfg.dma_base, size, cfg.config()) };
        let pool = match pool {
            Ok(pool) => pool,
            Err(e) => {
                // SAFETY: allocated above with this layout and not handed out.
                unsafe { dealloc(mem.as_ptr(), layout) };
                return Err(e);
            }
        };
        assert_eq!(pool.stats().total_slots, cfg.slots as usize, "slot count");
        assert_eq!(
            pool.dma_range().start,
            cfg.dma_base + skip as u64,
            "first slot address"
        );
        let harness = Self {
            used: vec![false; cfg.slots as usize],
            untracked: vec![false; cfg.slots as usize * slot],
            pool,
            mem,
            layout,
            cfg,
            live: Vec::new(),
            released: None,
            failed_maps: 0,
            high_water: 0,
            peak: 0,
            step: 0,
            tally: Tally::default(),
        };
        // The region's 0xa5 bytes are gone: checked on every run handed out
        // (`check_new_run`), which would find them around the data.
        Ok(harness)
    }

    /// The pool under test.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// What has happened so far.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// Number of live mappings and allocations.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    pub(super) fn slot_size(&self) -> usize {
        self.cfg.slot_size()
    }

    pub(super) fn pool_bytes(&self) -> usize {
        self.cfg.slots as usize * self.slot_size()
    }

    pub(super) fn start(&self) -> DmaAddr {
        self.pool.dma_range().start
    }

    pub(super) fn read_pool(&self, dma: DmaAddr, len: usize) -> Vec<u8> {
        let p = self.pool.translate(dma, len).expect("range in pool");
        let mut out = vec![0u8; len];
        // SAFETY: `translate` checked the range is in the pool; a shared-memory copy, no
        // reference to pool memory.
        unsafe { copy_from_shared(out.as_mut_ptr(), p.as_ptr(), len) };
        out
    }

    pub(super) fn write_pool(&self, dma: DmaAddr, len: usize, byte: u8) {
        let p = self.pool.translate(dma, len).expect("range in pool");
        // SAFETY: as in `read_pool`; this is the device writing its memory.
        unsafe { fill_shared(p.as_ptr(), byte, len) };
    }

    /// Checks that the bytes of the run of `slots` slots from pool slot `first_slot` outside
    /// `data` (pool byte offsets) are zero or bytes a hostile device wrote itself, and
    /// forgets the hostile bytes `data` now covers (`whole`: the run is all data).
    pub(super) fn check_new_run(
        &mut self,
        first_slot: usize,
        slots: usize,
        data: core::ops::Range<usize>,
        what: &str,
    ) {
        let slot = self.slot_size();
        let run = first_slot * slot..(first_slot + slots) * slot;
        let bytes = self.read_pool(self.start() + run.start as u64, run.len());
        // Eight bytes at a time: this runs on every map of every fuzz input.
        for (w, word) in bytes.chunks(8).enumerate() {
            if word.iter().fold(0, |acc, b| acc | b) == 0 {
                continue;
            }
            for (i, b) in word.iter().enumerate() {
                let at = run.start + w * 8 + i;
                if data.contains(&at) || *b == 0 || self.untracked[at] {
                    continue;
                }
                panic!(
                    "step {}: {what}: pool byte {at:#x} (run {run:#x?}, data {data:#x?}) holds \
                     {b:#x}, an earlier mapping's",
                    self.step
                );
            }
        }
        self.untracked[data].fill(false);
    }

    pub(super) fn pick(&self, pick: u16) -> Option<usize> {
        (!self.live.is_empty()).then(|| pick as usize % self.live.len())
    }

    pub(super) fn address(&self, target: Target) -> (DmaAddr, Option<usize>) {
        match target {
            Target::Start(p) => match self.pick(p) {
                Some(i) => (self.live[i].dma, Some(i)),
                None => (self.start(), None),
            },
            Target::Plus(p, d) => match self.pick(p) {
                Some(i) => (self.live[i].dma + d as u64, Some(i)),
                None => (self.start() + d as u64, None),
            },
            Target::Minus(p, d) => match self.pick(p) {
                Some(i) => (self.live[i].dma.wrapping_sub(d as u64), Some(i)),
                None => (self.start().wrapping_sub(d as u64), None),
            },
            Target::Released => (self.released.map_or(self.start(), |r| r.dma), None),
            Target::Pool(off) => {
                let span = self.pool_bytes() as u64 + 2 * self.slot_size() as u64;
                (
                    (self.start() + off as u64 % span).wrapping_sub(self.slot_size() as u64),
                    None,
                )
            }
            Target::Raw(a) => (a, None),
        }
    }

    /// The length a `LenChoice` gives for a range starting at `dma`.
    pub(super) fn length(&self, choice: LenChoice, dma: DmaAddr, picked: Option<usize>) -> usize {
        let natural = match self.model_find(dma) {
            Some(i) => self.live[i].len - (dma - self.live[i].dma) as usize,
            None => match (picked, self.released) {
                (Some(i), _) => self.live[i].len,
                (None, Some(r)) => r.len,
                (None, None) => 1,
            },
        };
        match choice {
            LenChoice::Exact => natural,
            LenChoice::OneMore => natural + 1,
            LenChoice::Less(d) => natural.saturating_sub(1 + d as usize),
            LenChoice::Raw(n) => n as usize % (4 * self.pool_bytes() + 1),
        }
    }

    pub(super) fn direction(&self, choice: DirChoice, dma: DmaAddr) -> Direction {
        match choice {
            DirChoice::Given(d) => d,
            DirChoice::Same => match self.model_find(dma).map(|i| self.live[i].kind) {
                Some(Kind::Stream(d)) => d,
                _ => Direction::ToDevice,
            },
        }
    }

    // --- operations ---------------------------------------------------------------------

    /// Runs one step on the pool and the model, then checks every invariant.
    pub fn apply(&mut self, op: &Op) {
        self.step += 1;
        match *op {
            Op::Map {
                len,
                dir,
                orig_low,
                constraints,
                fill,
                zero_fill,
            } => self.map(len, dir, orig_low, constraints, fill, zero_fill),
            Op::MapPoolMemory { offset, len } => {
                let off = offset as usize % self.pool_bytes();
                let len = (len as usize).clamp(1, self.pool_bytes() - off);
                let p = self
                    .pool
                    .translate(self.start() + off as u64, len)
                    .expect("in pool");
                let buf = NonNull::slice_from_raw_parts(p, len);
                // SAFETY: refused before any access (the buffer is inside the pool).
                let r = unsafe {
                    self.pool
                        .map(buf, Direction::Bidirectional, &Constraints::NONE)
                };
                assert!(
                    matches!(r, Err(MapError::BufferInPool { .. })),
                    "step {}: mapping pool memory gave {r:?}",
                    self.step
                );
                self.tally.refused += 1;
            }
            Op::Unmap {
                target,
                len,
                dir,
                skip_cpu_sync,
            } => self.unmap(target, len, dir, skip_cpu_sync),
            Op::SyncForDevice { target, len, dir } => self.sync(target, len, dir, true),
            Op::SyncForCpu { target, len, dir } => self.sync(target, len, dir, false),
            Op::CpuWrite {
                pick,
                offset,
                len,
                byte,
            } => {
                if let Some(i) = self.pick(pick) {
                    let l = &mut self.live[i];
                    if let Kind::Stream(_) = l.kind {
                        let off = offset as usize % l.len;
                        let n = (len as usize).min(l.len - off);
                        let at = l.at;
                        l.storage[at + off..at + off + n].fill(byte);
                        l.orig[off..off + n].fill(byte);
                        l.touched = true;
                    }
                }
            }
            Op::DeviceWrite {
                pick,
                offset,
                len,
                byte,
            } => {
                if let Some(i) = self.pick(pick) {
                    let l = &self.live[i];
                    let off = offset as usize % l.len;
                    let n = (len as usize).min(l.len - off);
                    self.device_write(l.dma + off as u64, n, byte);
                }
            }
            Op::HostileWrite { offset, len, byte } => {
                let off = offset as usize % self.pool_bytes();
                let n = (len as usize).min(self.pool_bytes() - off);
                self.device_write(self.start() + off as u64, n, byte);
                if byte != 0 {
                    // Inside a live run's data the pool tracks what a device writes.
                    self.untracked[off..off + n].fill(true);
                    let start = self.start();
                    for l in &self.live {
                        let lo = ((l.dma - start) as usize).clamp(off, off + n);
                        let hi = ((l.dma - start) as usize + l.len).clamp(off, off + n);
                        self.untracked[lo..hi].fill(false);
                    }
                }
            }
            Op::Alloc { size, constraints } => self.alloc(size, constraints),
            Op::Free { target, len } => self.free(target, len),
        }
        self.check();
    }

    // --- invariants ---------------------------------------------------------------------

    /// Checks every invariant: statistics, and every byte of every live original and bounce
    /// buffer. (Disjointness of runs and every constraint are checked when a run is handed
    /// out, against the model's occupancy.)
    pub fn check(&mut self) {
        let step = self.step;
        let used = self.used_slots();
        self.peak = self.peak.max(used);
        self.tally.most_live = self.tally.most_live.max(self.live.len());
        let stats = self.pool.stats();
        assert_eq!(stats.used_slots, used, "step {step}: used slots");
        assert_eq!(
            stats.total_slots, self.cfg.slots as usize,
            "step {step}: total slots"
        );
        assert_eq!(
            stats.failed_maps, self.failed_maps,
            "step {step}: failed maps"
        );
        assert!(
            stats.high_water >= self.high_water,
            "step {step}: high-water mark fell"
        );
        assert!(
            stats.high_water >= used,
            "step {step}: high-water below use"
        );
        assert!(
            stats.high_water <= self.peak,
            "step {step}: high-water above the true peak"
        );
        if stats.areas == 1 {
            assert_eq!(
                stats.high_water, self.peak,
                "step {step}: high-water with one area"
            );
        }
        self.high_water = stats.high_water;
        let mut area_used = 0;
        for a in 0..stats.areas {
            let s = self.pool.area_stats(a).expect("area");
            assert!(s.used_slots <= s.high_water && s.high_water <= s.total_slots);
            assert!(
                stats.high_water >= s.high_water,
                "step {step}: pool mark below area {a}'s"
            );
            area_used += s.used_slots;
        }
        assert_eq!(area_used, used, "step {step}: areas' used slots");
        assert!(self.pool.area_stats(stats.areas).is_none());
        for l in &self.live {
            assert_eq!(
                self.read_pool(l.dma, l.len),
                l.bounce,
                "step {step}: bounce bytes of {:#x}",
                l.dma
            );
            if let Kind::Stream(_) = l.kind {
                assert_eq!(
                    &l.storage[l.at..l.at + l.len],
                    &l.orig[..],
                    "step {step}: original bytes of {:#x}",
                    l.dma
                );
            }
        }
    }

    /// Releases everything still live (checking each), then checks the pool is empty.
    /// Returns what happened over the harness's life.
    pub fn finish(mut self) -> Tally {
        while let Some(l) = self.live.last() {
            let target = Target::Start((self.live.len() - 1) as u16);
            match l.kind {
                Kind::Stream(_) => self.apply(&Op::Unmap {
                    target,
                    len: LenChoice::Exact,
                    dir: DirChoice::Same,
                    skip_cpu_sync: false,
                }),
                Kind::Coherent => self.apply(&Op::Free {
                    target,
                    len: LenChoice::Exact,
                }),
            }
        }
        let stats = self.pool.stats();
        assert_eq!(
            stats.used_slots, 0,
            "slots left in use after releasing everything"
        );
        for a in 0..stats.areas {
            assert_eq!(self.pool.area_stats(a).expect("area").used_slots, 0);
        }
        self.tally
    }
}
