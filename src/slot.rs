//! Per-slot metadata, kept outside the pool.
//!
//! Four parallel arrays, indexed by pool slot number:
//!
//! | array   | type            | meaning                                                 |
//! |---------|-----------------|---------------------------------------------------------|
//! | `tag`   | `AtomicU16`     | what the slot is (packed [`Tag`], below)                |
//! | `len`   | `AtomicU32`     | on a head: length of the mapping in bytes               |
//! | `orig`  | `AtomicPtr<u8>` | on a head: the original buffer's start (null: coherent) |
//! | `dirty` | `AtomicU8`      | how much of the slot, from its start, may hold data     |
//!
//! That is 15 bytes a slot on a 64-bit machine (11 on 32-bit), plus the area bitmap's one
//! bit: 15.125 bytes, 484 KiB for a 64 MiB pool of 2 KiB slots (Linux keeps 24).
//!
//! `tag`, `len` and `orig` are atomics because [`sync_for_cpu`](crate::Pool::sync_for_cpu)
//! and [`sync_for_device`](crate::Pool::sync_for_device) read them without a lock. They
//! are written only under the owning area's lock, while the slots are reserved and not yet
//! handed out, or after the owner gave them back; a caller that uses an address it got from
//! `map` is ordered after those writes by however it got the address. The original is kept
//! as a pointer, not an address, so that the copies back use the provenance the caller
//! lent at map.
//!
//! # Dirty prefixes
//!
//! `dirty` says how many bytes from the slot's start may hold data of an earlier mapping
//! (in 128ths of a slot, rounded up; 0: the slot holds only zeros). Only the owner of a slot
//! reads or writes it: a map or allocation after reserving the run, a release before giving
//! it back (the area lock orders one owner after the next). A new run zeroes what is dirty
//! and not covered by its own data, so padding, the bytes of the head slot before the data
//! and the tail of the last slot never show the device an earlier mapping's bytes, and a
//! mapping that reuses a slot with data of the same size zeroes nothing. Honest devices
//! write only the data they were given; what a device writes elsewhere is its own, not the
//! guest's, and is not tracked.
//!
//! # Tag layout
//!
//! ```text
//!  15 14 | 13 12 | 11 ..................... 0
//!  1  1  |  dir  | offset of data in the slot      HEAD: first slot holding data
//!  1  0  |      distance back to the head         BODY: later slot of the same mapping
//!  0  1  |            (unused)                    PAD:  front padding (min_align_mask)
//!  0  0  |            (unused)                    FREE
//! ```
//!
//! A mapping's padding slots sit directly in front of its head; the slot before them belongs
//! to another run (a head or body) or is free, never padding, so unmap finds the padding by
//! walking back over `PAD` tags and no count needs storing. These fields bound the
//! configuration: a slot is at most 4 KiB (12-bit offset) and a segment at most 16384 slots
//! (14-bit distance), which also keeps every mapping length within `u32`.

use crate::padded::Padded;
use crate::request::Direction;
use crate::sync::{AtomicPtr, AtomicU16, AtomicU32, AtomicU8, Ordering};
use core::ptr;

/// Largest slot size the tag's offset field can describe.
pub(crate) const MAX_SLOT_SIZE: usize = 1 << 12;
/// log2 of the granules a slot's dirty prefix is counted in (128, so a `u8` holds 0..=128).
const DIRTY_UNITS_SHIFT: u32 = 7;
/// Largest segment the tag's distance field can describe.
pub(crate) const MAX_SEGMENT_SLOTS: usize = 1 << 14;

/// log2 of the granule, in bytes, that the dirty prefixes of slots of `1 << slot_shift`
/// bytes are counted in.
pub(crate) const fn dirty_shift(slot_shift: u32) -> u32 {
    slot_shift.saturating_sub(DIRTY_UNITS_SHIFT)
}

/// Granules of `1 << shift` bytes that `bytes` bytes take (a dirty prefix, at most a slot:
/// 128 at most, so it fits a `u8`).
#[inline(always)]
pub(crate) fn dirty_units(bytes: usize, shift: u32) -> u8 {
    ((bytes + (1 << shift) - 1) >> shift) as u8
}

const KIND_SHIFT: u32 = 14;
const KIND_FREE: u16 = 0;
const KIND_PAD: u16 = 1;
const KIND_BODY: u16 = 2;
const KIND_HEAD: u16 = 3;
const DIR_SHIFT: u32 = 12;
const LOW_MASK: u16 = (1 << DIR_SHIFT) - 1;
const BACK_MASK: u16 = (1 << KIND_SHIFT) - 1;

/// What a mapping head says it is: one of the three streaming directions, or a coherent
/// allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Use {
    Stream(Direction),
    Coherent,
}

impl Use {
    #[inline(always)]
    fn bits(self) -> u16 {
        match self {
            Use::Stream(Direction::ToDevice) => 0,
            Use::Stream(Direction::FromDevice) => 1,
            Use::Stream(Direction::Bidirectional) => 2,
            Use::Coherent => 3,
        }
    }

    #[inline(always)]
    fn from_bits(bits: u16) -> Self {
        match bits & 3 {
            0 => Use::Stream(Direction::ToDevice),
            1 => Use::Stream(Direction::FromDevice),
            2 => Use::Stream(Direction::Bidirectional),
            _ => Use::Coherent,
        }
    }
}

/// A decoded slot tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tag {
    Free,
    Pad,
    /// Slot `back` places after its mapping's head.
    Body {
        back: usize,
    },
    /// First slot holding data: the data starts `offset` bytes into it.
    Head {
        use_: Use,
        offset: usize,
    },
}

impl Tag {
    #[inline(always)]
    pub(crate) fn encode(self) -> u16 {
        match self {
            Tag::Free => KIND_FREE << KIND_SHIFT,
            Tag::Pad => KIND_PAD << KIND_SHIFT,
            Tag::Body { back } => {
                debug_assert!(back > 0 && back <= BACK_MASK as usize);
                (KIND_BODY << KIND_SHIFT) | back as u16
            }
            Tag::Head { use_, offset } => {
                debug_assert!(offset <= LOW_MASK as usize);
                (KIND_HEAD << KIND_SHIFT) | (use_.bits() << DIR_SHIFT) | offset as u16
            }
        }
    }

    #[inline(always)]
    fn decode(raw: u16) -> Self {
        match raw >> KIND_SHIFT {
            KIND_FREE => Tag::Free,
            KIND_PAD => Tag::Pad,
            KIND_BODY => Tag::Body {
                back: (raw & BACK_MASK) as usize,
            },
            _ => Tag::Head {
                use_: Use::from_bits(raw >> DIR_SHIFT),
                offset: (raw & LOW_MASK) as usize,
            },
        }
    }
}

/// What a head slot records about its mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    /// Pool slot number of the head.
    pub(crate) slot: usize,
    pub(crate) use_: Use,
    /// Offset of the data inside the head slot.
    pub(crate) offset: usize,
    /// Length of the mapping in bytes.
    pub(crate) len: usize,
    /// The original buffer's first byte (null for coherent allocations).
    pub(crate) orig: *mut u8,
}

impl Head {
    /// The tag its slot holds.
    #[inline(always)]
    pub(crate) fn tag(&self) -> u16 {
        Tag::Head {
            use_: self.use_,
            offset: self.offset,
        }
        .encode()
    }
}

// === impl Slots ===

/// The metadata arrays of one area, indexed by pool slot number from `first`.
#[derive(Debug)]
pub(crate) struct Slots {
    first: usize,
    /// Slots described: the length of every array.
    count: usize,
    tag: Padded<AtomicU16>,
    len: Padded<AtomicU32>,
    orig: Padded<AtomicPtr<u8>>,
    dirty: Padded<AtomicU8>,
}

/// One slot's cells, found with one bounds check for all four arrays.
struct Cells<'a> {
    tag: &'a AtomicU16,
    len: &'a AtomicU32,
    orig: &'a AtomicPtr<u8>,
    dirty: &'a AtomicU8,
}

impl Slots {
    /// Metadata for `count` free slots from pool slot `first`, or `None` if it cannot be
    /// allocated.
    pub(crate) fn new(first: usize, count: usize) -> Option<Self> {
        Some(Self {
            first,
            count,
            tag: Padded::new(count, || AtomicU16::new(Tag::Free.encode()))?,
            len: Padded::new(count, || AtomicU32::new(0))?,
            orig: Padded::new(count, || AtomicPtr::new(ptr::null_mut()))?,
            dirty: Padded::new(count, || AtomicU8::new(0))?,
        })
    }

    /// Bytes of metadata per slot (the four arrays; the bitmap bit is extra).
    pub(crate) const BYTES_PER_SLOT: usize = core::mem::size_of::<AtomicU16>()
        + core::mem::size_of::<AtomicU32>()
        + core::mem::size_of::<AtomicPtr<u8>>()
        + core::mem::size_of::<AtomicU8>();

    /// The cells of pool slot `slot`, which must be one of this area's (every caller has
    /// found it in the area, or been handed it by the area's own search).
    #[inline(always)]
    fn cells(&self, slot: usize) -> Cells<'_> {
        let i = slot.wrapping_sub(self.first);
        // One check for the four arrays, instead of one an access. A slot outside the area
        // is a bug of the pool's, never the caller's: the callers map addresses to areas.
        assert!(i < self.count, "slot {slot} outside its area");
        // SAFETY: `i < count`, the length of each of the four arrays (`new`).
        unsafe {
            Cells {
                tag: self.tag.get_unchecked(i),
                len: self.len.get_unchecked(i),
                orig: self.orig.get_unchecked(i),
                dirty: self.dirty.get_unchecked(i),
            }
        }
    }

    #[inline(always)]
    pub(crate) fn tag(&self, slot: usize) -> Tag {
        Tag::decode(self.raw_tag(slot))
    }

    /// The slot's tag as stored.
    #[inline(always)]
    pub(crate) fn raw_tag(&self, slot: usize) -> u16 {
        self.cells(slot).tag.load(Ordering::Relaxed)
    }

    /// Area index of pool slots `start..start + count`, which must be this area's (checked
    /// once for the whole run).
    #[inline(always)]
    fn run_index(&self, start: usize, count: usize) -> usize {
        let i = start.wrapping_sub(self.first);
        assert!(
            i < self.count && count <= self.count - i,
            "run outside its area"
        );
        i
    }

    /// Records a new run: `pad` padding slots from `start`, then the head, then body slots
    /// up to `start + count`. The caller holds the area lock and has just reserved the run.
    #[inline(always)]
    pub(crate) fn write_run(&self, start: usize, count: usize, pad: usize, head: Head) {
        debug_assert!(pad < count);
        debug_assert_eq!(head.slot, start + pad);
        let i = self.run_index(start, count);
        // SAFETY: `i + count` is at most the arrays' length (`run_index`), and `pad < count`.
        let (tags, h) = unsafe { (self.tag.get_unchecked(i..i + count), i + pad) };
        // SAFETY: as above, `h < i + count`.
        unsafe {
            self.orig
                .get_unchecked(h)
                .store(head.orig, Ordering::Relaxed);
            self.len
                .get_unchecked(h)
                .store(head.len as u32, Ordering::Relaxed);
        }
        tags[pad].store(head.tag(), Ordering::Relaxed);
        if count > 1 {
            for tag in &tags[..pad] {
                tag.store(Tag::Pad.encode(), Ordering::Relaxed);
            }
            for (back, tag) in tags[pad + 1..].iter().enumerate() {
                tag.store(Tag::Body { back: back + 1 }.encode(), Ordering::Relaxed);
            }
        }
    }

    /// Marks `start..start + count` free again. The caller holds the area lock.
    #[inline(always)]
    pub(crate) fn clear_run(&self, start: usize, count: usize) {
        let i = self.run_index(start, count);
        // SAFETY: `i + count` is at most the tag array's length (`run_index`).
        let tags = unsafe { self.tag.get_unchecked(i..i + count) };
        tags[0].store(Tag::Free.encode(), Ordering::Relaxed);
        // Most runs are one slot: no loop (which the compiler would unroll) for them.
        if count > 1 {
            for tag in &tags[1..] {
                tag.store(Tag::Free.encode(), Ordering::Relaxed);
            }
        }
    }

    /// The dirty prefixes of pool slots `start..start + count` (in granules of the
    /// [`dirty_shift`] of the slot size). Only the run's owner reads or writes them.
    #[inline(always)]
    pub(crate) fn dirty_run(&self, start: usize, count: usize) -> &[AtomicU8] {
        let i = self.run_index(start, count);
        // SAFETY: `i + count` is at most the dirty array's length (`run_index`).
        unsafe { self.dirty.get_unchecked(i..i + count) }
    }

    /// The head of the live run that holds `slot` (one of this area's), if `slot` holds
    /// data of one.
    #[inline(always)]
    pub(crate) fn head_of(&self, slot: usize) -> Option<Head> {
        let head = match self.tag(slot) {
            Tag::Head { .. } => slot,
            // A body slot names its head; that slot must be one of this area's and a head,
            // or the tags are not what this code wrote (which a caller race could show):
            // refuse.
            Tag::Body { back } => slot.checked_sub(back).filter(|h| *h >= self.first)?,
            Tag::Free | Tag::Pad => return None,
        };
        let cells = self.cells(head);
        match Tag::decode(cells.tag.load(Ordering::Relaxed)) {
            Tag::Head { use_, offset } => Some(Head {
                slot: head,
                use_,
                offset,
                len: cells.len.load(Ordering::Relaxed) as usize,
                orig: cells.orig.load(Ordering::Relaxed),
            }),
            _ => None,
        }
    }

    /// The mapping whose head is `slot`, if its tag is exactly `tag` (a head of that use
    /// with that offset) and its length `len`: one comparison of each, for the callers that
    /// know what they expect (unmap), which fall back to [`head_of`](Self::head_of) to
    /// tell what is wrong otherwise.
    #[inline(always)]
    pub(crate) fn head_if(&self, slot: usize, tag: u16, len: usize) -> Option<Head> {
        let cells = self.cells(slot);
        if cells.tag.load(Ordering::Relaxed) != tag
            || cells.len.load(Ordering::Relaxed) as usize != len
        {
            return None;
        }
        let Tag::Head { use_, offset } = Tag::decode(tag) else {
            return None;
        };
        Some(Head {
            slot,
            use_,
            offset,
            len,
            orig: cells.orig.load(Ordering::Relaxed),
        })
    }

    /// Whether `head` is still what its slot records (tag, length and original).
    #[inline(always)]
    pub(crate) fn still(&self, head: &Head) -> bool {
        let cells = self.cells(head.slot);
        cells.tag.load(Ordering::Relaxed) == head.tag()
            && cells.len.load(Ordering::Relaxed) as usize == head.len
            && cells.orig.load(Ordering::Relaxed) == head.orig
    }

    /// Bytes from the start of `slot` that may hold data (a multiple of the granule, a
    /// 128th of a slot of `1 << slot_shift` bytes). Only the slot's owner calls this.
    #[inline(always)]
    pub(crate) fn dirty(&self, slot: usize, slot_shift: u32) -> usize {
        let units = self.cells(slot).dirty.load(Ordering::Relaxed) as usize;
        units << slot_shift.saturating_sub(DIRTY_UNITS_SHIFT)
    }

    /// Records that the first `bytes` bytes of `slot` may hold data (rounded up to the
    /// granule). Only the slot's owner calls this.
    #[inline(always)]
    pub(crate) fn set_dirty(&self, slot: usize, bytes: usize, slot_shift: u32) {
        debug_assert!(bytes <= 1 << slot_shift);
        let shift = slot_shift.saturating_sub(DIRTY_UNITS_SHIFT);
        let units = bytes.div_ceil(1 << shift);
        let cell = self.cells(slot).dirty;
        // Most maps reuse a slot with data of the same extent: leave its line clean then.
        if cell.load(Ordering::Relaxed) as usize != units {
            cell.store(units as u8, Ordering::Relaxed);
        }
    }

    /// Number of padding slots directly in front of `head`, not looking before `floor`.
    #[inline(always)]
    pub(crate) fn pad_before(&self, head: usize, floor: usize) -> usize {
        let mut pad = 0;
        while head - pad > floor && self.raw_tag(head - pad - 1) == Tag::Pad.encode() {
            pad += 1;
        }
        pad
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        let tags = [
            Tag::Free,
            Tag::Pad,
            Tag::Body { back: 1 },
            Tag::Body {
                back: MAX_SEGMENT_SLOTS - 1,
            },
            Tag::Head {
                use_: Use::Coherent,
                offset: 0,
            },
            Tag::Head {
                use_: Use::Stream(Direction::FromDevice),
                offset: MAX_SLOT_SIZE - 1,
            },
            Tag::Head {
                use_: Use::Stream(Direction::Bidirectional),
                offset: 7,
            },
            Tag::Head {
                use_: Use::Stream(Direction::ToDevice),
                offset: 2047,
            },
        ];
        for tag in tags {
            assert_eq!(Tag::decode(tag.encode()), tag);
        }
    }

    #[test]
    fn run_is_found_from_every_data_slot_and_padding_is_counted() {
        let slots = Slots::new(0, 16).unwrap();
        let head = Head {
            slot: 5,
            use_: Use::Stream(Direction::ToDevice),
            offset: 100,
            len: 5000,
            orig: ptr::without_provenance_mut(0x1234),
        };
        slots.write_run(3, 5, 2, head);
        assert_eq!(slots.head_of(3), None);
        assert_eq!(slots.head_of(4), None);
        for s in 5..8 {
            assert_eq!(slots.head_of(s), Some(head));
        }
        assert_eq!(slots.head_of(8), None);
        assert_eq!(slots.pad_before(5, 0), 2);
        assert_eq!(slots.pad_before(5, 4), 1);
        slots.clear_run(3, 5);
        assert!((0..16).all(|s| slots.tag(s) == Tag::Free));
    }
}
