//! Each operation run on the pool and the model side by side.

use super::model::LookupKind;
use super::*;

impl Harness {
    /// The device writes `n` bytes of `byte` at `dma`; the model applies it to every live
    /// bounce buffer it touches.
    pub(super) fn device_write(&mut self, dma: DmaAddr, n: usize, byte: u8) {
        if n == 0 {
            return;
        }
        self.tally.device_writes += 1;
        self.write_pool(dma, n, byte);
        let end = dma + n as u64;
        for l in &mut self.live {
            let lo = dma.max(l.dma);
            let hi = end.min(l.dma + l.len as u64);
            if lo < hi {
                l.bounce[(lo - l.dma) as usize..(hi - l.dma) as usize].fill(byte);
            }
        }
    }

    pub(super) fn map(
        &mut self,
        len: u32,
        dir: Direction,
        orig_low: u16,
        choice: ConstraintsChoice,
        fill: u8,
        zero_fill: bool,
    ) {
        let segment = self.slot_size() << self.cfg.segment_shift;
        let len = length(len, segment + 2 * self.slot_size());
        let c = choice.resolve(&self.pool);
        // An original whose address has the chosen low 13 bits.
        let mut storage = vec![0u8; len + 8192];
        let base = storage.as_ptr() as usize;
        let at = ((orig_low as usize & 0x1fff).wrapping_sub(base)) & 0x1fff;
        for (i, b) in storage[at..at + len].iter_mut().enumerate() {
            *b = fill.wrapping_add((i * 7 + i / 251) as u8);
        }
        let orig_addr = (base + at) as u64;
        let buf = NonNull::from(&mut storage[at..at + len]);
        let attrs = if zero_fill {
            Attrs::ZERO_FILL
        } else {
            Attrs::NONE
        };
        // SAFETY: `storage` is ours; it stays alive and is touched only through the pool (or
        // by this harness between syncs, as a driver would) until the mapping is unmapped:
        // it moves into the model's `Live`, which keeps the heap buffer in place. Once the
        // harness writes it (`CpuWrite`), the syncs and unmap are given a fresh pointer.
        let result = unsafe { self.pool.map_attrs(buf, dir, &c, attrs) };

        // The model's prediction of the errors that come before any search.
        let max = self.pool.max_mapping_size(&c);
        let masks_ok = masks_valid(&c);
        let slot = self.slot_size() as u64;
        let offset = if masks_ok {
            (orig_addr & c.min_align_mask & (c.alloc_align_mask | (slot - 1))) as usize
        } else {
            0
        };
        let slots = (offset + len).div_ceil(slot as usize);
        let mut align = c.alloc_align_mask;
        if align == 0 && c.min_align_mask == 0 && len >= 4096 {
            align = 4095;
        }
        let align = align | (slot - 1);
        let matched = c.min_align_mask & !align;
        let placement_ok = move |a: u64| a & align == 0 && a & matched == orig_addr & matched;

        self.count_placement(&result, |t| &mut t.mapped);
        match result {
            Err(e) if len == 0 => assert_eq!(e, MapError::ZeroLength),
            Ok(_) if len == 0 => panic!("step {}: zero-length map succeeded", self.step),
            Err(e) if !masks_ok => assert!(matches!(e, MapError::InvalidMask { .. }), "{e}"),
            Ok(_) if !masks_ok => panic!("step {}: invalid mask accepted: {c:?}", self.step),
            Err(e) if len > max => assert_eq!(e, MapError::TooLarge { size: len, max }),
            Ok(_) if len > max => panic!("step {}: {len} bytes over max {max} mapped", self.step),
            Err(e) => {
                self.expect_no_room(slots, &c, &placement_ok, offset + len, &e);
            }
            Ok(dma) => {
                // Every constraint, on the address handed out.
                let step = self.step;
                assert_eq!(
                    dma & c.min_align_mask,
                    orig_addr & c.min_align_mask,
                    "step {step}: min_align_mask"
                );
                let first = dma - offset as u64;
                assert!(
                    placement_ok(first),
                    "step {step}: alignment of {first:#x} ({c:?})"
                );
                assert!(
                    dma + len as u64 - 1 <= c.dma_limit,
                    "step {step}: {dma:#x}+{len} above limit {:#x}",
                    c.dma_limit
                );
                let first_slot = self.claim(first, slots, &c);
                // The copy in, for every direction, unless zero-filled.
                let data = storage[at..at + len].to_vec();
                let bounce = if zero_fill && dir == Direction::FromDevice {
                    vec![0; len]
                } else {
                    data.clone()
                };
                assert_eq!(
                    self.read_pool(dma, len),
                    bounce,
                    "step {step}: copy in ({dir:?}, zero fill {zero_fill})"
                );
                let data_at = (dma - self.start()) as usize;
                self.check_new_run(first_slot, slots, data_at..data_at + len, "map");
                self.live.push(Live {
                    kind: Kind::Stream(dir),
                    dma,
                    len,
                    first_slot,
                    slots,
                    storage,
                    at,
                    orig: data,
                    bounce,
                    touched: false,
                    handle: None,
                });
            }
        }
    }

    pub(super) fn unmap(&mut self, target: Target, len: LenChoice, dir: DirChoice, skip: bool) {
        let (dma, picked) = self.address(target);
        let len = self.length(len, dma, picked);
        let dir = self.direction(dir, dma);
        let attrs = if skip {
            Attrs::SKIP_CPU_SYNC
        } else {
            Attrs::NONE
        };
        let expected = self.expect_lookup(dma, len, dir, LookupKind::Unmap);
        let got = match expected.map(|i| &mut self.live[i]) {
            // The harness wrote the original since map: give the pool a fresh pointer to it
            // (the one it kept is no longer valid), and check that a wrong one is refused.
            Ok(l) if l.touched => {
                let at = l.at;
                let shifted = NonNull::from(&mut l.storage[at + 1..at + len + 1]);
                // SAFETY: not the mapping's buffer: refused before any copy.
                let wrong = unsafe { self.pool.unmap_into(dma, shifted, dir, attrs) };
                assert!(
                    matches!(wrong, Err(LookupError::WrongBuffer { .. })),
                    "step {}: unmap_into with a wrong buffer gave {wrong:?}",
                    self.step
                );
                let fresh = NonNull::from(&mut l.storage[at..at + len]);
                // SAFETY: `fresh` is the live mapping's original, ours and valid.
                unsafe { self.pool.unmap_into(dma, fresh, dir, attrs) }
            }
            // SAFETY: every original of a live mapping is alive in the model, untouched
            // since map here; a refused call touches nothing.
            _ => unsafe { self.pool.unmap(dma, len, dir, attrs) },
        };
        assert_eq!(
            got,
            expected.map(|_| ()),
            "step {}: unmap({dma:#x}, {len}, {dir:?})",
            self.step
        );
        self.count_lookup(&got, |t| &mut t.unmapped);
        if let Ok(i) = expected {
            let mut l = self.release_model(i);
            if dir.from_device() && !skip {
                l.orig.copy_from_slice(&l.bounce);
            }
            let at = l.at;
            assert_eq!(
                &l.storage[at..at + l.len],
                &l.orig[..],
                "step {}: original after unmap",
                self.step
            );
        }
    }

    pub(super) fn sync(
        &mut self,
        target: Target,
        len: LenChoice,
        dir: DirChoice,
        for_device: bool,
    ) {
        let (dma, picked) = self.address(target);
        let len = self.length(len, dma, picked);
        let dir = self.direction(dir, dma);
        let expected = self.expect_lookup(dma, len, dir, LookupKind::Sync);
        let got = match expected.map(|i| &mut self.live[i]) {
            Ok(l) if l.touched => {
                // A fresh pointer to the part of the original at `dma`, as in `unmap`.
                let at = l.at + (dma - l.dma) as usize;
                let fresh = NonNull::from(&mut l.storage[at..at + len]);
                if for_device {
                    // SAFETY: `fresh` is that part of a live mapping's original.
                    unsafe { self.pool.sync_for_device_from(dma, fresh, dir) }
                } else {
                    // SAFETY: as above.
                    unsafe { self.pool.sync_for_cpu_into(dma, fresh, dir) }
                }
            }
            // SAFETY: as in `unmap`.
            _ if for_device => unsafe { self.pool.sync_for_device(dma, len, dir) },
            // SAFETY: as in `unmap`.
            _ => unsafe { self.pool.sync_for_cpu(dma, len, dir) },
        };
        let what = if for_device {
            "sync_for_device"
        } else {
            "sync_for_cpu"
        };
        assert_eq!(
            got,
            expected.map(|_| ()),
            "step {}: {what}({dma:#x}, {len}, {dir:?})",
            self.step
        );
        self.count_lookup(&got, |t| &mut t.synced);
        if let Ok(i) = expected {
            let l = &mut self.live[i];
            let off = (dma - l.dma) as usize;
            if for_device && dir.to_device() {
                let (o, b) = (&l.orig, &mut l.bounce);
                b[off..off + len].copy_from_slice(&o[off..off + len]);
            }
            if !for_device && dir.from_device() {
                let (o, b) = (&mut l.orig, &l.bounce);
                o[off..off + len].copy_from_slice(&b[off..off + len]);
            }
        }
    }

    pub(super) fn alloc(&mut self, size: u32, choice: ConstraintsChoice) {
        let segment = self.slot_size() << self.cfg.segment_shift;
        let size = length(size, segment + 2 * self.slot_size());
        let c = choice.resolve(&self.pool);
        let result = self.pool.alloc(size, &c);
        let masks_ok = masks_valid(&c);
        let slot = self.slot_size() as u64;
        let slots = size.div_ceil(slot as usize);
        let order = (size.div_ceil(4096).next_power_of_two() * 4096) as u64;
        let align = (order - 1) | c.alloc_align_mask | (slot - 1);
        let placement_ok = move |a: u64| a & align == 0;
        self.count_placement(&result, |t| &mut t.allocated);
        match result {
            Err(e) if size == 0 => assert_eq!(e, MapError::ZeroLength),
            Ok(_) if size == 0 => panic!("step {}: zero-size alloc succeeded", self.step),
            Err(e) if !masks_ok => assert!(matches!(e, MapError::InvalidMask { .. }), "{e}"),
            Ok(_) if !masks_ok => panic!("step {}: invalid mask accepted", self.step),
            Err(e) if slots > 1 << self.cfg.segment_shift => {
                assert!(matches!(e, MapError::TooLarge { .. }), "{e}")
            }
            Ok(_) if slots > 1 << self.cfg.segment_shift => {
                panic!("step {}: alloc over a segment succeeded", self.step)
            }
            Err(e) => {
                self.expect_no_room(slots, &c, &placement_ok, size, &e);
            }
            Ok(co) => {
                let step = self.step;
                assert!(
                    placement_ok(co.dma()),
                    "step {step}: coherent alignment {:#x}",
                    co.dma()
                );
                assert!(
                    co.dma() + size as u64 - 1 <= c.dma_limit,
                    "step {step}: above limit"
                );
                assert_eq!(co.size(), size);
                assert_eq!(
                    Some(co.cpu()),
                    self.pool.translate(co.dma(), size),
                    "step {step}: cpu address"
                );
                let first_slot = self.claim(co.dma(), slots, &c);
                let whole = self.read_pool(co.dma(), slots * slot as usize);
                assert!(
                    whole.iter().all(|b| *b == 0),
                    "step {step}: coherent memory not zeroed"
                );
                let run = first_slot * slot as usize;
                self.untracked[run..run + slots * slot as usize].fill(false);
                self.live.push(Live {
                    kind: Kind::Coherent,
                    dma: co.dma(),
                    len: size,
                    first_slot,
                    slots,
                    storage: Vec::new(),
                    at: 0,
                    orig: Vec::new(),
                    bounce: vec![0; size],
                    touched: false,
                    handle: Some(co),
                });
            }
        }
    }

    pub(super) fn free(&mut self, target: Target, len: LenChoice) {
        let (dma, picked) = self.address(target);
        let size = self.length(len, dma, picked);
        let expected = self.expect_lookup(dma, size, Direction::ToDevice, LookupKind::Free);
        let got = match expected {
            // The allocation the handle owns: freed through it, which cannot fail.
            Ok(i) => {
                let handle = self.live[i].handle.take().expect("live coherent handle");
                self.pool
                    .free(handle)
                    .expect("a handle frees its own allocation");
                Ok(())
            }
            // Anything else is refused whatever it names; the harness owns every live
            // allocation, so naming one is no one else's loss.
            // SAFETY: a refused call changes nothing.
            Err(_) => unsafe { self.pool.free_raw(dma, size) },
        };
        assert_eq!(
            got,
            expected.map(|_| ()),
            "step {}: free({dma:#x}, {size})",
            self.step
        );
        self.count_lookup(&got, |t| &mut t.freed);
        if let Ok(i) = expected {
            self.release_model(i);
        }
    }
}
