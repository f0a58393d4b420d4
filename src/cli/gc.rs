//! `kura gc`: argument parsing and the printed report.

use std::process::ExitCode;

use clap::Args;
use indicatif::HumanBytes;

use super::{load_config, ConfigArgs};
use crate::ops::gc;
use crate::store::{self, Index};

#[derive(Debug, Args)]
#[command(after_help = "\
Without --purge-variants, gc drops only the cached variants whose source file was deleted. Stop \
the server first: gc refuses to run while `kura serve` holds the database, because an upload in \
flight has its blob file in place shortly before its record is committed.")]
pub struct GcArgs {
    #[command(flatten)]
    pub common: ConfigArgs,
    /// Report what would be removed without removing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Also drop every cached transformed variant, e.g. to reclaim the space at once after
    /// lowering transform.cache_max_bytes; the server computes variants again when asked.
    #[arg(long)]
    pub purge_variants: bool,
}

pub fn run(args: GcArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.common, None, None)?;

    let data_dir = &config.storage.data_dir;
    if !data_dir.join(store::DB_FILE).is_file() {
        anyhow::bail!(
            "no kura database in {}; pass the data directory with --data-dir",
            data_dir.display()
        );
    }
    // Opening the index first takes the database lock, so no server can be writing meanwhile.
    let index = Index::open(&data_dir.join(store::DB_FILE))?;
    let options = gc::GcOptions {
        dry_run: args.dry_run,
        purge_variants: args.purge_variants,
    };
    let report = gc::collect(data_dir, &index, options)?;

    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    println!(
        "{verb} {} orphan blob files ({})",
        report.orphan_blobs,
        HumanBytes(report.orphan_blob_bytes)
    );
    println!(
        "{verb} {} temp files ({})",
        report.temp_files,
        HumanBytes(report.temp_bytes)
    );
    println!("{verb} {} empty blob directories", report.empty_dirs);
    let scope = if args.purge_variants {
        "cached"
    } else {
        "orphan cached"
    };
    println!(
        "{verb} {} {scope} variants ({} of files)",
        report.variants,
        HumanBytes(report.variant_bytes)
    );
    let freed = report.freed_bytes();
    let total_verb = if report.dry_run {
        "would free"
    } else {
        "freed"
    };
    println!("{total_verb} {} ({freed} bytes)", HumanBytes(freed));
    Ok(ExitCode::SUCCESS)
}
