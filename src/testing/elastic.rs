//! A shadow model of an elastic pool over a [`TestBackend`] that fails at random: an
//! operation language, and a harness that runs it on a real pool and checks, after every
//! step, what the contract promises whatever the backend does.
//!
//! What is checked (the region allocator inside each region has its own model, `Harness`):
//!
//! - every mapping and allocation lies in a range the backend has shared now, its slots
//!   share nothing with any other live one, and its bytes are its own (the original's on
//!   map, the device's on unmap), whatever growth and shrink did meanwhile;
//! - a map refused with `Full` was refused for a reason the pool is allowed: the backend
//!   refused a share during that very call, the ceiling or the sub-pool limit leaves no
//!   room, or the configuration forbids growth on maps;
//! - wrong unmaps, syncs and frees get the error that names their fault and change nothing;
//! - a shrink never gives back a region that holds a mapping, never the first, and (with
//!   an idle time of 0) gives back every other empty one;
//! - the figures add up: used slots are the live mappings' slots, held bytes are the
//!   backend's live ranges, each failed unshare is one leak;
//! - at the end, with everything unmapped and the pool dropped, every share the backend
//!   made was matched by exactly one unshare.
//!
//! # Examples
//!
//! ```
//! use swiotlb::testing::{ElasticHarnessConfig, ElasticOp, ElasticScenario};
//! // A backend that never fails: six 60 KiB maps grow the pool from its 64 KiB by three
//! // 128 KiB regions (two maps each), given back at the end.
//! let config = ElasticHarnessConfig { share_fail: 0, unshare_fail: 0, ..Default::default() };
//! let tally = ElasticScenario {
//!     config,
//!     ops: vec![ElasticOp::Map { len: 60 << 10, dir: 0, fill: 1 }; 6],
//! }
//! .run();
//! assert_eq!((tally.mapped, tally.growths, tally.shrinks), (6, 3, 3));
//! ```

use super::TestBackend;
use crate::testing::BackendCall;
use crate::{
    Attrs, Coherent, Config, Constraints, Direction, DmaAddr, ElasticConfig, ElasticPool,
    LookupError, MapError,
};
use alloc::vec;
use alloc::vec::Vec;
use arbitrary::{Arbitrary, Unstructured};
use core::cell::Cell;
use core::ptr::NonNull;

/// Slot size of the harness's pools.
const SLOT: usize = 2048;
/// Device address of the backend's first range.
const BASE: DmaAddr = 0x40_0000_0000;

std::thread_local! {
    static NOW: Cell<u64> = const { Cell::new(0) };
}

fn clock() -> u64 {
    NOW.with(Cell::get)
}

/// The pool and backend of a scenario. Every field is brought into range by
/// [`normalized`](Self::normalized).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElasticHarnessConfig {
    /// First region, in 4 KiB pages (1..=64).
    pub initial_pages: u8,
    /// Growth, in pages (1..=128), and its floor (1..=growth).
    pub grow_pages: u8,
    /// The floor of halving, in pages.
    pub floor_pages: u8,
    /// Ceiling, in pages (at least the first region; up to 1024).
    pub max_pages: u16,
    /// Most sub-pools (1..=8).
    pub max_sub_pools: u8,
    /// Idle time of a shrink, in ticks (0..=3).
    pub idle_ticks: u8,
    /// Whether maps grow the pool (otherwise only `Grow` does).
    pub grow_on_map: bool,
    /// Share failures, percent (0..=50), and unshare failures (0..=30), from `seed`.
    pub share_fail: u8,
    /// Unshare failures, percent.
    pub unshare_fail: u8,
    /// Seed of the backend's failures.
    pub seed: u64,
}

impl Default for ElasticHarnessConfig {
    /// 64 KiB first region, 128 KiB growth halving to 32 KiB, 1 MiB ceiling, 6 sub-pools,
    /// idle 0, maps grow, 20% share and 10% unshare failures.
    fn default() -> Self {
        Self {
            initial_pages: 16,
            grow_pages: 32,
            floor_pages: 8,
            max_pages: 256,
            max_sub_pools: 6,
            idle_ticks: 0,
            grow_on_map: true,
            share_fail: 20,
            unshare_fail: 10,
            seed: 7,
        }
    }
}

impl ElasticHarnessConfig {
    /// The same configuration with every field in range.
    pub fn normalized(self) -> Self {
        let initial = 1 + self.initial_pages % 64;
        let grow = 1 + self.grow_pages % 128;
        Self {
            initial_pages: initial,
            grow_pages: grow,
            floor_pages: 1 + self.floor_pages % grow,
            max_pages: (self.max_pages % 1025).max(initial as u16),
            max_sub_pools: 1 + self.max_sub_pools % 8,
            idle_ticks: self.idle_ticks % 4,
            grow_on_map: self.grow_on_map,
            share_fail: self.share_fail % 51,
            unshare_fail: self.unshare_fail % 31,
            seed: self.seed,
        }
    }

    fn elastic(&self) -> ElasticConfig {
        ElasticConfig::new()
            .with_pool(
                Config::new()
                    .with_slot_size(SLOT)
                    .with_segment_slots(32)
                    .with_areas(2),
            )
            .with_initial(self.initial_pages as usize * 4096)
            .with_grow(
                self.grow_pages as usize * 4096,
                self.floor_pages as usize * 4096,
            )
            .with_max_bytes(self.max_pages as usize * 4096)
            .with_max_sub_pools(self.max_sub_pools as usize)
            .with_idle_time_ns(self.idle_ticks as u64)
            .with_grow_on_map(self.grow_on_map)
            .with_clock(clock)
    }
}

impl<'a> Arbitrary<'a> for ElasticHarnessConfig {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self {
            initial_pages: u.arbitrary()?,
            grow_pages: u.arbitrary()?,
            floor_pages: u.arbitrary()?,
            max_pages: u.arbitrary()?,
            max_sub_pools: u.arbitrary()?,
            idle_ticks: u.arbitrary()?,
            grow_on_map: u.arbitrary()?,
            share_fail: u.arbitrary()?,
            unshare_fail: u.arbitrary()?,
            seed: u.arbitrary()?,
        }
        .normalized())
    }
}

/// One step of an elastic scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum ElasticOp {
    /// Map a fresh buffer of `len` bytes (modulo 64 KiB + 1; 0 is refused) in direction
    /// `dir % 3` (to device, from device zero-filled, both), filled from `fill`.
    Map {
        /// Length.
        len: u32,
        /// Direction.
        dir: u8,
        /// Seed of the contents.
        fill: u8,
    },
    /// Unmap live mapping `pick` (modulo the number live).
    Unmap {
        /// Which.
        pick: u16,
    },
    /// The device writes `byte` over live mapping `pick`, then the CPU syncs it back.
    DeviceWriteSync {
        /// Which.
        pick: u16,
        /// What.
        byte: u8,
    },
    /// Allocate `pages % 8 + 1` pages coherently.
    Alloc {
        /// Pages.
        pages: u8,
    },
    /// Free coherent allocation `pick`.
    Free {
        /// Which.
        pick: u16,
    },
    /// Unmap, sync and look up an address no live mapping has (a released one, or one
    /// past the last region).
    Wrong {
        /// Which kind of wrong address.
        kind: u8,
    },
    /// Grow by `pages % 64 + 1` pages.
    Grow {
        /// Pages.
        pages: u8,
    },
    /// Run a shrink pass.
    Shrink,
    /// Advance the clock one tick.
    Tick,
}

/// What a scenario did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElasticTally {
    /// Maps that succeeded.
    pub mapped: usize,
    /// Maps refused with `Full`.
    pub full: usize,
    /// Unmaps.
    pub unmapped: usize,
    /// Coherent allocations.
    pub allocated: usize,
    /// Regions added (by maps or `Grow`).
    pub growths: usize,
    /// Regions given back.
    pub shrinks: usize,
    /// Shares the backend refused.
    pub refused_shares: usize,
    /// Unshares that failed (leaks).
    pub leaks: usize,
    /// Wrong calls refused.
    pub refused_calls: usize,
    /// Most regions at once.
    pub most_regions: usize,
}

impl core::ops::AddAssign for ElasticTally {
    fn add_assign(&mut self, o: Self) {
        self.mapped += o.mapped;
        self.full += o.full;
        self.unmapped += o.unmapped;
        self.allocated += o.allocated;
        self.growths += o.growths;
        self.shrinks += o.shrinks;
        self.refused_shares += o.refused_shares;
        self.leaks += o.leaks;
        self.refused_calls += o.refused_calls;
        self.most_regions = self.most_regions.max(o.most_regions);
    }
}

/// A scenario: a configuration and the steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElasticScenario {
    /// The pool and backend.
    pub config: ElasticHarnessConfig,
    /// The steps.
    pub ops: Vec<ElasticOp>,
}

impl<'a> Arbitrary<'a> for ElasticScenario {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let config = ElasticHarnessConfig::arbitrary(u)?;
        let ops = core::iter::from_fn(|| {
            (!u.is_empty())
                .then(|| ElasticOp::arbitrary(u).ok())
                .flatten()
        })
        .take(256)
        .collect();
        Ok(Self { config, ops })
    }
}

impl ElasticScenario {
    /// Runs it, checking after every step (panics on a broken promise), then unmaps
    /// everything, shrinks, drops the pool and checks the backend's books.
    pub fn run(&self) -> ElasticTally {
        let cfg = self.config.normalized();
        NOW.with(|n| n.set(0));
        let backend = TestBackend::new(BASE);
        // Shares and unshares fail at random from here: the first region too.
        backend.random_failures(cfg.seed, cfg.share_fail, cfg.unshare_fail);
        let pool = match ElasticPool::new(backend.clone(), cfg.elastic()) {
            Ok(pool) => pool,
            Err(e) => {
                // Only the backend may refuse: the configuration is valid.
                assert!(
                    matches!(e, crate::ElasticError::Backend(_)),
                    "valid configuration refused: {e}"
                );
                backend.assert_balanced();
                return ElasticTally {
                    refused_shares: 1,
                    ..ElasticTally::default()
                };
            }
        };
        let mut h = ElasticHarness {
            pool,
            backend,
            cfg,
            live: Vec::new(),
            coherent: Vec::new(),
            released: None,
            tally: ElasticTally::default(),
            step: 0,
        };
        for op in &self.ops {
            h.apply(op);
            h.check();
            h.step += 1;
        }
        h.finish()
    }
}

/// A live mapping and what it must hold.
struct Live {
    dma: DmaAddr,
    dir: Direction,
    /// The original (owned here, mapped through a raw pointer).
    buf: Vec<u8>,
    /// What the bounce buffer must hold.
    bounce: Vec<u8>,
}

struct ElasticHarness {
    pool: ElasticPool,
    backend: TestBackend,
    cfg: ElasticHarnessConfig,
    live: Vec<Live>,
    coherent: Vec<Coherent>,
    /// The last mapping unmapped: (address, length).
    released: Option<(DmaAddr, usize)>,
    tally: ElasticTally,
    step: usize,
}

fn slots(dma: DmaAddr, len: usize) -> core::ops::Range<u64> {
    dma / SLOT as u64..(dma + len as u64).div_ceil(SLOT as u64)
}

impl ElasticHarness {
    fn read(&self, dma: DmaAddr, len: usize) -> Vec<u8> {
        let at = self
            .pool
            .translate(dma, len)
            .expect("a live mapping translates");
        let mut out = vec![0u8; len];
        // SAFETY: the range is a live mapping of ours, in a shared region.
        unsafe { crate::shared::copy_from_shared(out.as_mut_ptr(), at.as_ptr(), len) };
        out
    }

    fn shares_refused_since(&self, calls: usize) -> bool {
        self.backend.calls()[calls..]
            .iter()
            .any(|c| matches!(c, BackendCall::Share { result: Err(_), .. }))
    }

    fn apply(&mut self, op: &ElasticOp) {
        let calls = self.backend.calls().len();
        match *op {
            ElasticOp::Map { len, dir, fill } => {
                let len = len as usize % (64 * 1024 + 1);
                let dir = [
                    Direction::ToDevice,
                    Direction::FromDevice,
                    Direction::Bidirectional,
                ][dir as usize % 3];
                let mut buf: Vec<u8> = (0..len).map(|i| fill.wrapping_add(i as u8)).collect();
                let ptr = NonNull::from(&mut buf[..]);
                // SAFETY: `buf` is kept in `live` (its heap block does not move) until the
                // unmap, and touched only between pool calls.
                let r = unsafe {
                    self.pool
                        .try_map_attrs(ptr, dir, &Constraints::NONE, Attrs::ZERO_FILL)
                };
                match r {
                    Ok(dma) => {
                        assert!(len > 0);
                        assert!(
                            self.backend.is_shared(dma, len),
                            "step {}: mapping at {dma:#x} outside every shared range",
                            self.step
                        );
                        let bounce = if dir == Direction::FromDevice {
                            vec![0; len]
                        } else {
                            buf.clone()
                        };
                        self.live.push(Live {
                            dma,
                            dir,
                            buf,
                            bounce,
                        });
                        self.tally.mapped += 1;
                    }
                    Err(MapError::ZeroLength) => assert_eq!(len, 0),
                    // No region the pool may ever hold would take it.
                    Err(MapError::Impossible { .. })
                        if len.div_ceil(SLOT) * SLOT > self.cfg.max_pages as usize * 4096 =>
                    {
                        self.tally.full += 1;
                    }
                    Err(e @ MapError::Full { .. }) => {
                        let stats = self.pool.stats();
                        let need = len.div_ceil(4096) * 4096;
                        let allowed = !self.cfg.grow_on_map
                            || self.shares_refused_since(calls)
                            || stats.held_bytes + need > self.cfg.max_pages as usize * 4096
                            || stats.sub_pools >= self.cfg.max_sub_pools as usize;
                        assert!(
                            allowed,
                            "step {}: {e} with growth possible: {stats:?}",
                            self.step
                        );
                        self.tally.full += 1;
                    }
                    Err(e) => panic!("step {}: map of {len} bytes: {e}", self.step),
                }
            }
            ElasticOp::Unmap { pick } => {
                if self.live.is_empty() {
                    return;
                }
                let mut m = self.live.swap_remove(pick as usize % self.live.len());
                let ptr = NonNull::from(&mut m.buf[..]);
                // SAFETY: the live mapping of `m.buf`.
                let r = unsafe { self.pool.unmap_into(m.dma, ptr, m.dir, Attrs::NONE) };
                assert_eq!(r, Ok(()), "step {}: unmap", self.step);
                if m.dir.from_device() {
                    assert_eq!(m.buf, m.bounce, "step {}: copy back", self.step);
                }
                self.released = Some((m.dma, m.buf.len()));
                self.tally.unmapped += 1;
            }
            ElasticOp::DeviceWriteSync { pick, byte } => {
                if self.live.is_empty() {
                    return;
                }
                let k = pick as usize % self.live.len();
                let (dma, len, dir) = (self.live[k].dma, self.live[k].buf.len(), self.live[k].dir);
                let at = self.pool.translate(dma, len).expect("live");
                // SAFETY: the device writes the mapping it was given.
                unsafe { crate::shared::fill_shared(at.as_ptr(), byte, len) };
                self.live[k].bounce = vec![byte; len];
                let ptr = NonNull::from(&mut self.live[k].buf[..]);
                // SAFETY: the live mapping of that buffer.
                let r = unsafe { self.pool.sync_for_cpu_into(dma, ptr, dir) };
                assert_eq!(r, Ok(()), "step {}: sync", self.step);
                if dir.from_device() {
                    assert!(
                        self.live[k].buf.iter().all(|&b| b == byte),
                        "step {}: sync for the CPU copied the device's bytes",
                        self.step
                    );
                }
            }
            ElasticOp::Alloc { pages } => {
                let size = (pages as usize % 8 + 1) * 4096;
                match self.pool.try_alloc(size, &Constraints::NONE) {
                    Ok(c) => {
                        assert!(self.backend.is_shared(c.dma(), size));
                        assert_eq!(self.read(c.dma(), size), vec![0; size], "zeroed");
                        self.coherent.push(c);
                        self.tally.allocated += 1;
                    }
                    Err(MapError::Full { .. }) => self.tally.full += 1,
                    // Coherent allocations are aligned to their size's power of two.
                    Err(MapError::Impossible { .. })
                        if size.next_power_of_two() > self.cfg.max_pages as usize * 4096 =>
                    {
                        self.tally.full += 1;
                    }
                    Err(e) => panic!("step {}: alloc of {size}: {e}", self.step),
                }
            }
            ElasticOp::Free { pick } => {
                if self.coherent.is_empty() {
                    return;
                }
                let c = self
                    .coherent
                    .swap_remove(pick as usize % self.coherent.len());
                assert_eq!(self.pool.free(c), Ok(()), "step {}: free", self.step);
            }
            ElasticOp::Wrong { kind } => {
                let dma = match (kind % 2, self.released) {
                    (0, Some((dma, _))) => dma,
                    _ => BASE.wrapping_sub(SLOT as u64),
                };
                let held = |d: DmaAddr, len: usize| slots(d, len).contains(&(dma / SLOT as u64));
                if self.live.iter().any(|m| held(m.dma, m.buf.len()))
                    || self.coherent.iter().any(|c| held(c.dma(), c.size()))
                {
                    return;
                }
                // SAFETY: no live mapping holds `dma`: refused before any copy.
                let r = unsafe { self.pool.unmap(dma, 1, Direction::ToDevice, Attrs::NONE) };
                assert_eq!(r, Err(LookupError::NotMapped { dma }), "step {}", self.step);
                // SAFETY: as above.
                let r = unsafe { self.pool.sync_for_cpu(dma, 1, Direction::ToDevice) };
                assert!(r.is_err(), "step {}: {r:?}", self.step);
                assert!(self.pool.lookup(dma).is_none(), "step {}", self.step);
                self.tally.refused_calls += 1;
            }
            ElasticOp::Grow { pages } => {
                let before = self.pool.stats().sub_pools;
                match self.pool.grow((pages as usize % 64 + 1) * 4096) {
                    Ok(_) => assert_eq!(self.pool.stats().sub_pools, before + 1),
                    Err(_) => assert_eq!(self.pool.stats().sub_pools, before),
                }
            }
            ElasticOp::Shrink => {
                let before = self.pool.sub_pools();
                let released = self.pool.shrink();
                let after = self.pool.sub_pools();
                assert_eq!(after.len() + released, before.len(), "step {}", self.step);
                assert!(
                    after.iter().any(|s| s.kind == crate::SubPoolKind::First),
                    "the first region was given back"
                );
                // Regions that hold something are all still there.
                for r in &before {
                    let holds = self.live.iter().any(|m| r.dma_range.contains(&m.dma))
                        || self.coherent.iter().any(|c| r.dma_range.contains(&c.dma()));
                    let kept = after.iter().any(|a| a.dma_range == r.dma_range);
                    assert!(
                        !holds || kept,
                        "step {}: a region in use was given back",
                        self.step
                    );
                    if self.cfg.idle_ticks == 0 && r.kind != crate::SubPoolKind::First {
                        assert!(holds || !kept, "step {}: an empty region stayed", self.step);
                    }
                }
            }
            ElasticOp::Tick => NOW.with(|n| n.set(n.get() + 1)),
        }
    }

    /// The invariants after a step.
    fn check(&mut self) {
        // Every live mapping: still in a shared range, apart from the others, its bytes.
        for (i, m) in self.live.iter().enumerate() {
            let len = m.buf.len();
            assert!(
                self.backend.is_shared(m.dma, len),
                "step {}: unshared under a mapping",
                self.step
            );
            for o in &self.live[i + 1..] {
                let (a, b) = (slots(m.dma, len), slots(o.dma, o.buf.len()));
                assert!(
                    a.end <= b.start || b.end <= a.start,
                    "step {}: mappings overlap",
                    self.step
                );
            }
            for c in &self.coherent {
                let (a, b) = (slots(m.dma, len), slots(c.dma(), c.size()));
                assert!(
                    a.end <= b.start || b.end <= a.start,
                    "step {}: overlap",
                    self.step
                );
            }
            assert_eq!(
                self.read(m.dma, len),
                m.bounce,
                "step {}: bounce bytes",
                self.step
            );
        }
        let stats = self.pool.stats();
        let slots_used: usize = self
            .live
            .iter()
            .map(|m| m.buf.len().div_ceil(SLOT))
            .chain(self.coherent.iter().map(|c| c.size().div_ceil(SLOT)))
            .sum();
        assert_eq!(
            stats.used_slots, slots_used,
            "step {}: used slots",
            self.step
        );
        let live_bytes: usize = self.backend.live().iter().map(|r| r.1).sum();
        assert_eq!(
            stats.held_bytes, live_bytes,
            "step {}: held bytes",
            self.step
        );
        assert_eq!(
            stats.leaks,
            self.backend.leaked().len(),
            "step {}: leaks",
            self.step
        );
        assert!(stats.sub_pools <= self.cfg.max_sub_pools as usize);
        assert!(stats.held_bytes <= self.cfg.max_pages as usize * 4096);
        self.tally.most_regions = self.tally.most_regions.max(stats.sub_pools);
    }

    fn finish(mut self) -> ElasticTally {
        for mut m in core::mem::take(&mut self.live) {
            let ptr = NonNull::from(&mut m.buf[..]);
            // SAFETY: the live mapping of `m.buf`.
            unsafe { self.pool.unmap_into(m.dma, ptr, m.dir, Attrs::NONE) }.expect("unmap");
        }
        for c in core::mem::take(&mut self.coherent) {
            self.pool.free(c).expect("free");
        }
        // Two passes the idle time apart: the first sees the regions empty, the second
        // gives them back.
        self.pool.shrink();
        NOW.with(|n| n.set(n.get() + 1000));
        self.pool.shrink();
        let stats = self.pool.stats();
        assert_eq!(stats.used_slots, 0);
        assert_eq!(stats.sub_pools, 1, "every region but the first given back");
        self.tally.growths = stats.growths;
        self.tally.shrinks = stats.shrinks;
        self.tally.refused_shares = stats.backend_refusals;
        self.tally.leaks = stats.leaks;
        let (pool, backend) = (self.pool, self.backend);
        drop(pool);
        backend.assert_balanced();
        self.tally
    }
}
