//! Awkward real-world inputs through the upload API: each gets its documented status, never a 5xx,
//! and the server keeps responding.

mod common;

use std::time::{Duration, Instant};

use common::{read_fixture, Server};

/// What an upload of a fixture must produce.
enum Expect {
    /// 201 with this MIME type and, when given, these dimensions.
    Stored(&'static str, Option<(u32, u32)>),
    /// This status and error code.
    Rejected(u16, &'static str),
}

use Expect::{Rejected, Stored};

const CASES: &[(&str, Expect)] = &[
    // Content decides the type, not the name.
    (
        "sniff-png-bytes-named.jpg",
        Stored("image/png", Some((400, 300))),
    ),
    (
        "sniff-jpeg-bytes-named.png",
        Stored("image/jpeg", Some((227, 149))),
    ),
    (
        "sniff-webm-bytes-named.mp4",
        Stored("video/webm", Some((854, 480))),
    ),
    (
        "sniff-webp-looks-like-svg.webp",
        Stored("image/webp", Some((256, 256))),
    ),
    // SVG is never stored, whatever its file name.
    (
        "svg-xss-script.svg",
        Rejected(415, "unsupported_media_type"),
    ),
    ("svg-xss-named.png", Rejected(415, "unsupported_media_type")),
    (
        "svg-use-amplification.svg",
        Rejected(415, "unsupported_media_type"),
    ),
    (
        "video-matroska-doctype.mkv",
        Rejected(415, "unsupported_media_type"),
    ),
    (
        "video-vp9-corrupt-12336sq.webm",
        Rejected(415, "unsupported_media_type"),
    ),
    ("empty-zero-bytes.jpg", Rejected(400, "empty_file")),
    // Pixel and frame bombs are refused from their headers.
    (
        "bomb-lottapixel-64250sq.jpg",
        Rejected(422, "too_many_pixels"),
    ),
    ("bomb-png-65536sq.png", Rejected(422, "too_many_pixels")),
    (
        "bomb-jpeg-20000x14000.jpg",
        Rejected(422, "too_many_pixels"),
    ),
    (
        "bomb-webp-canvas-16383sq.webp",
        Rejected(422, "too_many_pixels"),
    ),
    (
        "bomb-gif-40000-frames.gif",
        Rejected(422, "too_many_frames"),
    ),
    (
        "bomb-gif-65535x66601-44B.gif",
        Rejected(422, "corrupt_media"),
    ),
    (
        "bomb-gif-frame-extents.gif",
        Stored("image/gif", Some((100, 100))),
    ),
    // Truncated and corrupt files.
    ("trunc-jpeg-baseline.jpg", Rejected(422, "corrupt_media")),
    ("trunc-jpeg-progressive.jpg", Rejected(422, "corrupt_media")),
    ("trunc-png.png", Rejected(422, "corrupt_media")),
    ("trunc-gif.gif", Rejected(422, "corrupt_media")),
    ("corrupt-jpeg-header.jpg", Rejected(422, "corrupt_media")),
    (
        "corrupt-png-crlf-xcrn0g04.png",
        Rejected(422, "corrupt_media"),
    ),
    (
        "corrupt-png-no-idat-xdtn0g01.png",
        Rejected(422, "corrupt_media"),
    ),
    ("png-signature-only.png", Rejected(422, "corrupt_media")),
    (
        "anim-invalid-multiframe.gif",
        Rejected(422, "corrupt_media"),
    ),
    // JPEG codings the decoder does not support are named as such.
    (
        "jpeg-lossless-sof3.jpg",
        Rejected(422, "unsupported_coding"),
    ),
    ("jpeg-12bit.jpg", Rejected(422, "unsupported_coding")),
    ("jpeg-arithmetic.jpg", Rejected(422, "unsupported_coding")),
    // Videos: container checked, size and duration read.
    (
        "video-moov-at-end-3s.mp4",
        Stored("video/mp4", Some((320, 240))),
    ),
    (
        "video-faststart-3s.mp4",
        Stored("video/mp4", Some((320, 240))),
    ),
    (
        "video-faststart-coverart.m4v",
        Stored("video/mp4", Some((320, 180))),
    ),
    ("video-hevc.mp4", Stored("video/mp4", Some((640, 480)))),
    (
        "video-vp9-opus-1s.webm",
        Stored("video/webm", Some((854, 480))),
    ),
    (
        "video-moov-only-no-mdat.mp4",
        Rejected(422, "corrupt_media"),
    ),
    ("video-fuzz-double-moov.mp4", Rejected(422, "corrupt_media")),
    // Animations keep their type and report their frames.
    ("anim-apng-20f.png", Stored("image/png", Some((100, 100)))),
    ("anim-10f-loop.webp", Stored("image/webp", Some((370, 285)))),
    (
        "anim-97f-13x169.webp",
        Stored("image/webp", Some((13, 169))),
    ),
    (
        "no_time_for_that-anim.gif",
        Stored("image/gif", Some((14, 25))),
    ),
    // Unusual but valid images.
    (
        "png16-rgba-interlaced-basi6a16.png",
        Stored("image/png", Some((32, 32))),
    ),
    (
        "png-1x1-interlaced-palette.png",
        Stored("image/png", Some((1, 1))),
    ),
    ("aspect-1x4000.png", Stored("image/png", Some((1, 4000)))),
    (
        "cmyk-ycck-no-profile.jpg",
        Stored("image/jpeg", Some((500, 333))),
    ),
    ("icc-broken-iccp.png", Stored("image/png", Some((248, 248)))),
    (
        "meta-multiple-exif-1x1.jpg",
        Stored("image/jpeg", Some((1, 1))),
    ),
    // Stored as 1200×1800 pixels that EXIF orientation 6 turns upright: the record gives the
    // upright size.
    (
        "orient-Landscape_6.jpg",
        Stored("image/jpeg", Some((1800, 1200))),
    ),
];

#[tokio::test]
async fn edge_corpus_uploads() {
    let server = Server::start().await;
    let mut stored = 0;
    for (file, expect) in CASES {
        let started = Instant::now();
        let (status, body) = server.upload_fixture(file).await;
        let elapsed = started.elapsed();
        assert!(status < 500, "{file}: 5xx {status} {body}");
        match expect {
            Stored(mime, size) => {
                assert_eq!(status, 201, "{file}: {body}");
                assert_eq!(body["data"]["mimeType"], *mime, "{file}");
                if let Some((width, height)) = size {
                    assert_eq!(body["data"]["width"], *width, "{file} width");
                    assert_eq!(body["data"]["height"], *height, "{file} height");
                }
                stored += 1;
            }
            Rejected(expected_status, code) => {
                assert_eq!(status, *expected_status, "{file}: {body}");
                assert_eq!(body["error"]["code"], *code, "{file}: {body}");
                let message = body["error"]["message"].as_str().unwrap();
                assert!(
                    message.contains(file),
                    "{file}: the message names the file: {message}"
                );
            }
        }
        // Header checks must finish quickly even for files that declare gigapixels.
        assert!(elapsed < Duration::from_secs(5), "{file} took {elapsed:?}");
        assert!(
            server.healthy().await,
            "server stopped answering after {file}"
        );
    }
    let (_, list) = server.json("/api/media?limit=100").await;
    assert_eq!(list["data"]["total"], stored);
    assert_eq!(server.temp_files(), 0);
}

#[tokio::test]
async fn animation_frames_and_video_duration_recorded() {
    let server = Server::start().await;
    let (_, apng) = server.upload_fixture("anim-apng-20f.png").await;
    assert_eq!(apng["data"]["frames"], 20);
    let (_, gif) = server.upload_fixture("anim-30f-transparent.gif").await;
    assert_eq!(gif["data"]["frames"], 30);
    let (_, video) = server.upload_fixture("video-moov-at-end-3s.mp4").await;
    let duration = video["data"]["duration"].as_f64().unwrap();
    assert!((duration - 3.0).abs() < 0.1, "{duration}");
}

#[tokio::test]
async fn same_bytes_under_other_names_share_a_blob() {
    let server = Server::start().await;
    let (_, original) = server.upload_fixture("jpeg-baseline-testorig.jpg").await;
    let (_, renamed) = server.upload_fixture("sniff-jpeg-bytes-named.png").await;
    assert_eq!(original["data"]["hash"], renamed["data"]["hash"]);
    assert_ne!(original["data"]["id"], renamed["data"]["id"]);
    assert_eq!(server.blob_files(), 1);

    let (_, webm) = server.upload_fixture("video-vp9-opus-1s.webm").await;
    let (_, as_mp4) = server.upload_fixture("sniff-webm-bytes-named.mp4").await;
    assert_eq!(webm["data"]["hash"], as_mp4["data"]["hash"]);
    let served = server
        .client
        .get(server.url("/sniff-webm-bytes-named.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(served.headers()["content-type"], "video/webm");
}

#[tokio::test]
async fn unicode_fixture_names() {
    let server = Server::start().await;
    let name = "name with spaces & ümlaut 名前 (1).png";
    let bytes = read_fixture(name);
    let (status, body) = server.upload(name, bytes.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["hash"], blake3::hash(&bytes).to_hex().as_str());
    let (_, twin) = server.upload_fixture("png-palette-trns-tbbn3p08.png").await;
    assert_eq!(twin["data"]["hash"], body["data"]["hash"]);
}

#[tokio::test]
async fn video_ranges() {
    let server = Server::start().await;
    let (_, body) = server.upload_fixture("video-moov-at-end-3s.mp4").await;
    let path = format!("/{}", body["data"]["fileName"].as_str().unwrap());
    let response = server
        .client
        .get(server.url(&path))
        .header("range", "bytes=0-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.headers()["content-range"], "bytes 0-1/26008");
    let response = server
        .client
        .get(server.url(&path))
        .header("range", "bytes=26008-")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 416);
    assert_eq!(response.headers()["content-range"], "bytes */26008");
}
