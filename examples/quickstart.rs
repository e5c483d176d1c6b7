//! Maps buffers through a pool the way a driver would, lets a pretend device answer, and
//! prints what the pool did. `cargo run --release --example quickstart`
//!
//! The driver's side uses no `unsafe`: the mappings borrow their buffers. Only the pretend
//! device, which writes pool memory as hardware would, needs it.

use swiotlb::{Config, Constraints, DmaMut, DmaRef, Fill, Pool};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 4 MiB of memory the device may see; NVMe keeps the low 12 address bits.
    let pool = Pool::allocate(4 << 20, Config::new())?;
    let nvme = Constraints::new().min_align_mask(0xfff);
    println!("{pool:?}");

    // A command the device reads, and room for the data it writes.
    let request = vec![0x5au8; 512];
    let mut reply = vec![0u8; 16 * 1024];
    let cmd = DmaRef::to_device(&pool, &request, &nvme)?;
    let data = DmaMut::from_device(&pool, &mut reply, &nvme, Fill::Zero)?;
    println!(
        "command at {:#x}, data at {:#x}: {:?}",
        cmd.dma(),
        data.dma(),
        pool.stats()
    );

    // The device reads the command and answers into the data buffer, in pool memory only.
    let device = pool.translate(data.dma(), data.len()).expect("in the pool");
    // SAFETY: `translate` checked the range; this is the device writing its memory, with
    // the copies that are defined while others may touch it.
    unsafe { swiotlb::shared::fill_shared(device.as_ptr(), 0xa5, data.len()) };

    drop(cmd);
    data.unmap()?; // copies the reply back
    assert!(reply.iter().all(|b| *b == 0xa5));
    println!("reply copied back; after unmap: {:?}", pool.stats());
    Ok(())
}
