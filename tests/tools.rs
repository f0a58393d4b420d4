//! The store tools as a user runs them: `kura import`, `kura gc` and `kura stats`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{fixture, kura, Server};
use serde_json::Value;

/// Fixtures `kura import tests/fixtures` must reject, each for its content.
const REJECTED: &[&str] = &[
    "LICENSES.md",
    "anim-invalid-multiframe.gif",
    "bomb-gif-40000-frames.gif",
    "bomb-gif-65535x66601-44B.gif",
    "bomb-jpeg-20000x14000.jpg",
    "bomb-lottapixel-64250sq.jpg",
    "bomb-png-65536sq.png",
    "bomb-webp-canvas-16383sq.webp",
    "corrupt-jpeg-header.jpg",
    "corrupt-png-crlf-xcrn0g04.png",
    "corrupt-png-no-idat-xdtn0g01.png",
    "empty-zero-bytes.jpg",
    "jpeg-12bit.jpg",
    "jpeg-arithmetic.jpg",
    "jpeg-lossless-sof3.jpg",
    "png-signature-only.png",
    "svg-use-amplification.svg",
    "svg-xss-named.png",
    "svg-xss-script.svg",
    "trunc-gif.gif",
    "trunc-jpeg-baseline.jpg",
    "trunc-jpeg-progressive.jpg",
    "trunc-png.png",
    "video-fuzz-double-moov.mp4",
    "video-matroska-doctype.mkv",
    "video-moov-only-no-mdat.mp4",
    "video-vp9-corrupt-12336sq.webm",
];

/// Byte-identical pairs among the fixtures whose content is accepted: one of each pair is
/// imported and the other counts as a duplicate. (The SVG pair is rejected twice.)
const DUPLICATE_PAIRS: usize = 4;

/// Returns the number on the summary line that starts with `label`.
fn count(stdout: &str, label: &str) -> usize {
    let line = stdout
        .lines()
        .find(|line| line.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"));
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"))
}

/// Returns the file names on the indented rejection lines.
fn rejected_names(stdout: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("  "))
        .map(|line| {
            let path = line.split(": ").next().unwrap();
            Path::new(path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn fixtures_dir() -> String {
    fixture("")
        .to_str()
        .unwrap()
        .trim_end_matches('/')
        .to_owned()
}

fn stats_json(data: &str) -> Value {
    let (code, stdout, stderr) = kura(&["stats", "--json", "--data-dir", data]);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn import_fixtures_then_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let fixtures = fixtures_dir();
    let total = std::fs::read_dir(&fixtures).unwrap().count();

    let (code, stdout, stderr) = kura(&["import", &fixtures, "--data-dir", data, "--jobs", "4"]);
    assert_eq!(code, 2, "some files are rejected: {stdout}\n{stderr}");
    let imported = count(&stdout, "imported");
    assert_eq!(count(&stdout, "duplicate"), DUPLICATE_PAIRS, "{stdout}");
    assert_eq!(count(&stdout, "skipped"), 0, "{stdout}");
    assert_eq!(count(&stdout, "rejected"), REJECTED.len(), "{stdout}");
    assert_eq!(imported, total - DUPLICATE_PAIRS - REJECTED.len());
    let expected: BTreeSet<String> = REJECTED.iter().map(|s| s.to_string()).collect();
    assert_eq!(rejected_names(&stdout), expected);
    // Reasons use the store's own messages.
    assert!(
        stdout.contains("empty-zero-bytes.jpg: the file \"empty-zero-bytes.jpg\" is empty"),
        "{stdout}"
    );
    assert!(
        stdout.contains("over the limit of 100000000 pixels"),
        "{stdout}"
    );

    let stats = stats_json(data);
    assert_eq!(stats["media"]["count"], imported);
    assert_eq!(stats["blobs"]["count"], imported);
    assert!(stats["replication"].is_null());
    assert_eq!(stats["variants"]["count"], 0);
    assert_eq!(stats["variants"]["maxBytes"], 10u64 << 30);

    // The rerun stores nothing new: every accepted file is skipped by path and content.
    let (code, stdout, stderr) = kura(&["import", &fixtures, "--data-dir", data]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(count(&stdout, "imported"), 0, "{stdout}");
    assert_eq!(count(&stdout, "duplicate"), 0, "{stdout}");
    assert_eq!(
        count(&stdout, "skipped"),
        imported + DUPLICATE_PAIRS,
        "{stdout}"
    );
    assert_eq!(count(&stdout, "rejected"), REJECTED.len(), "{stdout}");
    assert_eq!(stats_json(data)["media"]["count"], imported);
}

#[test]
fn import_copy_counts_as_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let source = dir.path().join("source");
    std::fs::create_dir(&source).unwrap();
    std::fs::copy(fixture("rocket.jpg"), source.join("rocket.jpg")).unwrap();
    let (code, stdout, _) = kura(&["import", source.to_str().unwrap(), "--data-dir", data]);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(count(&stdout, "imported"), 1, "{stdout}");

    // The same bytes under another path add no record.
    std::fs::copy(fixture("rocket.jpg"), source.join("copy of rocket.jpg")).unwrap();
    let (code, stdout, _) = kura(&["import", source.to_str().unwrap(), "--data-dir", data]);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(count(&stdout, "imported"), 0, "{stdout}");
    assert_eq!(count(&stdout, "duplicate"), 1, "{stdout}");
    assert_eq!(count(&stdout, "skipped"), 1, "{stdout}");
    assert_eq!(stats_json(data)["media"]["count"], 1);

    // Changed content at a known path is imported again.
    std::fs::copy(fixture("grace_hopper.jpg"), source.join("rocket.jpg")).unwrap();
    let (code, stdout, _) = kura(&["import", source.to_str().unwrap(), "--data-dir", data]);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(count(&stdout, "imported"), 1, "{stdout}");
    assert_eq!(stats_json(data)["media"]["count"], 2);
}

#[test]
fn import_missing_path_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let missing = dir.path().join("no-such-folder");
    let (code, stdout, _) = kura(&[
        "import",
        missing.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stdout}");
    assert_eq!(count(&stdout, "rejected"), 1, "{stdout}");
    assert!(stdout.contains("failed to open"), "{stdout}");
}

#[test]
fn import_stops_below_min_free_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("low.toml");
    std::fs::write(&config, "[storage]\nmin_free_bytes = 9223372036854775807\n").unwrap();
    let (code, stdout, stderr) = kura(&[
        "import",
        fixture("rocket.jpg").to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stderr.contains("storage.min_free_bytes"), "{stderr}");
    assert_eq!(count(&stdout, "imported"), 0, "{stdout}");
}

#[test]
fn gc_removes_orphan_blob_and_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().unwrap();
    let (code, stdout, _) = kura(&[
        "import",
        fixture("rocket.jpg").to_str().unwrap(),
        "--data-dir",
        data,
    ]);
    assert_eq!(code, 0, "{stdout}");
    let kept = blake3::hash(&std::fs::read(fixture("rocket.jpg")).unwrap())
        .to_hex()
        .to_string();
    let kept_path = data_dir
        .join("blobs")
        .join(&kept[..2])
        .join(&kept[2..4])
        .join(&kept);
    assert!(kept_path.is_file());

    let orphan_bytes = b"bytes that no record names";
    let orphan = blake3::hash(orphan_bytes).to_hex().to_string();
    let orphan_path = data_dir
        .join("blobs")
        .join(&orphan[..2])
        .join(&orphan[2..4])
        .join(&orphan);
    std::fs::create_dir_all(orphan_path.parent().unwrap()).unwrap();
    std::fs::write(&orphan_path, orphan_bytes).unwrap();
    let temp_path = data_dir.join("tmp").join("upload-leftover.tmp");
    std::fs::write(&temp_path, b"partial upload").unwrap();

    let (code, stdout, stderr) = kura(&["gc", "--dry-run", "--data-dir", data]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("would remove 1 orphan blob files"),
        "{stdout}"
    );
    assert!(orphan_path.exists(), "a dry run removes nothing");

    let (code, stdout, stderr) = kura(&["gc", "--data-dir", data]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("removed 1 orphan blob files"), "{stdout}");
    assert!(stdout.contains("removed 1 temp files"), "{stdout}");
    let freed = orphan_bytes.len() + b"partial upload".len();
    assert!(stdout.contains(&format!("({freed} bytes)")), "{stdout}");
    assert!(!orphan_path.exists());
    assert!(!temp_path.exists());
    assert!(kept_path.is_file(), "a referenced blob stays");
    assert_eq!(stats_json(data)["blobs"]["count"], 1);
}

#[tokio::test]
async fn stats_and_gc_account_for_cached_variants() {
    let mut server = Server::start().await;
    let (status, _) = server.upload_fixture("rocket.jpg").await;
    assert_eq!(status, 201);
    for chain in ["w-100", "w-200"] {
        let response = server
            .client
            .get(server.url(&format!("/rocket.jpg?tr={chain},f-webp")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{chain}");
    }
    assert!(server.stop().success());
    let data = server.data_dir.to_str().unwrap().to_owned();

    let stats = stats_json(&data);
    assert_eq!(stats["media"]["count"], 1);
    assert_eq!(
        stats["blobs"]["count"], 1,
        "variants are not uploads: {stats}"
    );
    assert_eq!(stats["deduplicatedBytes"], 0, "{stats}");
    assert_eq!(stats["variants"]["count"], 2, "{stats}");
    let variant_bytes = stats["variants"]["bytes"].as_u64().unwrap();
    assert!(variant_bytes > 0, "{stats}");
    let (code, text, _) = kura(&["stats", "--data-dir", &data]);
    assert_eq!(code, 0);
    assert!(text.contains("variants   2 cached"), "{text}");

    // Every variant's source is still stored, so a plain gc keeps them all.
    let (code, stdout, stderr) = kura(&["gc", "--data-dir", &data]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("removed 0 orphan cached variants"),
        "{stdout}"
    );
    assert_eq!(stats_json(&data)["variants"]["count"], 2);

    let (code, stdout, stderr) =
        kura(&["gc", "--purge-variants", "--dry-run", "--data-dir", &data]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("would remove 2 cached variants"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("({variant_bytes} bytes)")),
        "{stdout}"
    );
    assert_eq!(
        stats_json(&data)["variants"]["count"],
        2,
        "a dry run drops nothing"
    );

    let (code, stdout, stderr) = kura(&["gc", "--purge-variants", "--data-dir", &data]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("removed 2 cached variants"), "{stdout}");
    assert!(
        stdout.contains(&format!("({variant_bytes} bytes)")),
        "{stdout}"
    );
    let stats = stats_json(&data);
    assert_eq!(stats["variants"]["count"], 0, "{stats}");
    assert_eq!(server.blob_files(), 1, "only the upload's file stays");

    // The restarted server computes a purged variant again.
    server.restart().await;
    let response = server
        .client
        .get(server.url("/rocket.jpg?tr=w-100,f-webp"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-cache"], "miss");
}

#[tokio::test]
async fn tools_report_held_database() {
    let server = Server::start().await;
    let data = server.data_dir.to_str().unwrap().to_owned();
    // Stands for an upload in flight: the tools must leave the server's temp files alone.
    let in_flight = server.data_dir.join("tmp").join("upload-in-flight.tmp");
    std::fs::write(&in_flight, b"streaming").unwrap();
    let rocket = fixture("rocket.jpg");
    let commands: [Vec<&str>; 3] = [
        vec!["import", rocket.to_str().unwrap(), "--data-dir", &data],
        vec!["gc", "--data-dir", &data],
        vec!["stats", "--data-dir", &data],
    ];
    for args in commands {
        let (code, _, stderr) = kura(&args);
        assert_eq!(code, 1, "{args:?}");
        assert!(
            stderr.contains("in use by another process"),
            "{args:?}: {stderr}"
        );
    }
    assert!(
        in_flight.exists(),
        "the running server's temp file is untouched"
    );
}

#[test]
fn tool_help_states_units_and_defaults() {
    let (code, help, _) = kura(&["import", "--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("--config <FILE>"), "{help}");
    assert!(help.contains("--data-dir <DIR>"), "{help}");
    assert!(help.contains("[default: the number of CPUs]"), "{help}");
    assert!(help.contains("Exit status"), "{help}");

    let (code, help, _) = kura(&["gc", "--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("--dry-run"), "{help}");
    assert!(help.contains("--purge-variants"), "{help}");
    assert!(help.contains("[default: ./data]"), "{help}");

    let (code, help, _) = kura(&["stats", "--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("binary units"), "{help}");
}
