//! Every implementation must do the work its design does, or the comparison means nothing:
//! copy in on map (for every direction, except a `FromDevice` mapping where
//! `Kind::from_device_start` says otherwise), copy back on unmap for FromDevice and
//! Bidirectional unless skipped, never hand out overlapping memory, and give everything back.

use core::ptr::NonNull;
use std::collections::BTreeMap;
use swiotlb_bench::mix::{realistic_size, Rng};
use swiotlb_bench::{Bounce, Direction, FromDeviceStart, Kind, PAGE_SIZE};

const POOL: usize = 8 << 20;

fn device_write(pool: &impl Bounce, dma: u64, len: usize, byte: u8) {
    let p = pool.translate(dma, len).expect("mapping inside the pool");
    // SAFETY: the mapping is live, so these pool bytes are the "device's" to write.
    unsafe { core::ptr::write_bytes(p.as_ptr(), byte, len) };
}

fn device_read(pool: &impl Bounce, dma: u64, len: usize) -> Vec<u8> {
    let p = pool.translate(dma, len).expect("mapping inside the pool");
    let mut out = vec![0u8; len];
    // SAFETY: the mapping is live; `out` is a fresh buffer of `len` bytes.
    unsafe { core::ptr::copy_nonoverlapping(p.as_ptr(), out.as_mut_ptr(), len) };
    out
}

#[test]
fn map_copies_in_by_each_kinds_rule_and_unmap_copies_back_as_asked() {
    for kind in Kind::ALL {
        let pool = kind.build(POOL).unwrap();
        for dir in [
            Direction::ToDevice,
            Direction::FromDevice,
            Direction::Bidirectional,
        ] {
            for skip in [false, true] {
                for len in [1, 64, 2048, 3000, 4096, 65536, 256 * 1024] {
                    let mut orig: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
                    let before = orig.clone();
                    let buf = NonNull::from(&mut orig[..]);
                    // SAFETY: `orig` outlives the mapping and is untouched while mapped.
                    let dma = unsafe { pool.map(buf, dir) }.unwrap();
                    let seen = device_read(&pool, dma, len);
                    match (dir, kind.from_device_start()) {
                        (Direction::FromDevice, FromDeviceStart::Zeroed) => {
                            assert!(seen.iter().all(|&b| b == 0), "{kind} {len}: not zeroed")
                        }
                        // Every pool byte is 0 (never used) or 0xee (every mapping is
                        // device-written in full below) between two mappings, and the
                        // original's first byte is 1: a copy would show.
                        (Direction::FromDevice, FromDeviceStart::Untouched) => {
                            assert_ne!(seen, before, "{kind} {len}: copied in");
                            assert!(seen.iter().all(|&b| b == 0 || b == 0xee), "{kind} {len}");
                        }
                        _ => assert_eq!(seen, before, "{kind} {dir:?} {len}"),
                    }
                    if len >= PAGE_SIZE {
                        assert_eq!(dma % PAGE_SIZE as u64, 0, "{kind}: {len} not page-aligned");
                    }
                    device_write(&pool, dma, len, 0xee);
                    // SAFETY: `dma` is the live mapping of `buf`.
                    unsafe { pool.unmap(dma, buf, dir, skip) }.unwrap();
                    let copied_back = dir != Direction::ToDevice && !skip;
                    let expected = if copied_back { vec![0xee; len] } else { before };
                    assert_eq!(orig, expected, "{kind} {dir:?} skip={skip} {len}");
                }
            }
        }
        assert_eq!(pool.used_bytes(), 0, "{kind}");
    }
}

#[test]
fn churn_never_overlaps_and_gives_everything_back() {
    for kind in Kind::ALL {
        let pool = kind.build(POOL).unwrap();
        let src: Vec<u8> = vec![3; swiotlb_bench::mix::MAX_SIZE];
        let mut rng = Rng::new(7);
        // Live mappings by device address: (len).
        let mut live: BTreeMap<u64, usize> = BTreeMap::new();
        let mut full = 0;
        for _ in 0..20_000 {
            if live.is_empty() || rng.below(3) < 2 {
                let len = realistic_size(&mut rng);
                let buf = NonNull::from(&src[..len]);
                // SAFETY: ToDevice mappings only read `src`, which outlives them.
                match unsafe { pool.map(buf, Direction::ToDevice) } {
                    Ok(dma) => {
                        if let Some((&prev, &plen)) = live.range(..dma).next_back() {
                            assert!(prev + plen as u64 <= dma, "{kind}: overlap");
                        }
                        if let Some((&next, _)) = live.range(dma..).next() {
                            assert!(dma + len as u64 <= next, "{kind}: overlap");
                        }
                        live.insert(dma, len);
                    }
                    Err(swiotlb_bench::Error::Full) => full += 1,
                    Err(e) => panic!("{kind}: {e}"),
                }
            } else {
                let k = rng.below(live.len());
                let (&dma, &len) = live.iter().nth(k).unwrap();
                live.remove(&dma);
                let buf = NonNull::from(&src[..len]);
                // SAFETY: a live ToDevice mapping of `buf`.
                unsafe { pool.unmap(dma, buf, Direction::ToDevice, false) }.unwrap();
            }
        }
        assert!(pool.high_water_bytes() > 0);
        for (dma, len) in live {
            let buf = NonNull::from(&src[..len]);
            // SAFETY: a live ToDevice mapping of `buf`.
            unsafe { pool.unmap(dma, buf, Direction::ToDevice, false) }.unwrap();
        }
        assert_eq!(
            pool.used_bytes(),
            0,
            "{kind} (refused {full} maps on the way)"
        );
    }
}

#[test]
fn threads_each_get_their_own_bytes_back() {
    for kind in Kind::ALL {
        let pool = kind.build(POOL).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let pool = &pool;
                s.spawn(move || {
                    let mut rng = Rng::new(t as u64);
                    for _ in 0..2000 {
                        let len = realistic_size(&mut rng).min(32 * 1024);
                        let mut orig = vec![t; len];
                        let buf = NonNull::from(&mut orig[..]);
                        // SAFETY: `orig` outlives the mapping, touched by nothing else.
                        let dma = unsafe { pool.map(buf, Direction::Bidirectional) }.unwrap();
                        assert!(device_read(pool, dma, len).iter().all(|&b| b == t));
                        device_write(pool, dma, len, t + 100);
                        // SAFETY: the live mapping of `buf`.
                        unsafe { pool.unmap(dma, buf, Direction::Bidirectional, false) }.unwrap();
                        assert!(orig.iter().all(|&b| b == t + 100), "{kind}");
                    }
                });
            }
        });
        assert_eq!(pool.used_bytes(), 0, "{kind}");
    }
}

#[test]
fn fragmentation_stops_at_a_refusal_and_empties_the_pool() {
    for kind in Kind::ALL {
        let pool = kind.build(4 << 20).unwrap();
        let out = swiotlb_bench::fragmentation::first_failure(&pool, 1, 1_000_000)
            .unwrap()
            .expect("a 4 MiB pool fills up");
        assert!(
            out.live_fraction > 0.2 && out.live_fraction <= 1.0,
            "{kind}: {out:?}"
        );
        assert!(out.held_fraction >= out.live_fraction, "{kind}: {out:?}");
        assert_eq!(pool.used_bytes(), 0, "{kind}");
    }
}

#[test]
fn prepare_reaches_the_occupancy_and_release_empties_the_pool() {
    for kind in Kind::ALL {
        let pool = kind.build(POOL).unwrap();
        let mut held = swiotlb_bench::fill::Filler::new();
        let reached = held.prepare(&pool, 0.9, 3).unwrap();
        assert!((0.85..0.95).contains(&reached), "{kind}: {reached}");
        assert!(held.held() > 0);
        held.release(&pool).unwrap();
        assert_eq!(pool.used_bytes(), 0, "{kind}");
    }
}
