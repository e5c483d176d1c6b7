//! `SharedAlloc`: random allocate / deallocate / grow / shrink sequences against a model
//! of what every live block must hold, collections over it, exhaustion that leaks nothing,
//! and device addresses of blocks.

use core::alloc::Layout;
use core::ptr::NonNull;
use proptest::prelude::*;
use swiotlb::allocator_api2::alloc::Allocator;
use swiotlb::allocator_api2::vec::Vec as AVec;
use swiotlb::shared::{copy_from_shared, copy_to_shared};
use swiotlb::{Config, Constraints, Pool, SharedAlloc};

fn pool(bytes: usize) -> Pool {
    Pool::allocate(bytes, Config::new().with_areas(1)).expect("pool")
}

/// A live block and what the model says it holds.
struct Block {
    ptr: NonNull<u8>,
    layout: Layout,
    /// Bytes the block returned (at least `layout.size()`).
    got: usize,
    bytes: Vec<u8>,
}

fn read(ptr: NonNull<u8>, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    // SAFETY: a live block of at least `len` bytes, in pool memory.
    unsafe { copy_from_shared(out.as_mut_ptr(), ptr.as_ptr(), len) };
    out
}

fn write(ptr: NonNull<u8>, bytes: &[u8]) {
    // SAFETY: as in `read`.
    unsafe { copy_to_shared(ptr.as_ptr(), bytes.as_ptr(), bytes.len()) };
}

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        size: usize,
        align_shift: u32,
        zeroed: bool,
    },
    Free(usize),
    Grow {
        which: usize,
        size: usize,
        zeroed: bool,
    },
    Shrink {
        which: usize,
        size: usize,
    },
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        1usize..64,
        1usize..600,
        1usize..3000,
        2000usize..9000,
        Just(0usize)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (size(), 0u32..13, any::<bool>()).prop_map(|(size, align_shift, zeroed)| Op::Alloc {
            size,
            align_shift,
            zeroed
        }),
        any::<usize>().prop_map(Op::Free),
        (any::<usize>(), size(), any::<bool>()).prop_map(|(which, size, zeroed)| Op::Grow {
            which,
            size,
            zeroed
        }),
        (any::<usize>(), size()).prop_map(|(which, size)| Op::Shrink { which, size }),
    ]
}

/// Checks every live block: aligned, inside the pool at the address `dma_addr` says, no two
/// overlapping, each holding what the model says.
fn check(pool: &Pool, alloc: &SharedAlloc<'_, Pool>, live: &[Block]) {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for b in live {
        assert_eq!(b.ptr.as_ptr().addr() % b.layout.align(), 0, "alignment");
        assert!(b.got >= b.layout.size());
        if b.layout.size() == 0 {
            continue;
        }
        let dma = alloc
            .dma_addr(b.ptr.as_ptr())
            .expect("a live block has a device address");
        assert_eq!(
            pool.translate(dma, b.got),
            Some(b.ptr),
            "dma_addr agrees with the pool"
        );
        assert_eq!(read(b.ptr, b.layout.size()), b.bytes, "contents");
        spans.push((b.ptr.as_ptr().addr(), b.got));
    }
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "blocks overlap: {w:?}");
    }
}

fn fill(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seed * 31 + i * 7) as u8).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Whatever the sequence, every block holds what was written to it (across grows and
    /// shrinks that move it), zeroed blocks and grown tails read zero, and once everything
    /// is freed and the allocator dropped the pool is empty again.
    #[test]
    fn random_sequences_match_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let pool = pool(4 << 20);
        {
            let alloc = SharedAlloc::new(&pool, Constraints::NONE);
            let mut live: Vec<Block> = Vec::new();
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Alloc { size, align_shift, zeroed } => {
                        let layout = Layout::from_size_align(size, 1 << align_shift).unwrap();
                        let block = if zeroed {
                            alloc.allocate_zeroed(layout)
                        } else {
                            alloc.allocate(layout)
                        }
                        .expect("the pool is large enough for every sequence");
                        let ptr = block.cast::<u8>();
                        if zeroed {
                            assert!(read(ptr, block.len()).iter().all(|&b| b == 0));
                        }
                        let bytes = fill(n, size);
                        write(ptr, &bytes);
                        live.push(Block { ptr, layout, got: block.len(), bytes });
                    }
                    Op::Free(which) if !live.is_empty() => {
                        let b = live.swap_remove(which % live.len());
                        // SAFETY: a live block of this allocator, with its layout.
                        unsafe { alloc.deallocate(b.ptr, b.layout) };
                    }
                    Op::Grow { which, size, zeroed } if !live.is_empty() => {
                        let at = which % live.len();
                        let b = &mut live[at];
                        let new = Layout::from_size_align(
                            b.layout.size().max(size), b.layout.align()).unwrap();
                        // SAFETY: a live block of this allocator; `new` is no smaller.
                        let block = unsafe {
                            if zeroed {
                                alloc.grow_zeroed(b.ptr, b.layout, new)
                            } else {
                                alloc.grow(b.ptr, b.layout, new)
                            }
                        }.expect("room");
                        let ptr = block.cast::<u8>();
                        let old = b.layout.size();
                        if zeroed {
                            assert!(read(ptr, block.len())[old..].iter().all(|&x| x == 0),
                                "grow_zeroed: the new bytes are zero");
                        }
                        assert_eq!(read(ptr, old), b.bytes, "grow keeps the contents");
                        let tail = fill(n, new.size() - old);
                        // SAFETY: the block holds `new.size()` bytes.
                        write(unsafe { NonNull::new_unchecked(ptr.as_ptr().add(old)) }, &tail);
                        b.bytes.extend_from_slice(&tail);
                        *b = Block { ptr, layout: new, got: block.len(), bytes: core::mem::take(&mut b.bytes) };
                    }
                    Op::Shrink { which, size } if !live.is_empty() => {
                        let at = which % live.len();
                        let b = &mut live[at];
                        let new = Layout::from_size_align(
                            b.layout.size().min(size), b.layout.align()).unwrap();
                        // SAFETY: a live block of this allocator; `new` is no larger.
                        let block = unsafe { alloc.shrink(b.ptr, b.layout, new) }.expect("room");
                        b.bytes.truncate(new.size());
                        b.ptr = block.cast();
                        b.layout = new;
                        b.got = block.len();
                    }
                    _ => {}
                }
                check(&pool, &alloc, &live);
            }
            for b in live.drain(..) {
                // SAFETY: as above.
                unsafe { alloc.deallocate(b.ptr, b.layout) };
            }
            prop_assert_eq!(alloc.held_bytes(), 0);
        }
        prop_assert_eq!(pool.stats().used_slots, 0);
    }
}

#[test]
fn vec_and_box_live_in_pool_memory() {
    let pool = pool(1 << 20);
    let alloc = SharedAlloc::new(&pool, Constraints::NONE);
    let mut v: AVec<u8, _> = AVec::new_in(&alloc);
    for i in 0..5000u32 {
        v.push(i as u8); // grows through several classes, then a large block
    }
    assert!(v.iter().enumerate().all(|(i, &b)| b == i as u8));
    let dma = alloc.dma_addr(v.as_ptr()).unwrap();
    assert!(pool.contains(dma));
    assert_eq!(alloc.dma_addr(v[4999..].as_ptr()), Some(dma + 4999));
    assert_eq!(alloc.dma_addr([0u8; 4].as_ptr()), None, "not a block");
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(&v[..], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let b = swiotlb::allocator_api2::boxed::Box::new_in([7u64; 4], &alloc);
    assert_eq!(*b, [7; 4]);
    drop((v, b));
    drop(alloc);
    assert_eq!(pool.stats().used_slots, 0);
}

#[test]
fn small_blocks_share_a_page() {
    let pool = pool(1 << 20);
    let alloc = SharedAlloc::new(&pool, Constraints::NONE);
    let layout = Layout::from_size_align(24, 8).unwrap();
    let blocks: Vec<_> = (0..128).map(|_| alloc.allocate(layout).unwrap()).collect();
    assert_eq!(
        alloc.held_bytes(),
        4096,
        "128 blocks of 32 bytes: one chunk"
    );
    for b in &blocks {
        assert_eq!(b.len(), 32);
    }
    for b in blocks {
        // SAFETY: live blocks of this allocator.
        unsafe { alloc.deallocate(b.cast(), layout) };
    }
    assert_eq!(
        alloc.held_bytes(),
        0,
        "an empty chunk goes back to the pool"
    );
    assert_eq!(pool.stats().used_slots, 0);
}

#[test]
fn exhaustion_is_an_error_and_leaks_nothing() {
    let pool = pool(64 * 2048);
    let alloc = SharedAlloc::new(&pool, Constraints::NONE);
    let mut blocks = Vec::new();
    for (i, size) in [16usize, 3000, 700, 100_000, 64, 5000]
        .iter()
        .cycle()
        .enumerate()
    {
        let layout = Layout::from_size_align(*size, 8).unwrap();
        match alloc.allocate(layout) {
            Ok(b) => blocks.push((b.cast::<u8>(), layout)),
            Err(_) if i > 20 => break,
            Err(_) => {}
        }
        assert!(i < 10_000, "the pool never filled");
    }
    assert!(!blocks.is_empty());
    for (ptr, layout) in blocks {
        // SAFETY: live blocks of this allocator.
        unsafe { alloc.deallocate(ptr, layout) };
    }
    drop(alloc);
    assert_eq!(pool.stats().used_slots, 0);
}

#[test]
fn zero_sized_blocks_and_the_device_limit() {
    let pool = pool(1 << 20);
    let top = pool.dma_range().start + 64 * 1024 - 1;
    let alloc = SharedAlloc::new(&pool, Constraints::new().dma_limit(top));
    let z = Layout::from_size_align(0, 64).unwrap();
    let block = alloc.allocate(z).unwrap();
    assert_eq!(block.len(), 0);
    assert_eq!(block.cast::<u8>().as_ptr().addr() % 64, 0);
    // SAFETY: the zero-sized block just allocated.
    unsafe { alloc.deallocate(block.cast(), z) };
    let layout = Layout::from_size_align(1000, 8).unwrap();
    let mut blocks = Vec::new();
    while let Ok(b) = alloc.allocate(layout) {
        let dma = alloc.dma_addr(b.cast::<u8>().as_ptr()).unwrap();
        assert!(
            dma + 1024 - 1 <= top,
            "every block under the device's limit"
        );
        blocks.push(b);
    }
    assert_eq!(blocks.len(), 64, "64 KiB under the limit, 1 KiB blocks");
    for b in blocks {
        // SAFETY: live blocks of this allocator.
        unsafe { alloc.deallocate(b.cast(), layout) };
    }
}

#[test]
fn threads_share_one_allocator() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let pool = pool(2 << 20);
    let alloc = SharedAlloc::new(&pool, Constraints::NONE);
    send_sync(&alloc);
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let alloc = &alloc;
            s.spawn(move || {
                for round in 0..200usize {
                    let len = 1 + (round * 37 + usize::from(t) * 11) % 3000;
                    let mut v: AVec<u8, _> = AVec::with_capacity_in(len, alloc);
                    v.resize(len, t);
                    assert!(
                        v.iter().all(|&b| b == t),
                        "another thread's block overlapped"
                    );
                }
            });
        }
    });
    assert_eq!(alloc.held_bytes(), 0);
    drop(alloc);
    assert_eq!(pool.stats().used_slots, 0);
}
