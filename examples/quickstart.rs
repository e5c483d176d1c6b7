//! Maps buffers through a pool the way a driver would, lets a pretend device answer, and
//! prints what the pool did. `cargo run --release --example quickstart`

use core::ptr::NonNull;
use swiotlb::{Attrs, Config, Constraints, Direction, Pool};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 4 MiB of memory the device may see; NVMe keeps the low 12 address bits.
    let pool = Pool::allocate(4 << 20, Config::new())?;
    let nvme = Constraints::new().min_align_mask(0xfff);
    println!("{pool:?}");

    // A command the device reads, and room for the data it writes.
    let mut request = vec![0x5au8; 512];
    let mut reply = vec![0u8; 16 * 1024];
    // SAFETY: both buffers stay alive and untouched until they are unmapped below.
    let (cmd, data) = unsafe {
        (
            pool.map(NonNull::from(&mut request[..]), Direction::ToDevice, &nvme)?,
            pool.map(NonNull::from(&mut reply[..]), Direction::FromDevice, &nvme)?,
        )
    };
    println!("command at {cmd:#x}, data at {data:#x}: {:?}", pool.stats());

    // The device reads the command and answers into the data buffer, in pool memory only.
    let device = pool.translate(data, reply.len()).expect("in the pool");
    // SAFETY: `translate` checked the range; this is the device writing its memory.
    unsafe { device.as_ptr().write_bytes(0xa5, reply.len()) };

    // SAFETY: as above; the device is done.
    unsafe {
        pool.unmap(cmd, request.len(), Direction::ToDevice, Attrs::NONE)?;
        pool.unmap(data, reply.len(), Direction::FromDevice, Attrs::NONE)?;
    }
    assert!(reply.iter().all(|b| *b == 0xa5));
    println!("reply copied back; after unmap: {:?}", pool.stats());
    Ok(())
}
