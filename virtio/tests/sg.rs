//! The scatter-gather API end to end: a hand-written split virtqueue (tests/common) maps its
//! buffers with `map_sg` and talks to the same rust-vmm device models.

mod common;

use common::{assert_idle, pattern, region, MiniQueue};
use swiotlb::{Config, Constraints, MapError, Pool};
use swiotlb_virtio::testing::{
    BlockDevice, DeviceHandle, DmaRegion, Mode, PoolTransport, RngDevice, TransportBuilder,
    F_INDIRECT_DESC,
};
use swiotlb_virtio::{map_sg, Completion, SgBuf, SgError};

const T_IN: u32 = 0;
const T_OUT: u32 = 1;

fn header(kind: u32, sector: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    h
}

struct Rig {
    region: &'static DmaRegion,
    transport: PoolTransport,
    device: DeviceHandle,
    queue: MiniQueue,
}

fn blk_rig(
    pool_bytes: usize,
    indirect: bool,
    build: impl FnOnce(TransportBuilder) -> TransportBuilder,
) -> Rig {
    let region = region(pool_bytes);
    let (mut transport, device) =
        build(TransportBuilder::new(BlockDevice::new(1024), region).indirect(indirect)).build();
    let extra = if indirect { F_INDIRECT_DESC } else { 0 };
    let queue = MiniQueue::new(region.pool(), &mut transport, 16, extra);
    Rig {
        region,
        transport,
        device,
        queue,
    }
}

impl Rig {
    /// One request, synchronously: map, submit (directly or through an indirect table),
    /// notify, take the used element, unmap with its length.
    fn run(&mut self, list: Vec<SgBuf<'_>>, indirect: bool) -> Completion {
        let mut sg = map_sg(self.region.pool(), list, &Constraints::NONE).unwrap();
        let table = indirect.then(|| sg.map_indirect_table(&Constraints::NONE).unwrap());
        let head = self.queue.submit(&sg, table).expect("descriptors");
        use virtio_drivers::transport::Transport;
        self.transport.notify(0);
        let (used_head, len) = self.queue.pop_used().expect("device completed the chain");
        assert_eq!(used_head, head);
        sg.unmap(len).unwrap()
    }

    fn finish(self) {
        assert!(self.device.failure().is_none());
        let Rig {
            region,
            mut transport,
            queue,
            ..
        } = self;
        queue.release(&mut transport);
        assert_idle(region.pool());
    }
}

fn block_round_trip(indirect: bool) {
    let mut rig = blk_rig(1 << 20, indirect, |b| b);
    for (i, &(sector, len)) in [(0u64, 512usize), (3, 4096), (40, 65536), (7, 1536)]
        .iter()
        .enumerate()
    {
        let data = pattern(len, i as u32);
        let hdr = header(T_OUT, sector);
        let mut status = [0xffu8];
        let done = rig.run(
            vec![SgBuf::Out(&hdr), SgBuf::Out(&data), SgBuf::In(&mut status)],
            indirect,
        );
        assert_eq!(status, [0]);
        assert_eq!(
            (done.used_len, done.copied_back, done.clamped),
            (1, 1, false)
        );

        let hdr = header(T_IN, sector);
        let mut back = vec![0u8; len];
        let mut status = [0xffu8];
        let done = rig.run(
            vec![
                SgBuf::Out(&hdr),
                SgBuf::In(&mut back),
                SgBuf::In(&mut status),
            ],
            indirect,
        );
        assert_eq!(status, [0]);
        assert!(back == data, "read back differs at sector {sector}");
        assert_eq!(done.copied_back, len + 1);
    }
    let stats = rig.device.stats();
    assert_eq!(stats.chains, 8);
    assert_eq!(stats.indirect_chains, if indirect { 8 } else { 0 });
    rig.finish();
}

#[test]
fn sg_block_round_trip_direct() {
    block_round_trip(false);
}

#[test]
fn sg_block_round_trip_indirect_table() {
    block_round_trip(true);
}

/// A device that reports more than it could have written: the copy back stops at the
/// buffers' end.
#[test]
fn sg_used_length_is_clamped_to_the_buffers() {
    let mut rig = blk_rig(256 << 10, false, |b| b.inflate_used_len(1 << 20));
    let data = pattern(4096, 5);
    let hdr = header(T_OUT, 2);
    let mut status = [0xffu8];
    let done = rig.run(
        vec![SgBuf::Out(&hdr), SgBuf::Out(&data), SgBuf::In(&mut status)],
        false,
    );
    assert_eq!(
        (done.used_len, done.copied_back, done.clamped),
        (1 + (1 << 20), 1, true)
    );
    let hdr = header(T_IN, 2);
    let mut back = vec![0u8; 4096];
    let mut status = [0xffu8];
    let done = rig.run(
        vec![
            SgBuf::Out(&hdr),
            SgBuf::In(&mut back),
            SgBuf::In(&mut status),
        ],
        false,
    );
    assert_eq!((done.copied_back, done.clamped), (4097, true));
    assert_eq!((back, status), (data, [0]));
    rig.finish();
}

/// The used length is honoured: a device that writes 16 bytes of a 4 KiB buffer gets 16
/// bytes copied back, and the rest of the buffer is left as it was.
#[test]
fn sg_copies_back_only_the_used_bytes() {
    let region = region(256 << 10);
    let (mut transport, device) =
        TransportBuilder::new(RngDevice::new(7).chunk(16), region).build();
    let mut queue = MiniQueue::new(region.pool(), &mut transport, 8, 0);
    let mut buf = vec![0xaau8; 4096];
    let sg = map_sg(region.pool(), [SgBuf::In(&mut buf)], &Constraints::NONE).unwrap();
    // Nothing of the buffer's 0xaa reached the pool: the device sees zeros.
    let seg = sg.segments()[0];
    let mut seen = vec![0xffu8; 4096];
    let at = region.pool().translate(seg.dma, 4096).unwrap();
    // SAFETY: inside the pool, read as the device would.
    unsafe { swiotlb::shared::copy_from_shared(seen.as_mut_ptr(), at.as_ptr(), 4096) };
    assert!(
        seen.iter().all(|&b| b == 0),
        "an In buffer's bytes reached the pool"
    );
    queue.submit(&sg, None).unwrap();
    use virtio_drivers::transport::Transport;
    transport.notify(0);
    let (_, len) = queue.pop_used().unwrap();
    assert_eq!(len, 16);
    let done = sg.unmap(len).unwrap();
    assert_eq!((done.copied_back, done.clamped), (16, false));
    assert!(
        buf[..16].iter().any(|&b| b != 0xaa),
        "device bytes not copied back"
    );
    assert!(buf[16..].iter().all(|&b| b == 0xaa));
    assert!(device.failure().is_none());
    queue.release(&mut transport);
    assert_idle(region.pool());
}

/// Several chains in flight at once, served in one batch, completed in used order.
#[test]
fn sg_chains_in_flight() {
    let mut rig = blk_rig(1 << 20, true, |b| b.mode(Mode::Manual));
    let datas: Vec<Vec<u8>> = (0..8)
        .map(|i| pattern(2048 * (i + 1), 50 + i as u32))
        .collect();
    let hdrs: Vec<[u8; 16]> = (0..8).map(|i| header(T_OUT, 64 * i as u64)).collect();
    let mut statuses = [[0xffu8]; 8];
    let mut pending = Vec::new();
    for ((hdr, data), status) in hdrs.iter().zip(&datas).zip(statuses.iter_mut()) {
        let mut sg = map_sg(
            rig.region.pool(),
            [SgBuf::Out(hdr), SgBuf::Out(data), SgBuf::In(status)],
            &Constraints::NONE,
        )
        .unwrap();
        let table = sg.map_indirect_table(&Constraints::NONE).unwrap();
        let head = rig.queue.submit(&sg, Some(table)).unwrap();
        pending.push((head, sg));
    }
    assert_eq!(rig.device.process().unwrap(), 8);
    while let Some((head, len)) = rig.queue.pop_used() {
        let at = pending.iter().position(|(h, _)| *h == head).unwrap();
        let (_, sg) = pending.swap_remove(at);
        assert_eq!(sg.unmap(len).unwrap().copied_back, 1);
    }
    assert!(pending.is_empty());
    assert!(statuses.iter().all(|s| *s == [0]));
    let disk = rig
        .device
        .with_model(|d: &mut BlockDevice| d.disk().to_vec())
        .unwrap();
    for (i, data) in datas.iter().enumerate() {
        assert!(disk[64 * 512 * i..][..data.len()] == data[..]);
    }
    rig.finish();
}

/// A list that does not fit fails whole: the elements already mapped are unmapped, no
/// buffer changes, the error names the element and carries the pool's figures.
#[test]
fn sg_maps_all_or_nothing_on_a_full_pool() {
    let region = region(64 << 10); // 32 slots of 2 KiB
    let pool = region.pool();
    let hdr = [1u8; 2048];
    let mut a = vec![2u8; 16 << 10];
    let mut b = vec![3u8; 48 << 10];
    let err = map_sg(
        pool,
        [SgBuf::Out(&hdr), SgBuf::In(&mut a), SgBuf::In(&mut b)],
        &Constraints::NONE,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            SgError {
                index: 2,
                error: MapError::Full {
                    total_slots: 32,
                    used_slots: 9,
                    ..
                }
            }
        ),
        "{err}"
    );
    assert_idle(pool);
    assert_eq!(pool.stats().failed_maps, 1);
    assert!(a.iter().all(|&x| x == 2) && b.iter().all(|&x| x == 3));
    // What fits still maps.
    let sg = map_sg(
        pool,
        [SgBuf::Out(&hdr), SgBuf::In(&mut a)],
        &Constraints::NONE,
    )
    .unwrap();
    assert_eq!(sg.unmap(0).unwrap().copied_back, 0);
    assert_idle(pool);
}

#[test]
fn sg_refuses_empty_lists_empty_and_oversized_buffers() {
    let region = region(256 << 10);
    let pool = region.pool();
    let empty: [SgBuf<'_>; 0] = [];
    assert_eq!(
        map_sg(pool, empty, &Constraints::NONE).unwrap_err(),
        SgError {
            index: 0,
            error: MapError::ZeroLength
        }
    );
    let out = [1u8; 8];
    let mut nothing: [u8; 0] = [];
    let err = map_sg(
        pool,
        [SgBuf::Out(&out), SgBuf::In(&mut nothing)],
        &Constraints::NONE,
    )
    .unwrap_err();
    assert_eq!((err.index, err.error), (1, MapError::ZeroLength));
    assert_idle(pool);
    let max = pool.max_mapping_size(&Constraints::NONE);
    let big = vec![0u8; max + 1];
    let err = map_sg(
        pool,
        [SgBuf::Out(&out), SgBuf::Out(&big)],
        &Constraints::NONE,
    )
    .unwrap_err();
    assert_eq!(
        (err.index, err.error),
        (1, MapError::TooLarge { size: max + 1, max })
    );
    assert_idle(pool);
}

/// A bidirectional buffer is described as device-writable and copied back like an `In`
/// one; its original contents went to the device too.
#[test]
fn sg_bidirectional_buffer_is_writable_and_copied_back() {
    let mut rig = blk_rig(256 << 10, false, |b| b);
    let data = pattern(2048, 11);
    let hdr = header(T_OUT, 4);
    let mut status = [0xffu8];
    rig.run(
        vec![SgBuf::Out(&hdr), SgBuf::Out(&data), SgBuf::In(&mut status)],
        false,
    );
    let hdr = header(T_IN, 4);
    let mut both = vec![0x5au8; 2048];
    let mut status = [0xffu8];
    let sg = map_sg(
        rig.region.pool(),
        [
            SgBuf::Out(&hdr),
            SgBuf::Both(&mut both),
            SgBuf::In(&mut status),
        ],
        &Constraints::NONE,
    )
    .unwrap();
    assert_eq!((sg.readable_len(), sg.writable_len()), (16, 2049));
    assert!(sg.segments()[1].device_writable());
    let done = sg.unmap(0).unwrap(); // the device never saw it: nothing copied back
    assert_eq!(done.copied_back, 0);
    assert!(both.iter().all(|&b| b == 0x5a));
    let done = rig.run(
        vec![
            SgBuf::Out(&hdr),
            SgBuf::Both(&mut both),
            SgBuf::In(&mut status),
        ],
        false,
    );
    assert_eq!(done.copied_back, 2049);
    assert_eq!((both, status), (data, [0]));
    rig.finish();
}

/// An indirect table chains its descriptors through a 16-bit `next` index: 65,536 segments
/// fit (the last `next` is 65,535), 65,537 would wrap index 65,536 to 0, so that table is
/// refused with its size before anything is mapped, and the list stays mapped.
#[test]
fn sg_indirect_table_refuses_indices_past_16_bits() {
    // 128-byte slots and 2 MiB segments: one slot per byte-long segment, and room for a
    // table past the limit, so only the index check can refuse it (not the pool).
    let config = Config::new()
        .with_slot_size(128)
        .with_segment_slots(1 << 14)
        .with_areas(1);
    let pool = Pool::allocate(16 << 20, config).unwrap();
    let bytes = pattern(65_537, 9);

    let mut sg = map_sg(
        &pool,
        bytes[1..].chunks(1).map(SgBuf::Out),
        &Constraints::NONE,
    )
    .unwrap();
    let (dma, len) = sg.map_indirect_table(&Constraints::NONE).unwrap();
    assert_eq!(len, 65_536 * 16);
    let desc = |i: usize| {
        let p = pool.translate(dma + (i as u64) * 16, 16).unwrap();
        // SAFETY: 16 bytes of the table's live mapping; nothing writes the pool meanwhile.
        let d = unsafe { std::slice::from_raw_parts(p.as_ptr(), 16) };
        let flags = u16::from_le_bytes([d[12], d[13]]);
        (flags, u16::from_le_bytes([d[14], d[15]]))
    };
    assert_eq!(desc(65_534), (swiotlb_virtio::DESC_F_NEXT, 65_535));
    assert_eq!(desc(65_535), (0, 0));
    assert_eq!(sg.unmap(0).unwrap().copied_back, 0);
    assert_eq!(pool.stats().used_slots, 0);

    let mut sg = map_sg(&pool, bytes.chunks(1).map(SgBuf::Out), &Constraints::NONE).unwrap();
    let before = pool.stats();
    assert_eq!(before.used_slots, 65_537);
    let err = sg.map_indirect_table(&Constraints::NONE).unwrap_err();
    assert_eq!(
        err,
        MapError::TooLarge {
            size: 65_537 * 16,
            max: 65_536 * 16
        }
    );
    assert_eq!(pool.stats(), before, "nothing mapped, nothing counted");
    assert_eq!(sg.segments().len(), 65_537);
    assert_eq!(sg.unmap(0).unwrap().copied_back, 0);
    assert_eq!(pool.stats().used_slots, 0);
}
