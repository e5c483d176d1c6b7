//! A block workload through a bounce pool: virtio-drivers' `VirtIOBlk` over `SwiotlbHal`,
//! against a rust-vmm device model that can reach only the pool.
//!
//! ```text
//! cargo run --release -p swiotlb-virtio --example virtio_blk [MiB per phase, 1 to 1024, default 64]
//! ```
//!
//! Prints, per phase, the payload throughput, the bytes the Hal copied against the bytes
//! moved, and the pool's high-water mark. Throughput here is memcpy plus the device model
//! (vm-memory copies) on a shared machine: a rough figure, not a benchmark.

use std::time::Instant;
use swiotlb::Config;
use swiotlb_virtio::testing::{BlockDevice, DmaRegion, Mode, TransportBuilder, SECTOR_SIZE};
use swiotlb_virtio::{bind_pool, HalOptions, PoolBinding, SwiotlbHal};
use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk};

bind_pool!(BlkPool);
type Hal = SwiotlbHal<BlkPool>;

const POOL_BYTES: usize = 4 << 20;
const POOL_DMA: u64 = 0x8000_0000;
const DISK_SECTORS: u64 = 32 << 11; // 32 MiB
const IN_FLIGHT: usize = 16;
/// MiB moved per phase: at least one 64 KiB batch, at most what a run should take.
const MIB_RANGE: core::ops::RangeInclusive<u64> = 1..=1024;

const USAGE: &str = "\
usage: virtio_blk [MIB]

Runs a block workload through a swiotlb pool: virtio-drivers' VirtIOBlk over SwiotlbHal,
against a rust-vmm device model that can reach only the pool. Writes and reads MIB MiB
(1 to 1024, default 64) per phase, 4 KiB and 64 KiB requests, direct and indirect
descriptors, then 64 KiB writes 16 in flight; prints each phase's throughput, the bytes
the Hal copied per request, and the pool's high-water mark.";

/// What the command line asks for.
enum Args {
    Run { mib_per_phase: u64 },
    Help,
}

/// Parses the arguments after the program's name.
fn parse_args(args: &[String]) -> std::result::Result<Args, String> {
    match args {
        [] => Ok(Args::Run { mib_per_phase: 64 }),
        [a] if a == "-h" || a == "--help" => Ok(Args::Help),
        [a] => match a.parse::<u64>() {
            Ok(n) if MIB_RANGE.contains(&n) => Ok(Args::Run { mib_per_phase: n }),
            _ => Err(format!(
                "MiB per phase is {} to {}, not {a:?}",
                MIB_RANGE.start(),
                MIB_RANGE.end()
            )),
        },
        _ => Err(format!(
            "one argument at most (MiB per phase), not {}",
            args.len()
        )),
    }
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Runs one phase (`requests` requests moving `payload` bytes in all) and prints its
/// throughput and what the Hal copied meanwhile.
fn phase(name: &str, payload: u64, requests: u64, run: impl FnOnce() -> Result) -> Result {
    let before = BlkPool::counters();
    let t = Instant::now();
    run()?;
    let secs = t.elapsed().as_secs_f64();
    let c = BlkPool::counters().since(&before);
    let mib = payload as f64 / (1 << 20) as f64;
    println!(
        "{name:<34} {:>8.1} MiB/s  {requests:>6} req  copied in {:>6.3} x, out {:>6.3} x payload  \
         ({:.0} + {:.0} B/request for {:.0} B moved)",
        mib / secs,
        c.bytes_copied_in as f64 / payload as f64,
        c.bytes_copied_out as f64 / payload as f64,
        c.bytes_copied_in as f64 / requests as f64,
        c.bytes_copied_out as f64 / requests as f64,
        payload as f64 / requests as f64,
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Ok(Args::Help) => {
            println!("{USAGE}");
            std::process::ExitCode::SUCCESS
        }
        Ok(Args::Run { mib_per_phase }) => match run(mib_per_phase) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("virtio_blk: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("virtio_blk: {e}\n\n{USAGE}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(mib_per_phase: u64) -> Result {
    // One area: the high-water mark is then exact.
    let region = DmaRegion::leak(POOL_BYTES, POOL_DMA, Config::new().with_areas(1))?;
    let pool = region.pool();
    BlkPool::register(pool, HalOptions::new())?;
    let first = &pool.sub_pools()[0];
    println!(
        "pool: {} slots of {} B at device {:#x}, {} areas; disk {} MiB; {} MiB per phase",
        pool.stats().total_slots,
        pool.slot_size(),
        first.dma_range.start,
        first.stats.areas,
        (DISK_SECTORS * SECTOR_SIZE as u64) >> 20,
        mib_per_phase
    );

    // Phase 1: one request at a time (blocking calls), direct and indirect descriptors.
    for indirect in [false, true] {
        let (transport, device) = TransportBuilder::new(BlockDevice::new(DISK_SECTORS), region)
            .indirect(indirect)
            .build();
        let mut blk = VirtIOBlk::<Hal, _>::new(transport)?;
        let mode = if indirect { "indirect" } else { "direct" };
        for size in [4096usize, 65536] {
            let count = (mib_per_phase << 20) / size as u64;
            let data = pattern(size, size as u64);
            let sectors = size / SECTOR_SIZE;
            let span = DISK_SECTORS as usize / sectors;
            let kib = size >> 10;
            let payload = count * size as u64;
            phase(
                &format!("write {kib:>2} KiB, {mode}"),
                payload,
                count,
                || {
                    for i in 0..count as usize {
                        blk.write_blocks(i % span * sectors, &data)?;
                    }
                    Ok(())
                },
            )?;
            let mut back = vec![0u8; size];
            phase(
                &format!("read  {kib:>2} KiB, {mode}"),
                payload,
                count,
                || {
                    for i in 0..count as usize {
                        blk.read_blocks(i % span * sectors, &mut back)?;
                    }
                    Ok(())
                },
            )?;
            if back != data {
                return Err(format!("{kib} KiB {mode}: the data read back differs").into());
            }
        }
        if let Some(e) = device.failure() {
            return Err(format!("the device model failed: {e}").into());
        }
    }

    // Phase 2: IN_FLIGHT 64 KiB writes at a time, served in one batch by the device.
    let (transport, device) = TransportBuilder::new(BlockDevice::new(DISK_SECTORS), region)
        .indirect(true)
        .mode(Mode::Manual)
        .build();
    let mut blk = VirtIOBlk::<Hal, _>::new(transport)?;
    let size = 65536;
    let batches = ((mib_per_phase << 20) / (size * IN_FLIGHT) as u64).max(1);
    let datas: Vec<Vec<u8>> = (0..IN_FLIGHT).map(|i| pattern(size, i as u64)).collect();
    let mut reqs: Vec<BlkReq> = (0..IN_FLIGHT).map(|_| BlkReq::default()).collect();
    let mut resps: Vec<BlkResp> = (0..IN_FLIGHT).map(|_| BlkResp::default()).collect();
    let requests = batches * IN_FLIGHT as u64;
    let name = format!("write 64 KiB, {IN_FLIGHT} in flight");
    phase(&name, requests * size as u64, requests, || {
        for b in 0..batches as usize {
            let mut tokens = Vec::with_capacity(IN_FLIGHT);
            for i in 0..IN_FLIGHT {
                let sector = ((b * IN_FLIGHT + i) * size / SECTOR_SIZE) % DISK_SECTORS as usize;
                // SAFETY: request i's buffers are untouched until it completes below.
                tokens.push(unsafe {
                    blk.write_blocks_nb(sector, &mut reqs[i], &datas[i], &mut resps[i])
                }?);
            }
            device.process()?;
            while let Some(token) = blk.peek_used() {
                let i = tokens
                    .iter()
                    .position(|&t| t == token)
                    .ok_or_else(|| format!("the device used an unknown token {token}"))?;
                // SAFETY: the buffers given to write_blocks_nb for this token.
                unsafe { blk.complete_write_blocks(token, &reqs[i], &datas[i], &mut resps[i]) }?;
                if resps[i].status() != RespStatus::OK {
                    return Err(format!("request {i}: status {:?}", resps[i].status()).into());
                }
            }
        }
        Ok(())
    })?;
    if let Some(e) = device.failure() {
        return Err(format!("the device model failed: {e}").into());
    }
    drop(blk);

    let stats = pool.stats();
    let c = BlkPool::counters();
    println!(
        "pool: high water {} of {} slots ({} KiB), {} failed maps, {} shares waited, \
         {} ring pages allocated; {} slots in use at exit",
        stats.high_water,
        stats.total_slots,
        (stats.high_water * pool.slot_size()) >> 10,
        stats.failed_maps,
        c.share_waits,
        c.coherent_pages,
        stats.used_slots,
    );
    Ok(())
}
