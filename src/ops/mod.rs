//! Operations: readiness, metrics, log setup and free disk space.

pub mod counting;
pub mod disk;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod metrics_http;

pub use metrics::Metrics;
