//! Operations over real HTTP: liveness, readiness, the low-disk path, metrics, the separate
//! metrics listener and JSON logs.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::{logged_address, parse_metrics, read_fixture, Server};
use serde_json::Value;

/// More free bytes than any disk has (TOML integers stop at i64::MAX).
const HUGE_MIN_FREE: &str = "[storage]\nmin_free_bytes = 9223372036854775807\n";

fn write_config(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("kura.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn value(series: &HashMap<String, f64>, name: &str) -> f64 {
    series.get(name).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn healthz_and_readyz_pass() {
    let server = Server::start().await;
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let response = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["checks"]["database"]["ok"], true, "{body}");
    assert_eq!(body["checks"]["dataDirWritable"]["ok"], true, "{body}");
    assert_eq!(body["checks"]["diskSpace"]["ok"], true, "{body}");
    assert_eq!(body["checks"]["diskSpace"]["minFreeBytes"], 1u64 << 30);
    assert!(body["checks"]["diskSpace"]["freeBytes"].as_u64().unwrap() >= 1 << 30);
    assert!(
        body["checks"].get("ipfs").is_none(),
        "no IPFS client, no ipfs member: {body}"
    );
    assert_eq!(server.temp_files(), 0, "the write probe is removed");

    let post = server
        .client
        .post(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
}

#[tokio::test]
async fn low_disk_fails_readiness_and_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, HUGE_MIN_FREE);
    let server = Server::start_with(&["--config", &config]).await;

    let response = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["checks"]["database"]["ok"], true, "{body}");
    assert_eq!(body["checks"]["dataDirWritable"]["ok"], true, "{body}");
    let disk = &body["checks"]["diskSpace"];
    assert_eq!(disk["ok"], false, "{body}");
    assert_eq!(disk["minFreeBytes"], i64::MAX);
    let free = disk["freeBytes"].as_u64().unwrap();
    let error = disk["error"].as_str().unwrap();
    assert!(error.contains(&free.to_string()), "{error}");
    assert!(error.contains(&i64::MAX.to_string()), "{error}");

    // Liveness does not depend on disk space.
    assert!(server.healthy().await);

    let (status, body) = server.upload_fixture("grace_hopper.jpg").await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_storage");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("storage.min_free_bytes"), "{message}");
    assert!(message.contains(&i64::MAX.to_string()), "{message}");
    assert!(message.contains("bytes free"), "{message}");

    let form = reqwest::multipart::Form::new().part(
        "files",
        reqwest::multipart::Part::bytes(read_fixture("rocket.jpg")).file_name("rocket.jpg"),
    );
    let batch = server
        .client
        .post(server.url("/api/media/batch"))
        .header("authorization", server.auth())
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 507);

    assert_eq!(server.temp_files(), 0);
    assert_eq!(server.blob_files(), 0);
    let (status, list) = server.json("/api/media").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"]["total"], 0);

    let series = server.metrics().await;
    assert_eq!(
        value(
            &series,
            "kura_upload_rejections_total{code=\"insufficient_storage\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn metrics_count_a_known_sequence() {
    let mut server = Server::start().await;
    let jpeg = read_fixture("grace_hopper.jpg");
    let jpeg_len = jpeg.len() as f64;
    let before = server.metrics().await;

    let mut api_body_bytes = 0usize;
    let mut delivery_body_bytes = 0usize;
    let (status, first) = server.upload("first.jpg", jpeg.clone()).await;
    assert_eq!(status, 201);
    api_body_bytes += first.to_string().len();
    let (status, second) = server.upload("second.jpg", jpeg.clone()).await;
    assert_eq!(status, 201);
    api_body_bytes += second.to_string().len();
    let (status, rejected) = server.upload_fixture("svg-xss-script.svg").await;
    assert_eq!(status, 415);
    api_body_bytes += rejected.to_string().len();

    let unauthorized = server
        .client
        .get(server.url("/api/media"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    api_body_bytes += unauthorized.bytes().await.unwrap().len();

    let file = server
        .client
        .get(server.url("/first.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    delivery_body_bytes += file.bytes().await.unwrap().len();
    let head = server
        .client
        .head(server.url("/first.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let missing = server
        .client
        .get(server.url("/missing.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    delivery_body_bytes += missing.bytes().await.unwrap().len();

    let list = server.get_api("/api/media").send().await.unwrap();
    assert_eq!(list.status(), 200);
    api_body_bytes += list.bytes().await.unwrap().len();
    let id = second["data"]["id"].as_str().unwrap();
    let deleted = server
        .client
        .delete(server.url(&format!("/api/media/{id}")))
        .header("authorization", server.auth())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    api_body_bytes += deleted.bytes().await.unwrap().len();

    let after = server.metrics().await;
    let delta = |name: &str| value(&after, name) - value(&before, name);
    let requests = |route: &str, status: u16| {
        delta(&format!(
            "kura_http_requests_total{{route=\"{route}\",status=\"{status}\"}}"
        ))
    };
    assert_eq!(requests("api", 201), 2.0);
    assert_eq!(requests("api", 415), 1.0);
    assert_eq!(requests("api", 401), 1.0);
    assert_eq!(requests("api", 200), 2.0);
    assert_eq!(requests("delivery", 200), 2.0);
    assert_eq!(requests("delivery", 404), 1.0);
    // The scrape taken before the sequence.
    assert_eq!(requests("metrics", 200), 1.0);
    assert_eq!(
        delta("kura_http_request_duration_seconds_count{route=\"api\"}"),
        6.0
    );
    assert_eq!(
        delta("kura_http_request_duration_seconds_count{route=\"delivery\"}"),
        3.0
    );

    assert_eq!(delta("kura_uploads_total"), 2.0);
    assert_eq!(delta("kura_upload_size_bytes_count"), 2.0);
    assert_eq!(delta("kura_upload_size_bytes_sum"), 2.0 * jpeg_len);
    assert_eq!(
        delta("kura_upload_rejections_total{code=\"unsupported_media_type\"}"),
        1.0
    );

    assert_eq!(
        delta("kura_http_response_body_bytes_total{route=\"api\"}"),
        api_body_bytes as f64
    );
    assert_eq!(
        delta("kura_http_response_body_bytes_total{route=\"delivery\"}"),
        delivery_body_bytes as f64
    );
    assert!(delta("kura_http_received_bytes_total") > 2.0 * jpeg_len);
    assert!(delta("kura_http_sent_bytes_total") > delivery_body_bytes as f64);

    // Two records share one blob; one record was deleted.
    assert_eq!(value(&after, "kura_media_records"), 1.0);
    assert_eq!(value(&after, "kura_blob_store_blobs"), 1.0);
    assert_eq!(value(&after, "kura_blob_store_bytes"), jpeg_len);
    assert_eq!(value(&after, "kura_transform_cache_hits_total"), 0.0);

    // A cached variant counts under the transform cache, not the upload blobs.
    let variant = server
        .client
        .get(server.url("/first.jpg?tr=w-50"))
        .send()
        .await
        .unwrap();
    assert_eq!(variant.status(), 200);
    let variant_len = variant.bytes().await.unwrap().len() as f64;
    let cached = server.metrics().await;
    assert_eq!(value(&cached, "kura_blob_store_blobs"), 1.0);
    assert_eq!(value(&cached, "kura_transform_cache_bytes"), variant_len);

    // After a restart the gauges are counted again from the index.
    server.restart().await;
    let restarted = server.metrics().await;
    assert_eq!(value(&restarted, "kura_media_records"), 1.0);
    assert_eq!(value(&restarted, "kura_blob_store_blobs"), 1.0);
    assert_eq!(value(&restarted, "kura_blob_store_bytes"), jpeg_len);
    assert_eq!(value(&restarted, "kura_transform_cache_bytes"), variant_len);
    assert_eq!(value(&restarted, "kura_uploads_total"), 0.0);
}

#[tokio::test]
async fn metrics_content_type_is_prometheus_text() {
    let server = Server::start().await;
    let response = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains("# TYPE kura_http_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE kura_blob_store_bytes gauge"),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_listen_separates_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, "[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let server = Server::start_with(&["--config", &config]).await;
    let log = server.log();
    let metrics_addr = log
        .lines()
        .find_map(|line| logged_address(line, "serving metrics"))
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));

    let main = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), 404);

    let separate = server
        .client
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(separate.status(), 200);
    let series = parse_metrics(&separate.text().await.unwrap());
    // The 404 for /metrics on the main listener was counted; the start-up health check too.
    assert_eq!(
        value(
            &series,
            "kura_http_requests_total{route=\"metrics\",status=\"404\"}"
        ),
        1.0
    );
    assert!(
        value(
            &series,
            "kura_http_requests_total{route=\"health\",status=\"200\"}"
        ) >= 1.0
    );

    let other = server
        .client
        .get(format!("http://{metrics_addr}/api/media"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn json_logs_parse_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, "[log]\nformat = \"json\"\nlevel = \"warn\"\n");
    // The harness sets RUST_LOG=info, which wins over log.level, so request lines appear.
    let mut server = Server::start_with(&["--config", &config]).await;
    let (status, _) = server.upload_fixture("grace_hopper.jpg").await;
    assert_eq!(status, 201);
    let file = server
        .client
        .get(server.url("/grace_hopper.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    assert!(server.stop().success());

    let log = server.log();
    let events: Vec<Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
        })
        .collect();
    let with_message = |message: &str| -> Vec<&Value> {
        events.iter().filter(|e| e["message"] == message).collect()
    };

    let config_events = with_message("effective configuration");
    assert_eq!(config_events.len(), 1, "{log}");
    let effective: Value =
        serde_json::from_str(config_events[0]["config"].as_str().unwrap()).unwrap();
    assert_eq!(effective["log"]["format"], "json");
    assert_eq!(effective["storage"]["min_free_bytes"], 1u64 << 30);

    let requests = with_message("request");
    let delivery = requests
        .iter()
        .find(|e| e["path"] == "/grace_hopper.jpg")
        .unwrap_or_else(|| panic!("no request line for the file:\n{log}"));
    assert_eq!(delivery["level"], "INFO");
    assert_eq!(delivery["method"], "GET");
    assert_eq!(delivery["status"], 200);
    assert_eq!(delivery["route"], "delivery");
    assert_eq!(delivery["bytes"], read_fixture("grace_hopper.jpg").len());
    assert!(delivery["duration_ms"].as_f64().is_some(), "{delivery}");
    assert_eq!(delivery["request_id"].as_str().unwrap().len(), 32);
    let upload = requests
        .iter()
        .find(|e| e["path"] == "/api/media")
        .expect("a request line for the upload");
    assert_eq!(upload["status"], 201);
    assert!(upload["bytes"].as_u64().unwrap() > 0, "{upload}");
}

#[test]
fn log_level_from_config_applies_without_rust_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, "[log]\nformat = \"json\"\nlevel = \"warn\"\n");
    let mut child = std::process::Command::new(common::BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            &config,
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // A fresh data directory makes the server log its first key at warn level. The effective
    // configuration is logged at info before that, so with level "warn" the key line comes first.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .expect("a log line");
    child.kill().unwrap();
    child.wait().unwrap();
    let event: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(event["level"], "WARN", "{first}");
    assert!(
        event["message"].as_str().unwrap().contains("API key"),
        "{first}"
    );
}
