//! The shard runtime of the cloud zone: a ractor supervision tree (shard -> partition
//! actors), each partition hosting the virtual actors of its customers, fed from the
//! bus in stream order, emitting matches to the matches stream, and checkpointing each
//! customer's state together with the partition's position in one atomic sled batch.
//! See docs/runtime-semantics.md for ordering, failure and delivery guarantees.

pub mod grpc;
pub mod metrics;
pub mod moves;
mod outbox;
mod partition;
mod redis_feed;
mod shard;
mod store;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use persona_bus::MemoryBus;
use persona_event::{Event, Token};
use persona_offers::{Engine, Explanation};
use persona_placement::partition_of;
use ractor::{Actor, ActorRef, call};
use tokio::task::JoinHandle;

pub use outbox::{Outbox, RedisOutbox};
pub use partition::{CustomerFeatures, Decision, PartitionStats};
use partition::{PartitionArgs, PartitionMsg};
use shard::{ShardActor, ShardArgs};
use store::Store;

/// What can go wrong in the shard runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("shard store: {0}")]
    Store(#[source] sled::Error),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("corrupt shard state: {0}")]
    Corrupt(String),
    #[error("actor: {0}")]
    Actor(String),
    #[error("snapshot: {0}")]
    Snapshot(#[from] persona_offers::Error),
    #[error("bus: {0}")]
    Bus(#[from] persona_bus::redis::RedisBusError),
    #[error("move: {0}")]
    Move(String),
}

/// Every customer a stopped shard's store holds, decoded under `engine`, in token
/// order: for offline tools (offer report, explain, simulate). The shard must not be
/// running (its store is locked while it does).
pub fn stored_customers(
    dir: &std::path::Path,
    engine: &Engine,
) -> Result<Vec<(Token, persona_offers::Customer)>, Error> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let store = Store::open(dir)?;
    let mut out = Vec::new();
    for p in store.partitions()? {
        for entry in store.partition(p)?.customers() {
            let (token, bytes) = entry?;
            out.push((token, persona_offers::Customer::decode(&bytes, engine)?));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// How a shard runs.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    /// A name unique in the process (actor names are global).
    pub name: String,
    /// The shard's data directory (sled).
    pub dir: PathBuf,
    /// Checkpoint a partition after this many applied stream entries.
    pub checkpoint_every: u64,
    /// Bus entries handed to a partition actor per message.
    pub batch: usize,
    /// At most this many customers stay in memory (over all partitions): after each
    /// checkpoint the least recently used beyond it are passivated (their state is in
    /// the store) and reactivated on their next event. `None` keeps everyone.
    pub max_hot: Option<usize>,
    /// Customers not used for this long are passivated too (after a checkpoint, and
    /// by an idle partition's feeder about once a second). `None`: only the bound.
    pub idle_after: Option<std::time::Duration>,
    /// Mutual TLS for this shard's calls to other shards (forwarding, handoff);
    /// `None` calls them in plain text.
    pub peer_tls: Option<persona_proto::tls::MutualTls>,
}

/// A running shard: the partitions it owns, each fed from its bus.
#[derive(Debug)]
pub struct Shard {
    /// The engine in force, shared with handles and the mover: a reload swaps it.
    engine: Current,
    /// Partitions of the whole token space, and those this shard owns (in the order
    /// of `partitions`).
    total_partitions: u32,
    owned: Owned,
    /// On the Redis bus: the feeders, and moving partitions in and out.
    mover: Option<Arc<moves::Mover>>,
    store: Store,
    supervisor: ActorRef<()>,
    supervisor_done: Option<JoinHandle<()>>,
    /// The in-process bus's feeders.
    feeders: Vec<JoinHandle<Result<(), Error>>>,
    failure: Arc<Mutex<Option<String>>>,
    progress: Arc<AtomicU64>,
}

impl Shard {
    /// Opens the store, starts the supervision tree and one feeder per partition of
    /// the in-process bus, each resuming from its partition's checkpoint.
    pub async fn start(config: ShardConfig, engine: Arc<Engine>, bus: Arc<MemoryBus>) -> Result<Shard, Error> {
        let owned: Vec<u32> = (0..bus.partitions()).collect();
        let outbox: Arc<dyn Outbox> = bus.clone();
        let mut shard = Shard::spawn(
            &config,
            Store::open(&config.dir)?,
            engine,
            outbox,
            owned,
            bus.partitions(),
            Some(config.checkpoint_every.max(1)),
        )
        .await?;
        shard.feeders = shard
            .owned_now()
            .into_iter()
            .map(|(p, actor)| tokio::spawn(feed(p, actor, bus.clone(), config.batch.max(1))))
            .collect();
        Ok(shard)
    }

    /// Starts a shard on the Redis bus for the partitions `leases` give it: each
    /// partition is read in the `shards` group as `consumer`, resuming after its
    /// checkpoint. A partition publishes its matches under its lease before the
    /// checkpoint that records them, checkpoints every `config.checkpoint_every`
    /// entries and whenever its stream is idle, and acknowledges (and trims) only what
    /// is checkpointed. A partition whose lease is taken away stops at its next
    /// publish or acknowledgement. [`Shard::stop_feeding`] checkpoints and stops them.
    pub async fn start_redis(
        config: ShardConfig,
        engine: Arc<Engine>,
        bus: persona_bus::redis::RedisBus,
        leases: Vec<persona_bus::redis::Lease>,
        consumer: &str,
    ) -> Result<Shard, Error> {
        let outbox = Arc::new(RedisOutbox::new(bus.stream_id()));
        let dyn_outbox: Arc<dyn Outbox> = outbox.clone();
        // Partitions a handoff to this shard left half-stored are not fed: their state
        // here is incomplete until a move completes (`persona bus move` again).
        let store = Store::open(&config.dir)?;
        let acquiring = store.acquiring()?;
        let (leases, held): (Vec<_>, Vec<_>) = leases
            .into_iter()
            .partition(|l| !acquiring.iter().any(|(p, _)| *p == l.partition));
        for lease in held {
            tracing::error!(
                partition = lease.partition,
                "a move to this shard did not finish: not feeding it"
            );
        }
        let owned: Vec<u32> = leases.iter().map(|l| l.partition).collect();
        // The feeder checkpoints: after publishing the batch's matches, never inside it.
        let mut shard = Shard::spawn(&config, store, engine, dyn_outbox, owned, bus.partitions(), None).await?;
        let mover = Arc::new(moves::Mover::new(moves::MoverArgs {
            bus,
            consumer: consumer.to_owned(),
            config,
            engine: shard.engine.clone(),
            store: shard.store.clone(),
            outbox,
            supervisor: shard.supervisor.get_cell(),
            owned: shard.owned.clone(),
            progress: shard.progress.clone(),
        }));
        let actors = shard.owned_now();
        for (lease, (_, actor)) in leases.into_iter().zip(actors) {
            mover.feed(lease, actor).await?;
        }
        shard.mover = Some(mover);
        Ok(shard)
    }

    /// Tells the Redis feeders to checkpoint what they applied, acknowledge it and
    /// stop; [`Shard::drain`] then waits for them.
    pub async fn stop_feeding(&self) {
        if let Some(mover) = &self.mover {
            mover.stop_all().await;
        }
    }

    /// Moving partitions in and out of this shard (on the Redis bus).
    pub fn mover(&self) -> Option<Arc<moves::Mover>> {
        self.mover.clone()
    }

    /// The partitions this shard runs now, with their actors.
    fn owned_now(&self) -> Vec<(u32, ActorRef<PartitionMsg>)> {
        self.owned.read().expect("owned lock").clone()
    }

    fn actors(&self) -> Vec<ActorRef<PartitionMsg>> {
        self.owned_now().into_iter().map(|(_, a)| a).collect()
    }

    async fn spawn(
        config: &ShardConfig,
        store: Store,
        engine: Arc<Engine>,
        outbox: Arc<dyn Outbox>,
        owned: Vec<u32>,
        total_partitions: u32,
        checkpoint_every: Option<u64>,
    ) -> Result<Shard, Error> {
        engine.catalog.restore_budget_used(&store.budget_used()?);
        let mut partitions = Vec::new();
        let progress = Arc::new(AtomicU64::new(0));
        let max_hot = config.max_hot.map(|m| m.div_ceil(owned.len().max(1)));
        for &p in &owned {
            partitions.push(PartitionArgs {
                partition: p,
                engine: engine.clone(),
                store: store.partition(p)?,
                outbox: outbox.clone(),
                checkpoint_every,
                max_hot,
                idle_after: config.idle_after,
                progress: progress.clone(),
            });
        }
        let children = Arc::new(Mutex::new(Vec::new()));
        let failure = Arc::new(Mutex::new(None));
        let args = ShardArgs {
            name: config.name.clone(),
            partitions,
            children: children.clone(),
            failure: failure.clone(),
        };
        let (supervisor, done) = Actor::spawn(Some(config.name.clone()), ShardActor, args)
            .await
            .map_err(|e| Error::Actor(e.to_string()))?;
        let partitions = std::mem::take(&mut *children.lock().expect("children lock"));
        Ok(Shard {
            engine: Arc::new(std::sync::RwLock::new(engine)),
            total_partitions,
            owned: Arc::new(std::sync::RwLock::new(owned.into_iter().zip(partitions).collect())),
            mover: None,
            store,
            supervisor,
            supervisor_done: Some(done),
            feeders: Vec::new(),
            failure,
            progress,
        })
    }

    /// Waits until the bus is closed and every partition has applied and checkpointed
    /// all of it.
    pub async fn drain(&mut self) -> Result<(), Error> {
        let mut feeders = std::mem::take(&mut self.feeders);
        if let Some(mover) = &self.mover {
            feeders.extend(mover.take_feeders().await);
        }
        for f in feeders {
            let result = f.await.map_err(|e| Error::Actor(e.to_string()))?;
            if let Err(e) = result {
                return Err(self.failure().unwrap_or(e));
            }
        }
        self.store.save_budget_used(&self.engine_now().catalog.budget_used())?;
        Ok(())
    }

    /// Releases the contact policy's deferred matches due by `until` (in a run, its
    /// clock: the latest event time) onto the matches stream; returns how many. Call
    /// it after [`Shard::drain`]: it checkpoints what it changes.
    pub async fn release_due(&mut self, until: DateTime<Utc>) -> Result<u64, Error> {
        let mut released = 0;
        for p in &self.actors() {
            released += call!(p, PartitionMsg::ReleaseDue, until)
                .map_err(actor_err)?
                .map_err(Error::Actor)?;
        }
        Ok(released)
    }

    /// The instant scheduled sweeps of earlier runs reached, if any.
    pub fn swept_until(&self) -> Result<Option<DateTime<Utc>>, Error> {
        Ok(self.store.swept_until()?.and_then(DateTime::from_timestamp_micros))
    }

    /// Records that scheduled sweeps ran up to `until`.
    pub fn save_swept_until(&self, until: DateTime<Utc>) -> Result<(), Error> {
        self.store.save_swept_until(until.timestamp_micros())
    }

    /// Publishes a scheduled sweep of `offer` at `at` to every partition, in stream
    /// order: each partition evaluates the offer for all its customers, in memory and
    /// stored, after the events published before it.
    pub fn publish_sweep(bus: &MemoryBus, offer: &str, at: DateTime<Utc>) {
        let marker = Arc::new(persona_event::Event {
            id: persona_event::EventId::from_bytes(
                persona_event::hash::fnv1a64(format!("{offer}\0{}", at.timestamp_micros()).as_bytes())
                    .to_be_bytes()
                    .repeat(2)
                    .try_into()
                    .expect("16 bytes"),
            ),
            token: Token::from_bytes([0; 16]),
            kind: persona_event::kinds::SWEEP.to_owned(),
            ts: at,
            attrs: [("offer".to_owned(), persona_event::Value::from(offer))].into(),
        });
        for p in 0..bus.partitions() {
            bus.partition(p).append(marker.clone());
        }
    }

    /// Publishes a `context` event carrying the broadcast token to every partition, in
    /// stream order: each partition applies it to all its customers, in memory and
    /// stored, and runs the offers it triggers for each.
    pub fn publish_broadcast(bus: &MemoryBus, event: Event) {
        let event = Arc::new(event);
        for p in 0..bus.partitions() {
            bus.partition(p).append(event.clone());
        }
    }

    /// Bus entries handled so far (applied or recognised as already applied).
    pub fn progress(&self) -> Arc<AtomicU64> {
        self.progress.clone()
    }

    fn failure(&self) -> Option<Error> {
        self.failure.lock().expect("failure lock").clone().map(Error::Actor)
    }

    /// Counters summed over partitions.
    pub async fn stats(&self) -> Result<PartitionStats, Error> {
        let mut total = PartitionStats::default();
        for p in &self.actors() {
            let s = call!(p, PartitionMsg::Stats).map_err(actor_err)?;
            total.applied += s.applied;
            total.duplicates += s.duplicates;
            total.matches += s.matches;
            total.activations += s.activations;
            total.forgotten += s.forgotten;
            total.passivated += s.passivated;
            total.hot += s.hot;
        }
        Ok(total)
    }

    /// Replaces the FeatureSet and offers while the shard runs, without a restart:
    /// each partition switches between two batches, so every event is applied under
    /// exactly one engine. Offer budgets already used carry over.
    pub async fn reload(&mut self, engine: Arc<Engine>) -> Result<(), Error> {
        engine
            .catalog
            .restore_budget_used(&self.engine_now().catalog.budget_used());
        // New partitions (moved in meanwhile) start under the new engine; running ones
        // switch between two batches. A partition moved in under the new engine is
        // reloaded from it to itself, which changes nothing.
        *self.engine.write().expect("engine lock") = engine.clone();
        for p in &self.actors() {
            call!(p, PartitionMsg::Reload, engine.clone())
                .map_err(actor_err)?
                .map_err(Error::Actor)?;
        }
        Ok(())
    }

    /// The engine in force.
    pub fn engine_now(&self) -> Arc<Engine> {
        self.engine.read().expect("engine lock").clone()
    }

    /// Every customer's features as of `at` (default: each customer's clock), sorted
    /// by token.
    pub async fn features(&self, at: Option<DateTime<Utc>>) -> Result<Vec<CustomerFeatures>, Error> {
        let mut all = Vec::new();
        for p in &self.actors() {
            all.extend(
                call!(p, PartitionMsg::Features, at)
                    .map_err(actor_err)?
                    .map_err(Error::Actor)?,
            );
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    /// Explains `offer` for the customer behind `token`; `None` when either is unknown.
    pub async fn explain(
        &self,
        token: &Token,
        offer: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<Option<Explanation>, Error> {
        self.handle("").explain(token, offer, at).await
    }

    /// A handle on the running partitions, for serving calls while the shard runs.
    pub fn handle(&self, name: &str) -> ShardHandle {
        ShardHandle {
            name: name.to_owned(),
            engine: self.engine.clone(),
            total_partitions: self.total_partitions,
            owned: self.owned.clone(),
        }
    }

    /// Stops the supervision tree.
    pub async fn stop(mut self) {
        self.supervisor.stop(None);
        if let Some(done) = self.supervisor_done.take() {
            let _ = done.await;
        }
    }
}

/// The engine a shard runs, shared by the shard, its handles and its mover.
pub(crate) type Current = Arc<std::sync::RwLock<Arc<Engine>>>;

/// The partitions a shard runs now and their actors, shared by the shard and its
/// handles: a move in or out changes it while the shard runs.
type Owned = Arc<std::sync::RwLock<Vec<(u32, ActorRef<PartitionMsg>)>>>;

/// The running partitions of a shard, cloneable, for the gRPC services: each call
/// goes to the partition actor of the token, one message at a time with its events.
#[derive(Clone, Debug)]
pub struct ShardHandle {
    name: String,
    engine: Current,
    total_partitions: u32,
    owned: Owned,
}

impl ShardHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Each partition the shard runs now, with its counters.
    pub async fn partition_stats(&self) -> Result<Vec<(u32, PartitionStats)>, Error> {
        let owned = self.owned.read().expect("owned lock").clone();
        let mut out = Vec::with_capacity(owned.len());
        for (p, actor) in owned {
            out.push((p, call!(actor, PartitionMsg::Stats).map_err(actor_err)?));
        }
        Ok(out)
    }

    /// The engine in force (a reload swaps it).
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.read().expect("engine lock").clone()
    }

    /// The partition of `token`, and whether this shard owns it.
    pub fn partition(&self, token: &Token) -> (u32, bool) {
        let p = partition_of(token, self.total_partitions);
        (p, self.actor(token).is_some())
    }

    fn actor(&self, token: &Token) -> Option<ActorRef<PartitionMsg>> {
        let p = partition_of(token, self.total_partitions);
        let owned = self.owned.read().expect("owned lock");
        owned.iter().find(|(o, _)| *o == p).map(|(_, a)| a.clone())
    }

    /// What her actor would decide for `event` now; `None` if this shard does not own
    /// her partition.
    pub async fn decide(&self, event: Event) -> Result<Option<Decision>, Error> {
        let Some(actor) = self.actor(&event.token) else {
            return Ok(None);
        };
        let decision = call!(actor, PartitionMsg::Decide, Arc::new(event))
            .map_err(actor_err)?
            .map_err(Error::Actor)?;
        Ok(Some(decision))
    }

    /// A copy of her state; `Ok(None)` when this shard does not own her partition or
    /// she is unknown.
    pub async fn customer(&self, token: &Token) -> Result<Option<persona_offers::Customer>, Error> {
        let Some(actor) = self.actor(token) else {
            return Ok(None);
        };
        call!(actor, PartitionMsg::Peek, token.clone())
            .map_err(actor_err)?
            .map_err(Error::Actor)
    }

    pub async fn explain(
        &self,
        token: &Token,
        offer: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<Option<Explanation>, Error> {
        let Some(actor) = self.actor(token) else {
            return Ok(None);
        };
        call!(actor, PartitionMsg::Explain, token.clone(), offer.to_owned(), at).map_err(actor_err)
    }
}

fn actor_err<E: std::fmt::Display>(e: E) -> Error {
    Error::Actor(e.to_string())
}

/// Reads a partition's stream from just after its checkpoint and hands batches to its
/// actor, then makes the end durable.
async fn feed(p: u32, actor: ActorRef<PartitionMsg>, bus: Arc<MemoryBus>, batch: usize) -> Result<(), Error> {
    let mut next = call!(actor, PartitionMsg::Position).map_err(actor_err)? + 1;
    while let Some(entries) = bus.partition(p).read(next, batch).await {
        let last = entries.last().map_or(next - 1, |(pos, _)| *pos);
        let applied = call!(actor, PartitionMsg::Apply, entries)
            .map_err(actor_err)?
            .map_err(Error::Actor)?;
        debug_assert_eq!(applied.max(last), applied);
        next = applied.max(last) + 1;
    }
    call!(actor, PartitionMsg::Checkpoint)
        .map_err(actor_err)?
        .map_err(Error::Actor)?;
    Ok(())
}

#[cfg(test)]
mod tests;
