//! Android pvmfw's way of bouncing virtio buffers, written from its published description:
//! one buddy frame allocator over the shared memory under one spin lock, a block of the
//! buffer's size (16-byte aligned, that of a `u128`) per buffer, and pvmfw's own copy rules:
//! `share` copies the buffer in unless the device is to write it (`DeviceToDriver`, our
//! [`FromDevice`](Direction::FromDevice)), `unshare` copies it back unless the device was
//! only to read it (`DriverToDevice`, our [`ToDevice`](Direction::ToDevice)).
//!
//! Beside [`buddy`](crate::buddy), which is the same allocator copying as Linux does (in
//! for every direction), this is the baseline of the performance target "at least 1.0x
//! pvmfw with its own copy rules": it copies less than a Linux-semantics pool, because a
//! `FromDevice` bounce buffer keeps whatever the block held before, which the device may
//! read (pvmfw's trade, not ours).
//!
//! [`SharedPool`] is the allocator alone, over offsets into memory the caller owns, so that
//! the end-to-end benchmark's pvmfw-style `virtio_drivers::Hal` can put it over the test
//! transport's device memory.

use crate::region::Region;
use crate::spin::SpinLock;
use crate::{Bounce, Direction, DmaAddr, Error, PAGE_SIZE};
use buddy_system_allocator::FrameAllocator;
use core::alloc::Layout;
use core::ptr::NonNull;

/// Order of the frame allocator: blocks up to 2^31 bytes.
const ORDER: usize = 32;
/// Alignment pvmfw asks of its bounce buffers (that of a `u128`).
pub const ALIGN: usize = 16;

struct State {
    frames: FrameAllocator<ORDER>,
    /// Bytes in live blocks.
    used: usize,
    high_water: usize,
}

/// A buddy frame allocator at byte granularity over `0..size` under one spin lock, the
/// allocator of pvmfw's shared memory. It hands out offsets; it knows nothing of the
/// memory itself (so no metadata of it lives there).
pub struct SharedPool {
    size: usize,
    state: SpinLock<State>,
}

impl core::fmt::Debug for SharedPool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedPool")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl SharedPool {
    /// An allocator over offsets `0..size`.
    ///
    /// # Errors
    ///
    /// If `size` is under a page or over the allocator's reach (2 GiB).
    pub fn new(size: usize) -> Result<Self, String> {
        if !(PAGE_SIZE..1 << (ORDER - 1)).contains(&size) {
            return Err(format!(
                "a pvmfw-style pool of {size} bytes is not supported (from {PAGE_SIZE} bytes to under 2 GiB)"
            ));
        }
        let mut frames = FrameAllocator::new();
        frames.add_frame(0, size);
        Ok(Self {
            size,
            state: SpinLock::new(State {
                frames,
                used: 0,
                high_water: 0,
            }),
        })
    }

    /// Bytes the allocator hands out from.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes the buddy system gives a request of `layout`.
    pub fn block(layout: Layout) -> usize {
        layout.size().next_power_of_two().max(layout.align())
    }

    /// The offset of a fresh block for `layout` (aligned to its own size, as buddy blocks
    /// are), or `None` when no block is free.
    #[inline]
    pub fn alloc(&self, layout: Layout) -> Option<usize> {
        let mut state = self.state.lock();
        let off = state.frames.alloc_aligned(layout)?;
        state.used += Self::block(layout);
        state.high_water = state.high_water.max(state.used);
        Some(off)
    }

    /// Gives back the block at `off`, allocated with `layout`.
    ///
    /// # Safety
    ///
    /// `off` came from [`alloc`](Self::alloc) of this allocator with `layout` and has not
    /// been given back since (the buddy system would otherwise hand one block out twice).
    #[inline]
    pub unsafe fn dealloc(&self, off: usize, layout: Layout) {
        let mut state = self.state.lock();
        state.frames.dealloc_aligned(off, layout);
        state.used -= Self::block(layout);
    }

    /// Bytes in live blocks.
    pub fn used(&self) -> usize {
        self.state.lock().used
    }

    /// Most bytes in live blocks at once.
    pub fn high_water(&self) -> usize {
        self.state.lock().high_water
    }
}

/// The layout pvmfw asks for a buffer of `len` bytes.
pub fn buffer_layout(len: usize) -> Option<Layout> {
    Layout::from_size_align(len, ALIGN).ok()
}

/// The pvmfw baseline: [`SharedPool`] over a region of its own, with pvmfw's copy rules.
#[derive(Debug)]
pub struct Pvmfw {
    region: Region,
    pool: SharedPool,
}

impl Pvmfw {
    /// A pool over `size` bytes.
    ///
    /// # Errors
    ///
    /// As [`SharedPool::new`], or if memory cannot be had.
    pub fn new(size: usize) -> Result<Self, String> {
        let pool = SharedPool::new(size)?;
        Ok(Self {
            region: Region::new(size)?,
            pool,
        })
    }
}

impl Bounce for Pvmfw {
    fn name(&self) -> &'static str {
        "pvmfw"
    }

    fn capacity(&self) -> usize {
        self.region.len()
    }

    fn used_bytes(&self) -> usize {
        self.pool.used()
    }

    fn high_water_bytes(&self) -> usize {
        self.pool.high_water()
    }

    #[inline]
    unsafe fn map(&self, buf: NonNull<[u8]>, dir: Direction) -> Result<DmaAddr, Error> {
        let len = buf.len();
        if len == 0 || len > crate::MAX_MAPPING {
            return Err(Error::Refused);
        }
        let layout = buffer_layout(len).ok_or(Error::Refused)?;
        let off = self.pool.alloc(layout).ok_or(Error::Full)?;
        if dir != Direction::FromDevice {
            // SAFETY: `buf` is readable and outside the pool (caller's promise); the block at
            // `off` is ours (just allocated) and holds at least `len` bytes in the region.
            unsafe { crate::copy(buf.cast::<u8>().as_ptr(), self.region.base().add(off), len) };
        }
        Ok(self.region.dma(off))
    }

    #[inline]
    unsafe fn unmap(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
        skip_sync: bool,
    ) -> Result<(), Error> {
        let off = self.region.offset(dma).ok_or(Error::NotMapped)?;
        let len = buf.len();
        let layout = buffer_layout(len).ok_or(Error::NotMapped)?;
        if dir != Direction::ToDevice && !skip_sync {
            // SAFETY: `dma` is a live mapping of `buf` (caller's promise), so its block holds
            // `len` bytes in the region, and `buf` is writable.
            unsafe { crate::copy(self.region.base().add(off), buf.cast::<u8>().as_ptr(), len) };
        }
        // SAFETY: `dma` is a live mapping of `buf` (caller's promise): `map` allocated its
        // block at `off` with this same layout, and it is given back once, here.
        unsafe { self.pool.dealloc(off, layout) };
        Ok(())
    }

    fn translate(&self, dma: DmaAddr, len: usize) -> Option<NonNull<u8>> {
        self.region.translate(dma, len)
    }
}
