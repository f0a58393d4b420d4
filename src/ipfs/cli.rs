//! `kura verify [--repair]`: the command-line face of [`super::verify`].

use std::process::ExitCode;

use anyhow::Context;

use super::node::Node;
use super::verify::{verify_store, VerifyReport};
use crate::cli::{load_config, open_store, VerifyArgs};
use crate::store::StoreError;

/// Runs the check on the store named by the configuration. Exits 0 when every blob is intact
/// (after repairs), 1 otherwise.
pub fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.common, None, None)?;
    let store = open_store(&config).map_err(|err| {
        if matches!(
            err.downcast_ref::<StoreError>(),
            Some(StoreError::DatabaseLocked { .. })
        ) {
            err.context("kura verify opens the database itself; stop the server first, or send `POST /api/ipfs/verify?repair=true` to the running server instead")
        } else {
            err
        }
    })?;
    // With replication off there is no node to query, so the report gives that reason for each
    // bad blob.
    let node = if args.repair && config.ipfs.enabled {
        Some(Node::new(&config.ipfs)?)
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let report = runtime.block_on(verify_store(&store, node.as_ref(), args.repair))?;
    print_report(&report, args.repair);
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints one line per bad blob and a summary on stdout.
fn print_report(report: &VerifyReport, repair: bool) {
    for problem in &report.problems {
        let kind = match problem.problem {
            super::verify::ProblemKind::Missing => "missing",
            super::verify::ProblemKind::Corrupt => "corrupt",
        };
        let outcome = match (&problem.repair_error, problem.repaired) {
            (_, true) => "restored from IPFS".to_owned(),
            (Some(err), false) => format!("not restored: {err}"),
            (None, false) => problem.detail.clone(),
        };
        println!("{kind}\t{}\tcid {}\t{outcome}", problem.hash, problem.cid);
    }
    let mut summary = format!(
        "checked {} blobs: {} intact, {} missing, {} corrupt",
        report.checked, report.ok, report.missing, report.corrupt
    );
    if repair {
        summary.push_str(&format!(
            "; {} restored, {} still bad",
            report.repaired, report.unrepaired
        ));
        if report.failed_jobs_retried > 0 {
            summary.push_str(&format!(
                "; {} failed replication jobs will be retried",
                report.failed_jobs_retried
            ));
        }
    } else if report.unrepaired > 0 {
        summary.push_str("; run `kura verify --repair` to restore them from the IPFS node");
    }
    println!("{summary}");
}
