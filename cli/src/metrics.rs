//! `/metrics` of the long-running services (`--metrics ADDR` on `persona shard`,
//! `persona gateway` and `persona detokenizer`), in the OpenMetrics text format that
//! Prometheus scrapes. Each scrape gathers the current values afresh (counters from
//! the services' own counts, gauges such as partition lag asked of Redis then), plus
//! the process's latency histograms. Labels are partitions, outcomes and ways in:
//! never a token or a value.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

pub(crate) mod otlp;

/// Builds the registry of one scrape.
pub(crate) type Gather = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Registry> + Send>> + Send + Sync>;

/// Label sets.
pub(crate) type Labels = Vec<(String, String)>;

pub(crate) fn label(name: &str, value: impl ToString) -> Labels {
    vec![(name.to_owned(), value.to_string())]
}

/// A counter family registered in `registry`, for setting per scrape.
pub(crate) fn counters(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

/// A gauge family registered in `registry`.
pub(crate) fn gauges(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    registry.register(name, help, family.clone());
    family
}

/// `registry` with the process's own gauges (resident memory).
pub(crate) fn with_process(mut registry: Registry) -> Registry {
    let resident: Gauge = Gauge::default();
    resident.set(i64::try_from(crate::bench::rss().0).unwrap_or(i64::MAX));
    registry.register(
        "process_resident_memory_bytes",
        "Resident memory of the process, in bytes",
        resident,
    );
    registry
}

/// The service's metrics, served on `addr` (Prometheus) and pushed to the OTLP
/// endpoint of `--otlp-endpoint` (if any), until `stop` turns true: the tasks to
/// await.
pub(crate) fn publish(
    addr: Option<SocketAddr>,
    service: &'static str,
    gather: Gather,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<Result<()>>> {
    let mut tasks = Vec::new();
    if let Some(endpoint) = crate::telemetry::otlp_endpoint() {
        let (gather, stop) = (gather.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            otlp::push(endpoint, service, gather, otlp::interval(), stop).await;
            Ok(())
        }));
    }
    if let Some(addr) = addr {
        tasks.push(tokio::spawn(serve(addr, gather, stop)));
    }
    tasks
}

/// Serves `GET /metrics` on `addr` until `stop` turns true.
pub(crate) async fn serve(addr: SocketAddr, gather: Gather, mut stop: watch::Receiver<bool>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint on {addr}"))?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    continue;
                }
            },
            _ = stop.changed() => return Ok(()),
        };
        let gather = gather.clone();
        tokio::spawn(async move {
            let handler = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let gather = gather.clone();
                async move {
                    if matches!(req.uri().path(), "/healthz" | "/readyz") {
                        return Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))));
                    }
                    if req.uri().path() != "/metrics" {
                        let mut r = Response::new(Full::new(Bytes::from_static(b"GET /metrics\n")));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        return Ok::<_, Infallible>(r);
                    }
                    let registry = with_process(gather().await);
                    let mut text = String::new();
                    let mut response = match encode(&mut text, &registry) {
                        Ok(()) => Response::new(Full::new(Bytes::from(text))),
                        Err(_) => {
                            let mut r = Response::new(Full::new(Bytes::from_static(b"encoding failed\n")));
                            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                            r
                        }
                    };
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    Ok(response)
                }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .await
            {
                tracing::debug!(error = %e, "metrics endpoint: connection ended");
            }
        });
    }
}
