//! Pool configuration.

use crate::error::ConfigError;
use crate::slot::{MAX_SEGMENT_SLOTS, MAX_SLOT_SIZE};

/// Most areas a pool may have.
pub const MAX_AREAS: usize = 64;

/// How a pool is laid out and behaves. Build one with [`Config::new`] (or `default()`) and
/// the setters; [`Pool::new`](crate::Pool::new) checks it.
///
/// # Examples
///
/// ```
/// use swiotlb::Config;
/// let config = Config::new().with_slot_size(4096).with_segment_slots(64).with_areas(4);
/// assert_eq!(config.slot_size(), 4096);
/// assert_eq!(config.areas(), Some(4));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Config {
    slot_size: usize,
    segment_slots: usize,
    areas: Option<usize>,
    page_size: usize,
    scrub_on_release: bool,
    area_hint: fn() -> usize,
    /// Whether `area_hint` was given (else it is the default, which the pool calls
    /// directly, without going through the pointer).
    own_hint: bool,
}

impl Config {
    /// Linux's defaults: 2 KiB slots, 128-slot (256 KiB) segments, 4 KiB pages, one area per
    /// CPU (with `std`; one area without), no scrubbing on release.
    pub const fn new() -> Self {
        Self {
            slot_size: 2048,
            segment_slots: 128,
            areas: None,
            page_size: 4096,
            scrub_on_release: false,
            area_hint: crate::sync::thread_hint,
            own_hint: false,
        }
    }

    /// Size of a slot, the allocation unit: a power of two from 64 bytes to 4 KiB.
    pub const fn with_slot_size(mut self, bytes: usize) -> Self {
        self.slot_size = bytes;
        self
    }

    /// Slots in a segment, the most one mapping may span: a power of two from 1 to 16384.
    /// The largest mapping is `slot_size * segment_slots` bytes.
    pub const fn with_segment_slots(mut self, slots: usize) -> Self {
        self.segment_slots = slots;
        self
    }

    /// Number of areas, each with its own lock: a power of two up to [`MAX_AREAS`]. The pool
    /// uses fewer when it has fewer segments (every area holds at least one).
    pub const fn with_areas(mut self, areas: usize) -> Self {
        self.areas = Some(areas);
        self
    }

    /// Page size: mappings of a page or more with no alignment constraint are page-aligned,
    /// and coherent allocations are aligned to a power-of-two number of pages.
    pub const fn with_page_size(mut self, bytes: usize) -> Self {
        self.page_size = bytes;
        self
    }

    /// Zero every slot when it is released (unmap or free), so no data of an old mapping
    /// stays where a device can read it. Off by default: a mapping's own copy-in already
    /// overwrites every byte its device is given, coherent allocations are zeroed, and the
    /// bytes left behind were visible to the device while mapped. Turn it on when devices of
    /// different trust share one pool. Costs a `memset` of the released slots.
    pub const fn with_scrub_on_release(mut self, on: bool) -> Self {
        self.scrub_on_release = on;
        self
    }

    /// The function that picks the area a caller tries first, typically the current CPU's
    /// number. The default gives each thread its own number (with `std`) or always 0
    /// (without).
    pub const fn with_area_hint(mut self, hint: fn() -> usize) -> Self {
        self.area_hint = hint;
        self.own_hint = true;
        self
    }

    /// The configured slot size ([`Pool::slot_size`](crate::Pool::slot_size) of a pool
    /// built with it).
    pub const fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// The configured segment length in slots.
    pub const fn segment_slots(&self) -> usize {
        self.segment_slots
    }

    /// The number of areas asked for, if any (`None`: one per CPU). A pool may use fewer
    /// ([`Pool::areas`](crate::Pool::areas)).
    pub const fn areas(&self) -> Option<usize> {
        self.areas
    }

    /// The configured page size.
    pub const fn page_size(&self) -> usize {
        self.page_size
    }

    /// Whether runs are zeroed when released.
    pub const fn scrub_on_release(&self) -> bool {
        self.scrub_on_release
    }

    /// The area hint function.
    pub const fn area_hint(&self) -> fn() -> usize {
        self.area_hint
    }

    /// The area hint the user gave, if any.
    pub(crate) const fn own_area_hint(&self) -> Option<fn() -> usize> {
        if self.own_hint {
            Some(self.area_hint)
        } else {
            None
        }
    }

    /// Checks every field and returns the number of areas to aim for.
    pub(crate) fn check(&self) -> Result<usize, ConfigError> {
        if !self.slot_size.is_power_of_two() || !(64..=MAX_SLOT_SIZE).contains(&self.slot_size) {
            return Err(ConfigError::SlotSize(self.slot_size));
        }
        if !self.segment_slots.is_power_of_two() || self.segment_slots > MAX_SEGMENT_SLOTS {
            return Err(ConfigError::SegmentSlots(self.segment_slots));
        }
        if !self.page_size.is_power_of_two() || self.page_size < 4096 {
            return Err(ConfigError::PageSize(self.page_size));
        }
        match self.areas {
            Some(n) if !n.is_power_of_two() || n > MAX_AREAS => Err(ConfigError::Areas(n)),
            Some(n) => Ok(n),
            None => Ok(crate::sync::default_areas()
                .next_power_of_two()
                .min(MAX_AREAS)),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn invalid_fields_are_refused() {
        assert_eq!(Config::new().check().map(|_| ()), Ok(()));
        for bad in [0, 32, 3000, 8192] {
            assert_eq!(
                Config::new().with_slot_size(bad).check(),
                Err(ConfigError::SlotSize(bad))
            );
        }
        for bad in [0, 3, 1 << 15] {
            assert_eq!(
                Config::new().with_segment_slots(bad).check(),
                Err(ConfigError::SegmentSlots(bad))
            );
        }
        for bad in [0, 2048, 5000] {
            assert_eq!(
                Config::new().with_page_size(bad).check(),
                Err(ConfigError::PageSize(bad))
            );
        }
        for bad in [0, 3, 128] {
            assert_eq!(
                Config::new().with_areas(bad).check(),
                Err(ConfigError::Areas(bad))
            );
        }
        assert_eq!(Config::new().with_areas(8).check(), Ok(8));
    }
}
