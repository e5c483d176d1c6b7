//! Property tests of the elastic pool: random operation sequences over a backend that
//! fails shares and unshares at random, checked by the shadow model in
//! `swiotlb::testing::ElasticScenario` (the fuzz target `elastic` runs the same).

use arbitrary::{Arbitrary, Unstructured};
use proptest::prelude::*;
use swiotlb::testing::{ElasticHarnessConfig, ElasticOp, ElasticScenario, ElasticTally};

fn scenario(config: ElasticHarnessConfig, bytes: &[u8]) -> ElasticScenario {
    let mut u = Unstructured::new(bytes);
    let ops = core::iter::from_fn(|| ElasticOp::arbitrary(&mut u).ok())
        .take(200)
        .collect();
    ElasticScenario { config, ops }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any configuration, any operations, any backend failures.
    #[test]
    fn random_operations_on_a_failing_backend_keep_every_promise(
        config in any::<[u8; 24]>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
    ) {
        let config = ElasticHarnessConfig::arbitrary(&mut Unstructured::new(&config)).unwrap();
        scenario(config, &bytes).run();
    }
}

/// The scenarios reach what matters: growth, refusals, shrinks, leaks.
#[test]
fn random_scenarios_reach_growth_refusals_shrinks_and_leaks() {
    let mut total = ElasticTally::default();
    let mut seed = 0x1234_5678_u64;
    for _ in 0..200 {
        let bytes: Vec<u8> = (0..2000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let config = ElasticHarnessConfig {
            seed,
            ..ElasticHarnessConfig::default()
        };
        total += scenario(config, &bytes).run();
    }
    eprintln!("{total:?}");
    assert!(
        total.mapped > 0 && total.unmapped > 0 && total.full > 0,
        "{total:?}"
    );
    assert!(total.growths > 0 && total.shrinks > 0, "{total:?}");
    assert!(total.refused_shares > 0 && total.leaks > 0, "{total:?}");
    assert!(total.most_regions >= 3, "{total:?}");
}
