//! `GET /metrics` and the optional separate listener (`metrics.listen`) that serves only it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::metrics::{RouteClass, CONTENT_TYPE as METRICS_CONTENT_TYPE};
use crate::http::{body, ApiError, AppState, Body};

/// Connections the metrics listener serves at once; scrapers open one or two.
const MAX_METRICS_CONNECTIONS: usize = 16;

/// Handles `GET`/`HEAD /metrics`.
pub fn metrics(state: &AppState, method: &Method) -> Result<Response<Body>, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::method_not_allowed(method, "GET, HEAD"));
    }
    if state.config.ipfs.enabled {
        // A read of the five-row counts table, cheap enough for the request thread.
        match state.store.index().ipfs_job_counts() {
            Ok(counts) => {
                for (job_state, count) in counts.by_state() {
                    state.metrics.set_replication_jobs(job_state, count);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "failed to read IPFS job counts for /metrics")
            }
        }
    }
    let text = state.metrics.encode(state.store.usage());
    let mut response = Response::new(body::full(text));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
    Ok(response)
}

/// Serves `/metrics` alone on `listener` until `shutdown` resolves. Requests here are counted
/// like those on the main listener.
pub async fn run_listener(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let connections = Arc::new(Semaphore::new(MAX_METRICS_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let header_timeout = Duration::from_secs(state.config.server.header_read_timeout_secs);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);

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
                    tracing::error!(error = %err, "failed to accept a metrics connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let state = state.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(&state, request)) }
        });
        let connection = graceful.watch(
            builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned(),
        );
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "metrics connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    // Scrapes take milliseconds, so a short grace period is enough.
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
    Ok(())
}

fn handle(state: &AppState, request: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let path = request.uri().path();
    let route = RouteClass::of(request.method(), path);
    let result = if path == "/metrics" {
        metrics(state, request.method())
    } else {
        Err(ApiError::not_found(
            "route_not_found",
            format!("no route {path} on the metrics listener; it serves only /metrics"),
        ))
    };
    let response = result.unwrap_or_else(ApiError::into_response);
    state
        .metrics
        .observe_request(route, response.status().as_u16(), started.elapsed());
    response
}
