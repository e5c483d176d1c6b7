//! `swiotlb-bench report`: criterion's results as the markdown tables of BENCHMARKS.md.
//!
//! Reads every `<group>/<function>/<value>/new/{benchmark,estimates}.json` under criterion's
//! output folder, and prints one table per group: the median time of every implementation
//! for every parameter, then how many times longer each baseline takes than ours (and how
//! many times longer ours takes than the references: a plain copy, private pools). Then
//! it checks the performance targets against the figures it found.

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

fn time_text(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
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

    let mut header = String::from("| |");
    let mut rule = String::from("|---|");
    for f in &functions {
        header += &format!(" {f} |");
        rule += "---|";
    }
    if has_ours {
        for f in &others {
            header += &if REFERENCES.contains(f) {
                format!(" swiotlb / {f} |")
            } else {
                format!(" {f} / swiotlb |")
            };
            rule += "---|";
        }
    }
    outln!("{header}\n{rule}");
    for v in values {
        let mut line = format!("| {v} |");
        for f in &functions {
            line += &match get(f, v) {
                Some(b) => match b.elements {
                    Some(e) => format!(
                        " {:.2} M/s ({}) |",
                        e / b.median_ns * 1e3,
                        time_text(b.median_ns)
                    ),
                    None => format!(" {} |", time_text(b.median_ns)),
                },
                None => " - |".to_string(),
            };
        }
        if has_ours {
            for f in &others {
                line += &match (get(f, v), get("swiotlb", v)) {
                    (Some(b), Some(o)) if REFERENCES.contains(f) => {
                        format!(" {:.2}x |", o.median_ns / b.median_ns)
                    }
                    (Some(b), Some(o)) => format!(" {:.2}x |", b.median_ns / o.median_ns),
                    _ => " - |".to_string(),
                };
            }
        }
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

fn targets(groups: &BTreeMap<String, Vec<Bench>>) {
    outln!("### Targets\n");
    let g = groups;
    if let Some(ours) = median(g, "map_unmap_skip_sync", "swiotlb", "64") {
        outln!(
            "- 1-slot (64 B) map+unmap with skip-sync, 1 thread: median {:.1} ns, target <= 40 ns: {}",
            ours,
            verdict(ours <= 40.0, format!("{:.2}x the target", ours / 40.0))
        );
        for base in ["linux_style", "buddy"] {
            if let Some(theirs) = median(g, "map_unmap_skip_sync", base, "64") {
                let r = theirs / ours;
                outln!(
                    "- same, against {base}: {:.1} ns, swiotlb {r:.2}x faster, target >= 1.5x: {}",
                    theirs,
                    verdict(r >= 1.5, format!("{r:.2}x"))
                );
            }
        }
    }
    let per_s = |f: &str, t: &str| -> Option<f64> {
        let b = g
            .get("threads")?
            .iter()
            .find(|b| b.function == f && b.value == t)?;
        Some(b.elements? / b.median_ns * 1e9)
    };
    if let (Some(one), Some(two)) = (per_s("swiotlb", "1"), per_s("swiotlb", "2")) {
        let r = two / one;
        outln!(
            "- 2 threads: {:.2} M/s against {:.2} M/s on 1 thread = {r:.2}x, target >= 1.8x: {}",
            two / 1e6,
            one / 1e6,
            verdict(r >= 1.8, format!("{r:.2}x"))
        );
        if let (Some(p1), Some(p2)) = (per_s("private_pools", "1"), per_s("private_pools", "2")) {
            outln!(
                "- the machine's ceiling (a private pool per thread, nothing shared): 2 threads = {:.2}x 1 thread",
                p2 / p1
            );
        }
        if let Some(eight) = per_s("swiotlb", "8") {
            let r = eight / two;
            outln!(
                "- 8 threads: {:.2} M/s = {:.0}% of the 2-thread figure, target >= 90%: {}",
                eight / 1e6,
                r * 100.0,
                verdict(r >= 0.9, format!("{:.0}%", r * 100.0))
            );
        }
        for t in ["1", "2", "8"] {
            if let (Some(o), Some(l)) = (per_s("swiotlb", t), per_s("linux_style", t)) {
                outln!(
                    "- beside it, {t} thread(s): linux_style {:.2} M/s, swiotlb {:.2}x",
                    l / 1e6,
                    o / l
                );
            }
        }
    }
    if let (Some(ours), Some(copy)) = (
        median(g, "copy_vs_memcpy", "swiotlb", "65536"),
        median(g, "copy_vs_memcpy", "memcpy", "65536"),
    ) {
        let r = ours / copy;
        outln!(
            "- 64 KiB ToDevice map+unmap {} against one plain copy {} = {r:.3}x, target <= 1.15x: {}",
            time_text(ours),
            time_text(copy),
            verdict(r <= 1.15, format!("{r:.3}x"))
        );
    }
    if let (Some(small), Some(big)) = (
        median(g, "pool_size", "swiotlb", "4MiB"),
        median(g, "pool_size", "swiotlb", "1GiB"),
    ) {
        let r = big / small;
        outln!(
            "- 1 GiB pool {} against 4 MiB pool {} = {r:.3}x, target <= 1.2x: {}",
            time_text(big),
            time_text(small),
            verdict(r <= 1.2, format!("{r:.3}x"))
        );
    }
    outln!(
        "- occupancy at the first refusal: see `swiotlb-bench fragmentation` (not a criterion figure)"
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
