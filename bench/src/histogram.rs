//! A log-linear histogram of latencies, for percentiles without keeping every sample.
//!
//! Values under 64 ns have a bucket each; above, every power of two is split into 32
//! buckets, so a percentile is within about 3% of the value it stands for, whatever the
//! range (a 30 ns map and a 60 µs copy alike), in a few kilobytes per histogram.

/// Values below this have a bucket of their own.
const EXACT: u64 = 64;
/// Sub-buckets per power of two above [`EXACT`] (5 bits of mantissa).
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Buckets: the exact ones, then 32 for each power of two from 2^6 to 2^63.
const BUCKETS: usize = EXACT as usize + (64 - 6) * SUB;

/// Counts of nanosecond values.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
        }
    }

    fn bucket(v: u64) -> usize {
        if v < EXACT {
            return v as usize;
        }
        let e = 63 - v.leading_zeros(); // >= 6
        let mantissa = (v >> (e - SUB_BITS)) as usize & (SUB - 1);
        EXACT as usize + (e as usize - 6) * SUB + mantissa
    }

    /// The smallest value of bucket `b`, and its width.
    fn bounds(b: usize) -> (u64, u64) {
        if b < EXACT as usize {
            return (b as u64, 1);
        }
        let e = (b - EXACT as usize) / SUB + 6;
        let mantissa = ((b - EXACT as usize) % SUB) as u64;
        let width = 1u64 << (e as u32 - SUB_BITS);
        ((1u64 << e) + mantissa * width, width)
    }

    /// Counts one value.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.counts[Self::bucket(ns)] += 1;
        self.total += 1;
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value below which a fraction `q` (0 to 1) of the counted values lie: the middle
    /// of the bucket that holds it. `None` when nothing was counted.
    pub fn percentile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, width) = Self::bounds(b);
                return Some(lo as f64 + (width - 1) as f64 / 2.0);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let b = Histogram::bucket(v);
            assert!(b >= last && b < BUCKETS, "{v}");
            let (lo, width) = Histogram::bounds(b);
            assert!(lo <= v && v - lo < width, "{v}: bucket {b} = {lo}+{width}");
            last = b;
        }
    }

    #[test]
    fn percentiles_are_within_three_percent() {
        let mut h = Histogram::new();
        assert_eq!(h.percentile(0.5), None);
        // 1..=10000 ns, once each: p50 is 5000, p99 is 9900.
        for v in 1..=10_000 {
            h.record(v);
        }
        let p50 = h.percentile(0.5).unwrap();
        let p99 = h.percentile(0.99).unwrap();
        assert!((p50 / 5000.0 - 1.0).abs() < 0.03, "{p50}");
        assert!((p99 / 9900.0 - 1.0).abs() < 0.03, "{p99}");
        assert_eq!(h.percentile(0.0), Some(1.0));
        let mut other = Histogram::new();
        other.record(1_000_000);
        h.merge(&other);
        assert_eq!(h.count(), 10_001);
        assert!(h.percentile(1.0).unwrap() > 970_000.0);
    }
}
