//! `swiotlb-bench report`: criterion's results as the markdown tables of BENCHMARKS.md.
//!
//! Reads every `<group>/<function>/<value>/new/{benchmark,estimates}.json` under criterion's
//! output folder, and prints one table per group: the median time of every implementation
//! for every parameter, then how many times longer each baseline takes than ours (and how
//! many times longer ours takes than the references: a plain copy, private pools). Then
//! it checks the performance targets against the figures it found.

use crate::table::{time_text, Table};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One benchmark's result.
#[derive(Clone, Debug)]
struct Bench {
    function: String,
    value: String,
    /// Median time per iteration, ns.
    median_ns: f64,
    /// Elements per iteration, if criterion was told (the thread benchmarks).
    elements: Option<f64>,
}

/// Titles of the groups, in the order printed.
const GROUPS: [(&str, &str); 7] = [
    (
        "map_unmap_copy",
        "Map+unmap latency by size, bidirectional, both copies (median)",
    ),
    (
        "map_unmap_skip_sync",
        "Map+unmap latency by size, bidirectional with skip-sync: the copy in only (median)",
    ),
    (
        "copy_vs_memcpy",
        "ToDevice map+unmap against one plain copy of the same bytes (median)",
    ),
    (
        "threads",
        "Aggregate throughput, 1-slot (64 B) ToDevice map+unmap per thread (median)",
    ),
    (
        "pool_90pct_full",
        "1-slot (64 B) map+unmap with the pool 90% full of the realistic mix (median)",
    ),
    (
        "pool_size",
        "1-slot (64 B) map+unmap by pool size, pool half full of the realistic mix (median)",
    ),
    (
        "realistic_mix",
        "Realistic size mix, 32 mappings in flight, map one + unmap the oldest (median)",
    ),
];

/// Reference columns, which ours is divided by rather than the other way round: the
/// plain copy and the private-pool ceiling.
const REFERENCES: [&str; 2] = ["memcpy", "private_pools"];

/// Columns in this order; anything else after them.
const ORDER: [&str; 8] = [
    "swiotlb",
    "memcpy",
    "private_pools",
    "pvmfw",
    "buddy",
    "linux_style",
    "linux_areas",
    "mutex_bitmap",
];

/// Where criterion writes without being told: `target/criterion` of the folder the tool
/// runs in, or of the target folder this executable was built in (`target/release/..`).
fn default_dir() -> PathBuf {
    let here = PathBuf::from("target/criterion");
    if here.is_dir() {
        return here;
    }
    let beside_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("criterion")));
    match beside_exe {
        Some(d) if d.is_dir() => d,
        _ => here,
    }
}

const RUN_FIRST: &str =
    "run `cargo bench --bench main` first (about 10 minutes), or name the folder: swiotlb-bench report DIR";

pub(crate) fn print(dir: Option<&Path>) -> Result<(), String> {
    let dir = dir.map_or_else(default_dir, Path::to_path_buf);
    if !dir.is_dir() {
        return Err(format!(
            "no criterion results: {} is not a folder; {RUN_FIRST}",
            dir.display()
        ));
    }
    let mut files = Vec::new();
    find(&dir, &mut files).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if files.is_empty() {
        return Err(format!(
            "no criterion results under {}; {RUN_FIRST}",
            dir.display()
        ));
    }
    let mut groups: BTreeMap<String, Vec<Bench>> = BTreeMap::new();
    for f in files {
        if let Some((group, bench)) = read(&f)? {
            groups.entry(group).or_default().push(bench);
        }
    }
    for (name, title) in GROUPS {
        if let Some(benches) = groups.get(name) {
            outln!("### {title}\n");
            outln!("criterion group `{name}`\n");
            table(benches);
            outln!();
        }
    }
    for name in groups.keys() {
        if !GROUPS.iter().any(|(g, _)| g == name) {
            outln!("### {name}\n");
            table(&groups[name]);
            outln!();
        }
    }
    targets(&groups);
    Ok(())
}

fn find(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "new") {
                let b = path.join("benchmark.json");
                if b.is_file() {
                    out.push(b);
                }
            } else {
                find(&path, out)?;
            }
        }
    }
    Ok(())
}

fn read(benchmark: &Path) -> Result<Option<(String, Bench)>, String> {
    let load = |p: &Path| -> Result<Value, String> {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
    };
    let b = load(benchmark)?;
    let e = load(&benchmark.with_file_name("estimates.json"))?;
    let (Some(group), Some(function), Some(median)) = (
        b["group_id"].as_str(),
        b["function_id"].as_str(),
        e["median"]["point_estimate"].as_f64(),
    ) else {
        return Ok(None);
    };
    Ok(Some((
        group.to_string(),
        Bench {
            function: function.to_string(),
            value: b["value_str"].as_str().unwrap_or("").to_string(),
            median_ns: median,
            elements: b["throughput"]["Elements"].as_f64(),
        },
    )))
}

/// Sort key of a parameter: `64`, `4MiB`, `1GiB`, `8` threads...
fn value_key(v: &str) -> (f64, String) {
    let digits: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let n: f64 = digits.parse().unwrap_or(f64::MAX);
    let scale = match v[digits.len()..].trim().chars().next() {
        Some('K') => 1024.0,
        Some('M') => 1024.0 * 1024.0,
        Some('G') => 1024.0 * 1024.0 * 1024.0,
        _ => 1.0,
    };
    (n * scale, v.to_string())
}

fn table(benches: &[Bench]) {
    let mut functions: Vec<&str> = Vec::new();
    for f in ORDER {
        if benches.iter().any(|b| b.function == f) {
            functions.push(f);
        }
    }
    for b in benches {
        if !functions.contains(&b.function.as_str()) {
            functions.push(&b.function);
        }
    }
    let mut values: Vec<&str> = Vec::new();
    for b in benches {
        if !values.contains(&b.value.as_str()) {
            values.push(&b.value);
        }
    }
    values.sort_by(|a, b| {
        let (ka, kb) = (value_key(a), value_key(b));
        ka.0.total_cmp(&kb.0).then(ka.1.cmp(&kb.1))
    });
    let get = |f: &str, v: &str| benches.iter().find(|b| b.function == f && b.value == v);
    let has_ours = functions.contains(&"swiotlb");
    let others: Vec<&str> = functions
        .iter()
        .copied()
        .filter(|&f| f != "swiotlb")
        .collect();

    let mut header: Vec<String> = vec![String::new()];
    header.extend(functions.iter().map(|f| f.to_string()));
    if has_ours {
        for f in &others {
            header.push(if REFERENCES.contains(f) {
                format!("swiotlb / {f}")
            } else {
                format!("{f} / swiotlb")
            });
        }
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = Table::new(&header);
    for v in values {
        let mut row = vec![v.to_string()];
        for f in &functions {
            row.push(match get(f, v) {
                Some(b) => match b.elements {
                    Some(e) => format!(
                        "{:.2} M/s ({})",
                        e / b.median_ns * 1e3,
                        time_text(b.median_ns)
                    ),
                    None => time_text(b.median_ns),
                },
                None => "-".to_string(),
            });
        }
        if has_ours {
            for f in &others {
                row.push(match (get(f, v), get("swiotlb", v)) {
                    (Some(b), Some(o)) if REFERENCES.contains(f) => {
                        format!("{:.2}x", o.median_ns / b.median_ns)
                    }
                    (Some(b), Some(o)) => format!("{:.2}x", b.median_ns / o.median_ns),
                    _ => "-".to_string(),
                });
            }
        }
        t.row(row);
    }
    for line in t.markdown() {
        outln!("{line}");
    }
}

fn median(groups: &BTreeMap<String, Vec<Bench>>, g: &str, f: &str, v: &str) -> Option<f64> {
    groups
        .get(g)?
        .iter()
        .find(|b| b.function == f && b.value == v)
        .map(|b| b.median_ns)
}

fn verdict(met: bool, by: String) -> String {
    if met {
        "met".into()
    } else {
        format!("MISSED ({by})")
    }
}

/// The performance targets of issue 11 that criterion's groups measure, each checked
/// against the figures found (a target whose figures are missing is not printed).
fn targets(groups: &BTreeMap<String, Vec<Bench>>) {
    outln!("### Targets\n");
    let g = groups;
    if let Some(ours) = median(g, "map_unmap_skip_sync", "swiotlb", "64") {
        outln!(
            "- 1-slot (64 B) map+unmap with skip-sync, 1 thread: median {}, target <= 20 ns: {}",
            time_text(ours),
            verdict(ours <= 20.0, format!("{:.2}x the target", ours / 20.0))
        );
    }
    for (size, target) in [("4096", 1.3), ("65536", 1.05)] {
        if let (Some(ours), Some(copy)) = (
            median(g, "copy_vs_memcpy", "swiotlb", size),
            median(g, "copy_vs_memcpy", "memcpy", size),
        ) {
            let r = ours / copy;
            outln!(
                "- {size}-byte ToDevice map+unmap {} against one plain copy {} = {r:.3}x, target <= {target}x: {}",
                time_text(ours),
                time_text(copy),
                verdict(r <= target, format!("{r:.3}x"))
            );
        }
    }
    let ratio_to = |group: &str, ours: &str, base: &str, value: &str, target: f64, what: &str| {
        if let (Some(a), Some(b)) = (median(g, group, ours, value), median(g, group, base, value)) {
            let r = a / b;
            outln!(
                "- {what}: {ours} {} against {base} {} = {r:.3}x, target <= {target}x: {}",
                time_text(a),
                time_text(b),
                verdict(r <= target, format!("{r:.3}x"))
            );
        }
    };
    ratio_to(
        "bidi_4k_qd16",
        "swiotlb",
        "copies",
        "4096",
        1.15,
        "4 KiB bidirectional, 16 in flight, against the plain copies of the same bytes",
    );
    for (value, what) in [("1slot", "1-slot pair"), ("4KiB", "4 KiB pair")] {
        ratio_to(
            "elastic_fixed",
            "elastic_fixed",
            "pool",
            value,
            1.05,
            &format!("{what}, ElasticPool::fixed against Pool"),
        );
        ratio_to(
            "elastic_16",
            "elastic_16th_region",
            "pool",
            value,
            1.2,
            &format!("{what} in the 16th of 16 regions against Pool"),
        );
    }
    let against = |group: &str, value: &str, base: &str, target: f64, what: &str| {
        if let (Some(ours), Some(theirs)) = (
            median(g, group, "swiotlb", value),
            median(g, group, base, value),
        ) {
            let r = theirs / ours;
            outln!(
                "- {what}: swiotlb {} against {base} {} = {r:.2}x faster, target >= {target}x: {}",
                time_text(ours),
                time_text(theirs),
                verdict(r >= target, format!("{r:.2}x"))
            );
        }
    };
    for threads in ["1", "2"] {
        let what = format!("virtio mix, 32 in flight, {threads} thread(s), FromDevice zero-filled");
        against("virtio_mix", threads, "pvmfw", 1.0, &what);
        against("virtio_mix", threads, "buddy", 1.1, &what);
    }
    against("pool_90pct_full", "90%", "buddy", 1.1, "pool 90% full");
    against("pool_size", "1GiB", "buddy", 1.1, "1 GiB pool");
    if let (Some(small), Some(big)) = (
        median(g, "pool_size", "swiotlb", "4MiB"),
        median(g, "pool_size", "swiotlb", "1GiB"),
    ) {
        let r = big / small;
        outln!(
            "- 1 GiB pool {} against 4 MiB pool {} = {r:.3}x, target <= 1.1x: {}",
            time_text(big),
            time_text(small),
            verdict(r <= 1.1, format!("{r:.3}x"))
        );
    }
    outln!(
        "- not criterion figures: instructions per 1-slot pair (callgrind, `bin/callgrind.sh`), \
         occupancy at the first refusal (`swiotlb-bench fragmentation`), virtio-blk requests/s \
         (`cargo bench -p swiotlb-bench --bench virtio_blk`)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_sort_by_magnitude() {
        let mut v = vec!["1GiB", "4MiB", "64MiB", "262144", "64", "8", "1024"];
        v.sort_by(|a, b| value_key(a).0.total_cmp(&value_key(b).0));
        assert_eq!(v, ["8", "64", "1024", "262144", "4MiB", "64MiB", "1GiB"]);
    }
}
