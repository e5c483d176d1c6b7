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

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::time::Duration;
use swiotlb_bench::fragmentation::{first_failure, Outcome};
use swiotlb_bench::runner::{run, RunConfig, RunResult};
use swiotlb_bench::{Bounce, Direction, Kind};

/// Map/unmap latency and throughput of the swiotlb bounce pool, beside Linux-style, buddy
/// and bitmap pools.
///
/// With no arguments: compares ours with every baseline at 1 and 2 threads, 4 KiB
/// bidirectional mappings in a 64 MiB pool (about 15 s).
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Threads mapping at once; a comma-separated list runs each
    /// (default 1; with --compare and no arguments, 1,2).
    #[arg(short, long, value_delimiter = ',')]
    threads: Vec<usize>,

    /// Seconds per run.
    #[arg(short, long, default_value_t = 1.5)]
    seconds: f64,

    /// Bytes per mapping (suffixes K, M and G allowed).
    #[arg(short, long, default_value = "4096", value_parser = parse_size)]
    granule: usize,

    /// Direction of every mapping.
    #[arg(short, long, value_enum, default_value_t = Dir::Bidirectional)]
    dir: Dir,

    /// Skip the copy back on unmap (Linux's DMA_ATTR_SKIP_CPU_SYNC).
    #[arg(long)]
    skip_sync: bool,

    /// Bytes of pool memory (suffixes K, M and G allowed).
    #[arg(short, long, default_value = "64M", value_parser = parse_size, global = true)]
    pool_size: usize,

    /// Implementation: ours (swiotlb), linux_style, linux_areas, buddy or mutex_bitmap.
    #[arg(short, long = "impl", default_value = "ours", value_parser = parse_kind)]
    implementation: Kind,

    /// Mappings each thread holds at once; latencies are per-operation means over a batch.
    #[arg(short, long, default_value_t = 16)]
    batch: usize,

    /// Run ours and every baseline, and print how much faster ours is.
    #[arg(short, long)]
    compare: bool,

    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Occupancy at the first refusal under the realistic size mix with random churn, for
    /// ours and every baseline (uses --pool-size and --json).
    Fragmentation {
        /// Runs (seeds 1..=N) per implementation.
        #[arg(long, default_value_t = 20)]
        seeds: u64,
    },
    /// Turn criterion's results into the markdown tables of BENCHMARKS.md, with ratios
    /// and the targets checked.
    Report {
        /// Criterion's output folder.
        #[arg(default_value = "target/criterion")]
        dir: std::path::PathBuf,
    },
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

fn parse_kind(s: &str) -> Result<Kind, String> {
    s.parse()
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
    n.checked_mul(1 << shift)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?} is out of range"))
}

fn main() -> ExitCode {
    let no_arguments = std::env::args_os().len() == 1;
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Some(Command::Fragmentation { seeds }) => fragmentation(&cli, *seeds),
        Some(Command::Report { dir }) => report::print(dir),
        None => bench(&cli, no_arguments),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swiotlb-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(cli: &Cli, no_arguments: bool) -> Result<(), String> {
    if !(cli.seconds > 0.0 && cli.seconds.is_finite()) {
        return Err("--seconds must be a positive number".into());
    }
    let compare = cli.compare || no_arguments;
    let threads = match (&cli.threads[..], compare) {
        ([], true) => vec![1, 2],
        ([], false) => vec![1],
        (t, _) => t.to_vec(),
    };
    let kinds: Vec<Kind> = if compare {
        Kind::ALL.to_vec()
    } else {
        vec![cli.implementation]
    };
    let duration = Duration::from_secs_f64(cli.seconds);
    let runs = threads.len() * kinds.len();
    let bar = progress_bar(runs as u64 * 1000, cli.json);
    if !cli.json {
        outln!(
            "swiotlb-bench: {} {} mappings{}, {} pool, {} s a run, batches of {}",
            size_text(cli.granule),
            swiotlb_bench::runner::direction_name(cli.dir.into()),
            if cli.skip_sync { " (skip sync)" } else { "" },
            size_text(cli.pool_size),
            cli.seconds,
            cli.batch
        );
    }
    let mut results = Vec::new();
    for (i, &t) in threads.iter().enumerate() {
        let mut row = Vec::new();
        for (j, &kind) in kinds.iter().enumerate() {
            let done = ((i * kinds.len() + j) * 1000) as u64;
            bar.set_message(format!("{kind}, {t} thread{}", plural(t)));
            let cfg = RunConfig {
                kind,
                threads: t,
                duration,
                granule: cli.granule,
                dir: cli.dir.into(),
                skip_sync: cli.skip_sync,
                pool_size: cli.pool_size,
                batch: cli.batch,
            };
            let r = run(&cfg, &|f| bar.set_position(done + (f * 1000.0) as u64))
                .map_err(|e| format!("{kind}: {e}"))?;
            row.push(r);
        }
        if !cli.json {
            bar.suspend(|| print_table(t, &row, compare));
        }
        results.extend(row);
    }
    bar.finish_and_clear();
    if cli.json {
        let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
        outln!("{text}");
    }
    Ok(())
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

/// `4096` -> "4 KiB", `3000` -> "3000 B".
fn size_text(bytes: usize) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    if bytes >= 1 << 20 {
        return format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64);
    }
    if bytes >= 1 << 10 {
        return format!("{:.1} KiB", bytes as f64 / 1024.0);
    }
    format!("{bytes} B")
}

fn print_table(threads: usize, rows: &[RunResult], compare: bool) {
    outln!();
    outln!("{threads} thread{}:", plural(threads));
    outln!(
        "  {:<13} {:>16} {:>16} {:>13} {:>11}{}",
        "impl",
        "map ns (sd)",
        "unmap ns (sd)",
        "pairs/s",
        "high water",
        if compare { "  swiotlb speed-up" } else { "" }
    );
    let ours = rows
        .iter()
        .find(|r| r.implementation == Kind::Swiotlb.name())
        .map(|r| r.pairs_per_second);
    for r in rows {
        let ratio = match ours {
            Some(o) if compare && r.implementation != Kind::Swiotlb.name() => {
                format!("  {:>16}", format!("{:.2}x", o / r.pairs_per_second))
            }
            _ => String::new(),
        };
        outln!(
            "  {:<13} {:>8.1} ({:>5.1}) {:>8.1} ({:>5.1}) {:>11.2} M {:>11}{}",
            r.implementation,
            r.map_ns,
            r.map_ns_stddev,
            r.unmap_ns,
            r.unmap_ns_stddev,
            r.pairs_per_second / 1e6,
            size_text(r.high_water_bytes),
            ratio
        );
        if r.failed_maps > 0 {
            outln!("  {:<13} ({} maps refused: pool full)", "", r.failed_maps);
        }
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
    if seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    let bar = progress_bar(seeds * Kind::ALL.len() as u64, cli.json);
    let mut rows = Vec::new();
    for kind in Kind::ALL {
        bar.set_message(kind.name());
        let pool = kind.build(cli.pool_size)?;
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
    outln!("| impl | live bytes / pool (mean) | min - max | held by allocator / pool | refused request (mean) |");
    outln!("|---|---|---|---|---|");
    for r in &rows {
        outln!(
            "| {} | {:.1}% | {:.1}% - {:.1}% | {:.1}% | {} |",
            r.implementation,
            r.live_fraction_mean * 100.0,
            r.live_fraction_min * 100.0,
            r.live_fraction_max * 100.0,
            r.held_fraction_mean * 100.0,
            size_text(r.refused_size_mean as usize)
        );
    }
    let get = |k: Kind| {
        rows.iter()
            .find(|r| r.implementation == k.name())
            .map(|r| r.live_fraction_mean)
    };
    if let (Some(ours), Some(theirs)) = (get(Kind::Swiotlb), get(Kind::LinuxAreas)) {
        outln!();
        outln!(
            "Target (occupancy at least linux_areas'): swiotlb {:.1}% vs linux_areas {:.1}%: {}",
            ours * 100.0,
            theirs * 100.0,
            if ours >= theirs {
                "met".to_string()
            } else {
                format!("missed by {:.1} points", (theirs - ours) * 100.0)
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
