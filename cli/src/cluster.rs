//! The local cluster over Redis: `persona shard` (a shard process owning the
//! partitions the assignment table leases to it) and `persona bus` (publish canonical
//! events, assign partitions to shards, show leases and lag).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use persona_actors::grpc::{self, ControlService, PersonaService};
use persona_actors::{Shard, ShardConfig};
use persona_bus::redis::RedisBus;
use persona_event::Event;
use persona_offers::Engine;
use serde::Serialize;

use crate::specs;

/// Where the bus is: shared by `persona shard` and `persona bus`.
#[derive(Debug, clap::Args)]
pub(crate) struct BusArgs {
    /// Redis URL (`redis://` or `rediss://`, with a password if any). Never logged.
    #[arg(long = "redis", env = "PERSONA_REDIS_URL", hide_env_values = true)]
    url: String,
    /// The Redis password, kept out of the URL (e.g. from a Secret). Never logged.
    #[arg(long = "redis-password", env = "PERSONA_REDIS_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Prefix of every key persona uses on that Redis.
    #[arg(long, env = "PERSONA_REDIS_PREFIX", default_value = "persona")]
    prefix: String,
    /// Partitions of the token space (fixed for the life of the cluster).
    #[arg(long, env = "PERSONA_PARTITIONS", default_value_t = 16)]
    partitions: u32,
}

impl BusArgs {
    pub(crate) async fn connect(&self) -> Result<RedisBus> {
        // The error names the bus by its prefix, not the URL (it may hold a password).
        let url = with_password(&self.url, self.password.as_deref())?;
        RedisBus::connect(&url, &self.prefix, self.partitions)
            .await
            .with_context(|| format!("connecting to the Redis bus `{}`", self.prefix))
    }
}

/// `url` with `password` in its user info (`redis://:PASSWORD@host`), percent-encoded.
fn with_password(url: &str, password: Option<&str>) -> Result<String> {
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        return Ok(url.to_owned());
    };
    let (scheme, rest) = url
        .split_once("://")
        .context("the Redis URL has no scheme (redis:// or rediss://)")?;
    anyhow::ensure!(
        !rest.split('/').next().unwrap_or_default().contains('@'),
        "the Redis URL already holds credentials: give the password in one place"
    );
    let mut encoded = String::with_capacity(password.len());
    for b in password.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(format!("{scheme}://:{encoded}@{rest}"))
}

#[derive(Debug, clap::Args)]
pub(crate) struct ShardArgs {
    #[command(flatten)]
    bus: BusArgs,
    /// This shard's name in the assignment table; also its consumer name.
    #[arg(long, env = "PERSONA_SHARD_NAME")]
    name: String,
    /// The shard's own state directory (restarted shards resume from it).
    #[arg(long, env = "PERSONA_DATA")]
    data: PathBuf,
    /// Directory of FeatureSet, Offer and ContactPolicy YAML.
    #[arg(long, env = "PERSONA_SPECS")]
    specs: PathBuf,
    /// Checkpoint a partition after this many entries (and whenever it is idle).
    #[arg(long, default_value_t = 10_000)]
    checkpoint_every: u64,
    /// Entries read per batch.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Customers kept in memory: beyond it the least recently used are passivated
    /// after each checkpoint (default: all stay).
    #[arg(long, env = "PERSONA_MAX_HOT")]
    max_hot: Option<usize>,
    /// Customers not used for this long leave memory too (`10m`, `1h`); their state is
    /// in the store and comes back with their next event.
    #[arg(long, env = "PERSONA_IDLE_AFTER", value_parser = crate::args::parse_duration)]
    idle_after: Option<std::time::Duration>,
    /// On stop, write the features of this shard's customers (features.jsonl format).
    #[arg(long)]
    features_out: Option<PathBuf>,
    /// The instant those features are evaluated at (default: each customer's clock).
    #[arg(long, value_parser = crate::args::parse_instant)]
    as_of: Option<DateTime<Utc>>,
    /// Serve gRPC (persona.v1, health, reflection) on this address, e.g. 0.0.0.0:7400.
    #[arg(long, env = "PERSONA_GRPC_ADDR")]
    grpc: Option<std::net::SocketAddr>,
    /// The address other shards reach this one at (default: http:// + --grpc, or
    /// https:// with --tls-dir).
    #[arg(long, env = "PERSONA_ADVERTISE", requires = "grpc")]
    advertise: Option<String>,
    /// Mutual TLS for the shard's gRPC, served and called: a directory with `ca.pem`,
    /// `shard.pem` and `shard.key` (`persona dev-certs --names shard`). Clients and
    /// other shards must present a certificate the same CA signed.
    #[arg(long, env = "PERSONA_TLS_DIR", requires = "grpc")]
    tls_dir: Option<PathBuf>,
    /// Serve Prometheus metrics (OpenMetrics text) on http://ADDR/metrics.
    #[arg(long, env = "PERSONA_METRICS_ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Start at once with whatever the assignment table leases to this shard, none
    /// included, and serve gRPC so partitions can be moved onto it (`persona bus
    /// move --to NAME`): how a shard added to a running cluster joins. Without it a
    /// shard waits until it holds a lease.
    #[arg(long, requires = "grpc")]
    join: bool,
    /// Follow an assignment table file (`{"epoch", "shards", "owners": [ordinal of
    /// partition 0, 1, …]}`, the operator's ConfigMap mounted in the pod): whenever it
    /// changes, take the partitions it gives this shard's ordinal (lease, state pulled
    /// from the old owner over gRPC, resume from the checkpoint). Starts like --join.
    #[arg(long, env = "PERSONA_ASSIGNMENT_FILE", requires_all = ["grpc", "ordinal"])]
    assignment_file: Option<PathBuf>,
    /// This shard's ordinal in the table (the StatefulSet pod index).
    #[arg(long, env = "PERSONA_SHARD_ORDINAL", requires = "assignment_file")]
    ordinal: Option<u32>,
}

/// `persona shard`: waits for leases (unless `--join`), feeds its partitions until SIGTERM or Ctrl-C,
/// then checkpoints, acknowledges and exits 0.
pub(crate) async fn shard(args: ShardArgs) -> Result<ExitCode> {
    let specs = specs::load(&args.specs)?;
    crate::commands::report_problems(&specs);
    let mut engine = Engine::new(specs.features, specs.offers);
    if let Some(policy) = specs.policy {
        engine = engine.with_policy(policy);
    }
    let bus = args.bus.connect().await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let leases = loop {
        let leases = bus.leases_of(&args.name).await?;
        if !leases.is_empty() || args.join || args.assignment_file.is_some() {
            break leases;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = terminate.recv() => return Ok(ExitCode::SUCCESS),
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    };
    let owned: Vec<u32> = leases.iter().map(|l| l.partition).collect();
    let tls = args
        .tls_dir
        .as_ref()
        .map(|dir| persona_proto::tls::MutualTls::in_dir(dir, "shard"));
    let config = ShardConfig {
        name: args.name.clone(),
        dir: args.data.clone(),
        checkpoint_every: args.checkpoint_every,
        batch: args.batch,
        max_hot: args.max_hot,
        idle_after: args.idle_after,
        peer_tls: tls.clone(),
    };
    let mut shard = Shard::start_redis(config, Arc::new(engine), bus.clone(), leases, &args.name).await?;
    println!("shard {} feeding partitions {owned:?}", args.name);
    tracing::info!(shard = %args.name, partitions = ?owned, "feeding");
    let (stop_serving, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = match args.grpc {
        Some(addr) => {
            let service = PersonaService::new(shard.handle(&args.name), bus.clone(), tls.clone());
            let control = shard.mover().map(ControlService::new);
            let listener = tokio::spawn(grpc::serve(service, control, addr, tls.clone(), async {
                let _ = stopped.await;
            }));
            let scheme = if tls.is_some() { "https" } else { "http" };
            let advertised = args.advertise.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
            bus.register_shard(&args.name, &advertised).await?;
            println!("shard {} serving gRPC on {addr}", args.name);
            Some(listener)
        }
        None => None,
    };
    // The table epoch whose partitions this shard has all taken: the operator waits
    // for every shard to report an epoch before it removes pods that held partitions.
    let table_epoch = args
        .assignment_file
        .as_ref()
        .map(|_| Arc::new(std::sync::atomic::AtomicU64::new(0)));
    let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
    let metrics = if args.metrics.is_some() || crate::telemetry::otlp_endpoint().is_some() {
        let gather = shard_metrics(shard.handle(&args.name), bus.clone(), table_epoch.clone());
        if let Some(addr) = args.metrics {
            println!("shard {} serving metrics on http://{addr}/metrics", args.name);
        }
        crate::metrics::publish(args.metrics, "persona-shard", gather, metrics_stopped)
    } else {
        Vec::new()
    };
    let mover = shard.mover();
    let (stop_following, following_stopped) = tokio::sync::watch::channel(false);
    let follower = match (&args.assignment_file, args.ordinal, &mover) {
        (Some(path), Some(ordinal), Some(mover)) => Some(tokio::spawn(follow_table(
            path.clone(),
            ordinal,
            args.bus.partitions,
            mover.clone(),
            table_epoch.clone().unwrap_or_default(),
            following_stopped,
        ))),
        _ => None,
    };
    let feeding_failed = async {
        match &mover {
            Some(mover) => mover.failed().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(feeding_failed);
    // The specs directory is watched: in Kubernetes it is the operator's ConfigMap,
    // which the kubelet refreshes in place; a change reloads the engine, no restart.
    let mut specs_seen = specs::fingerprint(&args.specs);
    let mut watch_specs = tokio::time::interval(Duration::from_secs(2));
    watch_specs.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let failed = loop {
        tokio::select! {
            _ = terminate.recv() => break false,
            _ = tokio::signal::ctrl_c() => break false,
            () = &mut feeding_failed => break true,
            _ = watch_specs.tick() => {
                let now = specs::fingerprint(&args.specs);
                if now != specs_seen {
                    specs_seen = now;
                    reload_specs(&mut shard, &args.specs).await;
                }
            }
        }
    };
    stop_following.send_replace(true);
    if let Some(follower) = follower {
        let _ = follower.await;
    }
    let _ = stop_serving.send(());
    if let Some(server) = server {
        server.await??;
    }
    let _ = stop_metrics.send(true);
    for task in metrics {
        task.await??;
    }
    shard.stop_feeding().await;
    let drained = shard.drain().await;
    if failed {
        shard.stop().await;
        anyhow::bail!(
            "a partition could not be fed; stopping so that a restart resumes from the checkpoints ({})",
            drained
                .err()
                .map_or_else(|| "see the log".to_owned(), |e| e.to_string())
        );
    }
    drained?;
    let stats = shard.stats().await?;
    if let Some(path) = &args.features_out {
        let features = shard.features(args.as_of).await?;
        crate::outputs::write_features(path, &features)?;
    }
    println!(
        "shard {} stopped: applied {}, duplicates {}, matches {}",
        args.name, stats.applied, stats.duplicates, stats.matches
    );
    shard.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// Loads the specs directory again and switches the shard to it; a directory without
/// a valid FeatureSet leaves the running engine in place.
async fn reload_specs(shard: &mut Shard, dir: &std::path::Path) {
    let loaded = match specs::load(dir) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("specs in {} not reloaded, the running ones stay: {e:#}", dir.display());
            tracing::warn!(error = %format!("{e:#}"), "specs not reloaded");
            return;
        }
    };
    crate::commands::report_problems(&loaded);
    let offers = loaded.offers.len();
    let mut engine = Engine::new(loaded.features, loaded.offers);
    if let Some(policy) = loaded.policy {
        engine = engine.with_policy(policy);
    }
    match shard.reload(Arc::new(engine)).await {
        Ok(()) => {
            println!("specs reloaded from {}: {offers} offers", dir.display());
            tracing::info!(offers, "specs reloaded");
        }
        Err(e) => tracing::warn!(error = %e, "specs reload failed"),
    }
}

/// Follows the assignment table at `path`: whenever its epoch changes, acquires every
/// partition it gives `ordinal` that this shard does not run yet, retrying each second
/// until all are here. Partitions it gives to others are left to them: their new owner
/// takes the lease (which fences this shard) and pulls the state.
async fn follow_table(
    path: PathBuf,
    ordinal: u32,
    partitions: u32,
    mover: Arc<persona_actors::moves::Mover>,
    taken: Arc<std::sync::atomic::AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut applied: Option<u64> = None;
    let mut last_problem = String::new();
    loop {
        match read_table(&path, partitions) {
            Ok(table) if applied != Some(table.epoch) => {
                let mine: Vec<u32> = (0..partitions)
                    .filter(|p| table.owners[*p as usize] == ordinal)
                    .collect();
                let mut missing = 0;
                for &p in &mine {
                    if *stop.borrow() {
                        return;
                    }
                    if mover.owns(p) {
                        continue;
                    }
                    match mover.acquire(p).await {
                        Ok(a) => tracing::info!(
                            partition = p,
                            from = %a.from,
                            entries = a.entries,
                            epoch = table.epoch,
                            "partition taken under the table"
                        ),
                        Err(e) => {
                            missing += 1;
                            tracing::warn!(partition = p, error = %e, "could not take a partition the table gives this shard; retrying");
                        }
                    }
                }
                if missing == 0 {
                    applied = Some(table.epoch);
                    taken.store(table.epoch, std::sync::atomic::Ordering::Release);
                    last_problem.clear();
                    println!(
                        "shard {} follows table epoch {}: partitions {}",
                        mover.shard(),
                        table.epoch,
                        persona_placement::Ranges(&mine)
                    );
                }
            }
            Ok(_) => {}
            Err(problem) => {
                if problem != last_problem {
                    tracing::warn!(file = %path.display(), %problem, "assignment table unusable; keeping the partitions held");
                    last_problem = problem;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The moves (partition, new owner) that spread `partitions` over `shards` from the
/// current leases with the fewest changes of owner (`persona_placement::plan`).
/// Partitions leased to shards not in the list, or to none, go to the listed ones.
fn rebalance_moves(
    leases: &[persona_bus::redis::Lease],
    partitions: u32,
    shards: &[String],
) -> Result<Vec<(u32, String)>> {
    anyhow::ensure!(!shards.is_empty(), "no shard named");
    let mut seen = std::collections::BTreeSet::new();
    for name in shards {
        anyhow::ensure!(seen.insert(name), "shard `{name}` is named twice");
    }
    // Ordinals: the listed shards first, then the current owners not listed (the
    // planner treats owners beyond the new count as removed), then "no owner".
    let mut names: Vec<String> = shards.to_vec();
    for l in leases {
        if !names.contains(&l.shard) {
            names.push(l.shard.clone());
        }
    }
    let nobody = u32::try_from(names.len())?;
    let owners: Vec<u32> = (0..partitions)
        .map(|p| {
            leases
                .iter()
                .find(|l| l.partition == p)
                .and_then(|l| names.iter().position(|n| *n == l.shard))
                .map_or(nobody, |i| i as u32)
        })
        .collect();
    let previous = persona_placement::Assignment {
        epoch: 1,
        shards: nobody + 1,
        owners,
    };
    let plan = persona_placement::plan(Some(&previous), partitions, u32::try_from(shards.len())?)?;
    Ok(plan
        .moves
        .iter()
        .map(|m| (m.partition, shards[m.to as usize].clone()))
        .collect())
}

/// The shard-control client of shard `name`, at the address it registered.
async fn control_client(
    redis: &persona_bus::redis::RedisBus,
    name: &str,
) -> Result<persona_proto::ShardControlClient<tonic::transport::Channel>> {
    let address = redis
        .shard_address(name)
        .await?
        .with_context(|| format!("shard `{name}` serves no gRPC (start it with --grpc)"))?;
    persona_proto::ShardControlClient::connect(address)
        .await
        .with_context(|| format!("connecting to shard `{name}`"))
}

/// Moves one partition to shard `to` (its client): it takes the lease, pulls the
/// state and feeds on. Prints the move.
async fn move_partition(
    client: &mut persona_proto::ShardControlClient<tonic::transport::Channel>,
    partition: u32,
    to: &str,
) -> Result<()> {
    let reply = client
        .acquire(persona_proto::v1::AcquireRequest { partition })
        .await
        .map_err(|e| anyhow::anyhow!("moving partition {partition} to `{to}`: {}", e.message()))?
        .into_inner();
    println!(
        "partition {partition}: {} -> {to}, {} store entries, epoch {}",
        if reply.from_shard.is_empty() {
            "-"
        } else {
            &reply.from_shard
        },
        reply.entries,
        reply.epoch
    );
    Ok(())
}

/// The table in `path`, checked against the bus's partition count.
fn read_table(path: &std::path::Path, partitions: u32) -> Result<persona_placement::Assignment, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let table: persona_placement::Assignment =
        serde_json::from_str(&text).map_err(|e| format!("not an assignment table: {e}"))?;
    table.validate().map_err(|e| e.to_string())?;
    if table.partitions() != partitions {
        return Err(format!(
            "it has {} partitions, the bus {partitions}",
            table.partitions()
        ));
    }
    Ok(table)
}

/// A shard's metrics: per partition, its counts, customers in memory and lag; the
/// feeders' latency histograms.
fn shard_metrics(
    handle: persona_actors::ShardHandle,
    bus: RedisBus,
    table_epoch: Option<Arc<std::sync::atomic::AtomicU64>>,
) -> crate::metrics::Gather {
    use crate::metrics::{counters, gauges, label};
    Arc::new(move || {
        let (handle, bus, table_epoch) = (handle.clone(), bus.clone(), table_epoch.clone());
        Box::pin(async move {
            let mut registry = prometheus_client::registry::Registry::default();
            if let Some(epoch) = table_epoch {
                let taken: prometheus_client::metrics::gauge::Gauge = Default::default();
                let epoch = epoch.load(std::sync::atomic::Ordering::Acquire);
                taken.set(i64::try_from(epoch).unwrap_or(i64::MAX));
                registry.register(
                    "persona_table_epoch",
                    "The assignment table epoch whose partitions this shard has all taken (0: none yet)",
                    taken,
                );
            }
            let applied = counters(
                &mut registry,
                "persona_events_applied",
                "Events applied to customer actors",
            );
            let duplicates = counters(
                &mut registry,
                "persona_events_duplicate",
                "Bus entries recognised as already applied (replays after a restart or move)",
            );
            let matches = counters(&mut registry, "persona_matches", "Matches decided");
            let activations = counters(&mut registry, "persona_actor_activations", "Customer actors activated");
            let passivated = counters(
                &mut registry,
                "persona_actor_passivations",
                "Customer actors passivated to the store under the memory bound",
            );
            let hot = gauges(&mut registry, "persona_actors_hot", "Customer actors in memory");
            let lag = gauges(
                &mut registry,
                "persona_partition_lag",
                "Entries of the partition's stream not yet checkpointed by its owner",
            );
            match handle.partition_stats().await {
                Ok(stats) => {
                    for (p, s) in stats {
                        let l = label("partition", p);
                        applied.get_or_create(&l).inc_by(s.applied);
                        duplicates.get_or_create(&l).inc_by(s.duplicates);
                        matches.get_or_create(&l).inc_by(s.matches);
                        activations.get_or_create(&l).inc_by(s.activations);
                        passivated.get_or_create(&l).inc_by(s.passivated);
                        hot.get_or_create(&l).set(i64::try_from(s.hot).unwrap_or(i64::MAX));
                        if let Ok(n) = bus.lag(p).await {
                            lag.get_or_create(&l).set(i64::try_from(n).unwrap_or(i64::MAX));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "metrics: partition stats unavailable"),
            }
            let feed = persona_actors::metrics::shard_metrics();
            registry.register(
                "persona_apply_batch_seconds",
                "Time to apply one batch read from the bus and publish its matches",
                feed.apply_seconds.clone(),
            );
            registry.register(
                "persona_checkpoint_seconds",
                "Time to checkpoint a partition and acknowledge its entries",
                feed.checkpoint_seconds.clone(),
            );
            registry.register(
                "persona_decide_seconds",
                "Time to answer one Decide call, from reaching the service to its reply",
                feed.decide_seconds.clone(),
            );
            registry
        })
    })
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum BusCommand {
    /// Publish canonical events (JSON Lines, as `persona backfill --events-out`
    /// writes them) to their partitions' streams.
    Publish {
        #[command(flatten)]
        bus: BusArgs,
        files: Vec<PathBuf>,
    },
    /// Lease the partitions to shards, round robin, under a new epoch: for a new
    /// cluster. Leases are not state: a shard that loses one stops feeding the
    /// partition and its new owner does not pull the state, so over existing leases
    /// it refuses unless --force (spread them with `bus rebalance`, move one with
    /// `bus move`, or run shards with `--assignment-file`).
    Assign {
        #[command(flatten)]
        bus: BusArgs,
        /// Shard names, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        shards: Vec<String>,
        /// Re-lease partitions that have an owner already (their running owners are
        /// fenced; restart the shards so that each feeds what it is leased).
        #[arg(long)]
        force: bool,
    },
    /// Move a partition to another live shard (served with --grpc): it takes the
    /// lease, pulls the state from the old owner and feeds on from the checkpoint.
    Move {
        #[command(flatten)]
        bus: BusArgs,
        #[arg(long)]
        partition: u32,
        /// The shard that takes the partition.
        #[arg(long)]
        to: String,
    },
    /// Spread the partitions over these shards with the fewest moves (the operator's
    /// planner), each move as `bus move` makes it: the new owner takes the lease,
    /// pulls the state from the old one and feeds on from the checkpoint. Shards not
    /// listed give all their partitions away. Every listed shard must serve gRPC.
    Rebalance {
        #[command(flatten)]
        bus: BusArgs,
        /// Shard names, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        shards: Vec<String>,
        /// Print the moves without making them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Each partition's lease, checkpoint and lag.
    Status {
        #[command(flatten)]
        bus: BusArgs,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Serialize)]
struct PartitionStatus {
    partition: u32,
    shard: Option<String>,
    epoch: Option<u64>,
    checkpoint: String,
    lag: u64,
}

pub(crate) async fn bus(command: BusCommand) -> Result<ExitCode> {
    match command {
        BusCommand::Publish { bus, files } => {
            let redis = bus.connect().await?;
            let mut published = 0u64;
            for file in &files {
                published += publish_file(&redis, file).await?;
            }
            println!("published {published} events");
        }
        BusCommand::Assign { bus, shards, force } => {
            let redis = bus.connect().await?;
            let held = redis.leases().await?;
            anyhow::ensure!(
                held.is_empty() || force,
                "{} partitions are leased already (epoch {}): assigning again moves no state and \
                 stops their running owners; spread them over running shards with `persona bus \
                 rebalance`, move one with `persona bus move`, or give --force and restart the shards",
                held.len(),
                held.iter().map(|l| l.epoch).max().unwrap_or(0)
            );
            let grants: Vec<(u32, &str)> = (0..bus.partitions)
                .map(|p| (p, shards[p as usize % shards.len()].as_str()))
                .collect();
            let epoch = redis.assign(&grants).await?;
            println!(
                "epoch {epoch}: {} partitions over {} shards",
                bus.partitions,
                shards.len()
            );
        }
        BusCommand::Move { bus, partition, to } => {
            anyhow::ensure!(
                partition < bus.partitions,
                "partition {partition} does not exist: there are {}",
                bus.partitions
            );
            let redis = bus.connect().await?;
            let mut client = control_client(&redis, &to).await?;
            move_partition(&mut client, partition, &to).await?;
        }
        BusCommand::Rebalance { bus, shards, dry_run } => {
            let redis = bus.connect().await?;
            let leases = redis.leases().await?;
            let moves = rebalance_moves(&leases, bus.partitions, &shards)?;
            if moves.is_empty() {
                println!(
                    "balanced already: {} partitions over {} shards",
                    bus.partitions,
                    shards.len()
                );
                return Ok(ExitCode::SUCCESS);
            }
            // Every new owner must be reachable before the first partition moves.
            let mut clients = std::collections::BTreeMap::new();
            for (_, to) in &moves {
                if !clients.contains_key(to) {
                    clients.insert(to.clone(), control_client(&redis, to).await?);
                }
            }
            for (partition, to) in &moves {
                if dry_run {
                    let from = leases
                        .iter()
                        .find(|l| l.partition == *partition)
                        .map(|l| l.shard.as_str());
                    println!("partition {partition}: {} -> {to} (dry run)", from.unwrap_or("-"));
                    continue;
                }
                let client = clients.get_mut(to).expect("connected above");
                move_partition(client, *partition, to).await?;
            }
            println!(
                "{} moves{}: {} partitions over {} shards",
                moves.len(),
                if dry_run { " planned" } else { "" },
                bus.partitions,
                shards.len()
            );
        }
        BusCommand::Status { bus, json } => {
            let redis = bus.connect().await?;
            let leases = redis.leases().await?;
            let mut rows = Vec::new();
            for p in 0..bus.partitions {
                let lease = leases.iter().find(|l| l.partition == p);
                rows.push(PartitionStatus {
                    partition: p,
                    shard: lease.map(|l| l.shard.clone()),
                    epoch: lease.map(|l| l.epoch),
                    checkpoint: redis.checkpoint(p).await?.to_string(),
                    lag: redis.lag(p).await?,
                });
            }
            if json {
                let lag: u64 = rows.iter().map(|r| r.lag).sum();
                let report = serde_json::json!({"lag": lag, "partitions": rows});
                println!("{report}");
            } else {
                for r in rows {
                    let owner = r.shard.as_deref().unwrap_or("-");
                    println!(
                        "p{:<4} {owner:<16} epoch {:<6} checkpoint {:<24} lag {}",
                        r.partition,
                        r.epoch.map_or("-".into(), |e| e.to_string()),
                        r.checkpoint,
                        r.lag
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Publishes one file's events in batches; a line that is not an event stops it with
/// the file and line (the events before it are published).
async fn publish_file(bus: &RedisBus, path: &std::path::Path) -> Result<u64> {
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut batch: Vec<Event> = Vec::with_capacity(1000);
    let mut published = 0u64;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let parsed = line
            .with_context(|| format!("{}:{}", path.display(), n + 1))
            .and_then(|line| {
                let blank = line.trim().is_empty();
                let event = (!blank).then(|| serde_json::from_str::<Event>(&line));
                event
                    .transpose()
                    .with_context(|| format!("{}:{}: not a canonical event", path.display(), n + 1))
            });
        let event = match parsed {
            Ok(Some(event)) => event,
            Ok(None) => continue,
            Err(e) => {
                // What came before the bad line goes out; the error names the line.
                bus.publish(&batch).await?;
                return Err(e);
            }
        };
        batch.push(event);
        if batch.len() == 1000 {
            bus.publish(&batch).await?;
            published += batch.len() as u64;
            batch.clear();
        }
    }
    bus.publish(&batch).await?;
    Ok(published + batch.len() as u64)
}

#[cfg(test)]
mod tests {
    use persona_bus::redis::Lease;

    fn leases(owners: &[&str]) -> Vec<Lease> {
        (0u32..)
            .zip(owners)
            .filter(|(_, s)| !s.is_empty())
            .map(|(partition, s)| Lease {
                partition,
                shard: (*s).to_owned(),
                epoch: 1,
            })
            .collect()
    }

    fn names(list: &str) -> Vec<String> {
        list.split(',').map(str::to_owned).collect()
    }

    fn owners_after(before: &[&str], moves: &[(u32, String)]) -> Vec<String> {
        let mut owners: Vec<String> = before.iter().map(|s| (*s).to_owned()).collect();
        for (p, to) in moves {
            owners[*p as usize] = to.clone();
        }
        owners
    }

    #[test]
    fn a_new_shard_takes_its_share_and_nothing_else_moves() {
        let before = ["s0", "s0", "s0", "s0", "s1", "s1", "s1", "s1"];
        let moves = super::rebalance_moves(&leases(&before), 8, &names("s0,s1,s2")).unwrap();
        assert_eq!(moves.len(), 2, "{moves:?}");
        assert!(moves.iter().all(|(_, to)| to == "s2"), "{moves:?}");
        let after = owners_after(&before, &moves);
        for (shard, want) in [("s0", 3), ("s1", 3), ("s2", 2)] {
            assert_eq!(after.iter().filter(|o| *o == shard).count(), want, "{after:?}");
        }
        // Planned again on the result: nothing to do.
        let again: Vec<&str> = after.iter().map(String::as_str).collect();
        assert!(
            super::rebalance_moves(&leases(&again), 8, &names("s0,s1,s2"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_shard_left_out_gives_everything_away_and_unleased_partitions_find_an_owner() {
        let before = ["s0", "s1", "s2", "s0", "s1", "s2", "", ""];
        let moves = super::rebalance_moves(&leases(&before), 8, &names("s1,s0")).unwrap();
        let after = owners_after(&before, &moves);
        assert!(after.iter().all(|o| o == "s0" || o == "s1"), "{after:?}");
        assert_eq!(after.iter().filter(|o| *o == "s0").count(), 4);
        // Only the partitions of s2 and the unleased ones moved.
        let moved: Vec<u32> = moves.iter().map(|(p, _)| *p).collect();
        assert_eq!(moved, vec![2, 5, 6, 7]);
        let twice = super::rebalance_moves(&leases(&before), 8, &names("s0,s0")).unwrap_err();
        assert!(twice.to_string().contains("named twice"), "{twice}");
    }
}
