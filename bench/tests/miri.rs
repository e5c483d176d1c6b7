//! Miri-sized runs of the benchmark crate's own unsafe code: the spin lock pvmfw's
//! allocator sits behind, and the pvmfw-style baseline's copies into and out of its region.
//!
//! ```text
//! MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p swiotlb-bench \
//!     --no-default-features --test miri
//! ```
//!
//! (and again with `-Zmiri-tree-borrows` added). Plain `cargo test` runs them too.

use core::ptr::NonNull;
use swiotlb_bench::pvmfw::Pvmfw;
use swiotlb_bench::spin::SpinLock;
use swiotlb_bench::{Bounce, Direction};

#[test]
fn the_spin_lock_hands_its_value_to_one_thread_at_a_time() {
    let lock = SpinLock::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..2u8 {
            let lock = &lock;
            s.spawn(move || {
                for i in 0..20 {
                    lock.lock().push((t, i));
                }
            });
        }
    });
    let v = lock.lock();
    assert_eq!(v.len(), 40);
    for t in 0..2u8 {
        let mine: Vec<_> = v
            .iter()
            .filter(|&&(w, _)| w == t)
            .map(|&(_, i)| i)
            .collect();
        assert_eq!(mine, (0..20).collect::<Vec<_>>());
    }
}

#[test]
fn pvmfw_round_trips_each_direction_by_its_rules() {
    let pool = Pvmfw::new(16 << 10).unwrap();
    for dir in [
        Direction::ToDevice,
        Direction::FromDevice,
        Direction::Bidirectional,
    ] {
        let mut orig: Vec<u8> = (1..=100).collect();
        let buf = NonNull::from(&mut orig[..]);
        // SAFETY: `orig` outlives the mapping and is untouched while mapped.
        let dma = unsafe { pool.map(buf, dir) }.unwrap();
        let bounce = pool.translate(dma, 100).unwrap();
        let mut seen = [0u8; 100];
        // SAFETY: the live mapping's 100 bytes; the test is the device.
        unsafe { core::ptr::copy_nonoverlapping(bounce.as_ptr(), seen.as_mut_ptr(), 100) };
        assert_eq!(
            seen[..] == orig[..],
            dir != Direction::FromDevice,
            "{dir:?}"
        );
        // SAFETY: as above: the device writes the bounce buffer.
        unsafe { core::ptr::write_bytes(bounce.as_ptr(), 0xee, 100) };
        // SAFETY: the live mapping of `buf`, given afresh.
        unsafe { pool.unmap(dma, NonNull::from(&mut orig[..]), dir, false) }.unwrap();
        assert_eq!(
            orig.iter().all(|&b| b == 0xee),
            dir != Direction::ToDevice,
            "{dir:?}"
        );
    }
    assert_eq!(pool.used_bytes(), 0);
}
