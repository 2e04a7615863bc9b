//! The partition actor: owns one partition of the token space and hosts the virtual
//! actors of its customers as entities in its state. Events of a partition arrive in
//! stream order and are applied one at a time, so each customer sees her events in
//! order. A customer is activated (read from the store) on her first event and stays
//! in memory; her state and the partition's position are checkpointed together.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use persona_bus::Position;
use persona_event::{Event, Token, Value};
use persona_offers::{Customer, Engine, Explanation};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::Error;
use crate::outbox::Outbox;
use crate::store::PartitionStore;

/// What a customer's actor would decide for a context event, without recording it.
pub type Decision = persona_offers::WhatIf;

/// The features of one customer as of an instant.
pub type CustomerFeatures = (Token, DateTime<Utc>, BTreeMap<String, Value>);

/// Counters of one partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionStats {
    pub applied: u64,
    pub duplicates: u64,
    pub matches: u64,
    pub activations: u64,
    /// `forget` events applied: customers whose state was deleted (right to erasure).
    pub forgotten: u64,
    /// Customers passivated: dropped from memory after a checkpoint (their state is
    /// in the store), least recently used first, to keep within the memory bound.
    pub passivated: u64,
    /// Customers in memory now.
    pub hot: u64,
}

pub(crate) enum PartitionMsg {
    /// Apply a batch read from the bus; replies with the last applied position.
    Apply(Vec<(Position, Arc<Event>)>, RpcReplyPort<Result<Position, String>>),
    /// Make everything applied durable; replies with the position checkpointed.
    Checkpoint(RpcReplyPort<Result<Position, String>>),
    /// The last checkpointed position.
    Position(RpcReplyPort<Position>),
    Stats(RpcReplyPort<PartitionStats>),
    /// Passivates the customers idle past the bound, if everything is checkpointed.
    PassivateIdle,
    /// Every customer's features as of `at` (default: each customer's clock).
    Features(
        Option<DateTime<Utc>>,
        RpcReplyPort<Result<Vec<CustomerFeatures>, String>>,
    ),
    /// Explain an offer for a customer.
    Explain(Token, String, Option<DateTime<Utc>>, RpcReplyPort<Option<Explanation>>),
    /// What her actor would decide for a context event now, changing nothing.
    Decide(Arc<Event>, RpcReplyPort<Result<Decision, String>>),
    /// A copy of the customer's state, if she is known.
    Peek(Token, RpcReplyPort<Result<Option<Customer>, String>>),
    /// Release the contact policy's deferred matches due by this instant, then
    /// checkpoint; replies with how many went out.
    ReleaseDue(DateTime<Utc>, RpcReplyPort<Result<u64, String>>),
    /// Replace the FeatureSet and offers: customers in memory are carried over through
    /// the snapshot codec (unchanged features keep their state, new or edited ones
    /// start empty, removed ones are dropped).
    Reload(Arc<Engine>, RpcReplyPort<Result<(), String>>),
}

pub(crate) struct PartitionActor;

pub(crate) struct PartitionArgs {
    pub(crate) partition: u32,
    pub(crate) engine: Arc<Engine>,
    pub(crate) store: PartitionStore,
    /// Where matches go and whom to tell what is durable.
    pub(crate) outbox: Arc<dyn Outbox>,
    /// The partition checkpoints itself after this many entries (and under memory
    /// pressure); `None`: its feeder decides when (the Redis bus, which must publish
    /// the matches first).
    pub(crate) checkpoint_every: Option<u64>,
    /// At most this many customers stay in memory after a checkpoint (None: all).
    pub(crate) max_hot: Option<usize>,
    /// Customers unused this long leave memory after a checkpoint (None: never).
    pub(crate) idle_after: Option<std::time::Duration>,
    /// Stream entries handled by every partition of the shard, for progress reports.
    pub(crate) progress: Arc<AtomicU64>,
}

/// A customer kept in memory as her snapshot, a tenth of the decoded size. Under a
/// memory bound at most a thirty-second of the bound stays decoded: beyond it the
/// least recently used are packed (dirty or not: a checkpoint writes the packed
/// bytes); the next event decodes her again, without a store read.
struct Packed {
    bytes: Box<[u8]>,
    /// Her earliest deferred match (micros), for `release_due`.
    due: Option<i64>,
}

pub(crate) struct PartitionState {
    args: PartitionArgs,
    customers: HashMap<Token, Customer>,
    /// Customers kept encoded (never also in `customers`; dirty ones too).
    packed: HashMap<Token, Packed>,
    /// When each customer in memory was last used (a counter), for passivation.
    touched: HashMap<Token, u64>,
    /// When each customer in memory was last used, for idle-time passivation.
    last_used: HashMap<Token, std::time::Instant>,
    tick: u64,
    /// In a backfill run, customers whose backfill started: re-activated after a
    /// passivation, they go on with it rather than start over.
    backfilling: HashSet<Token>,
    dirty: HashSet<Token>,
    applied_to: Position,
    checkpointed: Position,
    /// Stream entries applied since the last checkpoint.
    since_checkpoint: u64,
    stats: PartitionStats,
}

impl PartitionState {
    /// The customer's entity, activated from the store on first use.
    fn activate(&mut self, token: &Token) -> Result<&mut Customer, Error> {
        if self.args.max_hot.is_some() {
            self.tick += 1;
            self.touched.insert(token.clone(), self.tick);
        }
        if self.args.idle_after.is_some() {
            self.last_used.insert(token.clone(), std::time::Instant::now());
        }
        if !self.customers.contains_key(token) {
            let customer = match self.packed.remove(token) {
                Some(packed) => {
                    Customer::decode(&packed.bytes, &self.args.engine).map_err(|e| Error::Corrupt(e.to_string()))?
                }
                None => match self.args.store.load(token)? {
                    Some(bytes) => {
                        Customer::decode(&bytes, &self.args.engine).map_err(|e| Error::Corrupt(e.to_string()))?
                    }
                    None => Customer::default(),
                },
            };
            // A backfill run recomputes its features for each customer, once: from her
            // first activation in the run on.
            let mut customer = customer;
            if self.args.engine.backfill.is_some() && self.backfilling.insert(token.clone()) {
                customer.start_backfill(&self.args.engine);
            }
            self.stats.activations += 1;
            self.customers.insert(token.clone(), customer);
        }
        Ok(self.customers.get_mut(token).expect("just inserted"))
    }

    /// After a checkpoint (everything in memory is in the store), drops the least
    /// recently used customers beyond the memory bound. A backfill run keeps its
    /// customers: the events it counted for them live only in memory.
    fn passivate(&mut self) {
        self.passivate_idle();
        let Some(bound) = self.args.max_hot else {
            return;
        };
        if self.args.engine.backfill.is_some() {
            return;
        }
        let in_memory = self.customers.len() + self.packed.len();
        if in_memory > bound {
            let mut ages: Vec<(u64, &Token)> = self
                .customers
                .keys()
                .chain(self.packed.keys())
                .map(|t| (self.touched.get(t).copied().unwrap_or(0), t))
                .collect();
            let excess = in_memory - bound;
            ages.select_nth_unstable(excess - 1);
            let cold: Vec<Token> = ages[..excess].iter().map(|(_, t)| (*t).clone()).collect();
            for token in cold {
                if self.customers.remove(&token).is_none() {
                    self.packed.remove(&token);
                }
                self.touched.remove(&token);
                self.last_used.remove(&token);
            }
            self.stats.passivated += excess as u64;
        }
    }

    /// Under a memory bound, keeps at most a thirty-second of it decoded: beyond that,
    /// packs the least recently used down to half of that (so packing runs now and
    /// then, not on every event).
    fn pack_if_crowded(&mut self) {
        let Some(bound) = self.args.max_hot else {
            return;
        };
        let live = (bound / 32).max(4);
        if self.customers.len() <= live || self.args.engine.backfill.is_some() {
            return;
        }
        let keep = live / 2;
        let mut ages: Vec<(u64, &Token)> = self
            .customers
            .keys()
            .map(|t| (self.touched.get(t).copied().unwrap_or(0), t))
            .collect();
        let excess = ages.len() - keep;
        ages.select_nth_unstable(excess - 1);
        let idle: Vec<Token> = ages[..excess].iter().map(|(_, t)| (*t).clone()).collect();
        let engine = &self.args.engine;
        for token in idle {
            if let Some(customer) = self.customers.remove(&token) {
                let packed = Packed {
                    bytes: customer.encode(engine).into_boxed_slice(),
                    due: customer.next_due(),
                };
                self.packed.insert(token, packed);
            }
        }
    }

    /// Drops the customers not used for `idle_after`, when everything in memory is in
    /// the store (else nothing: the next checkpoint comes back here).
    fn passivate_idle(&mut self) {
        let Some(idle) = self.args.idle_after else {
            return;
        };
        if self.args.engine.backfill.is_some() || !self.dirty.is_empty() || self.applied_to != self.checkpointed {
            return;
        }
        let now = std::time::Instant::now();
        let cold: Vec<Token> = self
            .last_used
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(**at) >= idle)
            .map(|(t, _)| t.clone())
            .collect();
        for token in &cold {
            if self.customers.remove(token).is_some() || self.packed.remove(token).is_some() {
                self.stats.passivated += 1;
            }
            self.touched.remove(token);
            self.last_used.remove(token);
            self.last_used.remove(token);
        }
    }

    fn apply(&mut self, batch: Vec<(Position, Arc<Event>)>) -> Result<Position, Error> {
        let engine = self.args.engine.clone();
        self.args.progress.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.since_checkpoint += batch.len() as u64;
        for (pos, event) in batch {
            if pos <= self.applied_to {
                // Re-read after a restart from the checkpoint: already applied.
                continue;
            }
            if event.kind == persona_event::kinds::FORGET {
                self.forget(&event.token)?;
                self.applied_to = pos;
                continue;
            }
            if event.token.is_broadcast() {
                self.broadcast(&engine, &event)?;
                self.applied_to = pos;
                continue;
            }
            if event.kind == persona_event::kinds::SWEEP {
                self.sweep(&engine, &event)?;
                self.applied_to = pos;
                continue;
            }
            let customer = self.activate(&event.token)?;
            // Reminders due by her time go out before what this event decides, so they
            // count first against the day's quota.
            let clock = customer.clock().map_or(event.ts, |c| c.max(event.ts));
            let released = customer.release_due(&engine, clock);
            if !released.is_empty() {
                self.dirty.insert(event.token.clone());
                self.stats.matches += released.len() as u64;
                for m in released {
                    self.args.outbox.emit(self.args.partition, m);
                }
            }
            let customer = self.activate(&event.token)?;
            if customer.apply(&engine, &event) {
                let decision = customer.decide(&engine, &event.token, &event);
                self.stats.applied += 1;
                self.dirty.insert(event.token.clone());
                if let Some(m) = decision {
                    self.stats.matches += 1;
                    self.args.outbox.emit(self.args.partition, m);
                }
            } else {
                self.stats.duplicates += 1;
            }
            self.applied_to = pos;
        }
        self.pack_if_crowded();
        // Memory pressure checkpoints too, so passivation can keep the bound: a
        // partition holds at most a sixteenth over its share between checkpoints. (On
        // the Redis bus the feeder checkpoints, after publishing; its cadence bounds
        // the excess, which is packed.)
        if let Some(every) = self.args.checkpoint_every {
            let share = self.args.max_hot;
            let in_memory = self.customers.len() + self.packed.len();
            let pressed = share.is_some_and(|bound| in_memory > bound + bound / 16);
            if self.since_checkpoint >= every || pressed {
                self.checkpoint()?;
            }
        }
        Ok(self.applied_to)
    }

    fn checkpoint(&mut self) -> Result<Position, Error> {
        if self.applied_to == self.checkpointed && self.dirty.is_empty() {
            return Ok(self.checkpointed);
        }
        let engine = &self.args.engine;
        let (customers, packed) = (&self.customers, &self.packed);
        let snapshots = self.dirty.iter().map(|t| match customers.get(t) {
            Some(c) => (t, c.encode(engine), c.next_due()),
            None => {
                let p = &packed[t];
                (t, p.bytes.to_vec(), p.due)
            }
        });
        self.args
            .store
            .checkpoint(snapshots, self.args.outbox.stream_id(), self.applied_to)?;
        self.dirty.clear();
        self.checkpointed = self.applied_to;
        self.since_checkpoint = 0;
        self.passivate();
        // Only what is durable may leave the stream.
        self.args.outbox.checkpointed(self.args.partition, self.checkpointed);
        Ok(self.checkpointed)
    }

    /// A copy of the customer's state, from memory or the store.
    fn peek(&self, token: &Token) -> Result<Option<Customer>, Error> {
        if let Some(c) = self.customers.get(token) {
            return Ok(Some(c.clone()));
        }
        if let Some(p) = self.packed.get(token) {
            return Ok(Some(
                Customer::decode(&p.bytes, &self.args.engine).map_err(|e| Error::Corrupt(e.to_string()))?,
            ));
        }
        match self.args.store.load(token)? {
            Some(bytes) => Ok(Some(
                Customer::decode(&bytes, &self.args.engine).map_err(|e| Error::Corrupt(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }

    /// The offer her actor would choose for `event`, without recording anything: the
    /// event counts only when it comes through the bus. A customer in memory is asked
    /// in place (the event applied to her features and undone); a packed or stored one
    /// is decoded for the question.
    fn decide(&mut self, event: &Event) -> Result<Decision, Error> {
        let engine = &self.args.engine;
        let token = &event.token;
        if let Some(customer) = self.customers.get_mut(token) {
            return Ok(customer.what_if(engine, token, event));
        }
        let mut customer = self.peek(token)?.unwrap_or_default();
        Ok(customer.what_if(engine, token, event))
    }

    /// A `forget` event: the customer's state leaves memory and the store at once,
    /// snapshot and reminder entry, so nothing later in the stream (a sweep, the
    /// features of the run) finds her. Not part of a checkpoint batch: forgetting
    /// again on a replay changes nothing, and the checkpoint after it makes it durable.
    fn forget(&mut self, token: &Token) -> Result<(), Error> {
        self.customers.remove(token);
        self.packed.remove(token);
        self.touched.remove(token);
        self.dirty.remove(token);
        self.args.store.erase(token)?;
        self.stats.forgotten += 1;
        tracing::debug!(%token, partition = self.args.partition, "customer forgotten");
        Ok(())
    }

    /// A broadcast event (`context`): applied to every customer of the partition, in
    /// memory or stored, each deciding the offers it triggers for her (an offer's
    /// `when` says whom it concerns, e.g. `event.city == profile.city`).
    fn broadcast(&mut self, engine: &Engine, event: &Event) -> Result<(), Error> {
        for token in self.all_tokens()? {
            let customer = self.activate(&token)?;
            if !customer.apply(engine, event) {
                self.stats.duplicates += 1;
                continue;
            }
            let decided = customer.decide(engine, &token, event);
            self.stats.applied += 1;
            if let Some(m) = decided {
                self.stats.matches += 1;
                self.args.outbox.emit(self.args.partition, m);
            }
            self.dirty.insert(token);
        }
        Ok(())
    }

    /// Every customer of the partition, in memory or stored, in token order.
    fn all_tokens(&self) -> Result<Vec<Token>, Error> {
        let mut tokens: HashSet<Token> = self.customers.keys().chain(self.packed.keys()).cloned().collect();
        for entry in self.args.store.customers() {
            tokens.insert(entry?.0);
        }
        let mut tokens: Vec<Token> = tokens.into_iter().collect();
        tokens.sort();
        Ok(tokens)
    }

    /// A scheduled sweep: the offer for every customer of the partition, in memory or
    /// stored, as of the sweep's instant.
    fn sweep(&mut self, engine: &Engine, marker: &Event) -> Result<(), Error> {
        let Some(offer) = marker.attr("offer").as_str() else {
            return Ok(());
        };
        for token in self.all_tokens()? {
            let customer = self.activate(&token)?;
            if let Some(m) = customer.sweep(engine, &token, offer, marker.ts) {
                self.stats.matches += 1;
                self.args.outbox.emit(self.args.partition, m);
            }
            // Even without a match she changed: the sweep is remembered, once.
            self.dirty.insert(token);
        }
        Ok(())
    }

    /// Releases every deferred match due by `until` (the run's clock), in this
    /// partition's memory and store, then checkpoints.
    fn release_due(&mut self, until: DateTime<Utc>) -> Result<u64, Error> {
        let engine = self.args.engine.clone();
        let mut tokens: HashSet<Token> = self.args.store.due(until.timestamp_micros())?.into_iter().collect();
        tokens.extend(
            self.customers
                .iter()
                .filter(|(_, c)| c.next_due().is_some_and(|d| d <= until.timestamp_micros()))
                .map(|(t, _)| t.clone()),
        );
        tokens.extend(
            self.packed
                .iter()
                .filter(|(_, p)| p.due.is_some_and(|d| d <= until.timestamp_micros()))
                .map(|(t, _)| t.clone()),
        );
        let mut tokens: Vec<Token> = tokens.into_iter().collect();
        tokens.sort();
        let mut released = 0;
        for token in tokens {
            let customer = self.activate(&token)?;
            let due = customer.release_due(&engine, until);
            if !due.is_empty() {
                released += due.len() as u64;
                self.dirty.insert(token);
                for m in due {
                    self.args.outbox.emit(self.args.partition, m);
                }
            }
        }
        self.stats.matches += released;
        self.checkpoint()?;
        Ok(released)
    }

    fn reload(&mut self, engine: Arc<Engine>) -> Result<(), Error> {
        // Packed customers are in the old engine's encoding: decode them first.
        for (token, packed) in std::mem::take(&mut self.packed) {
            let customer =
                Customer::decode(&packed.bytes, &self.args.engine).map_err(|e| Error::Corrupt(e.to_string()))?;
            self.customers.insert(token, customer);
        }
        for customer in self.customers.values_mut() {
            *customer = customer.reload(&self.args.engine, &engine)?;
        }
        self.args.engine = engine;
        Ok(())
    }

    fn features(&self, at: Option<DateTime<Utc>>) -> Result<Vec<CustomerFeatures>, Error> {
        let engine = &self.args.engine;
        let mut out = Vec::new();
        for entry in self.args.store.customers() {
            let (token, bytes) = entry?;
            let decoded;
            let customer = match (self.customers.get(&token), self.packed.get(&token)) {
                (Some(c), _) => c,
                (None, Some(p)) => {
                    decoded = Customer::decode(&p.bytes, engine).map_err(|e| Error::Corrupt(e.to_string()))?;
                    &decoded
                }
                (None, None) => {
                    decoded = Customer::decode(&bytes, engine).map_err(|e| Error::Corrupt(e.to_string()))?;
                    &decoded
                }
            };
            let view = customer.features.view(&engine.features, at);
            out.push((token, view.at(), view.all()));
        }
        Ok(out)
    }
}

impl Actor for PartitionActor {
    type Msg = PartitionMsg;
    type State = PartitionState;
    type Arguments = PartitionArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<PartitionMsg>,
        args: PartitionArgs,
    ) -> Result<PartitionState, ActorProcessingErr> {
        let position = args.store.position(args.outbox.stream_id())?;
        Ok(PartitionState {
            args,
            customers: HashMap::new(),
            touched: HashMap::new(),
            packed: HashMap::new(),
            last_used: HashMap::new(),
            tick: 0,
            backfilling: HashSet::new(),
            dirty: HashSet::new(),
            applied_to: position,
            checkpointed: position,
            since_checkpoint: 0,
            stats: PartitionStats::default(),
        })
    }

    async fn handle(
        &self,
        _me: ActorRef<PartitionMsg>,
        msg: PartitionMsg,
        state: &mut PartitionState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PartitionMsg::Apply(batch, reply) => {
                let result = state.apply(batch);
                let failed = result.as_ref().err().map(ToString::to_string);
                let _ = reply.send(result.map_err(|e| e.to_string()));
                if let Some(e) = failed {
                    // A partition that cannot apply must stop: its supervisor decides.
                    return Err(e.into());
                }
            }
            PartitionMsg::Checkpoint(reply) => {
                let _ = reply.send(state.checkpoint().map_err(|e| e.to_string()));
            }
            PartitionMsg::Position(reply) => {
                let _ = reply.send(state.checkpointed);
            }
            PartitionMsg::PassivateIdle => state.passivate_idle(),
            PartitionMsg::Stats(reply) => {
                let hot = (state.customers.len() + state.packed.len()) as u64;
                let _ = reply.send(PartitionStats { hot, ..state.stats });
            }
            PartitionMsg::Features(at, reply) => {
                let _ = reply.send(state.features(at).map_err(|e| e.to_string()));
            }
            PartitionMsg::ReleaseDue(until, reply) => {
                let result = state.release_due(until);
                let failed = result.as_ref().err().map(ToString::to_string);
                let _ = reply.send(result.map_err(|e| e.to_string()));
                if let Some(e) = failed {
                    return Err(e.into());
                }
            }
            PartitionMsg::Reload(engine, reply) => {
                let _ = reply.send(state.reload(engine).map_err(|e| e.to_string()));
            }
            PartitionMsg::Decide(event, reply) => {
                let _ = reply.send(state.decide(&event).map_err(|e| e.to_string()));
            }
            PartitionMsg::Peek(token, reply) => {
                let _ = reply.send(state.peek(&token).map_err(|e| e.to_string()));
            }
            PartitionMsg::Explain(token, offer, at, reply) => {
                let engine = &state.args.engine;
                let explanation = match state.customers.get(&token) {
                    Some(c) => c.explain(engine, &token, &offer, None, at),
                    None => match state.args.store.load(&token)? {
                        Some(bytes) => Customer::decode(&bytes, engine)?.explain(engine, &token, &offer, None, at),
                        None => None,
                    },
                };
                let _ = reply.send(explanation);
            }
        }
        Ok(())
    }
}
