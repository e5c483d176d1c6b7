//! Unmap racing map, and unmap racing itself.

use super::*;
use crate::Direction::{Bidirectional, ToDevice};
use crate::LookupError;
use loom::sync::Arc;
use loom::thread;

/// Area 0 holds two 2-slot mappings, `a` (slots 0-1) and `b` (slots 2-3). One thread unmaps
/// `a` and then maps one slot; another maps two slots starting in area 0, which it finds
/// full, busy, or with `a`'s run free again. Every map succeeds (there is always room), no
/// live run overlaps another, the device's bytes in `a` reach its original on unmap, and
/// once all is unmapped every slot can be had again (freed runs rejoin their neighbours).
#[test]
fn map_racing_unmap_of_a_neighbour() {
    run_model("map_racing_unmap_of_a_neighbour", || {
        let pool = Arc::new(TestPool::tiny(8));
        in_area(0);
        let a = Mapping::map(&pool, 10, 2 * SLOT, Bidirectional).unwrap();
        let b = Mapping::map(&pool, 11, 2 * SLOT - 1, ToDevice).unwrap();
        assert_disjoint(&pool, &[(a.dma, a.len()), (b.dma, b.len())]);
        assert_used(&pool, 4);
        // The device answers in `a`.
        device_write(&pool, a.dma, &pattern(90, a.len()));

        let p = pool.clone();
        let unmapper = thread::spawn(move || {
            in_area(0);
            let orig = a.unmap(&p);
            assert_eq!(orig.read(), pattern(90, 2 * SLOT), "a's copy back");
            Mapping::map(&p, 12, SLOT, ToDevice).expect("map with room")
        });
        let d = Mapping::map(&pool, 13, 2 * SLOT, Bidirectional).expect("map with room");
        let c = unmapper.join().unwrap();

        let live = [(b.dma, b.len()), (c.dma, c.len()), (d.dma, d.len())];
        assert_disjoint(&pool, &live);
        b.check_bounce(&pool);
        c.check_bounce(&pool);
        d.check_bounce(&pool);
        assert_used(&pool, 5);
        assert_eq!(pool.stats().failed_maps, 0);

        for m in [b, c, d] {
            m.unmap(&pool);
        }
        assert_all_free(&pool);
    });
}

/// Two threads unmap the same mapping at once (a caller bug, outside `unmap`'s contract, but
/// the design promises it is caught): one succeeds, the other gets `NotMapped`, and the
/// run is freed once: nothing counted twice, every slot usable again.
#[test]
fn racing_double_unmap_frees_once() {
    run_model("racing_double_unmap_frees_once", || {
        let pool = Arc::new(TestPool::tiny(8));
        in_area(0);
        let m = Mapping::map(&pool, 20, 3 * SLOT, ToDevice).unwrap();
        let (dma, len) = (m.dma, m.len());
        let unmap = move |pool: &Pool| {
            // SAFETY: the mapping is ToDevice, so unmap copies nothing into the original;
            // `m`'s buffer outlives both calls (it is dropped after the join).
            unsafe { pool.unmap(dma, len, ToDevice, Attrs::NONE) }
        };
        let p = pool.clone();
        let other = thread::spawn(move || unmap(&p));
        let mine = unmap(&pool);
        let other = other.join().unwrap();

        let results = [mine, other];
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(
            results.contains(&Err(LookupError::NotMapped { dma })),
            "{results:?}"
        );
        drop(m);
        assert_all_free(&pool);
    });
}

/// With scrubbing on, two threads unmap the same mapping (a caller bug, outside `unmap`'s
/// contract) while one of them maps again into what was freed. The release used to scrub
/// the run before checking, under the lock, that the mapping was still there: the loser of
/// the race could then zero a run that had since been given to the new mapping. Now the
/// check (and clearing the tags) comes first, and the new mapping's bytes survive every
/// order. (Checked to fail with the scrub moved back before the lock.)
#[test]
fn racing_double_unmap_with_scrub_zeroes_no_new_owner() {
    run_model("racing_double_unmap_with_scrub_zeroes_no_new_owner", || {
        let pool = Arc::new(TestPool::new(8, tiny_config().with_scrub_on_release(true)));
        // Area 0: `m` in slots 0-1, a filler in 2-3; area 1 full. A new 2-slot mapping can
        // only go where `m` was.
        in_area(0);
        let m = Mapping::map(&pool, 30, 2 * SLOT, ToDevice).unwrap();
        let filler = Mapping::map(&pool, 31, 2 * SLOT, ToDevice).unwrap();
        in_area(1);
        let other = Mapping::map(&pool, 32, 4 * SLOT, ToDevice).unwrap();
        in_area(0);
        let (dma, len) = (m.dma, m.len());
        let unmap = move |pool: &Pool| {
            // SAFETY: `m` is ToDevice, so unmap copies nothing into its original, which
            // outlives both calls (dropped after the join).
            unsafe { pool.unmap(dma, len, ToDevice, Attrs::NONE) }
        };
        let p = pool.clone();
        let racer = thread::spawn(move || unmap(&p));
        let mine = unmap(&pool);
        // One byte shorter than `m`, so that a late stale unmap of `m` cannot match it.
        let fresh = Mapping::map(&pool, 33, 2 * SLOT - 1, ToDevice);
        let theirs = racer.join().unwrap();
        assert_eq!(
            [mine, theirs].iter().filter(|r| r.is_ok()).count(),
            1,
            "{mine:?} {theirs:?}"
        );
        match fresh {
            Ok(n) => {
                assert_eq!(n.dma, dma, "the only room is m's run");
                n.check_bounce(&pool);
                n.unmap(&pool);
            }
            // `m` was not freed yet when we looked (the racer won but had not released).
            Err(e) => assert!(matches!(e, MapError::Full { .. }), "{e}"),
        }
        drop(m);
        filler.unmap(&pool);
        other.unmap(&pool);
        assert_all_free(&pool);
    });
}
