//! The listener loop: connection cap, HTTP/1.1 and HTTP/2 on one port, timeouts, graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::body::Body;
use super::router;
use crate::config::Config;
use crate::ops::counting::{CountingBody, CountingIo};
use crate::ops::metrics::RouteClass;
use crate::ops::Metrics;
use crate::store::Store;
use crate::transform::Transformer;

/// The handles every request needs, cloned cheaply into each connection.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub transformer: Arc<Transformer>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// Builds the state for `store` under `config`, loading the variant cache's recency list.
    pub fn new(config: Config, store: Store) -> Result<AppState, crate::store::StoreError> {
        let store = Arc::new(store);
        let metrics = Arc::new(Metrics::new());
        let transformer = Transformer::new(
            store.clone(),
            config.transform.clone(),
            config.storage.max_source_pixels,
            config.storage.max_frames,
            metrics.clone(),
        )?;
        Ok(AppState {
            config: Arc::new(config),
            store,
            transformer: Arc::new(transformer),
            metrics,
        })
    }
}

/// Serves HTTP on `listener` until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish within `server.shutdown_timeout_secs` and returns.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = state.config.clone();
    let connections = Arc::new(Semaphore::new(config.server.max_connections));
    let graceful = GracefulShutdown::new();

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper starts this timer whenever it waits for a request head, so it also closes
        // keep-alive connections that stay idle.
        .header_read_timeout(Duration::from_secs(config.server.header_read_timeout_secs));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(config.server.header_read_timeout_secs));

    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Running out of file descriptors is the usual cause; back off instead of spinning.
                    tracing::error!(error = %err, "failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let stream = CountingIo::new(stream, state.metrics.connection_counters());
        let state = state.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(state, request).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }

    drop(listener);
    let timeout = Duration::from_secs(config.server.shutdown_timeout_secs);
    tracing::info!(
        timeout_secs = timeout.as_secs(),
        "shutting down: finishing in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(timeout) => {
            tracing::warn!(timeout_secs = timeout.as_secs(), "shutdown timeout reached; dropping open connections");
        }
    }
    Ok(())
}

/// Runs one request through the router and adds what every response carries.
async fn handle(state: AppState, request: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = RouteClass::of(&method, &path);

    let mut response = match router::route(&state, request).await {
        Ok(response) => response,
        Err(err) => {
            if err.status().is_server_error() {
                tracing::error!(%method, %path, status = err.status().as_u16(), code = err.code(),
                    message = err.message(), request_id, "request failed");
            } else {
                tracing::debug!(%method, %path, status = err.status().as_u16(), code = err.code(),
                    message = err.message(), request_id, "request rejected");
            }
            err.into_response()
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state.metrics.observe_request(route, status, elapsed);
    // In-memory bodies know their length; streamed files state it in Content-Length.
    let bytes = response.body().size_hint().exact().or_else(|| {
        response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    });
    tracing::info!(%method, %path, route = route.as_str(), status, bytes,
        duration_ms = elapsed.as_secs_f64() * 1000.0, request_id, "request");
    let counter = state.metrics.response_body_counter(route);
    response.map(|body| CountingBody::new(body, counter).boxed())
}
