//! `persona gateway`, the long-running ingest service of the trusted zone:
//!
//! - a **drop directory**: each file that matches a Source's glob and has not changed
//!   for a settle time is ingested as a batch, its events published to the Redis bus,
//!   its refused records appended to `dead_letter.jsonl`, and the file moved under the
//!   done directory. A vault or KMS failure leaves the file where it is and the
//!   service retries it with backoff: the token look-up is idempotent, so a retried
//!   file issues no second token, and its events keep their ids, so the cloud applies
//!   each once.
//! - the gRPC **`Gateway.Ingest`** call: records of a named Source as JSON objects;
//! - **stream sources** (`stream: KEY` in the Source): the entries of a Redis stream,
//!   continuously ([`streams`]);
//! - the gRPC **`SealedVault.Sealed`** call for the de-tokenizer (only with mutual
//!   TLS): a token's records, still sealed (see [`persona_privacy::SealedRecord`]).

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use persona_bus::redis::{RedisBus, RedisBusError};
use persona_event::{ContactKind, Event};
use persona_privacy::{RawRecord, Source};
use persona_proto::v1::{
    IngestReply, IngestRequest, RefusedRecord, SealedContact, SealedReply, SealedRequest, WrappedVaultKey,
};
use persona_proto::{GatewayServer, SealedVaultServer};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::{DeadLetter, Error, Gateway, SourceCounts};

pub mod streams;

/// Most records one `Ingest` call may carry.
pub const MAX_RECORDS_PER_CALL: usize = 10_000;
/// Events per bus publish.
const PUBLISH_CHUNK: usize = 5_000;
/// The longest wait between retries of a failing file or publish.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where a drop directory's files go.
#[derive(Clone, Debug)]
pub struct DropDir {
    /// Watched for new files (each Source's glob, under this directory).
    pub dir: PathBuf,
    /// Ingested files move here (same relative path), and `dead_letter.jsonl` lives
    /// here. Files under it are never ingested again, even inside `dir`.
    pub done: PathBuf,
    /// How often the directory is scanned.
    pub poll: Duration,
    /// A file is taken once it has not been modified for this long (a writer still
    /// filling it is left alone); writers that rename a finished file in may use 0.
    pub settle: Duration,
}

/// The running service's shared parts.
#[derive(Debug)]
pub struct IngestService {
    gateway: Arc<Gateway>,
    bus: RedisBus,
    dead_letters: Mutex<PathBuf>,
    counters: IngestCounters,
}

/// What the service has done since it started, by way in (`drop`, `grpc`, `stream`),
/// for its `/metrics`.
#[derive(Debug, Default)]
pub struct IngestCounters {
    pub by_way: [WayCounters; 3],
    /// Files, calls or stream batches that failed (and are retried, or were refused).
    pub failures: AtomicU64,
}

/// Counters of one way in.
#[derive(Debug, Default)]
pub struct WayCounters {
    pub records: AtomicU64,
    pub events: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub tokens_issued: AtomicU64,
}

/// The ways records come in, in the order of [`IngestCounters::by_way`].
pub const WAYS: [&str; 3] = ["drop", "grpc", "stream"];

impl IngestCounters {
    pub(crate) fn add(&self, way: usize, c: &SourceCounts) {
        let w = &self.by_way[way];
        w.records.fetch_add(c.records_read, Ordering::Relaxed);
        w.events.fetch_add(c.events, Ordering::Relaxed);
        w.dead_lettered.fetch_add(c.dead_lettered, Ordering::Relaxed);
        w.tokens_issued.fetch_add(c.tokens_issued, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
}

impl IngestService {
    /// `dead_letters` is the JSON Lines file refused records are appended to.
    pub fn new(gateway: Arc<Gateway>, bus: RedisBus, dead_letters: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            gateway,
            bus,
            dead_letters: Mutex::new(dead_letters),
            counters: IngestCounters::default(),
        })
    }

    /// The service's counters.
    pub fn counters(&self) -> &IngestCounters {
        &self.counters
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Watches `drop` until `stop` turns true; the file being ingested is finished
    /// first.
    pub async fn watch(self: Arc<Self>, drop: DropDir, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::ZERO;
        loop {
            if *stop.borrow() {
                return;
            }
            match self.scan_once(&drop).await {
                Ok(_) => backoff = Duration::ZERO,
                Err(e) => {
                    self.counters.failed();
                    backoff = (backoff * 2).clamp(Duration::from_millis(200), MAX_BACKOFF);
                    tracing::error!(error = %error_chain(&e), retry_in_ms = backoff.as_millis() as u64, "drop directory: ingest failed; the file stays and is retried");
                }
            }
            let wait = drop.poll.max(backoff);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Ingests every settled file of the drop directory once; returns how many files
    /// it took. Stops at the first file that fails (it stays for the next scan).
    pub async fn scan_once(&self, drop: &DropDir) -> Result<usize, ServiceError> {
        let mut taken = 0;
        let now = SystemTime::now();
        for source in self.gateway.sources() {
            let files = source.files(&drop.dir).map_err(|e| {
                ServiceError::Ingest(Error::Source {
                    source_name: source.name().to_owned(),
                    source: e,
                })
            })?;
            for path in files {
                if path.starts_with(&drop.done) || !settled(&path, now, drop.settle) {
                    continue;
                }
                let rel = crate::relative(&drop.dir, &path);
                self.ingest_dropped(source, &path, &rel, drop).await?;
                taken += 1;
            }
        }
        Ok(taken)
    }

    async fn ingest_dropped(
        &self,
        source: &Source,
        path: &Path,
        rel: &str,
        drop: &DropDir,
    ) -> Result<(), ServiceError> {
        let span = tracing::info_span!("gateway.ingest_file", source = %source.name(), file = %rel);
        let trace = persona_proto::trace::traceparent(&span);
        let gateway = self.gateway.clone();
        let source_name = source.name().to_owned();
        let (p, r) = (path.to_owned(), rel.to_owned());
        let (events, dead, counts) = tokio::task::spawn_blocking(move || {
            let source = gateway.source(&source_name).expect("the source is the gateway's own");
            let mut events = Vec::new();
            let mut dead = Vec::new();
            let counts = gateway.ingest_file(source, &p, &r, &mut |e| events.push(e), &mut dead)?;
            // Tokens are durable before any event that carries one leaves the zone.
            gateway.vault().flush().map_err(|source| Error::Flush { source })?;
            Ok::<_, Error>((events, dead, counts))
        })
        .await
        .map_err(|e| ServiceError::Task(e.to_string()))??;
        self.publish(&events, trace.as_deref()).await?;
        std::mem::drop(span);
        self.append_dead_letters(&dead)?;
        let to = drop.done.join(rel);
        let moved = to
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::rename(path, &to));
        moved.map_err(|source| ServiceError::Io {
            path: to.clone(),
            source,
        })?;
        self.counters.add(0, &counts);
        tracing::info!(source = %source.name(), file = %rel, events = counts.events, dead_lettered = counts.dead_lettered, tokens_issued = counts.tokens_issued, "dropped file ingested and moved to the done directory");
        Ok(())
    }

    /// Publishes events to the bus, in chunks, with the trace context of the span
    /// that ingested them.
    pub async fn publish(&self, events: &[Event], trace: Option<&str>) -> Result<(), ServiceError> {
        for chunk in events.chunks(PUBLISH_CHUNK) {
            self.bus.publish_traced(chunk, trace).await.map_err(ServiceError::Bus)?;
        }
        Ok(())
    }

    fn append_dead_letters(&self, dead: &[DeadLetter]) -> Result<(), ServiceError> {
        if dead.is_empty() {
            return Ok(());
        }
        let path = self.dead_letters.lock().unwrap_or_else(|e| e.into_inner());
        let io = |source| ServiceError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut out = String::new();
        for d in dead {
            out.push_str(&serde_json::to_string(d).expect("a dead letter serializes"));
            out.push('\n');
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&*path)
            .map_err(io)?;
        file.write_all(out.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)
    }

    /// Serves `Gateway` (and `SealedVault` when `tls` is given: mutual TLS only),
    /// grpc.health.v1 and reflection on `addr` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        addr: SocketAddr,
        tls: Option<persona_proto::tls::MutualTls>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServiceError> {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_serving::<GatewayServer<GrpcIngest>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(persona_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| ServiceError::Serve(format!("reflection: {e}")))?;
        let mut server = tonic::transport::Server::builder();
        let vault = match &tls {
            Some(tls) => {
                server = server
                    .tls_config(tls.server().map_err(|e| ServiceError::Serve(e.to_string()))?)
                    .map_err(|e| ServiceError::Serve(format!("TLS: {e}")))?;
                Some(SealedVaultServer::new(GrpcVault { service: self.clone() }))
            }
            None => {
                tracing::warn!(
                    "no mutual TLS configured: the SealedVault service (for the de-tokenizer) is not served"
                );
                None
            }
        };
        server
            .add_service(health)
            .add_service(reflection)
            .add_service(GatewayServer::new(GrpcIngest { service: self }))
            .add_optional_service(vault)
            .serve_with_shutdown(addr, shutdown)
            .await
            .map_err(|e| ServiceError::Serve(format!("gRPC server on {addr}: {e}")))
    }
}

/// What stops a scan, a call or the server. Record-level problems never do.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Ingest(#[from] Error),
    #[error("cannot publish to the bus")]
    Bus(#[source] RedisBusError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ingest task failed: {0}")]
    Task(String),
    #[error("{0}")]
    Serve(String),
}

/// The gRPC `Gateway` service.
#[derive(Debug, Clone)]
pub struct GrpcIngest {
    service: Arc<IngestService>,
}

#[tonic::async_trait]
impl persona_proto::Gateway for GrpcIngest {
    async fn ingest(&self, request: Request<IngestRequest>) -> Result<Response<IngestReply>, Status> {
        let span = tracing::info_span!("gateway.ingest_call", source = tracing::field::Empty);
        if let Some(parent) = persona_proto::trace::from_metadata(request.metadata()) {
            persona_proto::trace::set_parent(&span, &parent);
        }
        let trace = persona_proto::trace::traceparent(&span);
        let IngestRequest { source, records } = request.into_inner();
        span.record("source", source.as_str());
        if records.len() > MAX_RECORDS_PER_CALL {
            return Err(Status::invalid_argument(format!(
                "{} records in one call; at most {MAX_RECORDS_PER_CALL}",
                records.len()
            )));
        }
        if self.service.gateway.source(&source).is_none() {
            let known: Vec<&str> = self.service.gateway.sources().iter().map(Source::name).collect();
            return Err(Status::not_found(format!(
                "no source named `{source}` (known: {})",
                known.join(", ")
            )));
        }
        let gateway = self.service.gateway.clone();
        let source_name = source.clone();
        let (events, refused, counts) = tokio::task::spawn_blocking(move || {
            let src = gateway.source(&source).expect("checked above");
            let file: Arc<str> = Arc::from(format!("grpc:{source}"));
            let mut events = Vec::new();
            let mut refused = Vec::new();
            let mut counts = SourceCounts::default();
            let mut unnamed = BTreeSet::new();
            for (i, text) in records.iter().enumerate() {
                counts.records_read += 1;
                let rec = match RawRecord::from_json(file.clone(), i as u64 + 1, text.as_bytes()) {
                    Ok(rec) => rec,
                    Err(refusal) => {
                        refused.push((i, refusal));
                        continue;
                    }
                };
                if let Some(refusal) = gateway.ingest_record(src, &rec, &mut |e| events.push(e), &mut counts, &mut unnamed)? {
                    refused.push((i, refusal));
                }
            }
            if !unnamed.is_empty() {
                tracing::warn!(source = %src.name(), columns = ?unnamed, "Ingest: fields named by no rule were dropped");
            }
            gateway.vault().flush().map_err(|source| Error::Flush { source })?;
            Ok::<_, Error>((events, refused, counts))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::unavailable(error_chain(&e)))?;
        self.service
            .publish(&events, trace.as_deref())
            .await
            .map_err(|e| Status::unavailable(error_chain(&e)))?;
        let dead: Vec<DeadLetter> = refused
            .iter()
            .map(|(i, r)| DeadLetter {
                source: source_name.clone(),
                file: "grpc".to_owned(),
                line: *i as u64 + 1,
                reason: r.reason.clone(),
                field: r.field.clone(),
            })
            .collect();
        self.service
            .append_dead_letters(&dead)
            .map_err(|e| Status::internal(error_chain(&e)))?;
        let mut counted = counts;
        counted.events = events.len() as u64;
        counted.dead_lettered = refused.len() as u64;
        self.service.counters.add(1, &counted);
        Ok(Response::new(IngestReply {
            events: events.len() as u64,
            tokens_issued: counts.tokens_issued,
            refused: refused
                .into_iter()
                .map(|(i, r)| RefusedRecord {
                    index: i as u64,
                    field: r.field.unwrap_or_default(),
                    reason: r.reason,
                })
                .collect(),
        }))
    }
}

/// The gRPC `SealedVault` service: sealed records only, never opened here.
#[derive(Debug, Clone)]
pub struct GrpcVault {
    service: Arc<IngestService>,
}

#[tonic::async_trait]
impl persona_proto::SealedVault for GrpcVault {
    async fn sealed(&self, request: Request<SealedRequest>) -> Result<Response<SealedReply>, Status> {
        let SealedRequest { token, contact_kinds } = request.into_inner();
        let token = persona_proto::token("token", &token)?;
        let kinds = contact_kinds
            .iter()
            .map(|k| k.parse::<ContactKind>().map_err(Status::invalid_argument))
            .collect::<Result<Vec<_>, _>>()?;
        let record = self
            .service
            .gateway
            .vault()
            .sealed(&token, &kinds)
            .map_err(|e| Status::internal(error_chain(&e)))?;
        let Some(record) = record else {
            return Ok(Response::new(SealedReply::default()));
        };
        Ok(Response::new(SealedReply {
            found: true,
            reverse: record.reverse,
            contacts: record
                .contacts
                .into_iter()
                .map(|(kind, sealed)| SealedContact {
                    kind: kind.as_str().to_owned(),
                    sealed,
                })
                .collect(),
            keys: record
                .keys
                .into_iter()
                .map(|(version, wrapped)| WrappedVaultKey {
                    version,
                    wrapped: wrapped.as_bytes().to_vec(),
                })
                .collect(),
        }))
    }
}

/// A file is settled when it was last modified at least `settle` ago.
fn settled(path: &Path, now: SystemTime, settle: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= settle)
}

pub use persona_proto::error_chain;
