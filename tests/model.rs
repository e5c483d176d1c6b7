//! Property tests: random operation sequences, on random pool shapes, against the shadow
//! model in `swiotlb::testing`. After every step the harness checks that no two live runs
//! overlap, that every constraint holds on every address handed out, that a refused map
//! had no room by brute force, that every error is the exact one the contract predicts,
//! that statistics match, and that every byte of every original and bounce buffer is what
//! the direction rules say.

use arbitrary::{Arbitrary, Unstructured};
use proptest::prelude::*;
use swiotlb::testing::{HarnessConfig, Op, Scenario};

/// Builds a scenario from raw bytes, the way the fuzz targets do.
fn scenario(config: HarnessConfig, bytes: &[u8]) -> Scenario {
    let mut u = Unstructured::new(bytes);
    let ops = core::iter::from_fn(|| Op::arbitrary(&mut u).ok())
        .take(200)
        .collect();
    Scenario { config, ops }
}

fn config_strategy() -> impl Strategy<Value = HarnessConfig> {
    (
        6u8..=12,
        0u8..=7,
        0u8..=3,
        1u16..=600,
        any::<u64>(),
        any::<u16>(),
        any::<bool>(),
    )
        .prop_map(
            |(slot_shift, segment_shift, areas_shift, slots, dma_base, cpu_offset, scrub)| {
                HarnessConfig {
                    slot_shift,
                    segment_shift,
                    areas_shift,
                    slots,
                    dma_base,
                    cpu_offset,
                    scrub,
                }
                .normalized()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Any pool shape, any operations.
    #[test]
    fn random_operations_match_the_model(
        config in config_strategy(),
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        scenario(config, &bytes).run();
    }

    /// Linux's default geometry (2 KiB slots, 128-slot segments), small enough to fill.
    #[test]
    fn default_geometry_near_full_matches_the_model(
        areas_shift in 0u8..=2,
        dma_base in any::<u64>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..8192),
    ) {
        let config = HarnessConfig {
            slot_shift: 11,
            segment_shift: 7,
            areas_shift,
            slots: 256,
            dma_base,
            cpu_offset: 0,
            scrub: false,
        }
        .normalized();
        scenario(config, &bytes).run();
    }
}

/// The generator reaches every outcome: successful and refused maps of every kind,
/// unmaps, syncs, allocations, frees, refused lookups, device writes, and pools filled up.
/// (Without this, the properties above could pass by never mapping anything.)
#[test]
fn generated_scenarios_reach_every_outcome() {
    let mut rng = proptest::test_runner::TestRng::deterministic_rng(
        proptest::test_runner::RngAlgorithm::ChaCha,
    );
    let mut total = swiotlb::testing::Tally::default();
    for i in 0..300u64 {
        let mut bytes = vec![0u8; 4096];
        rng.fill_bytes(&mut bytes);
        let config = HarnessConfig {
            slot_shift: 11,
            segment_shift: 7,
            areas_shift: (i % 3) as u8,
            slots: 64 + (i % 200) as u16,
            dma_base: rng.next_u64(),
            cpu_offset: 0,
            scrub: i % 2 == 0,
        };
        total += scenario(config, &bytes).run();
    }
    println!("{total:#?}");
    assert!(total.mapped > 1000, "{total:?}");
    assert!(total.full > 10, "{total:?}");
    assert!(total.no_placement > 10, "{total:?}");
    assert!(total.refused > 100, "{total:?}");
    assert!(total.unmapped > 500, "{total:?}");
    assert!(total.synced > 100, "{total:?}");
    assert!(total.allocated > 100, "{total:?}");
    assert!(total.freed > 50, "{total:?}");
    assert!(total.lookups_refused > 500, "{total:?}");
    assert!(total.device_writes > 100, "{total:?}");
    assert!(total.most_live > 10, "{total:?}");
}
