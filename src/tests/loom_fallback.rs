//! A full area: falling back to another, and failing cleanly when every area is full.

use super::*;
use crate::Direction::{Bidirectional, FromDevice, ToDevice};
use loom::sync::Arc;
use loom::thread;

/// Area 0 is full; area 1's owner holds two of its four slots. A thread of area 0 maps two
/// slots (it must fall back to area 1) while area 1's owner unmaps its mapping and maps two
/// slots again. Whatever the order, both maps succeed, in area 1, disjoint from each other.
#[test]
fn full_area_falls_back_while_owner_frees_and_maps() {
    run_model("full_area_falls_back_while_owner_frees_and_maps", || {
        let pool = Arc::new(TestPool::tiny(8));
        in_area(0);
        let filler = Mapping::map(&pool, 30, SEGMENT * SLOT, ToDevice).unwrap();
        in_area(1);
        let owned = Mapping::map(&pool, 31, 2 * SLOT, Bidirectional).unwrap();
        assert_eq!(pool.area_stats(0).unwrap().used_slots, 4);
        assert_eq!(pool.area_stats(1).unwrap().used_slots, 2);
        device_write(&pool, owned.dma, &pattern(91, owned.len()));

        let p = pool.clone();
        let stranger = thread::spawn(move || {
            in_area(0);
            Mapping::map(&p, 32, 2 * SLOT, FromDevice).expect("fallback to area 1")
        });
        // Area 1's owner frees and maps again.
        let orig = owned.unmap(&pool);
        assert_eq!(orig.read(), pattern(91, 2 * SLOT), "copy back on unmap");
        let again = Mapping::map(&pool, 33, 2 * SLOT, ToDevice).expect("map in own area");
        let stranger = stranger.join().unwrap();

        let live = [
            (filler.dma, filler.len()),
            (stranger.dma, stranger.len()),
            (again.dma, again.len()),
        ];
        assert_disjoint(&pool, &live);
        filler.check_bounce(&pool);
        stranger.check_bounce(&pool);
        again.check_bounce(&pool);
        assert_eq!(pool.area_stats(0).unwrap().used_slots, 4);
        assert_eq!(pool.area_stats(1).unwrap().used_slots, 4);
        assert_used(&pool, 8);
        assert_eq!(pool.stats().failed_maps, 0);
        // Area 1 always had room, so no search of it failed; area 0's failed searches
        // are the stranger's and the owner's (if it found its area busy), no more.
        assert_eq!(pool.area_stats(1).unwrap().failed_searches, 0);
        assert!(pool.area_stats(0).unwrap().failed_searches <= 2);

        for m in [filler, stranger, again] {
            m.unmap(&pool);
        }
        assert_all_free(&pool);
    });
}

/// Both areas are full. One thread maps a whole segment while another unmaps area 1's
/// mapping. The map either succeeds (in area 1, after the unmap) or fails with `Full`
/// carrying the pool's figures; either way no slot is lost or counted twice, `failed_maps`
/// counts the failure, and the next map succeeds.
#[test]
fn exhaustion_racing_a_free_fails_cleanly() {
    run_model("exhaustion_racing_a_free_fails_cleanly", || {
        let pool = Arc::new(TestPool::tiny(8));
        in_area(0);
        let zero = Mapping::map(&pool, 40, SEGMENT * SLOT, ToDevice).unwrap();
        in_area(1);
        let one = Mapping::map(&pool, 41, SEGMENT * SLOT, ToDevice).unwrap();
        assert_used(&pool, 8);

        let p = pool.clone();
        let mapper = thread::spawn(move || {
            in_area(0);
            Mapping::map(&p, 42, SEGMENT * SLOT, ToDevice)
        });
        one.unmap(&pool);
        let result = mapper.join().unwrap();

        let late = match result {
            Ok(m) => {
                assert_disjoint(&pool, &[(zero.dma, zero.len()), (m.dma, m.len())]);
                m.check_bounce(&pool);
                assert_eq!(pool.area_stats(1).unwrap().used_slots, 4);
                assert_eq!(pool.stats().failed_maps, 0);
                assert_used(&pool, 8);
                m
            }
            Err(MapError::Full {
                size,
                slots,
                total_slots,
                used_slots,
                ..
            }) => {
                assert_eq!((size, slots, total_slots), (SEGMENT * SLOT, SEGMENT, 8));
                assert!(used_slots == 4 || used_slots == 8, "used {used_slots}");
                assert_eq!(pool.stats().failed_maps, 1);
                assert_used(&pool, 4);
                in_area(0);
                Mapping::map(&pool, 43, SEGMENT * SLOT, ToDevice).expect("the next map")
            }
            Err(e) => panic!("unexpected error {e}"),
        };
        zero.check_bounce(&pool);
        late.check_bounce(&pool);
        zero.unmap(&pool);
        late.unmap(&pool);
        assert_all_free(&pool);
    });
}
