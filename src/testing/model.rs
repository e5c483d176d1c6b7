//! The shadow model: occupancy, placement existence, and the outcome each call must have.

use super::*;

impl Harness {
    /// The live entry whose data holds `dma`.
    pub(super) fn model_find(&self, dma: DmaAddr) -> Option<usize> {
        self.live
            .iter()
            .position(|l| dma >= l.dma && dma - l.dma < l.len as u64)
    }

    pub(super) fn used_slots(&self) -> usize {
        self.used.iter().filter(|u| **u).count()
    }

    // --- placement predictions ----------------------------------------------------------

    /// Whether some run of `slots` slots exists whose first slot's device address `a`
    /// satisfies `ok(a)` and that crosses no segment or boundary window; with `free_only`,
    /// only runs of free slots count.
    pub(super) fn exists(
        &self,
        slots: usize,
        window: u64,
        free_only: bool,
        ok: impl Fn(u64) -> bool,
    ) -> bool {
        let slot = self.slot_size() as u64;
        let total = self.cfg.slots as usize;
        (0..total.saturating_sub(slots - 1)).any(|s| {
            let a = self.start() + s as u64 * slot;
            let last = a + slots as u64 * slot - 1;
            ok(a)
                && a / window == last / window
                && (!free_only || self.used[s..s + slots].iter().all(|u| !u))
        })
    }

    /// The device-address window no run may cross: the smaller of a segment and the
    /// boundary.
    pub(super) fn window(&self, c: &Constraints) -> u64 {
        let segment = (self.slot_size() as u64) << self.cfg.segment_shift;
        segment.min(c.seg_boundary_mask.saturating_add(1))
    }

    /// The error the pool must give when it finds no room, from a brute-force search.
    pub(super) fn expect_no_room(
        &self,
        slots: usize,
        c: &Constraints,
        ok: &dyn Fn(u64) -> bool,
        extent: usize,
        got: &MapError,
    ) {
        let window = self.window(c);
        let reachable = |a: u64| {
            a.checked_add(extent as u64 - 1)
                .is_some_and(|last| last <= c.dma_limit)
        };
        let room_now = self.exists(slots, window, true, |a| ok(a) && reachable(a));
        let room_empty = self.exists(slots, window, false, |a| ok(a) && reachable(a));
        let room_unlimited = self.exists(slots, window, false, ok);
        let kind = |e: &MapError| match e {
            MapError::Full { .. } => "full",
            MapError::Unreachable { .. } => "unreachable",
            MapError::Impossible { .. } => "impossible",
            _ => "other",
        };
        let expected = if room_now {
            "success"
        } else if room_empty {
            "full"
        } else if room_unlimited {
            "unreachable"
        } else {
            "impossible"
        };
        assert_eq!(kind(got), expected, "step {}: {got} ({self:?})", self.step);
        if let MapError::Full {
            used_slots,
            total_slots,
            ..
        } = got
        {
            assert_eq!(*used_slots, self.used_slots());
            assert_eq!(*total_slots, self.cfg.slots as usize);
        }
    }

    /// Checks a run handed out at device address `first` and marks it used in the model.
    pub(super) fn claim(&mut self, first: DmaAddr, slots: usize, c: &Constraints) -> usize {
        let step = self.step;
        let slot = self.slot_size() as u64;
        assert!(first >= self.start(), "step {step}: run below the pool");
        let first_slot = ((first - self.start()) / slot) as usize;
        assert_eq!(
            (first - self.start()) % slot,
            0,
            "step {step}: run not slot-aligned"
        );
        assert!(
            first_slot + slots <= self.cfg.slots as usize,
            "step {step}: run past the pool's end"
        );
        let window = self.window(c);
        let last = first + slots as u64 * slot - 1;
        assert_eq!(
            first / window,
            last / window,
            "step {step}: run crosses a segment or boundary"
        );
        for s in first_slot..first_slot + slots {
            assert!(
                !self.used[s],
                "step {step}: slot {s} handed out twice ({self:?})"
            );
            self.used[s] = true;
        }
        first_slot
    }

    pub(super) fn release_model(&mut self, i: usize) -> Live {
        let l = self.live.swap_remove(i);
        for s in l.first_slot..l.first_slot + l.slots {
            self.used[s] = false;
        }
        self.released = Some(Released {
            dma: l.dma,
            len: l.len,
        });
        if self.cfg.scrub {
            let slot = self.slot_size();
            let run = l.first_slot * slot;
            let bytes = self.read_pool(self.start() + run as u64, l.slots * slot);
            for (i, b) in bytes.iter().enumerate() {
                assert!(
                    *b == 0 || self.untracked[run + i],
                    "step {}: released run not scrubbed at pool byte {:#x}",
                    self.step,
                    run + i
                );
            }
        }
        l
    }

    /// Counts the outcome of a map or allocation (a `Full` is also a failed map).
    pub(super) fn count_placement<T>(
        &mut self,
        got: &Result<T, MapError>,
        ok: impl FnOnce(&mut Tally) -> &mut usize,
    ) {
        match got {
            Ok(_) => *ok(&mut self.tally) += 1,
            Err(MapError::Full { .. }) => {
                self.tally.full += 1;
                self.failed_maps += 1;
            }
            Err(MapError::Impossible { .. } | MapError::Unreachable { .. }) => {
                self.tally.no_placement += 1
            }
            Err(_) => self.tally.refused += 1,
        }
    }

    pub(super) fn count_lookup(
        &mut self,
        got: &Result<(), LookupError>,
        ok: impl FnOnce(&mut Tally) -> &mut usize,
    ) {
        match got {
            Ok(()) => *ok(&mut self.tally) += 1,
            Err(_) => self.tally.lookups_refused += 1,
        }
    }

    /// The model's answer to an unmap, sync or free: the live entry, or the exact error.
    pub(super) fn expect_lookup(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
        kind: LookupKind,
    ) -> Result<usize, LookupError> {
        if kind == LookupKind::Sync && len == 0 {
            return Err(LookupError::ZeroLength { dma });
        }
        let i = self.model_find(dma).ok_or(LookupError::NotMapped { dma })?;
        let l = &self.live[i];
        let stream = "streaming mapping";
        let coherent = "coherent allocation";
        let mapped = match (l.kind, kind) {
            (Kind::Coherent, LookupKind::Free) => None,
            (Kind::Coherent, _) => {
                return Err(LookupError::WrongKind {
                    dma,
                    expected: stream,
                    actual: coherent,
                })
            }
            (Kind::Stream(_), LookupKind::Free) => {
                return Err(LookupError::WrongKind {
                    dma,
                    expected: coherent,
                    actual: stream,
                })
            }
            (Kind::Stream(d), _) => Some(d),
        };
        if kind == LookupKind::Sync {
            let off = (dma - l.dma) as usize;
            if len > l.len - off {
                return Err(LookupError::OutOfRange {
                    dma,
                    len,
                    start: l.dma,
                    mapped: l.len,
                });
            }
            let mapped = mapped.expect("streaming");
            if dir != mapped && mapped != Direction::Bidirectional {
                return Err(LookupError::DirectionMismatch {
                    dma,
                    mapped,
                    given: dir,
                });
            }
            return Ok(i);
        }
        if dma != l.dma {
            return Err(LookupError::NotStart { dma, start: l.dma });
        }
        if len != l.len {
            return Err(LookupError::LengthMismatch {
                dma,
                mapped: l.len,
                given: len,
            });
        }
        if let Some(mapped) = mapped {
            if dir != mapped {
                return Err(LookupError::DirectionMismatch {
                    dma,
                    mapped,
                    given: dir,
                });
            }
        }
        Ok(i)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LookupKind {
    Unmap,
    Sync,
    Free,
}
