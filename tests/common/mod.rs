//! Test harness: runs the real `kura` binary on 127.0.0.1:0 with a temp data directory and talks
//! HTTP to it. Readiness is detected from the start-up log line and `/healthz`, never by sleeping
//! a fixed time.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_kura");

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|err| panic!("fixture {name}: {err}"))
}

/// Runs `kura ARGS…` to completion and returns (exit code, stdout, stderr).
pub fn kura(args: &[&str]) -> (i32, String, String) {
    kura_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

pub fn kura_in(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .output()
        .expect("failed to run the kura binary");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Returns the `listen` address of the log line with `message`, in the human or the JSON format.
pub fn logged_address(line: &str, message: &str) -> Option<String> {
    if let Ok(serde_json::Value::Object(event)) = serde_json::from_str(line) {
        if event.get("message").and_then(|m| m.as_str()) == Some(message) {
            return event.get("listen")?.as_str().map(str::to_owned);
        }
        return None;
    }
    if !line.contains(message) {
        return None;
    }
    let rest = line.split("listen=").nth(1)?;
    Some(rest.split_whitespace().next()?.to_owned())
}

/// Parses Prometheus text into series (name with labels, as printed) → value.
pub fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a series and its value");
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("metric value in {line:?}"));
            (series.to_owned(), value)
        })
        .collect()
}

/// A running server process and its data directory.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub key: String,
    pub data_dir: PathBuf,
    dir: Arc<tempfile::TempDir>,
    log: Arc<Mutex<String>>,
    /// Thread copying the process's stderr into `log`; it ends when the process exits.
    log_reader: Option<std::thread::JoinHandle<()>>,
    extra_args: Vec<String>,
    pub client: reqwest::Client,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(&[]).await
    }

    /// Starts a server with extra `serve` arguments (e.g. `--config FILE`).
    pub async fn start_with(extra_args: &[&str]) -> Server {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let data_dir = dir.path().join("data");
        let (code, key, stderr) = kura(&[
            "key",
            "create",
            "--name",
            "test",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "key create failed: {stderr}");
        let mut server = Server {
            child: None,
            base: String::new(),
            key: key.trim().to_owned(),
            data_dir,
            dir,
            log: Arc::new(Mutex::new(String::new())),
            log_reader: None,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("failed to start kura serve");
        let stderr = child.stderr.take().unwrap();
        let log = self.log.clone();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = logged_address(&line, "kura is serving") {
                    let _ = addr_tx.send(addr);
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        // Stored before waiting so that Drop kills the process even when start-up fails.
        self.child = Some(child);
        self.log_reader = Some(reader);
        let addr = match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => panic!("server did not start; log:\n{}", self.log()),
        };
        self.base = format!("http://{addr}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(response) = self.client.get(self.url("/healthz")).send().await {
                if response.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server never became healthy; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Scrapes `/metrics` and returns the parsed series.
    pub async fn metrics(&self) -> std::collections::HashMap<String, f64> {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        parse_metrics(&response.text().await.unwrap())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Kills the process with SIGKILL, as a crash or the OOM killer would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
            self.join_log_reader();
        }
    }

    /// Waits until the log contains everything the exited process wrote.
    fn join_log_reader(&mut self) {
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.pid().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.stop_wait()
    }

    /// Waits for a server that was already signalled to exit.
    pub fn stop_wait(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server is running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.join_log_reader();
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn().await;
    }

    pub fn auth(&self) -> String {
        format!("Bearer {}", self.key)
    }

    pub fn get_api(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(self.url(path))
            .header("authorization", self.auth())
    }

    /// Uploads `bytes` as form field `file` named `name`; returns (status, JSON body).
    pub async fn upload(&self, name: &str, bytes: Vec<u8>) -> (u16, serde_json::Value) {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
        let form = reqwest::multipart::Form::new().part("file", part);
        let response = self
            .client
            .post(self.url("/api/media"))
            .header("authorization", self.auth())
            .multipart(form)
            .send()
            .await
            .expect("upload request");
        let status = response.status().as_u16();
        let body = response.json().await.expect("JSON body");
        (status, body)
    }

    pub async fn upload_fixture(&self, name: &str) -> (u16, serde_json::Value) {
        self.upload(name, read_fixture(name)).await
    }

    pub async fn json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.get_api(path).send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    pub async fn healthy(&self) -> bool {
        matches!(self.client.get(self.url("/healthz")).send().await, Ok(r) if r.status() == 200)
    }

    /// Files under `data/tmp` (leftover uploads).
    pub fn temp_files(&self) -> usize {
        std::fs::read_dir(self.data_dir.join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Blob files under `data/blobs`.
    pub fn blob_files(&self) -> usize {
        fn walk(dir: &Path) -> usize {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        }
        walk(&self.data_dir.join("blobs"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
