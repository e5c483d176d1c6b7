//! Scatter-gather lists for any virtqueue implementation: map all-or-nothing, unmap with the
//! used length the device reported.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::marker::PhantomData;
use core::ptr::NonNull;
use swiotlb::{
    Attrs, Constraints, Direction, DmaAddr, ElasticPool, LookupError, MapError, Pool, RawMutex,
};

/// Split-ring descriptor flag: the chain continues at `next`.
pub const DESC_F_NEXT: u16 = 1;
/// Split-ring descriptor flag: the device writes this buffer.
pub const DESC_F_WRITE: u16 = 2;

/// Bytes of one split-ring descriptor (address, length, flags, next).
const DESC_SIZE: usize = 16;

/// Most descriptors an indirect table can chain: `next` is a 16-bit index.
const MAX_INDIRECT_DESCRIPTORS: usize = 1 << 16;

/// One buffer of a scatter-gather list, with the direction its borrow allows.
#[derive(Debug)]
pub enum SgBuf<'a> {
    /// Driver-readable ("out"): the device reads it. Mapped `ToDevice`.
    Out(&'a [u8]),
    /// Device-writable ("in"): the device writes it. Mapped `FromDevice`.
    In(&'a mut [u8]),
    /// The device may read and write it. Mapped `Bidirectional`, described to the device as
    /// writable, and counted with the device-writable buffers for the used length.
    Both(&'a mut [u8]),
}

impl SgBuf<'_> {
    /// The pool direction of this buffer.
    pub fn direction(&self) -> Direction {
        match self {
            SgBuf::Out(_) => Direction::ToDevice,
            SgBuf::In(_) => Direction::FromDevice,
            SgBuf::Both(_) => Direction::Bidirectional,
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        match self {
            SgBuf::Out(b) => b.len(),
            SgBuf::In(b) | SgBuf::Both(b) => b.len(),
        }
    }

    /// Whether it is empty (which [`map_sg`] refuses).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn as_ptr(&mut self) -> NonNull<[u8]> {
        match self {
            SgBuf::Out(b) => NonNull::from(*b),
            SgBuf::In(b) | SgBuf::Both(b) => NonNull::from(&mut **b),
        }
    }
}

/// A mapped buffer, as a descriptor describes it to the device.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Device address of the bounce buffer.
    pub dma: DmaAddr,
    /// Length in bytes.
    pub len: u32,
    /// Pool direction.
    pub direction: Direction,
}

/// The device address in hex.
impl core::fmt::Debug for Segment {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Segment")
            .field("dma", &format_args!("{:#x}", self.dma))
            .field("len", &self.len)
            .field("direction", &self.direction)
            .finish()
    }
}

impl Segment {
    /// Whether the device may write it (the descriptor gets [`DESC_F_WRITE`]).
    pub fn device_writable(&self) -> bool {
        self.direction.from_device()
    }

    /// The split-ring descriptor flags for this segment, without [`DESC_F_NEXT`].
    pub fn flags(&self) -> u16 {
        if self.device_writable() {
            DESC_F_WRITE
        } else {
            0
        }
    }
}

/// A list that could not be mapped: which element failed and why. Nothing stays mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgError {
    /// Position of the element that failed (0 for an empty list).
    pub index: usize,
    /// What the pool said.
    pub error: MapError,
}

impl core::fmt::Display for SgError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "scatter-gather element {} not mapped: {}",
            self.index, self.error
        )
    }
}

impl core::error::Error for SgError {}

/// What [`MappedSg::unmap`] did with the used length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The used length the device reported.
    pub used_len: u32,
    /// Bytes copied back to the device-writable buffers: the used length, clamped to their
    /// total size.
    pub copied_back: usize,
    /// Whether the device reported more than the device-writable buffers hold.
    pub clamped: bool,
}

/// The pool calls [`map_sg`] needs: implemented by [`Pool`] and [`ElasticPool`] (whose
/// methods of the same names it forwards to, with their contracts).
pub trait SgPool: sealed::Sealed {
    /// [`Pool::map_attrs`].
    ///
    /// # Errors
    ///
    /// As [`Pool::map_attrs`].
    ///
    /// # Safety
    ///
    /// As [`Pool::map_attrs`].
    unsafe fn sg_map(
        &self,
        buf: NonNull<[u8]>,
        dir: Direction,
        constraints: &Constraints,
        attrs: Attrs,
    ) -> Result<DmaAddr, MapError>;

    /// [`Pool::sync_for_cpu`].
    ///
    /// # Errors
    ///
    /// As [`Pool::sync_for_cpu`].
    ///
    /// # Safety
    ///
    /// As [`Pool::sync_for_cpu`].
    unsafe fn sg_sync_for_cpu(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<(), LookupError>;

    /// [`Pool::unmap`].
    ///
    /// # Errors
    ///
    /// As [`Pool::unmap`].
    ///
    /// # Safety
    ///
    /// As [`Pool::unmap`].
    unsafe fn sg_unmap(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
        attrs: Attrs,
    ) -> Result<(), LookupError>;
}

mod sealed {
    pub trait Sealed {}
    impl<R: swiotlb::RawMutex> Sealed for swiotlb::Pool<R> {}
    impl<R: swiotlb::RawMutex> Sealed for swiotlb::ElasticPool<R> {}
}

macro_rules! sg_pool {
    ($pool:ident, $map:ident) => {
        impl<R: RawMutex> SgPool for $pool<R> {
            unsafe fn sg_map(
                &self,
                buf: NonNull<[u8]>,
                dir: Direction,
                constraints: &Constraints,
                attrs: Attrs,
            ) -> Result<DmaAddr, MapError> {
                // SAFETY: the caller's promise, passed on.
                unsafe { self.$map(buf, dir, constraints, attrs) }
            }

            unsafe fn sg_sync_for_cpu(
                &self,
                dma: DmaAddr,
                len: usize,
                dir: Direction,
            ) -> Result<(), LookupError> {
                // SAFETY: the caller's promise, passed on.
                unsafe { self.sync_for_cpu(dma, len, dir) }
            }

            unsafe fn sg_unmap(
                &self,
                dma: DmaAddr,
                len: usize,
                dir: Direction,
                attrs: Attrs,
            ) -> Result<(), LookupError> {
                // SAFETY: the caller's promise, passed on.
                unsafe { self.unmap(dma, len, dir, attrs) }
            }
        }
    };
}

sg_pool!(Pool, map_attrs);
sg_pool!(ElasticPool, try_map_attrs);

/// A mapped scatter-gather list. It borrows its buffers until [`unmap`](Self::unmap) gives
/// them back.
///
/// Dropping it without `unmap` leaks its slots (the device may still be using them, so
/// they are never freed behind its back) and leaves the buffers as they were.
#[must_use = "a mapped list holds pool slots until it is unmapped"]
#[derive(Debug)]
pub struct MappedSg<'p, 'a, P: SgPool + ?Sized = Pool> {
    pool: &'p P,
    segments: Vec<Segment>,
    /// The indirect table's device address and bytes (kept alive while mapped).
    indirect: Option<(DmaAddr, Box<[u8]>)>,
    _buffers: PhantomData<&'a mut [u8]>,
}

/// Maps every buffer of `list` through `pool`, in order, all or nothing: if one fails, the
/// ones already mapped are unmapped (without copying anything back) and the error is
/// returned.
///
/// `Out` and `Both` buffers are copied into the pool; `In` buffers are not: their bounce
/// buffers start as zeros ([`Fill::Zero`](swiotlb::Fill::Zero)), so nothing of what they
/// held reaches the device, and since [`MappedSg::unmap`] copies back only the used length,
/// the rest of them is left as it was (Linux copies receive buffers in to get that, which
/// shows the host their old contents). Build the descriptors from
/// [`MappedSg::segments`], or put them in an indirect table with
/// [`MappedSg::map_indirect_table`]. virtio wants every `Out` buffer before the first `In`
/// one in a chain; this function keeps the order it is given.
///
/// # Errors
///
/// [`SgError`]: an empty list or buffer ([`MapError::ZeroLength`]), a buffer over
/// [`Pool::max_mapping_size`] or over `u32::MAX` ([`MapError::TooLarge`]), a full pool
/// ([`MapError::Full`], with the pool's figures), or any other [`MapError`] of
/// [`Pool::map`].
///
/// # Examples
///
/// ```
/// use swiotlb::{Config, Constraints, Pool};
/// use swiotlb_virtio::{map_sg, SgBuf};
///
/// let pool = Pool::allocate(1 << 20, Config::new())?;
/// let header = [1u8; 16];
/// let mut data = [0u8; 4096];
/// let mut status = [0xffu8; 1];
/// let sg = map_sg(
///     &pool,
///     [SgBuf::Out(&header), SgBuf::In(&mut data), SgBuf::In(&mut status)],
///     &Constraints::NONE,
/// )?;
/// // ... descriptors from sg.segments(), the device runs, reports used length 4097 ...
/// # let s = sg.segments()[1];
/// # unsafe { pool.translate(s.dma, 1).unwrap().as_ptr().write(9) };
/// let done = sg.unmap(4097)?;
/// assert_eq!(done.copied_back, 4097);
/// assert_eq!(data[0], 9);
/// assert_eq!(pool.stats().used_slots, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn map_sg<'p, 'a, P: SgPool + ?Sized>(
    pool: &'p P,
    list: impl IntoIterator<Item = SgBuf<'a>>,
    constraints: &Constraints,
) -> Result<MappedSg<'p, 'a, P>, SgError> {
    let mut mapped = MappedSg {
        pool,
        segments: Vec::new(),
        indirect: None,
        _buffers: PhantomData,
    };
    for (index, mut buf) in list.into_iter().enumerate() {
        let direction = buf.direction();
        let len = buf.len();
        let result = match u32::try_from(len) {
            Err(_) => Err(MapError::TooLarge {
                size: len,
                max: u32::MAX as usize,
            }),
            Ok(len32) => {
                // SAFETY: the buffer is borrowed for 'a, which the returned `MappedSg`
                // carries, so it stays valid and, for `In` / `Both`, unaliased until `unmap`
                // consumes the list; `Out` buffers are mapped `ToDevice` and only ever read.
                let mapped =
                    unsafe { pool.sg_map(buf.as_ptr(), direction, constraints, Attrs::ZERO_FILL) };
                mapped.map(|dma| Segment {
                    dma,
                    len: len32,
                    direction,
                })
            }
        };
        match result {
            Ok(segment) => mapped.segments.push(segment),
            Err(error) => {
                mapped.release_unsynced();
                return Err(SgError { index, error });
            }
        }
    }
    if mapped.segments.is_empty() {
        return Err(SgError {
            index: 0,
            error: MapError::ZeroLength,
        });
    }
    Ok(mapped)
}

impl<P: SgPool + ?Sized> MappedSg<'_, '_, P> {
    /// The mapped buffers, in the order given.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Total bytes the device may write (the most a used length can honestly claim).
    pub fn writable_len(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.device_writable())
            .map(|s| u64::from(s.len))
            .sum()
    }

    /// Total bytes the device reads.
    pub fn readable_len(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| !s.device_writable())
            .map(|s| u64::from(s.len))
            .sum()
    }

    /// Builds a split-ring indirect descriptor table for the list (one 16-byte
    /// little-endian descriptor per segment, chained with [`DESC_F_NEXT`]) and maps it
    /// `ToDevice`. Returns the table's device address and length, for a descriptor with
    /// `VIRTQ_DESC_F_INDIRECT`. [`unmap`](Self::unmap) frees it with the rest. A second call
    /// returns the table already mapped.
    ///
    /// # Errors
    ///
    /// [`MapError::TooLarge`] for a list of more than 65,536 segments, whose descriptor
    /// indices do not fit the 16-bit `next` field (`size` is the table's bytes, `max` those
    /// of a 65,536-entry table); nothing is mapped. Otherwise the table's [`MapError`] (a
    /// full pool, say). Either way the list stays mapped.
    pub fn map_indirect_table(
        &mut self,
        constraints: &Constraints,
    ) -> Result<(DmaAddr, u32), MapError> {
        if let Some((dma, table)) = &self.indirect {
            return Ok((*dma, table.len() as u32));
        }
        let n = self.segments.len();
        if n > MAX_INDIRECT_DESCRIPTORS {
            return Err(MapError::TooLarge {
                size: n.saturating_mul(DESC_SIZE),
                max: MAX_INDIRECT_DESCRIPTORS * DESC_SIZE,
            });
        }
        // At most 65,536 descriptors of 16 bytes: 1 MiB, no overflow.
        let len = n * DESC_SIZE;
        let len32 = len as u32;
        let mut table = alloc::vec![0u8; len].into_boxed_slice();
        for (i, (seg, desc)) in self
            .segments
            .iter()
            .zip(table.chunks_exact_mut(DESC_SIZE))
            .enumerate()
        {
            let last = i + 1 == n;
            let flags = seg.flags() | if last { 0 } else { DESC_F_NEXT };
            // Not last: i + 1 < n <= 65,536, so the index fits (checked above).
            let next = if last { 0 } else { (i + 1) as u16 };
            desc[0..8].copy_from_slice(&seg.dma.to_le_bytes());
            desc[8..12].copy_from_slice(&seg.len.to_le_bytes());
            desc[12..14].copy_from_slice(&flags.to_le_bytes());
            desc[14..16].copy_from_slice(&next.to_le_bytes());
        }
        // SAFETY: the table is a heap block owned by `self` from here until `unmap` or drop;
        // it is mapped `ToDevice`, so the pool only reads it, and only during this call (we
        // never sync it), and moving `self` does not move the block.
        let dma = unsafe {
            self.pool.sg_map(
                NonNull::from(&mut *table),
                Direction::ToDevice,
                constraints,
                Attrs::NONE,
            )
        }?;
        self.indirect = Some((dma, table));
        Ok((dma, len32))
    }

    /// The device is done: copies back to the device-writable buffers, in order, the
    /// `used_len` bytes the device says it wrote (clamped to their total size: the device
    /// is not trusted), leaves the rest of those buffers as they were, and frees every slot
    /// (the indirect table's too).
    ///
    /// `used_len` 0 copies nothing back: use it to drop a list the device never saw.
    ///
    /// # Errors
    ///
    /// A [`LookupError`] only if the pool no longer holds one of the mappings (someone
    /// unmapped it through the pool directly); every other slot is still freed.
    pub fn unmap(mut self, used_len: u32) -> Result<Completion, LookupError> {
        let writable = self.writable_len();
        let mut left = u64::from(used_len).min(writable);
        let mut copied_back = 0usize;
        let mut first_error = None;
        for seg in core::mem::take(&mut self.segments) {
            if seg.device_writable() && left > 0 {
                let n = left.min(u64::from(seg.len));
                left -= n;
                // SAFETY: the mapping is ours and live; its original is borrowed mutably for
                // 'a (an `In` or `Both` buffer), which `self` still holds.
                match unsafe {
                    self.pool
                        .sg_sync_for_cpu(seg.dma, n as usize, seg.direction)
                } {
                    Ok(()) => copied_back += n as usize,
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            // SAFETY: as above; the copy back, if any, was made by the sync.
            let r = unsafe {
                self.pool.sg_unmap(
                    seg.dma,
                    seg.len as usize,
                    seg.direction,
                    Attrs::SKIP_CPU_SYNC,
                )
            };
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        if let Some((dma, table)) = self.indirect.take() {
            // SAFETY: our own `ToDevice` mapping of `table`, still alive here.
            let r = unsafe {
                self.pool
                    .sg_unmap(dma, table.len(), Direction::ToDevice, Attrs::NONE)
            };
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(Completion {
                used_len,
                copied_back,
                clamped: u64::from(used_len) > writable,
            }),
        }
    }

    /// Unmaps everything mapped so far without copying anything back (a failed `map_sg`).
    fn release_unsynced(&mut self) {
        for seg in self.segments.drain(..) {
            // SAFETY: our own live mapping, never handed to a device; nothing is copied.
            let r = unsafe {
                self.pool.sg_unmap(
                    seg.dma,
                    seg.len as usize,
                    seg.direction,
                    Attrs::SKIP_CPU_SYNC,
                )
            };
            debug_assert!(r.is_ok(), "fresh mapping refused: {r:?}");
        }
    }
}
