//! Continuous sources: a Source with `stream: KEY` has its records as the entries of
//! that Redis stream (on the trusted zone's Redis, `persona gateway --source-redis
//! URL`), each entry's fields the record's fields. The gateway reads them in the
//! consumer group `persona-gateway`, scrubs and tokenizes each batch, flushes the
//! vault, publishes the events, appends refusals to the dead-letter file, and only
//! then acknowledges the entries. A vault or KMS failure leaves the batch pending: it
//! is read again (from the pending list) after a backoff, and tokens and event ids
//! come out the same. A refused entry's dead letter names it as file
//! `redis:KEY/ENTRY-ID`, line 1; without `id` fields its event id hashes that name,
//! so every entry has its own id, stable across re-reads.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use persona_privacy::{RawRecord, Refusal};
use redis::AsyncCommands;
use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio::sync::watch;

use super::{IngestService, MAX_BACKOFF, ServiceError, error_chain};
use crate::{DeadLetter, Error, SourceCounts};

/// The consumer group of the gateways on a source stream.
pub const GROUP: &str = "persona-gateway";
/// Entries read per batch.
const BATCH: usize = 1_000;

impl IngestService {
    /// Follows the stream of the source `source_name` until `stop` turns true.
    pub async fn follow(
        self: Arc<Self>,
        redis_url: String,
        source_name: String,
        consumer: String,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), ServiceError> {
        let source = self
            .gateway
            .source(&source_name)
            .ok_or_else(|| ServiceError::Serve(format!("no source named `{source_name}`")))?;
        let key = source
            .stream()
            .ok_or_else(|| ServiceError::Serve(format!("source `{source_name}` reads files, not a stream")))?
            .to_owned();
        let client =
            redis::Client::open(redis_url.as_str()).map_err(|e| ServiceError::Serve(format!("--source-redis: {e}")))?;
        let mut backoff = Duration::ZERO;
        // Pending entries first (a batch a crash or a failure left unacknowledged).
        let mut from_pending = true;
        while !*stop.borrow() {
            match self
                .follow_once(&client, &key, &source_name, &consumer, from_pending)
                .await
            {
                Ok(read) => {
                    backoff = Duration::ZERO;
                    // An empty read of the pending list means it is drained.
                    if from_pending && read == 0 {
                        from_pending = false;
                    }
                    continue;
                }
                Err(e) => {
                    self.counters.failed();
                    backoff = (backoff * 2).clamp(Duration::from_millis(200), MAX_BACKOFF);
                    from_pending = true;
                    tracing::error!(source = %source_name, stream = %key, error = %error_chain(&e), retry_in_ms = backoff.as_millis() as u64, "stream source: batch failed; it stays pending and is retried");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => {}
            }
        }
        Ok(())
    }

    /// Reads, ingests and acknowledges one batch; returns how many entries it read.
    async fn follow_once(
        &self,
        client: &redis::Client,
        key: &str,
        source_name: &str,
        consumer: &str,
        from_pending: bool,
    ) -> Result<usize, ServiceError> {
        let redis_err = |e: redis::RedisError| ServiceError::Serve(format!("source stream `{key}`: {e}"));
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(redis_err)?;
        let created: redis::RedisResult<()> = conn.xgroup_create_mkstream(key, GROUP, "0").await;
        if let Err(e) = created
            && e.code() != Some("BUSYGROUP")
        {
            return Err(redis_err(e));
        }
        let mut opts = StreamReadOptions::default().group(GROUP, consumer).count(BATCH);
        if !from_pending {
            opts = opts.block(1_000);
        }
        let start = if from_pending { "0" } else { ">" };
        let reply: Option<StreamReadReply> = conn.xread_options(&[key], &[start], &opts).await.map_err(redis_err)?;
        let entries: Vec<redis::streams::StreamId> = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default();
        if entries.is_empty() {
            return Ok(0);
        }
        let read = entries.len();
        let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        let gateway = self.gateway.clone();
        let (name, stream) = (source_name.to_owned(), key.to_owned());
        let (events, dead, counts) = tokio::task::spawn_blocking(move || {
            let source = gateway.source(&name).expect("checked by follow");
            let mut events = Vec::new();
            let mut dead = Vec::new();
            let mut counts = SourceCounts::default();
            let mut unnamed = BTreeSet::new();
            for entry in entries {
                let file = format!("redis:{stream}/{}", entry.id);
                let refused = match record(&file, &entry) {
                    Ok(rec) => gateway.ingest_record(source, &rec, &mut |e| events.push(e), &mut counts, &mut unnamed)?,
                    Err(refusal) => Some(refusal),
                };
                if let Some(r) = refused {
                    dead.push(DeadLetter {
                        source: name.clone(),
                        file,
                        line: 1,
                        reason: r.reason,
                        field: r.field,
                    });
                }
            }
            if !unnamed.is_empty() {
                tracing::warn!(source = %name, columns = ?unnamed, "stream source: fields named by no rule were dropped");
            }
            gateway.vault().flush().map_err(|source| Error::Flush { source })?;
            counts.events = events.len() as u64;
            counts.dead_lettered = dead.len() as u64;
            Ok::<_, Error>((events, dead, counts))
        })
        .await
        .map_err(|e| ServiceError::Task(e.to_string()))??;
        let span = tracing::info_span!("gateway.ingest_stream", source = %source_name, entries = read);
        self.publish(&events, persona_proto::trace::traceparent(&span).as_deref())
            .await?;
        drop(span);
        self.append_dead_letters(&dead)?;
        let _: u64 = conn.xack(key, GROUP, &ids).await.map_err(redis_err)?;
        self.counters.add(
            2,
            &SourceCounts {
                records_read: read as u64,
                ..counts
            },
        );
        tracing::info!(source = %source_name, entries = read, events = events.len(), dead_lettered = dead.len(), "stream entries ingested");
        Ok(read)
    }
}

/// An entry as a raw record: its fields, which must be text.
fn record(file: &str, entry: &redis::streams::StreamId) -> Result<RawRecord, Refusal> {
    let mut fields = Vec::with_capacity(entry.map.len());
    for (name, value) in &entry.map {
        let text = match value {
            redis::Value::BulkString(bytes) => {
                String::from_utf8(bytes.clone()).map_err(|_| refusal(name, "value is not UTF-8 text"))?
            }
            redis::Value::SimpleString(s) => s.clone(),
            redis::Value::Int(n) => n.to_string(),
            _ => return Err(refusal(name, "value is not text")),
        };
        fields.push((Arc::from(name.as_str()), Some(text)));
    }
    Ok(RawRecord::new(Arc::from(file), 1, fields))
}

fn refusal(field: &str, reason: &str) -> Refusal {
    Refusal {
        field: Some(field.to_owned()),
        reason: reason.to_owned(),
    }
}
