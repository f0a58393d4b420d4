//! The media API over real HTTP: every route's success and each documented error.

mod common;

use common::{read_fixture, Server};
use serde_json::Value;

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "body: {body}");
    assert_eq!(body["success"], false, "body: {body}");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn upload_details_list_delete() {
    let server = Server::start().await;
    let bytes = read_fixture("grace_hopper.jpg");
    let part = reqwest::multipart::Part::bytes(bytes.clone()).file_name("grace hopper.jpg");
    let form = reqwest::multipart::Form::new()
        .part("file", part)
        .text("alt", "Grace Hopper in uniform");
    let response = server
        .client
        .post(server.url("/api/media"))
        .header("authorization", server.auth())
        .header("x-api-version", "v1")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], true);
    let item = &body["data"];
    let id = item["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(item["fileName"], "grace_hopper.jpg");
    assert_eq!(item["mimeType"], "image/jpeg");
    assert_eq!(item["size"], bytes.len() as u64);
    assert_eq!(item["width"], 512);
    assert_eq!(item["height"], 600);
    assert_eq!(item["alt"], "Grace Hopper in uniform");
    assert_eq!(item["hash"], blake3::hash(&bytes).to_hex().as_str());
    // Without server.public_url, URLs name the address the server is bound to.
    assert_eq!(item["url"], server.url("/grace_hopper.jpg"));
    let uploaded_at = item["uploadedAt"].as_str().unwrap();
    assert!(uploaded_at.ends_with('Z'), "{uploaded_at}");
    assert!(time::OffsetDateTime::parse(
        uploaded_at,
        &time::format_description::well_known::Rfc3339
    )
    .is_ok());

    let (status, details) = server.json(&format!("/api/media/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(details["data"], *item);

    let (status, list) = server.json("/api/media").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"]["total"], 1);
    assert_eq!(list["data"]["page"], 1);
    assert_eq!(list["data"]["limit"], 20);
    assert_eq!(list["data"]["pages"], 1);
    assert_eq!(list["data"]["items"][0], *item);

    let fetched = server
        .client
        .get(server.url("/grace_hopper.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), bytes.as_slice());

    let deleted = server
        .client
        .delete(server.url(&format!("/api/media/{id}")))
        .header("authorization", server.auth())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let body: Value = deleted.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"success": true, "message": "Media file deleted successfully"})
    );

    let (status, body) = server.json(&format!("/api/media/{id}")).await;
    assert_error(status, &body, 404, "media_not_found");
    let after_delete = server
        .client
        .get(server.url("/grace_hopper.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(after_delete.status(), 404);
    assert_eq!(server.blob_files(), 0);
}

#[tokio::test]
async fn auth_errors() {
    let server = Server::start().await;
    let missing = server
        .client
        .get(server.url("/api/media"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    assert!(missing.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    let wrong = server
        .client
        .get(server.url("/api/media"))
        .header("authorization", "Bearer kura_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().contains_key("www-authenticate"));

    let basic = server
        .client
        .get(server.url("/api/media"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);

    // The scheme name is case-insensitive.
    let lower_case = server
        .client
        .get(server.url("/api/media"))
        .header(
            "authorization",
            server.auth().replacen("Bearer", "bearer", 1),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(lower_case.status(), 200);

    // Unknown API routes are hidden behind authentication too.
    let unknown = server
        .client
        .get(server.url("/api/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401);
}

#[tokio::test]
async fn api_version_header() {
    let server = Server::start().await;
    let ok = server
        .get_api("/api/media")
        .header("x-api-version", "v1")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let bad = server
        .get_api("/api/media")
        .header("x-api-version", "v2")
        .send()
        .await
        .unwrap();
    let status = bad.status().as_u16();
    let body: Value = bad.json().await.unwrap();
    assert_error(status, &body, 400, "unsupported_api_version");
    assert!(body["error"]["message"].as_str().unwrap().contains("v2"));
}

#[tokio::test]
async fn unknown_route_and_wrong_method() {
    let server = Server::start().await;
    let (status, body) = server.json("/api/things").await;
    assert_error(status, &body, 404, "route_not_found");

    let put = server
        .client
        .put(server.url("/api/media"))
        .header("authorization", server.auth())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 405);
    assert_eq!(put.headers()["allow"], "GET, POST");

    let get_batch = server.get_api("/api/media/batch").send().await.unwrap();
    assert_eq!(get_batch.status(), 405);
    assert_eq!(get_batch.headers()["allow"], "POST");

    let post_item = server
        .client
        .post(server.url("/api/media/0b7e4a2c-0000-4000-8000-000000000000"))
        .header("authorization", server.auth())
        .send()
        .await
        .unwrap();
    assert_eq!(post_item.status(), 405);
    assert_eq!(post_item.headers()["allow"], "GET, DELETE");

    let post_file = server
        .client
        .post(server.url("/some.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(post_file.status(), 405);
    assert_eq!(post_file.headers()["allow"], "GET, HEAD");

    let (status, body) = server.json("/api/media/not-a-uuid").await;
    assert_error(status, &body, 404, "media_not_found");
    let delete = server
        .client
        .delete(server.url("/api/media/0b7e4a2c-0000-4000-8000-000000000000"))
        .header("authorization", server.auth())
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 404);
}

#[tokio::test]
async fn pagination_arithmetic() {
    let server = Server::start().await;
    // Seven distinct tiny PNGs: a valid 1×1 image each, with a different text chunk.
    let mut ids = Vec::new();
    for n in 0..7u8 {
        let png = tiny_png(n);
        let (status, body) = server.upload(&format!("p{n}.png"), png).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["data"]["id"].as_str().unwrap().to_owned());
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    let (status, page) = server.json("/api/media?page=2&limit=3").await;
    assert_eq!(status, 200);
    assert_eq!(page["data"]["total"], 7);
    assert_eq!(page["data"]["pages"], 3);
    assert_eq!(page["data"]["page"], 2);
    assert_eq!(page["data"]["limit"], 3);
    let got: Vec<&str> = page["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        newest_first[3..6]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );

    let (_, last) = server.json("/api/media?page=3&limit=3").await;
    assert_eq!(last["data"]["items"].as_array().unwrap().len(), 1);
    assert_eq!(last["data"]["items"][0]["id"], ids[0].as_str());

    let (status, past) = server.json("/api/media?page=9&limit=3").await;
    assert_eq!(status, 200);
    assert_eq!(past["data"]["items"].as_array().unwrap().len(), 0);
    assert_eq!(past["data"]["total"], 7);

    let (_, all) = server.json("/api/media?limit=100").await;
    assert_eq!(all["data"]["items"].as_array().unwrap().len(), 7);
    assert_eq!(all["data"]["pages"], 1);

    for bad in [
        "page=0",
        "page=-1",
        "page=abc",
        "page=1.5",
        "limit=0",
        "limit=101",
        "limit=-5",
        "limit=",
        "limit=ten",
    ] {
        let (status, body) = server.json(&format!("/api/media?{bad}")).await;
        assert_error(status, &body, 400, "invalid_parameter");
        let value = bad.split('=').nth(1).unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("{value:?}")),
            "{bad}: {body}"
        );
    }
}

#[tokio::test]
async fn dedup_shares_one_blob() {
    let server = Server::start().await;
    let bytes = read_fixture("rocket.jpg");
    let (status, first) = server.upload("rocket.jpg", bytes.clone()).await;
    assert_eq!(status, 201);
    let (status, second) = server.upload("rocket.jpg", bytes.clone()).await;
    assert_eq!(status, 201);
    assert_ne!(first["data"]["id"], second["data"]["id"]);
    assert_eq!(first["data"]["hash"], second["data"]["hash"]);
    assert_eq!(server.blob_files(), 1);

    let second_name = second["data"]["fileName"].as_str().unwrap().to_owned();
    assert_ne!(second_name, "rocket.jpg");
    assert!(
        second_name.starts_with("rocket_") && second_name.ends_with(".jpg"),
        "{second_name}"
    );
    let suffix = &second_name["rocket_".len()..second_name.len() - 4];
    assert_eq!(suffix.len(), 6);
    assert!(suffix.chars().all(|c| c.is_ascii_alphanumeric()));

    let delete = |id: String| {
        let request = server
            .client
            .delete(server.url(&format!("/api/media/{id}")))
            .header("authorization", server.auth());
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        delete(first["data"]["id"].as_str().unwrap().to_owned()).await,
        200
    );
    assert_eq!(
        server.blob_files(),
        1,
        "the blob stays while a record uses it"
    );
    let still = server
        .client
        .get(server.url(&format!("/{second_name}")))
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200);
    assert_eq!(still.bytes().await.unwrap().as_ref(), bytes.as_slice());

    assert_eq!(
        delete(second["data"]["id"].as_str().unwrap().to_owned()).await,
        200
    );
    assert_eq!(server.blob_files(), 0, "the last delete removes the blob");
}

#[tokio::test]
async fn deleted_names_are_never_reused() {
    let server = Server::start().await;
    let (_, first) = server.upload("logo.png", tiny_png(1)).await;
    let id = first["data"]["id"].as_str().unwrap();
    assert_eq!(first["data"]["fileName"], "logo.png");
    let status = server
        .client
        .delete(server.url(&format!("/api/media/{id}")))
        .header("authorization", server.auth())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let (_, again) = server.upload("logo.png", tiny_png(2)).await;
    let name = again["data"]["fileName"].as_str().unwrap();
    assert_ne!(name, "logo.png");
    let old_url = server
        .client
        .get(server.url("/logo.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(old_url.status(), 404);
}

#[tokio::test]
async fn hostile_file_names_are_sanitised() {
    let server = Server::start().await;
    let cases = [
        ("../../etc/passwd.png", "passwd.png"),
        ("..\\..\\x.png", "x.png"),
        ("a%00b.png", "a_00b.png"),
        (
            "name with spaces & ümlaut 名前 (1).png",
            "name_with_spaces___ümlaut_名前__1_.png",
        ),
    ];
    for (n, (raw, expected)) in cases.iter().enumerate() {
        let (status, body) = server.upload(raw, tiny_png(10 + n as u8)).await;
        assert_eq!(status, 201, "{raw}: {body}");
        assert_eq!(body["data"]["fileName"], *expected, "{raw}");
        let url = body["data"]["url"].as_str().unwrap();
        assert!(url.starts_with(&server.url("/")), "{url}");
        let fetched = server.client.get(url).send().await.unwrap();
        assert_eq!(fetched.status(), 200, "{url}");
    }
    // CR LF in a part's file name breaks the multipart headers themselves: rejected as malformed,
    // and nothing stored.
    let (status, body) = server.upload("a\r\nX-Evil: 1.png", tiny_png(30)).await;
    assert_error(status, &body, 400, "invalid_multipart");
    let (_, list) = server.json("/api/media").await;
    assert_eq!(list["data"]["total"], cases.len());
    let escaped = std::fs::read_dir(server.data_dir.parent().unwrap())
        .unwrap()
        .count();
    assert_eq!(escaped, 1, "nothing was written beside the data directory");
}

#[tokio::test]
async fn upload_errors() {
    let server = Server::start().await;
    let (status, body) = server.upload("empty.jpg", Vec::new()).await;
    assert_error(status, &body, 400, "empty_file");

    let (status, body) = server
        .upload("notes.txt", b"just some text\n".to_vec())
        .await;
    assert_error(status, &body, 415, "unsupported_media_type");

    let svg = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
    let (status, body) = server.upload("evil.png", svg.to_vec()).await;
    assert_error(status, &body, 415, "unsupported_media_type");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("svg"),
        "{body}"
    );

    let mut truncated = read_fixture("grace_hopper.jpg");
    truncated.truncate(5000);
    let (status, body) = server.upload("cut.jpg", truncated).await;
    assert_eq!(status, 422, "{body}");

    // Not multipart at all.
    let response = server
        .client
        .post(server.url("/api/media"))
        .header("authorization", server.auth())
        .header("content-type", "image/png")
        .body(tiny_png(1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);

    // Multipart without a `file` field.
    let form = reqwest::multipart::Form::new().text("alt", "nothing");
    let response = server
        .client
        .post(server.url("/api/media"))
        .header("authorization", server.auth())
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_error(status, &body, 400, "missing_file");

    // Unknown form field.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(tiny_png(2)).file_name("a.png"),
        )
        .text("folder", "/x");
    let response = server
        .client
        .post(server.url("/api/media"))
        .header("authorization", server.auth())
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_error(status, &body, 400, "invalid_parameter");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("folder"));

    let (_, list) = server.json("/api/media").await;
    assert_eq!(list["data"]["total"], 0, "no failed upload was stored");
    assert_eq!(server.temp_files(), 0);
    assert_eq!(server.blob_files(), 0);
}

#[tokio::test]
async fn upload_over_limit_is_413() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.toml");
    std::fs::write(&config, "[storage]\nmax_upload_bytes = 10000\n").unwrap();
    let server = Server::start_with(&["--config", config.to_str().unwrap()]).await;

    let (status, body) = server
        .upload("big.jpg", read_fixture("grace_hopper.jpg"))
        .await;
    assert_error(status, &body, 413, "payload_too_large");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("10000"),
        "{body}"
    );

    // Streamed without Content-Length: the limit is enforced as the body arrives.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = read_fixture("grace_hopper.jpg")
        .chunks(4096)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let stream = futures_util::stream::iter(chunks);
    let part =
        reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(stream)).file_name("s.jpg");
    let response = server
        .client
        .post(server.url("/api/media"))
        .header("authorization", server.auth())
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    let (status, body) = server.upload("small.png", tiny_png(3)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(server.temp_files(), 0);
}

#[tokio::test]
async fn batch_upload_outcomes() {
    let server = Server::start().await;
    let form = reqwest::multipart::Form::new()
        .part(
            "files",
            reqwest::multipart::Part::bytes(tiny_png(1)).file_name("one.png"),
        )
        .part(
            "files",
            reqwest::multipart::Part::bytes(read_fixture("rocket.jpg")).file_name("two.jpg"),
        );
    let response = server
        .client
        .post(server.url("/api/media/batch"))
        .header("authorization", server.auth())
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], true);
    assert_eq!(body["data"]["uploaded"], 2);
    assert_eq!(body["data"]["items"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"]["failed"].as_array().unwrap().len(), 0);

    // Mixed: one good, one empty, one text file → 207 and the good one stored.
    let form = reqwest::multipart::Form::new()
        .part(
            "files",
            reqwest::multipart::Part::bytes(tiny_png(2)).file_name("good.png"),
        )
        .part(
            "files",
            reqwest::multipart::Part::bytes(Vec::new()).file_name("empty.png"),
        )
        .part(
            "files",
            reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("note.txt"),
        );
    let response = server
        .client
        .post(server.url("/api/media/batch"))
        .header("authorization", server.auth())
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 207);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["uploaded"], 1);
    assert_eq!(body["data"]["items"][0]["fileName"], "good.png");
    let failed = body["data"]["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["fileName"], "empty.png");
    assert_eq!(failed[0]["error"]["code"], "empty_file");
    assert_eq!(failed[1]["fileName"], "note.txt");
    assert_eq!(failed[1]["error"]["code"], "unsupported_media_type");

    // All failing → the failure's status and success:false.
    let form = reqwest::multipart::Form::new()
        .part(
            "files",
            reqwest::multipart::Part::bytes(b"text".to_vec()).file_name("a.txt"),
        )
        .part(
            "files",
            reqwest::multipart::Part::bytes(b"more".to_vec()).file_name("b.txt"),
        );
    let response = server
        .client
        .post(server.url("/api/media/batch"))
        .header("authorization", server.auth())
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["data"]["failed"].as_array().unwrap().len(), 2);

    let (_, list) = server.json("/api/media").await;
    assert_eq!(list["data"]["total"], 3);
}

#[tokio::test]
async fn batch_over_file_limit_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("batch.toml");
    std::fs::write(&config, "[storage]\nmax_batch_files = 2\n").unwrap();
    let server = Server::start_with(&["--config", config.to_str().unwrap()]).await;
    let mut form = reqwest::multipart::Form::new();
    for n in 0..3u8 {
        form = form.part(
            "files",
            reqwest::multipart::Part::bytes(tiny_png(n)).file_name(format!("{n}.png")),
        );
    }
    let response = server
        .client
        .post(server.url("/api/media/batch"))
        .header("authorization", server.auth())
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_error(status, &body, 400, "too_many_files");
    let (_, list) = server.json("/api/media").await;
    assert_eq!(list["data"]["total"], 0);
    assert_eq!(server.temp_files(), 0);
}

/// Builds a valid 1×1 PNG whose bytes differ with `n` (through a tEXt chunk), so each is a new blob.
pub fn tiny_png(n: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, 1, 1);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .add_text_chunk("n".to_owned(), n.to_string())
        .unwrap();
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&[n, 0, 0, 255]).unwrap();
    writer.finish().unwrap();
    out
}
