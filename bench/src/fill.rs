//! Bringing a pool to a given occupancy with the realistic mix, outside any timing.

use crate::mix::{realistic_size, Rng, MAX_SIZE};
use crate::{Bounce, Direction, DmaAddr, Error};
use core::ptr::NonNull;

/// Held `ToDevice` mappings of one shared source buffer, so that a pool can be filled and
/// churned to a steady occupancy before a measurement.
///
/// Every mapping reads a prefix of the same source: a `ToDevice` mapping only reads its
/// original, on map. Unmap every mapping ([`release`](Self::release)) before dropping the
/// pool or this.
#[derive(Debug)]
pub struct Filler {
    src: NonNull<u8>,
    live: Vec<(DmaAddr, usize)>,
}

impl Filler {
    /// A filler with no mapping held.
    pub fn new() -> Self {
        let src: Box<[u8]> = (0..MAX_SIZE).map(|i| i as u8).collect();
        Self {
            // Owned by this value from here on, and freed in `drop`.
            src: NonNull::from(Box::leak(src)).cast::<u8>(),
            live: Vec::new(),
        }
    }

    fn buf(&self, len: usize) -> NonNull<[u8]> {
        debug_assert!(len <= MAX_SIZE);
        NonNull::slice_from_raw_parts(self.src, len)
    }

    /// Mappings held.
    pub fn held(&self) -> usize {
        self.live.len()
    }

    /// Bytes of the held mappings (as asked, not as the pool rounds them).
    pub fn held_bytes(&self) -> usize {
        self.live.iter().map(|&(_, len)| len).sum()
    }

    /// Maps one buffer of `len` bytes and holds it.
    ///
    /// # Errors
    ///
    /// The pool's refusal.
    pub fn map_one<B: Bounce + ?Sized>(&mut self, pool: &B, len: usize) -> Result<(), Error> {
        let buf = self.buf(len.min(MAX_SIZE));
        // SAFETY: the source is readable for MAX_SIZE bytes for as long as this lives, is not
        // the pool's memory, and is only ever read (ToDevice mappings only).
        let dma = unsafe { pool.map(buf, Direction::ToDevice) }?;
        self.live.push((dma, buf.len()));
        Ok(())
    }

    /// Unmaps the held mapping at position `i` (swapping the last one into its place).
    ///
    /// # Errors
    ///
    /// The pool's refusal (a bug: the mapping was held).
    pub fn unmap_at<B: Bounce + ?Sized>(&mut self, pool: &B, i: usize) -> Result<(), Error> {
        let (dma, len) = self.live.swap_remove(i);
        // SAFETY: `dma` is a live ToDevice mapping of this source's first `len` bytes, made
        // by `map_one` on this pool (the caller passes the same pool every time).
        unsafe { pool.unmap(dma, self.buf(len), Direction::ToDevice, false) }
    }

    /// Maps realistic sizes until the pool holds `fraction` of its capacity; gives up after
    /// 1000 refusals in a row. Returns the fraction reached.
    pub fn fill_to<B: Bounce + ?Sized>(&mut self, pool: &B, fraction: f64, rng: &mut Rng) -> f64 {
        let target = (pool.capacity() as f64 * fraction) as usize;
        let mut refused = 0;
        while pool.used_bytes() < target && refused < 1000 {
            match self.map_one(pool, realistic_size(rng)) {
                Ok(()) => refused = 0,
                Err(_) => refused += 1,
            }
        }
        pool.used_bytes() as f64 / pool.capacity() as f64
    }

    /// Random churn around `fraction`: `steps` times, map a realistic size if the pool holds
    /// less than `fraction` of its capacity, else unmap a random held mapping. Leaves the
    /// pool in a fragmented steady state near `fraction`.
    ///
    /// # Errors
    ///
    /// A refusal to unmap a held mapping (a bug in the pool).
    pub fn churn<B: Bounce + ?Sized>(
        &mut self,
        pool: &B,
        fraction: f64,
        steps: usize,
        rng: &mut Rng,
    ) -> Result<(), Error> {
        let target = (pool.capacity() as f64 * fraction) as usize;
        let mut used = pool.used_bytes();
        for _ in 0..steps {
            if used < target || self.live.is_empty() {
                // A refusal near the target is part of the steady state.
                let _ = self.map_one(pool, realistic_size(rng));
            } else {
                let i = rng.below(self.live.len());
                self.unmap_at(pool, i)?;
            }
            used = pool.used_bytes();
        }
        Ok(())
    }

    /// Fills to `fraction`, then churns around it for twice as many steps as mappings are
    /// held: the usual preparation of a "pool N% full" measurement. Returns the fraction
    /// reached.
    ///
    /// # Errors
    ///
    /// A refusal to unmap a held mapping (a bug in the pool).
    pub fn prepare<B: Bounce + ?Sized>(
        &mut self,
        pool: &B,
        fraction: f64,
        seed: u64,
    ) -> Result<f64, Error> {
        let mut rng = Rng::new(seed);
        self.fill_to(pool, fraction, &mut rng);
        let steps = 2 * self.held();
        self.churn(pool, fraction, steps, &mut rng)?;
        Ok(self.fill_to(pool, fraction, &mut rng))
    }

    /// Unmaps every held mapping.
    ///
    /// # Errors
    ///
    /// The first refusal (a bug in the pool).
    pub fn release<B: Bounce + ?Sized>(&mut self, pool: &B) -> Result<(), Error> {
        while !self.live.is_empty() {
            self.unmap_at(pool, self.live.len() - 1)?;
        }
        Ok(())
    }
}

impl Default for Filler {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        // SAFETY: `src` came from `Box::leak` of a `[u8]` of MAX_SIZE bytes in `new`, and
        // this is the only place that frees it.
        drop(unsafe {
            Box::from_raw(core::ptr::slice_from_raw_parts_mut(
                self.src.as_ptr(),
                MAX_SIZE,
            ))
        });
    }
}
