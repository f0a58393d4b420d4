//! `kura import PATH…`: argument parsing, the progress bar and the printed summary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use super::{load_config, open_store, ConfigArgs};
use crate::ops::import::{self, ImportOptions, Outcome};

#[derive(Debug, Args)]
#[command(after_help = "\
Files already imported from the same path with the same content are skipped, and files whose \
content is already stored are counted as duplicates without a new record, so an interrupted \
import can be run again. Stop the server first: the database is held by a running `kura serve`.

Exit status: 0 when every file was imported, a duplicate or skipped; 2 when some files were \
rejected (listed with their reasons); 1 when the import stopped on an error.")]
pub struct ImportArgs {
    /// Files and folders to import; folders are read recursively.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub common: ConfigArgs,
    /// Files processed at once [default: the number of CPUs]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
}

pub fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.common, None, None)?;
    let jobs = match args.jobs {
        Some(jobs) => usize::from(jobs),
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let options = ImportOptions {
        jobs,
        max_upload_bytes: config.storage.max_upload_bytes,
        min_free_bytes: config.storage.min_free_bytes,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let store = Arc::new(open_store(&config)?);

    let sources = import::collect_sources(&args.paths);
    let total_files = (sources.files.len() + sources.unreadable.len()) as u64;
    let bar = ProgressBar::new(sources.total_bytes());
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {msg}",
        )
        .expect("the progress template is valid")
        .progress_chars("=> "),
    );
    let done = std::sync::atomic::AtomicU64::new(0);
    let summary = runtime.block_on(import::import(store, sources, options, |report| {
        let finished = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        bar.inc(report.size);
        bar.set_message(format!("{finished}/{total_files} files"));
        if let Outcome::Rejected { reason } = &report.outcome {
            tracing::debug!(path = %report.path.display(), reason, "file rejected");
        }
    }));
    bar.finish_and_clear();

    println!(
        "imported   {} files ({})",
        summary.imported,
        HumanBytes(summary.imported_bytes)
    );
    println!(
        "duplicate  {} files (content already stored)",
        summary.duplicates
    );
    println!(
        "skipped    {} files (imported before from the same path)",
        summary.already_imported
    );
    println!("rejected   {} files", summary.rejected.len());
    for (path, reason) in &summary.rejected {
        println!("  {}: {reason}", path.display());
    }
    if let Some(error) = &summary.stopped_by {
        println!(
            "stopped early; {} files were not attempted",
            summary.not_attempted
        );
        eprintln!("error: import stopped: {error}");
        return Ok(ExitCode::FAILURE);
    }
    if summary.rejected.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(2))
    }
}
