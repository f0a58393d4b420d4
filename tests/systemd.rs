//! The systemd unit: `systemd-analyze verify` accepts it, it sets the sandboxing and lifecycle
//! directives a long-running install needs, and `kura serve` sends the readiness messages that
//! `Type=notify` waits for.

mod common;

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

const UNIT: &str = include_str!("../systemd/kura.service");

/// Directives of the `[Service]` section; a repeated key keeps every value in order.
fn service_directives() -> HashMap<String, Vec<String>> {
    let mut directives: HashMap<String, Vec<String>> = HashMap::new();
    let mut in_service = false;
    for line in UNIT.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').expect("a Key=value line");
        directives
            .entry(key.to_owned())
            .or_default()
            .push(value.to_owned());
    }
    directives
}

fn single<'a>(directives: &'a HashMap<String, Vec<String>>, key: &str) -> &'a str {
    let values = directives
        .get(key)
        .unwrap_or_else(|| panic!("the unit sets no {key}="));
    assert_eq!(values.len(), 1, "{key}= is set more than once");
    &values[0]
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    // verify checks that ExecStart's binary exists, so the copy points at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let unit = UNIT.replace("/usr/local/bin/kura", common::BIN);
    let path = dir.path().join("kura.service");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs; tools/test.sh installs it with the systemd package");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "verify failed: {stderr}");
    assert!(stderr.trim().is_empty(), "verify warned: {stderr}");
}

#[test]
fn unit_sets_lifecycle_and_sandbox() {
    let directives = service_directives();
    let expected = [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "kura"),
        ("ConfigurationDirectory", "kura"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ReadWritePaths", "/var/lib/kura"),
        ("Restart", "on-failure"),
    ];
    for (key, value) in expected {
        assert_eq!(single(&directives, key), value, "{key}=");
    }
    let exec_start = single(&directives, "ExecStart");
    assert!(
        exec_start.contains("--data-dir /var/lib/kura"),
        "the data directory is the state directory: {exec_start}"
    );
    let files: u64 = single(&directives, "LimitNOFILE").parse().unwrap();
    assert!(files >= 4096, "LimitNOFILE={files}");
}

#[test]
fn stop_timeout_exceeds_graceful_shutdown() {
    let directives = service_directives();
    let stop = single(&directives, "TimeoutStopSec");
    let stop_secs: u64 = stop
        .strip_suffix('s')
        .unwrap_or(stop)
        .parse()
        .unwrap_or_else(|_| panic!("TimeoutStopSec={stop} is not whole seconds"));
    let defaults = kura::config::Config::default();
    assert!(
        stop_secs > defaults.server.shutdown_timeout_secs,
        "TimeoutStopSec={stop} must exceed server.shutdown_timeout_secs={}",
        defaults.server.shutdown_timeout_secs
    );
}

#[test]
fn serve_notifies_ready_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut child = Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .current_dir(dir.path())
        .env("NOTIFY_SOCKET", &socket_path)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let mut buffer = [0u8; 1024];
    let received = socket.recv(&mut buffer);
    let ready = received.map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned());
    let ready = match ready {
        Ok(message) => message,
        Err(err) => {
            child.kill().unwrap();
            panic!("no readiness message: {err}");
        }
    };
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.contains("STATUS=serving on 127.0.0.1:"), "{ready:?}");

    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let stopping = match socket.recv(&mut buffer) {
        Ok(n) => String::from_utf8_lossy(&buffer[..n]).into_owned(),
        Err(err) => {
            child.kill().unwrap();
            panic!("no stopping message: {err}");
        }
    };
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(child.wait().unwrap().success());
}
