//! What adopting `swiotlb` looks like from a crate of one's own, with no `unsafe`: the
//! README's example, a mapping kept in a queue, a coherent ring, a `Vec` in pool memory
//! and a `dma-api` driver's calls. Each part is an example from the docs. A real device
//! would read and write the pool between the calls; here nothing does, so each buffer
//! comes back as it went.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use swiotlb::allocator_api2::vec::Vec as SharedVec;
use swiotlb::dma_api::{
    DeviceDma, DmaCoherency, DmaConstraints, DmaDeviceInfo, DmaDirection, DmaDomainId,
};
use swiotlb::{
    Attrs, CoherentGuard, Config, Constraints, Direction, DmaMut, DmaOwned, DmaRef, Fill, Pool,
    PoolDmaOp, SharedAlloc,
};

type Error = Box<dyn std::error::Error>;

/// The README's example.
fn readme(pool: &Pool) -> Result<(), Error> {
    let nvme = Constraints::new().min_align_mask(0xfff); // the device's DMA properties
    let command = [0x5au8; 64];
    let mut data = vec![0u8; 16 * 1024];
    let cmd = DmaRef::to_device(pool, &command, &nvme)?; // copied into the pool
    let rx = DmaMut::from_device(pool, &mut data, &nvme, Fill::Zero)?; // the device sees zeros
    println!("command at {:#x}, data at {:#x}", cmd.dma(), rx.dma());
    drop(cmd); // unmaps
    rx.unmap()?; // copies the device's bytes back into `data`
    assert!(data.iter().all(|&b| b == 0));
    Ok(())
}

/// Owned mappings waiting in a queue, as a driver keeps them until the device completes.
fn queue(pool: &Pool) -> Result<(), Error> {
    let mut in_flight: VecDeque<DmaOwned<'_, Pool, Vec<u8>>> = VecDeque::new();
    for i in 0..4u8 {
        let request = vec![i; 512];
        let m = DmaOwned::map(
            pool,
            request,
            Direction::Bidirectional,
            &Constraints::NONE,
            Attrs::NONE,
        )
        .map_err(|e| e.error)?;
        in_flight.push_back(m);
    }
    println!("{} requests in flight: {:?}", in_flight.len(), pool.stats());
    let mut i = 0;
    while let Some(m) = in_flight.pop_front() {
        let buf = m.unmap().map_err(|e| e.error)?;
        assert_eq!(buf, vec![i; 512]);
        i += 1;
    }
    Ok(())
}

/// A coherent ring, written and read with the shared copies.
fn ring(pool: &Pool) -> Result<(), Error> {
    let mut ring = CoherentGuard::new(pool, 4096, &Constraints::NONE)?;
    ring.write(16, &[1, 2, 3, 4])?;
    let mut head = [0u8; 4];
    ring.read(16, &mut head)?; // one snapshot, checked in private memory
    assert_eq!(head, [1, 2, 3, 4]);
    println!("ring at {:#x}: {ring:?}", ring.dma());
    Ok(())
}

/// `SharedAlloc`'s example: a frame built in place in pool memory.
fn allocator(pool: &Pool) -> Result<(), Error> {
    let alloc = SharedAlloc::new(pool, Constraints::NONE);
    let mut frame: SharedVec<u8, _> = SharedVec::with_capacity_in(1514, &alloc);
    frame.extend_from_slice(&[0xff; 6]); // written in place, in pool memory
    let dma = alloc
        .dma_addr(frame.as_ptr())
        .ok_or("not a block of the allocator")?;
    assert!(pool.contains(dma));
    println!(
        "frame at {dma:#x}, {} bytes held from the pool",
        alloc.held_bytes()
    );
    Ok(())
}

/// `PoolDmaOp`'s example: a driver written against `dma-api`.
fn dma_api(pool: &'static Pool) -> Result<(), Error> {
    let op: &'static PoolDmaOp<Pool> = Box::leak(Box::new(PoolDmaOp::new(pool)));
    let info = DmaDeviceInfo::new(
        DmaDomainId::Direct,
        DmaCoherency::Coherent,
        DmaConstraints::new(u64::MAX), // the device's DMA mask
    );
    let dma = DeviceDma::new(info, op);
    let mut frame = [0u8; 1514];
    let map = dma.map_streaming_slice(&mut frame, 64, DmaDirection::FromDevice)?;
    assert!(pool.contains(map.dma_addr().as_u64())); // the device sees only the pool
    map.complete_for_cpu(0..map.bytes_len());
    drop(map);
    let ring = dma.coherent_array_zero::<u64>(64)?;
    println!("dma-api ring at {}", ring.dma_addr());
    Ok(())
}

fn main() -> Result<(), Error> {
    let pool: &'static Pool = Box::leak(Box::new(Pool::allocate(4 << 20, Config::new())?));
    readme(pool)?;
    queue(pool)?;
    ring(pool)?;
    allocator(pool)?;
    dma_api(pool)?;
    assert_eq!(
        pool.stats().used_slots,
        0,
        "everything went back to the pool"
    );
    println!("done: {:?}", pool.stats());
    Ok(())
}
