//! Two threads mapping at once.

use super::*;
use crate::Direction::{Bidirectional, FromDevice, ToDevice};
use loom::sync::Arc;
use loom::thread;

/// Two threads map in area 0 at once, with room for both there: both succeed, their runs
/// are disjoint, each bounce buffer holds its own bytes, and four slots are counted.
#[test]
fn two_maps_in_one_area_are_disjoint() {
    run_model("two_maps_in_one_area_are_disjoint", || {
        let pool = Arc::new(TestPool::tiny(8));
        let p = pool.clone();
        let other = thread::spawn(move || {
            in_area(0);
            Mapping::map(&p, 1, 2 * SLOT - 5, Bidirectional).expect("map with room")
        });
        in_area(0);
        let mine = Mapping::map(&pool, 2, 2 * SLOT, FromDevice).expect("map with room");
        let other = other.join().unwrap();

        assert_disjoint(&pool, &[(mine.dma, mine.len()), (other.dma, other.len())]);
        mine.check_bounce(&pool);
        other.check_bounce(&pool);
        assert_used(&pool, 4);
        assert!(pool.stats().high_water >= 2 && pool.stats().high_water <= 4);
        assert_eq!(pool.stats().failed_maps, 0);

        mine.unmap(&pool);
        other.unmap(&pool);
        assert_all_free(&pool);
    });
}

/// Two threads, both starting in area 0, each map a whole segment: together they fill the
/// pool exactly, so both must succeed whichever area each finds busy or full first.
#[test]
fn two_maps_that_fill_the_pool_both_succeed() {
    run_model("two_maps_that_fill_the_pool_both_succeed", || {
        let pool = Arc::new(TestPool::tiny(8));
        let p = pool.clone();
        let other = thread::spawn(move || {
            in_area(0);
            Mapping::map(&p, 3, SEGMENT * SLOT, ToDevice).expect("map with room")
        });
        in_area(0);
        let mine = Mapping::map(&pool, 4, SEGMENT * SLOT, ToDevice).expect("map with room");
        let other = other.join().unwrap();

        assert_disjoint(&pool, &[(mine.dma, mine.len()), (other.dma, other.len())]);
        mine.check_bounce(&pool);
        other.check_bounce(&pool);
        assert_used(&pool, 8);
        for area in 0..2 {
            assert_eq!(pool.area_stats(area).unwrap().used_slots, 4);
        }
        // Each thread samples the other area's use without ordering, so the pool's mark
        // may miss the other's run; it is at least every area's mark (4).
        let high = pool.stats().high_water;
        assert!((4..=8).contains(&high), "pool high water {high}");

        mine.unmap(&pool);
        other.unmap(&pool);
        assert_all_free(&pool);
    });
}

/// Three threads in area 0 at once: two map two slots each while the third unmaps an older
/// 2-slot mapping there and maps one slot. Area 0 (4 slots) cannot hold everything, so some
/// runs fall back to area 1; all maps succeed (6 of 8 slots at most are live), no runs
/// overlap, every bounce buffer keeps its bytes.
#[test]
fn three_threads_churn_one_area() {
    run_model("three_threads_churn_one_area", || {
        let pool = Arc::new(TestPool::tiny(8));
        in_area(0);
        let old = Mapping::map(&pool, 5, 2 * SLOT, ToDevice).unwrap();
        let spawn = |tag: u8| {
            let p = pool.clone();
            thread::spawn(move || {
                in_area(0);
                Mapping::map(&p, tag, 2 * SLOT, Bidirectional).expect("map with room")
            })
        };
        let (a, b) = (spawn(6), spawn(7));
        old.unmap(&pool);
        let mine = Mapping::map(&pool, 8, SLOT, FromDevice).expect("map with room");
        let (a, b) = (a.join().unwrap(), b.join().unwrap());

        let live = [(a.dma, a.len()), (b.dma, b.len()), (mine.dma, mine.len())];
        assert_disjoint(&pool, &live);
        for m in [&a, &b, &mine] {
            m.check_bounce(&pool);
        }
        assert_used(&pool, 5);
        assert_eq!(pool.stats().failed_maps, 0);
        for m in [a, b, mine] {
            m.unmap(&pool);
        }
        assert_all_free(&pool);
    });
}
