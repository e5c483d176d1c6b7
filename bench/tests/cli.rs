//! The `swiotlb-bench` command line as a user meets it: every misuse gets one clear message
//! with the limit and a non-zero exit, and the options that used to drop the comparison
//! keep it. Each test runs the built binary.

use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swiotlb-bench"))
        .args(args)
        .output()
        .expect("the swiotlb-bench binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `args`, wants them refused (exit `code`) with every one of `wanted` in the message,
/// one message (one prefix), and nothing on stdout.
fn refused(args: &[&str], code: i32, wanted: &[&str]) -> String {
    let o = bench(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    for w in wanted {
        assert!(err.contains(w), "{args:?}: {w:?} not in {err:?}");
    }
    let prefixes = err.matches("swiotlb-bench:").count() + err.matches("error:").count();
    assert_eq!(prefixes, 1, "{args:?}: one prefix, not {err:?}");
    assert!(stdout(&o).is_empty(), "{args:?}: {}", stdout(&o));
    err
}

/// A short run: small pool, short runs, one thread.
const QUICK: [&str; 6] = ["--seconds", "0.02", "--pool-size", "4M", "--threads", "1"];

fn quick(extra: &[&str]) -> Output {
    let args: Vec<&str> = QUICK.iter().chain(extra).copied().collect();
    let o = bench(&args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    o
}

fn json(extra: &[&str]) -> serde_json::Value {
    let o = quick(&[extra, &["--json"]].concat());
    serde_json::from_slice(&o.stdout).expect("--json prints JSON")
}

fn implementations(doc: &serde_json::Value) -> Vec<String> {
    doc["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["implementation"].as_str().expect("a name").to_string())
        .collect()
}

#[test]
fn zero_threads_is_refused_by_the_parser_with_the_range() {
    refused(&["--threads", "0"], 2, &["--threads", "1 to 256", "\"0\""]);
    refused(&["--threads", "1,0"], 2, &["1 to 256"]);
    refused(&["--threads", "257"], 2, &["1 to 256"]);
}

#[test]
fn zero_batch_is_refused_by_the_parser_with_the_range() {
    refused(&["--batch", "0"], 2, &["--batch", "1 to 256"]);
}

#[test]
fn a_granule_over_a_segment_names_the_256_kib_limit_once() {
    refused(&["--granule", "1M"], 2, &["--granule", "1 MiB", "256 KiB"]);
    refused(&["--granule", "0"], 2, &["--granule", "0 bytes"]);
    refused(&["--granule", "lots"], 2, &["not a size"]);
}

#[test]
fn a_pool_too_small_says_how_small_and_why_in_words() {
    let err = refused(
        &["--pool-size", "4K"],
        1,
        &["--pool-size 4 KiB", "at least 512 KiB"],
    );
    assert!(!err.contains("threads'"), "{err}");
    refused(
        &[
            "--pool-size",
            "4K",
            "--granule",
            "4K",
            "--impl",
            "linux_style",
        ],
        1,
        &["at least 256 KiB", "segments"],
    );
    refused(&["--pool-size", "2G"], 2, &["1 GiB"]);
}

#[test]
fn bad_seconds_and_names_are_refused_with_what_is_allowed() {
    for s in ["0", "-1", "nan", "inf", "601"] {
        refused(&["--seconds", s], 2, &["--seconds", "more than 0", "600"]);
    }
    refused(
        &["--impl", "nope"],
        2,
        &["unknown implementation", "memcpy", "pvmfw"],
    );
    refused(
        &["--workload", "mix", "--granule", "4K"],
        1,
        &["--workload fixed"],
    );
    refused(&["fragmentation", "--seeds", "0"], 2, &["1..=10000"]);
    refused(
        &["fragmentation", "--pool-size", "64K"],
        1,
        &["at least 512 KiB"],
    );
}

#[test]
fn json_alone_keeps_the_comparison() {
    let doc = json(&[]);
    let names = implementations(&doc);
    for name in [
        "memcpy",
        "swiotlb",
        "pvmfw",
        "buddy",
        "linux_style",
        "mutex_bitmap",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
    assert!(doc["measured"].as_str().unwrap().contains("virtio mix"));
    assert!(doc["summary"].as_str().unwrap().contains("pvmfw"));
    for r in doc["runs"].as_array().unwrap() {
        let ours = r["implementation"] == "swiotlb";
        assert_eq!(r["swiotlb_speedup"].is_null(), ours, "{r}");
        assert!(r["map_p99_ns"].as_f64().unwrap() >= r["map_p50_ns"].as_f64().unwrap());
        assert!(r["pairs"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["workload"], "mix");
    }
}

#[test]
fn seconds_alone_keeps_the_comparison_and_says_what_it_measured() {
    let out = stdout(&quick(&[]));
    assert!(out.contains("swiotlb speed-up"), "{out}");
    for name in ["memcpy", "pvmfw", "buddy", "linux_areas"] {
        assert!(out.contains(name), "{name}: {out}");
    }
    assert!(out.starts_with("swiotlb-bench: the virtio mix"), "{out}");
    assert!(out.contains("swiotlb's pairs/s: 1 thread:"), "{out}");
}

#[test]
fn compare_with_impl_runs_ours_against_that_one() {
    let doc = json(&["--compare", "--impl", "buddy"]);
    assert_eq!(implementations(&doc), ["swiotlb", "buddy"]);
    assert!(doc["runs"][1]["swiotlb_speedup"].as_f64().unwrap() > 0.0);
    // Without --compare, only what was named.
    let doc = json(&["--impl", "pvmfw", "--granule", "4K"]);
    assert_eq!(implementations(&doc), ["pvmfw"]);
    assert!(doc["runs"][0]["swiotlb_speedup"].is_null());
    assert_eq!(doc["runs"][0]["workload"], "fixed");
    assert_eq!(doc["runs"][0]["granule"], 4096);
}

#[test]
fn tables_stay_aligned() {
    let out = stdout(&quick(&["--impl", "memcpy,ours,linux_style"]));
    let tables: Vec<&str> = out.split("\n\n").filter(|b| b.contains("  impl")).collect();
    assert!(!tables.is_empty(), "{out}");
    for t in tables {
        // Characters, not bytes: "µs" is two bytes and one column.
        let lines: Vec<Vec<char>> = t
            .lines()
            .filter(|l| l.starts_with("  ") && !l.contains("refused"))
            .map(|l| l.chars().collect())
            .collect();
        let header: String = lines[0].iter().collect();
        // Right-aligned columns: the header's "pairs/s" ends where every row's rate ends.
        let end = header.find("pairs/s").unwrap() + "pairs/s".len();
        for l in &lines[1..] {
            let rate: String = l[..end].iter().collect();
            assert!(
                rate.ends_with(" M") || rate.ends_with(" k"),
                "misaligned:\n{t}"
            );
        }
    }
}

#[test]
fn help_says_what_a_bare_run_does() {
    for flag in ["--help", "-h"] {
        let o = bench(&[flag]);
        assert!(o.status.success());
        let out = stdout(&o);
        assert!(out.contains("With no arguments"), "{out}");
        assert!(
            out.contains("virtio mix") && out.contains("1 and 2 threads"),
            "{out}"
        );
    }
}

#[test]
fn report_without_criterion_data_says_what_to_run() {
    let dir = std::env::temp_dir().join("swiotlb-bench-no-criterion-here");
    let err = refused(
        &["report", dir.to_str().unwrap()],
        1,
        &["no criterion results", "cargo bench --bench main"],
    );
    assert!(!err.contains("No such file"), "{err}");
    let empty = std::env::temp_dir().join(format!("swiotlb-bench-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    refused(
        &["report", empty.to_str().unwrap()],
        1,
        &["no criterion results under", "cargo bench --bench main"],
    );
    std::fs::remove_dir(&empty).unwrap();
}
