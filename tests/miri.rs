//! Small tests sized for Miri (`bin/miri.sh`): every pointer the pool hands out or copies
//! through is checked against Stacked Borrows and Tree Borrows with strict provenance.
//! They run in the normal test suite too.
//!
//! A placeholder with one round trip; the full set is to follow.

use core::ptr::NonNull;
use swiotlb::{Attrs, Config, Constraints, Direction, Pool};

/// A `FromDevice` mapping: the device writes the bounce buffer (through `translate`, as a
/// device model would), unmap copies those bytes back to the original.
#[test]
fn from_device_round_trip_through_translate() {
    let pool = Pool::allocate(8 * 2048, Config::new().areas(1)).unwrap();
    let mut buf = [0u8; 100];
    // SAFETY: `buf` lives until after the unmap below and is not touched meanwhile.
    let dma = unsafe {
        pool.map(
            NonNull::from(&mut buf[..]),
            Direction::FromDevice,
            &Constraints::NONE,
        )
    }
    .unwrap();
    let bounce = pool.translate(dma, 100).unwrap();
    for i in 0..100 {
        // SAFETY: `translate` gave 100 bytes of the live mapping; only this "device" writes
        // them until the unmap.
        unsafe { bounce.as_ptr().add(i).write(i as u8 ^ 0xa5) };
    }
    // SAFETY: the live mapping made above, with its length and direction; `buf` is alive.
    unsafe { pool.unmap(dma, 100, Direction::FromDevice, Attrs::NONE) }.unwrap();
    assert!(buf.iter().enumerate().all(|(i, &b)| b == i as u8 ^ 0xa5));
    assert_eq!(pool.stats().used_slots, 0);
}
