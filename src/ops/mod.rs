//! Operations: readiness, metrics, log setup, free disk space, and the store tools behind
//! `kura import`, `kura gc` and `kura stats`.

pub mod counting;
pub mod disk;
pub mod gc;
pub mod health;
pub mod import;
pub mod logging;
pub mod metrics;
pub mod metrics_http;
pub mod stats;
pub mod systemd;

pub use metrics::Metrics;
