//! The elastic pool growing while other threads map and unmap.

use super::elastic::*;
use super::*;

/// The first region is full. One thread maps 2 slots, which needs growth; the other
/// unmaps the full region's mapping (copying the device's bytes back) and maps 3 slots,
/// which fits in the first region again or needs growth of its own. Both maps succeed in
/// every order, their slots are apart and hold their bytes, nothing is freed or unshared
/// under anyone, and once all is unmapped a shrink gives every grown region back and the
/// backend's books balance. (Checked to fail with `synchronize` emptied: growth then frees
/// the old table while the other thread's map still reads it.)
#[test]
fn growth_racing_map_and_unmap() {
    run_model("growth_racing_map_and_unmap", || {
        let backend = LoomBackend::new();
        let pool = Arc::new(elastic(&backend, true));
        in_area(0);
        let a = Buffer::new(1, REGION);
        let ma = emap(&pool, &a, Bidirectional).expect("fills the first region");
        edevice_write(&pool, ma, &pattern(91, REGION));

        let (p, b) = (pool.clone(), backend.clone());
        let grower = thread::spawn(move || {
            in_area(0);
            let buf = Buffer::new(2, 2 * SLOT);
            let dma = emap(&p, &buf, ToDevice).expect("map with growth");
            assert_eq!(ebounce(&p, dma, 2 * SLOT), pattern(2, 2 * SLOT));
            b.used(dma);
            (dma, buf)
        });
        eunmap(&pool, ma, &a, Bidirectional);
        assert_eq!(a.read(), pattern(91, REGION), "copy back");
        let c = Buffer::new(3, 3 * SLOT);
        let mc = emap(&pool, &c, ToDevice).expect("map after the unmap");
        backend.used(mc);
        let (mb, bbuf) = grower.join().unwrap();

        assert_apart((mb, 2 * SLOT), (mc, 3 * SLOT));
        assert_eq!(ebounce(&pool, mb, 2 * SLOT), pattern(2, 2 * SLOT));
        assert_eq!(ebounce(&pool, mc, 3 * SLOT), pattern(3, 3 * SLOT));
        assert!(backend.is_live(mb) && backend.is_live(mc));
        eunmap(&pool, mb, &bbuf, ToDevice);
        eunmap(&pool, mc, &c, ToDevice);
        let stats = pool.stats();
        assert_eq!(stats.used_slots, 0);
        assert_eq!(pool.shrink(), stats.sub_pools - 1);
        assert_eq!(pool.stats().sub_pools, 1);
        drop(pool);
        backend.assert_balanced();
    });
}
