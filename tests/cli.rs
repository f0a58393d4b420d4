//! The command line: configuration precedence, API key commands and the held-database message.

mod common;

use common::{kura, kura_in, Server};

fn print_config(cwd: &std::path::Path, args: &[&str]) -> toml::Value {
    let mut all = vec!["serve", "--print-config"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = kura_in(cwd, &all);
    assert_eq!(code, 0, "{stderr}");
    toml::from_str(&stdout).unwrap()
}

#[test]
fn precedence_defaults_file_flags() {
    let dir = tempfile::tempdir().unwrap();

    // No file anywhere: built-in defaults.
    let config = print_config(dir.path(), &[]);
    assert_eq!(config["server"]["listen"].as_str(), Some("127.0.0.1:8080"));
    assert_eq!(
        config["server"]["public_url"].as_str(),
        Some("http://127.0.0.1:8080")
    );
    assert_eq!(config["storage"]["data_dir"].as_str(), Some("./data"));
    assert_eq!(
        config["storage"]["max_upload_bytes"].as_integer(),
        Some(1 << 30)
    );
    assert_eq!(config["storage"]["max_batch_files"].as_integer(), Some(50));
    assert_eq!(config["ipfs"]["enabled"].as_bool(), Some(false));

    // ./config.toml is read when present and overrides the defaults it names.
    std::fs::write(
        dir.path().join("config.toml"),
        "[server]\nlisten = \"127.0.0.1:9100\"\npublic_url = \"https://media.example\"\n[storage]\nmax_batch_files = 3\n",
    )
    .unwrap();
    let config = print_config(dir.path(), &[]);
    assert_eq!(config["server"]["listen"].as_str(), Some("127.0.0.1:9100"));
    assert_eq!(
        config["server"]["public_url"].as_str(),
        Some("https://media.example")
    );
    assert_eq!(config["storage"]["max_batch_files"].as_integer(), Some(3));
    assert_eq!(config["storage"]["data_dir"].as_str(), Some("./data"));

    // Flags beat the file.
    let config = print_config(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:9200",
            "--data-dir",
            "/srv/kura",
            "--public-url",
            "https://cdn.example",
        ],
    );
    assert_eq!(config["server"]["listen"].as_str(), Some("127.0.0.1:9200"));
    assert_eq!(
        config["server"]["public_url"].as_str(),
        Some("https://cdn.example")
    );
    assert_eq!(config["storage"]["data_dir"].as_str(), Some("/srv/kura"));
    assert_eq!(config["storage"]["max_batch_files"].as_integer(), Some(3));

    // An explicit --config replaces ./config.toml.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "[storage]\nmax_batch_files = 9\n").unwrap();
    let config = print_config(dir.path(), &["--config", other.to_str().unwrap()]);
    assert_eq!(config["storage"]["max_batch_files"].as_integer(), Some(9));
    assert_eq!(config["server"]["listen"].as_str(), Some("127.0.0.1:8080"));
}

#[test]
fn unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[storage]\nmax_upload_byte = 5\n").unwrap();
    let (code, _, stderr) = kura(&["serve", "--config", file.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(stderr.contains("max_upload_byte"), "{stderr}");
}

#[test]
fn repo_config_file_parses() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, stdout, stderr) = kura(&[
        "serve",
        "--print-config",
        "--config",
        root.join("config.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let documented: toml::Value = toml::from_str(&stdout).unwrap();
    let (_, defaults, _) = kura_in(&std::env::temp_dir(), &["serve", "--print-config"]);
    let defaults: toml::Value = toml::from_str(&defaults).unwrap();
    assert_eq!(
        documented, defaults,
        "config.toml documents the built-in defaults"
    );
}

#[test]
fn key_create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (code, stdout, stderr) = kura(&["key", "create", "--name", "ci", "--data-dir", data]);
    assert_eq!(code, 0, "{stderr}");
    let key = stdout.trim();
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout holds only the key: {stdout:?}"
    );
    assert!(key.starts_with("kura_"), "{key}");
    assert!(key.len() > 30, "{key}");

    let (code, _, stderr) = kura(&["key", "create", "--name", "ci", "--data-dir", data]);
    assert_ne!(code, 0);
    assert!(stderr.contains("already exists"), "{stderr}");

    let (code, listing, _) = kura(&["key", "list", "--data-dir", data]);
    assert_eq!(code, 0);
    assert!(listing.contains("ci"), "{listing}");
    assert!(!listing.contains(key), "the list never shows a whole key");

    let db = std::fs::read(dir.path().join("data/kura.redb")).unwrap();
    assert!(
        !db.windows(key.len()).any(|w| w == key.as_bytes()),
        "only a hash of the key is stored"
    );

    let (code, _, _) = kura(&["key", "revoke", "ci", "--data-dir", data]);
    assert_eq!(code, 0);
    let (code, _, stderr) = kura(&["key", "revoke", "ci", "--data-dir", data]);
    assert_ne!(code, 0);
    assert!(stderr.contains("no API key named"), "{stderr}");
}

#[tokio::test]
async fn revoked_key_is_rejected_after_restart() {
    let mut server = Server::start().await;
    let (status, _) = server.json("/api/media").await;
    assert_eq!(status, 200);
    server.stop();
    let data = server.data_dir.to_str().unwrap().to_owned();
    let (code, _, stderr) = kura(&["key", "revoke", "test", "--data-dir", &data]);
    assert_eq!(code, 0, "{stderr}");
    server.restart().await;
    let (status, _) = server.json("/api/media").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn key_command_reports_held_database() {
    let server = Server::start().await;
    let data = server.data_dir.to_str().unwrap().to_owned();
    let (code, stdout, stderr) = kura(&["key", "create", "--name", "second", "--data-dir", &data]);
    assert_ne!(code, 0);
    assert!(stdout.is_empty());
    assert!(stderr.contains("in use by another process"), "{stderr}");
}

#[tokio::test]
async fn first_serve_creates_and_logs_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = std::process::Command::new(common::BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut key = None;
    let mut addr = None;
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(at) = line.find("kura_") {
            key = Some(line[at..].split_whitespace().next().unwrap().to_owned());
            assert!(line.contains("kura key create"), "{line}");
        }
        if line.contains("kura is serving") {
            addr = line
                .split("listen=")
                .nth(1)
                .map(|r| r.split_whitespace().next().unwrap().to_owned());
            break;
        }
    }
    let key = key.expect("a key was logged");
    let addr = addr.expect("the server started");
    // Keep reading the log so the server never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/api/media"))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
}
