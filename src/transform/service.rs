//! The transformation service: variant cache lookups, single-flight computation on a bounded
//! blocking pool, and least-recently-used eviction by bytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OnceCell, Semaphore};

use super::codec::PixelError;
use super::pipeline::{self, Accepts, PipelineError, Settings};
use super::plan::{OutputFormat, Plan};
use super::TransformError;
use crate::config::TransformConfig;
use crate::ops::Metrics;
use crate::store::{Store, StoreError, VariantRecord};

/// Reasons a variant cannot be produced.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransformFailure {
    #[error(transparent)]
    Transform(#[from] TransformError),
    #[error(transparent)]
    Pixel(#[from] PixelError),
    #[error("all {workers} transformation workers are busy and {queued} requests are waiting")]
    Busy { workers: usize, queued: usize },
    /// The file of the source blob is missing from the data directory.
    #[error("the source file {} is missing", .0.display())]
    SourceMissing(std::path::PathBuf),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for TransformFailure {
    fn from(err: StoreError) -> Self {
        TransformFailure::Internal(err.to_string())
    }
}

impl From<PipelineError> for TransformFailure {
    fn from(err: PipelineError) -> Self {
        match err {
            PipelineError::Transform(err) => TransformFailure::Transform(err),
            PipelineError::Pixel(err) => TransformFailure::Pixel(err),
        }
    }
}

/// Returns whether an `Accept` header names `media_type` with a quality above 0 (RFC 9110,
/// section 12.5.1). Wildcards such as `image/*` do not count, because browsers name the image
/// formats they decode and older ones send `image/*` too.
fn accepts_media_type(accept: &str, media_type: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let named = parts
            .next()
            .is_some_and(|name| name.trim().eq_ignore_ascii_case(media_type));
        let quality = parts
            .filter_map(|param| param.split_once('='))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, value)| value.trim().parse::<f32>().ok());
        named && quality.is_some_and(|q| q > 0.0)
    })
}

/// A variant ready to serve.
#[derive(Debug, Clone)]
pub struct Variant {
    pub record: VariantRecord,
    /// False when this request computed the variant.
    pub cache_hit: bool,
}

type Flight = Arc<OnceCell<Result<VariantRecord, TransformFailure>>>;

/// Recency order of cached variants, kept in memory and rebuilt from the index at start.
#[derive(Default)]
struct Lru {
    tick: u64,
    /// Key → (last tick, bytes).
    entries: HashMap<String, (u64, u64)>,
    /// Tick → key, oldest first.
    order: BTreeMap<u64, String>,
    bytes: u64,
}

impl Lru {
    fn touch(&mut self, key: &str, size: u64) {
        self.tick += 1;
        let tick = self.tick;
        match self.entries.insert(key.to_owned(), (tick, size)) {
            Some((old_tick, old_size)) => {
                self.order.remove(&old_tick);
                self.bytes = self.bytes - old_size + size;
            }
            None => self.bytes += size,
        }
        self.order.insert(tick, key.to_owned());
    }

    fn remove(&mut self, key: &str) {
        if let Some((tick, size)) = self.entries.remove(key) {
            self.order.remove(&tick);
            self.bytes -= size;
        }
    }

    /// Takes the oldest keys until at most `cap` bytes remain.
    fn evict_to(&mut self, cap: u64) -> Vec<String> {
        let mut evicted = Vec::new();
        while self.bytes > cap {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, size)) = self.entries.remove(&key) {
                self.bytes -= size;
            }
            evicted.push(key);
        }
        evicted
    }
}

pub struct Transformer {
    store: Arc<Store>,
    settings: Settings,
    config: TransformConfig,
    workers: Arc<Semaphore>,
    worker_count: usize,
    queued: AtomicUsize,
    flights: Mutex<HashMap<String, Flight>>,
    lru: Mutex<Lru>,
    computations: AtomicU64,
    evictions: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Transformer {
    /// Builds the service and loads the recency list from the index (blocking).
    pub fn new(
        store: Arc<Store>,
        config: TransformConfig,
        max_source_pixels: u64,
        max_frames: u32,
        metrics: Arc<Metrics>,
    ) -> Result<Transformer, StoreError> {
        let worker_count = if config.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.workers
        };
        let mut lru = Lru::default();
        let mut existing = store.index().list_variants()?;
        existing.sort_by_key(|(_, record)| record.last_used);
        for (key, record) in existing {
            lru.touch(&key, record.size);
        }
        metrics.set_cache_bytes(lru.bytes);
        Ok(Transformer {
            settings: Settings {
                limits: super::Limits {
                    max_output_pixels: config.max_output_pixels,
                    max_output_side: config.max_output_side,
                },
                max_source_pixels,
                max_frames,
                default_quality: config.default_quality,
                auto_format: config.auto_format,
            },
            store,
            workers: Arc::new(Semaphore::new(worker_count)),
            worker_count,
            config,
            queued: AtomicUsize::new(0),
            flights: Mutex::new(HashMap::new()),
            lru: Mutex::new(lru),
            computations: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            metrics,
        })
    }

    pub fn named(&self) -> &BTreeMap<String, String> {
        &self.config.named
    }

    /// Returns the formats `f-auto` may pick for a request with this `Accept` header.
    pub fn accepts(&self, accept: &str) -> Accepts {
        Accepts {
            avif: self.config.auto_avif && accepts_media_type(accept, "image/avif"),
            webp: accepts_media_type(accept, "image/webp"),
        }
    }

    /// Returns whether the output format of `plan` depends on the `Accept` header.
    pub fn negotiates(&self, plan: &Plan) -> bool {
        match plan.format() {
            None => self.config.auto_format,
            Some(format) => format == OutputFormat::Auto,
        }
    }

    /// Variants computed since start (not served from the cache).
    pub fn computations(&self) -> u64 {
        self.computations.load(Ordering::Relaxed)
    }

    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    pub fn cached_bytes(&self) -> u64 {
        self.lru.lock().expect("LRU lock").bytes
    }

    /// Returns the variant of the original with hash `source` for `plan`, from the cache or
    /// computed once however many requests ask for it at the same time.
    pub async fn variant(
        &self,
        source: &str,
        plan: &Plan,
        accepts: Accepts,
    ) -> Result<Variant, TransformFailure> {
        let key = self.cache_key(source, plan, accepts);
        if let Some(record) = self.cached(&key).await? {
            self.metrics.record_cache_hit();
            return Ok(Variant {
                record,
                cache_hit: true,
            });
        }

        let flight = {
            let mut flights = self.flights.lock().expect("flight lock");
            flights.entry(key.clone()).or_default().clone()
        };
        let computed_here = std::sync::atomic::AtomicBool::new(false);
        let result = flight
            .get_or_init(|| async {
                computed_here.store(true, Ordering::Relaxed);
                self.compute(&key, source, plan, accepts).await
            })
            .await
            .clone();
        if computed_here.load(Ordering::Relaxed) {
            self.flights.lock().expect("flight lock").remove(&key);
        }
        let record = result?;
        let cache_hit = !computed_here.load(Ordering::Relaxed);
        if cache_hit {
            self.metrics.record_cache_hit();
        } else {
            self.metrics.record_cache_miss();
            self.metrics
                .record_transform_output(record.mime.trim_start_matches("image/"));
        }
        Ok(Variant { record, cache_hit })
    }

    fn cache_key(&self, source: &str, plan: &Plan, accepts: Accepts) -> String {
        let format = match plan.format() {
            Some(OutputFormat::Auto) | None if self.negotiates(plan) => {
                match (accepts.avif, accepts.webp) {
                    (true, true) => "auto-avif-webp",
                    (true, false) => "auto-avif",
                    (false, true) => "auto-webp",
                    (false, false) => "auto",
                }
            }
            None => "orig",
            Some(format) => format_token(format),
        };
        format!("{source}/{}/{format}", plan.canonical())
    }

    async fn cached(&self, key: &str) -> Result<Option<VariantRecord>, TransformFailure> {
        let index = self.store.index().clone();
        let owned = key.to_owned();
        let found = tokio::task::spawn_blocking(move || index.get_variant(&owned))
            .await
            .map_err(|err| TransformFailure::Internal(err.to_string()))??;
        let Some(record) = found else { return Ok(None) };
        if !self.store.blob_path(&record.hash).is_file() {
            // The file went missing (for example removed by hand); compute it again.
            return Ok(None);
        }
        self.lru.lock().expect("LRU lock").touch(key, record.size);
        Ok(Some(record))
    }

    async fn compute(
        &self,
        key: &str,
        source: &str,
        plan: &Plan,
        accepts: Accepts,
    ) -> Result<VariantRecord, TransformFailure> {
        let _permit = self.acquire_worker().await?;
        self.computations.fetch_add(1, Ordering::Relaxed);
        let path = self.store.blob_path(source);
        let plan = plan.clone();
        let settings = self.settings.clone();
        let started = std::time::Instant::now();
        let output = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&path).map_err(|err| match err.kind() {
                std::io::ErrorKind::NotFound => TransformFailure::SourceMissing(path.clone()),
                _ => {
                    TransformFailure::Internal(format!("failed to read {}: {err}", path.display()))
                }
            })?;
            pipeline::run(&bytes, &plan, accepts, &settings).map_err(TransformFailure::from)
        })
        .await
        .map_err(|err| {
            TransformFailure::Internal(format!("transformation task failed: {err}"))
        })??;
        tracing::debug!(hash = %source, key, bytes = output.bytes.len(),
            format = output.format.mime_type(), elapsed_ms = started.elapsed().as_millis() as u64,
            "variant computed");

        let hash = blake3::hash(&output.bytes).to_hex().to_string();
        let record = VariantRecord {
            hash: hash.clone(),
            size: output.bytes.len() as u64,
            mime: output.format.mime_type().to_owned(),
            last_used: unix_now(),
        };
        {
            let _guard = self.store.lock_blob(&hash).await;
            let store = self.store.clone();
            let key = key.to_owned();
            let stored = record.clone();
            let released =
                tokio::task::spawn_blocking(move || -> Result<Vec<String>, StoreError> {
                    store.blob_dirs().write_bytes(&output.bytes)?;
                    store.index().put_variant(&key, &stored)
                })
                .await
                .map_err(|err| TransformFailure::Internal(err.to_string()))??;
            self.remove_blobs(released).await;
        }
        let evicted = {
            let mut lru = self.lru.lock().expect("LRU lock");
            lru.touch(key, record.size);
            let evicted = lru.evict_to(self.config.cache_max_bytes);
            self.metrics.set_cache_bytes(lru.bytes);
            evicted
        };
        if !evicted.is_empty() {
            self.evict(evicted).await;
        }
        Ok(record)
    }

    async fn acquire_worker(&self) -> Result<tokio::sync::OwnedSemaphorePermit, TransformFailure> {
        if let Ok(permit) = self.workers.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let queued = self.queued.fetch_add(1, Ordering::SeqCst);
        if queued >= self.config.queue {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            self.metrics.record_transform_queue_rejection();
            return Err(TransformFailure::Busy {
                workers: self.worker_count,
                queued,
            });
        }
        self.metrics.set_transform_queue_depth(queued as u64 + 1);
        let permit = self.workers.clone().acquire_owned().await;
        let left = self.queued.fetch_sub(1, Ordering::SeqCst) - 1;
        self.metrics.set_transform_queue_depth(left as u64);
        permit.map_err(|_| TransformFailure::Internal("the transformation pool is closed".into()))
    }

    async fn evict(&self, keys: Vec<String>) {
        let count = keys.len() as u64;
        let index = self.store.index().clone();
        let removed = tokio::task::spawn_blocking(move || index.remove_variants(&keys)).await;
        match removed {
            Ok(Ok(released)) => {
                self.evictions.fetch_add(count, Ordering::Relaxed);
                for _ in 0..count {
                    self.metrics.record_cache_eviction();
                }
                self.remove_blobs(released).await;
            }
            Ok(Err(err)) => tracing::error!(error = %err, "failed to evict variants"),
            Err(err) => tracing::error!(error = %err, "variant eviction task failed"),
        }
    }

    /// Drops every variant of a source whose last record was deleted.
    pub async fn purge_source(&self, source_hash: &str) {
        let index = self.store.index().clone();
        let hash = source_hash.to_owned();
        let keys = match tokio::task::spawn_blocking(move || index.variant_keys_of(&hash)).await {
            Ok(Ok(keys)) => keys,
            Ok(Err(err)) => {
                tracing::error!(hash = source_hash, error = %err, "failed to list variants to purge");
                return;
            }
            Err(err) => {
                tracing::error!(hash = source_hash, error = %err, "variant purge task failed");
                return;
            }
        };
        if keys.is_empty() {
            return;
        }
        {
            let mut lru = self.lru.lock().expect("LRU lock");
            for key in &keys {
                lru.remove(key);
            }
            self.metrics.set_cache_bytes(lru.bytes);
        }
        let index = self.store.index().clone();
        match tokio::task::spawn_blocking(move || index.remove_variants(&keys)).await {
            Ok(Ok(released)) => self.remove_blobs(released).await,
            Ok(Err(err)) => {
                tracing::error!(hash = source_hash, error = %err, "failed to purge variants")
            }
            Err(err) => {
                tracing::error!(hash = source_hash, error = %err, "variant purge task failed")
            }
        }
    }

    async fn remove_blobs(&self, hashes: Vec<String>) {
        for hash in hashes {
            let _guard = self.store.lock_blob(&hash).await;
            // A new reference may have appeared between the commit and this lock.
            let index = self.store.index().clone();
            let dirs = self.store.blob_dirs().clone();
            let check = hash.clone();
            let result = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
                if index.get_blob(&check)?.is_none() {
                    dirs.remove(&check)?;
                }
                Ok(())
            })
            .await;
            if let Ok(Err(err)) | Err(err) = result.map_err(|e| StoreError::Task(e.to_string())) {
                tracing::error!(hash, error = %err, "failed to remove an unreferenced variant blob");
            }
        }
    }
}

fn format_token(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Auto => "auto",
        OutputFormat::Jpeg => "jpg",
        OutputFormat::Png => "png",
        OutputFormat::Webp => "webp",
        OutputFormat::Avif => "avif",
        OutputFormat::Gif => "gif",
        OutputFormat::Original => "orig",
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::accepts_media_type;

    #[test]
    fn accept_header_table() {
        for (accept, webp) in [
            ("image/webp,*/*", true),
            ("image/avif,image/webp,image/apng,*/*;q=0.8", true),
            ("IMAGE/WEBP", true),
            ("text/html, image/webp ; q=0.5", true),
            ("image/webp;q=0", false),
            ("image/webp; q=0.0", false),
            ("image/webp;q=zero", false),
            ("image/*,*/*", false),
            ("image/webpx", false),
            ("", false),
        ] {
            assert_eq!(accepts_media_type(accept, "image/webp"), webp, "{accept:?}");
        }
        assert!(!accepts_media_type(
            "image/avif;q=0,image/webp",
            "image/avif"
        ));
    }
}
