//! The size mixes, and a small seeded random number generator.
//!
//! - The *realistic* (boot) mix is the distribution of bounce sizes measured at the boot of
//!   a confidential guest with NVMe and virtio-net: 57.7% of mappings are at most 2 KiB,
//!   91.3% at most 4 KiB, 96% at most 16 KiB, and the rest up to 256 KiB. The fragmentation
//!   experiment and the fill helpers use it.
//! - The *virtio* mix is the workload of performance issue 11 and of `swiotlb-bench
//!   --workload mix`: 40% of 64-512 B (headers, small packets), 40% of exactly 4 KiB (pages),
//!   15% of 16-64 KiB, 5% of 128-256 KiB (large block I/O), each mapping `ToDevice` or
//!   `FromDevice` with even odds.
//!
//! Within each band sizes are drawn uniformly (bytes, not a distribution measured inside
//! the band: an assumption).

use crate::Direction;

/// SplitMix64: small, fast, and the same sequence on every machine for a seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator started at `seed`.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`), without modulo bias worth speaking of for small `n`.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
}

/// The bands of the mix: (cumulative share in per mille, smallest size, largest size).
pub const BANDS: [(usize, usize, usize); 4] = [
    (577, 64, 2048),
    (913, 2049, 4096),
    (960, 4097, 16384),
    (1000, 16385, 256 * 1024),
];

/// The largest size the mix draws.
pub const MAX_SIZE: usize = 256 * 1024;

/// A size drawn from the realistic mix.
pub fn realistic_size(rng: &mut Rng) -> usize {
    let p = rng.below(1000);
    let (_, lo, hi) = BANDS
        .into_iter()
        .find(|&(cum, _, _)| p < cum)
        .unwrap_or(BANDS[BANDS.len() - 1]);
    rng.between(lo, hi)
}

/// `n` sizes drawn from the mix with `seed`.
pub fn realistic_sizes(seed: u64, n: usize) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| realistic_size(&mut rng)).collect()
}

/// The bands of the virtio mix: (cumulative share in per mille, smallest size, largest
/// size).
pub const VIRTIO_BANDS: [(usize, usize, usize); 4] = [
    (400, 64, 512),
    (800, 4096, 4096),
    (950, 16 * 1024, 64 * 1024),
    (1000, 128 * 1024, 256 * 1024),
];

/// One mapping of the virtio mix: its size and direction.
pub fn virtio_request(rng: &mut Rng) -> (usize, Direction) {
    let p = rng.below(1000);
    let (_, lo, hi) = VIRTIO_BANDS
        .into_iter()
        .find(|&(cum, _, _)| p < cum)
        .unwrap_or(VIRTIO_BANDS[VIRTIO_BANDS.len() - 1]);
    let size = rng.between(lo, hi);
    let dir = if rng.below(2) == 0 {
        Direction::ToDevice
    } else {
        Direction::FromDevice
    };
    (size, dir)
}

/// `n` mappings drawn from the virtio mix with `seed`.
pub fn virtio_requests(seed: u64, n: usize) -> Vec<(usize, Direction)> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| virtio_request(&mut rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_virtio_mix_has_its_shares_and_even_directions() {
        let reqs = virtio_requests(1, 200_000);
        let share = |f: &dyn Fn(usize) -> bool| {
            reqs.iter().filter(|&&(s, _)| f(s)).count() as f64 / reqs.len() as f64
        };
        assert!((share(&|s| (64..=512).contains(&s)) - 0.40).abs() < 0.005);
        assert!((share(&|s| s == 4096) - 0.40).abs() < 0.005);
        assert!((share(&|s| (16384..=65536).contains(&s)) - 0.15).abs() < 0.005);
        assert!((share(&|s| (131072..=262144).contains(&s)) - 0.05).abs() < 0.005);
        let to_device = reqs
            .iter()
            .filter(|&&(_, d)| d == Direction::ToDevice)
            .count() as f64;
        assert!((to_device / reqs.len() as f64 - 0.5).abs() < 0.005);
        assert!(reqs.iter().all(|&(s, _)| s <= MAX_SIZE));
    }

    #[test]
    fn the_mix_has_the_measured_shares() {
        let sizes = realistic_sizes(1, 200_000);
        let share = |limit: usize| {
            sizes.iter().filter(|&&s| s <= limit).count() as f64 / sizes.len() as f64
        };
        assert!((share(2048) - 0.577).abs() < 0.005, "{}", share(2048));
        assert!((share(4096) - 0.913).abs() < 0.005, "{}", share(4096));
        assert!((share(16384) - 0.960).abs() < 0.005, "{}", share(16384));
        assert_eq!(share(MAX_SIZE), 1.0);
        assert!(sizes.iter().all(|&s| s >= 64));
    }
}
