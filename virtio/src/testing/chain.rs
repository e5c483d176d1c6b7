//! Descriptor chains as the device model sees them: walked by virtio-queue, every address
//! checked against guest memory (the pool), every byte moved through vm-memory.

use std::string::{String, ToString};
use std::vec::Vec;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

/// A failure of the device model. Anything a driver gets wrong (an address outside the
/// pool above all) ends up here, loudly, never ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceError {
    /// The driver notified a queue it never set up.
    QueueNotReady {
        /// Queue index.
        queue: u16,
    },
    /// The queue's rings are not inside the pool.
    RingsOutsidePool {
        /// Queue index.
        queue: u16,
        /// Descriptor table address.
        desc: u64,
        /// Available ring address.
        avail: u64,
        /// Used ring address.
        used: u64,
    },
    /// A descriptor points outside the pool.
    DescriptorOutsidePool {
        /// Queue index.
        queue: u16,
        /// Head of the chain.
        head: u16,
        /// Buffer address.
        addr: u64,
        /// Buffer length.
        len: u32,
    },
    /// An indirect descriptor table lies outside the pool.
    IndirectTableOutsidePool {
        /// Queue index.
        queue: u16,
        /// Head of the chain.
        head: u16,
        /// Table address.
        addr: u64,
        /// Table length in bytes.
        len: u32,
    },
    /// The chain could not be walked to its end (a loop, an index past the table, an
    /// unreadable indirect table) or is empty.
    BrokenChain {
        /// Queue index.
        queue: u16,
        /// Head of the chain.
        head: u16,
        /// What went wrong.
        reason: String,
    },
    /// virtio-queue refused an operation on the rings.
    Queue {
        /// Queue index.
        queue: u16,
        /// virtio-queue's error, as text.
        error: String,
    },
    /// A request that breaks the device type's protocol.
    Protocol {
        /// Queue index.
        queue: u16,
        /// Head of the chain.
        head: u16,
        /// What is wrong with it.
        reason: String,
    },
    /// vm-memory refused an access (which a checked chain should never cause).
    Memory {
        /// Guest address.
        addr: u64,
        /// Bytes.
        len: usize,
        /// vm-memory's error, as text.
        error: String,
    },
}

impl core::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::QueueNotReady { queue } => write!(f, "queue {queue} notified but not set up"),
            Self::RingsOutsidePool {
                queue,
                desc,
                avail,
                used,
            } => write!(
                f,
                "queue {queue}: rings outside the pool (desc {desc:#x}, avail {avail:#x}, used {used:#x})"
            ),
            Self::DescriptorOutsidePool {
                queue,
                head,
                addr,
                len,
            } => write!(
                f,
                "queue {queue}, chain {head}: descriptor {addr:#x} (+{len}) outside the pool"
            ),
            Self::IndirectTableOutsidePool {
                queue,
                head,
                addr,
                len,
            } => write!(
                f,
                "queue {queue}, chain {head}: indirect table {addr:#x} (+{len}) outside the pool"
            ),
            Self::BrokenChain {
                queue,
                head,
                reason,
            } => write!(f, "queue {queue}, chain {head}: broken chain: {reason}"),
            Self::Queue { queue, error } => write!(f, "queue {queue}: {error}"),
            Self::Protocol {
                queue,
                head,
                reason,
            } => write!(f, "queue {queue}, chain {head}: {reason}"),
            Self::Memory { addr, len, error } => {
                write!(f, "guest memory access {addr:#x} (+{len}): {error}")
            }
        }
    }
}

impl std::error::Error for DeviceError {}

/// One buffer of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    /// Guest (device) address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Whether the device may write it.
    pub writable: bool,
}

/// A descriptor chain, walked and checked: every buffer lies inside guest memory (the pool).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// Queue index.
    pub queue: u16,
    /// Head descriptor index (what goes in the used ring).
    pub head: u16,
    /// Whether the head pointed to an indirect table.
    pub indirect: bool,
    /// The buffers, in chain order.
    pub descriptors: Vec<Desc>,
}

fn memory_error(addr: u64, len: usize, e: impl core::fmt::Display) -> DeviceError {
    DeviceError::Memory {
        addr,
        len,
        error: e.to_string(),
    }
}

impl Chain {
    /// Walks `chain` with virtio-queue, refusing (rather than ignoring) anything it cannot
    /// walk to the end and any buffer that is not inside `mem`.
    pub(crate) fn collect(
        queue: u16,
        desc_table: u64,
        queue_size: u16,
        chain: DescriptorChain<&GuestMemoryMmap>,
        mem: &GuestMemoryMmap,
    ) -> Result<Self, DeviceError> {
        let head = chain.head_index();
        let broken = |reason: &str| DeviceError::BrokenChain {
            queue,
            head,
            reason: reason.to_string(),
        };
        if head >= queue_size {
            return Err(broken("head index past the descriptor table"));
        }
        // The head, read here too, to tell an indirect chain and check its table: virtio-queue
        // would end such a chain silently if the table were unreadable.
        let head_addr = desc_table + 16 * u64::from(head);
        let head_desc: Descriptor = mem
            .read_obj(GuestAddress(head_addr))
            .map_err(|e| memory_error(head_addr, 16, e))?;
        let indirect = head_desc.refers_to_indirect_table();
        if indirect
            && !GuestMemory::check_range(
                mem,
                head_desc.addr(),
                head_desc.len() as usize,
                Permissions::Read,
            )
        {
            return Err(DeviceError::IndirectTableOutsidePool {
                queue,
                head,
                addr: head_desc.addr().0,
                len: head_desc.len(),
            });
        }
        let mut descriptors = Vec::new();
        let mut ends = false;
        for d in chain {
            let access = if d.is_write_only() {
                Permissions::Write
            } else {
                Permissions::Read
            };
            if !GuestMemory::check_range(mem, d.addr(), d.len() as usize, access) {
                return Err(DeviceError::DescriptorOutsidePool {
                    queue,
                    head,
                    addr: d.addr().0,
                    len: d.len(),
                });
            }
            descriptors.push(Desc {
                addr: d.addr().0,
                len: d.len(),
                writable: d.is_write_only(),
            });
            ends = !d.has_next();
        }
        if descriptors.is_empty() {
            return Err(broken("no descriptor could be read"));
        }
        if !ends {
            return Err(broken(
                "walk stopped at a descriptor with NEXT set (a loop, a bad index or an unreadable entry)",
            ));
        }
        Ok(Self {
            queue,
            head,
            indirect,
            descriptors,
        })
    }

    /// Bytes in device-readable buffers.
    pub fn readable_len(&self) -> usize {
        self.descriptors
            .iter()
            .filter(|d| !d.writable)
            .map(|d| d.len as usize)
            .sum()
    }

    /// Bytes in device-writable buffers.
    pub fn writable_len(&self) -> usize {
        self.descriptors
            .iter()
            .filter(|d| d.writable)
            .map(|d| d.len as usize)
            .sum()
    }

    /// Whether every readable buffer comes before every writable one, as virtio requires.
    pub fn well_ordered(&self) -> bool {
        let first_writable = self
            .descriptors
            .iter()
            .position(|d| d.writable)
            .unwrap_or(self.descriptors.len());
        self.descriptors[first_writable..]
            .iter()
            .all(|d| d.writable)
    }

    /// The device-readable bytes, concatenated in chain order, read through vm-memory.
    ///
    /// # Errors
    ///
    /// [`DeviceError::Memory`] if vm-memory refuses (it cannot for a collected chain).
    pub fn read_all(&self, mem: &GuestMemoryMmap) -> Result<Vec<u8>, DeviceError> {
        let mut out = vec![0u8; self.readable_len()];
        let mut at = 0;
        for d in self.descriptors.iter().filter(|d| !d.writable) {
            let len = d.len as usize;
            mem.read_slice(&mut out[at..at + len], GuestAddress(d.addr))
                .map_err(|e| memory_error(d.addr, len, e))?;
            at += len;
        }
        Ok(out)
    }

    /// Writes `bytes` at `offset` into the device-writable space (the writable buffers
    /// concatenated in chain order), through vm-memory.
    ///
    /// # Errors
    ///
    /// [`DeviceError::Protocol`] if the bytes run past the writable space.
    pub fn write_at(
        &self,
        mem: &GuestMemoryMmap,
        offset: usize,
        bytes: &[u8],
    ) -> Result<(), DeviceError> {
        if offset + bytes.len() > self.writable_len() {
            return Err(DeviceError::Protocol {
                queue: self.queue,
                head: self.head,
                reason: format!(
                    "write of {} bytes at {offset} past the {}-byte writable space",
                    bytes.len(),
                    self.writable_len()
                ),
            });
        }
        let mut skip = offset;
        let mut rest = bytes;
        for d in self.descriptors.iter().filter(|d| d.writable) {
            if rest.is_empty() {
                break;
            }
            let len = d.len as usize;
            if skip >= len {
                skip -= len;
                continue;
            }
            let n = (len - skip).min(rest.len());
            let addr = d.addr + skip as u64;
            mem.write_slice(&rest[..n], GuestAddress(addr))
                .map_err(|e| memory_error(addr, n, e))?;
            rest = &rest[n..];
            skip = 0;
        }
        Ok(())
    }
}
