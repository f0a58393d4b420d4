//! Persistence across restarts, graceful shutdown, and a SIGKILL in the middle of an upload.

mod common;

use std::time::{Duration, Instant};

use common::{read_fixture, Server};

/// Returns a media record without its `url`, which names the address the server listens on.
fn without_url(record: &serde_json::Value) -> serde_json::Value {
    let mut record = record.clone();
    record.as_object_mut().unwrap().remove("url");
    record
}

#[tokio::test]
async fn records_survive_restart() {
    let mut server = Server::start().await;
    let bytes = read_fixture("rocket.jpg");
    let (status, body) = server.upload("rocket.jpg", bytes.clone()).await;
    assert_eq!(status, 201);
    let id = body["data"]["id"].as_str().unwrap().to_owned();

    let status = server.stop();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    assert!(server.log().contains("server stopped"), "{}", server.log());
    server.restart().await;

    let (status, details) = server.json(&format!("/api/media/{id}")).await;
    assert_eq!(status, 200);
    // The restarted server listens on a new port, and URLs follow it.
    assert_eq!(without_url(&details["data"]), without_url(&body["data"]));
    assert_eq!(details["data"]["url"], server.url("/rocket.jpg"));
    let fetched = server
        .client
        .get(server.url("/rocket.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn kill_during_upload_leaves_nothing() {
    let mut server = Server::start().await;
    let (status, kept) = server
        .upload("kept.jpg", read_fixture("grace_hopper.jpg"))
        .await;
    assert_eq!(status, 201);

    // Send the first part of a large upload, then hold the rest back.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let part =
        reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(stream)).file_name("big.jpg");
    let form = reqwest::multipart::Form::new().part("file", part);
    let request = server
        .client
        .post(server.url("/api/media"))
        .header("authorization", server.auth())
        .multipart(form)
        .send();
    let upload = tokio::spawn(request);
    let photo = read_fixture("rocket.jpg");
    sender.send(Ok(photo[..50_000].to_vec())).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    while server.temp_files() == 0 {
        assert!(
            Instant::now() < deadline,
            "the upload never reached the temp directory"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill9();
    drop(sender);
    let _ = upload.await;

    server.restart().await;
    assert_eq!(
        server.temp_files(),
        0,
        "start-up removes leftover temp files"
    );
    let (status, list) = server.json("/api/media").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"]["total"], 1);
    assert_eq!(
        without_url(&list["data"]["items"][0]),
        without_url(&kept["data"])
    );
    assert_eq!(server.blob_files(), 1);
}

#[tokio::test]
async fn sigterm_finishes_in_flight_request() {
    let mut server = Server::start().await;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let part =
        reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(stream)).file_name("slow.jpg");
    let form = reqwest::multipart::Form::new().part("file", part);
    let request = server
        .client
        .post(server.url("/api/media"))
        .header("authorization", server.auth())
        .multipart(form)
        .send();
    let upload = tokio::spawn(request);
    let photo = read_fixture("grace_hopper.jpg");
    sender.send(Ok(photo[..30_000].to_vec())).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.temp_files() == 0 {
        assert!(
            Instant::now() < deadline,
            "the upload never reached the temp directory"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // SIGTERM while the body is still arriving; the request must still complete.
    let pid = server.pid();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    sender.send(Ok(photo[30_000..].to_vec())).await.unwrap();
    drop(sender);
    let response = upload
        .await
        .unwrap()
        .expect("the in-flight upload gets a response");
    assert_eq!(response.status(), 201);

    let status = server.stop_wait();
    assert!(status.success());
    server.restart().await;
    let (_, list) = server.json("/api/media").await;
    assert_eq!(list["data"]["total"], 1);
}
