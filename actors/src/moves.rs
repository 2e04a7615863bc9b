//! Moving a partition between live shards on the Redis bus.
//!
//! The new owner drives the move ([`Mover::acquire`]):
//! 1. it marks the partition as being acquired in its own store (a restart before the
//!    move finishes then leaves the partition unfed rather than fed from nothing);
//! 2. it takes the lease under a new epoch: from then on the old owner is fenced (it
//!    can neither acknowledge entries nor emit matches for the partition);
//! 3. it pulls the partition's state from the old owner over gRPC (`Handoff`): the old
//!    owner stops its feeder (which checkpoints only when it has no unpublished match,
//!    since publishing is fenced now), then streams every entry of the partition's
//!    store (customers, reminders, the checkpoint position) and stops serving it;
//! 4. it stores that state, clears the mark, starts the partition actor and feeds the
//!    partition from the checkpoint: it takes over the old owner's pending entries,
//!    skips those at or below the checkpoint, and applies the rest.
//!
//! Nothing is lost, since nothing above the checkpoint was acknowledged (so it is still
//! in the stream), and nothing is applied twice, since the state and its position
//! travel together.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use persona_bus::redis::{Lease, RedisBus};
use persona_proto::ShardControlClient;
use persona_proto::v1::PartitionRequest;
use ractor::{Actor, ActorCell, ActorRef};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::outbox::{Outbox, RedisOutbox};
use crate::partition::{PartitionActor, PartitionArgs, PartitionMsg};
use crate::redis_feed::Feeder;
use crate::store::{Store, StoreEntry};
use crate::{Error, Owned, ShardConfig};

pub(crate) struct MoverArgs {
    pub(crate) bus: RedisBus,
    pub(crate) consumer: String,
    pub(crate) config: ShardConfig,
    pub(crate) engine: crate::Current,
    pub(crate) store: Store,
    pub(crate) outbox: Arc<RedisOutbox>,
    pub(crate) supervisor: ActorCell,
    pub(crate) owned: Owned,
    pub(crate) progress: Arc<AtomicU64>,
}

struct Feeding {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), Error>>,
}

/// The partitions a shard on the Redis bus feeds, and moves in and out of it.
pub struct Mover {
    args: MoverArgs,
    failed: Arc<tokio::sync::Notify>,
    feeders: Mutex<HashMap<u32, Feeding>>,
    /// One move at a time per shard.
    moving: Mutex<()>,
}

impl std::fmt::Debug for Mover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mover")
            .field("shard", &self.args.consumer)
            .finish_non_exhaustive()
    }
}

/// What a completed acquisition moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acquired {
    /// The shard the partition came from (empty when it had no owner).
    pub from: String,
    /// Store entries moved.
    pub entries: u64,
    /// The epoch of the new lease.
    pub epoch: u64,
}

impl Mover {
    pub(crate) fn new(args: MoverArgs) -> Self {
        Mover {
            args,
            failed: Arc::new(tokio::sync::Notify::new()),
            feeders: Mutex::new(HashMap::new()),
            moving: Mutex::new(()),
        }
    }

    pub fn shard(&self) -> &str {
        &self.args.consumer
    }

    /// Starts feeding the partition `lease` names to `actor`.
    pub(crate) async fn feed(&self, lease: Lease, actor: ActorRef<PartitionMsg>) -> Result<(), Error> {
        let partition = lease.partition;
        let reader = self.args.bus.reader(lease, &self.args.consumer).await?;
        let (stop, stopped) = watch::channel(false);
        let feeder = Feeder {
            actor,
            reader,
            outbox: self.args.outbox.clone(),
            batch: self.args.config.batch.max(1),
            checkpoint_every: self.args.config.checkpoint_every.max(1),
            stop: stopped,
            failed: self.failed.clone(),
            trace: None,
        };
        let owned = self.args.owned.clone();
        let task = tokio::spawn(async move {
            let ended = feeder.run().await?;
            if ended == crate::redis_feed::Ended::Fenced {
                // Its state here is that of its last checkpoint, in the store (which a
                // handoff still reads); the actor, with whatever it applied since, goes,
                // so that calls for its customers are forwarded to the new owner.
                let actor = {
                    let mut owned = owned.write().expect("owned lock");
                    let i = owned.iter().position(|(p, _)| *p == partition);
                    i.map(|i| owned.remove(i).1)
                };
                if let Some(actor) = actor {
                    actor.stop(Some("fenced: the partition went to another shard".into()));
                }
            }
            Ok(())
        });
        self.feeders.lock().await.insert(partition, Feeding { stop, task });
        Ok(())
    }

    /// Resolves when a feeder failed (an error other than being fenced): the shard
    /// should stop, so that it restarts from its checkpoints.
    pub async fn failed(&self) {
        self.failed.notified().await;
    }

    /// Tells every feeder to checkpoint, acknowledge and stop.
    pub(crate) async fn stop_all(&self) {
        for feeding in self.feeders.lock().await.values() {
            feeding.stop.send_replace(true);
        }
    }

    /// The feeders' tasks, to wait for.
    pub(crate) async fn take_feeders(&self) -> Vec<JoinHandle<Result<(), Error>>> {
        self.feeders.lock().await.drain().map(|(_, f)| f.task).collect()
    }

    /// Whether this shard runs `partition` now.
    pub fn owns(&self, partition: u32) -> bool {
        self.is_owned(partition)
    }

    fn is_owned(&self, partition: u32) -> bool {
        self.args
            .owned
            .read()
            .expect("owned lock")
            .iter()
            .any(|(p, _)| *p == partition)
    }

    /// The old owner's side of a move: once the partition's lease is another shard's,
    /// stops feeding it, and returns every entry of its store; the partition is no
    /// longer served here. Refused while this shard still holds the lease.
    pub async fn release(&self, partition: u32) -> Result<Vec<StoreEntry>, Error> {
        let _one_move = self.moving.lock().await;
        let lease = self
            .args
            .bus
            .leases()
            .await?
            .into_iter()
            .find(|l| l.partition == partition);
        if lease.as_ref().is_none_or(|l| l.shard == self.args.consumer) {
            return Err(Error::Move(format!(
                "partition {partition} is still leased to `{}`: lease it to its new owner first",
                self.args.consumer
            )));
        }
        // Not running it (this shard restarted after losing the lease): its store holds
        // the partition as of its last checkpoint, which is what moves.
        if let Some(feeding) = self.feeders.lock().await.remove(&partition) {
            feeding.stop.send_replace(true);
            feeding.task.await.map_err(|e| Error::Actor(e.to_string()))??;
        }
        let entries = self.args.store.partition(partition)?.entries()?;
        let actor = {
            let mut owned = self.args.owned.write().expect("owned lock");
            let i = owned.iter().position(|(p, _)| *p == partition);
            i.map(|i| owned.remove(i).1)
        };
        if let Some(actor) = actor {
            actor
                .stop_and_wait(Some("moved to another shard".into()), None)
                .await
                .map_err(|e| Error::Actor(e.to_string()))?;
        }
        tracing::info!(partition, entries = entries.len(), "partition handed off");
        Ok(entries)
    }

    /// The new owner's side of a move: takes the lease, pulls the state from the old
    /// owner, stores it and feeds the partition from its checkpoint.
    pub async fn acquire(&self, partition: u32) -> Result<Acquired, Error> {
        let _one_move = self.moving.lock().await;
        let bus = &self.args.bus;
        let me = self.args.consumer.as_str();
        let current = bus.leases().await?.into_iter().find(|l| l.partition == partition);
        if self.is_owned(partition) {
            let epoch = current.map_or(0, |l| l.epoch);
            return Ok(Acquired {
                from: me.to_owned(),
                entries: 0,
                epoch,
            });
        }
        let store = &self.args.store;
        // A move that took the lease and failed before the state arrived is resumed:
        // the state still comes from the shard it was leaving.
        let unfinished = store.acquiring()?.into_iter().find(|(p, _)| *p == partition);
        let from = match unfinished {
            Some((_, from)) => Some(from).filter(|f| !f.is_empty()),
            None => current.as_ref().map(|l| l.shard.clone()).filter(|s| s != me),
        };
        store.set_acquiring(partition, Some(from.as_deref().unwrap_or_default()))?;
        let epoch = match current {
            Some(l) if l.shard == me => l.epoch,
            _ => bus.assign(&[(partition, me)]).await?,
        };
        let entries = match &from {
            Some(old) => self.pull(old, partition).await?,
            None => Vec::new(),
        };
        let moved = store.partition(partition)?.replace(entries)?;
        store.set_acquiring(partition, None)?;

        let outbox: Arc<dyn Outbox> = self.args.outbox.clone();
        let args = PartitionArgs {
            partition,
            engine: self.args.engine.read().expect("engine lock").clone(),
            store: store.partition(partition)?,
            outbox,
            checkpoint_every: None,
            max_hot: {
                let owned = self.args.owned.read().expect("owned lock").len() + 1;
                self.args.config.max_hot.map(|m| m.div_ceil(owned))
            },
            idle_after: self.args.config.idle_after,
            progress: self.args.progress.clone(),
        };
        let name = format!("{}/p{partition}", self.args.config.name);
        let (actor, _) = Actor::spawn_linked(Some(name), PartitionActor, args, self.args.supervisor.clone())
            .await
            .map_err(|e| Error::Actor(e.to_string()))?;
        self.args
            .owned
            .write()
            .expect("owned lock")
            .push((partition, actor.clone()));
        let lease = Lease {
            partition,
            shard: me.to_owned(),
            epoch,
        };
        self.feed(lease, actor).await?;
        tracing::info!(partition, from = ?from, entries = moved, epoch, "partition acquired");
        Ok(Acquired {
            from: from.unwrap_or_default(),
            entries: moved,
            epoch,
        })
    }

    /// The partition's state, streamed by its old owner.
    async fn pull(&self, old: &str, partition: u32) -> Result<Vec<StoreEntry>, Error> {
        let address = self
            .args
            .bus
            .shard_address(old)
            .await?
            .ok_or_else(|| Error::Move(format!("shard `{old}` has no registered gRPC address")))?;
        let channel = persona_proto::tls::connect(&address, self.args.config.peer_tls.as_ref())
            .await
            .map_err(|e| Error::Move(format!("shard `{old}`: {e}")))?;
        let mut client = ShardControlClient::new(channel);
        let mut chunks = client
            .handoff(PartitionRequest { partition })
            .await
            .map_err(|e| {
                Error::Move(format!(
                    "handoff of partition {partition} from `{old}`: {}",
                    e.message()
                ))
            })?
            .into_inner();
        let mut entries = Vec::new();
        while let Some(chunk) = chunks.message().await.map_err(|e| {
            Error::Move(format!(
                "handoff of partition {partition} from `{old}`: {}",
                e.message()
            ))
        })? {
            entries.extend(chunk.entries.into_iter().map(|e| (e.key, e.value)));
        }
        Ok(entries)
    }
}
