//! Replays the committed seed corpus (`corpus/<target>/seed-*`) and any saved crash inputs
//! (`regressions/<target>/*`) through the targets' logic, without libFuzzer, and checks
//! that the seeds reach the paths that matter: maps that succeed and that find the pool
//! full, syncs, allocations, refused calls, hostile writes, pools built and refused.
//!
//! `cargo test --release` in `fuzz/` (the fuzz script runs it first).

use std::fs;
use std::path::{Path, PathBuf};
use swiotlb::testing::{ElasticTally, Tally};

fn inputs(dir: &str, target: &str, prefix: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let data = fs::read(&p).expect("corpus file");
            (p, data)
        })
        .collect()
}

fn replay(target: &str, run: impl Fn(&[u8]) -> Option<Tally>) -> Tally {
    let seeds = inputs("corpus", target, "seed-");
    assert!(
        seeds.len() >= 3,
        "{target}: too few seeds ({})",
        seeds.len()
    );
    let mut total = Tally::default();
    for (path, data) in seeds.iter().chain(&inputs("regressions", target, "")) {
        eprintln!("{target}: {}", path.display());
        if let Some(t) = run(data) {
            total += t;
        }
    }
    eprintln!("{target}: {total:?}");
    total
}

#[test]
fn ops_seeds_reach_every_operation() {
    let t = replay("ops", swiotlb_fuzz::ops);
    assert!(
        t.mapped > 0 && t.full > 0 && t.unmapped > 0 && t.synced > 0,
        "{t:?}"
    );
    assert!(t.allocated > 0 && t.freed > 0, "{t:?}");
    assert!(
        t.refused > 0 && t.lookups_refused > 0 && t.no_placement > 0,
        "{t:?}"
    );
}

#[test]
fn hostile_device_seeds_scribble_and_still_map() {
    let t = replay("hostile_device", swiotlb_fuzz::hostile_device);
    assert!(
        t.device_writes > 0 && t.mapped > 0 && t.allocated > 0,
        "{t:?}"
    );
    assert!(
        t.unmapped > 0 && t.synced > 0 && t.lookups_refused > 0,
        "{t:?}"
    );
}

#[test]
fn config_seeds_build_and_refuse() {
    let seeds = inputs("corpus", "config", "seed-");
    assert!(seeds.len() >= 3, "config: too few seeds");
    let (mut built, mut refused) = (0, 0);
    for (path, data) in seeds.iter().chain(&inputs("regressions", "config", "")) {
        match swiotlb_fuzz::config(data) {
            Some(swiotlb_fuzz::Built::Pool { slots }) => {
                eprintln!("config: {}: built, {slots} slots", path.display());
                built += 1;
            }
            Some(swiotlb_fuzz::Built::Refused) => refused += 1,
            None => {}
        }
    }
    assert!(built > 0 && refused > 0, "built {built}, refused {refused}");
}

#[test]
fn elastic_seeds_grow_refuse_shrink_and_leak() {
    let seeds = inputs("corpus", "elastic", "seed-");
    assert!(seeds.len() >= 3, "elastic: too few seeds ({})", seeds.len());
    let mut t = ElasticTally::default();
    for (path, data) in seeds.iter().chain(&inputs("regressions", "elastic", "")) {
        eprintln!("elastic: {}", path.display());
        if let Some(tally) = swiotlb_fuzz::elastic(data) {
            t += tally;
        }
    }
    eprintln!("elastic: {t:?}");
    assert!(t.mapped > 0 && t.unmapped > 0 && t.allocated > 0, "{t:?}");
    assert!(t.growths > 0 && t.shrinks > 0 && t.full > 0, "{t:?}");
    assert!(t.refused_shares > 0 && t.leaks > 0, "{t:?}");
}
