//! The elastic pool giving a region back while other threads map, unmap and look up.

use super::elastic::*;
use super::*;

/// A grown region holds one mapping. One thread unmaps it (copying back), another shrinks
/// the pool, and the main thread looks the address up. The shrink gives the region back
/// only if it finds it empty, never while the unmap still copies out of it or holds its
/// metadata, and never while the lookup holds it; the lookup sees the mapping or nothing.
/// (Checked to fail with `synchronize` emptied: the region's metadata is then freed while
/// the unmap or the lookup still reads it.)
#[test]
fn shrink_racing_unmap_and_lookup() {
    run_model("shrink_racing_unmap_and_lookup", || {
        let backend = LoomBackend::new();
        let pool = Arc::new(elastic(&backend, true));
        in_area(0);
        let fill = Buffer::new(1, REGION);
        let mf = emap(&pool, &fill, ToDevice).unwrap();
        let m = Buffer::new(2, 2 * SLOT);
        let mm = emap(&pool, &m, Bidirectional).expect("grows");
        edevice_write(&pool, mm, &pattern(92, 2 * SLOT));

        let (p, b) = (pool.clone(), backend.clone());
        let unmapper = thread::spawn(move || {
            in_area(0);
            // The mapping is ours until the unmap: its region must still be shared. The
            // unmap's own accesses (the copy back, the release) are checked by the
            // region's `TrackCell`, read after them and freed before the unshare.
            b.used(mm);
            eunmap(&p, mm, &m, Bidirectional);
            assert_eq!(m.read(), pattern(92, 2 * SLOT), "copy back");
        });
        let p = pool.clone();
        let shrinker = thread::spawn(move || {
            in_area(0);
            p.shrink()
        });
        if let Some(found) = pool.lookup(mm) {
            assert_eq!((found.dma, found.len), (mm, 2 * SLOT));
        }
        unmapper.join().unwrap();
        let released = shrinker.join().unwrap();
        assert!(released <= 1);
        assert_eq!(
            released + pool.shrink(),
            1,
            "the region goes back once empty"
        );
        assert!(pool.lookup(mm).is_none());
        eunmap(&pool, mf, &fill, ToDevice);
        drop(pool);
        backend.assert_balanced();
    });
}

/// A grown region is empty and the first is full. One thread maps 2 slots (into the
/// grown region, or into a new one if the shrink closed it first); another shrinks. The
/// region holding the new mapping is never given back while it lives. (Checked to fail
/// with the shrink's first step, closing the region and waiting out maps, removed.)
#[test]
fn shrink_racing_a_map_into_the_region() {
    run_model("shrink_racing_a_map_into_the_region", || {
        let backend = LoomBackend::new();
        let pool = Arc::new(elastic(&backend, true));
        in_area(0);
        let fill = Buffer::new(1, REGION);
        let mf = emap(&pool, &fill, ToDevice).unwrap();
        pool.grow(REGION).expect("a region ahead of need");

        let (p, b) = (pool.clone(), backend.clone());
        let mapper = thread::spawn(move || {
            in_area(0);
            let buf = Buffer::new(3, 2 * SLOT);
            let dma = emap(&p, &buf, ToDevice).expect("room or growth");
            b.used(dma);
            (dma, buf)
        });
        let p = pool.clone();
        let shrinker = thread::spawn(move || {
            in_area(0);
            p.shrink()
        });
        let (dma, buf) = mapper.join().unwrap();
        let released = shrinker.join().unwrap();
        assert!(released <= 1);
        assert!(backend.is_live(dma), "the mapping's region was given back");
        assert_eq!(ebounce(&pool, dma, 2 * SLOT), pattern(3, 2 * SLOT));
        backend.used(dma);
        eunmap(&pool, dma, &buf, ToDevice);
        eunmap(&pool, mf, &fill, ToDevice);
        pool.shrink();
        assert_eq!(pool.stats().sub_pools, 1);
        drop(pool);
        backend.assert_balanced();
    });
}
