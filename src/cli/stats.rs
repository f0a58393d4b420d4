//! `kura stats`: argument parsing and the printed statistics.

use std::process::ExitCode;

use clap::Args;
use indicatif::HumanBytes;

use super::{load_config, ConfigArgs};
use crate::ops::stats;
use crate::store::{self, Index};

#[derive(Debug, Args)]
#[command(after_help = "\
Sizes are printed in binary units (KiB, MiB, GiB) with the exact byte count beside them. Stop \
the server first: the database is held by a running `kura serve`.")]
pub struct StatsArgs {
    #[command(flatten)]
    pub common: ConfigArgs,
    /// Print one JSON object instead of text; byte counts are plain integers.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.common, None, None)?;

    let data_dir = &config.storage.data_dir;
    if !data_dir.join(store::DB_FILE).is_file() {
        anyhow::bail!(
            "no kura database in {}; pass the data directory with --data-dir",
            data_dir.display()
        );
    }
    let index = Index::open(&data_dir.join(store::DB_FILE))?;
    index.set_ipfs_policy(config.ipfs.queue_policy());
    let stats = stats::gather(
        data_dir,
        &index,
        config.storage.min_free_bytes,
        config.transform.cache_max_bytes,
    )?;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(ExitCode::SUCCESS);
    }
    let size = |bytes: u64| format!("{} ({bytes} bytes)", HumanBytes(bytes));
    println!(
        "media      {} records, {}",
        stats.media.count,
        size(stats.media.bytes)
    );
    println!(
        "blobs      {} files uploads use, {}",
        stats.blobs.count,
        size(stats.blobs.bytes)
    );
    println!("dedup      {} saved", size(stats.deduplicated_bytes));
    for (mime, totals) in &stats.by_type {
        println!(
            "  {mime:<11} {} records, {}",
            totals.count,
            size(totals.bytes)
        );
    }
    match &stats.replication {
        Some(states) => {
            println!("replication");
            for (state, count) in states {
                println!("  {state:<11} {count} jobs");
            }
        }
        None => println!("replication: off (ipfs.enabled = false)"),
    }
    println!(
        "variants   {} cached, {}; transform.cache_max_bytes is {}",
        stats.variants.count,
        size(stats.variants.bytes),
        size(stats.variants.max_bytes)
    );
    if let Some(disk) = &stats.disk {
        println!(
            "disk       {} free of {}; storage.min_free_bytes is {}",
            size(disk.free_bytes),
            size(disk.total_bytes),
            size(disk.min_free_bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}
