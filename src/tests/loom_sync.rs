//! Syncs racing the unmap of a different mapping.

use super::*;
use crate::Direction::{Bidirectional, ToDevice};
use loom::sync::Arc;
use loom::thread;

/// In a 16-slot pool that scrubs released slots, area 0 (slots 0-7) holds `m` (slots 0-2,
/// its data 16 bytes into slot 0 by `min_align_mask`), `k` (slot 3) and right after it `n`
/// (slots 4-5: a slot of front padding from `min_align_mask` and `alloc_align_mask` 0x7f,
/// then its data slot). One thread makes partial syncs of `m` both ways, at offsets past its first slot,
/// while another unmaps `n` (scrubbing its two slots, padding included, found by walking
/// back from its head) and maps again in area 0. The syncs move exactly their ranges, the
/// bounce buffers of `m` and `k` are untouched by the scrub next door, and `n`'s released
/// slots are zero unless mapped again.
///
/// loom explores a single interleaving here, and that is the point: the sync path touches
/// no lock and no atomic that the unmap and map next door write (only `m`'s own slot tags),
/// so no order of the two threads can differ. What loom cannot see, the bytes, is checked
/// after the join (a scrub or copy in the wrong place leaves wrong bytes in any order) and
/// under real threads by `tests/stress.rs`.
#[test]
fn sync_racing_unmap_of_another_mapping() {
    run_model("sync_racing_unmap_of_another_mapping", || {
        let pool = Arc::new(TestPool::new(16, tiny_config().with_scrub_on_release(true)));
        in_area(0);
        let m_len = 3 * SLOT - 16;
        let m = Mapping::map_buffer(
            &pool,
            60,
            Buffer::misaligned(60, m_len, 16),
            Bidirectional,
            &Constraints::new().min_align_mask(0x3f),
        )
        .unwrap();
        assert_eq!(m.dma & 0x3f, 16);
        let k = Mapping::map(&pool, 65, SLOT, ToDevice).unwrap();
        let n = Mapping::map_buffer(
            &pool,
            61,
            Buffer::misaligned(61, 40, 0x40),
            ToDevice,
            &Constraints::new()
                .min_align_mask(0x7f)
                .alloc_align_mask(0x7f),
        )
        .unwrap();
        assert_eq!(n.dma & 0x7f, 0x40);
        let m_slots = slots_of(&pool, m.dma, m.len());
        let n_head = slots_of(&pool, n.dma, 1).start;
        let n_run = n_head - 1..n_head + 1;
        let k_slots = slots_of(&pool, k.dma, k.len());
        assert_eq!(
            (m_slots, k_slots, n_run.clone()),
            (0..3, 3..4, 4..6),
            "layout"
        );
        assert_used(&pool, 6);

        let p = pool.clone();
        let syncer = thread::spawn(move || {
            let mut expect = pattern(60, m_len);
            // The device writes bytes 70..140 of `m`; sync them for the CPU.
            device_write(&p, m.dma + 70, &pattern(62, 70));
            // SAFETY: `m` is live and owned by this thread; its buffer is alive.
            unsafe { p.sync_for_cpu(m.dma + 70, 70, Bidirectional) }.expect("sync for cpu");
            expect[70..140].copy_from_slice(&pattern(62, 70));
            assert_eq!(
                m.buf.read(),
                expect,
                "sync for cpu copies exactly its range"
            );
            // The CPU writes bytes 120..170; sync them for the device.
            let mut orig = m.buf.read();
            orig[120..170].copy_from_slice(&pattern(63, 50));
            m.buf.write(&orig);
            // SAFETY: as above.
            unsafe { p.sync_for_device(m.dma + 120, 50, Bidirectional) }.expect("sync");
            expect[120..170].copy_from_slice(&pattern(63, 50));
            assert_eq!(bounce(&p, m.dma, m_len), expect, "sync for device");
            (m, expect)
        });

        n.unmap(&pool);
        let again = Mapping::map(&pool, 64, 2 * SLOT, ToDevice).expect("map with room");
        let (m, expect) = syncer.join().unwrap();

        assert_eq!(
            bounce(&pool, m.dma, m_len),
            expect,
            "m's bounce after the race"
        );
        let live = [(m.dma, m.len()), (k.dma, k.len()), (again.dma, again.len())];
        assert_disjoint(&pool, &live);
        k.check_bounce(&pool);
        again.check_bounce(&pool);
        let reused = slots_of(&pool, again.dma, again.len());
        for slot in n_run {
            if !reused.contains(&slot) {
                let dma = pool.dma_range().start + slot * SLOT as u64;
                assert_eq!(
                    bounce(&pool, dma, SLOT),
                    [0u8; SLOT],
                    "slot {slot} scrubbed"
                );
            }
        }
        assert_used(&pool, 3 + 1 + 2);
        m.unmap(&pool);
        k.unmap(&pool);
        again.unmap(&pool);
        assert_all_free(&pool);
    });
}
