//! An [`Allocator`] whose blocks are pool memory, for drivers that fill buffers in place
//! (`Vec<u8, &SharedAlloc>`) instead of bouncing them.
//!
//! # Design
//!
//! Blocks of up to [`SharedAlloc::MAX_CLASS`] bytes come from size classes (powers of two
//! from 16 bytes), carved from 4 KiB chunks that are coherent allocations of the pool;
//! larger blocks, or blocks aligned to more than a class, are coherent allocations of their
//! own. Everything the allocator knows (the chunks, a bitmap of free blocks per chunk, the
//! large allocations) lives in ordinary heap memory behind one lock, never in the pool: the
//! device can write the pool at any time, so an allocator whose free lists lived there
//! (a linked-list allocator, say) could be steered by it into handing out the same block
//! twice, or memory outside the pool. Nothing the allocator decides depends on a pool byte.
//!
//! A chunk whose last block is freed goes back to the pool at once (a cache of empty
//! chunks would hold one page per class after a `Vec` grew through them, which a small
//! pool cannot spare); a block allocated and freed in a loop therefore takes, zeroes and
//! frees a chunk each time. Dropping the allocator gives everything back.
//!
//! # The device may change these bytes at any time
//!
//! A `Vec<u8, &SharedAlloc>` is ordinary Rust memory as far as the compiler knows, but the
//! device sees it and may write it whenever it likes (that is the point: no copy). So its
//! contents are device-controlled:
//!
//! - never trust them twice: read a value once, into private memory, check it there and
//!   use that copy (a length checked and then read again may have changed in between);
//! - never build anything whose validity depends on them in place (a `&str`, an enum, a
//!   `bool`, a pointer): copy the bytes out first, or read them with the copies of
//!   [`shared`](crate::shared);
//! - by Rust's rules a device write racing a plain CPU access is a data race; what the CPU
//!   sees is then whatever the hardware does (on real machines: some mix of old and new
//!   bytes). Use the allocator for buffers the device owns while it works on them (the
//!   driver touches them only after the device is done) and the copies of `shared` for
//!   anything read while the device may still write.
//!
//! [`Allocator`]: allocator_api2::alloc::Allocator

use crate::api::DmaPool;
use crate::pool::Coherent;
use crate::request::{Constraints, DmaAddr};
use crate::shared::{copy_from_shared, copy_to_shared, fill_shared};
use crate::sync::{DefaultRawMutex, Mutex};
use alloc::vec::Vec;
use allocator_api2::alloc::{AllocError, Allocator};
use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;
use lock_api::RawMutex;

/// Bytes of a chunk: one page, carved into blocks of one class.
const CHUNK: usize = 4096;
/// The smallest class, as a shift (16 bytes).
const MIN_SHIFT: u32 = 4;
/// The largest class, as a shift (2048 bytes: two blocks a chunk).
const MAX_SHIFT: u32 = 11;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// Words of a chunk's free bitmap (a bit a block of the smallest class).
const WORDS: usize = (CHUNK >> MIN_SHIFT) / 64;

/// One chunk of blocks of one class.
struct Chunk {
    mem: Coherent,
    /// A set bit is a free block.
    free: [u64; WORDS],
    used: usize,
}

impl Chunk {
    fn new(mem: Coherent, blocks: usize) -> Self {
        let mut free = [0u64; WORDS];
        for (w, word) in free.iter_mut().enumerate() {
            let first = w * 64;
            *word = match blocks.saturating_sub(first) {
                0 => 0,
                n if n >= 64 => !0,
                n => (1u64 << n) - 1,
            };
        }
        Self { mem, free, used: 0 }
    }

    fn base(&self) -> usize {
        self.mem.cpu().as_ptr().addr()
    }

    fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.base()) < CHUNK
    }

    /// Takes the first free block whose address is a multiple of `align`.
    fn take(&mut self, shift: u32, align: usize) -> Option<NonNull<u8>> {
        for w in 0..WORDS {
            let mut bits = self.free[w];
            while bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let block = w * 64 + bit;
                let offset = block << shift;
                let ptr = self.mem.cpu().as_ptr().wrapping_add(offset);
                if ptr.addr() % align == 0 {
                    self.free[w] &= !(1 << bit);
                    self.used += 1;
                    return NonNull::new(ptr);
                }
            }
        }
        None
    }

    /// Gives back the block at `addr`; `false` if it is not a taken block of this chunk.
    fn give(&mut self, shift: u32, addr: usize) -> bool {
        let offset = addr - self.base();
        if offset & ((1 << shift) - 1) != 0 {
            return false;
        }
        let block = offset >> shift;
        let (w, bit) = (block / 64, block % 64);
        if self.free[w] & (1 << bit) != 0 {
            return false;
        }
        self.free[w] |= 1 << bit;
        self.used -= 1;
        true
    }
}

/// What the lock guards.
#[derive(Default)]
struct State {
    /// Chunks of each class, smallest class first.
    classes: [Vec<Chunk>; CLASSES],
    /// Blocks too large (or too aligned) for a class, one coherent allocation each.
    large: Vec<Coherent>,
}

/// An [`Allocator`] over a pool: `Vec<u8, &SharedAlloc>`,
/// `Box<[u8], &SharedAlloc>` and the other `allocator_api2` collections in memory the
/// device can address, with sub-page blocks. See the [module docs](self) for the design
/// and for what the device may do to the bytes.
///
/// `grow` and `shrink` keep a block in place while it stays in its class, and otherwise
/// move the contents with the copies of [`shared`](crate::shared) (a plain copy would
/// race the device). [`dma_addr`](Self::dma_addr) gives the device address of any byte of
/// a live block.
///
/// # Examples
///
/// ```
/// use allocator_api2::vec::Vec;
/// use swiotlb::{Config, Constraints, Pool, SharedAlloc};
///
/// let pool = Pool::allocate(1 << 20, Config::new())?;
/// let alloc = SharedAlloc::new(&pool, Constraints::NONE);
/// let mut frame: Vec<u8, _> = Vec::with_capacity_in(1514, &alloc);
/// frame.extend_from_slice(&[0xff; 6]); // written in place, in pool memory
/// let dma = alloc.dma_addr(frame.as_ptr()).expect("a live block");
/// assert!(pool.contains(dma));
/// // ... give `dma` to the device; read what it wrote once, into private memory ...
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedAlloc<'p, P: DmaPool + ?Sized, R: RawMutex = DefaultRawMutex> {
    pool: &'p P,
    constraints: Constraints,
    state: Mutex<R, State>,
}

impl<'p, P: DmaPool + ?Sized> SharedAlloc<'p, P> {
    /// An allocator over `pool`, whose chunks obey `constraints` (a device's address
    /// limit, say); `min_align_mask` is ignored, as by [`DmaPool::alloc`].
    pub fn new(pool: &'p P, constraints: Constraints) -> Self {
        Self::with_raw_mutex(pool, constraints)
    }
}

impl<'p, P: DmaPool + ?Sized, R: RawMutex> SharedAlloc<'p, P, R> {
    /// The largest block served from a size class; larger ones are coherent allocations
    /// of their own (whole slots).
    pub const MAX_CLASS: usize = 1 << MAX_SHIFT;

    /// As [`new`](SharedAlloc::new), with `R` as the lock (one that masks interrupts, for
    /// an allocator used from interrupt handlers).
    pub fn with_raw_mutex(pool: &'p P, constraints: Constraints) -> Self {
        Self {
            pool,
            constraints,
            state: Mutex::new(State::default()),
        }
    }

    /// The device address of `ptr`, a byte of a live block of this allocator (or `None`).
    /// A collection that reallocates moves its bytes: ask again after it grows.
    pub fn dma_addr(&self, ptr: *const u8) -> Option<DmaAddr> {
        let addr = ptr.addr();
        let state = self.state.lock();
        let within = |mem: &Coherent, len: usize| {
            let off = addr.wrapping_sub(mem.cpu().as_ptr().addr());
            (off < len).then(|| mem.dma() + off as u64)
        };
        state
            .classes
            .iter()
            .flatten()
            .find_map(|chunk| within(&chunk.mem, CHUNK))
            .or_else(|| state.large.iter().find_map(|mem| within(mem, mem.size())))
    }

    /// Bytes the allocator holds from the pool: chunks and large blocks, as asked of it.
    pub fn held_bytes(&self) -> usize {
        let state = self.state.lock();
        state.classes.iter().map(Vec::len).sum::<usize>() * CHUNK
            + state.large.iter().map(Coherent::size).sum::<usize>()
    }

    fn give_back(&self, mem: Coherent) {
        // The pool made it; a refusal (a broken `DmaPool`) hands the handle back, and
        // dropping a `Coherent` leaves the allocation live (it has no `Drop`).
        let _ = self.pool.free(mem);
    }

    /// The class of a layout (its index), or `None` for a large block.
    fn class_of(layout: Layout) -> Option<usize> {
        let need = layout.size().max(layout.align()).max(1 << MIN_SHIFT);
        if need > Self::MAX_CLASS {
            return None;
        }
        let shift = need.next_power_of_two().trailing_zeros();
        Some((shift - MIN_SHIFT) as usize)
    }

    fn alloc_small(&self, class: usize, align: usize) -> Result<NonNull<[u8]>, AllocError> {
        let shift = class as u32 + MIN_SHIFT;
        let mut state = self.state.lock();
        let chunks = &mut state.classes[class];
        for chunk in chunks.iter_mut() {
            if let Some(ptr) = chunk.take(shift, align) {
                return Ok(NonNull::slice_from_raw_parts(ptr, 1 << shift));
            }
        }
        let mem = self
            .pool
            .alloc(CHUNK, &self.constraints)
            .map_err(|_| AllocError)?;
        let mut chunk = Chunk::new(mem, CHUNK >> shift);
        match chunk.take(shift, align) {
            Some(ptr) => {
                chunks.push(chunk);
                Ok(NonNull::slice_from_raw_parts(ptr, 1 << shift))
            }
            None => {
                // The pool's CPU addresses are not aligned like its device addresses, and
                // no block of a new chunk meets `align`.
                drop(state);
                self.give_back(chunk.mem);
                Err(AllocError)
            }
        }
    }

    fn alloc_large(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let align_mask = (layout.align() as u64 - 1).max(self.constraints.alloc_align_mask);
        let constraints = self.constraints.alloc_align_mask(align_mask);
        let mem = self
            .pool
            .alloc(layout.size(), &constraints)
            .map_err(|_| AllocError)?;
        let ptr = mem.cpu();
        if ptr.as_ptr().addr() % layout.align() != 0 {
            self.give_back(mem);
            return Err(AllocError);
        }
        self.state.lock().large.push(mem);
        Ok(NonNull::slice_from_raw_parts(ptr, layout.size()))
    }

    fn alloc(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(NonNull::slice_from_raw_parts(dangling(layout), 0));
        }
        match Self::class_of(layout) {
            Some(class) => self.alloc_small(class, layout.align()),
            None => self.alloc_large(layout),
        }
    }

    /// Frees the block at `ptr` allocated with (a layout that fits) `layout`.
    fn free(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        let addr = ptr.as_ptr().addr();
        let mut state = self.state.lock();
        match Self::class_of(layout) {
            Some(class) => {
                let shift = class as u32 + MIN_SHIFT;
                let chunks = &mut state.classes[class];
                let Some(i) = chunks.iter().position(|c| c.contains(addr)) else {
                    debug_assert!(false, "deallocate of {addr:#x}: no chunk of its class");
                    return;
                };
                let given = chunks[i].give(shift, addr);
                debug_assert!(given, "deallocate of {addr:#x}: not a live block");
                if chunks[i].used == 0 {
                    let chunk = chunks.swap_remove(i);
                    drop(state);
                    self.give_back(chunk.mem);
                }
            }
            None => {
                let Some(i) = state.large.iter().position(|m| m.cpu() == ptr) else {
                    debug_assert!(false, "deallocate of {addr:#x}: no such large block");
                    return;
                };
                let mem = state.large.swap_remove(i);
                drop(state);
                self.give_back(mem);
            }
        }
    }

    /// Moves a block to one for `new` (grow or shrink): in place while it stays in its
    /// class and alignment, otherwise a new block, `keep` bytes copied, the old freed.
    ///
    /// # Safety
    ///
    /// `ptr` is a live block of this allocator that `old` fits, `keep <= old.size()` and
    /// `keep <= new.size()`.
    unsafe fn realloc(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        keep: usize,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() != 0 && new.size() != 0 {
            if let (Some(a), Some(b)) = (Self::class_of(old), Self::class_of(new)) {
                if a == b && ptr.as_ptr().addr() % new.align() == 0 {
                    let size = 1 << (a as u32 + MIN_SHIFT);
                    return Ok(NonNull::slice_from_raw_parts(ptr, size));
                }
            }
        }
        let block = self.alloc(new)?;
        // SAFETY: both blocks are live blocks of ours (pool memory, or dangling with
        // `keep == 0`), distinct, each at least `keep` bytes (caller's promise).
        unsafe { copy_shared(block.cast::<u8>().as_ptr(), ptr.as_ptr(), keep) };
        self.free(ptr, old);
        Ok(block)
    }
}

/// A well-aligned dangling pointer for a zero-sized block.
fn dangling(layout: Layout) -> NonNull<u8> {
    // `align` is a non-zero power of two, so this is a valid, non-null address.
    NonNull::new(core::ptr::without_provenance_mut(layout.align())).unwrap_or(NonNull::dangling())
}

/// Copies `len` bytes between two blocks of pool memory, through a private buffer: each
/// source byte is read once, each destination byte written once.
///
/// # Safety
///
/// `src` is valid for reads and `dst` for writes of `len` bytes, both in memory only the
/// caller and the device use, not overlapping.
unsafe fn copy_shared(dst: *mut u8, src: *const u8, len: usize) {
    let mut tmp = [0u8; 256];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(tmp.len());
        // SAFETY: in bounds of both blocks (caller's promise), `tmp` is private.
        unsafe {
            copy_from_shared(tmp.as_mut_ptr(), src.add(done), n);
            copy_to_shared(dst.add(done), tmp.as_ptr(), n);
        }
        done += n;
    }
}

// SAFETY: a block is a run of pool memory that the allocator's metadata (outside the pool,
// under the lock) gives to one caller until it is deallocated, so blocks never overlap; it
// stays valid until it is freed or the allocator is dropped (which frees every chunk), and
// moving the allocator moves only the metadata. Blocks are aligned as asked (checked on
// the address) and at least the size asked. Any live block may be passed to any method.
unsafe impl<P: DmaPool + ?Sized, R: RawMutex> Allocator for SharedAlloc<'_, P, R> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.alloc(layout)
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.alloc(layout)?;
        // SAFETY: the block is ours, in pool memory (or empty).
        unsafe { fill_shared(block.cast::<u8>().as_ptr(), 0, block.len()) };
        Ok(block)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        self.free(ptr, layout);
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's promise; `old <= new` for a grow.
        unsafe { self.realloc(ptr, old_layout, new_layout, old_layout.size()) }
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: as in `grow`.
        let block = unsafe { self.realloc(ptr, old_layout, new_layout, old_layout.size())? };
        let tail = block.len() - old_layout.size();
        // SAFETY: the bytes past the old size are the new block's, in pool memory.
        unsafe { fill_shared(block.cast::<u8>().as_ptr().add(old_layout.size()), 0, tail) };
        Ok(block)
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's promise; `new <= old` for a shrink.
        unsafe { self.realloc(ptr, old_layout, new_layout, new_layout.size()) }
    }
}

impl<P: DmaPool + ?Sized, R: RawMutex> Drop for SharedAlloc<'_, P, R> {
    /// Gives every chunk and large block back to the pool (no block outlives the
    /// allocator: the `Allocator` contract).
    fn drop(&mut self) {
        let state = core::mem::take(&mut *self.state.lock());
        for mem in state.classes.into_iter().flatten().map(|c| c.mem) {
            self.give_back(mem);
        }
        for mem in state.large {
            self.give_back(mem);
        }
    }
}

impl<P: DmaPool + ?Sized, R: RawMutex> fmt::Debug for SharedAlloc<'_, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedAlloc")
            .field("held_bytes", &self.held_bytes())
            .finish_non_exhaustive()
    }
}
