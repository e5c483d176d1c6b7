//! End to end: virtio-blk requests per second through `SwiotlbHal` against a pvmfw-style
//! `Hal`, on `swiotlb_virtio::testing`'s transport (a rust-vmm device model whose memory is
//! only the shared region).
//!
//! ```text
//! cargo bench -p swiotlb-bench --bench virtio_blk            # ~25 s once built
//! cargo bench -p swiotlb-bench --bench virtio_blk -- --test  # one short round, data checked
//! cargo bench -p swiotlb-bench --bench virtio_blk -- --only swiotlb 64K 1   # one Hal, one
//!     # row, 5 s: for a profiler (`perf record`), figures only for that Hal
//! ```
//!
//! Each thread drives a `VirtIOBlk` of its own (its own device and queue) with queue depth
//! 16: it submits 16 non-blocking requests (even ones write, odd ones read), lets the device
//! serve them, completes them, and again. All threads' devices share one Hal, so one pool:
//! swiotlb's, or the pvmfw-style Hal's buddy allocator. The two Hals are measured in
//! alternating rounds in this one process, and the ratio of their median rounds is printed.
//!
//! The pvmfw-style Hal ([`PvmfwHal`]) is written here from pvmfw's published design:
//! shared memory under a buddy frame allocator behind one spin lock
//! ([`swiotlb_bench::pvmfw::SharedPool`]); `share` takes a 16-byte aligned block of the
//! buffer's size and copies the buffer in unless the device is to write it
//! (`DeviceToDriver`); `unshare` copies back unless the device only read it
//! (`DriverToDevice`); rings are page-aligned blocks of the same allocator. It copies with
//! `swiotlb::shared`, as `SwiotlbHal` does, so the comparison is of the Hals and pools, not
//! of two copy routines. `SwiotlbHal` runs with its `counters` feature on (the test
//! transport's feature turns it on): a few relaxed atomic adds per share and unshare that
//! the pvmfw-style Hal does not make.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use core::ptr::NonNull;
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};
use swiotlb::Config;
use swiotlb_bench::pvmfw::{buffer_layout, SharedPool};
use swiotlb_virtio::testing::{BlockDevice, DmaRegion, Mode, TransportBuilder, SECTOR_SIZE};
use swiotlb_virtio::{bind_pool, HalOptions, PoolBinding, SwiotlbHal};
use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// Bytes of shared memory each Hal has.
const SHARED_BYTES: usize = 8 << 20;
/// Requests in flight per device.
const DEPTH: usize = 16;
/// Request sizes.
const SIZES: [usize; 2] = [4096, 64 * 1024];
/// Thread counts.
const THREADS: [usize; 2] = [1, 2];
/// The target: swiotlb's requests per second over the pvmfw-style Hal's.
const TARGET: f64 = 1.2;

bind_pool!(BlkPool);
type Swiotlb = SwiotlbHal<BlkPool>;

// === the pvmfw-style Hal ===

/// The pvmfw-style Hal's shared memory: a region the device model can reach, and the buddy
/// allocator over its offsets (the allocator's state lives outside the region).
struct PvmfwShared {
    cpu: NonNull<u8>,
    dma: u64,
    size: usize,
    pool: SharedPool,
}

// SAFETY: `cpu` is only the base of memory reached through the allocator's disjoint blocks
// (each used by the one caller that holds it) and by the device; the allocator is Sync.
unsafe impl Send for PvmfwShared {}
// SAFETY: as for `Send`.
unsafe impl Sync for PvmfwShared {}

static PVMFW: OnceLock<PvmfwShared> = OnceLock::new();

fn pvmfw() -> &'static PvmfwShared {
    PVMFW
        .get()
        .expect("the pvmfw-style Hal's memory is set up first")
}

/// A `virtio_drivers::Hal` that bounces as pvmfw does (see the module docs).
struct PvmfwHal;

impl PvmfwShared {
    /// The CPU pointer of block offset `off`, which lies in the region.
    fn at(&self, off: usize) -> NonNull<u8> {
        debug_assert!(off < self.size);
        // SAFETY: `off` is an offset the allocator handed out, inside the region.
        unsafe { self.cpu.add(off) }
    }
}

// SAFETY: `dma_alloc` returns a block of the shared region that the allocator reserved for
// it alone until `dma_dealloc` (so it aliases nothing), zeroed, and page-aligned: blocks are
// aligned to their size (at least a page here) relative to the region's page-aligned start.
// `share` returns the device address of a block holding the buffer's bytes (or, for a
// device-writable buffer, the block as it was: pvmfw's rule); `unshare` copies it back for
// device-writable directions before the block is freed. `mmio_phys_to_virt` is never
// reached on this transport and panics.
unsafe impl Hal for PvmfwHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let shared = pvmfw();
        let Some(layout) = pages
            .checked_mul(PAGE_SIZE)
            .and_then(|size| core::alloc::Layout::from_size_align(size, PAGE_SIZE).ok())
        else {
            return (0, NonNull::dangling());
        };
        let Some(off) = shared.pool.alloc(layout) else {
            return (0, NonNull::dangling());
        };
        let cpu = shared.at(off);
        // SAFETY: the block is ours alone and `layout.size()` bytes long in the region; the
        // device may reach it, hence the shared fill.
        unsafe { swiotlb::shared::fill_shared(cpu.as_ptr(), 0, layout.size()) };
        (shared.dma + off as u64, cpu)
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        let shared = pvmfw();
        let off = (paddr - shared.dma) as usize;
        let layout = core::alloc::Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE)
            .expect("the layout dma_alloc made");
        // SAFETY: the caller gives back what `dma_alloc` returned for `pages`, once: the
        // block at `off` with this layout.
        unsafe { shared.pool.dealloc(off, layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        panic!("the test transport has no MMIO ({paddr:#x}, {size} bytes)")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let shared = pvmfw();
        let len = buffer.len();
        let layout = buffer_layout(len).expect("a buffer's layout");
        let off = shared
            .pool
            .alloc(layout)
            .unwrap_or_else(|| panic!("pvmfw-style pool full sharing {len} bytes"));
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the block at `off` is ours and holds `len` bytes; `buffer` is readable
            // for `len` bytes and untouched during the call (Hal::share's contract).
            unsafe {
                swiotlb::shared::copy_to_shared(
                    shared.at(off).as_ptr(),
                    buffer.cast::<u8>().as_ptr(),
                    len,
                )
            };
        }
        shared.dma + off as u64
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let shared = pvmfw();
        let off = (paddr - shared.dma) as usize;
        let len = buffer.len();
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: `paddr` is what `share` returned for this buffer (caller's promise), so
            // the block at `off` holds `len` bytes; `buffer` is writable and untouched by
            // anyone else during the call.
            unsafe {
                swiotlb::shared::copy_from_shared(
                    buffer.cast::<u8>().as_ptr(),
                    shared.at(off).as_ptr(),
                    len,
                )
            };
        }
        let layout = buffer_layout(len).expect("a buffer's layout");
        // SAFETY: the block `share` allocated for this buffer with this layout, given back
        // once.
        unsafe { shared.pool.dealloc(off, layout) };
    }
}

// === the workload ===

/// One thread's device: `DEPTH` requests of `size` bytes in flight at a time until the
/// time is up; even request i writes sectors from i * (size / 512), odd request i reads
/// back what request i - 1 wrote. Returns the requests completed after the barrier.
fn drive<H: Hal>(
    region: &'static DmaRegion,
    size: usize,
    barrier: &Barrier,
    until: &OnceLock<Instant>,
    check: bool,
) -> Result<u64, String> {
    let sectors_per_req = size / SECTOR_SIZE;
    let disk_sectors = (DEPTH * sectors_per_req) as u64;
    let (transport, device) = TransportBuilder::new(BlockDevice::new(disk_sectors), region)
        .indirect(true)
        .mode(Mode::Manual)
        .build();
    let blk = VirtIOBlk::<H, _>::new(transport);
    let mut blk = match blk {
        Ok(b) => b,
        Err(e) => {
            barrier.wait();
            return Err(format!("VirtIOBlk::new: {e}"));
        }
    };
    let mut bufs: Vec<Vec<u8>> = (0..DEPTH).map(|i| vec![i as u8 + 1; size]).collect();
    let mut reqs: Vec<BlkReq> = (0..DEPTH).map(|_| BlkReq::default()).collect();
    let mut resps: Vec<BlkResp> = (0..DEPTH).map(|_| BlkResp::default()).collect();
    let mut tokens = [0u16; DEPTH];
    let mut done = 0u64;
    barrier.wait();
    let end = *until.wait();
    while Instant::now() < end {
        for i in 0..DEPTH {
            let sector = (i & !1) * sectors_per_req;
            // SAFETY: request i's buffers are untouched until it completes below.
            tokens[i] = unsafe {
                if i % 2 == 0 {
                    blk.write_blocks_nb(sector, &mut reqs[i], &bufs[i], &mut resps[i])
                } else {
                    blk.read_blocks_nb(sector, &mut reqs[i], &mut bufs[i], &mut resps[i])
                }
            }
            .map_err(|e| format!("submit: {e}"))?;
        }
        device.process().map_err(|e| format!("device: {e}"))?;
        let mut completed = 0;
        while let Some(token) = blk.peek_used() {
            let i = tokens
                .iter()
                .position(|&t| t == token)
                .ok_or_else(|| format!("unknown token {token}"))?;
            // SAFETY: the buffers given to the *_nb call that returned this token.
            unsafe {
                if i % 2 == 0 {
                    blk.complete_write_blocks(token, &reqs[i], &bufs[i], &mut resps[i])
                } else {
                    blk.complete_read_blocks(token, &reqs[i], &mut bufs[i], &mut resps[i])
                }
            }
            .map_err(|e| format!("complete: {e}"))?;
            if resps[i].status() != RespStatus::OK {
                return Err(format!("request {i}: {:?}", resps[i].status()));
            }
            completed += 1;
        }
        if completed != DEPTH {
            return Err(format!("{completed} of {DEPTH} requests completed"));
        }
        done += DEPTH as u64;
    }
    if check {
        // Odd requests read the sectors of the even one before them, which wrote i + 1 in
        // every byte: after a round each odd buffer holds its neighbour's pattern.
        for i in (1..DEPTH).step_by(2) {
            if bufs[i].iter().any(|&b| b != i as u8) {
                return Err(format!("request {i} read back the wrong bytes"));
            }
        }
    }
    Ok(done)
}

/// One timed run: `threads` threads for `secs`, through Hal `H` over `region`. Returns
/// requests per second.
fn run<H: Hal>(
    region: &'static DmaRegion,
    size: usize,
    threads: usize,
    secs: f64,
    check: bool,
) -> Result<f64, String> {
    let barrier = Barrier::new(threads + 1);
    let until = OnceLock::new();
    let (counts, elapsed) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| drive::<H>(region, size, &barrier, &until, check)))
            .collect();
        barrier.wait();
        let start = Instant::now();
        let _ = until.set(start + Duration::from_secs_f64(secs));
        let counts: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        (counts, start.elapsed())
    });
    let mut total = 0;
    for c in counts {
        total += c.map_err(|_| "a thread panicked".to_string())??;
    }
    Ok(total as f64 / elapsed.as_secs_f64())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `--only HAL SIZE THREADS`: one Hal (`swiotlb` or `pvmfw`), one request size (`4K` or
/// `64K`) and one thread count, for five seconds.
fn only(args: &[String]) -> Result<Option<(bool, usize, usize)>, String> {
    let Some(i) = args.iter().position(|a| a == "--only") else {
        return Ok(None);
    };
    let usage = "--only swiotlb|pvmfw 4K|64K 1|2";
    let (Some(hal), Some(size), Some(threads)) =
        (args.get(i + 1), args.get(i + 2), args.get(i + 3))
    else {
        return Err(format!("usage: {usage}"));
    };
    let ours = match hal.as_str() {
        "swiotlb" => true,
        "pvmfw" => false,
        _ => return Err(format!("{hal:?} is not a Hal; {usage}")),
    };
    let size = match size.as_str() {
        "4K" => 4096,
        "64K" => 65536,
        _ => return Err(format!("{size:?} is not a request size; {usage}")),
    };
    let threads = match threads.parse() {
        Ok(t @ (1 | 2)) => t,
        _ => return Err(format!("{threads:?} is not a thread count; {usage}")),
    };
    Ok(Some((ours, size, threads)))
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--test");
    let only = only(&args)?;
    let (rounds, secs) = if smoke { (1, 0.02) } else { (5, 0.5) };

    let ours =
        DmaRegion::leak(SHARED_BYTES, 0x8000_0000, Config::new()).map_err(|e| e.to_string())?;
    BlkPool::register(ours.pool(), HalOptions::new()).map_err(|e| e.to_string())?;
    // The pvmfw-style Hal's region: its pool is never used, only its memory, which the
    // buddy allocator hands out instead (the device model sees the same memory).
    let theirs =
        DmaRegion::leak(SHARED_BYTES, 0x4000_0000, Config::new()).map_err(|e| e.to_string())?;
    let range = theirs.pool().sub_pools()[0].dma_range.clone();
    let len = (range.end - range.start) as usize;
    let cpu = theirs
        .pool()
        .translate(range.start, len)
        .ok_or("the region does not translate")?;
    let pool = SharedPool::new(len)?;
    PVMFW
        .set(PvmfwShared {
            cpu,
            dma: range.start,
            size: len,
            pool,
        })
        .map_err(|_| "set up twice")?;

    if let Some((mine, size, threads)) = only {
        let per_s = if mine {
            run::<Swiotlb>(ours, size, threads, 5.0, false)?
        } else {
            run::<PvmfwHal>(theirs, size, threads, 5.0, false)?
        };
        println!(
            "{}: {} KiB requests, {threads} thread(s): {per_s:.0} requests/s",
            if mine { "swiotlb" } else { "pvmfw" },
            size >> 10
        );
        return Ok(());
    }
    println!(
        "virtio-blk requests/s, SwiotlbHal against a pvmfw-style Hal: test transport, queue \
         depth {DEPTH} per device (half writes, half reads), one device per thread, \
         {} MiB of shared memory each, {rounds} alternating rounds of {secs} s, medians",
        SHARED_BYTES >> 20
    );
    println!();
    println!(
        "{:>8} {:>8} {:>14} {:>14} {:>16} {:>18}",
        "request", "threads", "swiotlb req/s", "pvmfw req/s", "swiotlb / pvmfw", "rounds (min-max)"
    );
    let mut worst = f64::INFINITY;
    for size in SIZES {
        for threads in THREADS {
            let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..rounds {
                // Alternate which goes first, so neither always runs on a warmer machine.
                let (x, y) = if round % 2 == 0 {
                    let x = run::<Swiotlb>(ours, size, threads, secs, smoke)?;
                    (x, run::<PvmfwHal>(theirs, size, threads, secs, smoke)?)
                } else {
                    let y = run::<PvmfwHal>(theirs, size, threads, secs, smoke)?;
                    (run::<Swiotlb>(ours, size, threads, secs, smoke)?, y)
                };
                a.push(x);
                b.push(y);
                r.push(x / y);
            }
            let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = r.iter().copied().fold(0.0, f64::max);
            let ratio = median(&mut a) / median(&mut b);
            worst = worst.min(ratio);
            println!(
                "{:>8} {:>8} {:>14.0} {:>14.0} {:>15.2}x {:>18}",
                format!("{} KiB", size >> 10),
                threads,
                median(&mut a),
                median(&mut b),
                ratio,
                format!("{lo:.2}x-{hi:.2}x")
            );
        }
    }
    let stats = ours.pool().stats();
    if stats.used_slots != 0 || pvmfw().pool.used() != 0 {
        return Err(format!(
            "shared memory still in use after the runs: swiotlb {} slots, pvmfw-style {} bytes",
            stats.used_slots,
            pvmfw().pool.used()
        ));
    }
    println!();
    println!(
        "target: swiotlb at least {TARGET}x the pvmfw-style Hal in every row: {}",
        if worst >= TARGET {
            "met".to_string()
        } else {
            format!("missed (lowest {worst:.2}x)")
        }
    );
    Ok(())
}
