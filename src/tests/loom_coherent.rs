//! Coherent allocations racing streaming mappings.

use super::*;
use crate::Direction::Bidirectional;
use loom::sync::Arc;
use loom::thread;

/// Page-sized slots (coherent allocations are page-order aligned, which 64-byte slots
/// could meet at one place only): 8 slots of 4 KiB, 2-slot segments, 2 areas of 4 slots.
fn page_pool() -> TestPool {
    TestPool::new(
        8,
        Config::new()
            .with_slot_size(4096)
            .with_segment_slots(2)
            .with_areas(2)
            .with_area_hint(super::hinted_area),
    )
}

/// A point where loom may switch threads, with a sanity check of the figures.
fn observe(pool: &Pool) {
    let stats = pool.stats();
    assert!(stats.used_slots <= stats.total_slots, "{stats:?}");
}

/// Over a pool whose every byte is dirty: one thread allocates 5000 bytes coherently
/// (2 slots, 8 KiB aligned), checks they are zeroed, fills them and frees them; another
/// frees an earlier coherent allocation, maps a 6000-byte buffer, checks its bytes, lets the
/// device answer and unmaps. Each side checks its bytes again after the other may have
/// run, so an overlap, a missed zeroing or a copy to the wrong place shows.
#[test]
fn coherent_alloc_free_racing_map_unmap() {
    run_model("coherent_alloc_free_racing_map_unmap", || {
        let pool = Arc::new(page_pool());
        let all = pool.stats().total_slots * pool.slot_size();
        device_write(&pool, pool.dma_range().start, &std::vec![0xaa; all]);
        in_area(0);
        let first = pool.alloc(4096, &Constraints::NONE).unwrap();
        assert_eq!(bounce(&pool, first.dma(), 4096), std::vec![0u8; 4096]);
        device_write(&pool, first.dma(), &pattern(50, 4096));

        let p = pool.clone();
        let allocator = thread::spawn(move || {
            in_area(0);
            let c = p.alloc(5000, &Constraints::NONE).expect("alloc with room");
            assert_eq!(c.dma() % 8192, 0, "5000 bytes are aligned to 2 pages");
            assert_eq!(p.translate(c.dma(), 1), Some(c.cpu()));
            assert_eq!(bounce(&p, c.dma(), 8192), std::vec![0u8; 8192], "zeroed");
            device_write(&p, c.dma(), &pattern(51, 8192));
            observe(&p);
            assert_eq!(
                bounce(&p, c.dma(), 8192),
                pattern(51, 8192),
                "coherent bytes kept"
            );
            let dma = c.dma();
            p.free(c).expect("free");
            dma
        });

        assert_eq!(bounce(&pool, first.dma(), 4096), pattern(50, 4096));
        pool.free(first).expect("free");
        let m = Mapping::map(&pool, 52, 6000, Bidirectional).expect("map with room");
        observe(&pool);
        m.check_bounce(&pool);
        device_write(&pool, m.dma, &pattern(53, m.len()));
        observe(&pool);
        assert_eq!(bounce(&pool, m.dma, m.len()), pattern(53, m.len()));
        let orig = m.unmap(&pool);
        assert_eq!(orig.read(), pattern(53, 6000), "copy back");
        allocator.join().unwrap();

        assert_eq!(pool.stats().failed_maps, 0);
        assert_all_free(&pool);
    });
}
