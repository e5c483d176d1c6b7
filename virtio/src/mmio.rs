//! MMIO windows: the only places a PCI BAR may point.
//!
//! # Why windows
//!
//! `Hal::mmio_phys_to_virt` turns a BAR address read from the device into a pointer the
//! driver then reads and writes. In a confidential VM the host emulates PCI and chooses the
//! BARs, so a BAR is an address the host picked: an identity translation would let it point
//! the driver's "registers" at the pool, at page tables or at any other guest RAM. The guest
//! knows where it mapped device MMIO (it built those mappings), so it lists them as
//! [`MmioWindow`]s in [`HalOptions`](crate::HalOptions), and the default
//! [`PoolBinding::mmio_phys_to_virt`](crate::PoolBinding::mmio_phys_to_virt) translates a
//! BAR only when it lies entirely inside one of them, and panics otherwise.

use core::fmt;
use core::ptr::NonNull;

/// A range of device MMIO the guest mapped: physical addresses `phys..phys + size` at CPU
/// addresses `virt..virt + size`.
///
/// Made only through the `unsafe` constructors, whose contract is what lets the default
/// [`mmio_phys_to_virt`](crate::PoolBinding::mmio_phys_to_virt) hand out pointers into it;
/// [`PoolSlot::register`](crate::PoolSlot::register) then refuses windows that are empty,
/// wrap, overlap each other or overlap the pool.
///
/// # Examples
///
/// ```
/// use swiotlb_virtio::{HalOptions, MmioWindow};
///
/// // A platform that maps its PCI memory space 1:1; the list lives for the whole program.
/// // SAFETY: on the platform this stands for, 0x4000_0000.. is device MMIO mapped 1:1 and
/// // nothing else (this example never dereferences it).
/// let pci_memory = unsafe { MmioWindow::identity(0x4000_0000, 0x1000_0000) };
/// let windows: &'static [MmioWindow] = Box::leak(Box::new([pci_memory]));
/// let options = HalOptions::new().mmio_windows(windows);
/// # let _ = options;
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MmioWindow {
    phys: u64,
    size: u64,
    virt: NonNull<u8>,
}

// SAFETY: a window describes a mapping; this crate never dereferences `virt`, it only hands
// out pointers into the window from `mmio_phys_to_virt`, whose callers take responsibility
// for their accesses. The constructors' contract makes the mapping valid from every thread
// for the rest of the program, so moving or sharing the description across threads is fine.
unsafe impl Send for MmioWindow {}
// SAFETY: as for `Send`; `&MmioWindow` gives only copies of the three figures.
unsafe impl Sync for MmioWindow {}

impl MmioWindow {
    /// A window of `size` bytes of device MMIO at physical address `phys`, mapped at `virt`.
    ///
    /// Nothing is checked here (this is a `const fn`, usable in a `static`); registration
    /// checks the figures.
    ///
    /// # Safety
    ///
    /// For the rest of the program, on every CPU and thread that may use the binding:
    /// - `virt..virt + size` is the CPU mapping of device MMIO at `phys..phys + size`, valid
    ///   for volatile reads and writes of any of its bytes;
    /// - none of it is memory the Rust program uses otherwise (stack, heap, statics, the
    ///   pool): pointers into it alias no allocation or reference;
    /// - `virt` carries provenance that permits those accesses (from the mapping code, or
    ///   exposed: see [`identity`](Self::identity)).
    ///
    /// It is fine for a BAR of a hostile device to lie anywhere in the window: the device
    /// owns that MMIO anyway. What the window must not cover is anything else.
    pub const unsafe fn new(phys: u64, size: u64, virt: NonNull<u8>) -> Self {
        Self { phys, size, virt }
    }

    /// A window of device MMIO that the platform maps at its physical address (identity
    /// mapping, or no MMU).
    ///
    /// The pointer is made with [`core::ptr::with_exposed_provenance_mut`]: the MMIO is not
    /// an allocation of the Rust abstract machine, so no pointer the program holds can lend
    /// it provenance (strict provenance has nothing to derive it from), and the standard
    /// library documents that memory outside the abstract machine's control, "MMIO
    /// registers, for example", is always accessible with exposed provenance. That is the
    /// honest statement of what happens: an address the hardware defines, turned into a
    /// pointer. It is done at run time (this function is not `const`): a pointer made by
    /// constant evaluation would carry no provenance at all.
    ///
    /// # Safety
    ///
    /// As [`new`](Self::new), with `virt == phys`: `phys..phys + size` is device MMIO
    /// mapped at the same CPU addresses. As with `new`, registration checks the figures.
    ///
    /// # Panics
    ///
    /// If `phys` is 0 or does not fit a `usize` (on a 32-bit target, MMIO above 4 GiB
    /// cannot be identity-mapped).
    pub unsafe fn identity(phys: u64, size: u64) -> Self {
        let addr = match usize::try_from(phys) {
            Ok(addr) => addr,
            Err(_) => panic!(
                "swiotlb-virtio: MMIO at physical {phys:#x} is beyond this target's address \
                 space and cannot be identity-mapped"
            ),
        };
        let virt = NonNull::new(core::ptr::with_exposed_provenance_mut::<u8>(addr))
            .expect("swiotlb-virtio: an identity MMIO window cannot start at address 0");
        Self { phys, size, virt }
    }

    /// The window's first physical address.
    pub const fn phys(&self) -> u64 {
        self.phys
    }

    /// The window's length in bytes.
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// The CPU address of the window's first byte.
    pub const fn virt(&self) -> NonNull<u8> {
        self.virt
    }

    /// The CPU address of physical `paddr..paddr + size`, if that range lies entirely
    /// inside this window (an empty range must start inside it). Every step is checked:
    /// nothing wraps or truncates, whatever the figures and the target's pointer width.
    pub fn translate(&self, paddr: u64, size: usize) -> Option<NonNull<u8>> {
        let offset = paddr.checked_sub(self.phys)?;
        let len = u64::try_from(size).ok()?;
        let end = offset.checked_add(len)?;
        if end > self.size || offset >= self.size {
            return None;
        }
        let offset = usize::try_from(offset).ok()?;
        // Checked so that the address neither wraps nor reaches null. `wrapping_add` keeps
        // `virt`'s provenance (no integer round trip) without `add`'s claim that the window
        // is one Rust allocation: it is MMIO.
        self.virt.as_ptr().addr().checked_add(offset)?;
        NonNull::new(self.virt.as_ptr().wrapping_add(offset))
    }

    /// The physical range, or `None` if it is empty or wraps `u64`.
    pub(crate) fn phys_range(&self) -> Option<(u64, u64)> {
        let end = self.phys.checked_add(self.size)?;
        (self.size != 0).then_some((self.phys, end))
    }

    /// The CPU range, or `None` if it is empty, does not fit a `usize` or wraps the
    /// address space.
    pub(crate) fn cpu_range(&self) -> Option<(usize, usize)> {
        let start = self.virt.as_ptr().addr();
        let end = start.checked_add(usize::try_from(self.size).ok()?)?;
        (self.size != 0).then_some((start, end))
    }
}

impl fmt::Debug for MmioWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmioWindow")
            .field("phys", &format_args!("{:#x}", self.phys))
            .field("size", &format_args!("{:#x}", self.size))
            .field("virt", &self.virt)
            .finish()
    }
}

/// `0x1000 bytes at physical 0x4000_0000 (CPU 0x...)`.
impl fmt::Display for MmioWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x} bytes at physical {:#x} (CPU {:p})",
            self.size, self.phys, self.virt
        )
    }
}

/// Whether half-open ranges `a` and `b` share a byte.
pub(crate) fn overlap<T: Ord>(a: (T, T), b: (T, T)) -> bool {
    a.0 < b.1 && b.0 < a.1
}
