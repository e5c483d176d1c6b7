//! Design notes: how the pool works and why. (Documentation only; no code.)
//!
//! # Layout
//!
//! The region is cut into slots of `slot_size` bytes, slot-aligned in *device* address
//! space (a partial slot at either end is left out). Segments are windows of
//! `segment_slots` slots, also aligned in device space, so that an allocation aligned to a
//! segment (a 256 KiB coherent ring, say) fits one even when the region itself is not that
//! aligned. No run of slots crosses a segment, which bounds a mapping to one segment.
//!
//! Areas are contiguous ranges of whole segments (the first and last may be partial), a
//! power of two of them, never more than there are segments. A tiny pool has one area of a
//! few slots and works the same (Linux CVE-2023-52790 was a 4-slot pool handing out slots past
//! its end: here the bitmap's bits past the area's end are set and never free).
//!
//! # Metadata, and why none of it is in the pool
//!
//! The device may write any pool byte at any time, so nothing the allocator trusts is kept
//! there. Per slot, outside the pool: a 16-bit tag (free / padding / head with direction and
//! in-slot offset / body with the distance back to its head), on heads a 32-bit length and
//! a pointer to the original, and a byte for the slot's dirty prefix (below): 15 bytes on
//! 64-bit, plus one bitmap bit and one byte per segment for the segment-to-area table. A
//! 64 MiB pool of 2 KiB slots (32768 slots) costs 484 KiB; Linux's `io_tlb_slot` is 24
//! bytes (768 KiB). The original is kept as a pointer, not an address, so that a copy back
//! uses the provenance the caller lent at map (and Miri sees a misuse).
//!
//! Front padding is not counted anywhere: padding slots are tagged, and unmap walks back over
//! them from the head. The slot before a mapping's padding is never padding (it is another
//! run's head or body, or free), so the walk stops at the right place.
//!
//! # Locking
//!
//! Each area has one lock over its bitmap: a `lock_api` mutex over the raw lock the pool is
//! generic over (parking_lot's with `std`, a backoff spin lock without, or the user's own,
//! for instance one that masks interrupts); the counters beside it are atomics written
//! under the lock and read anywhere.
//! The per-slot tags are atomics written under the area lock while a run is being reserved
//! or released, and read without a lock by sync and by the first, validating step of unmap:
//! a mapping's tags do not change while it is live, and whoever has its address got it after
//! `map` returned.
//!
//! A map goes to the caller's area first (the configured hint: the thread's number with
//! `std`, or a CPU number), then to the others in turn. The first pass only *tries* each
//! lock, so a thread whose area is busy takes the next free one instead of queueing; areas
//! found busy are then waited for in a second pass before the map fails. An uncontended map
//! and unmap therefore take exactly one lock each, the caller's own area's.
//!
//! Copies (into the pool on map and `sync_for_device`, out of it on unmap and
//! `sync_for_cpu`) run outside every lock: the reservation makes the run the caller's, and
//! the lock only covers the bitmap. Unmap checks the mapping without the lock, copies back,
//! then takes the lock, checks again that the same mapping is still recorded (a racing
//! double unmap loses here and changes nothing), clears its tags, and frees. Whatever
//! else a release does to the pool's bytes (scrubbing) happens only after that check, with
//! the tags cleared and the bitmap bits still set, so it can never touch a run someone else
//! has been given since; the first version scrubbed before checking, and the loser of a
//! racing release zeroed a new owner's data (loom model
//! `racing_double_unmap_with_scrub_zeroes_no_new_owner`).
//!
//! Coherent allocations are owned by a `Coherent` handle that `free` consumes: with a safe
//! `free(dma, size)`, a stale call after the slots had gone to a new allocation of the same
//! size freed that one, a data race from safe code.
//!
//! # Search
//!
//! First fit from the bottom of the area over a two-level bitmap (a bit a slot, a summary
//! bit a 64-slot word), in device slot numbers: find the next free slot, round it up to the
//! required alignment phase, jump to the next window if the run would cross a segment or
//! the device's boundary, jump past the last used slot if the run is not all free. Each step
//! moves forward, so a search is one pass at most, whatever the constraints.
//!
//! Coherent allocations (rings, descriptor tables) search the other way, last fit from the
//! top of the area, with the mirror of the same steps. They live for as long as a device
//! does; placed first fit they land wherever the first hole is, often in the middle of the
//! area while a large streaming mapping is live, and split the free space for good (seen
//! with two virtio-blk devices started in parallel: 150 of 160 slots free and no run of 63).
//! Gathered at the top, they leave the bottom to the short-lived streaming mappings.
//!
//! Linux searches next-fit with per-slot counters of the free run that follows, which it must
//! rewrite backwards through the segment on every allocation and free (up to 127 stores).
//! Here a map of one slot is a `trailing_zeros` and a bit set, a free a bit clear. First fit
//! also keeps reusing the lowest slots, so the copy lands in cache-warm memory, and the cost
//! does not depend on the pool's size.
//!
//! # Runs given back
//!
//! An unmap does not clear its run's bits at once: the run waits in its area's cache
//! (`src/cache.rs`: 15 size classes of power-of-two slot counts, the last 4 runs of each,
//! about half a KiB an area, outside the pool and under the area lock), and the next
//! request of its class that it can hold takes it again, giving back to the bitmap what it
//! does not need. That run is the memory most recently touched (an unmap that copied back
//! has just read it), so the next copy finds it in the cache; the dirty prefixes of a run
//! that held data of about the same size leave little to zero around the new data; and a
//! steady stream of same-sized mappings (a ring of receive buffers) skips the search and
//! both bitmap updates. Measured with callgrind (`bin/callgrind.sh`), a 64-byte pair in a
//! pool kept 90% full went from 588 to 564 instructions and in a 1 GiB pool from 596 to
//! 565, the figures of an empty pool.
//!
//! A held run is free: its slots are not counted as used and its tags are clear, so
//! nothing a caller can observe says it is held. Only the search cannot see it; when a
//! search of the bitmap fails, the area gives every held run back and searches again, so a
//! request fails only when the area has no room at all. Coherent allocations go straight
//! back (they are long-lived, and gather at the top).
//!
//! # The common path
//!
//! Most maps ask for nothing but the defaults (no mask, no address limit inside the pool).
//! `map_attrs` tries them first, from figures the pool computes once (the mask of a slot, a
//! segment's bytes, a page's slots, the ends of the region), in the caller's own area only,
//! and hands anything else (constraints, a busy or full area, an error) to the general
//! path, which starts over. The fast path is inlined into callers (`#[inline(always)]` on
//! `map`, `map_attrs`, `unmap`, `unmap_into`; the general paths are out of line): the call
//! boundary alone, with its spills and the `Result` returned through memory, was about a
//! fifth of the pair's instructions. Unmap finds its mapping with one comparison of the tag
//! (which holds the use, the direction and the data's offset in its slot, so the address
//! being the data's start is part of the same test) and one of the length, and asks the
//! long way only to tell what is wrong. A run's tags and dirty prefixes are reached through
//! one bounds check for the whole run; a run whose data starts at its first byte prepares
//! only its last slot's dirty tail. The copies of [`shared`](crate::shared) take one call
//! whatever the length (AVX blocks, then one move each of 16, 8, 4, 2 and 1 bytes).
//!
//! Together these took the 64-byte skip-sync pair from 769 to about 405 instructions
//! (callgrind, LTO build), 4 KiB ToDevice from 1291 to about 805, 64 KiB from 10112 to
//! 6386. What is left is spread thin: the four locked instructions of two lock and unlock
//! pairs, the hint, the checks every call owes its caller, the cache, the dirty prefix, the
//! copy.
//!
//! # Constraints, as Linux applies them
//!
//! - kept offset: `orig & min_align_mask & (alloc_align_mask | (slot_size - 1))`; whole
//!   slots of it are front padding, the rest the offset inside the first data slot;
//! - the first slot is aligned to `alloc_align_mask + 1`, or to a page for a mapping of a page
//!   or more when both masks are zero; bits of `min_align_mask` above that alignment are
//!   matched by choosing the slot (its device address has the original's bits there);
//! - no run crosses a multiple of `seg_boundary_mask + 1` or a segment;
//! - the last byte of the data is at or below `dma_limit`: slots above it are never chosen,
//!   so a limit inside the pool still leaves the reachable part usable.
//!
//! Unlike Linux, the allocation is not rounded up to `alloc_align_mask + 1` bytes (Linux
//! does so for IOMMU granules, which this pool does not serve), and a sync that runs past a
//! mapping's end is refused rather than truncated.
//!
//! # Statistics
//!
//! Each area counts its used slots, high-water mark and failed searches, under its lock. The
//! pool's high-water mark is the sum of all areas' use sampled whenever an area reaches a new
//! high of its own: exact with one area, and never below any area's mark. A pool-wide
//! counter updated on every map would be a cache line bounced between every CPU on every
//! map; this costs nothing once each area has reached its high.
//!
//! # The copy and the device
//!
//! Copies go through [`shared`](crate::shared): operations defined while the device writes
//! the same bytes (assembly on x86_64, which is opaque to the compiler and tears no byte;
//! byte-wise atomics under Miri; word atomics elsewhere), each pool byte read once, no
//! reference to pool memory ever formed, and nothing read from the pool steering the
//! allocator. A device that scribbles on the pool can corrupt only data of mappings it was
//! given. `copy_nonoverlapping` would be a data race by Rust's rules (Miri reports one with
//! a device thread), and glibc's small copies read some bytes twice.
//!
//! # What a run shows the device
//!
//! A new mapping's slots hold its data and zeros, never an earlier mapping's bytes (front
//! padding, the head of the first slot before the data, the tail of the last). Zeroing the
//! rest of every run would cost up to a slot's `memset` per small mapping, so each slot keeps
//! a dirty prefix: how many of its bytes from the start may hold data, in 128ths of a slot.
//! A map zeroes only what is dirty and not about to be overwritten, then records its own
//! extent; a slot reused by mappings of the same size zeroes nothing. Only the slot's owner
//! touches its prefix, and the area lock orders one owner after the next. The region is
//! cleared when the pool is built (as Linux does), so every prefix starts at zero. Coherent
//! allocations are zeroed whole (rings must read zero when handed out), and
//! [`Config::scrub_on_release`](crate::Config::scrub_on_release) zeroes whole runs when
//! they are freed.
//!
//! A `FromDevice` mapping's bounce buffer is either a copy of the original (Linux's rule,
//! so a whole copy back never returns stale bytes) or zeros ([`Fill`](crate::Fill)), which
//! shows the device nothing of the guest; `SEMANTICS.md` has the trade-off.
//!
//! # Elastic pools
//!
//! Two rooms. [`Pool`](crate::Pool) is one contiguous region and everything above is
//! about its slots. [`ElasticPool`](crate::ElasticPool) (`src/elastic/`) is about regions:
//! how many there are, where they come from ([`Backend`](crate::Backend)), which one a
//! call goes to, and who waits for room. It never looks inside a region; it calls the
//! region's `Pool` and adds three things a `Pool` does not need: a table, a reclamation
//! protocol for that table, and a wait list. (Linux 6.6 draws the same line between
//! `io_tlb_pool` and `io_tlb_mem`.) The region allocator got four read-only helpers for
//! it (`src/pool/probe.rs`) and nothing else.
//!
//! ## Finding a region
//!
//! The regions are listed in an immutable table: by device address (unmap, sync, lookup
//! and free do a binary search: O(log n)), by CPU address (a buffer to map must not be pool
//! memory, in any region), and the open ones in creation order (maps try the oldest first,
//! so the newest drain and can be given back). Growth and shrink never edit a table; they
//! build a new one and publish it with one pointer store. The first region is never given
//! back, so it lives inside the `ElasticPool` itself and is reached without the table: a
//! map goes straight to it while the pool has not grown (a fixed pool's map is a plain
//! call), an unmap whose address is in it pays a range check. Only calls that reach
//! another region pin and read the table.
//!
//! Maps of a grown pool skip full regions cheaply: each region has a hint, the smallest
//! map without constraints found `Full` there since its last release (only such maps set
//! or read it: without masks a bigger map never fits where a smaller one did not), and
//! each table a cursor, the first region not known to be completely full. A release
//! clears its region's hint (one load when there is none to clear) and moves the cursor
//! back if it was past it. Hints only order the search: a second pass tries every region
//! the first skipped before a map is refused or the pool grows.
//!
//! ## Reclamation: why a region can be freed while others look the table up
//!
//! `src/elastic/epoch.rs` has the protocol and its proof; in short: a reader increments
//! a counter of its slot (one per area hint, each on its own cache line) for the current
//! epoch's parity, checks the epoch did not move, reads the table, and decrements when
//! done. The writer (one at a time: the growth lock) publishes the new table, moves the
//! epoch and waits until the old parity's counters are all zero; then nothing can hold the
//! old table or a region it dropped. The reader's increment and the writer's publication
//! are `SeqCst` accesses, whose single total order rules out the one interleaving that
//! would be a use-after-free; the re-check of the epoch keeps a reader that was delayed
//! between reading the epoch and incrementing from hiding under a parity nobody waits
//! for; two parities keep a stream of readers from starving the writer.
//!
//! crossbeam-epoch was the alternative. It needs a participant registered per thread
//! (thread-locals with `std`, by hand without), it frees garbage whenever a later pin gets
//! round to it while a shrink must know when it may unshare, and it runs under loom only
//! with its own configuration. The writer here can afford to wait (growth and shrink call
//! the backend, a hypercall on real platforms), so the hand-written protocol is a few lines
//! whose every step loom drives, and every free is checked by `sync::TrackCell` (a loom
//! cell that fails a model in which a read is not ordered before the free). The price is
//! two uncontended read-modify-writes on the reader's own line per call that reaches a
//! region other than the first; the `elastic` benchmark group (`benches/elastic.rs`)
//! measures what that costs.
//!
//! ## Growth
//!
//! A map or allocation that no region can take (`Full`, or `Impossible` in regions too
//! small for it) takes the growth lock, unpinned. If the table changed since it looked
//! (another thread grew or shrank meanwhile) it just tries again; otherwise it asks the
//! backend for a region of the configured size, or sized to the request when that is more
//! (Linux's transient pool), halving on refusal down to the floor, within the ceiling and
//! the sub-pool limit. It builds a `Pool` over the range (which clears it), publishes a
//! table with it, waits out the readers of the old table, frees it, and wakes the waiters.
//! No area lock is held at any point, and a map that finds room never touches the growth
//! lock: growth delays only the maps that need it. A range the backend returns that
//! breaks its contract (size, alignment, overlap) is leaked rather than unshared: the pool
//! cannot know what unsharing it would do.
//!
//! ## Shrink
//!
//! A region goes back in two steps. It is first *closed* (a table without it among the
//! regions maps try is published, and the readers of the old one are waited out, so every
//! map that could have chosen it has finished and its slots are counted); then, if it is
//! still empty, nothing can be mapped there any more, so a table without it is published,
//! the readers are waited out again, and only then its metadata is freed and its memory
//! unshared. A region that is not empty after the first step is opened again. An unmap
//! racing the shrink holds a pin over its copy back, so the memory it reads is unshared
//! only after it; a lookup of a stale address sees the region or nothing. Idleness is
//! measured between shrink passes (a region is given back when two passes the idle time
//! apart found it empty with no map in between), because a `no_std` pool has no thread of
//! its own: the user calls [`shrink`](crate::ElasticPool::shrink) from a timer or idle loop.
//!
//! ## Waiting, and why no wake-up is lost
//!
//! Every release reads one word, `watch` (waiters registered, throttling on, the first
//! region's hint set), with one relaxed load, and does nothing more when it is zero: the
//! unmap hot path pays no fence and no lock for waiting. A waiter registers its waker in
//! the wait list (under the list's lock, which sets the waiters bit), then takes and drops
//! every area lock of every region, then tries again. A release drops its area's lock
//! before it reads `watch`: if the waiter took that lock after, its second try sees the
//! room; if before, its registration happens before the release's read, which sees the
//! bit and wakes it. Growth and a region reopened always wake through the list's lock. The
//! pass over the area locks costs the waiter (never the releaser) and keeps the argument
//! true whatever a region's search does inside (today it locks each area anyway). The loom
//! models `waiter_racing_an_unmap_is_always_woken` and `..._growth_...` fail with a
//! deadlock when the second try or the release's look at `watch` is removed.
//!
//! The `Future` ([`map_async`](crate::ElasticPool::map_async)) is the one mechanism;
//! blocking maps poll it with a waker that sets a flag (and unparks the thread with `std`).
//! Throttling (a waiting map waits while use is at or above the high watermark of the
//! capacity, until it falls below the low one) is a delay, not a refusal: a throttled map
//! that reaches its deadline makes one ordinary try.
//!
//! ## What it costs
//!
//! Instruction counts of one map+unmap pair (callgrind, `examples/elastic_profile.rs`,
//! Bidirectional; the 64-byte pair skips the copy back; measured 2026-12-01, commands in
//! BENCHMARKS.md):
//!
//! | pool                                  | 64 B | 4 KiB |
//! |---------------------------------------|------|-------|
//! | `Pool`                                | 398  | 1180  |
//! | `ElasticPool::fixed` over it          | 407  | 1190  |
//! | elastic, one region                   | 407  | 1190  |
//! | elastic, 2 regions, pair in the 2nd   | 778  | 1558  |
//! | elastic, 16 regions, pair in the 16th | 832  | 1612  |
//!
//! A fixed pool pays one flag test on map and a range check on unmap. A grown pool's path
//! (two pins, a table search each way, the hints and cursor, the wake check) costs about
//! 370 instructions a pair; the number of regions behind it costs little (16 against 2: 54
//! instructions). The release side alone is about 90: prologue and epilogue ~20, the hint
//! ~8, the pin ~12, the table search ~25, hint and cursor ~14, unpin and wake check ~6. The
//! pins are the reclamation protocol itself; replacing their read-modify-writes by plain
//! stores (which would be unsound) saved only 5 ns of a 112 ns pair when measured.
