//! Transformed delivery over HTTP: URL forms, errors, format negotiation and the variant cache.

mod common;

use common::{read_fixture, Server};

async fn get(server: &Server, path: &str, accept: &str) -> reqwest::Response {
    server
        .client
        .get(server.url(path))
        .header("accept", accept)
        .send()
        .await
        .unwrap()
}

fn image_of(bytes: &[u8]) -> image::DynamicImage {
    image::load_from_memory(bytes).expect("a decodable image")
}

#[tokio::test]
async fn query_and_path_forms_resize() {
    let server = Server::start().await;
    server.upload_fixture("rocket.jpg").await;

    let response = get(&server, "/rocket.jpg?tr=w-300", "image/jpeg").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert_eq!(response.headers()["x-cache"], "miss");
    assert_eq!(response.headers()["vary"], "Accept");
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let body = response.bytes().await.unwrap();
    assert_eq!(&body[..3], &[0xFF, 0xD8, 0xFF]);
    let image = image_of(&body);
    assert_eq!((image.width(), image.height()), (300, 200));
    assert_eq!(etag, format!("\"{}\"", blake3::hash(&body).to_hex()));

    // The path form is the same variant, served from the cache.
    let response = get(&server, "/tr:w-300/rocket.jpg", "image/jpeg").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-cache"], "hit");
    assert_eq!(response.headers()["etag"].to_str().unwrap(), etag);

    // Both forms: the path chain runs first, then the query chain.
    let response = get(&server, "/tr:w-400/rocket.jpg?tr=rt-90", "image/jpeg").await;
    let image = image_of(&response.bytes().await.unwrap());
    assert_eq!((image.width(), image.height()), (267, 400));

    // Conditional request on a variant.
    let response = server
        .client
        .get(server.url("/rocket.jpg?tr=w-300"))
        .header("accept", "image/jpeg")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
}

#[tokio::test]
async fn spec_geometry_over_http() {
    let server = Server::start().await;
    // 640×427 source.
    server.upload_fixture("rocket.jpg").await;
    let cases = [
        ("w-300,h-300", (300, 300)),
        ("w-300,h-300,c-at_max", (300, 200)),
        ("w-300,h-300,c-at_least", (450, 300)),
        ("w-300,h-300,cm-pad_resize,bg-FF0000", (300, 300)),
        ("w-200,h-100,cm-extract,x-10,y-20", (200, 100)),
        ("w-0.5", (320, 214)),
        ("w-iw_div_4", (160, 107)),
        ("ar-1-1,w-100", (100, 100)),
        ("w-100,h-100,dpr-2", (200, 200)),
        ("w-100,b-5_000000", (110, 77)),
    ];
    for (chain, expected) in cases {
        let response = get(&server, &format!("/rocket.jpg?tr={chain}"), "image/png").await;
        assert_eq!(response.status(), 200, "{chain}");
        let image = image_of(&response.bytes().await.unwrap());
        assert_eq!((image.width(), image.height()), expected, "{chain}");
    }
}

#[tokio::test]
async fn invalid_transformations_are_400() {
    let server = Server::start().await;
    server.upload_fixture("rocket.jpg").await;
    let cases = [
        ("w-abc", "w-abc", "invalid_transformation"),
        ("w-300,,h-4", "", "invalid_transformation"),
        ("zz-5", "zz-5", "invalid_transformation"),
        ("q-101", "q-101", "invalid_transformation"),
        (
            "l-image,i-a.png,l-end",
            "l-image",
            "unsupported_transformation",
        ),
        ("n-missing", "n-missing", "unknown_named_transformation"),
        ("w-20000", "w-20000", "limit_exceeded"),
        ("oi-logo.png", "oi", "invalid_transformation"),
        // A second `tr` is rejected rather than dropped.
        ("w-300&tr=h-100", "h-100", "invalid_transformation"),
        // A crop mode given as a crop names the parameter it belongs to.
        ("c-pad_resize", "cm-pad_resize", "invalid_transformation"),
    ];
    for (chain, token, code) in cases {
        let response = get(&server, &format!("/rocket.jpg?tr={chain}"), "*/*").await;
        assert_eq!(response.status(), 400, "{chain}");
        assert!(response.headers().contains_key("ik-error"), "{chain}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{chain}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(token),
            "{chain}: {body}"
        );
    }
    assert!(server.healthy().await);
}

#[tokio::test]
async fn format_negotiation_by_accept() {
    let server = Server::start().await;
    server.upload_fixture("rocket.jpg").await;
    server.upload_fixture("png-gray-alpha-8bit.png").await;

    let cases = [
        (
            "/rocket.jpg?tr=w-100",
            "image/avif,image/webp,*/*",
            "image/webp",
        ),
        ("/rocket.jpg?tr=w-100", "image/jpeg,*/*", "image/jpeg"),
        (
            "/png-gray-alpha-8bit.png?tr=w-100",
            "image/png,*/*",
            "image/png",
        ),
        // Reordered parameters and explicit defaults give the same variant.
        (
            "/tr:h-50,w-100,c-maintain_ratio/rocket.jpg",
            "image/jpeg",
            "image/jpeg",
        ),
        (
            "/png-gray-alpha-8bit.png?tr=w-100",
            "image/webp",
            "image/webp",
        ),
        // A quality of 0 rejects a format.
        (
            "/rocket.jpg?tr=w-100",
            "image/webp;q=0,image/jpeg",
            "image/jpeg",
        ),
        // Explicit formats win over Accept.
        ("/rocket.jpg?tr=w-100,f-png", "image/webp", "image/png"),
        ("/rocket.jpg?tr=w-100,f-avif", "image/jpeg", "image/avif"),
    ];
    for (path, accept, mime) in cases {
        let response = get(&server, path, accept).await;
        assert_eq!(response.status(), 200, "{path} {accept}");
        assert_eq!(response.headers()["content-type"], mime, "{path} {accept}");
    }
    let explicit = get(&server, "/rocket.jpg?tr=w-100,f-png", "image/webp").await;
    assert!(!explicit.headers().contains_key("vary"));
}

#[tokio::test]
async fn animation_stays_animated() {
    let server = Server::start().await;
    server.upload_fixture("anim-10f-loop.gif").await;
    let response = get(&server, "/anim-10f-loop.gif?tr=w-185", "image/gif").await;
    assert_eq!(response.headers()["content-type"], "image/gif");
    let bytes = response.bytes().await.unwrap();
    let decoder = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(&bytes)).unwrap();
    use image::AnimationDecoder;
    let frames = decoder.into_frames().collect_frames().unwrap();
    assert_eq!(frames.len(), 10);
    assert_eq!(frames[0].buffer().dimensions(), (185, 143));

    let response = get(
        &server,
        "/anim-10f-loop.gif?tr=w-100",
        "image/avif,image/webp",
    )
    .await;
    assert_eq!(
        response.headers()["content-type"],
        "image/webp",
        "animations never become AVIF"
    );

    // An animated WebP stays animated for clients without WebP, as GIF.
    server.upload_fixture("anim-10f-loop.webp").await;
    let response = get(
        &server,
        "/anim-10f-loop.webp?tr=w-100",
        "image/png,image/jpeg",
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/gif");
    let bytes = response.bytes().await.unwrap();
    let decoder = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(&bytes)).unwrap();
    let frames = decoder.into_frames().collect_frames().unwrap();
    assert_eq!(frames.len(), 10);
    assert_eq!(frames[0].buffer().width(), 100);
}

#[tokio::test]
async fn orientation_is_applied() {
    let server = Server::start().await;
    server.upload_fixture("orient-Landscape_1.jpg").await;
    let reference = image_of(
        &get(&server, "/orient-Landscape_1.jpg?tr=w-300,f-png", "*/*")
            .await
            .bytes()
            .await
            .unwrap(),
    )
    .to_rgb8();
    for n in 2..=8 {
        let name = format!("orient-Landscape_{n}.jpg");
        server.upload_fixture(&name).await;
        let response = get(&server, &format!("/{name}?tr=w-300,f-png"), "*/*").await;
        let image = image_of(&response.bytes().await.unwrap()).to_rgb8();
        assert_eq!(image.dimensions(), (300, 200), "{name}");
        let diff: f64 = image
            .as_raw()
            .iter()
            .zip(reference.as_raw())
            .map(|(a, b)| f64::from((*a as i16 - *b as i16).unsigned_abs()))
            .sum::<f64>()
            / image.as_raw().len() as f64;
        assert!(diff < 5.0, "{name}: mean absolute difference {diff}");
    }
}

#[tokio::test]
async fn single_flight_computes_once() {
    let server = Server::start().await;
    server.upload_fixture("rocket.jpg").await;
    let requests = (0..8).map(|_| {
        let request = server
            .client
            .get(server.url("/rocket.jpg?tr=w-123,bl-5"))
            .header("accept", "image/jpeg")
            .send();
        tokio::spawn(request)
    });
    let mut misses = 0;
    let mut etags = std::collections::HashSet::new();
    for handle in requests.collect::<Vec<_>>() {
        let response = handle.await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        if response.headers()["x-cache"] == "miss" {
            misses += 1;
        }
        etags.insert(response.headers()["etag"].to_str().unwrap().to_owned());
    }
    assert_eq!(misses, 1, "eight identical requests, one computation");
    assert_eq!(etags.len(), 1);
    let metrics = server.metrics().await;
    assert_eq!(metrics["kura_transform_cache_misses_total"], 1.0);
    assert_eq!(metrics["kura_transform_cache_hits_total"], 7.0);
    assert_eq!(
        metrics["kura_transform_outputs_total{format=\"jpeg\"}"],
        1.0
    );
}

#[tokio::test]
async fn cache_evicts_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cache.toml");
    // Room for roughly two small thumbnails.
    std::fs::write(&config, "[transform]\ncache_max_bytes = 2500\n").unwrap();
    let server = Server::start_with(&["--config", config.to_str().unwrap()]).await;
    server.upload_fixture("rocket.jpg").await;
    let fetch = |width: u32| {
        let request = server
            .client
            .get(server.url(&format!("/rocket.jpg?tr=w-{width},f-jpg,q-50")))
            .send();
        async move { request.await.unwrap() }
    };
    for width in [60, 61, 62, 63, 64] {
        assert_eq!(fetch(width).await.headers()["x-cache"], "miss");
    }
    // The newest variant is still cached; the oldest was evicted and is computed again.
    assert_eq!(fetch(64).await.headers()["x-cache"], "hit");
    assert_eq!(fetch(60).await.headers()["x-cache"], "miss");
    let metrics = server.metrics().await;
    assert!(metrics["kura_transform_cache_evictions_total"] >= 1.0);
    assert!(metrics["kura_transform_cache_bytes"] <= 2500.0);
}

#[tokio::test]
async fn named_and_default_image() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("named.toml");
    std::fs::write(&config, "[transform.named]\nthumb = \"w-120,h-80\"\n").unwrap();
    let server = Server::start_with(&["--config", config.to_str().unwrap()]).await;
    server.upload_fixture("rocket.jpg").await;
    let response = get(&server, "/tr:n-thumb/rocket.jpg", "image/png").await;
    assert_eq!(response.status(), 200);
    let image = image_of(&response.bytes().await.unwrap());
    assert_eq!((image.width(), image.height()), (120, 80));

    let response = get(&server, "/missing.jpg?tr=w-50,di-rocket.jpg", "image/png").await;
    assert_eq!(response.status(), 200);
    let image = image_of(&response.bytes().await.unwrap());
    assert_eq!(image.width(), 50);
}

#[tokio::test]
async fn originals_and_videos() {
    let server = Server::start().await;
    let bytes = read_fixture("rocket.jpg");
    server.upload("rocket.jpg", bytes.clone()).await;
    let response = get(&server, "/rocket.jpg?tr=w-100,orig-true", "image/webp").await;
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let plain = get(&server, "/rocket.jpg", "image/webp").await;
    assert_eq!(plain.bytes().await.unwrap().as_ref(), bytes.as_slice());

    server.upload_fixture("video-faststart-3s.mp4").await;
    let response = get(&server, "/video-faststart-3s.mp4?tr=w-100", "*/*").await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn deleting_source_purges_variants() {
    let server = Server::start().await;
    let (_, body) = server.upload_fixture("rocket.jpg").await;
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&server, "/rocket.jpg?tr=w-50", "image/jpeg")
            .await
            .status(),
        200
    );
    assert_eq!(server.blob_files(), 2);
    let status = server
        .client
        .delete(server.url(&format!("/api/media/{id}")))
        .header("authorization", server.auth())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    assert_eq!(server.blob_files(), 0);
}

#[tokio::test]
async fn signed_urls_accept_and_reject() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("signed.toml");
    std::fs::write(
        &config,
        "[transform]\nsigning_key = \"private_key_test\"\nrequire_signed = true\n",
    )
    .unwrap();
    let server = Server::start_with(&["--config", config.to_str().unwrap()]).await;
    server.upload_fixture("rocket.jpg").await;
    let sign = |text: &str| kura::transform::signing::sign("private_key_test", text);

    let path = "/tr:w-100/rocket.jpg";
    let good = format!("{path}?ik-s={}", sign("tr:w-100/rocket.jpg9999999999"));
    assert_eq!(get(&server, &good, "image/jpeg").await.status(), 200);

    let future = 4_102_444_800u64;
    let timed = format!(
        "/rocket.jpg?tr=w-80&ik-t={future}&ik-s={}",
        sign(&format!("rocket.jpg?tr=w-80{future}"))
    );
    assert_eq!(get(&server, &timed, "image/jpeg").await.status(), 200);

    let tampered = format!(
        "/tr:w-101/rocket.jpg?ik-s={}",
        sign("tr:w-100/rocket.jpg9999999999")
    );
    let response = get(&server, &tampered, "image/jpeg").await;
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_signature");

    let expired = format!(
        "/rocket.jpg?tr=w-80&ik-t=1000&ik-s={}",
        sign("rocket.jpg?tr=w-801000")
    );
    assert_eq!(get(&server, &expired, "image/jpeg").await.status(), 401);

    let unsigned = get(&server, "/rocket.jpg?tr=w-100", "image/jpeg").await;
    assert_eq!(unsigned.status(), 401);
    // Originals stay public.
    assert_eq!(
        get(&server, "/rocket.jpg", "image/jpeg").await.status(),
        200
    );
}

#[tokio::test]
async fn awkward_sources_per_manifest() {
    let server = Server::start().await;
    for name in [
        "aspect-1x4000.png",
        "aspect-4000x1.png",
        "anim-97f-13x169.webp",
        "png-palette-all-transparent.png",
        "png16-rgb-trns-tbgn2c16.png",
        "cmyk-adobe-plain-quadrants.jpg",
        "png-1x1-interlaced-palette.png",
    ] {
        let (status, body) = server.upload_fixture(name).await;
        assert_eq!(status, 201, "{name}: {body}");
    }
    let size = |bytes: &[u8]| {
        let image = image_of(bytes);
        (image.width(), image.height())
    };

    let tall = get(&server, "/aspect-1x4000.png?tr=h-100", "image/png").await;
    assert_eq!(size(&tall.bytes().await.unwrap()), (1, 100));
    // Enlarging to 50 px wide would make the other side 200 000 px.
    let huge = get(&server, "/aspect-1x4000.png?tr=w-50", "image/png").await;
    assert_eq!(huge.status(), 400);
    let body: serde_json::Value = huge.json().await.unwrap();
    assert_eq!(body["error"]["code"], "limit_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_output_side"),
        "{body}"
    );
    let wide = get(&server, "/aspect-4000x1.png?tr=w-100", "image/png").await;
    assert_eq!(size(&wide.bytes().await.unwrap()), (100, 1));

    let response = get(&server, "/anim-97f-13x169.webp?tr=h-10", "image/webp").await;
    assert_eq!(response.headers()["content-type"], "image/webp");
    let bytes = response.bytes().await.unwrap();
    let decoder = image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(&bytes)).unwrap();
    use image::AnimationDecoder;
    let frames = decoder.into_frames().collect_frames().unwrap();
    assert_eq!(frames.len(), 97);
    assert_eq!(frames[0].buffer().dimensions(), (1, 10));

    let clear = get(
        &server,
        "/png-palette-all-transparent.png?tr=w-100,f-png",
        "*/*",
    )
    .await;
    let image = image_of(&clear.bytes().await.unwrap()).to_rgba8();
    assert_eq!(image.dimensions(), (100, 100));
    assert!(
        image.pixels().all(|p| p.0[3] == 0),
        "every pixel stays transparent"
    );
    let flattened = get(
        &server,
        "/png-palette-all-transparent.png?tr=w-100,f-jpg",
        "*/*",
    )
    .await;
    let image = image_of(&flattened.bytes().await.unwrap()).to_rgb8();
    let corner = image
        .pixels()
        .map(|p| p.0)
        .min_by_key(|p| p.iter().map(|&c| c as u32).sum::<u32>())
        .unwrap();
    assert!(
        image.pixels().all(|p| p.0.iter().all(|&c| c > 240)),
        "JPEG flattens onto white, got {corner:?}"
    );

    let keyed = get(&server, "/png16-rgb-trns-tbgn2c16.png?tr=f-png", "*/*").await;
    let image = image_of(&keyed.bytes().await.unwrap()).to_rgba8();
    let transparent = image.pixels().filter(|p| p.0[3] == 0).count();
    assert!(
        (400..=500).contains(&transparent),
        "{transparent} transparent pixels"
    );

    let cmyk = get(&server, "/cmyk-adobe-plain-quadrants.jpg?tr=f-png", "*/*").await;
    let image = image_of(&cmyk.bytes().await.unwrap()).to_rgb8();
    let cyan = image.get_pixel(16, 16).0;
    assert!(
        cyan[0] < 80 && cyan[1] > 150 && cyan[2] > 150,
        "cyan quadrant {cyan:?}"
    );
    let white = image.get_pixel(48, 48).0;
    assert!(white.iter().all(|&c| c > 230), "white quadrant {white:?}");

    let dot = get(
        &server,
        "/png-1x1-interlaced-palette.png?tr=w-100",
        "image/png",
    )
    .await;
    assert_eq!(size(&dot.bytes().await.unwrap()), (100, 100));
}

#[tokio::test]
async fn full_queue_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pool.toml");
    std::fs::write(&config, "[transform]\nworkers = 1\nqueue = 0\n").unwrap();
    let server = Server::start_with(&["--config", config.to_str().unwrap()]).await;
    server.upload_fixture("orient-Landscape_1.jpg").await;
    let requests: Vec<_> = (0..6)
        .map(|n| {
            // Distinct, slow plans so no request is served from the cache or shares a flight.
            let request = server
                .client
                .get(server.url(&format!(
                    "/orient-Landscape_1.jpg?tr=w-{},bl-20,f-png",
                    900 + n
                )))
                .send();
            tokio::spawn(request)
        })
        .collect();
    let mut statuses = Vec::new();
    for request in requests {
        let response = request.await.unwrap().unwrap();
        if response.status() == 503 {
            assert_eq!(response.headers()["retry-after"], "1");
        }
        statuses.push(response.status().as_u16());
    }
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(server.healthy().await);
}
