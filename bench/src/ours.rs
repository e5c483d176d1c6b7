//! This project's pool behind the benchmark trait.

use crate::{Bounce, Direction, DmaAddr, Error};
use core::ptr::NonNull;
use swiotlb::{Attrs, Config, Constraints, MapError, Pool};

/// [`swiotlb::Pool`] with its defaults (2 KiB slots, 128-slot segments, one area per CPU),
/// mapping with no constraints.
#[derive(Debug)]
pub struct Ours {
    pool: Pool,
}

impl Ours {
    /// A pool of `size` bytes from [`Pool::allocate`], with [`Config::new`].
    ///
    /// # Errors
    ///
    /// The pool's own configuration error, as text.
    pub fn new(size: usize) -> Result<Self, String> {
        Self::with_config(size, Config::new())
    }

    /// A pool of `size` bytes with `config`.
    ///
    /// # Errors
    ///
    /// The pool's own configuration error, as text.
    pub fn with_config(size: usize, config: Config) -> Result<Self, String> {
        Ok(Self {
            pool: Pool::allocate(size, config).map_err(|e| e.to_string())?,
        })
    }

    /// The pool itself.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl Bounce for Ours {
    fn name(&self) -> &'static str {
        "swiotlb"
    }

    fn capacity(&self) -> usize {
        self.pool.stats().total_slots * self.pool.slot_size()
    }

    fn used_bytes(&self) -> usize {
        self.pool.stats().used_slots * self.pool.slot_size()
    }

    fn high_water_bytes(&self) -> usize {
        self.pool.stats().high_water * self.pool.slot_size()
    }

    #[inline]
    unsafe fn map(&self, buf: NonNull<[u8]>, dir: Direction) -> Result<DmaAddr, Error> {
        // SAFETY: the trait's contract is `Pool::map`'s.
        unsafe { self.pool.map(buf, dir, &Constraints::NONE) }.map_err(|e| match e {
            MapError::Full { .. } => Error::Full,
            _ => Error::Refused,
        })
    }

    #[inline]
    unsafe fn unmap(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
        skip_sync: bool,
    ) -> Result<(), Error> {
        let attrs = if skip_sync {
            Attrs::SKIP_CPU_SYNC
        } else {
            Attrs::NONE
        };
        // SAFETY: the trait's contract is `Pool::unmap_into`'s: `dma` is a live mapping of
        // `buf`, which is given afresh (as `Hal::unshare` gives it).
        unsafe { self.pool.unmap_into(dma, buf, dir, attrs) }.map_err(|_| Error::NotMapped)
    }

    fn translate(&self, dma: DmaAddr, len: usize) -> Option<NonNull<u8>> {
        self.pool.translate(dma, len)
    }
}
