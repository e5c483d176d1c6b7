//! Small tests sized for Miri (`bin/miri.sh`): the scatter-gather API's pointers checked
//! against Stacked Borrows and Tree Borrows with strict provenance. They run in the normal
//! test suite too. No device model here (those map memory with `mmap`).
//!
//! A placeholder with one round trip; the full set is to follow.

use swiotlb::{Config, Constraints, Pool};
use swiotlb_virtio::{map_sg, SgBuf};

/// An `Out` buffer reaches the pool, the "device" writes the `In` buffer's bounce bytes
/// through `translate`, and unmap copies the used length back.
#[test]
fn map_sg_round_trip_through_translate() {
    let pool = Pool::allocate(8 * 2048, Config::new().areas(1)).unwrap();
    let request = [7u8; 16];
    let mut reply = [0u8; 32];
    let sg = map_sg(
        &pool,
        [SgBuf::Out(&request), SgBuf::In(&mut reply)],
        &Constraints::NONE,
    )
    .unwrap();
    let [out, inp] = sg.segments() else {
        panic!("two segments")
    };
    let read = pool.translate(out.dma, 16).unwrap();
    // SAFETY: 16 bytes of the live `Out` mapping, which nothing writes while mapped.
    let sent = unsafe { core::slice::from_raw_parts(read.as_ptr(), 16) };
    assert_eq!(sent, &request);
    let write = pool.translate(inp.dma, 32).unwrap();
    for i in 0..20 {
        // SAFETY: 32 bytes of the live `In` mapping; only this "device" writes them.
        unsafe { write.as_ptr().add(i).write(i as u8 + 1) };
    }
    let done = sg.unmap(20).unwrap();
    assert_eq!(done.copied_back, 20);
    assert!((0..20).all(|i| reply[i] == i as u8 + 1));
    assert!(reply[20..].iter().all(|&b| b == 0));
    assert_eq!(pool.stats().used_slots, 0);
}
