//! A shadow model of a pool, an operation language, and a harness that runs operations on a
//! real pool and the model side by side, checking every invariant after every step.
//!
//! Shared by the property tests, the fuzz targets and anything else that wants to drive a
//! pool with arbitrary (and deliberately wrong) input. Enabled by the `test-utils` feature.
//!
//! The model is written from the contract (`SEMANTICS.md`), not from the pool's code: it
//! predicts every error exactly, checks every constraint on every address handed out, finds
//! by brute force whether a placement existed when the pool says it is full (so a search
//! that misses room is caught), and tracks every byte of every original buffer and every
//! bounce buffer, including bytes a hostile device writes anywhere in the pool.
//!
//! # Examples
//!
//! ```
//! use swiotlb::testing::{Harness, HarnessConfig, Op};
//! let mut h = Harness::new(HarnessConfig::default()).unwrap();
//! h.apply(&Op::Map { len: 3000, dir: swiotlb::Direction::FromDevice, orig_low: 0x600,
//!                    constraints: swiotlb::testing::ConstraintsChoice::Nvme, fill: 1 });
//! h.finish();
//! ```

use crate::{
    Attrs, Config, ConfigError, Constraints, Direction, DmaAddr, LookupError, MapError, Pool,
};
use alloc::vec;
use alloc::vec::Vec;
use arbitrary::{Arbitrary, Unstructured};
use core::ptr::NonNull;
use std::alloc::{alloc_zeroed, dealloc, Layout};

/// The pool a harness builds. Every field is clamped into a valid range by [`HarnessConfig::normalized`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HarnessConfig {
    /// log2 of the slot size (6..=12).
    pub slot_shift: u8,
    /// log2 of the segment length in slots (0..=7).
    pub segment_shift: u8,
    /// log2 of the number of areas asked for (0..=3).
    pub areas_shift: u8,
    /// Slots in the pool (1..=1024).
    pub slots: u16,
    /// Device address of the region (not slot-aligned in general; below 2^40).
    pub dma_base: u64,
    /// Offset of the CPU region from a page boundary, so CPU and device alignments differ.
    pub cpu_offset: u16,
    /// Zero slots on release.
    pub scrub: bool,
}

impl Default for HarnessConfig {
    /// 256 slots of 2 KiB, 128-slot segments, 2 areas, an odd device base.
    fn default() -> Self {
        Self {
            slot_shift: 11,
            segment_shift: 7,
            areas_shift: 1,
            slots: 256,
            dma_base: 0x1_0000_0800,
            cpu_offset: 0,
            scrub: false,
        }
    }
}

impl HarnessConfig {
    /// The same configuration with every field clamped into its valid range.
    pub fn normalized(self) -> Self {
        Self {
            slot_shift: 6 + self.slot_shift % 7,
            segment_shift: self.segment_shift % 8,
            areas_shift: self.areas_shift % 4,
            slots: 1 + self.slots % 1024,
            dma_base: self.dma_base % (1 << 40),
            cpu_offset: self.cpu_offset % 4096,
            scrub: self.scrub,
        }
    }

    fn slot_size(&self) -> usize {
        1 << self.slot_shift
    }

    fn config(&self) -> Config {
        Config::new()
            .slot_size(self.slot_size())
            .segment_slots(1 << self.segment_shift)
            .areas(1 << self.areas_shift)
            .scrub_on_release(self.scrub)
    }
}

impl<'a> Arbitrary<'a> for HarnessConfig {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self {
            slot_shift: u.arbitrary()?,
            segment_shift: u.arbitrary()?,
            areas_shift: u.arbitrary()?,
            slots: u.arbitrary()?,
            dma_base: u.arbitrary()?,
            cpu_offset: u.arbitrary()?,
            scrub: u.arbitrary()?,
        }
        .normalized())
    }
}

/// Device constraints an operation uses: the realistic ones, and arbitrary (possibly
/// invalid) masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum ConstraintsChoice {
    /// No constraint.
    None,
    /// NVMe: `min_align_mask` 0xfff.
    Nvme,
    /// NVMe behind a 64 KiB-page IOMMU: `min_align_mask` 0xfff, `alloc_align_mask` 0xffff.
    Nvme64k,
    /// `alloc_align_mask` 0xfff with `min_align_mask` 0xfff.
    PageNvme,
    /// A 64 KiB segment boundary.
    Boundary64k,
    /// A device address limit somewhere around the pool (the value picks where).
    Limit(u32),
    /// Masks `2^a - 1`, `2^b - 1`, boundary `2^c - 1` (c >= 64: none), limit offset.
    Bits {
        /// log2(min_align_mask + 1), taken modulo 20.
        min: u8,
        /// log2(alloc_align_mask + 1), taken modulo 20.
        alloc: u8,
        /// log2(seg_boundary_mask + 1), modulo 72 (64 and over: no boundary).
        boundary: u8,
    },
    /// Arbitrary raw values, usually invalid masks.
    Raw(u64, u64, u64),
}

/// Whether every mask of `c` is of the form `2^k - 1`, as the pool requires.
fn masks_valid(c: &Constraints) -> bool {
    [c.min_align_mask, c.alloc_align_mask, c.seg_boundary_mask]
        .iter()
        .all(|m| m & m.wrapping_add(1) == 0)
}

fn low_mask(bits: u8) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

impl ConstraintsChoice {
    fn resolve(self, pool: &Pool) -> Constraints {
        let range = pool.dma_range();
        match self {
            Self::None => Constraints::NONE,
            Self::Nvme => Constraints::new().min_align_mask(0xfff),
            Self::Nvme64k => Constraints::new()
                .min_align_mask(0xfff)
                .alloc_align_mask(0xffff),
            Self::PageNvme => Constraints::new()
                .min_align_mask(0xfff)
                .alloc_align_mask(0xfff),
            Self::Boundary64k => Constraints::new().seg_boundary_mask(0xffff),
            Self::Limit(x) => {
                // From a bit below the pool to a bit above it.
                let span = range.end - range.start + 8192;
                Constraints::new().dma_limit((range.start + x as u64 % span).saturating_sub(4096))
            }
            Self::Bits {
                min,
                alloc,
                boundary,
            } => Constraints::new()
                .min_align_mask(low_mask(min % 20))
                .alloc_align_mask(low_mask(alloc % 20))
                .seg_boundary_mask(low_mask(boundary % 72)),
            Self::Raw(a, b, c) => Constraints {
                min_align_mask: a,
                alloc_align_mask: b,
                seg_boundary_mask: c,
                dma_limit: u64::MAX,
            },
        }
    }
}

/// Which address an operation on an existing mapping gives. Generated mostly as the start
/// of a live mapping (`Start`), so that most operations succeed and the rest probe errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The start of live mapping number `pick` (modulo the number live).
    Start(u16),
    /// `delta` bytes past the start of live mapping `pick`.
    Plus(u16, u16),
    /// `delta` bytes before the start of live mapping `pick`.
    Minus(u16, u16),
    /// The start of the mapping most recently unmapped or freed (a double unmap).
    Released,
    /// Pool byte `offset` (modulo the pool's size, plus a little on either side).
    Pool(u32),
    /// Any address at all.
    Raw(u64),
}

/// Which length an operation on an existing mapping gives (mostly `Exact`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LenChoice {
    /// The mapping's length (for syncs: what is left of it after the offset).
    Exact,
    /// One more than that.
    OneMore,
    /// Some bytes less (at least one less, at least zero).
    Less(u16),
    /// Any length.
    Raw(u32),
}

/// Which direction an operation on an existing mapping gives (mostly `Same`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirChoice {
    /// The mapping's own.
    Same,
    /// This one.
    Given(Direction),
}

impl<'a> Arbitrary<'a> for Target {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0u8..=15)? {
            0..=8 => Self::Start(u.arbitrary()?),
            9..=10 => Self::Plus(u.arbitrary()?, u.arbitrary()?),
            11 => Self::Minus(u.arbitrary()?, u.arbitrary()?),
            12 => Self::Released,
            13..=14 => Self::Pool(u.arbitrary()?),
            _ => Self::Raw(u.arbitrary()?),
        })
    }
}

impl<'a> Arbitrary<'a> for LenChoice {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0u8..=9)? {
            0..=5 => Self::Exact,
            6 => Self::OneMore,
            7..=8 => Self::Less(u.arbitrary()?),
            _ => Self::Raw(u.arbitrary()?),
        })
    }
}

impl<'a> Arbitrary<'a> for DirChoice {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0u8..=4)? {
            0..=3 => Self::Same,
            _ => Self::Given(u.arbitrary()?),
        })
    }
}

/// The length of a map or allocation from a raw number: mostly small (a size class picked
/// by the top bits: up to 64 B, 512 B, 2 KiB, 4 KiB, 16 KiB, 64 KiB, or anything up to two
/// slots past the largest mapping, which may be too large).
fn length(raw: u32, most: usize) -> usize {
    const CLASSES: [usize; 8] = [65, 513, 2049, 2049, 4097, 16385, 65537, usize::MAX];
    let bound = CLASSES[(raw >> 29) as usize].min(most + 1);
    (raw & 0x1fff_ffff) as usize % bound
}

/// One step of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum Op {
    /// Map a fresh buffer of `len` bytes (modulo a bit over a segment) whose address has the
    /// low 13 bits `orig_low`, filled with bytes derived from `fill`.
    Map {
        /// Length (a size class and a value in it: see `length`; some are too large).
        len: u32,
        /// Direction.
        dir: Direction,
        /// Low 13 bits of the original's address.
        orig_low: u16,
        /// Constraints.
        constraints: ConstraintsChoice,
        /// Seed of the original's contents.
        fill: u8,
    },
    /// Map a range of the pool itself (always refused).
    MapPoolMemory {
        /// Pool byte offset.
        offset: u32,
        /// Length.
        len: u16,
    },
    /// Unmap.
    Unmap {
        /// Address.
        target: Target,
        /// Length.
        len: LenChoice,
        /// Direction.
        dir: DirChoice,
        /// Skip the copy back.
        skip_cpu_sync: bool,
    },
    /// `sync_for_device` of `len` bytes at `target`.
    SyncForDevice {
        /// Address.
        target: Target,
        /// Length.
        len: LenChoice,
        /// Direction.
        dir: DirChoice,
    },
    /// `sync_for_cpu` of `len` bytes at `target`.
    SyncForCpu {
        /// Address.
        target: Target,
        /// Length.
        len: LenChoice,
        /// Direction.
        dir: DirChoice,
    },
    /// The CPU writes its original buffer (as a driver does between syncs).
    CpuWrite {
        /// Live mapping.
        pick: u16,
        /// Offset (modulo the length).
        offset: u16,
        /// Bytes to write (clamped to the end).
        len: u16,
        /// Value.
        byte: u8,
    },
    /// The device writes inside one of its mappings (or coherent allocations).
    DeviceWrite {
        /// Live mapping.
        pick: u16,
        /// Offset (modulo the length).
        offset: u16,
        /// Bytes to write (clamped to the end).
        len: u16,
        /// Value.
        byte: u8,
    },
    /// A hostile device writes anywhere in the pool: other mappings, padding, free slots.
    HostileWrite {
        /// Pool byte offset (modulo the pool's size).
        offset: u32,
        /// Bytes to write (clamped to the end of the pool).
        len: u16,
        /// Value.
        byte: u8,
    },
    /// Coherent allocation of `size` bytes (as `Map`'s length).
    Alloc {
        /// Size.
        size: u32,
        /// Constraints.
        constraints: ConstraintsChoice,
    },
    /// Free a coherent allocation.
    Free {
        /// Address.
        target: Target,
        /// Size.
        len: LenChoice,
    },
}

/// A whole run: a pool and what to do with it.
#[derive(Clone, Debug, PartialEq, Eq, Arbitrary)]
pub struct Scenario {
    /// The pool.
    pub config: HarnessConfig,
    /// The steps.
    pub ops: Vec<Op>,
}

impl Scenario {
    /// Builds the pool, runs every step with checks after each, then unmaps everything and
    /// checks that the pool is empty. Panics on any divergence from the model. Returns what
    /// happened.
    pub fn run(&self) -> Tally {
        let mut h = Harness::new(self.config).expect("normalized configurations are valid");
        for op in &self.ops {
            h.apply(op);
        }
        h.finish()
    }
}

/// How many times each kind of outcome happened: lets a test show that its inputs reach
/// every path (a generator that never maps successfully proves nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Successful maps.
    pub mapped: usize,
    /// Maps refused for lack of room (`Full`).
    pub full: usize,
    /// Maps and allocations refused as `Impossible` or `Unreachable`.
    pub no_placement: usize,
    /// Maps and allocations refused before any search (zero length, too large, bad mask,
    /// buffer in the pool).
    pub refused: usize,
    /// Successful unmaps.
    pub unmapped: usize,
    /// Successful syncs.
    pub synced: usize,
    /// Successful coherent allocations.
    pub allocated: usize,
    /// Successful frees.
    pub freed: usize,
    /// Unmaps, syncs and frees refused with a `LookupError`.
    pub lookups_refused: usize,
    /// Device writes (own mappings or hostile).
    pub device_writes: usize,
    /// Most runs live at once.
    pub most_live: usize,
}

impl core::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Self) {
        self.mapped += o.mapped;
        self.full += o.full;
        self.no_placement += o.no_placement;
        self.refused += o.refused;
        self.unmapped += o.unmapped;
        self.synced += o.synced;
        self.allocated += o.allocated;
        self.freed += o.freed;
        self.lookups_refused += o.lookups_refused;
        self.device_writes += o.device_writes;
        self.most_live = self.most_live.max(o.most_live);
    }
}

/// What kind of live run the model tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Stream(Direction),
    Coherent,
}

/// One live mapping or allocation in the model.
#[derive(Debug)]
struct Live {
    kind: Kind,
    /// Device address of the data.
    dma: DmaAddr,
    len: usize,
    /// Pool slots the run occupies (padding included).
    first_slot: usize,
    slots: usize,
    /// The original buffer (streaming only): storage and the offset of the data in it.
    storage: Vec<u8>,
    at: usize,
    /// What the original must hold.
    orig: Vec<u8>,
    /// What the bounce buffer must hold.
    bounce: Vec<u8>,
}

/// A released mapping, for double-unmap targets.
#[derive(Clone, Copy, Debug)]
struct Released {
    dma: DmaAddr,
    len: usize,
}

/// Runs operations on a pool and on a model of it, checking after every step.
pub struct Harness {
    pool: Pool,
    mem: NonNull<u8>,
    layout: Layout,
    cfg: HarnessConfig,
    live: Vec<Live>,
    /// Model occupancy, one flag per pool slot.
    used: Vec<bool>,
    released: Option<Released>,
    failed_maps: usize,
    high_water: usize,
    peak: usize,
    /// Steps run so far, for failure messages.
    step: usize,
    tally: Tally,
}

impl core::fmt::Debug for Harness {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Harness")
            .field("cfg", &self.cfg)
            .field("pool", &self.pool)
            .field("live", &self.live.len())
            .field("step", &self.step)
            .finish()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout. The pool that uses it is dropped
        // after this (fields drop after `drop`), but a pool never touches its region when
        // dropped.
        unsafe { dealloc(self.mem.as_ptr(), self.layout) };
    }
}

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
        Ok(Self {
            used: vec![false; cfg.slots as usize],
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
        })
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

    fn slot_size(&self) -> usize {
        self.cfg.slot_size()
    }

    fn pool_bytes(&self) -> usize {
        self.cfg.slots as usize * self.slot_size()
    }

    fn start(&self) -> DmaAddr {
        self.pool.dma_range().start
    }

    fn read_pool(&self, dma: DmaAddr, len: usize) -> Vec<u8> {
        let p = self.pool.translate(dma, len).expect("range in pool");
        let mut out = vec![0u8; len];
        // SAFETY: `translate` checked the range is in the pool; raw copy, no reference to
        // pool memory.
        unsafe { core::ptr::copy_nonoverlapping(p.as_ptr(), out.as_mut_ptr(), len) };
        out
    }

    fn write_pool(&self, dma: DmaAddr, len: usize, byte: u8) {
        let p = self.pool.translate(dma, len).expect("range in pool");
        // SAFETY: as in `read_pool`; this is the device writing its memory.
        unsafe { core::ptr::write_bytes(p.as_ptr(), byte, len) };
    }

    fn pick(&self, pick: u16) -> Option<usize> {
        (!self.live.is_empty()).then(|| pick as usize % self.live.len())
    }

    fn address(&self, target: Target) -> (DmaAddr, Option<usize>) {
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
    fn length(&self, choice: LenChoice, dma: DmaAddr, picked: Option<usize>) -> usize {
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

    fn direction(&self, choice: DirChoice, dma: DmaAddr) -> Direction {
        match choice {
            DirChoice::Given(d) => d,
            DirChoice::Same => match self.model_find(dma).map(|i| self.live[i].kind) {
                Some(Kind::Stream(d)) => d,
                _ => Direction::ToDevice,
            },
        }
    }

    /// The live entry whose data holds `dma`.
    fn model_find(&self, dma: DmaAddr) -> Option<usize> {
        self.live
            .iter()
            .position(|l| dma >= l.dma && dma - l.dma < l.len as u64)
    }

    fn used_slots(&self) -> usize {
        self.used.iter().filter(|u| **u).count()
    }

    // --- placement predictions ----------------------------------------------------------

    /// Whether some run of `slots` slots exists whose first slot's device address `a`
    /// satisfies `ok(a)` and that crosses no segment or boundary window; with `free_only`,
    /// only runs of free slots count.
    fn exists(&self, slots: usize, window: u64, free_only: bool, ok: impl Fn(u64) -> bool) -> bool {
        let slot = self.slot_size() as u64;
        let total = self.cfg.slots as usize;
        (0..total.saturating_sub(slots - 1)).any(|s| {
            let a = self.start() + s as u64 * slot;
            let last = a + slots as u64 * slot - 1;
            ok(a)
                && a / window == last / window
                && (!free_only || self.used[s..s + slots].iter().all(|u| !u))
        })
    }

    /// The device-address window no run may cross: the smaller of a segment and the
    /// boundary.
    fn window(&self, c: &Constraints) -> u64 {
        let segment = (self.slot_size() as u64) << self.cfg.segment_shift;
        segment.min(c.seg_boundary_mask.saturating_add(1))
    }

    /// The error the pool must give when it finds no room, from a brute-force search.
    fn expect_no_room(
        &self,
        slots: usize,
        c: &Constraints,
        ok: &dyn Fn(u64) -> bool,
        extent: usize,
        got: &MapError,
    ) {
        let window = self.window(c);
        let reachable = |a: u64| {
            a.checked_add(extent as u64 - 1)
                .is_some_and(|last| last <= c.dma_limit)
        };
        let room_now = self.exists(slots, window, true, |a| ok(a) && reachable(a));
        let room_empty = self.exists(slots, window, false, |a| ok(a) && reachable(a));
        let room_unlimited = self.exists(slots, window, false, ok);
        let kind = |e: &MapError| match e {
            MapError::Full { .. } => "full",
            MapError::Unreachable { .. } => "unreachable",
            MapError::Impossible { .. } => "impossible",
            _ => "other",
        };
        let expected = if room_now {
            "success"
        } else if room_empty {
            "full"
        } else if room_unlimited {
            "unreachable"
        } else {
            "impossible"
        };
        assert_eq!(kind(got), expected, "step {}: {got} ({self:?})", self.step);
        if let MapError::Full {
            used_slots,
            total_slots,
            ..
        } = got
        {
            assert_eq!(*used_slots, self.used_slots());
            assert_eq!(*total_slots, self.cfg.slots as usize);
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
            } => self.map(len, dir, orig_low, constraints, fill),
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
            }
            Op::Alloc { size, constraints } => self.alloc(size, constraints),
            Op::Free { target, len } => self.free(target, len),
        }
        self.check();
    }

    /// The device writes `n` bytes of `byte` at `dma`; the model applies it to every live
    /// bounce buffer it touches.
    fn device_write(&mut self, dma: DmaAddr, n: usize, byte: u8) {
        if n == 0 {
            return;
        }
        self.tally.device_writes += 1;
        self.write_pool(dma, n, byte);
        let end = dma + n as u64;
        for l in &mut self.live {
            let lo = dma.max(l.dma);
            let hi = end.min(l.dma + l.len as u64);
            if lo < hi {
                l.bounce[(lo - l.dma) as usize..(hi - l.dma) as usize].fill(byte);
            }
        }
    }

    fn map(
        &mut self,
        len: u32,
        dir: Direction,
        orig_low: u16,
        choice: ConstraintsChoice,
        fill: u8,
    ) {
        let segment = self.slot_size() << self.cfg.segment_shift;
        let len = length(len, segment + 2 * self.slot_size());
        let c = choice.resolve(&self.pool);
        // An original whose address has the chosen low 13 bits.
        let mut storage = vec![0u8; len + 8192];
        let base = storage.as_ptr() as usize;
        let at = ((orig_low as usize & 0x1fff).wrapping_sub(base)) & 0x1fff;
        for (i, b) in storage[at..at + len].iter_mut().enumerate() {
            *b = fill.wrapping_add((i * 7 + i / 251) as u8);
        }
        let orig_addr = (base + at) as u64;
        let buf = NonNull::from(&mut storage[at..at + len]);
        // SAFETY: `storage` is ours; it stays alive and is touched only through the pool (or
        // by this harness between syncs, as a driver would) until the mapping is unmapped:
        // it moves into the model's `Live`, which keeps the heap buffer in place.
        let result = unsafe { self.pool.map(buf, dir, &c) };

        // The model's prediction of the errors that come before any search.
        let max = self.pool.max_mapping_size(&c);
        let masks_ok = masks_valid(&c);
        let slot = self.slot_size() as u64;
        let offset = if masks_ok {
            (orig_addr & c.min_align_mask & (c.alloc_align_mask | (slot - 1))) as usize
        } else {
            0
        };
        let slots = (offset + len).div_ceil(slot as usize);
        let mut align = c.alloc_align_mask;
        if align == 0 && c.min_align_mask == 0 && len >= 4096 {
            align = 4095;
        }
        let align = align | (slot - 1);
        let matched = c.min_align_mask & !align;
        let placement_ok = move |a: u64| a & align == 0 && a & matched == orig_addr & matched;

        self.count_placement(&result, |t| &mut t.mapped);
        match result {
            Err(e) if len == 0 => assert_eq!(e, MapError::ZeroLength),
            Ok(_) if len == 0 => panic!("step {}: zero-length map succeeded", self.step),
            Err(e) if !masks_ok => assert!(matches!(e, MapError::InvalidMask { .. }), "{e}"),
            Ok(_) if !masks_ok => panic!("step {}: invalid mask accepted: {c:?}", self.step),
            Err(e) if len > max => assert_eq!(e, MapError::TooLarge { size: len, max }),
            Ok(_) if len > max => panic!("step {}: {len} bytes over max {max} mapped", self.step),
            Err(e) => {
                self.expect_no_room(slots, &c, &placement_ok, offset + len, &e);
            }
            Ok(dma) => {
                // Every constraint, on the address handed out.
                let step = self.step;
                assert_eq!(
                    dma & c.min_align_mask,
                    orig_addr & c.min_align_mask,
                    "step {step}: min_align_mask"
                );
                let first = dma - offset as u64;
                assert!(
                    placement_ok(first),
                    "step {step}: alignment of {first:#x} ({c:?})"
                );
                assert!(
                    dma + len as u64 - 1 <= c.dma_limit,
                    "step {step}: {dma:#x}+{len} above limit {:#x}",
                    c.dma_limit
                );
                let first_slot = self.claim(first, slots, &c);
                // The copy in, for every direction.
                let data = storage[at..at + len].to_vec();
                assert_eq!(
                    self.read_pool(dma, len),
                    data,
                    "step {step}: copy in ({dir:?})"
                );
                self.live.push(Live {
                    kind: Kind::Stream(dir),
                    dma,
                    len,
                    first_slot,
                    slots,
                    storage,
                    at,
                    orig: data.clone(),
                    bounce: data,
                });
            }
        }
    }

    /// Checks a run handed out at device address `first` and marks it used in the model.
    fn claim(&mut self, first: DmaAddr, slots: usize, c: &Constraints) -> usize {
        let step = self.step;
        let slot = self.slot_size() as u64;
        assert!(first >= self.start(), "step {step}: run below the pool");
        let first_slot = ((first - self.start()) / slot) as usize;
        assert_eq!(
            (first - self.start()) % slot,
            0,
            "step {step}: run not slot-aligned"
        );
        assert!(
            first_slot + slots <= self.cfg.slots as usize,
            "step {step}: run past the pool's end"
        );
        let window = self.window(c);
        let last = first + slots as u64 * slot - 1;
        assert_eq!(
            first / window,
            last / window,
            "step {step}: run crosses a segment or boundary"
        );
        for s in first_slot..first_slot + slots {
            assert!(
                !self.used[s],
                "step {step}: slot {s} handed out twice ({self:?})"
            );
            self.used[s] = true;
        }
        first_slot
    }

    fn release_model(&mut self, i: usize) -> Live {
        let l = self.live.swap_remove(i);
        for s in l.first_slot..l.first_slot + l.slots {
            self.used[s] = false;
        }
        self.released = Some(Released {
            dma: l.dma,
            len: l.len,
        });
        if self.cfg.scrub {
            let slot = self.slot_size();
            let bytes = self.read_pool(self.start() + (l.first_slot * slot) as u64, l.slots * slot);
            assert!(
                bytes.iter().all(|b| *b == 0),
                "step {}: released run not scrubbed",
                self.step
            );
        }
        l
    }

    fn unmap(&mut self, target: Target, len: LenChoice, dir: DirChoice, skip: bool) {
        let (dma, picked) = self.address(target);
        let len = self.length(len, dma, picked);
        let dir = self.direction(dir, dma);
        let attrs = if skip {
            Attrs::SKIP_CPU_SYNC
        } else {
            Attrs::NONE
        };
        let expected = self.expect_lookup(dma, len, dir, LookupKind::Unmap);
        // SAFETY: every original of a live mapping is alive in the model; a refused call
        // touches nothing.
        let got = unsafe { self.pool.unmap(dma, len, dir, attrs) };
        assert_eq!(
            got,
            expected.map(|_| ()),
            "step {}: unmap({dma:#x}, {len}, {dir:?})",
            self.step
        );
        self.count_lookup(&got, |t| &mut t.unmapped);
        if let Ok(i) = expected {
            let mut l = self.release_model(i);
            if dir.from_device() && !skip {
                l.orig.copy_from_slice(&l.bounce);
            }
            let at = l.at;
            assert_eq!(
                &l.storage[at..at + l.len],
                &l.orig[..],
                "step {}: original after unmap",
                self.step
            );
        }
    }

    fn sync(&mut self, target: Target, len: LenChoice, dir: DirChoice, for_device: bool) {
        let (dma, picked) = self.address(target);
        let len = self.length(len, dma, picked);
        let dir = self.direction(dir, dma);
        let expected = self.expect_lookup(dma, len, dir, LookupKind::Sync);
        let got = if for_device {
            // SAFETY: as in `unmap`.
            unsafe { self.pool.sync_for_device(dma, len, dir) }
        } else {
            // SAFETY: as in `unmap`.
            unsafe { self.pool.sync_for_cpu(dma, len, dir) }
        };
        let what = if for_device {
            "sync_for_device"
        } else {
            "sync_for_cpu"
        };
        assert_eq!(
            got,
            expected.map(|_| ()),
            "step {}: {what}({dma:#x}, {len}, {dir:?})",
            self.step
        );
        self.count_lookup(&got, |t| &mut t.synced);
        if let Ok(i) = expected {
            let l = &mut self.live[i];
            let off = (dma - l.dma) as usize;
            if for_device && dir.to_device() {
                let (o, b) = (&l.orig, &mut l.bounce);
                b[off..off + len].copy_from_slice(&o[off..off + len]);
            }
            if !for_device && dir.from_device() {
                let (o, b) = (&mut l.orig, &l.bounce);
                o[off..off + len].copy_from_slice(&b[off..off + len]);
            }
        }
    }

    fn alloc(&mut self, size: u32, choice: ConstraintsChoice) {
        let segment = self.slot_size() << self.cfg.segment_shift;
        let size = length(size, segment + 2 * self.slot_size());
        let c = choice.resolve(&self.pool);
        let result = self.pool.alloc(size, &c);
        let masks_ok = masks_valid(&c);
        let slot = self.slot_size() as u64;
        let slots = size.div_ceil(slot as usize);
        let order = (size.div_ceil(4096).next_power_of_two() * 4096) as u64;
        let align = (order - 1) | c.alloc_align_mask | (slot - 1);
        let placement_ok = move |a: u64| a & align == 0;
        self.count_placement(&result, |t| &mut t.allocated);
        match result {
            Err(e) if size == 0 => assert_eq!(e, MapError::ZeroLength),
            Ok(_) if size == 0 => panic!("step {}: zero-size alloc succeeded", self.step),
            Err(e) if !masks_ok => assert!(matches!(e, MapError::InvalidMask { .. }), "{e}"),
            Ok(_) if !masks_ok => panic!("step {}: invalid mask accepted", self.step),
            Err(e) if slots > 1 << self.cfg.segment_shift => {
                assert!(matches!(e, MapError::TooLarge { .. }), "{e}")
            }
            Ok(_) if slots > 1 << self.cfg.segment_shift => {
                panic!("step {}: alloc over a segment succeeded", self.step)
            }
            Err(e) => {
                self.expect_no_room(slots, &c, &placement_ok, size, &e);
            }
            Ok(co) => {
                let step = self.step;
                assert!(
                    placement_ok(co.dma),
                    "step {step}: coherent alignment {:#x}",
                    co.dma
                );
                assert!(
                    co.dma + size as u64 - 1 <= c.dma_limit,
                    "step {step}: above limit"
                );
                assert_eq!(co.size, size);
                assert_eq!(
                    Some(co.cpu),
                    self.pool.translate(co.dma, size),
                    "step {step}: cpu address"
                );
                let first_slot = self.claim(co.dma, slots, &c);
                let whole = self.read_pool(co.dma, slots * slot as usize);
                assert!(
                    whole.iter().all(|b| *b == 0),
                    "step {step}: coherent memory not zeroed"
                );
                self.live.push(Live {
                    kind: Kind::Coherent,
                    dma: co.dma,
                    len: size,
                    first_slot,
                    slots,
                    storage: Vec::new(),
                    at: 0,
                    orig: Vec::new(),
                    bounce: vec![0; size],
                });
            }
        }
    }

    fn free(&mut self, target: Target, len: LenChoice) {
        let (dma, picked) = self.address(target);
        let size = self.length(len, dma, picked);
        let expected = self.expect_lookup(dma, size, Direction::ToDevice, LookupKind::Free);
        let got = self.pool.free(dma, size);
        assert_eq!(
            got,
            expected.map(|_| ()),
            "step {}: free({dma:#x}, {size})",
            self.step
        );
        self.count_lookup(&got, |t| &mut t.freed);
        if let Ok(i) = expected {
            self.release_model(i);
        }
    }

    /// Counts the outcome of a map or allocation (a `Full` is also a failed map).
    fn count_placement<T>(
        &mut self,
        got: &Result<T, MapError>,
        ok: impl FnOnce(&mut Tally) -> &mut usize,
    ) {
        match got {
            Ok(_) => *ok(&mut self.tally) += 1,
            Err(MapError::Full { .. }) => {
                self.tally.full += 1;
                self.failed_maps += 1;
            }
            Err(MapError::Impossible { .. } | MapError::Unreachable { .. }) => {
                self.tally.no_placement += 1
            }
            Err(_) => self.tally.refused += 1,
        }
    }

    fn count_lookup(
        &mut self,
        got: &Result<(), LookupError>,
        ok: impl FnOnce(&mut Tally) -> &mut usize,
    ) {
        match got {
            Ok(()) => *ok(&mut self.tally) += 1,
            Err(_) => self.tally.lookups_refused += 1,
        }
    }

    /// The model's answer to an unmap, sync or free: the live entry, or the exact error.
    fn expect_lookup(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
        kind: LookupKind,
    ) -> Result<usize, LookupError> {
        if kind == LookupKind::Sync && len == 0 {
            return Err(LookupError::ZeroLength { dma });
        }
        let i = self.model_find(dma).ok_or(LookupError::NotMapped { dma })?;
        let l = &self.live[i];
        let stream = "streaming mapping";
        let coherent = "coherent allocation";
        let mapped = match (l.kind, kind) {
            (Kind::Coherent, LookupKind::Free) => None,
            (Kind::Coherent, _) => {
                return Err(LookupError::WrongKind {
                    dma,
                    expected: stream,
                    actual: coherent,
                })
            }
            (Kind::Stream(_), LookupKind::Free) => {
                return Err(LookupError::WrongKind {
                    dma,
                    expected: coherent,
                    actual: stream,
                })
            }
            (Kind::Stream(d), _) => Some(d),
        };
        if kind == LookupKind::Sync {
            let off = (dma - l.dma) as usize;
            if len > l.len - off {
                return Err(LookupError::OutOfRange {
                    dma,
                    len,
                    start: l.dma,
                    mapped: l.len,
                });
            }
            let mapped = mapped.expect("streaming");
            if dir != mapped && mapped != Direction::Bidirectional {
                return Err(LookupError::DirectionMismatch {
                    dma,
                    mapped,
                    given: dir,
                });
            }
            return Ok(i);
        }
        if dma != l.dma {
            return Err(LookupError::NotStart { dma, start: l.dma });
        }
        if len != l.len {
            return Err(LookupError::LengthMismatch {
                dma,
                mapped: l.len,
                given: len,
            });
        }
        if let Some(mapped) = mapped {
            if dir != mapped {
                return Err(LookupError::DirectionMismatch {
                    dma,
                    mapped,
                    given: dir,
                });
            }
        }
        Ok(i)
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LookupKind {
    Unmap,
    Sync,
    Free,
}
