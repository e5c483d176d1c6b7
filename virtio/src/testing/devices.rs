//! Device models: block (an in-memory disk), console (one port) and entropy.

use super::chain::{Chain, DeviceError};
use super::transport::{DeviceModel, Handled};
use std::collections::VecDeque;
use std::string::String;
use std::vec::Vec;
use virtio_drivers::transport::DeviceType;
use vm_memory::GuestMemoryMmap;

/// Bytes in a block device sector.
pub const SECTOR_SIZE: usize = 512;

const BLK_T_IN: u32 = 0;
const BLK_T_OUT: u32 = 1;
const BLK_T_FLUSH: u32 = 4;
const BLK_T_GET_ID: u32 = 8;
const BLK_S_OK: u8 = 0;
const BLK_S_IOERR: u8 = 1;
const BLK_S_UNSUPP: u8 = 2;
/// `VIRTIO_BLK_F_FLUSH`.
const BLK_F_FLUSH: u64 = 1 << 9;

fn protocol(chain: &Chain, reason: impl Into<String>) -> DeviceError {
    DeviceError::Protocol {
        queue: chain.queue,
        head: chain.head,
        reason: reason.into(),
    }
}

/// What a [`BlockDevice`] served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockStats {
    /// Read requests served.
    pub reads: u64,
    /// Write requests served.
    pub writes: u64,
    /// Flushes.
    pub flushes: u64,
    /// Data bytes the device wrote into the pool (reads).
    pub bytes_to_driver: u64,
    /// Data bytes the device took from the pool (writes).
    pub bytes_from_driver: u64,
    /// Requests refused with an I/O error (out of range, bad length).
    pub io_errors: u64,
}

/// A virtio-blk device over an in-memory disk. One request queue; offers `FLUSH`; serves
/// `IN`, `OUT`, `FLUSH` and `GET_ID`.
#[derive(Debug)]
pub struct BlockDevice {
    disk: Vec<u8>,
    id: [u8; 20],
    stats: BlockStats,
}

impl BlockDevice {
    /// A zeroed disk of `sectors` 512-byte sectors.
    pub fn new(sectors: u64) -> Self {
        let mut id = [0u8; 20];
        let name = b"swiotlb-virtio-blk";
        id[..name.len()].copy_from_slice(name);
        Self {
            disk: vec![0; sectors as usize * SECTOR_SIZE],
            id,
            stats: BlockStats::default(),
        }
    }

    /// The disk's contents.
    pub fn disk(&self) -> &[u8] {
        &self.disk
    }

    /// What it served.
    pub fn stats(&self) -> BlockStats {
        self.stats
    }

    /// The byte range of `len` bytes from `sector`, if it lies on the disk.
    fn range(&self, sector: u64, len: usize) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(sector).ok()?.checked_mul(SECTOR_SIZE)?;
        let end = start.checked_add(len)?;
        (len & (SECTOR_SIZE - 1) == 0 && end <= self.disk.len()).then_some(start..end)
    }
}

impl DeviceModel for BlockDevice {
    fn device_type(&self) -> DeviceType {
        DeviceType::Block
    }

    fn features(&self) -> u64 {
        BLK_F_FLUSH
    }

    fn queues(&self) -> u16 {
        1
    }

    fn config(&self) -> Vec<u8> {
        let mut config = vec![0u8; 64];
        let sectors = (self.disk.len() / SECTOR_SIZE) as u64;
        config[..8].copy_from_slice(&sectors.to_le_bytes());
        config
    }

    fn handle(&mut self, chain: &Chain, mem: &GuestMemoryMmap) -> Result<Handled, DeviceError> {
        if !chain.well_ordered() {
            return Err(protocol(
                chain,
                "device-readable buffer after a writable one",
            ));
        }
        let readable = chain.read_all(mem)?;
        let writable = chain.writable_len();
        if readable.len() < 16 || writable == 0 {
            return Err(protocol(
                chain,
                format!(
                    "request with {} readable and {writable} writable bytes",
                    readable.len()
                ),
            ));
        }
        let kind = u32::from_le_bytes(readable[0..4].try_into().expect("4 bytes"));
        let sector = u64::from_le_bytes(readable[8..16].try_into().expect("8 bytes"));
        let payload = &readable[16..];
        let data_len = writable - 1;
        let status = match kind {
            BLK_T_IN => match self.range(sector, data_len) {
                Some(r) => {
                    chain.write_at(mem, 0, &self.disk[r])?;
                    self.stats.reads += 1;
                    self.stats.bytes_to_driver += data_len as u64;
                    BLK_S_OK
                }
                None => {
                    self.stats.io_errors += 1;
                    BLK_S_IOERR
                }
            },
            BLK_T_OUT => match self.range(sector, payload.len()) {
                Some(r) => {
                    self.disk[r].copy_from_slice(payload);
                    self.stats.writes += 1;
                    self.stats.bytes_from_driver += payload.len() as u64;
                    BLK_S_OK
                }
                None => {
                    self.stats.io_errors += 1;
                    BLK_S_IOERR
                }
            },
            BLK_T_FLUSH => {
                self.stats.flushes += 1;
                BLK_S_OK
            }
            BLK_T_GET_ID => {
                let n = data_len.min(self.id.len());
                chain.write_at(mem, 0, &self.id[..n])?;
                BLK_S_OK
            }
            _ => BLK_S_UNSUPP,
        };
        chain.write_at(mem, data_len, &[status])?;
        // Used length: the span written, which ends with the status byte at the end of the
        // writable space (as QEMU reports it, also for a failed read).
        let used = match kind {
            BLK_T_IN | BLK_T_GET_ID => writable,
            _ => 1,
        };
        Ok(Handled::Used(used as u32))
    }
}

/// A virtio console with one port: receive queue 0 is filled from [`push_input`]
/// (buffers wait until there is input), transmit queue 1 is appended to [`output`].
///
/// [`push_input`]: ConsoleDevice::push_input
/// [`output`]: ConsoleDevice::output
#[derive(Debug, Default)]
pub struct ConsoleDevice {
    input: VecDeque<u8>,
    output: Vec<u8>,
    columns: u16,
    rows: u16,
}

/// `VIRTIO_CONSOLE_F_SIZE`.
const CONSOLE_F_SIZE: u64 = 1 << 0;

impl ConsoleDevice {
    /// A console of `columns` x `rows`.
    pub fn new(columns: u16, rows: u16) -> Self {
        Self {
            columns,
            rows,
            ..Self::default()
        }
    }

    /// Bytes for the driver to receive.
    pub fn push_input(&mut self, bytes: &[u8]) {
        self.input.extend(bytes);
    }

    /// What the driver sent.
    pub fn output(&self) -> &[u8] {
        &self.output
    }
}

impl DeviceModel for ConsoleDevice {
    fn device_type(&self) -> DeviceType {
        DeviceType::Console
    }

    fn features(&self) -> u64 {
        CONSOLE_F_SIZE
    }

    fn queues(&self) -> u16 {
        2
    }

    fn config(&self) -> Vec<u8> {
        let mut config = vec![0u8; 12];
        config[0..2].copy_from_slice(&self.columns.to_le_bytes());
        config[2..4].copy_from_slice(&self.rows.to_le_bytes());
        config[4..8].copy_from_slice(&1u32.to_le_bytes());
        config
    }

    fn handle(&mut self, chain: &Chain, mem: &GuestMemoryMmap) -> Result<Handled, DeviceError> {
        match chain.queue {
            0 => {
                if self.input.is_empty() {
                    return Ok(Handled::Later);
                }
                let n = self.input.len().min(chain.writable_len());
                let bytes: Vec<u8> = self.input.drain(..n).collect();
                chain.write_at(mem, 0, &bytes)?;
                Ok(Handled::Used(n as u32))
            }
            1 => {
                self.output.extend(chain.read_all(mem)?);
                Ok(Handled::Used(0))
            }
            q => Err(DeviceError::QueueNotReady { queue: q }),
        }
    }
}

/// A virtio entropy device: fills each buffer (or its first `chunk` bytes) with a
/// deterministic pseudo-random stream.
#[derive(Debug)]
pub struct RngDevice {
    state: u64,
    chunk: Option<usize>,
    produced: u64,
}

impl RngDevice {
    /// A device that fills whole buffers, from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed | 1,
            chunk: None,
            produced: 0,
        }
    }

    /// Writes at most `chunk` bytes per request (a device that fills buffers partly).
    pub fn chunk(mut self, chunk: usize) -> Self {
        self.chunk = Some(chunk);
        self
    }

    /// The first `n` bytes a device made with `seed` produces (whatever the chunking).
    pub fn stream(seed: u64, n: usize) -> Vec<u8> {
        let mut d = Self::new(seed);
        (0..n).map(|_| d.next_byte()).collect()
    }

    /// Bytes produced so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    fn next_byte(&mut self) -> u8 {
        // xorshift64
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 24) as u8
    }
}

impl DeviceModel for RngDevice {
    fn device_type(&self) -> DeviceType {
        DeviceType::EntropySource
    }

    fn features(&self) -> u64 {
        0
    }

    fn queues(&self) -> u16 {
        1
    }

    fn config(&self) -> Vec<u8> {
        Vec::new()
    }

    fn handle(&mut self, chain: &Chain, mem: &GuestMemoryMmap) -> Result<Handled, DeviceError> {
        let room = chain.writable_len();
        let n = self.chunk.map_or(room, |c| c.min(room));
        let bytes: Vec<u8> = (0..n).map(|_| self.next_byte()).collect();
        chain.write_at(mem, 0, &bytes)?;
        self.produced += n as u64;
        Ok(Handled::Used(n as u32))
    }
}
