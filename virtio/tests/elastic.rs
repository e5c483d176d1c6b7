//! virtio-drivers' `VirtIOBlk` over an elastic pool that starts smaller than one burst of
//! requests: it grows while the burst is in flight, serves every request, shrinks back
//! when the burst is done, and loses nothing. The device model's memory follows the pool:
//! it can reach the regions shared now and nothing else, so a descriptor into a region
//! given back (or never shared) fails the device.

mod common;

use common::{assert_idle, pattern, DMA_BASE};
use swiotlb::{Config, ElasticConfig, SubPoolKind};
use swiotlb_virtio::testing::{BlockDevice, DmaRegion, Mode, TransportBuilder, SECTOR_SIZE};
use swiotlb_virtio::{bind_pool, HalOptions, PoolBinding, SwiotlbHal};
use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk};

const REQUEST: usize = 256 << 10;
const BURST: usize = 12;
const DISK_SECTORS: u64 = (BURST * REQUEST / SECTOR_SIZE) as u64;

/// 256 KiB first region (one segment: the rings take part of it, so not even one request
/// fits beside them); growth by 1 MiB (halving to 256 KiB), up to 8 MiB; idle time 0.
fn elastic_region() -> &'static DmaRegion {
    let config = ElasticConfig::new()
        .with_pool(Config::new().with_areas(1))
        .with_initial(256 << 10)
        .with_grow(1 << 20, 256 << 10)
        .with_max_bytes(8 << 20)
        .with_idle_time_ns(0);
    DmaRegion::leak_elastic(DMA_BASE, config).expect("elastic region")
}

#[test]
fn a_burst_of_256k_requests_grows_the_pool_is_served_and_shrinks_back() {
    bind_pool!(P);
    let region = elastic_region();
    let pool = region.pool();
    P::register(pool, HalOptions::new().track_shares(true)).unwrap();
    let (transport, device) = TransportBuilder::new(BlockDevice::new(DISK_SECTORS), region)
        .indirect(true)
        .mode(Mode::Manual)
        .build();
    let mut blk = VirtIOBlk::<SwiotlbHal<P>, _>::new(transport).unwrap();
    let rings = pool.stats().used_slots;
    let first_bytes = pool.stats().held_bytes;
    assert!(
        BURST * REQUEST > first_bytes,
        "the pool starts smaller than one burst"
    );

    // The burst: every write in flight at once (12 x 256 KiB = 3 MiB).
    let datas: Vec<Vec<u8>> = (0..BURST).map(|i| pattern(REQUEST, i as u32)).collect();
    let mut reqs: Vec<BlkReq> = (0..BURST).map(|_| BlkReq::default()).collect();
    let mut resps: Vec<BlkResp> = (0..BURST).map(|_| BlkResp::default()).collect();
    let sector = |i: usize| i * REQUEST / SECTOR_SIZE;
    let mut tokens = Vec::new();
    for i in 0..BURST {
        // SAFETY: req, data and resp of request i are not touched until it completes below.
        let t = unsafe { blk.write_blocks_nb(sector(i), &mut reqs[i], &datas[i], &mut resps[i]) }
            .unwrap();
        tokens.push(t);
    }
    let grown = pool.stats();
    eprintln!(
        "burst of {BURST} x 256 KiB: {} regions, {} KiB held (first {} KiB), {} growths ({} transient), {} backend refusals",
        grown.sub_pools,
        grown.held_bytes >> 10,
        first_bytes >> 10,
        grown.growths,
        grown.transient_growths,
        grown.backend_refusals
    );
    assert!(grown.growths >= 2, "{grown:?}");
    assert!(grown.held_bytes >= BURST * REQUEST, "{grown:?}");
    assert_eq!(grown.growth_failures, 0, "{grown:?}");
    // The device sees every region: it serves the whole burst.
    assert_eq!(device.process().unwrap(), BURST);
    let mut done = 0;
    while let Some(token) = blk.peek_used() {
        let i = tokens
            .iter()
            .position(|&t| t == token)
            .expect("known token");
        // SAFETY: the buffers given to write_blocks_nb for this token.
        unsafe { blk.complete_write_blocks(token, &reqs[i], &datas[i], &mut resps[i]) }.unwrap();
        assert_eq!(resps[i].status(), RespStatus::OK);
        done += 1;
    }
    assert_eq!(done, BURST);
    assert_eq!(pool.stats().used_slots, rings, "every buffer unshared");

    // The same burst read back, in flight at once.
    let mut backs: Vec<Vec<u8>> = (0..BURST).map(|_| vec![0u8; REQUEST]).collect();
    tokens.clear();
    for i in 0..BURST {
        // SAFETY: as above.
        let t =
            unsafe { blk.read_blocks_nb(sector(i), &mut reqs[i], &mut backs[i], &mut resps[i]) }
                .unwrap();
        tokens.push(t);
    }
    assert_eq!(device.process().unwrap(), BURST);
    while let Some(token) = blk.peek_used() {
        let i = tokens.iter().position(|&t| t == token).unwrap();
        // SAFETY: as above.
        unsafe { blk.complete_read_blocks(token, &reqs[i], &mut backs[i], &mut resps[i]) }.unwrap();
        assert_eq!(resps[i].status(), RespStatus::OK);
    }
    assert!(backs == datas, "read back differs from what was written");
    let disk = device
        .with_model(|d: &mut BlockDevice| d.disk().to_vec())
        .unwrap();
    assert!(disk == datas.concat(), "the device's disk differs");
    assert!(device.failure().is_none());

    // Done: the grown regions go back; the first (with the rings) stays.
    let before = pool.stats();
    let released = pool.shrink();
    let after = pool.stats();
    assert_eq!(released, before.sub_pools - 1, "{before:?}");
    assert_eq!(after.sub_pools, 1);
    assert_eq!(after.held_bytes, first_bytes);
    assert_eq!(after.used_slots, rings);
    assert_eq!(pool.sub_pools()[0].kind, SubPoolKind::First);
    // Every share of the backend but the first region's was matched by an unshare, and
    // nothing leaked.
    let backend = region.backend();
    assert_eq!(backend.shares() - backend.unshares(), 1);
    assert!(backend.leaked().is_empty());
    let counters = P::counters();
    assert_eq!(counters.shares, counters.unshares);
    assert_eq!(P::slot().outstanding(), Some(0));

    // The driver still works on the shrunk pool (which grows again for this request).
    let mut one = vec![0u8; REQUEST];
    let (mut req, mut resp) = (BlkReq::default(), BlkResp::default());
    // SAFETY: req, one and resp are untouched until the completion below.
    let token = unsafe { blk.read_blocks_nb(sector(3), &mut req, &mut one, &mut resp) }.unwrap();
    assert_eq!(device.process().unwrap(), 1);
    // SAFETY: the buffers given to read_blocks_nb.
    unsafe { blk.complete_read_blocks(token, &req, &mut one, &mut resp) }.unwrap();
    assert!(one == datas[3]);
    drop(blk);
    assert_idle(pool);
}
