//! Prometheus metrics: every family kura exposes, the functions that update them, and the text
//! exposition format (version 0.0.4) served at `GET /metrics`.
//!
//! Families for features that are not built yet (transformations, the transform cache and queue)
//! are registered now so their names are fixed. Nothing calls their update functions yet, so their
//! plain counters and gauges read 0, and their labelled families (`kura_transform_outputs_total`)
//! are left out of the output until a first series exists. `kura_replication_jobs` has series
//! only while IPFS replication is on.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::store::UsageSnapshot;

/// `Content-Type` of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds of the request latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds of the upload size buckets, in bytes: powers of 4 from 1 KiB to 4 GiB.
fn upload_size_buckets() -> impl Iterator<Item = f64> {
    (0..12).map(|power| 1024.0 * 4f64.powi(power))
}

/// The part of the server a request went to; the `route` label of the HTTP families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// `/api` and everything below it.
    Api,
    /// Public file URLs: `GET`/`HEAD` of one path segment, and `/ipfs/…`.
    Delivery,
    /// `/healthz` and `/readyz`.
    Health,
    /// `/metrics`.
    Metrics,
    /// Anything else, such as `/` or a `POST` to a file URL.
    Other,
}

impl RouteClass {
    pub fn of(method: &hyper::Method, path: &str) -> RouteClass {
        if path == "/healthz" || path == "/readyz" {
            return RouteClass::Health;
        }
        if path == "/metrics" {
            return RouteClass::Metrics;
        }
        if path == "/api" || path.starts_with("/api/") {
            return RouteClass::Api;
        }
        let get_or_head = method == hyper::Method::GET || method == hyper::Method::HEAD;
        // The path form of a transformation (`/tr:CHAIN/…`) comes before a name or a CID path.
        let target = path.trim_start_matches('/');
        let target = match target.strip_prefix("tr:") {
            Some(rest) => rest.split_once('/').map_or("", |(_, target)| target),
            None => target,
        };
        if get_or_head
            && (target.starts_with("ipfs/") || (!target.is_empty() && !target.contains('/')))
        {
            return RouteClass::Delivery;
        }
        RouteClass::Other
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Api => "api",
            RouteClass::Delivery => "delivery",
            RouteClass::Health => "health",
            RouteClass::Metrics => "metrics",
            RouteClass::Other => "other",
        }
    }
}

impl EncodeLabelValue for RouteClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: RouteClass,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: RouteClass,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FormatLabels {
    format: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The registry and a handle to every family. Cheap to update from any thread.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<RequestLabels, Counter>,
    http_duration: HistogramFamily<RouteLabels>,
    http_response_body_bytes: Family<RouteLabels, Counter>,
    http_received_bytes: Counter,
    http_sent_bytes: Counter,
    uploads: Counter,
    upload_size: Histogram,
    upload_rejections: Family<CodeLabels, Counter>,
    media_records: Gauge,
    blob_store_blobs: Gauge,
    blob_store_bytes: Gauge,
    transform_outputs: Family<FormatLabels, Counter>,
    transform_cache_hits: Counter,
    transform_cache_misses: Counter,
    transform_cache_evictions: Counter,
    transform_cache_bytes: Gauge,
    transform_queue_depth: Gauge,
    transform_queue_rejections: Counter,
    replication_jobs: Family<StateLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            // Replaced by `register_all`, which needs the families built first.
            registry: Registry::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(|| {
                Histogram::new(LATENCY_BUCKETS.iter().copied())
            }),
            http_response_body_bytes: Family::default(),
            http_received_bytes: Counter::default(),
            http_sent_bytes: Counter::default(),
            uploads: Counter::default(),
            upload_size: Histogram::new(upload_size_buckets()),
            upload_rejections: Family::default(),
            media_records: Gauge::default(),
            blob_store_blobs: Gauge::default(),
            blob_store_bytes: Gauge::default(),
            transform_outputs: Family::default(),
            transform_cache_hits: Counter::default(),
            transform_cache_misses: Counter::default(),
            transform_cache_evictions: Counter::default(),
            transform_cache_bytes: Gauge::default(),
            transform_queue_depth: Gauge::default(),
            transform_queue_rejections: Counter::default(),
            replication_jobs: Family::default(),
        };
        metrics.register_all();
        metrics
    }

    fn register_all(&mut self) {
        let m = &*self;
        let mut r = Registry::with_prefix("kura");
        r.register(
            "http_requests",
            "HTTP requests answered, by route class and status code",
            m.http_requests.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "Time from receiving a request to sending its response head, by route class; \
             streaming a file body afterwards is not included",
            Unit::Seconds,
            m.http_duration.clone(),
        );
        r.register_with_unit(
            "http_response_body",
            "Response body bytes handed to client connections, by route class",
            Unit::Bytes,
            m.http_response_body_bytes.clone(),
        );
        r.register_with_unit(
            "http_received",
            "Bytes read from client connections, request heads and bodies included",
            Unit::Bytes,
            m.http_received_bytes.clone(),
        );
        r.register_with_unit(
            "http_sent",
            "Bytes written to client connections, response heads and bodies included",
            Unit::Bytes,
            m.http_sent_bytes.clone(),
        );
        r.register(
            "uploads",
            "Files stored through the upload API, single and batch",
            m.uploads.clone(),
        );
        r.register_with_unit(
            "upload_size",
            "Sizes of the files stored through the upload API",
            Unit::Bytes,
            m.upload_size.clone(),
        );
        r.register(
            "upload_rejections",
            "Uploads rejected, by error code: one per rejected file of a batch, one per rejected request otherwise",
            m.upload_rejections.clone(),
        );
        r.register(
            "media_records",
            "Media records in the index",
            m.media_records.clone(),
        );
        r.register(
            "blob_store_blobs",
            "Distinct blob files that uploads use, without cached variants",
            m.blob_store_blobs.clone(),
        );
        r.register_with_unit(
            "blob_store",
            "Bytes of the distinct blob files that uploads use",
            Unit::Bytes,
            m.blob_store_bytes.clone(),
        );
        r.register(
            "transform_outputs",
            "Transformed images produced, by output format",
            m.transform_outputs.clone(),
        );
        r.register(
            "transform_cache_hits",
            "Transformed variants served from the cache",
            m.transform_cache_hits.clone(),
        );
        r.register(
            "transform_cache_misses",
            "Transformed variants not found in the cache",
            m.transform_cache_misses.clone(),
        );
        r.register(
            "transform_cache_evictions",
            "Variants evicted from the cache to stay under transform.cache_max_bytes",
            m.transform_cache_evictions.clone(),
        );
        r.register_with_unit(
            "transform_cache",
            "Bytes of the variants in the cache",
            Unit::Bytes,
            m.transform_cache_bytes.clone(),
        );
        r.register(
            "transform_queue_depth",
            "Transformations waiting for a worker",
            m.transform_queue_depth.clone(),
        );
        r.register(
            "transform_queue_rejections",
            "Transformations rejected with 503 because the queue was full",
            m.transform_queue_rejections.clone(),
        );
        r.register(
            "replication_jobs",
            "IPFS replication jobs, by state (no series while replication is off)",
            m.replication_jobs.clone(),
        );
        self.registry = r;
    }

    /// Counts one completed request and its time to the response head.
    pub fn observe_request(&self, route: RouteClass, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    /// Returns the counter of response body bytes for `route`, for a body to update as it streams.
    pub fn response_body_counter(&self, route: RouteClass) -> Counter {
        self.http_response_body_bytes
            .get_or_create_owned(&RouteLabels { route })
    }

    /// Returns the (received, sent) byte counters that client connections update.
    pub fn connection_counters(&self) -> (Counter, Counter) {
        (
            self.http_received_bytes.clone(),
            self.http_sent_bytes.clone(),
        )
    }

    pub fn record_upload(&self, size: u64) {
        self.uploads.inc();
        self.upload_size.observe(size as f64);
    }

    pub fn record_upload_rejection(&self, code: &str) {
        self.upload_rejections
            .get_or_create(&CodeLabels {
                code: code.to_owned(),
            })
            .inc();
    }

    /// Counts one transformed image of `format` (e.g. `webp`).
    pub fn record_transform_output(&self, format: &str) {
        self.transform_outputs
            .get_or_create(&FormatLabels {
                format: format.to_owned(),
            })
            .inc();
    }

    pub fn record_cache_hit(&self) {
        self.transform_cache_hits.inc();
    }

    pub fn record_cache_miss(&self) {
        self.transform_cache_misses.inc();
    }

    pub fn record_cache_eviction(&self) {
        self.transform_cache_evictions.inc();
    }

    pub fn set_cache_bytes(&self, bytes: u64) {
        self.transform_cache_bytes.set(saturating_i64(bytes));
    }

    pub fn set_transform_queue_depth(&self, depth: u64) {
        self.transform_queue_depth.set(saturating_i64(depth));
    }

    pub fn record_transform_queue_rejection(&self) {
        self.transform_queue_rejections.inc();
    }

    /// Sets how many replication jobs are in `state` (`pending`, `pinned`, `failed`,
    /// `unpin_pending`, `unpin_failed`). `GET /metrics` sets them from the IPFS job counts while
    /// replication is on.
    pub fn set_replication_jobs(&self, state: &str, count: u64) {
        self.replication_jobs
            .get_or_create(&StateLabels {
                state: state.to_owned(),
            })
            .set(saturating_i64(count));
    }

    /// Encodes every family in the text exposition format, with the store gauges set from `usage`.
    pub fn encode(&self, usage: UsageSnapshot) -> String {
        self.media_records.set(saturating_i64(usage.media));
        self.blob_store_blobs.set(saturating_i64(usage.blobs));
        self.blob_store_bytes.set(saturating_i64(usage.blob_bytes));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Method;

    #[test]
    fn route_classes() {
        let cases: &[(Method, &str, RouteClass)] = &[
            (Method::GET, "/healthz", RouteClass::Health),
            (Method::GET, "/readyz", RouteClass::Health),
            (Method::GET, "/metrics", RouteClass::Metrics),
            (Method::GET, "/api/media", RouteClass::Api),
            (Method::POST, "/api/media/batch", RouteClass::Api),
            (Method::GET, "/api", RouteClass::Api),
            (Method::GET, "/apidocs.png", RouteClass::Delivery),
            (Method::GET, "/photo.jpg", RouteClass::Delivery),
            (Method::HEAD, "/photo.jpg", RouteClass::Delivery),
            (Method::GET, "/ipfs/bafkqaaa", RouteClass::Delivery),
            (
                Method::GET,
                "/tr:w-300,h-200/photo.jpg",
                RouteClass::Delivery,
            ),
            (Method::GET, "/tr:w-300/ipfs/bafkqaaa", RouteClass::Delivery),
            (Method::GET, "/tr:w-300", RouteClass::Other),
            (Method::GET, "/tr:w-300/a/b", RouteClass::Other),
            (Method::POST, "/photo.jpg", RouteClass::Other),
            (Method::GET, "/", RouteClass::Other),
            (Method::GET, "/a/b", RouteClass::Other),
        ];
        for (method, path, expected) in cases {
            assert_eq!(RouteClass::of(method, path), *expected, "{method} {path}");
        }
    }

    #[test]
    fn encoding_names_every_family() {
        let metrics = Metrics::new();
        metrics.observe_request(RouteClass::Api, 201, Duration::from_millis(3));
        metrics.record_upload(2048);
        let text = metrics.encode(UsageSnapshot {
            media: 2,
            blobs: 1,
            blob_bytes: 2048,
        });
        for line in [
            "kura_http_requests_total{route=\"api\",status=\"201\"} 1",
            "kura_http_request_duration_seconds_count{route=\"api\"} 1",
            "kura_uploads_total 1",
            "kura_upload_size_bytes_sum 2048.0",
            "kura_media_records 2",
            "kura_blob_store_blobs 1",
            "kura_blob_store_bytes 2048",
            "kura_transform_cache_hits_total 0",
            "kura_transform_queue_depth 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // prometheus-client prints a labelled family only once it has a series.
        assert!(!text.contains("kura_transform_outputs_total"), "{text}");
        assert!(!text.contains("kura_replication_jobs"), "{text}");
    }

    #[test]
    fn registration_points_use_fixed_names() {
        let metrics = Metrics::new();
        metrics.record_transform_output("webp");
        metrics.record_cache_hit();
        metrics.record_cache_miss();
        metrics.record_cache_eviction();
        metrics.set_cache_bytes(4096);
        metrics.set_transform_queue_depth(3);
        metrics.record_transform_queue_rejection();
        metrics.set_replication_jobs("queued", 5);
        let text = metrics.encode(UsageSnapshot::default());
        for line in [
            "kura_transform_outputs_total{format=\"webp\"} 1",
            "kura_transform_cache_hits_total 1",
            "kura_transform_cache_misses_total 1",
            "kura_transform_cache_evictions_total 1",
            "kura_transform_cache_bytes 4096",
            "kura_transform_queue_depth 3",
            "kura_transform_queue_rejections_total 1",
            "kura_replication_jobs{state=\"queued\"} 5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
