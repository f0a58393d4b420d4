//! The replication worker: a tokio task that runs due jobs from the queue against the node.
//!
//! It runs at most `ipfs.concurrency` jobs at once and never two for the same blob. A failed
//! call is retried after `retry_initial_secs`, doubling per attempt up to `retry_max_secs`, for
//! as long as it takes. Only a CID mismatch or a missing blob file fails a job for good. The
//! queue lives in the database, so jobs interrupted by a shutdown or crash run again after the
//! next start. Uploads never wait for the worker.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::node::{Node, NodeError};
use crate::config::IpfsConfig;
use crate::store::ipfs_jobs::unix_ms_now;
use crate::store::{IpfsJob, JobKind, JobOutcome, Store, StoreError};

/// Maximum sleep while no job is due, so that clock jumps cannot stall the queue for long.
const MAX_IDLE: Duration = Duration::from_secs(60);
/// Retry warnings logged per window; the rest are counted and reported with the next window.
const RETRY_WARNINGS_PER_WINDOW: u32 = 5;
const RETRY_WARNING_WINDOW: Duration = Duration::from_secs(60);

/// Handle of the running worker.
pub struct Worker {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// Starts the worker on the current runtime.
    pub fn start(store: Arc<Store>, node: Node, config: &IpfsConfig) -> Worker {
        let (stop, stopped) = watch::channel(false);
        let settings = Settings {
            concurrency: config.concurrency,
            retry_initial_ms: config.retry_initial_secs.saturating_mul(1000),
            retry_max_ms: config.retry_max_secs.saturating_mul(1000),
        };
        let task = tokio::spawn(run(store, Arc::new(node), settings, stopped));
        Worker { stop, task }
    }

    /// Stops the worker: no new job starts, running calls are abandoned (their jobs stay
    /// pending and run again after the next start), and the task has ended when this returns.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(err) = self.task.await {
            tracing::error!(error = %err, "the IPFS worker task failed");
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    concurrency: usize,
    retry_initial_ms: u64,
    retry_max_ms: u64,
}

/// Result of one job attempt, handed from its task back to the loop.
struct Finished {
    hash: String,
    job: IpfsJob,
    outcome: JobOutcome,
}

async fn run(
    store: Arc<Store>,
    node: Arc<Node>,
    settings: Settings,
    mut stopped: watch::Receiver<bool>,
) {
    tracing::info!(
        api_url = node.api_url(),
        concurrency = settings.concurrency,
        "IPFS worker started"
    );
    let mut running: JoinSet<Finished> = JoinSet::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut retry_log = RetryLog::new();

    loop {
        let free = settings.concurrency.saturating_sub(running.len());
        if free > 0 {
            match due_jobs(&store, free, &in_flight).await {
                Ok(jobs) => {
                    for (hash, job) in jobs {
                        in_flight.insert(hash.clone());
                        running.spawn(attempt(store.clone(), node.clone(), settings, hash, job));
                    }
                }
                Err(err) => tracing::error!(error = %err, "failed to read due IPFS jobs"),
            }
        }
        let idle = if running.len() < settings.concurrency {
            until_next_due(&store, &in_flight).await
        } else {
            MAX_IDLE
        };

        tokio::select! {
            Some(joined) = running.join_next(), if !running.is_empty() => {
                match joined {
                    Ok(finished) => {
                        in_flight.remove(&finished.hash);
                        record(&store, finished, &mut retry_log).await;
                    }
                    Err(err) => {
                        // A panicking attempt is a bug. Its blob stays marked as running, so the
                        // loop cannot spin on it, and the job runs again after a restart.
                        tracing::error!(error = %err, "an IPFS job attempt panicked");
                    }
                }
            }
            () = store.index().ipfs_job_queued() => {}
            () = tokio::time::sleep(idle) => {}
            _ = stopped.changed() => break,
        }
    }

    let interrupted = running.len();
    running.shutdown().await;
    tracing::info!(
        interrupted,
        "IPFS worker stopped; interrupted jobs run again after the next start"
    );
}

async fn due_jobs(
    store: &Arc<Store>,
    limit: usize,
    in_flight: &HashSet<String>,
) -> Result<Vec<(String, IpfsJob)>, StoreError> {
    let index = store.index().clone();
    let skip = in_flight.clone();
    tokio::task::spawn_blocking(move || index.due_ipfs_jobs(unix_ms_now(), limit, &skip))
        .await
        .map_err(|err| StoreError::Task(err.to_string()))?
}

/// Returns how long to sleep until the earliest pending job that is not running is due, at
/// most [`MAX_IDLE`].
async fn until_next_due(store: &Arc<Store>, in_flight: &HashSet<String>) -> Duration {
    let index = store.index().clone();
    let skip = in_flight.clone();
    let next = tokio::task::spawn_blocking(move || index.next_ipfs_due_ms(&skip)).await;
    match next {
        Ok(Ok(Some(due_ms))) => {
            Duration::from_millis(due_ms.saturating_sub(unix_ms_now())).min(MAX_IDLE)
        }
        Ok(Ok(None)) => MAX_IDLE,
        Ok(Err(err)) => {
            tracing::error!(error = %err, "failed to read the next IPFS job time");
            MAX_IDLE
        }
        Err(err) => {
            tracing::error!(error = %err, "failed to read the next IPFS job time");
            MAX_IDLE
        }
    }
}

/// Makes one call to the node for `job` and classifies the result.
async fn attempt(
    store: Arc<Store>,
    node: Arc<Node>,
    settings: Settings,
    hash: String,
    job: IpfsJob,
) -> Finished {
    let outcome = match job.kind {
        JobKind::Add => {
            let path = store.blob_path(&hash);
            match node.add_file(&path, job.chunk_size).await {
                Ok(cid) if cid.to_string() == job.cid => JobOutcome::Pinned,
                Ok(cid) => {
                    tracing::error!(hash = %hash, cid = %job.cid, node_cid = %cid, job_id = job.id,
                        "the IPFS node computed another CID than kura for the same bytes; check ipfs.chunk_size and ipfs.max_links against the node");
                    JobOutcome::Failed {
                        error: format!(
                            "CID mismatch: the node computed {cid}, kura recorded {}",
                            job.cid
                        ),
                    }
                }
                Err(NodeError::File { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    tracing::error!(hash = %hash, cid = %job.cid, path = %path.display(),
                        "the blob file to pin is missing; restore it, then run `kura verify --repair` to retry");
                    JobOutcome::Failed {
                        error: format!("the blob file {} is missing", path.display()),
                    }
                }
                Err(err) => retry(&settings, &job, &err),
            }
        }
        JobKind::Unpin => match node.unpin(&job.cid).await {
            Ok(()) => JobOutcome::Unpinned,
            Err(err) => retry(&settings, &job, &err),
        },
    };
    Finished { hash, job, outcome }
}

fn retry(settings: &Settings, job: &IpfsJob, err: &NodeError) -> JobOutcome {
    JobOutcome::Retry {
        error: err.to_string(),
        delay_ms: retry_delay_ms(settings, job.attempts),
    }
}

/// Returns the wait before the retry that follows `attempts` earlier failed calls: the initial
/// delay doubled per earlier failure, capped at the maximum.
fn retry_delay_ms(settings: &Settings, attempts: u32) -> u64 {
    let factor = 1u64.checked_shl(attempts.min(62)).unwrap_or(u64::MAX);
    settings
        .retry_initial_ms
        .saturating_mul(factor)
        .min(settings.retry_max_ms)
}

/// Stores an attempt's outcome and logs it.
async fn record(store: &Arc<Store>, finished: Finished, retry_log: &mut RetryLog) {
    let Finished { hash, job, outcome } = finished;
    match &outcome {
        JobOutcome::Pinned => {
            tracing::info!(hash = %hash, cid = %job.cid, job_id = job.id, attempts = job.attempts + 1, "blob pinned on the IPFS node");
        }
        JobOutcome::Unpinned => {
            tracing::info!(hash = %hash, cid = %job.cid, job_id = job.id, "blob unpinned on the IPFS node");
        }
        JobOutcome::Retry { error, delay_ms } => {
            tracing::debug!(hash = %hash, cid = %job.cid, job_id = job.id, error = %error, "IPFS job will be retried");
            if let Some(suppressed) = retry_log.admit() {
                tracing::warn!(hash = %hash, cid = %job.cid, job_id = job.id, kind = job.kind.as_str(),
                    attempts = job.attempts + 1, retry_in_secs = delay_ms / 1000, suppressed,
                    error = %error, "IPFS job failed; will retry");
            }
        }
        // Logged at error where the cause was found.
        JobOutcome::Failed { .. } => {}
    }
    let index = store.index().clone();
    let job_id = job.id;
    let result =
        tokio::task::spawn_blocking(move || index.finish_ipfs_job(&hash, job_id, &outcome)).await;
    match result {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            tracing::error!(job_id, error = %err, "failed to record an IPFS job result; it runs again");
        }
        Err(err) => {
            tracing::error!(job_id, error = %err, "failed to record an IPFS job result; it runs again");
        }
    }
}

/// Limits retry warnings to a few per window, so a node that is down for hours logs a handful
/// of lines per minute instead of one per job per attempt.
struct RetryLog {
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

impl RetryLog {
    fn new() -> RetryLog {
        RetryLog {
            window_start: Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }

    /// Returns `Some(warnings suppressed since the last one logged)` when this warning may be
    /// logged, or `None` when it must be counted and dropped.
    fn admit(&mut self) -> Option<u64> {
        if self.window_start.elapsed() >= RETRY_WARNING_WINDOW {
            self.window_start = Instant::now();
            self.logged = 0;
        }
        if self.logged < RETRY_WARNINGS_PER_WINDOW {
            self.logged += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_up_to_cap() {
        let settings = Settings {
            concurrency: 1,
            retry_initial_ms: 5_000,
            retry_max_ms: 60_000,
        };
        let delays: Vec<u64> = (0..7).map(|n| retry_delay_ms(&settings, n)).collect();
        assert_eq!(
            delays,
            [5_000, 10_000, 20_000, 40_000, 60_000, 60_000, 60_000]
        );
        assert_eq!(retry_delay_ms(&settings, u32::MAX), 60_000);
    }

    #[test]
    fn retry_log_admits_a_few_per_window() {
        let mut log = RetryLog::new();
        for _ in 0..RETRY_WARNINGS_PER_WINDOW {
            assert_eq!(log.admit(), Some(0));
        }
        assert_eq!(log.admit(), None);
        assert_eq!(log.admit(), None);
        // A new window reports how many were dropped.
        log.window_start -= RETRY_WARNING_WINDOW;
        assert_eq!(log.admit(), Some(2));
        assert_eq!(log.admit(), Some(0));
    }
}
