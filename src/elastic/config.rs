//! How an elastic pool grows, shrinks and throttles.

use crate::backend::BackendError;
use crate::config::Config;
use crate::error::ConfigError;

/// Most sub-pools an elastic pool may have (its first included).
pub const MAX_SUB_POOLS: usize = 1024;

/// How an [`ElasticPool`](crate::ElasticPool) is laid out and when it grows, shrinks and
/// throttles. Build one with [`ElasticConfig::new`] and the `with_*` methods.
///
/// Sizes are in bytes and are rounded up to the backend's granule.
///
/// # Examples
///
/// ```
/// use swiotlb::{Config, ElasticConfig};
/// // Start at 256 KiB, grow by 2 MiB (halving down to 256 KiB when the backend refuses),
/// // never past 64 MiB; give regions back after 5 s idle.
/// let config = ElasticConfig::new()
///     .with_pool(Config::new().with_areas(1))
///     .with_initial(256 << 10)
///     .with_grow(2 << 20, 256 << 10)
///     .with_max_bytes(64 << 20)
///     .with_idle_time_ns(5_000_000_000);
/// assert_eq!(config.initial(), 256 << 10);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ElasticConfig {
    pool: Config,
    initial: usize,
    grow: usize,
    min_grow: usize,
    max_bytes: usize,
    max_sub_pools: usize,
    grow_on_map: bool,
    idle_ns: u64,
    keep_free: usize,
    clock: fn() -> u64,
    throttle: Option<(u8, u8)>,
}

impl ElasticConfig {
    /// A 1 MiB first region; growth by 4 MiB, halving down to 256 KiB (one default
    /// segment, the largest mapping) when the backend refuses, up to 1 GiB in all (Linux's
    /// cap) and 64 sub-pools; maps grow the pool themselves; regions idle for 1 s (by the
    /// default clock) go back; no throttling; [`Config::new`] for every region.
    pub const fn new() -> Self {
        Self {
            pool: Config::new(),
            initial: 1 << 20,
            grow: 4 << 20,
            min_grow: 256 << 10,
            max_bytes: 1 << 30,
            max_sub_pools: 64,
            grow_on_map: true,
            idle_ns: 1_000_000_000,
            keep_free: 0,
            clock: default_clock,
            throttle: None,
        }
    }

    /// The configuration of every region (slot size, segments, areas, ...).
    pub const fn with_pool(mut self, pool: Config) -> Self {
        self.pool = pool;
        self
    }

    /// Bytes of the first region, shared when the pool is built and never given back.
    pub const fn with_initial(mut self, bytes: usize) -> Self {
        self.initial = bytes;
        self
    }

    /// Growth: a new region is `default` bytes; when the backend refuses, the pool asks
    /// half as much, down to `floor`. A request that needs more than `default` gets a
    /// region sized to it (a "transient" one).
    pub const fn with_grow(mut self, default: usize, floor: usize) -> Self {
        self.grow = default;
        self.min_grow = floor;
        self
    }

    /// The most bytes the pool may hold from its backend in all (the ceiling).
    pub const fn with_max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// The most sub-pools, the first included (up to [`MAX_SUB_POOLS`]).
    pub const fn with_max_sub_pools(mut self, n: usize) -> Self {
        self.max_sub_pools = n;
        self
    }

    /// Whether a map or alloc that finds no room grows the pool itself (the default). Off,
    /// such a call returns `Full` at once and the pool grows only through
    /// [`ElasticPool::grow`](crate::ElasticPool::grow): for callers in contexts that must
    /// not call the backend (an interrupt handler), with a worker that grows on demand.
    pub const fn with_grow_on_map(mut self, on: bool) -> Self {
        self.grow_on_map = on;
        self
    }

    /// A region is given back by [`ElasticPool::shrink`](crate::ElasticPool::shrink) once
    /// it has been empty, with no map landing in it, for at least `ns` by the clock (0: as
    /// soon as a pass finds it empty).
    pub const fn with_idle_time_ns(mut self, ns: u64) -> Self {
        self.idle_ns = ns;
        self
    }

    /// Shrinking keeps at least `bytes` free across the pool: a region is not given back
    /// if that would leave less.
    pub const fn with_keep_free(mut self, bytes: usize) -> Self {
        self.keep_free = bytes;
        self
    }

    /// The clock of the idle time: nanoseconds, never going backwards. The default reads
    /// the monotonic clock with `std`; without `std` it is always 0, so give one (or set
    /// the idle time to 0).
    pub const fn with_clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    /// Throttling (Linux's unmerged RFC: 70 and 65): a waiting map
    /// ([`map_wait`](crate::ElasticPool::map_wait),
    /// [`map_async`](crate::ElasticPool::map_async)) that finds the pool at or above
    /// `high` percent of its capacity (the ceiling, for a pool that can grow) waits until
    /// use falls below `low` percent. `try` maps are never throttled.
    pub const fn with_throttle(mut self, high: u8, low: u8) -> Self {
        self.throttle = Some((high, low));
        self
    }

    /// The configuration of every region.
    pub const fn pool(&self) -> Config {
        self.pool
    }

    /// Bytes of the first region.
    pub const fn initial(&self) -> usize {
        self.initial
    }

    /// Bytes of a region added by growth.
    pub const fn grow(&self) -> usize {
        self.grow
    }

    /// The smallest region growth asks for after halving.
    pub const fn min_grow(&self) -> usize {
        self.min_grow
    }

    /// The ceiling, in bytes.
    pub const fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The most sub-pools.
    pub const fn max_sub_pools(&self) -> usize {
        self.max_sub_pools
    }

    /// Whether maps grow the pool.
    pub const fn grow_on_map(&self) -> bool {
        self.grow_on_map
    }

    /// The idle time, in clock nanoseconds.
    pub const fn idle_time_ns(&self) -> u64 {
        self.idle_ns
    }

    /// The free bytes shrinking keeps.
    pub const fn keep_free(&self) -> usize {
        self.keep_free
    }

    /// The clock.
    pub const fn clock(&self) -> fn() -> u64 {
        self.clock
    }

    /// The throttling watermarks (high, low) in percent, if any.
    pub const fn throttle(&self) -> Option<(u8, u8)> {
        self.throttle
    }

    /// Checks every field against the others and the granule.
    pub(crate) fn check(&self, granule: usize) -> Result<(), ElasticError> {
        self.pool.check()?;
        let sizes = ElasticError::Sizes {
            initial: self.initial,
            grow: self.grow,
            floor: self.min_grow,
            max: self.max_bytes,
        };
        let granule_ok = granule.is_power_of_two();
        if !granule_ok {
            return Err(ElasticError::Granule(granule));
        }
        if self.initial == 0
            || self.min_grow == 0
            || self.min_grow > self.grow
            || self.initial > self.max_bytes
        {
            return Err(sizes);
        }
        if self.max_sub_pools == 0 || self.max_sub_pools > MAX_SUB_POOLS {
            return Err(ElasticError::SubPools(self.max_sub_pools));
        }
        if let Some((high, low)) = self.throttle {
            if low >= high || high > 100 {
                return Err(ElasticError::Throttle { high, low });
            }
        }
        Ok(())
    }
}

impl Default for ElasticConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Nanoseconds on the monotonic clock since the first call (`std`), or 0.
fn default_clock() -> u64 {
    #[cfg(all(feature = "std", not(loom)))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let start = START.get_or_init(std::time::Instant::now);
        u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
    #[cfg(not(all(feature = "std", not(loom))))]
    {
        0
    }
}

/// Why an elastic pool could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ElasticError {
    /// The regions' configuration is invalid, or the first region could not be used.
    #[error("region: {0}")]
    Config(#[from] ConfigError),
    /// The sizes contradict each other: zero, a floor above the default growth, or a
    /// first region over the ceiling.
    #[error("sizes: first {initial}, growth {grow} (floor {floor}), ceiling {max}: the floor must be at most the growth, the first at most the ceiling, none zero")]
    Sizes {
        /// Bytes of the first region.
        initial: usize,
        /// Bytes of a region added by growth.
        grow: usize,
        /// The floor of halving.
        floor: usize,
        /// The ceiling.
        max: usize,
    },
    /// The sub-pool limit is zero or over [`MAX_SUB_POOLS`].
    #[error("sub-pool limit {0} is not between 1 and {MAX_SUB_POOLS}")]
    SubPools(usize),
    /// The throttling watermarks are not `low < high <= 100`.
    #[error("throttling watermarks high {high}%, low {low}%: need low < high <= 100")]
    Throttle {
        /// The high watermark.
        high: u8,
        /// The low watermark.
        low: u8,
    },
    /// The backend's granule is not a power of two.
    #[error("backend granule {0} is not a power of two")]
    Granule(usize),
    /// The backend could not share the first region.
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
}
