//! Copies between private memory and shared memory that another agent may write at any time.
//!
//! Pool memory is shared with a device that may read and write it while the CPU copies (a
//! hostile device does so on purpose); in tests the device is another thread. A plain
//! `ptr::copy_nonoverlapping` or `ptr::write_bytes` there is a data race by Rust's rules, so
//! undefined behaviour whatever the hardware does, and a libc `memcpy` may read a byte twice
//! (glibc's small copies overlap their loads), so one copy could see two values of a byte.
//! These three functions are how pool bytes are to be touched: each shared byte is accessed
//! once per call, and nothing is decided on what is read.
//!
//! # Why this is defined
//!
//! Each function behaves as the byte-wise atomic memcpy of RFC 3301 (`AtomicPerByte`, after
//! C++'s P1478, and as the `atomic-memcpy` crate): every shared byte is read or written by a
//! relaxed atomic access of its own, in no particular order. A concurrent atomic or
//! machine-level write of that byte is a race between atomics, which is defined: the copy
//! gets the old or the new value of each byte, so a copy of a region being written may mix
//! the two (agreeing on when the data is whole is the driver's business, as with any DMA).
//! `read_volatile` and `write_volatile` would not do: by Rust's rules a volatile access that
//! races with another thread's write to memory of the program is still a data race, and pool
//! memory is an ordinary allocation in tests and with `Pool::allocate`.
//!
//! # Paths
//!
//! - **x86_64**: inline assembly. An `asm!` block is opaque to the compiler and behaves as
//!   a call into foreign code that performs machine-level loads and stores; x86 never tears
//!   a byte, so whatever their width those accesses are the per-byte atomics above, and a
//!   concurrent write is no Rust-level data race. With AVX (asked once with `cpuid` and
//!   `xgetbv`; builds without SSE, as kernels are, never touch vector registers) whole
//!   32-byte blocks go by `vmovdqu`, four at a time, and the rest by one move each of 16,
//!   8, 4, 2 and 1 bytes as its length needs, all in one call (most copies are of a few
//!   hundred bytes, where a second call and its tests cost as much as the copy); without
//!   AVX `rep movsb` / `rep stosb` take copies from 128 and fills from 768 bytes (measured
//!   crossovers), except where the destination is 1 to 31 bytes above the source modulo 4
//!   KiB: `rep movsb` is then 25 to 45 times slower on the build machine's AMD EPYC (Zen 3:
//!   a 4 KiB copy took 1.4-2.3 µs instead of 50-90 ns; glibc's `memcpy` falls into it too).
//!   The rest goes by 8-byte, then 1-byte moves.
//! - **Miri**: one relaxed `AtomicU8` access per byte. Miri cannot run assembly; it does
//!   check races between atomics, and reports racing atomics of different sizes, so a byte
//!   path keeps a test's byte-writing device thread legal.
//! - **Every other target**: relaxed `AtomicUsize` loads and stores of the shared side's
//!   aligned words (the private side uses unaligned plain accesses), `AtomicU8` at the
//!   unaligned ends. `usize` because targets such as `thumbv7em` have no 64-bit atomics.
//!   Rust does not define racing atomics of different sizes (a word load against another
//!   *thread's* byte store; Miri reports it, hence its byte path). CPUs perform them as
//!   byte-atomic, which is all a device can observe, so the caveat is for threads that
//!   write pool bytes themselves. Assembly that cannot be tested here (there is no aarch64
//!   machine) would be worse.
//!
//! The AVX loop is kept because it beat `rep movsb` at 4 KiB (0.6-0.95 of the time of
//! `copy_nonoverlapping`, itself `rep movsb` at that size in glibc 2.36, where our own
//! `rep movsb` took 0.9-1.0) and has no slow case; it matches `copy_nonoverlapping` at 64
//! KiB. The word path, measured on x86_64, takes 3 to 6 times as long as
//! `copy_nonoverlapping` at 4 KiB: atomics are not vectorised. Figures and the command are
//! in `benches/shared_copy.rs`.
//!
//! # Other users of shared memory
//!
//! Anything else that touches pool memory while a device may (a device model in a test, a
//! driver reading a coherent ring through raw pointers) must do so through these functions
//! or atomics (`AtomicU8::from_ptr` and friends), never through references or plain or
//! volatile accesses, for the same reasons.

#[cfg(not(all(target_arch = "x86_64", not(miri))))]
use self::words as imp;
#[cfg(all(target_arch = "x86_64", not(miri)))]
use self::x86 as imp;

/// Copies `len` bytes from private memory at `src` to shared memory at `dst`.
///
/// # Safety
///
/// - `dst` must be valid for reads and writes of `len` bytes. Other agents may read and
///   write them concurrently with atomic or machine-level accesses (a device; another thread
///   using these functions or atomics); each byte of `dst` is written once, as if by a
///   relaxed atomic store.
/// - `src` must be valid for reads of `len` bytes, must not overlap `dst..dst + len`, and
///   must not be written by anyone during the call.
#[inline]
pub unsafe fn copy_to_shared(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the caller's contract, which is every path's.
    unsafe { imp::copy_to(dst, src, len) }
}

/// Copies `len` bytes from shared memory at `src` to private memory at `dst`.
///
/// # Safety
///
/// - `src` must be valid for reads and writes of `len` bytes (it is only read). Other
///   agents may read and write them concurrently with atomic or machine-level accesses;
///   each byte of `src` is read once, as if by a relaxed atomic load.
/// - `dst` must be valid for writes of `len` bytes, must not overlap `src..src + len`, and
///   must not be read or written by anyone else during the call.
#[inline]
pub unsafe fn copy_from_shared(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the caller's contract, which is every path's.
    unsafe { imp::copy_from(dst, src, len) }
}

/// Sets `len` bytes of shared memory at `dst` to `byte`.
///
/// # Safety
///
/// `dst` must be valid for reads and writes of `len` bytes. Other agents may read and write
/// them concurrently with atomic or machine-level accesses; each byte is written once, as if
/// by a relaxed atomic store.
#[inline]
pub unsafe fn fill_shared(dst: *mut u8, byte: u8, len: usize) {
    // SAFETY: the caller's contract, which is every path's.
    unsafe { imp::fill(dst, byte, len) }
}

// === impl words: the portable path ===

#[cfg_attr(all(target_arch = "x86_64", not(miri)), allow(dead_code))] // Only tests use it there.
mod words {
    use crate::sync::shared_atomics::{AtomicU8, Ordering::Relaxed};

    /// The unit of the aligned middle: a `usize`, or one byte under Miri (see the module docs).
    #[cfg(not(miri))]
    type Bits = usize;
    #[cfg(not(miri))]
    type Word = crate::sync::shared_atomics::AtomicUsize;
    #[cfg(miri)]
    type Bits = u8;
    #[cfg(miri)]
    type Word = AtomicU8;
    const W: usize = core::mem::size_of::<Bits>();

    /// Calls `byte(i)` for each offset before `shared + i` is word-aligned and after the last
    /// whole word, and `word(i)` at each aligned word between: every offset in `0..len` once.
    #[inline(always)]
    fn split(shared: *const u8, len: usize, mut byte: impl FnMut(usize), word: impl FnMut(usize)) {
        // `align_offset` may answer `usize::MAX`; then every offset goes byte by byte.
        let head = shared.align_offset(W).min(len);
        let end = len - (len - head) % W;
        (0..head).for_each(&mut byte);
        (head..end).step_by(W).for_each(word);
        (end..len).for_each(byte);
    }

    pub(super) unsafe fn copy_to(dst: *mut u8, src: *const u8, len: usize) {
        split(
            dst,
            len,
            // SAFETY: `i < len`, so both bytes are in the ranges the caller vouched for.
            |i| unsafe { AtomicU8::from_ptr(dst.add(i)).store(src.add(i).read(), Relaxed) },
            // SAFETY: as above for the `W` bytes from `i`; `split` aligned `dst + i`.
            |i| unsafe {
                let bits = src.add(i).cast::<Bits>().read_unaligned();
                Word::from_ptr(dst.add(i).cast()).store(bits, Relaxed);
            },
        );
    }

    pub(super) unsafe fn copy_from(dst: *mut u8, src: *const u8, len: usize) {
        let shared = src.cast_mut();
        split(
            src,
            len,
            // SAFETY: `i < len`, so both bytes are in the ranges the caller vouched for.
            |i| unsafe {
                dst.add(i)
                    .write(AtomicU8::from_ptr(shared.add(i)).load(Relaxed))
            },
            // SAFETY: as above for the `W` bytes from `i`; `split` aligned `src + i`.
            |i| unsafe {
                let bits = Word::from_ptr(shared.add(i).cast()).load(Relaxed);
                dst.add(i).cast::<Bits>().write_unaligned(bits);
            },
        );
    }

    pub(super) unsafe fn fill(dst: *mut u8, byte: u8, len: usize) {
        let bits = Bits::from_ne_bytes([byte; W]);
        split(
            dst,
            len,
            // SAFETY: `i < len`, so the byte is in the range the caller vouched for.
            |i| unsafe { AtomicU8::from_ptr(dst.add(i)).store(byte, Relaxed) },
            // SAFETY: as above for the `W` bytes from `i`; `split` aligned `dst + i`.
            |i| unsafe { Word::from_ptr(dst.add(i).cast()).store(bits, Relaxed) },
        );
    }
}

// === impl x86: assembly ===

#[cfg(all(target_arch = "x86_64", not(miri)))]
mod x86 {
    use core::arch::asm;

    /// Without AVX, copies of this many bytes or more use `rep movsb`: below, 8-byte moves are
    /// faster (Zen 3, both loops timed in one process: 7 against 8 ns at 64 bytes, 10 against
    /// 8 at 96, 24 against 13 at 256).
    const REP_MOVSB_MIN: usize = 128;
    /// Without AVX, fills of this many bytes or more use `rep stosb`: below, 8-byte stores are
    /// faster (as above: 13 against 24 ns at 256 bytes, 23 against 26 at 512, 32 against 28
    /// at 768).
    const REP_STOSB_MIN: usize = 768;

    #[inline(always)]
    pub(super) unsafe fn copy_to(dst: *mut u8, src: *const u8, len: usize) {
        // SAFETY: the caller's contract; `avx()` says whether AVX may be used.
        unsafe { copy(dst, src, len, avx()) }
    }
    pub(super) use self::copy_to as copy_from;

    #[inline(always)]
    pub(super) unsafe fn fill(dst: *mut u8, byte: u8, len: usize) {
        // SAFETY: the caller's contract; `avx()` says whether AVX may be used.
        unsafe { fill_with(dst, byte, len, avx()) }
    }

    /// Copies `len` bytes by AVX if `avx` (one call, whatever the length: most copies are
    /// of a few hundred bytes, where a second call and its checks cost as much as the
    /// copy), else by `rep movsb` and 8-byte and 1-byte moves.
    ///
    /// # Safety
    ///
    /// As [`copy_to_shared`](super::copy_to_shared), whichever side is shared; `avx` only if
    /// [`avx()`] is.
    #[inline(always)]
    #[cfg_attr(not(target_feature = "sse2"), allow(unused_variables))]
    pub(super) unsafe fn copy(dst: *mut u8, src: *const u8, len: usize, avx: bool) {
        #[cfg(target_feature = "sse2")]
        if avx {
            // SAFETY: the caller's contract; the caller checked AVX.
            return unsafe { avx::copy(dst, src, len) };
        }
        // SAFETY: the caller's contract.
        unsafe { copy_without_avx(dst, src, len) }
    }

    /// Copies `len` bytes by `rep movsb`, then what is left by 8-byte and 1-byte moves.
    ///
    /// # Safety
    ///
    /// As [`copy_to_shared`](super::copy_to_shared), whichever side is shared.
    #[inline(never)]
    unsafe fn copy_without_avx(dst: *mut u8, src: *const u8, len: usize) {
        // `rep movsb` is slow when the destination is 1 to 31 bytes above the source, mod 4 KiB.
        let slow_rep = (1..32).contains(&((dst as usize).wrapping_sub(src as usize) % 4096));
        let done = if len >= REP_MOVSB_MIN && !slow_rep {
            // SAFETY: the caller's ranges; the direction flag is clear on entry to `asm!`.
            unsafe {
                asm!("rep movsb", inout("rcx") len => _, inout("rdi") dst => _,
                    inout("rsi") src => _, options(nostack, preserves_flags));
            }
            len
        } else {
            0
        };
        // SAFETY: the `len - done` bytes after the `done` copied, in bounds by the contract.
        unsafe {
            asm!(
                "cmp {n}, 8", "jb 3f",
                "2:", "mov {t}, [{s}]", "mov [{d}], {t}",
                "add {s}, 8", "add {d}, 8", "sub {n}, 8", "cmp {n}, 8", "jae 2b",
                "3:", "test {n}, {n}", "jz 5f",
                "4:", "mov {t:l}, [{s}]", "mov [{d}], {t:l}",
                "inc {s}", "inc {d}", "dec {n}", "jnz 4b",
                "5:",
                d = inout(reg) dst.add(done) => _, s = inout(reg) src.add(done) => _,
                n = inout(reg) len - done => _, t = out(reg) _, options(nostack),
            )
        };
    }

    /// Sets `len` bytes to `byte`, as [`copy`] copies (with `rep stosb` without AVX).
    ///
    /// # Safety
    ///
    /// As [`fill_shared`](super::fill_shared); `avx` as for [`copy`].
    #[inline(always)]
    #[cfg_attr(not(target_feature = "sse2"), allow(unused_variables))]
    pub(super) unsafe fn fill_with(dst: *mut u8, byte: u8, len: usize, avx: bool) {
        #[cfg(target_feature = "sse2")]
        if avx {
            // SAFETY: the caller's contract; the caller checked AVX.
            return unsafe { avx::fill(dst, byte, len) };
        }
        // SAFETY: the caller's contract.
        unsafe { fill_without_avx(dst, byte, len) }
    }

    /// Sets `len` bytes to `byte` by `rep stosb`, then 8-byte and 1-byte stores.
    ///
    /// # Safety
    ///
    /// As [`fill_shared`](super::fill_shared).
    #[inline(never)]
    unsafe fn fill_without_avx(dst: *mut u8, byte: u8, len: usize) {
        let done = if len >= REP_STOSB_MIN {
            // SAFETY: the caller's range; the direction flag is clear on entry to `asm!`.
            unsafe {
                asm!("rep stosb", inout("rcx") len => _, inout("rdi") dst => _,
                    in("al") byte, options(nostack, preserves_flags));
            }
            len
        } else {
            0
        };
        // SAFETY: the `len - done` bytes after the `done` set, in bounds by the contract.
        unsafe {
            asm!(
                "cmp {n}, 8", "jb 3f",
                "2:", "mov [{d}], {w}", "add {d}, 8", "sub {n}, 8", "cmp {n}, 8", "jae 2b",
                "3:", "test {n}, {n}", "jz 5f",
                "4:", "mov [{d}], {w:l}", "inc {d}", "dec {n}", "jnz 4b",
                "5:",
                d = inout(reg) dst.add(done) => _, n = inout(reg) len - done => _,
                w = in(reg) u64::from_ne_bytes([byte; 8]), options(nostack),
            )
        };
    }

    /// Whether AVX may be used: never in builds without SSE (kernels, which do not save
    /// vector registers for themselves); otherwise asked of the CPU once.
    #[inline(always)]
    fn avx() -> bool {
        #[cfg(target_feature = "sse2")]
        return avx::detected();
        #[cfg(not(target_feature = "sse2"))]
        return false;
    }

    #[cfg(target_feature = "sse2")]
    mod avx {
        use crate::sync::shared_atomics::{AtomicU8, Ordering::Relaxed};
        use core::arch::asm;

        /// Whether the CPU has AVX and the OS saves YMM registers, asked once.
        #[inline(always)]
        pub(super) fn detected() -> bool {
            static KNOWN: AtomicU8 = AtomicU8::new(0); // 0: not asked yet, 1: no, 2: yes.
            match KNOWN.load(Relaxed) {
                0 => {
                    let avx = ask();
                    KNOWN.store(1 + u8::from(avx), Relaxed);
                    avx
                }
                known => known == 2,
            }
        }

        /// `cpuid` leaf 1 has OSXSAVE and AVX, and `xgetbv` shows SSE and AVX state enabled.
        #[cold]
        fn ask() -> bool {
            const OSXSAVE_AVX: u32 = 3 << 27;
            #[allow(unused_unsafe)] // `__cpuid` is safe in recent Rust, unsafe in older.
            // SAFETY: every x86_64 CPU has `cpuid`.
            let ecx = unsafe { core::arch::x86_64::__cpuid(1) }.ecx;
            if ecx & OSXSAVE_AVX != OSXSAVE_AVX {
                return false;
            }
            let xcr0: u32;
            // SAFETY: OSXSAVE is set, so `xgetbv` exists; with ECX = 0 it only reads XCR0.
            unsafe {
                asm!("xgetbv", in("ecx") 0, out("eax") xcr0, out("edx") _,
                    options(nomem, nostack, preserves_flags))
            };
            xcr0 & 0b110 == 0b110
        }

        /// Copies `len` bytes: 32-byte blocks (four at a time while 128 bytes remain), then
        /// one move each of 16, 8, 4, 2 and 1 bytes as the rest needs, so that every byte is
        /// read and written once.
        #[target_feature(enable = "avx")]
        pub(super) unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
            // SAFETY: reads `src..src + len` and writes `dst..dst + len` once each, ranges
            // the caller vouched for; the CPU has AVX (caller); `vzeroupper` on the way out.
            unsafe {
                asm!(
                    "cmp {i}, {big}", "jae 3f",
                    "2:",
                    "vmovdqu {a}, [{s} + {i}]", "vmovdqu {b}, [{s} + {i} + 32]",
                    "vmovdqu {c}, [{s} + {i} + 64]", "vmovdqu {e}, [{s} + {i} + 96]",
                    "vmovdqu [{d} + {i}], {a}", "vmovdqu [{d} + {i} + 32], {b}",
                    "vmovdqu [{d} + {i} + 64], {c}", "vmovdqu [{d} + {i} + 96], {e}",
                    "add {i}, 128", "cmp {i}, {big}", "jb 2b",
                    "3:", "cmp {i}, {n32}", "jae 5f",
                    "4:", "vmovdqu {a}, [{s} + {i}]", "vmovdqu [{d} + {i}], {a}",
                    "add {i}, 32", "cmp {i}, {n32}", "jb 4b",
                    "5:", "cmp {i}, {n}", "je 9f",
                    "test {n:l}, 16", "jz 6f",
                    "vmovdqu {a:x}, [{s} + {i}]", "vmovdqu [{d} + {i}], {a:x}", "add {i}, 16",
                    "6:", "test {n:l}, 8", "jz 7f",
                    "mov {t}, [{s} + {i}]", "mov [{d} + {i}], {t}", "add {i}, 8",
                    "7:", "test {n:l}, 4", "jz 8f",
                    "mov {t:e}, [{s} + {i}]", "mov [{d} + {i}], {t:e}", "add {i}, 4",
                    "8:", "test {n:l}, 2", "jz 22f",
                    "mov {t:x}, [{s} + {i}]", "mov [{d} + {i}], {t:x}", "add {i}, 2",
                    "22:", "test {n:l}, 1", "jz 9f",
                    "mov {t:l}, [{s} + {i}]", "mov [{d} + {i}], {t:l}",
                    "9:", "vzeroupper",
                    d = in(reg) dst, s = in(reg) src, n = in(reg) len, n32 = in(reg) len & !31,
                    big = in(reg) len & !127, i = inout(reg) 0usize => _, t = out(reg) _,
                    a = out(ymm_reg) _, b = out(ymm_reg) _, c = out(ymm_reg) _,
                    e = out(ymm_reg) _, options(nostack),
                )
            };
        }

        /// Sets `len` bytes to `byte`, as [`copy`] copies.
        #[target_feature(enable = "avx")]
        pub(super) unsafe fn fill(dst: *mut u8, byte: u8, len: usize) {
            // SAFETY: writes `dst..dst + len` once, a range the caller vouched for; the CPU
            // has AVX (caller); `vzeroupper` on the way out.
            unsafe {
                asm!(
                    "vmovd {a:x}, {w:e}", "vpshufd {a:x}, {a:x}, 0",
                    "vinsertf128 {a}, {a}, {a:x}, 1",
                    "cmp {i}, {big}", "jae 3f",
                    "2:",
                    "vmovdqu [{d} + {i}], {a}", "vmovdqu [{d} + {i} + 32], {a}",
                    "vmovdqu [{d} + {i} + 64], {a}", "vmovdqu [{d} + {i} + 96], {a}",
                    "add {i}, 128", "cmp {i}, {big}", "jb 2b",
                    "3:", "cmp {i}, {n32}", "jae 5f",
                    "4:", "vmovdqu [{d} + {i}], {a}", "add {i}, 32", "cmp {i}, {n32}", "jb 4b",
                    "5:", "cmp {i}, {n}", "je 9f",
                    "test {n:l}, 16", "jz 6f", "vmovdqu [{d} + {i}], {a:x}", "add {i}, 16",
                    "6:", "test {n:l}, 8", "jz 7f", "mov [{d} + {i}], {q}", "add {i}, 8",
                    "7:", "test {n:l}, 4", "jz 8f", "mov [{d} + {i}], {q:e}", "add {i}, 4",
                    "8:", "test {n:l}, 2", "jz 22f", "mov [{d} + {i}], {q:x}", "add {i}, 2",
                    "22:", "test {n:l}, 1", "jz 9f", "mov [{d} + {i}], {q:l}",
                    "9:", "vzeroupper",
                    d = in(reg) dst, n = in(reg) len, n32 = in(reg) len & !31,
                    big = in(reg) len & !127, w = in(reg) u32::from_ne_bytes([byte; 4]),
                    q = in(reg) u64::from_ne_bytes([byte; 8]), i = inout(reg) 0usize => _,
                    a = out(ymm_reg) _, options(nostack),
                )
            };
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::shared_atomics::{AtomicU8, Ordering::Relaxed};
    use alloc::{format, vec, vec::Vec};

    type Copy = unsafe fn(*mut u8, *const u8, usize);
    type Fill = unsafe fn(*mut u8, u8, usize);

    /// Every path this build has, by name: copy in, copy out, fill (the public one is AVX's
    /// where the CPU has it).
    fn paths() -> Vec<(&'static str, Copy, Copy, Fill)> {
        #[allow(unused_mut)] // Only x86_64 has more than one.
        let mut paths: Vec<(&str, Copy, Copy, Fill)> =
            vec![("public", copy_to_shared, copy_from_shared, fill_shared)];
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            paths.push(("words", words::copy_to, words::copy_from, words::fill));
            // SAFETY: the test's ranges; `false` never needs AVX.
            let rep: Copy = |d, s, n| unsafe { x86::copy(d, s, n, false) };
            // SAFETY: as above.
            let rep_fill: Fill = |d, b, n| unsafe { x86::fill_with(d, b, n, false) };
            paths.push(("x86 without AVX", rep, rep, rep_fill));
        }
        paths
    }

    #[test]
    fn exact_bytes_and_nothing_outside() {
        // More than an AVX step of 128 bytes could overrun; Miri runs the byte path, slowly.
        const GUARD: usize = if cfg!(miri) { 8 } else { 160 };
        let (lens, offsets): (Vec<usize>, usize) = if cfg!(miri) {
            ((0..=20).collect(), 4)
        } else {
            let big = [511, 4096, 4099, 65536, 65536 + 127, 70 * 1024 - 1];
            ((0..=300).chain(big).collect(), 16)
        };
        for (name, copy_to, copy_from, fill) in paths() {
            for &len in &lens {
                let mut src: Vec<u8> = (0..len + 2 * GUARD).map(|i| (i % 251) as u8).collect();
                let mut dst = vec![0xff_u8; len + 2 * GUARD];
                for i in 0..offsets * offsets {
                    let (s, d) = (GUARD + i / offsets, GUARD + i % offsets);
                    let ops = [("copy_to", copy_to), ("copy_from", copy_from)];
                    for (op, copy) in ops {
                        // SAFETY: two distinct buffers, `len` bytes each from the offsets.
                        unsafe { copy(dst.as_mut_ptr().add(d), src.as_mut_ptr().add(s), len) };
                        let at = || format!("{name} {op}: len {len}, src +{s}, dst +{d}");
                        assert!(dst[d..d + len] == src[s..s + len], "{}", at());
                        assert!(only_in(&mut dst, d, len), "{}", at());
                    }
                    if s == GUARD {
                        // SAFETY: as above.
                        unsafe { fill(dst.as_mut_ptr().add(d), 0xa5, len) };
                        let at = || format!("{name} fill: len {len}, dst +{d}");
                        assert!(dst[d..d + len].iter().all(|&b| b == 0xa5), "{}", at());
                        assert!(only_in(&mut dst, d, len), "{}", at());
                    }
                }
            }
        }
    }

    /// Whether every byte outside `dst[at..at + len]` is still 0xff; makes them all 0xff.
    fn only_in(dst: &mut [u8], at: usize, len: usize) -> bool {
        let untouched = dst[..at].iter().chain(&dst[at + len..]).all(|&b| b == 0xff);
        dst[at..at + len].fill(0xff);
        untouched
    }

    /// A device thread keeps storing bytes (relaxed `AtomicU8`) into the shared buffer while
    /// this thread copies in, copies out and fills at shifting offsets: no data race (Miri),
    /// and every byte read back is one somebody wrote. Not run on the word path: there a word
    /// racing a byte store is an access of another size (see the module docs).
    #[test]
    fn device_writing_meanwhile_is_no_data_race() {
        const LEN: usize = 48;
        let (rounds, iterations) = if cfg!(miri) {
            (40, 40)
        } else {
            (20_000, 20_000)
        };
        let shared: Vec<AtomicU8> = (0..LEN).map(|_| AtomicU8::new(0)).collect();
        // Writable: the bytes are `UnsafeCell`s, and only ever accessed atomically.
        let base = shared.as_ptr().cast::<u8>().cast_mut();
        let mine: Vec<u8> = (1..=LEN as u8).collect();
        let written = |b: u8| b == 0 || b == 0x77 || mine.contains(&b) || b & 0xf0 == 0xd0;
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for round in 0..rounds {
                    shared
                        .iter()
                        .for_each(|b| b.store(0xd0 | (round % 16) as u8, Relaxed));
                }
            });
            let mut back = vec![0_u8; LEN];
            for i in 0..iterations {
                let (at, len) = (i % 8, LEN - 8 - i % 3);
                // SAFETY: `at + len <= LEN` bytes of the shared buffer, private `mine` and
                // `back` of `LEN` bytes; the device accesses the shared bytes atomically.
                unsafe {
                    copy_to_shared(base.add(at), mine.as_ptr(), len);
                    copy_from_shared(back.as_mut_ptr(), base.add(at), len);
                    assert!(back[..len].iter().all(|&b| written(b)), "{back:?}");
                    fill_shared(base.add(at), 0x77, len);
                }
            }
        });
    }
}
