//! Safe mappings: values that own a streaming mapping (or a coherent allocation) for as long
//! as they live, and give it back when dropped.
//!
//! The raw calls of [`DmaPool`] are `unsafe` because the pool keeps a pointer to the
//! original buffer between calls and the caller must keep that buffer alive and alone. The
//! types here make the borrow checker keep that promise:
//!
//! | type             | buffer           | directions                       | on drop                        |
//! |------------------|------------------|----------------------------------|--------------------------------|
//! | [`DmaRef`]       | `&'a [u8]`       | `ToDevice`                       | unmaps                         |
//! | [`DmaMut`]       | `&'a mut [u8]`   | any (`FromDevice` with a [`Fill`]) | copies back as the direction says, unmaps |
//! | [`DmaOwned`]     | `Box<[u8]>`, `Vec<u8>` | any                        | unmaps without copying back, frees the buffer |
//! | [`CoherentGuard`] | (pool memory)   | coherent                         | frees the allocation           |
//!
//! Each is generic over `P: DmaPool + ?Sized`, so it works with any pool (a [`Pool`],
//! `dyn DmaPool`, a pool made of several regions) and borrows the pool for its life.
//!
//! # Pointers
//!
//! Every call into the pool is given a pointer freshly derived from the borrow the guard
//! holds (the `_into` / `_from` calls), never one saved across a use of the buffer: the
//! guard hands out `&mut [u8]` to the buffer between calls ([`DmaMut::as_mut_slice`]),
//! which invalidates any pointer taken before it. The pool checks that each pointer is the
//! mapping's original ([`LookupError::WrongBuffer`] otherwise).
//!
//! # Drop cannot report errors
//!
//! A guard made the mapping it unmaps, with the address, length and direction the pool
//! returned, so its unmap fails only if the pool's own bookkeeping is broken (or a `DmaPool`
//! implementation is wrong). Should it fail in a drop, the mapping stays live (its slots are
//! lost to the pool, as with a leaked `Box`) and nothing is copied: the pool changes
//! nothing on error. [`DmaMut::unmap`], [`DmaOwned::unmap`] and [`CoherentGuard::free`]
//! return the `Result` for callers who want to see it. [`DmaOwned`] keeps (leaks) its
//! buffer if its unmap fails, so that the pool never holds a pointer to freed memory.
//!
//! # `mem::forget`
//!
//! Forgetting a guard ends its borrow of the buffer while the mapping stays live in the
//! pool, with a pointer to a buffer the caller may now use, free or reuse. That is sound,
//! for the same reason forgetting a `Box` is: the pool reads or writes an original only
//! during a call on its mapping (map, a sync, the unmap), and every such call is `unsafe`
//! and may be made only by the mapping's owner ([`Pool::map`]'s contract), which was the
//! guard. No safe call reaches it: the guards only touch their own mappings;
//! [`Pool::free`] takes a [`Coherent`] handle, which names only coherent allocations (a
//! streaming address given as one is refused with `WrongKind`); [`Pool::lookup`] reports
//! the original as a raw pointer, which only `unsafe` code can use. So after a forget the
//! original is never written again; the mapping's slots stay taken (a leak, as with
//! `mem::forget` of a `Vec`), and the device keeps seeing the bounce buffer, which held
//! only what the mapping showed it. A forgotten [`CoherentGuard`] leaks its allocation
//! the same way.
//!
//! # Examples
//!
//! ```
//! use swiotlb::{Config, Constraints, DmaMut, DmaRef, Fill, Pool};
//!
//! let pool = Pool::allocate(1 << 20, Config::new())?;
//! let command = [0x5au8; 64];
//! let mut reply = vec![0u8; 4096];
//!
//! let cmd = DmaRef::to_device(&pool, &command, &Constraints::NONE)?;
//! let mut data = DmaMut::from_device(&pool, &mut reply, &Constraints::NONE, Fill::Zero)?;
//! // Give `cmd.dma()` and `data.dma()` to the device; here it writes the pool itself.
//! # let device = pool.translate(data.dma(), 16).unwrap();
//! # unsafe { swiotlb::shared::fill_shared(device.as_ptr(), 0xa5, 16) };
//! data.sync_for_cpu(..16)?; // the first 16 bytes the device wrote, while still mapped
//! assert_eq!(data.as_slice()[..16], [0xa5; 16]);
//! drop(cmd);
//! data.unmap()?; // the whole bounce buffer is copied back (zeros past what it wrote)
//! assert_eq!(reply[..16], [0xa5; 16]);
//! assert_eq!(pool.stats().used_slots, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::api::DmaPool;
use crate::error::{LookupError, MapError};
#[cfg(doc)]
use crate::pool::Pool;
use crate::pool::{Coherent, ForeignAllocation};
use crate::request::{Attrs, Constraints, Direction, DmaAddr, Fill};
use crate::shared::{copy_from_shared, copy_to_shared};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::ops::{Bound, RangeBounds};
use core::ptr::NonNull;

/// The live mapping a guard owns: where it is, and what it is.
#[derive(Clone, Copy)]
struct Live {
    dma: DmaAddr,
    len: usize,
    dir: Direction,
}

impl Live {
    /// `range` of the mapping as `start..end` byte offsets, or the error a sync past the
    /// mapping gets.
    fn span(&self, range: impl RangeBounds<usize>) -> Result<(usize, usize), LookupError> {
        let start = match range.start_bound() {
            Bound::Included(&s) => Some(s),
            Bound::Excluded(&s) => s.checked_add(1),
            Bound::Unbounded => Some(0),
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => Some(self.len),
        };
        match (start, end) {
            (Some(start), Some(end)) if start <= end && end <= self.len => Ok((start, end)),
            (start, end) => {
                let start = start.unwrap_or(usize::MAX);
                Err(LookupError::OutOfRange {
                    dma: self.dma.saturating_add(start as u64),
                    len: end.unwrap_or(usize::MAX).saturating_sub(start),
                    start: self.dma,
                    mapped: self.len,
                })
            }
        }
    }

    fn at(&self, offset: usize) -> DmaAddr {
        // No overflow: the mapping's bytes are device addresses.
        self.dma + offset as u64
    }
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}, {} bytes, {:?}", self.dma, self.len, self.dir)
    }
}

// === impl DmaRef ===

/// A `ToDevice` mapping of a borrowed `&[u8]`: the device reads a copy of it at
/// [`dma`](Self::dma) until the guard is dropped or [`unmap`](Self::unmap)ped.
///
/// The buffer stays readable meanwhile (a shared borrow), and nothing is ever copied back
/// into it.
#[must_use = "dropping the guard unmaps the buffer at once"]
pub struct DmaRef<'a, P: DmaPool + ?Sized> {
    pool: &'a P,
    buf: &'a [u8],
    live: Live,
    done: bool,
}

impl<'a, P: DmaPool + ?Sized> DmaRef<'a, P> {
    /// Maps `buf` for the device to read, under `constraints`: copies it into the pool.
    ///
    /// # Errors
    ///
    /// [`MapError`], as [`Pool::map`]; nothing is mapped then.
    pub fn to_device(
        pool: &'a P,
        buf: &'a [u8],
        constraints: &Constraints,
    ) -> Result<Self, MapError> {
        let dir = Direction::ToDevice;
        // SAFETY: `buf` is borrowed (shared) by the guard for as long as it lives, so it
        // stays valid for reads and nobody writes it; the pool only reads a `ToDevice`
        // original. The guard unmaps before the borrow ends, except when it is forgotten,
        // and then no call on the mapping is ever made again (module docs, `mem::forget`).
        let dma = unsafe { pool.map_attrs(NonNull::from(buf), dir, constraints, Attrs::NONE)? };
        Ok(Self {
            pool,
            buf,
            live: Live {
                dma,
                len: buf.len(),
                dir,
            },
            done: false,
        })
    }

    /// Device address of the first byte.
    pub fn dma(&self) -> DmaAddr {
        self.live.dma
    }

    /// Bytes mapped (never zero).
    pub fn len(&self) -> usize {
        self.live.len
    }

    /// Always `false`: a mapping holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The buffer (the CPU's copy, which the device does not see).
    pub fn as_slice(&self) -> &[u8] {
        self.buf
    }

    /// Copies `range` of the buffer into the bounce buffer again (after a device that
    /// should not have written it did, say).
    ///
    /// # Errors
    ///
    /// [`LookupError::OutOfRange`] for a range past the buffer, [`LookupError::ZeroLength`]
    /// for an empty one; nothing is copied then.
    pub fn sync_for_device(&mut self, range: impl RangeBounds<usize>) -> Result<(), LookupError> {
        let (start, end) = self.live.span(range)?;
        let part = NonNull::from(&self.buf[start..end]);
        // SAFETY: the guard owns the mapping and `&mut self` keeps any other call on it
        // out; `part` is freshly derived from the borrowed original, readable, and the pool
        // only reads it.
        unsafe {
            self.pool
                .sync_for_device_from(self.live.at(start), part, self.live.dir)
        }
    }

    /// Unmaps now, returning what the pool said.
    ///
    /// # Errors
    ///
    /// [`LookupError`] only if the pool's bookkeeping is broken (module docs); the mapping
    /// then stays live.
    pub fn unmap(mut self) -> Result<(), LookupError> {
        self.release()
    }

    fn release(&mut self) -> Result<(), LookupError> {
        self.done = true;
        // SAFETY: the guard owns the mapping and unmaps it once (`done`); the pointer is
        // freshly derived from the borrowed original, and a `ToDevice` unmap copies nothing
        // back into it.
        unsafe {
            self.pool.unmap_into(
                self.live.dma,
                NonNull::from(self.buf),
                self.live.dir,
                Attrs::NONE,
            )
        }
    }
}

impl<P: DmaPool + ?Sized> Drop for DmaRef<'_, P> {
    /// Unmaps; an error leaves the mapping live (module docs).
    fn drop(&mut self) {
        if !self.done {
            let _ = self.release();
        }
    }
}

impl<P: DmaPool + ?Sized> fmt::Debug for DmaRef<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DmaRef({:?})", self.live)
    }
}

// === impl DmaMut ===

/// A mapping of a borrowed `&mut [u8]`, in any direction; usually one the device writes
/// ([`from_device`](Self::from_device), [`bidirectional`](Self::bidirectional)).
///
/// Between pool calls the CPU may use the buffer through [`as_slice`](Self::as_slice) and
/// [`as_mut_slice`](Self::as_mut_slice): what it writes reaches the device only through
/// [`sync_for_device`](Self::sync_for_device), and what the device wrote reaches the
/// buffer only through [`sync_for_cpu`](Self::sync_for_cpu) or the unmap. Dropping the
/// guard unmaps, copying the whole bounce buffer back for `FromDevice` and
/// `Bidirectional`; [`unmap`](Self::unmap) does the same and reports the result, and
/// [`discard`](Self::discard) unmaps without the copy.
///
/// The buffer is borrowed for the guard's life, so it cannot be touched behind the pool's
/// back:
///
/// ```compile_fail
/// # use swiotlb::{Config, Constraints, DmaMut, Fill, Pool};
/// # let pool = Pool::allocate(1 << 20, Config::new()).unwrap();
/// let mut buf = [0u8; 64];
/// let m = DmaMut::from_device(&pool, &mut buf, &Constraints::NONE, Fill::Zero).unwrap();
/// buf[0] = 1; // error: `buf` is borrowed by the mapping; use `m.as_mut_slice()`
/// drop(m);
/// ```
#[must_use = "dropping the guard unmaps the buffer at once"]
pub struct DmaMut<'a, P: DmaPool + ?Sized> {
    pool: &'a P,
    buf: &'a mut [u8],
    live: Live,
    done: bool,
}

impl<'a, P: DmaPool + ?Sized> DmaMut<'a, P> {
    /// Maps `buf` for the device to write. With [`Fill::Zero`] the device is shown zeros,
    /// and a whole copy back turns the bytes it did not write into zeros; with
    /// [`Fill::Original`] (Linux's rule) it is shown the buffer's old contents, which a
    /// whole copy back then keeps. `SEMANTICS.md` has the trade-off; in a confidential VM,
    /// `Zero` keeps the buffer's old contents private.
    ///
    /// # Errors
    ///
    /// [`MapError`], as [`Pool::map`]; nothing is mapped then.
    pub fn from_device(
        pool: &'a P,
        buf: &'a mut [u8],
        constraints: &Constraints,
        fill: Fill,
    ) -> Result<Self, MapError> {
        Self::map(
            pool,
            buf,
            Direction::FromDevice,
            constraints,
            Attrs::NONE.fill(fill),
        )
    }

    /// Maps `buf` for the device to read and write: copies it into the pool.
    ///
    /// # Errors
    ///
    /// [`MapError`], as [`Pool::map`]; nothing is mapped then.
    pub fn bidirectional(
        pool: &'a P,
        buf: &'a mut [u8],
        constraints: &Constraints,
    ) -> Result<Self, MapError> {
        Self::map(
            pool,
            buf,
            Direction::Bidirectional,
            constraints,
            Attrs::NONE,
        )
    }

    /// Maps `buf` in direction `dir` with `attrs` (only `attrs.fill` matters at map).
    ///
    /// # Errors
    ///
    /// [`MapError`], as [`Pool::map_attrs`]; nothing is mapped then.
    pub fn map(
        pool: &'a P,
        buf: &'a mut [u8],
        dir: Direction,
        constraints: &Constraints,
        attrs: Attrs,
    ) -> Result<Self, MapError> {
        let len = buf.len();
        // SAFETY: `buf` is borrowed (exclusively) by the guard for as long as it lives, so
        // it stays valid for reads and writes, and between pool calls only the guard's
        // holder touches it, through the guard. Every later call gets a pointer freshly
        // derived from the borrow. The guard unmaps before the borrow ends, except when it
        // is forgotten, and then no call on the mapping is ever made again (module docs).
        let dma = unsafe { pool.map_attrs(NonNull::from(&mut *buf), dir, constraints, attrs)? };
        Ok(Self {
            pool,
            buf,
            live: Live { dma, len, dir },
            done: false,
        })
    }

    /// Device address of the first byte.
    pub fn dma(&self) -> DmaAddr {
        self.live.dma
    }

    /// Bytes mapped (never zero).
    pub fn len(&self) -> usize {
        self.live.len
    }

    /// Always `false`: a mapping holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The mapping's direction.
    pub fn direction(&self) -> Direction {
        self.live.dir
    }

    /// The CPU's copy: what it was at map, changed by the CPU's writes and by the syncs for
    /// the CPU since.
    pub fn as_slice(&self) -> &[u8] {
        self.buf
    }

    /// The CPU's copy, to write; the device sees the writes after
    /// [`sync_for_device`](Self::sync_for_device).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.buf
    }

    /// Copies `range` of the bounce buffer (what the device wrote) into the buffer, for
    /// `FromDevice` and `Bidirectional`; nothing for `ToDevice`.
    ///
    /// # Errors
    ///
    /// [`LookupError::OutOfRange`] for a range past the buffer, [`LookupError::ZeroLength`]
    /// for an empty one; nothing is copied then.
    pub fn sync_for_cpu(&mut self, range: impl RangeBounds<usize>) -> Result<(), LookupError> {
        let (start, end) = self.live.span(range)?;
        let part = NonNull::from(&mut self.buf[start..end]);
        // SAFETY: the guard owns the mapping and `&mut self` keeps any other call on it and
        // any other use of the buffer out; `part` is freshly derived from the exclusive
        // borrow of the original, so valid for writes.
        unsafe {
            self.pool
                .sync_for_cpu_into(self.live.at(start), part, self.live.dir)
        }
    }

    /// Copies `range` of the buffer into the bounce buffer, for `ToDevice` and
    /// `Bidirectional`; nothing for `FromDevice`.
    ///
    /// # Errors
    ///
    /// As [`sync_for_cpu`](Self::sync_for_cpu).
    pub fn sync_for_device(&mut self, range: impl RangeBounds<usize>) -> Result<(), LookupError> {
        let (start, end) = self.live.span(range)?;
        let part = NonNull::from(&mut self.buf[start..end]);
        // SAFETY: as in `sync_for_cpu`; the pool only reads `part`.
        unsafe {
            self.pool
                .sync_for_device_from(self.live.at(start), part, self.live.dir)
        }
    }

    /// Unmaps now, copying the bounce buffer back for `FromDevice` and `Bidirectional`, and
    /// returns what the pool said.
    ///
    /// # Errors
    ///
    /// [`LookupError`] only if the pool's bookkeeping is broken (module docs); the mapping
    /// then stays live and nothing is copied.
    pub fn unmap(mut self) -> Result<(), LookupError> {
        self.release(Attrs::NONE)
    }

    /// Unmaps now without copying anything back (Linux's `DMA_ATTR_SKIP_CPU_SYNC`): for a
    /// transfer that failed, or whose data was already taken with
    /// [`sync_for_cpu`](Self::sync_for_cpu).
    ///
    /// # Errors
    ///
    /// As [`unmap`](Self::unmap).
    pub fn discard(mut self) -> Result<(), LookupError> {
        self.release(Attrs::SKIP_CPU_SYNC)
    }

    fn release(&mut self, attrs: Attrs) -> Result<(), LookupError> {
        self.done = true;
        let buf = NonNull::from(&mut *self.buf);
        // SAFETY: the guard owns the mapping and unmaps it once (`done`); `buf` is freshly
        // derived from the exclusive borrow of the original, valid for writes.
        unsafe {
            self.pool
                .unmap_into(self.live.dma, buf, self.live.dir, attrs)
        }
    }
}

impl<P: DmaPool + ?Sized> Drop for DmaMut<'_, P> {
    /// Unmaps, copying back as the direction says; an error leaves the mapping live and
    /// the buffer as it was (module docs).
    fn drop(&mut self) {
        if !self.done {
            let _ = self.release(Attrs::NONE);
        }
    }
}

impl<P: DmaPool + ?Sized> fmt::Debug for DmaMut<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DmaMut({:?})", self.live)
    }
}

// === impl DmaOwned ===

/// A heap buffer that a [`DmaOwned`] can own: `Box<[u8]>` or `Vec<u8>` (its `len` bytes;
/// the spare capacity is not mapped). Sealed: the guard relies on the buffer's bytes
/// staying where they are while the value moves, which these types promise.
pub trait OwnedBuf: sealed::Sealed {
    /// The bytes to map.
    fn bytes(&self) -> &[u8];
    /// The bytes to map, writable.
    fn bytes_mut(&mut self) -> &mut [u8];
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for alloc::boxed::Box<[u8]> {}
    impl Sealed for alloc::vec::Vec<u8> {}
}

impl OwnedBuf for Box<[u8]> {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl OwnedBuf for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// A failed call that took a buffer, handing it back with the error.
#[derive(Debug, PartialEq, Eq)]
pub struct BufError<B, E> {
    /// The buffer, as it was.
    pub buf: B,
    /// Why.
    pub error: E,
}

impl<B, E: fmt::Display> fmt::Display for BufError<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl<B: fmt::Debug, E: core::error::Error + 'static> core::error::Error for BufError<B, E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// A mapping that owns its buffer (`Box<[u8]>` or `Vec<u8>`), for drivers that keep
/// mappings in queues: [`unmap`](Self::unmap) gives the buffer back with the device's data
/// copied in (for `FromDevice` and `Bidirectional`).
///
/// Dropping it unmaps *without* copying back (nobody could see the copy) and frees the
/// buffer; if that unmap fails the buffer is leaked instead, so the pool never keeps a
/// pointer to freed memory.
#[must_use = "dropping the guard unmaps and frees the buffer at once"]
pub struct DmaOwned<'p, P: DmaPool + ?Sized, B: OwnedBuf = Box<[u8]>> {
    pool: &'p P,
    /// `None` once unmapped (or leaked).
    buf: Option<B>,
    live: Live,
}

impl<'p, P: DmaPool + ?Sized, B: OwnedBuf> DmaOwned<'p, P, B> {
    /// Maps `buf` in direction `dir` with `attrs` (only `attrs.fill` matters at map).
    ///
    /// # Errors
    ///
    /// [`MapError`] as [`Pool::map_attrs`], with the buffer handed back; nothing is mapped
    /// then.
    pub fn map(
        pool: &'p P,
        mut buf: B,
        dir: Direction,
        constraints: &Constraints,
        attrs: Attrs,
    ) -> Result<Self, BufError<B, MapError>> {
        let bytes = NonNull::from(buf.bytes_mut());
        // SAFETY: the guard owns `buf`, whose bytes live on the heap and stay put while
        // `buf` moves (sealed: `Box<[u8]>` and `Vec<u8>`, never resized by the guard);
        // between pool calls only the guard's holder touches them, through the guard, and
        // every later call gets a pointer freshly derived from `buf`. The buffer is freed
        // only after a successful unmap (or leaked).
        match unsafe { pool.map_attrs(bytes, dir, constraints, attrs) } {
            Ok(dma) => {
                let len = buf.bytes().len();
                Ok(Self {
                    pool,
                    buf: Some(buf),
                    live: Live { dma, len, dir },
                })
            }
            Err(error) => Err(BufError { buf, error }),
        }
    }

    /// Device address of the first byte.
    pub fn dma(&self) -> DmaAddr {
        self.live.dma
    }

    /// Bytes mapped (never zero).
    pub fn len(&self) -> usize {
        self.live.len
    }

    /// Always `false`: a mapping holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The mapping's direction.
    pub fn direction(&self) -> Direction {
        self.live.dir
    }

    /// The CPU's copy (see [`DmaMut::as_slice`]).
    pub fn as_slice(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], |b| b.bytes())
    }

    /// The CPU's copy, to write (see [`DmaMut::as_mut_slice`]).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.buf.as_mut().map_or(&mut [], |b| b.bytes_mut())
    }

    /// As [`DmaMut::sync_for_cpu`].
    ///
    /// # Errors
    ///
    /// As [`DmaMut::sync_for_cpu`].
    pub fn sync_for_cpu(&mut self, range: impl RangeBounds<usize>) -> Result<(), LookupError> {
        let (start, end) = self.live.span(range)?;
        let (pool, live) = (self.pool, self.live);
        let part = NonNull::from(&mut self.as_mut_slice()[start..end]);
        // SAFETY: the guard owns the mapping and its buffer; `&mut self` keeps any other
        // call and use out; `part` is freshly derived from the buffer, valid for writes.
        unsafe { pool.sync_for_cpu_into(live.at(start), part, live.dir) }
    }

    /// As [`DmaMut::sync_for_device`].
    ///
    /// # Errors
    ///
    /// As [`DmaMut::sync_for_cpu`].
    pub fn sync_for_device(&mut self, range: impl RangeBounds<usize>) -> Result<(), LookupError> {
        let (start, end) = self.live.span(range)?;
        let (pool, live) = (self.pool, self.live);
        let part = NonNull::from(&mut self.as_mut_slice()[start..end]);
        // SAFETY: as in `sync_for_cpu`; the pool only reads `part`.
        unsafe { pool.sync_for_device_from(live.at(start), part, live.dir) }
    }

    /// Unmaps, copying the bounce buffer back for `FromDevice` and `Bidirectional`, and
    /// gives the buffer back.
    ///
    /// # Errors
    ///
    /// [`LookupError`] only if the pool's bookkeeping is broken (module docs), with the
    /// buffer; the mapping then stays live, and the buffer must be kept alive (not dropped)
    /// for as long as the pool may reach it: `mem::forget` it if in doubt.
    pub fn unmap(mut self) -> Result<B, BufError<B, LookupError>> {
        self.release(Attrs::NONE)
    }

    /// Unmaps without copying back, and gives the buffer back.
    ///
    /// # Errors
    ///
    /// As [`unmap`](Self::unmap).
    pub fn discard(mut self) -> Result<B, BufError<B, LookupError>> {
        self.release(Attrs::SKIP_CPU_SYNC)
    }

    fn release(&mut self, attrs: Attrs) -> Result<B, BufError<B, LookupError>> {
        let mut buf = self
            .buf
            .take()
            .expect("the buffer is taken only by release, which runs once");
        let bytes = NonNull::from(buf.bytes_mut());
        // SAFETY: the guard owns the mapping and its buffer, and unmaps once (`buf` is
        // taken); `bytes` is freshly derived from the buffer, valid for writes.
        match unsafe {
            self.pool
                .unmap_into(self.live.dma, bytes, self.live.dir, attrs)
        } {
            Ok(()) => Ok(buf),
            Err(error) => Err(BufError { buf, error }),
        }
    }
}

impl<P: DmaPool + ?Sized, B: OwnedBuf> Drop for DmaOwned<'_, P, B> {
    /// Unmaps without copying back and frees the buffer; leaks it if the unmap fails.
    fn drop(&mut self) {
        if self.buf.is_some() {
            if let Err(e) = self.release(Attrs::SKIP_CPU_SYNC) {
                core::mem::forget(e.buf);
            }
        }
    }
}

impl<P: DmaPool + ?Sized, B: OwnedBuf> fmt::Debug for DmaOwned<'_, P, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DmaOwned({:?})", self.live)
    }
}

// === impl CoherentGuard ===

/// A coherent allocation that frees itself when dropped: zeroed pool memory for rings and
/// tables, with safe reads and writes through the copies of [`shared`](crate::shared).
///
/// The device may write these bytes at any time: what [`read`](Self::read) returns is a
/// snapshot, possibly of a half-written structure, and two reads may disagree. Parse what
/// you read once, from your own copy.
#[must_use = "dropping the guard frees the allocation at once"]
pub struct CoherentGuard<'p, P: DmaPool + ?Sized> {
    pool: &'p P,
    /// `None` once freed or taken apart.
    handle: Option<Coherent>,
    dma: DmaAddr,
    size: usize,
}

impl<'p, P: DmaPool + ?Sized> CoherentGuard<'p, P> {
    /// Allocates `size` zeroed bytes, as [`Pool::alloc`].
    ///
    /// # Errors
    ///
    /// [`MapError`], as [`Pool::alloc`].
    pub fn new(pool: &'p P, size: usize, constraints: &Constraints) -> Result<Self, MapError> {
        let handle = pool.alloc(size, constraints)?;
        Ok(Self {
            pool,
            dma: handle.dma(),
            size: handle.size(),
            handle: Some(handle),
        })
    }

    /// Device address of the first byte.
    pub fn dma(&self) -> DmaAddr {
        self.dma
    }

    /// Bytes allocated.
    pub fn size(&self) -> usize {
        self.size
    }

    /// CPU address of the first byte: for the copies of [`shared`](crate::shared) and
    /// atomics only, never a reference (the device may write the bytes at any time).
    pub fn cpu(&self) -> NonNull<u8> {
        self.handle().cpu()
    }

    fn handle(&self) -> &Coherent {
        self.handle
            .as_ref()
            .expect("the handle is taken only by methods that consume the guard")
    }

    /// The bytes at `offset..offset + len`, or the error for a range past the allocation.
    fn range(&self, offset: usize, len: usize) -> Result<*mut u8, LookupError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(self.cpu().as_ptr().wrapping_add(offset)),
            _ => Err(LookupError::OutOfRange {
                dma: self.dma.saturating_add(offset as u64),
                len,
                start: self.dma,
                mapped: self.size,
            }),
        }
    }

    /// Copies `dst.len()` bytes from `offset` of the allocation into `dst` (each byte read
    /// once, whatever the device writes meanwhile).
    ///
    /// # Errors
    ///
    /// [`LookupError::OutOfRange`] for a range past the allocation; nothing is read then.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), LookupError> {
        let src = self.range(offset, dst.len())?;
        // SAFETY: `src..src + len` lies in the allocation (checked), which this guard owns
        // and which stays allocated while it lives; `dst` is private memory we borrow
        // exclusively, so it does not overlap pool memory.
        unsafe { copy_from_shared(dst.as_mut_ptr(), src, dst.len()) };
        Ok(())
    }

    /// Copies `src` to `offset` of the allocation.
    ///
    /// # Errors
    ///
    /// [`LookupError::OutOfRange`] for a range past the allocation; nothing is written then.
    pub fn write(&mut self, offset: usize, src: &[u8]) -> Result<(), LookupError> {
        let dst = self.range(offset, src.len())?;
        // SAFETY: as in `read`, the other way.
        unsafe { copy_to_shared(dst, src.as_ptr(), src.len()) };
        Ok(())
    }

    /// Takes the raw handle out (the allocation stays live; give it to
    /// [`DmaPool::free`] later).
    pub fn into_coherent(mut self) -> Coherent {
        self.handle
            .take()
            .expect("the handle is taken only by methods that consume the guard")
    }

    /// Frees the allocation now, returning what the pool said.
    ///
    /// # Errors
    ///
    /// [`ForeignAllocation`] if the pool says the allocation is not its own (a broken
    /// `DmaPool` implementation); the allocation is handed back, still live.
    pub fn free(mut self) -> Result<(), ForeignAllocation> {
        let handle = self
            .handle
            .take()
            .expect("the handle is taken only by methods that consume the guard");
        self.pool.free(handle)
    }
}

impl<P: DmaPool + ?Sized> Drop for CoherentGuard<'_, P> {
    /// Frees the allocation; if the pool refuses it, it stays live (leaked).
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            // A refusal hands the handle back; dropping a `Coherent` leaves the allocation
            // live (it has no `Drop`).
            let _ = self.pool.free(handle);
        }
    }
}

impl<P: DmaPool + ?Sized> fmt::Debug for CoherentGuard<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CoherentGuard({:#x}, {} bytes)", self.dma, self.size)
    }
}
