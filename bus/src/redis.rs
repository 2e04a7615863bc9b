//! The Redis Streams bus: the same streams as [`crate::MemoryBus`], across processes.
//!
//! Keys, under a prefix (default `persona`):
//!
//! | key | type | what |
//! |---|---|---|
//! | `{prefix}:events:{p}` | stream | partition `p`'s events, field `e` = the event as JSON |
//! | `{prefix}:matches` | stream | matches, field `m` = the match as JSON, `p` = its partition |
//! | `{prefix}:assignment` | hash | `epoch` = the table's epoch; `p:{p}` = `{epoch}/{shard}`, the lease of `p` |
//! | `{prefix}:checkpoints` | hash | `p:{p}` = the last entry id acknowledged on `p` |
//! | `{prefix}:shards` | hash | shard name -> the address it serves gRPC on |
//! | `{prefix}:dead` | stream | bus entries that are not events: `stream`, `id`, `reason` |
//!
//! Every partition stream has the consumer group `shards`; the matches stream has
//! `detokenizer`. A shard reads a partition only under a [`Lease`]: the assignment
//! entry it was given, with its epoch. Acknowledging (which also records the
//! checkpoint and trims the stream below it) and appending matches run as Lua scripts
//! that first check the lease is still the partition's entry, so a shard whose
//! partition was reassigned is fenced off atomically on the Redis side: it can neither
//! acknowledge for the new owner nor emit a match.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use persona_event::{Event, MatchMessage};
use persona_placement::partition_of;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Script};

/// The consumer group of the partition streams.
pub const SHARDS_GROUP: &str = "shards";
/// The consumer group of the matches stream.
pub const DETOKENIZER_GROUP: &str = "detokenizer";

/// What the Redis bus can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RedisBusError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The partition was reassigned: this lease may no longer act on it.
    #[error("fenced: partition {partition} is no longer leased to `{shard}` under epoch {epoch}")]
    Fenced { partition: u32, shard: String, epoch: u64 },
    /// An entry that is not what persona writes (another writer, a corrupt value).
    #[error("stream {stream}, entry {id}: {reason}")]
    BadEntry { stream: String, id: String, reason: String },
}

type Result<T> = std::result::Result<T, RedisBusError>;

/// How long a command may wait for Redis's reply before it counts as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// A stream entry id: milliseconds and a sequence number; ordered as Redis orders them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    pub ms: u64,
    pub seq: u64,
}

impl EntryId {
    /// Before every entry.
    pub const ZERO: EntryId = EntryId { ms: 0, seq: 0 };

    /// 16 bytes, big-endian, that sort as the ids do: for checkpoints in sled.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0; 16];
        b[..8].copy_from_slice(&self.ms.to_be_bytes());
        b[8..].copy_from_slice(&self.seq.to_be_bytes());
        b
    }

    pub fn from_bytes(b: [u8; 16]) -> EntryId {
        let (ms, seq) = b.split_at(8);
        EntryId {
            ms: u64::from_be_bytes(ms.try_into().expect("8 bytes")),
            seq: u64::from_be_bytes(seq.try_into().expect("8 bytes")),
        }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EntryId {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        match (ms.parse(), seq.parse()) {
            (Ok(ms), Ok(seq)) => Ok(EntryId { ms, seq }),
            _ => Err(format!("`{s}` is not a stream entry id")),
        }
    }
}

/// The right to work on one partition: the assignment table's entry for it, with the
/// epoch it was granted under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub partition: u32,
    pub shard: String,
    pub epoch: u64,
}

impl Lease {
    fn value(&self) -> String {
        format!("{}/{}", self.epoch, self.shard)
    }

    fn parse(partition: u32, value: &str) -> Option<Lease> {
        let (epoch, shard) = value.split_once('/')?;
        Some(Lease {
            partition,
            shard: shard.to_owned(),
            epoch: epoch.parse().ok()?,
        })
    }

    fn fenced(&self) -> RedisBusError {
        RedisBusError::Fenced {
            partition: self.partition,
            shard: self.shard.clone(),
            epoch: self.epoch,
        }
    }
}

/// One event read from a partition stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub id: EntryId,
    pub event: Event,
    /// The W3C `traceparent` of the span that published it, when tracing was on.
    pub trace: Option<String>,
}

/// One match read from the matches stream.
#[derive(Clone, Debug, PartialEq)]
pub struct MatchEntry {
    pub id: EntryId,
    pub partition: u32,
    pub message: MatchMessage,
    /// The W3C `traceparent` of the span that decided it, when tracing was on.
    pub trace: Option<String>,
}

#[derive(Clone, Debug)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn events(&self, p: u32) -> String {
        format!("{}:events:{p}", self.prefix)
    }
    fn matches(&self) -> String {
        format!("{}:matches", self.prefix)
    }
    fn assignment(&self) -> String {
        format!("{}:assignment", self.prefix)
    }
    fn checkpoints(&self) -> String {
        format!("{}:checkpoints", self.prefix)
    }
    fn shards(&self) -> String {
        format!("{}:shards", self.prefix)
    }
    fn dead(&self) -> String {
        format!("{}:dead", self.prefix)
    }
}

fn field(p: u32) -> String {
    format!("p:{p}")
}

/// Grants partitions to shards under a new epoch, atomically.
/// KEYS[1] assignment; ARGV: partition field, shard, partition field, shard, ...
const ASSIGN: &str = r"
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
for i = 1, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], epoch .. '/' .. ARGV[i + 1])
end
return epoch
";

/// Acknowledges entries up to a checkpoint under a lease: XACK, record the
/// checkpoint, trim the stream below it.
/// KEYS: assignment, stream, checkpoints; ARGV: field, lease, group, upto, ids...
const ACK: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return redis.error_reply('FENCED')
end
local acked = 0
-- In slices: Lua's unpack takes at most a few thousand values.
for i = 5, #ARGV, 1000 do
  acked = acked + redis.call('XACK', KEYS[2], ARGV[3], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
redis.call('XTRIM', KEYS[2], 'MINID', ARGV[4])
return acked
";

/// Appends matches under a lease. KEYS: assignment, matches; ARGV: field, lease,
/// partition, payloads...
const PUBLISH_MATCHES: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return redis.error_reply('FENCED')
end
local ids = {}
for i = 5, #ARGV do
  if ARGV[4] == '' then
    ids[#ids + 1] = redis.call('XADD', KEYS[2], '*', 'm', ARGV[i], 'p', ARGV[3])
  else
    ids[#ids + 1] = redis.call('XADD', KEYS[2], '*', 'm', ARGV[i], 'p', ARGV[3], 't', ARGV[4])
  end
end
return ids
";

fn is_fenced(e: &redis::RedisError) -> bool {
    e.to_string().contains("FENCED")
}

/// A connection to the Redis bus of one persona cluster.
#[derive(Clone)]
pub struct RedisBus {
    client: redis::Client,
    conn: ConnectionManager,
    keys: Keys,
    partitions: u32,
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: never printed.
        f.debug_struct("RedisBus")
            .field("prefix", &self.keys.prefix)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl RedisBus {
    /// Connects to `url` (`redis://` or `rediss://`, with auth if the URL has it) and
    /// makes sure every stream and consumer group exists.
    pub async fn connect(url: &str, prefix: &str, partitions: u32) -> Result<RedisBus> {
        let client = redis::Client::open(url)?;
        // redis's default response timeout (500 ms) turns a busy moment of Redis or of
        // this host into an error, and a failed acknowledgement stops a shard: wait
        // longer, as a slow reply is not a lost one.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(Duration::from_secs(10)));
        let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
        let bus = RedisBus {
            client,
            conn,
            keys: Keys { prefix: prefix.into() },
            partitions: partitions.max(1),
        };
        for p in 0..bus.partitions {
            bus.create_group(&bus.keys.events(p), SHARDS_GROUP).await?;
        }
        bus.create_group(&bus.keys.matches(), DETOKENIZER_GROUP).await?;
        Ok(bus)
    }

    async fn create_group(&self, stream: &str, group: &str) -> Result<()> {
        let created: redis::RedisResult<()> = self.conn.clone().xgroup_create_mkstream(stream, group, "0").await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => Ok(other?),
        }
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The key prefix of every key this bus uses.
    pub fn prefix(&self) -> &str {
        &self.keys.prefix
    }

    /// Names this bus (by its key prefix) for checkpoints: a shard's stored positions
    /// are entry ids of these streams.
    pub fn stream_id(&self) -> u64 {
        persona_event::hash::fnv1a64(format!("redis\0{}", self.keys.prefix).as_bytes())
    }

    /// Appends events to their tokens' partition streams in one round trip; returns
    /// each one's (partition, entry id), in order.
    pub async fn publish(&self, events: &[Event]) -> Result<Vec<(u32, EntryId)>> {
        self.publish_traced(events, None).await
    }

    /// [`publish`](Self::publish), each entry carrying `trace` (a W3C `traceparent`,
    /// field `t`) so the shard that applies it continues the trace.
    pub async fn publish_traced(&self, events: &[Event], trace: Option<&str>) -> Result<Vec<(u32, EntryId)>> {
        let mut pipe = redis::pipe();
        let mut parts = Vec::with_capacity(events.len());
        for e in events {
            let p = partition_of(&e.token, self.partitions);
            let json = serde_json::to_vec(e).expect("events serialize");
            match trace {
                Some(t) => pipe.xadd(self.keys.events(p), "*", &[("e", json), ("t", t.as_bytes().to_vec())]),
                None => pipe.xadd(self.keys.events(p), "*", &[("e", json)]),
            };
            parts.push(p);
        }
        let ids: Vec<String> = pipe.query_async(&mut self.conn.clone()).await?;
        parts
            .into_iter()
            .zip(ids)
            .map(|(p, id)| Ok((p, parse_id(&self.keys.events(p), &id)?)))
            .collect()
    }

    /// Grants each `(partition, shard)` under a new epoch, atomically; returns the epoch.
    pub async fn assign(&self, grants: &[(u32, &str)]) -> Result<u64> {
        let script = Script::new(ASSIGN);
        let mut invocation = script.key(self.keys.assignment());
        for (p, shard) in grants {
            invocation.arg(field(*p)).arg(*shard);
        }
        Ok(invocation.invoke_async(&mut self.conn.clone()).await?)
    }

    /// The current lease of every partition that has one.
    pub async fn leases(&self) -> Result<Vec<Lease>> {
        let table: HashMap<String, String> = self.conn.clone().hgetall(self.keys.assignment()).await?;
        let mut leases: Vec<Lease> = (0..self.partitions)
            .filter_map(|p| table.get(&field(p)).and_then(|v| Lease::parse(p, v)))
            .collect();
        leases.sort_by_key(|l| l.partition);
        Ok(leases)
    }

    /// The partitions leased to `shard` now.
    pub async fn leases_of(&self, shard: &str) -> Result<Vec<Lease>> {
        Ok(self.leases().await?.into_iter().filter(|l| l.shard == shard).collect())
    }

    /// Records where shard `name` serves gRPC, so any shard can forward a call to it.
    pub async fn register_shard(&self, name: &str, address: &str) -> Result<()> {
        let _: () = self.conn.clone().hset(self.keys.shards(), name, address).await?;
        Ok(())
    }

    /// Where shard `name` serves gRPC, if it registered.
    pub async fn shard_address(&self, name: &str) -> Result<Option<String>> {
        Ok(self.conn.clone().hget(self.keys.shards(), name).await?)
    }

    /// The checkpoint Redis holds for `partition`: the last id acknowledged there.
    pub async fn checkpoint(&self, partition: u32) -> Result<EntryId> {
        let id: Option<String> = self
            .conn
            .clone()
            .hget(self.keys.checkpoints(), field(partition))
            .await?;
        id.map_or(Ok(EntryId::ZERO), |id| parse_id(&self.keys.checkpoints(), &id))
    }

    /// Entries in `partition`'s stream (after trimming).
    pub async fn len(&self, partition: u32) -> Result<u64> {
        Ok(self.conn.clone().xlen(self.keys.events(partition)).await?)
    }

    /// Entries in `partition`'s stream after its checkpoint: how far its owner lags.
    /// The stream is trimmed below the checkpoint, so this is its length less what is
    /// left at or below the checkpoint (the checkpointed entry itself): no scan.
    pub async fn lag(&self, partition: u32) -> Result<u64> {
        let after = self.checkpoint(partition).await?;
        let stream = self.keys.events(partition);
        let len: u64 = self.conn.clone().xlen(&stream).await?;
        if after == EntryId::ZERO {
            return Ok(len);
        }
        let below: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&stream)
            .arg("-")
            .arg(after.to_string())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(len.saturating_sub(below.ids.len() as u64))
    }

    /// A connection for blocking reads: redis's default response timeout (500 ms)
    /// would cut a read that blocks as long, so it waits up to a minute instead.
    async fn blocking_connection(&self) -> Result<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    /// A reader of the partition `lease` names, with its own connection (its reads
    /// block).
    pub async fn reader(&self, lease: Lease, consumer: &str) -> Result<PartitionReader> {
        let blocking = self.blocking_connection().await?;
        Ok(PartitionReader {
            bus: self.clone(),
            blocking,
            stream: self.keys.events(lease.partition),
            lease,
            consumer: consumer.into(),
            recovering: true,
            delivered: Vec::new(),
            dead: Vec::new(),
        })
    }

    /// A reader of the matches stream in the de-tokenizer's group.
    pub async fn match_reader(&self, consumer: &str) -> Result<MatchReader> {
        let blocking = self.blocking_connection().await?;
        Ok(MatchReader {
            bus: self.clone(),
            blocking,
            consumer: consumer.into(),
            recovering: true,
            recovered: EntryId::ZERO,
            last_claim: None,
        })
    }

    /// The dead-letter stream: (stream, entry id, reason) of every bus entry a shard
    /// could not read as an event, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<(String, String, String)>> {
        let reply: redis::streams::StreamRangeReply = self.conn.clone().xrange_all(self.keys.dead()).await?;
        Ok(reply
            .ids
            .iter()
            .map(|e| {
                let field = |k: &str| e.get::<String>(k).unwrap_or_default();
                (field("stream"), field("id"), field("reason"))
            })
            .collect())
    }

    /// Every entry of the matches stream, oldest first (for inspection and tests).
    pub async fn all_matches(&self) -> Result<Vec<MatchEntry>> {
        let reply: redis::streams::StreamRangeReply = self.conn.clone().xrange_all(self.keys.matches()).await?;
        reply.ids.iter().map(|e| self.match_entry(e)).collect()
    }

    fn match_entry(&self, e: &StreamId) -> Result<MatchEntry> {
        let stream = self.keys.matches();
        let bad = |reason: String| RedisBusError::BadEntry {
            stream: stream.clone(),
            id: e.id.clone(),
            reason,
        };
        let payload: Vec<u8> = e.get("m").ok_or_else(|| bad("no field `m`".into()))?;
        let partition: u32 = e.get("p").ok_or_else(|| bad("no field `p`".into()))?;
        let message =
            serde_json::from_slice(&payload).map_err(|err| bad(format!("not a match: {}", json_error(&err))))?;
        Ok(MatchEntry {
            id: parse_id(&stream, &e.id)?,
            partition,
            message,
            trace: e.get("t"),
        })
    }
}

/// A JSON error's kind and position, never the value it quotes (serde's messages
/// can include the offending text).
fn json_error(err: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {}, column {}",
        err.classify(),
        err.line(),
        err.column()
    )
}

fn parse_id(stream: &str, id: &str) -> Result<EntryId> {
    id.parse().map_err(|reason| RedisBusError::BadEntry {
        stream: stream.to_owned(),
        id: id.to_owned(),
        reason,
    })
}

/// Moves every entry of `group`'s pending list idle for at least `idle` to `consumer`.
async fn claim_all(
    conn: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
    consumer: &str,
    idle: Duration,
) -> Result<()> {
    let mut start = "0-0".to_owned();
    loop {
        let opts = StreamAutoClaimOptions::default().count(1000).with_justid();
        let idle = idle.as_millis() as usize;
        let reply: StreamAutoClaimReply = conn
            .xautoclaim_options(stream, group, consumer, idle, &start, opts)
            .await?;
        if reply.next_stream_id == "0-0" {
            return Ok(());
        }
        start = reply.next_stream_id;
    }
}

fn event_entry(stream: &str, e: &StreamId) -> Result<Entry> {
    let bad = |reason: String| RedisBusError::BadEntry {
        stream: stream.to_owned(),
        id: e.id.clone(),
        reason,
    };
    let payload: Vec<u8> = e.get("e").ok_or_else(|| bad("no field `e`".into()))?;
    let event = serde_json::from_slice(&payload).map_err(|err| bad(format!("not an event: {}", json_error(&err))))?;
    Ok(Entry {
        id: parse_id(stream, &e.id)?,
        event,
        trace: e.get("t"),
    })
}

/// Reads one leased partition in the `shards` group.
///
/// After a start (a restart, or a partition that moved here) it first takes over the
/// entries of the partition's pending list, whoever they were delivered to (stale
/// pending entries of a dead or fenced owner), then reads new ones. The caller skips
/// entries at or below its own checkpoint (already applied), and acknowledges with
/// [`PartitionReader::ack`] once the state that reflects them is durable.
pub struct PartitionReader {
    bus: RedisBus,
    blocking: MultiplexedConnection,
    stream: String,
    lease: Lease,
    consumer: String,
    recovering: bool,
    /// Ids delivered and not yet acknowledged, in order.
    delivered: Vec<EntryId>,
    /// Entries that are not events, to dead-letter: (id, reason).
    dead: Vec<(String, String)>,
}

impl fmt::Debug for PartitionReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionReader")
            .field("lease", &self.lease)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl PartitionReader {
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Fails with [`RedisBusError::Fenced`] when the partition is no longer leased
    /// under this lease: how a quiet partition, which writes nothing that a fence
    /// would refuse, learns that it moved.
    pub async fn check_lease(&self) -> Result<()> {
        let held: Option<String> = self
            .bus
            .conn
            .clone()
            .hget(self.bus.keys.assignment(), field(self.lease.partition))
            .await?;
        if held.as_deref() == Some(self.lease.value().as_str()) {
            Ok(())
        } else {
            Err(self.lease.fenced())
        }
    }

    /// Up to `max` entries, in stream order: pending ones first after a start, then
    /// new ones, waiting up to `block` when there are none. Empty when none came.
    pub async fn read(&mut self, max: usize, block: Duration) -> Result<Vec<Entry>> {
        if self.recovering {
            let pending = self.recover(max).await?;
            self.dead_letter().await?;
            if !pending.is_empty() {
                return Ok(pending);
            }
            self.recovering = false;
        }
        let opts = StreamReadOptions::default()
            .group(SHARDS_GROUP, &self.consumer)
            .count(max.max(1))
            .block(block.as_millis().max(1) as usize);
        let reply: Option<StreamReadReply> = self.blocking.xread_options(&[&self.stream], &[">"], &opts).await?;
        let entries = self.entries(reply)?;
        self.dead_letter().await?;
        Ok(entries)
    }

    /// Writes the entries that were not events to `{prefix}:dead` (stream, id, reason).
    async fn dead_letter(&mut self) -> Result<()> {
        for (id, reason) in std::mem::take(&mut self.dead) {
            tracing::warn!(stream = %self.stream, %id, %reason, "bus entry dead-lettered");
            let fields = [("stream", self.stream.as_str()), ("id", &id), ("reason", &reason)];
            let _: String = self.bus.conn.clone().xadd(self.bus.keys.dead(), "*", &fields).await?;
        }
        Ok(())
    }

    /// The partition's pending entries, claimed for this consumer, oldest first.
    async fn recover(&mut self, max: usize) -> Result<Vec<Entry>> {
        // Move every pending entry of the group to this consumer: the lease says this
        // shard owns the partition, so whoever else holds them is gone or fenced.
        if self.delivered.is_empty() {
            claim_all(
                &mut self.blocking,
                &self.stream,
                SHARDS_GROUP,
                &self.consumer,
                Duration::ZERO,
            )
            .await?;
        }
        // Then read this consumer's pending list after what was already delivered.
        let after = self.delivered.last().copied().unwrap_or(EntryId::ZERO);
        let opts = StreamReadOptions::default()
            .group(SHARDS_GROUP, &self.consumer)
            .count(max.max(1));
        let reply: Option<StreamReadReply> = self
            .blocking
            .xread_options(&[&self.stream], &[after.to_string()], &opts)
            .await?;
        self.entries(reply)
    }

    fn entries(&mut self, reply: Option<StreamReadReply>) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for e in &key.ids {
                if e.map.is_empty() {
                    // A pending entry trimmed away: it was at or below the checkpoint,
                    // so applied; it only needs its acknowledgement.
                    self.delivered.push(parse_id(&self.stream, &e.id)?);
                    continue;
                }
                match event_entry(&self.stream, e) {
                    Ok(entry) => {
                        self.delivered.push(entry.id);
                        out.push(entry);
                    }
                    // Not an event (a foreign writer, a corrupt value): dead-lettered,
                    // acknowledged with the rest, and the partition goes on.
                    Err(RedisBusError::BadEntry { id, reason, .. }) => {
                        self.delivered.push(parse_id(&self.stream, &id)?);
                        self.dead.push((id, reason));
                    }
                    Err(other) => return Err(other),
                }
            }
        }
        Ok(out)
    }

    /// Acknowledges every delivered entry up to `upto` and records `upto` as the
    /// partition's checkpoint (trimming the stream below it), if the lease still
    /// holds; [`RedisBusError::Fenced`] if not, with no effect.
    pub async fn ack(&mut self, upto: EntryId) -> Result<u64> {
        let done = self.delivered.partition_point(|id| *id <= upto);
        let script = Script::new(ACK);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.bus.keys.assignment())
            .key(&self.stream)
            .key(self.bus.keys.checkpoints())
            .arg(field(self.lease.partition))
            .arg(self.lease.value())
            .arg(SHARDS_GROUP)
            .arg(upto.to_string());
        for id in &self.delivered[..done] {
            invocation.arg(id.to_string());
        }
        let acked: u64 = invocation
            .invoke_async(&mut self.bus.conn.clone())
            .await
            .map_err(|e| if is_fenced(&e) { self.lease.fenced() } else { e.into() })?;
        self.delivered.drain(..done);
        Ok(acked)
    }

    /// Appends matches of this partition to the matches stream, if the lease still
    /// holds; [`RedisBusError::Fenced`] if not, with none appended. `trace` (a W3C
    /// `traceparent`) goes with each, for the de-tokenizer to continue the trace.
    pub async fn publish_matches(&self, matches: &[MatchMessage], trace: Option<&str>) -> Result<Vec<EntryId>> {
        if matches.is_empty() {
            return Ok(Vec::new());
        }
        let script = Script::new(PUBLISH_MATCHES);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.bus.keys.assignment())
            .key(self.bus.keys.matches())
            .arg(field(self.lease.partition))
            .arg(self.lease.value())
            .arg(self.lease.partition)
            .arg(trace.unwrap_or(""));
        for m in matches {
            invocation.arg(serde_json::to_vec(m).expect("matches serialize"));
        }
        let ids: Vec<String> = invocation.invoke_async(&mut self.bus.conn.clone()).await.map_err(|e| {
            if is_fenced(&e) {
                self.lease.fenced()
            } else {
                RedisBusError::from(e)
            }
        })?;
        ids.iter().map(|id| parse_id(&self.bus.keys.matches(), id)).collect()
    }
}

/// Reads the matches stream in the `detokenizer` group: pending entries first after a
/// start (claimed from any consumer idle longer than the given time), then new ones.
/// An entry is acknowledged only after its delivery was accepted.
pub struct MatchReader {
    bus: RedisBus,
    blocking: MultiplexedConnection,
    consumer: String,
    recovering: bool,
    /// The last pending id handed out while recovering.
    recovered: EntryId,
    last_claim: Option<std::time::Instant>,
}

impl fmt::Debug for MatchReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatchReader")
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl MatchReader {
    /// Up to `max` matches: after a start, this consumer's pending ones and those other
    /// consumers left pending for longer than `stale`; then new ones, waiting up to
    /// `block`.
    pub async fn read(&mut self, max: usize, block: Duration, stale: Duration) -> Result<Vec<MatchEntry>> {
        let stream = self.bus.keys.matches();
        // At a start, and again whenever `stale` has passed, take over what other
        // consumers (a crashed de-tokenizer) left pending that long.
        if self.last_claim.is_none_or(|at| at.elapsed() >= stale) {
            claim_all(&mut self.blocking, &stream, DETOKENIZER_GROUP, &self.consumer, stale).await?;
            self.last_claim = Some(std::time::Instant::now());
            self.recovering = true;
        }
        if self.recovering {
            let opts = StreamReadOptions::default()
                .group(DETOKENIZER_GROUP, &self.consumer)
                .count(max.max(1));
            let after = [self.recovered.to_string()];
            let own: Option<StreamReadReply> = self.blocking.xread_options(&[&stream], &after, &opts).await?;
            let pending = self.matches(own)?;
            if let Some(last) = pending.last() {
                self.recovered = last.id;
                return Ok(pending);
            }
            self.recovering = false;
            self.recovered = EntryId::ZERO;
        }
        let opts = StreamReadOptions::default()
            .group(DETOKENIZER_GROUP, &self.consumer)
            .count(max.max(1))
            .block(block.as_millis().max(1) as usize);
        let reply: Option<StreamReadReply> = self.blocking.xread_options(&[&stream], &[">"], &opts).await?;
        self.matches(reply)
    }

    fn matches(&self, reply: Option<StreamReadReply>) -> Result<Vec<MatchEntry>> {
        let mut out = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for e in &key.ids {
                out.push(self.bus.match_entry(e)?);
            }
        }
        Ok(out)
    }

    /// Acknowledges delivered matches.
    pub async fn ack(&self, ids: &[EntryId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        Ok(self
            .bus
            .conn
            .clone()
            .xack(self.bus.keys.matches(), DETOKENIZER_GROUP, &ids)
            .await?)
    }
}
