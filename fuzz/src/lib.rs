//! The fuzz targets' logic: each target is one call into this crate, and the streaming
//! targets are a few lines over the shadow model and harness of `swiotlb::testing`.
//!
//! | target           | input                                     | checks                                        |
//! |------------------|-------------------------------------------|-----------------------------------------------|
//! | `ops`            | a pool shape, then operations             | the harness's invariants after every step     |
//! | `hostile_device` | a pool shape, then (device write, op) pairs | the same, with the pool scribbled on between every two steps |
//! | `config`         | a configuration and a region              | valid ones work to the last slot, invalid ones get the error that names the fault |
//! | `elastic`        | an elastic pool's shape and backend failure rates, then operations | the elastic shadow model's checks after every step, and the backend's books at the end |
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    rust_2018_idioms
)]

use arbitrary::{Arbitrary, Unstructured};
use core::ptr::NonNull;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use swiotlb::testing::{ElasticScenario, ElasticTally, HarnessConfig, Op, Scenario, Tally};
use swiotlb::{Attrs, Config, ConfigError, Constraints, Direction, DmaAddr, MapError, Pool};

/// Most operations one input runs: enough to fill and churn a small pool, few enough that an
/// input runs in well under a millisecond.
pub const MAX_OPS: usize = 256;

/// Operations decoded from the rest of `u`, at most [`MAX_OPS`].
fn ops_from(u: &mut Unstructured<'_>) -> Vec<Op> {
    // Stop at the end of the data: past it `arbitrary` keeps producing the all-zero op.
    core::iter::from_fn(|| (!u.is_empty()).then(|| Op::arbitrary(u).ok()).flatten())
        .take(MAX_OPS)
        .collect()
}

/// Target `ops`: a pool shape and a sequence of operations (maps of any size, direction and
/// constraints, syncs both ways, unmaps, coherent allocations and frees, CPU writes and the
/// device writing its own buffers, and deliberately wrong addresses, lengths, directions
/// and masks) run on a pool and on the shadow model. The harness checks every invariant
/// after every step (exact errors, disjoint runs, constraints, statistics, every byte of
/// every original and bounce buffer) and that everything is free at the end. The device
/// here is honest: it writes only its own buffers (see [`hostile_device`]).
///
/// Returns what happened (`None` if the input is too short for a pool shape).
pub fn ops(data: &[u8]) -> Option<Tally> {
    let mut u = Unstructured::new(data);
    let config = HarnessConfig::arbitrary(&mut u).ok()?;
    let mut ops = ops_from(&mut u);
    ops.retain(|op| !matches!(op, Op::HostileWrite { .. }));
    Some(Scenario { config, ops }.run())
}

/// One write of a hostile device: `len` bytes of `byte` at pool offset `offset` (both
/// wrapped into the pool by the harness), over other mappings, padding and free slots alike.
#[derive(Clone, Copy, Debug, Arbitrary)]
struct Scribble {
    offset: u32,
    len: u16,
    byte: u8,
}

/// Target `hostile_device`: as [`ops`], but before every operation the device writes
/// arbitrary bytes anywhere in the pool. Nothing the allocator trusts lives in the pool, so
/// its state must stay exact (the harness's checks after every step), no error path may
/// panic, a coherent allocation must still come zeroed and a new mapping must still hold its
/// original's bytes, whatever the device left in the slots.
///
/// Returns what happened (`None` if the input is too short for a pool shape).
pub fn hostile_device(data: &[u8]) -> Option<Tally> {
    let mut u = Unstructured::new(data);
    let config = HarnessConfig::arbitrary(&mut u).ok()?;
    let mut ops = Vec::new();
    while ops.len() < 2 * MAX_OPS && !u.is_empty() {
        let (Ok(s), Ok(op)) = (Scribble::arbitrary(&mut u), Op::arbitrary(&mut u)) else {
            break;
        };
        ops.push(Op::HostileWrite {
            offset: s.offset,
            len: s.len,
            byte: s.byte,
        });
        ops.push(op);
    }
    Some(Scenario { config, ops }.run())
}

/// A number for a configuration field: mostly a power of two (so that valid values are
/// common), sometimes anything.
#[derive(Clone, Copy, Debug, Arbitrary)]
enum Num {
    /// `2^(e % 24)`.
    Pow(u8),
    /// Any value.
    Raw(u32),
}

impl Num {
    fn get(self) -> usize {
        match self {
            Num::Pow(e) => 1 << (e % 24),
            Num::Raw(n) => n as usize,
        }
    }
}

/// Where the region sits in device address space.
#[derive(Clone, Copy, Debug, Arbitrary)]
enum Base {
    /// Anywhere.
    Any(u64),
    /// Within 4 GiB of the top, where the region may wrap.
    NearTop(u32),
    /// Low addresses, often not slot-aligned.
    Low(u32),
}

/// A configuration and a region to build a pool over.
#[derive(Clone, Copy, Debug, Arbitrary)]
struct ConfigCase {
    slot_size: Num,
    segment_slots: Num,
    /// `None`: the default (one area per CPU).
    areas: Option<Num>,
    page_size: Num,
    scrub: bool,
    base: Base,
    /// Bytes in the region (modulo 64 KiB + 1).
    size: u32,
    /// Offset of the CPU region from a page boundary (modulo 4096).
    cpu_offset: u16,
    /// Build with `Pool::allocate` (device address = CPU address) instead of `Pool::new`.
    allocate: bool,
}

/// What the contract says about a configuration, worked out here from the documented
/// ranges, not from the pool's code.
struct Expect {
    slot: usize,
    config_faults: Vec<ConfigError>,
}

impl Expect {
    fn of(case: &ConfigCase) -> Self {
        let (slot, seg, page) = (
            case.slot_size.get(),
            case.segment_slots.get(),
            case.page_size.get(),
        );
        let mut faults = Vec::new();
        if !(slot.is_power_of_two() && (64..=4096).contains(&slot)) {
            faults.push(ConfigError::SlotSize(slot));
        }
        if !(seg.is_power_of_two() && seg <= 16384) {
            faults.push(ConfigError::SegmentSlots(seg));
        }
        if !(page.is_power_of_two() && page >= 4096) {
            faults.push(ConfigError::PageSize(page));
        }
        if let Some(areas) = case.areas.map(Num::get) {
            if !(areas.is_power_of_two() && areas <= swiotlb::MAX_AREAS) {
                faults.push(ConfigError::Areas(areas));
            }
        }
        Self {
            slot,
            config_faults: faults,
        }
    }

    /// The region's faults, for a region of `size` bytes at device address `dma_base`.
    fn region_faults(&self, size: usize, dma_base: DmaAddr) -> Vec<ConfigError> {
        let mut faults = Vec::new();
        let Some(_end) = dma_base.checked_add(size as u64) else {
            faults.push(ConfigError::Wraps { size, dma_base });
            return faults;
        };
        if self.slot.is_power_of_two() {
            let skip = dma_base.wrapping_neg() & (self.slot as u64 - 1);
            if (size as u64) < skip + self.slot as u64 {
                faults.push(ConfigError::TooSmall {
                    size,
                    dma_base,
                    slot_size: self.slot,
                });
            }
        }
        faults
    }
}

fn config_of(case: &ConfigCase) -> Config {
    let mut config = Config::new()
        .with_slot_size(case.slot_size.get())
        .with_segment_slots(case.segment_slots.get())
        .with_page_size(case.page_size.get())
        .with_scrub_on_release(case.scrub);
    if let Some(areas) = case.areas {
        config = config.with_areas(areas.get());
    }
    config
}

/// Target `config`: arbitrary configurations and regions. A pool is built exactly when
/// every field is in its documented range and the region neither wraps nor is too small to
/// hold a slot once its start is slot-aligned; a refusal is a `ConfigError` that names one
/// of the faults actually present. A pool that is built has the slot count, first address
/// and area split its region implies, and every one of its slots can be mapped (and none
/// past its end: Linux CVE-2023-52790), after which it is `Full`; unmapping all leaves
/// it empty.
///
/// Returns whether a pool was built (`None` if the input was skipped).
pub fn config(data: &[u8]) -> Option<Built> {
    let case = ConfigCase::arbitrary(&mut Unstructured::new(data)).ok()?;
    let expect = Expect::of(&case);
    let size = case.size as usize % (64 * 1024 + 1);
    if case.allocate {
        if case.page_size.get() > 1 << 20 {
            return None; // Not worth a huge aligned allocation per input.
        }
        let result = Pool::allocate(size, config_of(&case));
        // The region is page-aligned, and a page is a whole number of slots.
        let region = match &result {
            Ok(pool) => pool.dma_range().start,
            Err(_) => 0,
        };
        return Some(judge(&expect, result, size, region, None));
    }

    let dma_base = match case.base {
        Base::Any(a) => a,
        Base::NearTop(d) => u64::MAX - d as u64,
        Base::Low(a) => a as u64,
    };
    let offset = case.cpu_offset as usize % 4096;
    let layout = Layout::from_size_align(offset + size.max(1), 4096).expect("small layout");
    // SAFETY: the size is non-zero.
    let mem = NonNull::new(unsafe { alloc_zeroed(layout) }).expect("allocation");
    // SAFETY: `offset` is inside the allocation.
    let cpu = unsafe { NonNull::new_unchecked(mem.as_ptr().add(offset)) };
    // SAFETY: `cpu..cpu + size` is a fresh allocation used only through this pool, which is
    // dropped (in `judge`) before the memory is freed below.
    let result = unsafe { Pool::new(cpu, dma_base, size, config_of(&case)) };
    let built = judge(&expect, result, size, dma_base, Some(cpu));
    // SAFETY: allocated above with this layout; the pool is gone.
    unsafe { dealloc(mem.as_ptr(), layout) };
    Some(built)
}

/// What [`config`] did with an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Built {
    /// A valid configuration: the pool was built and filled to the last slot.
    Pool {
        /// Its slots.
        slots: usize,
    },
    /// Refused with the error that names a fault of the input.
    Refused,
}

/// Checks a construction's result against the expectation, and exercises a built pool.
fn judge(
    expect: &Expect,
    result: Result<Pool, ConfigError>,
    size: usize,
    dma_base: DmaAddr,
    cpu: Option<NonNull<u8>>,
) -> Built {
    let mut faults = expect.config_faults.clone();
    let pool = match result {
        Err(ConfigError::OutOfMemory(n)) => panic!("out of memory for a {size}-byte pool: {n}"),
        Err(e) => {
            if faults.is_empty() {
                // Only the region can be at fault. (`allocate` places the region itself,
                // so its faults are judged on the region it would have had: page-aligned.)
                faults = match cpu {
                    Some(_) => expect.region_faults(size, dma_base),
                    None => expect.region_faults(size, 0),
                };
            }
            // `allocate` chooses the region's address itself: compare all but that.
            let same = |f: &ConfigError| match (f, &e, cpu) {
                (
                    ConfigError::TooSmall {
                        size: a,
                        slot_size: b,
                        ..
                    },
                    ConfigError::TooSmall {
                        size: c,
                        slot_size: d,
                        ..
                    },
                    None,
                ) => (a, b) == (c, d),
                _ => *f == e,
            };
            assert!(
                faults.iter().any(same),
                "refused with {e:?}, but the faults are {faults:?}"
            );
            return Built::Refused;
        }
        Ok(pool) => pool,
    };
    assert!(faults.is_empty(), "built a pool despite {faults:?}");
    let region = match cpu {
        Some(_) => expect.region_faults(size, dma_base),
        None => expect.region_faults(size, 0),
    };
    assert!(region.is_empty(), "built a pool despite {region:?}");
    check_pool(&pool, expect.slot, size, dma_base, cpu);
    Built::Pool {
        slots: pool.stats().total_slots,
    }
}

fn check_pool(pool: &Pool, slot: usize, size: usize, dma_base: DmaAddr, cpu: Option<NonNull<u8>>) {
    let skip = dma_base.wrapping_neg() & (slot as u64 - 1);
    let total = (size - skip as usize) / slot;
    let stats = pool.stats();
    assert_eq!(
        stats.total_slots, total,
        "slots of a {size}-byte region at {dma_base:#x}"
    );
    assert_eq!(pool.slot_size(), slot);
    let range = pool.dma_range();
    assert_eq!(range.start, dma_base + skip);
    assert_eq!(range.end - range.start, (total * slot) as u64);
    if let Some(cpu) = cpu {
        let first = pool.translate(range.start, 1).expect("first slot");
        assert_eq!(
            first.as_ptr() as usize,
            cpu.as_ptr() as usize + skip as usize
        );
    }
    assert!(pool.translate(range.end, 1).is_none() && !pool.contains(range.end));

    // Areas: a power of two, no more than the segments the region touches, splitting the
    // slots between them.
    let seg_bytes = (slot * pool.segment_slots()) as u64;
    let segments = ((range.end - 1) / seg_bytes - range.start / seg_bytes + 1) as usize;
    assert!(stats.areas.is_power_of_two() && stats.areas <= segments.max(1));
    let split: usize = (0..stats.areas)
        .map(|i| pool.area_stats(i).expect("area").total_slots)
        .sum();
    assert_eq!(split, total, "areas' slots");
    assert_eq!(
        pool.max_mapping_size(&Constraints::NONE),
        slot * pool.segment_slots()
    );

    // Every slot can be mapped, none past the end, then the pool is full.
    let byte = [0xa5u8];
    let map = || {
        // SAFETY: `byte` outlives every mapping and is only read (ToDevice).
        unsafe {
            pool.map(
                NonNull::from(&byte[..]),
                Direction::ToDevice,
                &Constraints::NONE,
            )
        }
    };
    let mut seen = vec![false; total];
    let mut live = Vec::with_capacity(total);
    for i in 0..total {
        let dma = map().unwrap_or_else(|e| panic!("slot {i} of {total}: {e}"));
        assert!(range.contains(&dma), "{dma:#x} outside {range:x?}");
        let s = ((dma - range.start) / slot as u64) as usize;
        assert!(!seen[s], "slot {s} handed out twice");
        seen[s] = true;
        live.push(dma);
    }
    let more = map();
    assert!(matches!(more, Err(MapError::Full { .. })), "{more:?}");
    assert_eq!(pool.stats().used_slots, total);
    for dma in live {
        // SAFETY: mapped above and not unmapped since.
        unsafe { pool.unmap(dma, 1, Direction::ToDevice, Attrs::NONE) }.expect("unmap");
    }
    assert_eq!(pool.stats().used_slots, 0);
}

/// Target `elastic`: an elastic pool (its first region, growth and floor, ceiling, sub-pool
/// limit, idle time) over a backend that refuses shares and fails unshares at random, and a
/// sequence of maps, unmaps, device writes with syncs, coherent allocations and frees,
/// wrong calls, growth, shrink passes and clock ticks. The shadow model of
/// `swiotlb::testing::ElasticScenario` checks after every step that every mapping lies in
/// memory shared now, apart from the others, with its own bytes; that `Full` came only for
/// a reason the pool is allowed; that shrink never gives back a region in use (or the
/// first); that the figures add up; and at the end that every share was unshared.
///
/// Returns what happened (`None` if the input is too short for a configuration).
pub fn elastic(data: &[u8]) -> Option<ElasticTally> {
    let scenario = ElasticScenario::arbitrary(&mut Unstructured::new(data)).ok()?;
    Some(scenario.run())
}
