//! The operation language: what a scenario does, step by step, and what it tallies.

use super::*;

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
pub(super) fn length(raw: u32, most: usize) -> usize {
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
        /// Map with [`Attrs::ZERO_FILL`] (matters for `FromDevice` only).
        zero_fill: bool,
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
