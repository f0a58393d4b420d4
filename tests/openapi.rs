//! The OpenAPI document against the running server: every documented route and status is produced
//! by a real request here, and each JSON body matches its documented schema.

mod common;

use std::collections::BTreeSet;

use common::{read_fixture, Server};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

/// Every (method, path, status) the document must list, no more and no less.
const DOCUMENTED: &[(&str, &str, u16)] = &[
    ("get", "/api/media", 200),
    ("get", "/api/media", 400),
    ("get", "/api/media", 401),
    ("post", "/api/media", 201),
    ("post", "/api/media", 400),
    ("post", "/api/media", 401),
    ("post", "/api/media", 413),
    ("post", "/api/media", 415),
    ("post", "/api/media", 422),
    ("post", "/api/media", 507),
    ("post", "/api/media/batch", 201),
    ("post", "/api/media/batch", 207),
    ("post", "/api/media/batch", 400),
    ("post", "/api/media/batch", 401),
    ("post", "/api/media/batch", 413),
    ("post", "/api/media/batch", 415),
    ("post", "/api/media/batch", 422),
    ("post", "/api/media/batch", 507),
    ("get", "/api/media/{id}", 200),
    ("get", "/api/media/{id}", 401),
    ("get", "/api/media/{id}", 404),
    ("delete", "/api/media/{id}", 200),
    ("delete", "/api/media/{id}", 401),
    ("delete", "/api/media/{id}", 404),
    ("get", "/api/ipfs", 200),
    ("get", "/api/ipfs", 401),
    ("post", "/api/ipfs/verify", 200),
    ("post", "/api/ipfs/verify", 400),
    ("post", "/api/ipfs/verify", 401),
    ("get", "/api/openapi.json", 200),
    ("get", "/healthz", 200),
    ("get", "/readyz", 200),
    ("get", "/readyz", 503),
    ("get", "/metrics", 200),
];

/// A small valid PNG, well under the test server's 10000-byte upload limit.
const SMALL_PNG: &str = "png-1x1-interlaced-palette.png";
/// Larger than that limit.
const LARGE_JPEG: &str = "grace_hopper.jpg";
const SVG: &str = "svg-xss-script.svg";
const CORRUPT_PNG: &str = "corrupt-png-no-idat-xdtn0g01.png";

/// A normal server with a small upload limit, and one whose disk is always "too full".
struct Servers {
    normal: Server,
    low_disk: Server,
    _configs: tempfile::TempDir,
}

struct Produced {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

async fn start_servers() -> Servers {
    let configs = tempfile::tempdir().unwrap();
    let normal_config = configs.path().join("normal.toml");
    std::fs::write(&normal_config, "[storage]\nmax_upload_bytes = 10000\n").unwrap();
    let low_config = configs.path().join("low.toml");
    std::fs::write(
        &low_config,
        "[storage]\nmin_free_bytes = 9223372036854775807\n",
    )
    .unwrap();
    let normal = Server::start_with(&["--config", normal_config.to_str().unwrap()]).await;
    let low_disk = Server::start_with(&["--config", low_config.to_str().unwrap()]).await;
    Servers {
        normal,
        low_disk,
        _configs: configs,
    }
}

fn file_part(name: &str) -> Part {
    Part::bytes(read_fixture(name)).file_name(name.to_owned())
}

fn single_form(name: &str) -> Form {
    Form::new().part("file", file_part(name))
}

fn batch_form(names: &[&str]) -> Form {
    names.iter().fold(Form::new(), |form, name| {
        form.part("files", file_part(name))
    })
}

async fn collect(response: reqwest::Response) -> Produced {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.bytes().await.unwrap().to_vec();
    Produced {
        status,
        content_type,
        body,
    }
}

/// Uploads a small file and returns its record id.
async fn stored_id(server: &Server) -> String {
    let (status, body) = server.upload(SMALL_PNG, read_fixture(SMALL_PNG)).await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

/// Sends the request that should produce `status` on `method path`.
async fn produce(servers: &Servers, method: &str, path: &str, status: u16) -> Produced {
    let n = &servers.normal;
    let client = &n.client;
    let auth = n.auth();
    let missing_id = "00000000-0000-4000-8000-000000000000";
    let request = match (method, path, status) {
        ("get", "/api/media", 200) => n.get_api("/api/media"),
        ("get", "/api/media", 400) => n.get_api("/api/media?page=0"),
        ("get", "/api/media", 401) => client.get(n.url("/api/media")),

        ("post", "/api/media", 201) => client
            .post(n.url("/api/media"))
            .header("authorization", &auth)
            .multipart(single_form(SMALL_PNG)),
        ("post", "/api/media", 400) => client
            .post(n.url("/api/media"))
            .header("authorization", &auth)
            .multipart(single_form("empty-zero-bytes.jpg")),
        ("post", "/api/media", 401) => client
            .post(n.url("/api/media"))
            .multipart(single_form(SMALL_PNG)),
        ("post", "/api/media", 413) => client
            .post(n.url("/api/media"))
            .header("authorization", &auth)
            .multipart(single_form(LARGE_JPEG)),
        ("post", "/api/media", 415) => client
            .post(n.url("/api/media"))
            .header("authorization", &auth)
            .multipart(single_form(SVG)),
        ("post", "/api/media", 422) => client
            .post(n.url("/api/media"))
            .header("authorization", &auth)
            .multipart(single_form(CORRUPT_PNG)),
        ("post", "/api/media", 507) => {
            let low = &servers.low_disk;
            low.client
                .post(low.url("/api/media"))
                .header("authorization", low.auth())
                .multipart(single_form(SMALL_PNG))
        }

        ("post", "/api/media/batch", status) => {
            let names: &[&str] = match status {
                201 => &[SMALL_PNG, "meta-multiple-exif-1x1.jpg"],
                207 => &[SMALL_PNG, SVG],
                400 => &["empty-zero-bytes.jpg", "empty-zero-bytes.jpg"],
                401 => &[SMALL_PNG],
                413 => &[LARGE_JPEG, LARGE_JPEG],
                415 => &[SVG, SVG],
                422 => &[CORRUPT_PNG, "png-signature-only.png"],
                507 => &[SMALL_PNG],
                other => panic!("no request produces POST /api/media/batch {other}"),
            };
            let server = if status == 507 { &servers.low_disk } else { n };
            let request = server
                .client
                .post(server.url("/api/media/batch"))
                .multipart(batch_form(names));
            if status == 401 {
                request
            } else {
                request.header("authorization", server.auth())
            }
        }

        ("get", "/api/media/{id}", 200) => n.get_api(&format!("/api/media/{}", stored_id(n).await)),
        ("get", "/api/media/{id}", 401) => {
            client.get(n.url(&format!("/api/media/{}", stored_id(n).await)))
        }
        ("get", "/api/media/{id}", 404) => n.get_api(&format!("/api/media/{missing_id}")),
        ("delete", "/api/media/{id}", 200) => client
            .delete(n.url(&format!("/api/media/{}", stored_id(n).await)))
            .header("authorization", &auth),
        ("delete", "/api/media/{id}", 401) => {
            client.delete(n.url(&format!("/api/media/{}", stored_id(n).await)))
        }
        ("delete", "/api/media/{id}", 404) => client
            .delete(n.url(&format!("/api/media/{missing_id}")))
            .header("authorization", &auth),

        ("get", "/api/ipfs", 200) => n.get_api("/api/ipfs"),
        ("get", "/api/ipfs", 401) => client.get(n.url("/api/ipfs")),
        ("post", "/api/ipfs/verify", 200) => client
            .post(n.url("/api/ipfs/verify"))
            .header("authorization", &auth),
        ("post", "/api/ipfs/verify", 400) => client
            .post(n.url("/api/ipfs/verify?repair=maybe"))
            .header("authorization", &auth),
        ("post", "/api/ipfs/verify", 401) => client.post(n.url("/api/ipfs/verify")),

        ("get", "/api/openapi.json", 200) => client.get(n.url("/api/openapi.json")),
        ("get", "/healthz", 200) => client.get(n.url("/healthz")),
        ("get", "/readyz", 200) => client.get(n.url("/readyz")),
        ("get", "/readyz", 503) => {
            let low = &servers.low_disk;
            low.client.get(low.url("/readyz"))
        }
        ("get", "/metrics", 200) => client.get(n.url("/metrics")),
        (method, path, status) => panic!("no request produces {method} {path} {status}"),
    };
    collect(request.send().await.unwrap()).await
}

/// Checks `value` against the subset of JSON Schema the document uses: `$ref`, `type`, `const`,
/// `enum`, `required`, `properties` and `items`.
fn validate(document: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let pointer = reference.trim_start_matches('#');
        let target = document
            .pointer(pointer)
            .ok_or_else(|| format!("{at}: unresolved $ref {reference}"))?;
        return validate(document, target, value, at);
    }
    if let Some(expected) = schema.get("const") {
        if value != expected {
            return Err(format!("{at}: expected {expected}, got {value}"));
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Err(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(kind) = schema["type"].as_str() {
        let matches = match kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            other => return Err(format!("{at}: the validator does not know type {other}")),
        };
        if !matches {
            return Err(format!("{at}: expected {kind}, got {value}"));
        }
    }
    for key in schema["required"].as_array().into_iter().flatten() {
        let key = key.as_str().unwrap();
        if value.get(key).is_none() {
            return Err(format!("{at}: missing required member {key:?} in {value}"));
        }
    }
    if let Some(properties) = schema["properties"].as_object() {
        for (key, property) in properties {
            if let Some(member) = value.get(key) {
                validate(document, property, member, &format!("{at}.{key}"))?;
            }
        }
    }
    if let (Some(items), Some(elements)) = (schema.get("items"), value.as_array()) {
        for (i, element) in elements.iter().enumerate() {
            validate(document, items, element, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn documented_operations(document: &Value) -> BTreeSet<(String, String, u16)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            for status in operation["responses"].as_object().unwrap().keys() {
                let status: u16 = status.parse().unwrap_or_else(|_| {
                    panic!("{method} {path}: status {status:?} is not a number")
                });
                operations.insert((method.clone(), path.clone(), status));
            }
        }
    }
    operations
}

#[tokio::test]
async fn served_document_is_the_static_file() {
    let server = Server::start().await;
    let response = server
        .client
        .get(server.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "no key is needed");
    assert_eq!(response.headers()["content-type"], "application/json");
    let served: Value = response.json().await.unwrap();
    let file: Value = serde_json::from_str(include_str!("../src/api/openapi.json")).unwrap();
    assert_eq!(served, file);
    assert_eq!(served["openapi"], "3.1.0");
}

#[tokio::test]
async fn every_documented_status_is_produced() {
    let document: Value = serde_json::from_str(include_str!("../src/api/openapi.json")).unwrap();
    let documented = documented_operations(&document);
    let expected: BTreeSet<(String, String, u16)> = DOCUMENTED
        .iter()
        .map(|(method, path, status)| (method.to_string(), path.to_string(), *status))
        .collect();
    assert_eq!(
        documented, expected,
        "the document and this test list the same statuses"
    );

    let servers = start_servers().await;
    for (method, path, status) in &documented {
        let produced = produce(&servers, method, path, *status).await;
        let label = format!("{} {path} {status}", method.to_uppercase());
        assert_eq!(
            produced.status,
            *status,
            "{label}: body {}",
            String::from_utf8_lossy(&produced.body)
        );

        let response = &document["paths"][path][method]["responses"][status.to_string()];
        let content = response["content"].as_object().expect("documented content");
        let (media_type, media) = content.iter().next().unwrap();
        assert!(
            produced.content_type.starts_with(media_type.as_str()),
            "{label}: content type {:?}, documented {media_type}",
            produced.content_type
        );
        if media_type == "application/json" {
            let body: Value = serde_json::from_slice(&produced.body)
                .unwrap_or_else(|err| panic!("{label}: body is not JSON: {err}"));
            if let Err(problem) = validate(&document, &media["schema"], &body, "body") {
                panic!("{label}: {problem}");
            }
        }
    }
}

#[test]
fn validator_catches_mismatches() {
    let document: Value = serde_json::from_str(include_str!("../src/api/openapi.json")).unwrap();
    let schema = serde_json::json!({ "$ref": "#/components/schemas/Error" });
    let good = serde_json::json!({ "success": false, "error": { "code": "x", "message": "y" } });
    assert!(validate(&document, &schema, &good, "body").is_ok());
    let missing = serde_json::json!({ "success": false, "error": { "code": "x" } });
    assert!(validate(&document, &schema, &missing, "body").is_err());
    let wrong_const =
        serde_json::json!({ "success": true, "error": { "code": "x", "message": "y" } });
    assert!(validate(&document, &schema, &wrong_const, "body").is_err());
}
