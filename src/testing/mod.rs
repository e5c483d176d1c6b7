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
//!                    constraints: swiotlb::testing::ConstraintsChoice::Nvme, fill: 1, zero_fill: true });
//! h.finish();
//! ```

use crate::shared::{copy_from_shared, fill_shared};
use crate::{
    Attrs, Coherent, Config, ConfigError, Constraints, Direction, DmaAddr, LookupError, MapError,
    Pool,
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
            .with_slot_size(self.slot_size())
            .with_segment_slots(1 << self.segment_shift)
            .with_areas(1 << self.areas_shift)
            .with_scrub_on_release(self.scrub)
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

mod backend;
mod elastic;
mod harness;
mod model;
mod ops;
mod steps;

pub use backend::{BackendCall, TestBackend};
pub use elastic::{ElasticHarnessConfig, ElasticOp, ElasticScenario, ElasticTally};
use ops::length;
pub use ops::{DirChoice, LenChoice, Op, Scenario, Tally, Target};

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
    /// The CPU wrote the original since it was mapped (through the storage, so the pointer
    /// the pool kept at map is no longer valid: syncs and unmap must give a fresh one).
    touched: bool,
    /// The allocation's handle (coherent only).
    handle: Option<Coherent>,
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
    /// Pool bytes a hostile device wrote that no later run's data has covered: the pool
    /// does not track them (they are the device's own bytes, not a mapping's), so a new
    /// run's bytes around its data must be zero *or* one of these.
    untracked: Vec<bool>,
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
