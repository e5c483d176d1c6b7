//! `swiotlb-bench`: map/unmap latency and throughput of a bounce pool, ours or a baseline,
//! the counterpart of Linux's `dma_map_benchmark`.
//!
//! With no arguments it compares ours with every baseline at 1 and 2 threads (about 15 s).
#![deny(
    unsafe_op_in_unsafe_fn,
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    rust_2018_idioms
)]

/// `println!` that ends the program quietly when stdout is closed (`| head`), instead of
/// panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("swiotlb-bench: cannot write the output: {e}");
            std::process::exit(1);
        }
    }};
}

mod report;
mod table;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::time::Duration;
use swiotlb_bench::fragmentation::{first_failure, Outcome};
use swiotlb_bench::mix::{MAX_SIZE, VIRTIO_BANDS};
use swiotlb_bench::runner::{
    clock_ns, clock_resolution_ns, min_pool_size, run, RunConfig, RunResult, Subject, Workload,
};
use swiotlb_bench::{Bounce, Direction, Kind, MAX_MAPPING};
use table::{size_text, time_text, Table};

/// Most threads a run may ask for.
const MAX_THREADS: usize = 256;
/// Most mappings in flight per thread.
const MAX_BATCH: usize = 256;
/// Largest pool.
const MAX_POOL: usize = 1 << 30;
/// Longest run, seconds.
const MAX_SECONDS: f64 = 600.0;
/// Issue 11's target for the live bytes over the pool at the first refusal.
const OCCUPANCY_TARGET: f64 = 0.85;
/// Most fragmentation seeds.
const MAX_SEEDS: u64 = 10_000;

const AFTER_HELP: &str = "\
With no arguments (about 15 s once built): the virtio mix (40% 64-512 B, 40% 4 KiB,
15% 16-64 KiB, 5% 128-256 KiB; half to-device, half from-device; 32 in flight per thread)
through swiotlb, the copy floor (memcpy) and every baseline (pvmfw, buddy, linux_style,
linux_areas, mutex_bitmap), at 1 and 2 threads, with how many times faster swiotlb is.

Examples:
  swiotlb-bench --granule 4K                  4 KiB bidirectional mappings, 16 in flight
  swiotlb-bench --impl pvmfw --compare        swiotlb against pvmfw only
  swiotlb-bench --impl ours --threads 1,2,4   swiotlb alone at 1, 2 and 4 threads
  swiotlb-bench --json > run.json             the same figures as JSON
  swiotlb-bench fragmentation                 occupancy at the first refusal
  swiotlb-bench report                        criterion's results as markdown tables";

/// Map/unmap latency and throughput of the swiotlb bounce pool, beside the plain copies of
/// the same workload and the pools it replaces (pvmfw-style, buddy, Linux-style, bitmap).
#[derive(Parser, Debug)]
#[command(version, after_help = AFTER_HELP, allow_negative_numbers = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// What each thread maps [default: mix, or fixed when --granule or --dir is given].
    #[arg(short, long, value_enum)]
    workload: Option<WorkloadArg>,

    /// Bytes per mapping, 1 B to 256 KiB (suffixes K, M, G) [fixed workload; default 4K].
    #[arg(short, long, value_parser = parse_granule)]
    granule: Option<usize>,

    /// Direction of every mapping [fixed workload; default bidirectional].
    #[arg(short, long, value_enum)]
    dir: Option<Dir>,

    /// Threads mapping at once, 1 to 256; a comma-separated list runs each.
    #[arg(short, long, value_delimiter = ',', default_value = "1,2", value_parser = parse_threads)]
    threads: Vec<usize>,

    /// Seconds per run (more than 0, at most 600).
    #[arg(short, long, default_value = "1", value_parser = parse_seconds)]
    seconds: f64,

    /// Skip the copy back on unmap (Linux's DMA_ATTR_SKIP_CPU_SYNC).
    #[arg(long)]
    skip_sync: bool,

    /// Bytes of pool memory, 4 KiB to 1 GiB (suffixes K, M, G).
    #[arg(short, long, default_value = "64M", value_parser = parse_pool_size, global = true)]
    pool_size: usize,

    /// Run only these (comma-separated): ours (= swiotlb), memcpy (the copy floor), pvmfw,
    /// buddy, linux_style, linux_areas, mutex_bitmap [default: all of them].
    #[arg(short, long = "impl", value_delimiter = ',', value_parser = parse_subject)]
    implementation: Vec<Subject>,

    /// Mappings each thread holds at once, 1 to 256 [default: 32 for the mix, 16 for fixed].
    #[arg(short, long, value_parser = parse_batch)]
    batch: Option<usize>,

    /// Add swiotlb to the --impl list and show how many times faster it is (what a run
    /// without --impl does anyway).
    #[arg(short, long)]
    compare: bool,

    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Occupancy at the first refusal under the realistic (boot) size mix with random
    /// churn, for ours and every baseline (uses --pool-size and --json).
    Fragmentation {
        /// Runs (seeds 1..=N) per implementation, 1 to 10000.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=MAX_SEEDS))]
        seeds: u64,
    },
    /// Turn criterion's results (`cargo bench --bench main` first) into the markdown tables
    /// of BENCHMARKS.md, with ratios and the targets checked.
    Report {
        /// Criterion's output folder [default: target/criterion, looked for here and
        /// beside this executable's target folder].
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum WorkloadArg {
    /// The virtio mix: unmap the oldest of --batch mappings in flight, map the next.
    Mix,
    /// --batch mappings of --granule bytes in --dir: map them all, then unmap them all.
    Fixed,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Dir {
    ToDevice,
    FromDevice,
    Bidirectional,
}

impl From<Dir> for Direction {
    fn from(d: Dir) -> Self {
        match d {
            Dir::ToDevice => Direction::ToDevice,
            Dir::FromDevice => Direction::FromDevice,
            Dir::Bidirectional => Direction::Bidirectional,
        }
    }
}

fn parse_subject(s: &str) -> Result<Subject, String> {
    s.trim().parse()
}

/// An integer in `lo..=hi`, or a message that gives the range.
fn parse_in(s: &str, lo: usize, hi: usize, what: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("{what} is {lo} to {hi}, not {s:?}")),
    }
}

fn parse_threads(s: &str) -> Result<usize, String> {
    parse_in(s, 1, MAX_THREADS, "a thread count")
}

fn parse_batch(s: &str) -> Result<usize, String> {
    parse_in(s, 1, MAX_BATCH, "a batch (mappings in flight per thread)")
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x > 0.0 && x <= MAX_SECONDS => Ok(x),
        _ => Err(format!(
            "seconds per run are more than 0 and at most {MAX_SECONDS}, not {s:?}"
        )),
    }
}

fn parse_granule(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    if n > MAX_MAPPING {
        return Err(format!(
            "{} is over the largest mapping, {} (one segment: 128 slots of 2 KiB)",
            size_text(n),
            size_text(MAX_MAPPING)
        ));
    }
    Ok(n)
}

fn parse_pool_size(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    if !(4096..=MAX_POOL).contains(&n) {
        return Err(format!(
            "a pool is {} to {}, not {}",
            size_text(4096),
            size_text(MAX_POOL),
            size_text(n)
        ));
    }
    Ok(n)
}

/// Parses `4096`, `64K`, `64M`, `1G` (powers of 1024; an optional trailing `iB` or `B`).
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let n: usize = digits
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (try 4096, 64K, 64M, 1G)"))?;
    match n.checked_mul(1 << shift) {
        Some(0) => Err("a size of 0 bytes".into()),
        Some(n) => Ok(n),
        None => Err(format!("{s:?} is out of range")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Some(Command::Fragmentation { seeds }) => fragmentation(&cli, *seeds),
        Some(Command::Report { dir }) => report::print(dir.as_deref()),
        None => bench(&cli),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swiotlb-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workload the options ask for.
fn workload(cli: &Cli) -> Result<Workload, String> {
    let fixed_options = cli.granule.is_some() || cli.dir.is_some();
    match cli.workload {
        Some(WorkloadArg::Mix) if fixed_options => Err(
            "--granule and --dir are for --workload fixed: the mix draws its own sizes and directions"
                .into(),
        ),
        Some(WorkloadArg::Mix) => Ok(Workload::Mix),
        None if !fixed_options => Ok(Workload::Mix),
        _ => Ok(Workload::Fixed {
            granule: cli.granule.unwrap_or(4096),
            dir: cli.dir.map_or(Direction::Bidirectional, Direction::from),
        }),
    }
}

/// What a run of `workload` measures, in one line.
fn describe(cli: &Cli, workload: Workload, batch: usize) -> String {
    let what = match workload {
        Workload::Mix => {
            let bands: Vec<String> = VIRTIO_BANDS
                .iter()
                .scan(0, |prev, &(cum, lo, hi)| {
                    let share = (cum - *prev) / 10;
                    *prev = cum;
                    Some(if lo == hi {
                        format!("{share}% {}", size_text(lo))
                    } else {
                        format!("{share}% {}-{}", size_text(lo), size_text(hi))
                    })
                })
                .collect();
            format!(
                "the virtio mix ({}; half to-device, half from-device), {batch} in flight per thread",
                bands.join(", ")
            )
        }
        Workload::Fixed { granule, dir } => format!(
            "{} {} mappings, {batch} held at once per thread",
            size_text(granule),
            swiotlb_bench::runner::direction_name(dir)
        ),
    };
    format!(
        "{what}{}, {} pool, {} s a run; p50/p99 are single operations, less the clock's own {:.0} ns (resolution {:.0} ns)",
        if cli.skip_sync { ", no copy back (skip-sync)" } else { "" },
        size_text(cli.pool_size),
        cli.seconds,
        clock_ns(),
        clock_resolution_ns()
    )
}

/// The implementations to run, in order, and whether to show swiotlb's speed-up.
fn subjects(cli: &Cli) -> (Vec<Subject>, bool) {
    if cli.implementation.is_empty() {
        return (Subject::all(), true);
    }
    let ours = Subject::Pool(Kind::Swiotlb);
    let mut list = Vec::new();
    if cli.compare && !cli.implementation.contains(&ours) {
        list.push(ours);
    }
    for &s in &cli.implementation {
        if !list.contains(&s) {
            list.push(s);
        }
    }
    let compare = list.contains(&ours) && list.len() > 1;
    (list, compare)
}

/// The JSON document of a run.
#[derive(serde::Serialize)]
struct Report<'a> {
    /// What was measured, in one line.
    measured: &'a str,
    /// swiotlb against the others, in one line (empty when there was nothing to compare).
    summary: &'a str,
    runs: &'a [RunResult],
}

fn bench(cli: &Cli) -> Result<(), String> {
    let workload = workload(cli)?;
    let batch = cli.batch.unwrap_or(match workload {
        Workload::Mix => 32,
        Workload::Fixed { .. } => 16,
    });
    let (subjects, compare) = subjects(cli);
    let threads = &cli.threads;
    // Refuse a pool too small for any run before starting any.
    for &subject in &subjects {
        for &t in threads {
            let cfg = config(cli, subject, t, workload, batch);
            let (min, why) = min_pool_size(&cfg);
            if cli.pool_size < min {
                return Err(format!(
                    "--pool-size {} is too small for this run: it needs at least {} ({why})",
                    size_text(cli.pool_size),
                    size_text(min)
                ));
            }
        }
    }
    let measured = describe(cli, workload, batch);
    let runs = threads.len() * subjects.len();
    let bar = progress_bar(runs as u64 * 1000, cli.json);
    if !cli.json {
        outln!("swiotlb-bench: {measured}");
    }
    let mut results = Vec::new();
    for (i, &t) in threads.iter().enumerate() {
        let mut rows = Vec::new();
        for (j, &subject) in subjects.iter().enumerate() {
            let done = ((i * subjects.len() + j) * 1000) as u64;
            bar.set_message(format!("{subject}, {t} thread{}", plural(t)));
            let cfg = config(cli, subject, t, workload, batch);
            let r = run(&cfg, &|f| bar.set_position(done + (f * 1000.0) as u64))
                .map_err(|e| format!("{subject}, {t} thread{}: {e}", plural(t)))?;
            rows.push(r);
        }
        if compare {
            let ours = rows
                .iter()
                .find(|r| r.implementation == Kind::Swiotlb.name())
                .map(|r| r.pairs_per_second);
            for r in &mut rows {
                if r.implementation != Kind::Swiotlb.name() {
                    r.swiotlb_speedup = ours.map(|o| o / r.pairs_per_second);
                }
            }
        }
        if !cli.json {
            bar.suspend(|| print_table(t, &rows, compare));
        }
        results.extend(rows);
    }
    bar.finish_and_clear();
    let summary = if compare {
        summary(&results)
    } else {
        String::new()
    };
    if cli.json {
        let doc = Report {
            measured: &measured,
            summary: &summary,
            runs: &results,
        };
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        outln!("{text}");
    } else if !summary.is_empty() {
        outln!();
        outln!("{summary}");
    }
    Ok(())
}

fn config(
    cli: &Cli,
    subject: Subject,
    threads: usize,
    workload: Workload,
    batch: usize,
) -> RunConfig {
    RunConfig {
        subject,
        threads,
        duration: Duration::from_secs_f64(cli.seconds),
        workload,
        skip_sync: cli.skip_sync,
        pool_size: cli.pool_size,
        batch,
    }
}

/// swiotlb against pvmfw (or the best baseline) and the copy floor, per thread count, in
/// one line.
fn summary(results: &[RunResult]) -> String {
    let mut threads: Vec<usize> = results.iter().map(|r| r.threads).collect();
    threads.dedup();
    let mut parts = Vec::new();
    for t in threads {
        let at = |name: &str| {
            results
                .iter()
                .find(|r| r.threads == t && r.implementation == name)
        };
        let Some(ours) = at(Kind::Swiotlb.name()) else {
            continue;
        };
        let mut said = Vec::new();
        // The fastest baseline that is not the copy floor.
        if let Some(best) = results
            .iter()
            .filter(|r| r.threads == t && r.implementation != "memcpy")
            .filter(|r| r.implementation != Kind::Swiotlb.name())
            .max_by(|a, b| a.pairs_per_second.total_cmp(&b.pairs_per_second))
        {
            said.push(format!(
                "{:.2}x the fastest baseline ({})",
                ours.pairs_per_second / best.pairs_per_second,
                best.implementation
            ));
        }
        if let Some(p) = at(Kind::Pvmfw.name()) {
            if said.iter().all(|s| !s.contains("(pvmfw)")) {
                said.push(format!(
                    "{:.2}x pvmfw",
                    ours.pairs_per_second / p.pairs_per_second
                ));
            }
        }
        if let Some(m) = at("memcpy") {
            said.push(format!(
                "{:.2}x the copy floor's time",
                m.pairs_per_second / ours.pairs_per_second
            ));
        }
        if !said.is_empty() {
            parts.push(format!("{t} thread{}: {}", plural(t), said.join(", ")));
        }
    }
    if parts.is_empty() {
        return String::new();
    }
    format!(
        "swiotlb's pairs/s: {} (one process, this machine, now).",
        parts.join("; ")
    )
}

fn progress_bar(len: u64, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {percent:>3}% {msg}") {
        bar.set_style(style);
    }
    bar
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn print_table(threads: usize, rows: &[RunResult], compare: bool) {
    let mut header = vec![
        "impl",
        "pair (mean)",
        "map p50",
        "map p99",
        "unmap p50",
        "unmap p99",
        "pairs/s",
        "high water",
    ];
    if compare {
        header.push("swiotlb speed-up");
    }
    let mut table = Table::new(&header);
    let mut notes = Vec::new();
    for r in rows {
        let mut cells = vec![
            r.implementation.to_string(),
            time_text(r.pair_ns),
            time_text(r.map_p50_ns),
            time_text(r.map_p99_ns),
            time_text(r.unmap_p50_ns),
            time_text(r.unmap_p99_ns),
            rate_text(r.pairs_per_second),
            r.high_water_bytes.map_or("-".into(), size_text),
        ];
        if compare {
            cells.push(
                r.swiotlb_speedup
                    .map_or(String::new(), |x| format!("{x:.2}x")),
            );
        }
        table.row(cells);
        if r.failed_maps > 0 {
            notes.push(format!(
                "  {}: {} maps refused (pool full)",
                r.implementation, r.failed_maps
            ));
        }
    }
    outln!();
    outln!("{threads} thread{}:", plural(threads));
    for line in table.lines() {
        outln!("  {line}");
    }
    for n in notes {
        outln!("{n}");
    }
}

/// `3190000.0` -> "3.19 M".
fn rate_text(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} k", per_s / 1e3)
    } else {
        format!("{per_s:.0}")
    }
}

/// One implementation's fragmentation runs.
#[derive(serde::Serialize)]
struct FragRow {
    implementation: &'static str,
    pool_size: usize,
    runs: usize,
    /// Mean over the runs of live bytes / pool bytes at the first refusal.
    live_fraction_mean: f64,
    live_fraction_min: f64,
    live_fraction_max: f64,
    /// Mean of the allocator's own held bytes / pool bytes at the first refusal.
    held_fraction_mean: f64,
    /// Mean size of the refused request.
    refused_size_mean: f64,
}

fn fragmentation(cli: &Cli, seeds: u64) -> Result<(), String> {
    // Two of the mix's largest mappings, and whole segments for the Linux-style pools.
    let min = (2 * MAX_SIZE).max(Kind::LinuxStyle.min_pool_size());
    if cli.pool_size < min {
        return Err(format!(
            "--pool-size {} is too small for fragmentation: it needs at least {} (two of the mix's largest mappings, {})",
            size_text(cli.pool_size),
            size_text(min),
            size_text(MAX_SIZE)
        ));
    }
    let bar = progress_bar(seeds * Kind::ALL.len() as u64, cli.json);
    let mut rows = Vec::new();
    for kind in Kind::ALL {
        bar.set_message(kind.name());
        let pool = kind
            .build(cli.pool_size)
            .map_err(|e| format!("cannot build a {kind} pool: {e}"))?;
        let mut outs: Vec<Outcome> = Vec::new();
        for seed in 1..=seeds {
            let out = first_failure(&pool, seed, 100_000_000)
                .map_err(|e| format!("{kind}: {e}"))?
                .ok_or_else(|| format!("{kind}: no refusal in 10^8 steps"))?;
            outs.push(out);
            bar.inc(1);
        }
        let n = outs.len() as f64;
        let live = outs.iter().map(|o| o.live_fraction);
        rows.push(FragRow {
            implementation: kind.name(),
            pool_size: pool.capacity(),
            runs: outs.len(),
            live_fraction_mean: live.clone().sum::<f64>() / n,
            live_fraction_min: live.clone().fold(f64::INFINITY, f64::min),
            live_fraction_max: live.fold(0.0, f64::max),
            held_fraction_mean: outs.iter().map(|o| o.held_fraction).sum::<f64>() / n,
            refused_size_mean: outs.iter().map(|o| o.refused_size as f64).sum::<f64>() / n,
        });
    }
    bar.finish_and_clear();
    if cli.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        outln!("{text}");
        return Ok(());
    }
    outln!(
        "Occupancy at the first refusal: realistic mix with churn, {} pool, {} seeds",
        size_text(cli.pool_size),
        seeds
    );
    outln!();
    let mut table = Table::new(&[
        "impl",
        "live bytes / pool (mean)",
        "min - max",
        "held by allocator / pool",
        "refused request (mean)",
    ]);
    for r in &rows {
        table.row(vec![
            r.implementation.to_string(),
            format!("{:.1}%", r.live_fraction_mean * 100.0),
            format!(
                "{:.1}% - {:.1}%",
                r.live_fraction_min * 100.0,
                r.live_fraction_max * 100.0
            ),
            format!("{:.1}%", r.held_fraction_mean * 100.0),
            size_text(r.refused_size_mean as usize),
        ]);
    }
    for line in table.markdown() {
        outln!("{line}");
    }
    if let Some(ours) = rows
        .iter()
        .find(|r| r.implementation == Kind::Swiotlb.name())
    {
        let ours = ours.live_fraction_mean;
        outln!();
        outln!(
            "Target (swiotlb's occupancy at the first refusal at least {:.0}%): {:.1}%: {}",
            OCCUPANCY_TARGET * 100.0,
            ours * 100.0,
            if ours >= OCCUPANCY_TARGET {
                "met".to_string()
            } else {
                format!("missed by {:.1} points", (OCCUPANCY_TARGET - ours) * 100.0)
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_by_the_parser_with_the_range_in_the_message() {
        assert!(parse_threads("0").unwrap_err().contains("1 to 256"));
        assert_eq!(parse_threads("256"), Ok(256));
        assert!(parse_batch("0").unwrap_err().contains("1 to 256"));
        assert!(parse_seconds("0").is_err() && parse_seconds("NaN").is_err());
        assert!(parse_seconds("-1").unwrap_err().contains("more than 0"));
        assert_eq!(parse_seconds("0.1"), Ok(0.1));
        let e = parse_granule("1M").unwrap_err();
        assert!(e.contains("256 KiB") && e.contains("1 MiB"), "{e}");
        assert_eq!(parse_granule("256K"), Ok(256 << 10));
        assert!(parse_pool_size("2G").unwrap_err().contains("1 GiB"));
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert_eq!(size_text(4096), "4 KiB");
        assert_eq!(size_text(3000), "2.9 KiB");
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
