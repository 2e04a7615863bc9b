//! The shard actor: supervises the partition actors it owns. A partition that fails
//! stops the shard, whose handle then reports the failure; its state on disk is the
//! last checkpoint, from which a restarted shard resumes.

use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::partition::{PartitionActor, PartitionArgs, PartitionMsg};

pub(crate) struct ShardActor;

pub(crate) struct ShardArgs {
    pub(crate) name: String,
    pub(crate) partitions: Vec<PartitionArgs>,
    /// Filled in `pre_start` with the partition actors, in partition order.
    pub(crate) children: Arc<Mutex<Vec<ActorRef<PartitionMsg>>>>,
    /// The first failure of a partition, if any.
    pub(crate) failure: Arc<Mutex<Option<String>>>,
}

pub(crate) struct ShardState {
    failure: Arc<Mutex<Option<String>>>,
}

impl Actor for ShardActor {
    type Msg = ();
    type State = ShardState;
    type Arguments = ShardArgs;

    async fn pre_start(&self, me: ActorRef<()>, args: ShardArgs) -> Result<ShardState, ActorProcessingErr> {
        let mut children = Vec::with_capacity(args.partitions.len());
        for p in args.partitions {
            let name = format!("{}/p{}", args.name, p.partition);
            let (child, _) = Actor::spawn_linked(Some(name), PartitionActor, p, me.get_cell()).await?;
            children.push(child);
        }
        *args.children.lock().expect("children lock") = children;
        Ok(ShardState { failure: args.failure })
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<()>,
        evt: SupervisionEvent,
        state: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = evt {
            let reason = format!("partition actor {} failed: {err}", cell.get_name().unwrap_or_default());
            tracing::error!(%reason, "stopping the shard");
            state
                .failure
                .lock()
                .expect("failure lock")
                .get_or_insert(reason.clone());
            me.stop(Some(reason));
        }
        Ok(())
    }
}
