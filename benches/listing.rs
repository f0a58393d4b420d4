//! Listing cost against store size: reading page 1 and a page near the end of 100 000 records must
//! take about the same time, in the index and over HTTP.

use criterion::{criterion_group, criterion_main, Criterion};
use kura::config::Config;
use kura::store::{self, MediaType, NewMedia, ProbeLimits, Store};
use kura::AppState;

const RECORDS: u64 = 100_000;
const LIMIT: u64 = 20;

/// Fills a fresh store with `RECORDS` records in batches of 10 000 per transaction. The records
/// name hashes without blob files, which listing never opens.
fn seeded_store(dir: &std::path::Path) -> (Store, String) {
    let limits = ProbeLimits {
        max_source_pixels: 100_000_000,
        max_frames: 1000,
    };
    let store = Store::open(dir, limits).unwrap();
    let key = store::create_api_key(store.index(), "bench").unwrap();
    for batch in 0..RECORDS / 10_000 {
        let records = (0..10_000)
            .map(|n| {
                let serial = batch * 10_000 + n;
                NewMedia {
                    id: uuid::Uuid::new_v4().to_string(),
                    wanted_name: format!("image-{serial}.png"),
                    media_type: MediaType::Png,
                    size: 1000,
                    width: Some(10),
                    height: Some(10),
                    frames: Some(1),
                    duration_secs: None,
                    alt: None,
                    hash: format!("{serial:064x}"),
                    cid: String::new(),
                    uploaded_at: store::now_rfc3339(),
                }
            })
            .collect();
        store.index().insert_media_many(records).unwrap();
    }
    (store, key)
}

fn listing(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = seeded_store(dir.path());
    let last_page = RECORDS / LIMIT;

    let mut group = c.benchmark_group("listing_100k_index");
    group.bench_function("page_1", |b| {
        b.iter(|| store.index().list_page(0, LIMIT).unwrap())
    });
    group.bench_function("page_near_end", |b| {
        b.iter(|| {
            store
                .index()
                .list_page((last_page - 1) * LIMIT, LIMIT)
                .unwrap()
        })
    });
    group.finish();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut config = Config::default();
    config.storage.data_dir = dir.path().to_path_buf();
    let state = AppState::new(config, store).unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(kura::run(listener, state, std::future::pending()));
    let client = reqwest::Client::new();
    let get = |page: u64| {
        let request = client
            .get(format!("http://{addr}/api/media?page={page}&limit={LIMIT}"))
            .header("authorization", format!("Bearer {key}"));
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap()
        }
    };

    let mut group = c.benchmark_group("listing_100k_http");
    group.bench_function("page_1", |b| b.to_async(&runtime).iter(|| get(1)));
    group.bench_function("page_near_end", |b| {
        b.to_async(&runtime).iter(|| get(last_page - 1))
    });
    group.finish();
}

criterion_group!(benches, listing);
criterion_main!(benches);
