//! Public delivery of originals: headers, Range, conditional requests and HEAD.

mod common;

use common::{read_fixture, Server};

async fn uploaded(server: &Server, fixture: &str) -> (String, Vec<u8>, String) {
    let bytes = read_fixture(fixture);
    let (status, body) = server.upload(fixture, bytes.clone()).await;
    assert_eq!(status, 201, "{body}");
    let name = body["data"]["fileName"].as_str().unwrap().to_owned();
    let hash = body["data"]["hash"].as_str().unwrap().to_owned();
    (format!("/{name}"), bytes, hash)
}

#[tokio::test]
async fn original_headers_and_bytes() {
    let server = Server::start().await;
    let (path, bytes, hash) = uploaded(&server, "grace_hopper.jpg").await;
    let response = server.client.get(server.url(&path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "image/jpeg");
    assert_eq!(headers["content-length"], bytes.len().to_string());
    assert_eq!(headers["etag"], format!("\"{hash}\""));
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers.contains_key("x-request-id"));
    assert!(headers.contains_key("last-modified"));
    let body = response.bytes().await.unwrap();
    assert_eq!(blake3::hash(&body).to_hex().as_str(), hash);
}

#[tokio::test]
async fn head_matches_get_without_body() {
    let server = Server::start().await;
    let (path, bytes, _) = uploaded(&server, "rocket.jpg").await;
    let response = server.client.head(server.url(&path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-length"],
        bytes.len().to_string()
    );
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn ranges() {
    let server = Server::start().await;
    let (path, bytes, _) = uploaded(&server, "rocket.jpg").await;
    let len = bytes.len();
    let get = |range: String| {
        let request = server.client.get(server.url(&path)).header("range", range);
        async move { request.send().await.unwrap() }
    };

    let response = get("bytes=0-1".into()).await;
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes 0-1/{len}")
    );
    assert_eq!(response.headers()["content-length"], "2");
    assert_eq!(response.bytes().await.unwrap().as_ref(), &bytes[0..2]);

    let response = get("bytes=-100".into()).await;
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes {}-{}/{len}", len - 100, len - 1)
    );
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        &bytes[len - 100..]
    );

    let response = get("bytes=1000-".into()).await;
    assert_eq!(response.status(), 206);
    assert_eq!(response.bytes().await.unwrap().as_ref(), &bytes[1000..]);

    let response = get(format!("bytes={len}-")).await;
    assert_eq!(response.status(), 416);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes */{len}")
    );
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(!response.headers().contains_key("cache-control"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "range_not_satisfiable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("bytes={len}-")),
        "{body}"
    );

    // A request for several ranges gets the whole file.
    let response = get("bytes=0-1,5-6".into()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), len);
}

#[tokio::test]
async fn conditional_requests() {
    let server = Server::start().await;
    let (path, bytes, hash) = uploaded(&server, "rocket.jpg").await;
    let etag = format!("\"{hash}\"");

    let response = server
        .client
        .get(server.url(&path))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    assert_eq!(response.headers()["etag"], etag.as_str());
    assert!(response.bytes().await.unwrap().is_empty());

    let response = server
        .client
        .get(server.url(&path))
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // If-Range with the current tag gives the range; with a stale tag the whole file.
    let response = server
        .client
        .get(server.url(&path))
        .header("range", "bytes=0-9")
        .header("if-range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    let response = server
        .client
        .get(server.url(&path))
        .header("range", "bytes=0-9")
        .header("if-range", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), bytes.len());

    let last_modified = server
        .client
        .get(server.url(&path))
        .send()
        .await
        .unwrap()
        .headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_owned();
    let response = server
        .client
        .get(server.url(&path))
        .header("if-modified-since", &last_modified)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);

    let response = server
        .client
        .get(server.url(&path))
        .header("if-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 412);
}

#[tokio::test]
async fn unknown_names_are_404() {
    let server = Server::start().await;
    for path in ["/missing.png", "/", "/a/b.png", "/%FF.png"] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert!(response.headers()["ik-error"]
            .to_str()
            .unwrap()
            .starts_with("ENOENT"));
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn unicode_name_round_trips() {
    let server = Server::start().await;
    let bytes = read_fixture("grace_hopper.jpg");
    let (status, body) = server.upload("йцук.jpg", bytes.clone()).await;
    assert_eq!(status, 201);
    assert_eq!(body["data"]["fileName"], "йцук.jpg");
    let url = body["data"]["url"].as_str().unwrap();
    assert_eq!(url, server.url("/%D0%B9%D1%86%D1%83%D0%BA.jpg"));
    let response = server
        .client
        .get(server.url("/%D0%B9%D1%86%D1%83%D0%BA.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.contains("filename*=UTF-8''%D0%B9%D1%86%D1%83%D0%BA.jpg"),
        "{disposition}"
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn healthz_answers() {
    let server = Server::start().await;
    let response = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}
