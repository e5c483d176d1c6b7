//! How full a pool gets before the first refusal, under the realistic mix with random churn.
//!
//! From an empty pool, each step maps a buffer of a size drawn from the realistic mix (with
//! probability 3/5) or unmaps a random held mapping (2/5), so the pool fills slowly while
//! mappings come and go, as in a guest under I/O. At the first refusal the experiment stops
//! and reports the bytes held by live mappings (as asked, not as rounded by the allocator)
//! over the pool's size: the part of the pool that was doing useful work when it first
//! said no. Every implementation sees the same sequence of sizes and choices for a seed,
//! up to its first refusal.

use crate::fill::Filler;
use crate::mix::{realistic_size, Rng};
use crate::{Bounce, Error};

/// What one run saw at the first refusal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    /// Bytes of live mappings over the pool's capacity.
    pub live_fraction: f64,
    /// Bytes the allocator held (whole slots or blocks) over the pool's capacity.
    pub held_fraction: f64,
    /// Size of the refused request.
    pub refused_size: usize,
    /// Mappings live at the refusal.
    pub live_mappings: usize,
    /// Steps taken.
    pub steps: usize,
}

/// Runs the experiment on an empty `pool` with `seed`, for at most `max_steps` steps.
/// Returns `None` if no request was refused within them. The pool is empty again after.
///
/// # Errors
///
/// A refusal to unmap a held mapping (a bug in the pool).
pub fn first_failure<B: Bounce + ?Sized>(
    pool: &B,
    seed: u64,
    max_steps: usize,
) -> Result<Option<Outcome>, Error> {
    let mut rng = Rng::new(seed);
    let mut held = Filler::new();
    let mut outcome = None;
    for step in 0..max_steps {
        if held.held() == 0 || rng.below(5) < 3 {
            let size = realistic_size(&mut rng);
            match held.map_one(pool, size) {
                Ok(()) => {}
                Err(Error::Full) => {
                    let capacity = pool.capacity() as f64;
                    outcome = Some(Outcome {
                        live_fraction: held.held_bytes() as f64 / capacity,
                        held_fraction: pool.used_bytes() as f64 / capacity,
                        refused_size: size,
                        live_mappings: held.held(),
                        steps: step,
                    });
                    break;
                }
                Err(e) => return Err(e),
            }
        } else {
            let i = rng.below(held.held());
            held.unmap_at(pool, i)?;
        }
    }
    held.release(pool)?;
    Ok(outcome)
}
