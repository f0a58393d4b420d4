//! IPFS against a real node: CIDs equal to the node's, replication through the durable queue,
//! unpinning, serving and transforming by CID, repair and read-through restores.
//!
//! These tests need the node that `tools/test.sh` starts; it exports the node's URL as
//! `KURA_TEST_IPFS_API`. Tests that stop and start a node run their own, with the same script.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{kura, Server};
use rand::{RngCore, SeedableRng};
use serde_json::Value;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const CHUNK: usize = 256 * KIB;

/// Returns the URL of the node started by `tools/test.sh`.
fn node_api() -> String {
    std::env::var("KURA_TEST_IPFS_API").unwrap_or_else(|_| {
        panic!(
            "KURA_TEST_IPFS_API is not set. The IPFS tests need the node that tools/test.sh \
             installs and starts; run `tools/test.sh` (extra arguments go to cargo test, e.g. \
             `tools/test.sh pinned` runs the tests whose names contain `pinned`)"
        )
    })
}

/// Returns `len` random bytes that differ between calls, so that no two tests share a blob.
fn unique_bytes(len: usize) -> Vec<u8> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(nanos ^ (count << 48));
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// Builds a valid 1×1 PNG of exactly `total_len` bytes: random bytes fill a private ancillary
/// chunk, which decoders skip.
fn padded_png(total_len: usize) -> Vec<u8> {
    let encode = |padding: Option<&[u8]>| {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, 1, 1);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        if let Some(padding) = padding {
            writer
                .write_chunk(png::chunk::ChunkType(*b"prVt"), padding)
                .unwrap();
        }
        writer.write_image_data(&[1, 2, 3, 255]).unwrap();
        writer.finish().unwrap();
        out
    };
    // A chunk adds 12 bytes around its data: length, type and CRC.
    let bare = encode(None).len();
    assert!(
        total_len >= bare + 12,
        "{total_len} bytes is too small for a PNG"
    );
    let png = encode(Some(&unique_bytes(total_len - bare - 12)));
    assert_eq!(png.len(), total_len);
    png
}

fn node_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// Returns the CID the node computes for `bytes` with kura's add options, storing nothing.
async fn node_cid(api: &str, bytes: Vec<u8>) -> String {
    // js-ipfs treats a part as a file only when it has this content type.
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name("f")
        .mime_str("application/octet-stream")
        .unwrap();
    let form = reqwest::multipart::Form::new().part("file", part);
    let response = node_client()
        .post(format!(
            "{api}/api/v0/add?only-hash=true&cid-version=1&raw-leaves=true&chunker=size-262144&hash=sha2-256"
        ))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["Hash"].as_str().unwrap().to_owned()
}

/// Returns whether the node pins `cid` recursively.
async fn node_pins(api: &str, cid: &str) -> bool {
    let response = node_client()
        .post(format!(
            "{api}/api/v0/pin/ls?arg={cid}&type=recursive&timeout=10s"
        ))
        .send()
        .await
        .unwrap();
    let ok = response.status() == 200;
    let body: Value = response.json().await.unwrap();
    if !ok {
        let message = body["Message"].as_str().unwrap_or("");
        assert!(message.contains("not pinned"), "pin/ls failed: {body}");
        return false;
    }
    body["Keys"].get(cid).is_some()
}

/// Polls `check` every 100 ms until it returns `Some`, failing after `limit`.
async fn wait_for<T, F, Fut>(condition: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {condition}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes a config file that turns replication on against `api_url`, with fast retries;
/// `overrides` replace or add `[ipfs]` keys (values in TOML syntax).
fn write_config(dir: &Path, api_url: &str, overrides: &[(&str, &str)]) -> PathBuf {
    let api_url = format!("{api_url:?}");
    let mut keys = vec![
        ("enabled", "true"),
        ("api_url", api_url.as_str()),
        ("timeout_secs", "30"),
        ("retry_initial_secs", "1"),
        ("retry_max_secs", "1"),
    ];
    for (key, value) in overrides {
        keys.retain(|(existing, _)| existing != key);
        keys.push((key, value));
    }
    let mut text = String::from("[ipfs]\n");
    for (key, value) in keys {
        text.push_str(&format!("{key} = {value}\n"));
    }
    let path = dir.join("kura.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A kura server with replication on, and the directory that contains its config file.
struct Replicating {
    server: Server,
    config: PathBuf,
    _config_dir: tempfile::TempDir,
}

async fn start_replicating(api_url: &str, overrides: &[(&str, &str)]) -> Replicating {
    let config_dir = tempfile::tempdir().unwrap();
    let config = write_config(config_dir.path(), api_url, overrides);
    let server = Server::start_with(&["--config", config.to_str().unwrap()]).await;
    Replicating {
        server,
        config,
        _config_dir: config_dir,
    }
}

async fn upload(server: &Server, name: &str, bytes: Vec<u8>) -> Value {
    let (status, body) = server.upload(name, bytes).await;
    assert_eq!(status, 201, "{body}");
    body["data"].clone()
}

async fn media(server: &Server, id: &str) -> Value {
    let (status, body) = server.json(&format!("/api/media/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// Waits until the record's `ipfs.status` is `status` and returns the record.
async fn wait_for_status(server: &Server, id: &str, status: &str, limit: Duration) -> Value {
    wait_for(&format!("ipfs.status {status} of {id}"), limit, || async {
        let item = media(server, id).await;
        (item["ipfs"]["status"] == status).then_some(item)
    })
    .await
}

fn blob_path(server: &Server, hash: &str) -> PathBuf {
    server
        .data_dir
        .join("blobs")
        .join(&hash[0..2])
        .join(&hash[2..4])
        .join(hash)
}

/// An IPFS node of a test's own, which the test may stop and start on the same port.
struct PrivateNode {
    repo: tempfile::TempDir,
    url: String,
}

impl PrivateNode {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/start-ipfs.sh")
    }

    fn start() -> PrivateNode {
        // Fail with the tools/test.sh hint, not an install attempt, when the node is missing.
        node_api();
        let repo = tempfile::tempdir().unwrap();
        let url = PrivateNode::run(repo.path(), &["0", "0"]);
        PrivateNode { repo, url }
    }

    fn run(repo: &Path, args: &[&str]) -> String {
        let output = Command::new(PrivateNode::script())
            .args(args)
            .env("IPFS_PATH", repo)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "start-ipfs.sh {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        stdout.lines().last().unwrap_or("").trim().to_owned()
    }

    fn port(&self) -> String {
        self.url.rsplit(':').next().unwrap().to_owned()
    }

    fn stop(&self) {
        PrivateNode::run(self.repo.path(), &["stop"]);
    }

    fn start_again(&self) {
        let url = PrivateNode::run(self.repo.path(), &[&self.port(), "0"]);
        assert_eq!(url, self.url, "the node came back on another port");
    }
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        let _ = Command::new(PrivateNode::script())
            .arg("stop")
            .env("IPFS_PATH", self.repo.path())
            .output();
    }
}

#[tokio::test]
async fn builder_matches_node_below_media_sizes() {
    // Kura stores no empty or 1-byte files (neither is valid media), so these sizes are checked
    // on the CID builder directly against the node.
    let api = node_api();
    for len in [0, 1] {
        let bytes = unique_bytes(len);
        let mut builder = kura::ipfs::cid_builder::CidBuilder::new(
            kura::ipfs::cid_builder::CidOptions::default(),
        );
        builder.update(&bytes);
        let ours = builder.finish().to_string();
        assert_eq!(ours, node_cid(&api, bytes).await, "{len} bytes");
    }
}

#[tokio::test]
async fn upload_cid_matches_node_at_chunk_edges() {
    let api = node_api();
    // Replication stays off: CIDs are computed at upload whatever the node's state.
    let server = Server::start().await;
    let sizes = [
        // One short raw leaf.
        CHUNK - 1,
        // Exactly one full leaf, still a raw-leaf root.
        CHUNK,
        // Two leaves under a dag-pb root.
        CHUNK + 1,
        // One full node of 174 leaves.
        174 * CHUNK,
        // The root grows a level for a one-byte leaf.
        174 * CHUNK + 1,
        // 40 leaves under one node.
        10 * MIB,
        // A height-2 root over a full node and a partial one.
        60 * MIB,
    ];
    for len in sizes {
        let png = padded_png(len);
        let expected = node_cid(&api, png.clone()).await;
        let item = upload(&server, "edge.png", png).await;
        assert_eq!(item["size"], len, "{len} bytes");
        assert_eq!(item["cid"], expected.as_str(), "{len} bytes");
        assert!(
            item.get("ipfs").is_none(),
            "no ipfs status while replication is off"
        );
    }
    let (status, body) = server.json("/api/ipfs").await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["enabled"], false);
}

#[tokio::test]
async fn ten_mib_upload_is_pinned_within_seconds() {
    let api = node_api();
    let replicating = start_replicating(&api, &[]).await;
    let server = &replicating.server;

    let started = Instant::now();
    let item = upload(server, "ten.png", padded_png(10 * MIB)).await;
    let uploaded = started.elapsed();
    let id = item["id"].as_str().unwrap();
    let cid = item["cid"].as_str().unwrap();
    assert!(
        ["pending", "pinned"].contains(&item["ipfs"]["status"].as_str().unwrap()),
        "{item}"
    );
    let pinned = wait_for_status(server, id, "pinned", Duration::from_secs(30)).await;
    eprintln!(
        "10 MiB: upload answered after {:.0} ms, pinned after {:.0} ms",
        uploaded.as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert!(pinned["ipfs"]["pinnedAt"].is_string(), "{pinned}");
    assert!(pinned["ipfs"].get("error").is_none(), "{pinned}");
    assert!(node_pins(&api, cid).await, "the node pins {cid}");

    let (status, body) = server.json("/api/ipfs").await;
    assert_eq!(status, 200);
    let data = &body["data"];
    assert_eq!(data["enabled"], true);
    assert_eq!(data["node"]["reachable"], true, "{data}");
    assert!(data["node"]["version"].is_string(), "{data}");
    assert_eq!(data["jobs"]["pinned"], 1, "{data}");
    assert_eq!(data["jobs"]["pending"], 0, "{data}");
    assert_eq!(data["cid"]["chunkSize"], 262_144);

    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("kura_replication_jobs{state=\"pinned\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn node_down_then_up_pins_without_help() {
    let node = PrivateNode::start();
    node.stop();
    let replicating = start_replicating(&node.url, &[]).await;
    let server = &replicating.server;

    let mut ids = Vec::new();
    for n in 0..3 {
        let started = Instant::now();
        let item = upload(server, &format!("down{n}.png"), padded_png(300 * KIB)).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "an upload waited for the node"
        );
        assert_eq!(item["ipfs"]["status"], "pending", "{item}");
        ids.push(item["id"].as_str().unwrap().to_owned());
    }
    // The worker has tried and recorded why it failed.
    let failing = wait_for("a recorded node error", Duration::from_secs(30), || async {
        let item = media(server, &ids[0]).await;
        item["ipfs"]["error"].is_string().then_some(item)
    })
    .await;
    assert_eq!(failing["ipfs"]["status"], "pending", "{failing}");
    let (_, status) = server.json("/api/ipfs").await;
    assert_eq!(status["data"]["node"]["reachable"], false, "{status}");
    assert_eq!(status["data"]["jobs"]["pending"], 3, "{status}");

    node.start_again();
    for id in &ids {
        let item = wait_for_status(server, id, "pinned", Duration::from_secs(60)).await;
        assert!(
            node_pins(&node.url, item["cid"].as_str().unwrap()).await,
            "{item}"
        );
    }
    assert!(
        server.log().contains("IPFS job failed; will retry"),
        "retries are logged"
    );
}

#[tokio::test]
async fn pending_jobs_survive_restart() {
    let api = node_api();
    // Nothing listens on this port once the listener is dropped.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let mut replicating = start_replicating(&dead, &[]).await;
    let item = upload(&replicating.server, "restart.png", padded_png(70 * KIB)).await;
    let id = item["id"].as_str().unwrap().to_owned();
    wait_for("a failed attempt", Duration::from_secs(30), || async {
        let item = media(&replicating.server, &id).await;
        item["ipfs"]["error"].is_string().then_some(())
    })
    .await;

    let status = replicating.server.stop();
    assert!(status.success(), "{status}");
    write_config(replicating.config.parent().unwrap(), &api, &[]);
    replicating.server.restart().await;

    let item = wait_for_status(&replicating.server, &id, "pinned", Duration::from_secs(30)).await;
    assert!(node_pins(&api, item["cid"].as_str().unwrap()).await);
}

#[tokio::test]
async fn last_delete_unpins() {
    let api = node_api();
    let replicating = start_replicating(&api, &[]).await;
    let server = &replicating.server;
    let png = padded_png(40 * KIB);
    let first = upload(server, "one.png", png.clone()).await;
    let second = upload(server, "two.png", png).await;
    assert_eq!(first["cid"], second["cid"]);
    let cid = first["cid"].as_str().unwrap().to_owned();
    for item in [&first, &second] {
        wait_for_status(
            server,
            item["id"].as_str().unwrap(),
            "pinned",
            Duration::from_secs(30),
        )
        .await;
    }
    assert!(node_pins(&api, &cid).await);

    let delete = |id: String| {
        let request = server
            .client
            .delete(server.url(&format!("/api/media/{id}")))
            .header("authorization", server.auth());
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(delete(first["id"].as_str().unwrap().to_owned()).await, 200);
    // Another record still uses the blob, so the pin stays.
    let (_, status) = server.json("/api/ipfs").await;
    assert_eq!(status["data"]["unpins"]["pending"], 0, "{status}");
    assert!(node_pins(&api, &cid).await);

    assert_eq!(delete(second["id"].as_str().unwrap().to_owned()).await, 200);
    wait_for(
        "the node to drop the pin",
        Duration::from_secs(30),
        || async { (!node_pins(&api, &cid).await).then_some(()) },
    )
    .await;
    let status = wait_for(
        "the unpin job to finish",
        Duration::from_secs(10),
        || async {
            let (_, status) = server.json("/api/ipfs").await;
            (status["data"]["unpins"]["pending"] == 0).then_some(status)
        },
    )
    .await;
    assert_eq!(status["data"]["jobs"]["pinned"], 0, "{status}");
}

#[tokio::test]
async fn cid_route_serves_with_range_and_304() {
    let server = Server::start().await;
    let png = padded_png(CHUNK + 1);
    let item = upload(&server, "by-cid.png", png.clone()).await;
    let cid_text = item["cid"].as_str().unwrap();
    let hash = item["hash"].as_str().unwrap();
    let path = format!("/ipfs/{cid_text}");

    let response = server.client.get(server.url(&path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.headers()["etag"], format!("\"{hash}\""));
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), png.as_slice());

    let head = server.client.head(server.url(&path)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], png.len().to_string());

    let partial = server
        .client
        .get(server.url(&path))
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(partial.status(), 206);
    assert_eq!(
        partial.headers()["content-range"],
        format!("bytes 100-199/{}", png.len())
    );
    assert_eq!(partial.bytes().await.unwrap().as_ref(), &png[100..200]);

    let cached = server
        .client
        .get(server.url(&path))
        .header("if-none-match", format!("\"{hash}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);

    // Other spellings of the same CID name the same blob.
    let cid = cid::Cid::try_from(cid_text).unwrap();
    let v0 = cid::Cid::new_v0(*cid.hash()).unwrap();
    let spellings = [
        cid.to_string_of_base(cid::multibase::Base::Base58Btc)
            .unwrap(),
        cid.to_string_of_base(cid::multibase::Base::Base32Upper)
            .unwrap(),
        cid.to_string_of_base(cid::multibase::Base::Base36Lower)
            .unwrap(),
        cid.to_string_of_base(cid::multibase::Base::Base64Url)
            .unwrap(),
        // The root of a file over one chunk is dag-pb, so its CIDv0 names it too.
        v0.to_string(),
    ];
    let get = |text: &str| {
        server
            .client
            .get(server.url(&format!("/ipfs/{text}")))
            .send()
    };
    for spelling in spellings {
        let response = get(&spelling).await.unwrap();
        assert_eq!(response.status(), 200, "{spelling}");
        assert_eq!(
            response.bytes().await.unwrap().as_ref(),
            png.as_slice(),
            "{spelling}"
        );
    }

    let unknown = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    for bad in [unknown, "not-a-cid", "", "bafy"] {
        let response = get(bad).await.unwrap();
        assert_eq!(response.status(), 404, "{bad:?}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "not_found", "{bad:?}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(bad),
            "{body}"
        );
    }
}

#[tokio::test]
async fn cid_route_transforms_images() {
    let server = Server::start().await;
    let item = upload(&server, "rocket.jpg", common::read_fixture("rocket.jpg")).await;
    let cid_text = item["cid"].as_str().unwrap();
    let get = |path: String| server.client.get(server.url(&path)).send();

    let query_form = get(format!("/ipfs/{cid_text}?tr=w-120,f-png"))
        .await
        .unwrap();
    assert_eq!(query_form.status(), 200);
    assert_eq!(query_form.headers()["content-type"], "image/png");
    assert_eq!(query_form.headers()["x-cache"], "miss");
    assert_eq!(
        query_form.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let etag = query_form.headers()["etag"].to_str().unwrap().to_owned();
    let bytes = query_form.bytes().await.unwrap();
    let thumbnail = image::load_from_memory(&bytes).unwrap();
    assert_eq!(thumbnail.width(), 120);

    // The path form and the name URL share the variant with the query form.
    let path_form = get(format!("/tr:f-png,w-120/ipfs/{cid_text}"))
        .await
        .unwrap();
    assert_eq!(path_form.status(), 200);
    assert_eq!(path_form.headers()["x-cache"], "hit");
    assert_eq!(path_form.bytes().await.unwrap(), bytes);
    let by_name = get("/rocket.jpg?tr=w-120,f-png".to_owned()).await.unwrap();
    assert_eq!(by_name.headers()["x-cache"], "hit");
    assert_eq!(by_name.headers()["etag"].to_str().unwrap(), etag);

    let revalidated = server
        .client
        .get(server.url(&format!("/ipfs/{cid_text}?tr=w-120,f-png")))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);

    let negotiated = server
        .client
        .get(server.url(&format!("/ipfs/{cid_text}?tr=w-80")))
        .header("accept", "image/webp,*/*")
        .send()
        .await
        .unwrap();
    assert_eq!(negotiated.status(), 200);
    assert_eq!(negotiated.headers()["content-type"], "image/webp");
    assert_eq!(negotiated.headers()["vary"], "Accept");

    let invalid = get(format!("/ipfs/{cid_text}?tr=w-120,zz-9"))
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    let body: Value = invalid.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("zz-9"),
        "{body}"
    );
}

#[tokio::test]
async fn unknown_cid_falls_back_to_default_image() {
    let server = Server::start().await;
    upload(&server, "fallback.jpg", common::read_fixture("rocket.jpg")).await;
    let unknown = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    let get = |path: String| server.client.get(server.url(&path)).send();

    let response = get(format!("/ipfs/{unknown}?tr=w-64,f-jpg,di-fallback.jpg"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    let bytes = response.bytes().await.unwrap();
    assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 64);

    let missing_default = get(format!("/ipfs/{unknown}?tr=w-64,di-absent.jpg"))
        .await
        .unwrap();
    assert_eq!(missing_default.status(), 404);
    let body: Value = missing_default.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains(unknown),
        "{body}"
    );
}

#[tokio::test]
async fn verify_repairs_deleted_and_corrupted_blobs() {
    let api = node_api();
    let mut replicating = start_replicating(&api, &[]).await;
    let first = upload(&replicating.server, "first.png", padded_png(CHUNK + 7)).await;
    let second = upload(&replicating.server, "second.png", padded_png(5 * KIB)).await;
    let mut originals = Vec::new();
    for item in [&first, &second] {
        let id = item["id"].as_str().unwrap();
        wait_for_status(&replicating.server, id, "pinned", Duration::from_secs(30)).await;
        let hash = item["hash"].as_str().unwrap().to_owned();
        originals.push((
            hash.clone(),
            std::fs::read(blob_path(&replicating.server, &hash)).unwrap(),
        ));
    }
    let status = replicating.server.stop();
    assert!(status.success());

    let (deleted, corrupted) = (&originals[0], &originals[1]);
    std::fs::remove_file(blob_path(&replicating.server, &deleted.0)).unwrap();
    let mut damaged = corrupted.1.clone();
    damaged[100] ^= 0xff;
    std::fs::write(blob_path(&replicating.server, &corrupted.0), &damaged).unwrap();

    let data_dir = replicating.server.data_dir.to_str().unwrap().to_owned();
    let config = replicating.config.to_str().unwrap().to_owned();
    let args = ["verify", "--config", &config, "--data-dir", &data_dir];
    let (code, stdout, stderr) = kura(&args);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("missing\t{}", deleted.0)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("corrupt\t{}", corrupted.0)),
        "{stdout}"
    );
    assert!(
        stdout.contains("checked 2 blobs: 0 intact, 1 missing, 1 corrupt"),
        "{stdout}"
    );

    // Without the config, replication is off: repair names the switch and touches no node.
    let (code, stdout, stderr) = kura(&["verify", "--repair", "--data-dir", &data_dir]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("0 restored, 2 still bad"), "{stdout}");
    assert!(
        stdout.contains("not restored: ipfs.enabled is false"),
        "{stdout}"
    );

    let (code, stdout, stderr) = kura(&[&args[..], &["--repair"]].concat());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("2 restored, 0 still bad"), "{stdout}");
    for (hash, bytes) in &originals {
        assert_eq!(
            &std::fs::read(blob_path(&replicating.server, hash)).unwrap(),
            bytes
        );
    }
    assert_eq!(replicating.server.temp_files(), 0);

    let (code, stdout, _) = kura(&args);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("2 intact, 0 missing, 0 corrupt"),
        "{stdout}"
    );
}

#[tokio::test]
async fn verify_endpoint_repairs_running_server() {
    let api = node_api();
    let replicating = start_replicating(&api, &[]).await;
    let server = &replicating.server;
    let item = upload(server, "live.png", padded_png(3 * CHUNK)).await;
    let id = item["id"].as_str().unwrap();
    let hash = item["hash"].as_str().unwrap();
    wait_for_status(server, id, "pinned", Duration::from_secs(30)).await;
    let original = std::fs::read(blob_path(server, hash)).unwrap();
    std::fs::write(blob_path(server, hash), b"not the original bytes").unwrap();

    // The CLI fails while the server has the database open, and names the endpoint instead.
    let (code, _, stderr) = kura(&["verify", "--data-dir", server.data_dir.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    assert!(stderr.contains("POST /api/ipfs/verify"), "{stderr}");

    let post = |query: &'static str| {
        let request = server
            .client
            .post(server.url(&format!("/api/ipfs/verify{query}")))
            .header("authorization", server.auth());
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = post("").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["corrupt"], 1, "{body}");
    assert_eq!(body["data"]["repaired"], 0, "{body}");
    assert_eq!(body["data"]["problems"][0]["hash"], hash);

    let (status, body) = post("?repair=true").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["repaired"], 1, "{body}");
    assert_eq!(body["data"]["unrepaired"], 0, "{body}");
    assert_eq!(std::fs::read(blob_path(server, hash)).unwrap(), original);

    let (status, body) = post("?repair=maybe").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_parameter");
    assert!(body["error"]["message"].as_str().unwrap().contains("maybe"));
}

#[tokio::test]
async fn delivery_restores_missing_blob_from_node() {
    let api = node_api();
    let replicating = start_replicating(&api, &[]).await;
    let server = &replicating.server;
    let png = padded_png(2 * CHUNK + 3);
    let item = upload(server, "gone.png", png.clone()).await;
    let id = item["id"].as_str().unwrap();
    let hash = item["hash"].as_str().unwrap();
    wait_for_status(server, id, "pinned", Duration::from_secs(30)).await;
    std::fs::remove_file(blob_path(server, hash)).unwrap();

    let response = server
        .client
        .get(server.url(&format!("/{}", item["fileName"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), png.as_slice());
    assert_eq!(std::fs::read(blob_path(server, hash)).unwrap(), png);
    assert!(
        server.log().contains("restored a missing blob file"),
        "{}",
        server.log()
    );

    // A variant needs the source's bytes, so its first request restores them as well.
    std::fs::remove_file(blob_path(server, hash)).unwrap();
    let response = server
        .client
        .get(server.url("/gone.png?tr=w-4,f-png"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-cache"], "miss");
    let variant = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(variant.width(), 4);
    assert_eq!(std::fs::read(blob_path(server, hash)).unwrap(), png);
}

#[tokio::test]
async fn unrestorable_blob_is_503() {
    let api = node_api();
    // With 3 links per node kura's CID differs from the node's for files over 3 chunks, so the
    // add fails the CID check and the node never stores a root under kura's CID.
    let replicating = start_replicating(&api, &[("max_links", "3"), ("timeout_secs", "2")]).await;
    let server = &replicating.server;
    let item = upload(server, "mismatch.png", padded_png(4 * CHUNK + 1)).await;
    let id = item["id"].as_str().unwrap();
    let hash = item["hash"].as_str().unwrap();
    let failed = wait_for_status(server, id, "failed", Duration::from_secs(30)).await;
    let error = failed["ipfs"]["error"].as_str().unwrap();
    assert!(error.contains("CID mismatch"), "{error}");
    assert!(error.contains(item["cid"].as_str().unwrap()), "{error}");
    assert!(
        server.log().contains("computed another CID"),
        "the mismatch is logged"
    );

    std::fs::remove_file(blob_path(server, hash)).unwrap();
    let started = Instant::now();
    let response = server
        .client
        .get(server.url(&format!("/{}", item["fileName"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the restore attempt is bounded by ipfs.timeout_secs"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "blob_unavailable");
    assert!(server
        .log()
        .contains("failed to restore a missing blob file"));

    // A variant of the missing file gets the same response, not an internal error.
    let variant = server
        .client
        .get(server.url(&format!(
            "/{}?tr=w-2,f-png",
            item["fileName"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(variant.status(), 503);
    let body: Value = variant.json().await.unwrap();
    assert_eq!(body["error"]["code"], "blob_unavailable");
}

#[test]
fn unsupported_hash_is_rejected_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[ipfs]\nhash = \"blake2b-256\"\n").unwrap();
    let (code, _, stderr) = kura(&["serve", "--config", config.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(stderr.contains("ipfs.hash"), "{stderr}");
    assert!(stderr.contains("blake2b-256"), "{stderr}");
}
