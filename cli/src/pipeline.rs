//! The embedded pipeline behind `persona run` and `persona demo`: sources -> scrub ->
//! tokenize (gateway) -> in-process bus -> shard of partition actors -> matches ->
//! de-tokenizer -> file channel adapter, with every output file of DESIGN.md §6.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use persona_actors::{Shard, ShardConfig};
use persona_bus::MemoryBus;
use persona_detokenizer::{Detokenizer, FileAdapter};
use persona_event::{Event, Match, Token};
use persona_gateway::{Gateway, IngestReport};
use persona_offers::Engine;
use persona_privacy::Vault;

use crate::kms::KmsArgs;
use crate::progress::Progress;
use crate::specs::Specs;
use crate::summary::Summary;

/// Partitions of the embedded bus: enough to keep both cores busy, few enough that
/// each partition's checkpoints stay large.
pub(crate) const EMBEDDED_PARTITIONS: u32 = 16;

pub(crate) struct RunOptions<'a> {
    pub(crate) sources: &'a Path,
    pub(crate) data: &'a Path,
    pub(crate) out: &'a Path,
    pub(crate) as_of: Option<DateTime<Utc>>,
    /// Features to recompute from every event of the run (`--backfill`).
    pub(crate) backfill: &'a [String],
    pub(crate) kms: &'a KmsArgs,
    /// Customers kept in memory (`--max-hot`); the rest are passivated.
    pub(crate) max_hot: Option<usize>,
}

/// A finished run, with the shard still up so the caller can ask it questions.
pub(crate) struct Finished {
    pub(crate) summary: Summary,
    pub(crate) shard: Shard,
    pub(crate) vault: Arc<Vault>,
    pub(crate) matches: Vec<Match>,
}

/// The trusted zone's part: every source's records scrubbed and tokenized into events,
/// sorted by (time, event id).
pub(crate) async fn ingest(
    sources: Vec<persona_privacy::Source>,
    vault: &Arc<Vault>,
    dir: &Path,
    progress: &Progress,
) -> Result<(Vec<Event>, IngestReport)> {
    let bar = progress.counter("ingest", "records");
    let gateway = Gateway::new(sources, vault.clone());
    let dir = dir.to_owned();
    let (mut events, report) = tokio::task::spawn_blocking(move || -> Result<(Vec<Event>, IngestReport)> {
        let mut events = Vec::new();
        let report = gateway.ingest_dir(&dir, &mut |e| {
            events.push(e);
            if events.len() % 65_536 == 0 {
                bar.set(events.len() as u64);
            }
        })?;
        bar.finish(report.records_read);
        Ok((events, report))
    })
    .await??;
    vault.flush()?;
    events.sort_unstable_by(|a, b| (a.ts, &a.id).cmp(&(b.ts, &b.id)));
    Ok((events, report))
}

pub(crate) async fn run(specs: Specs, opts: RunOptions<'_>, progress: &Progress) -> Result<Finished> {
    let started = Instant::now();
    std::fs::create_dir_all(opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    let vault = opts.kms.open_vault(opts.data)?;
    let mut erasures = crate::vault::erasures(opts.data)?;

    // Trusted zone: read, scrub, tokenize. Events are then fed in event-time order
    // (a merge across all sources), as DESIGN.md §6 asks of `persona run`.
    let (events, ingest) = ingest(specs.sources, &vault, opts.sources, progress).await?;
    let latest = events.last().map(|e| e.ts);
    let ingest_secs = started.elapsed().as_secs_f64();
    tracing::info!(
        records = ingest.records_read,
        events = events.len(),
        dead_lettered = ingest.dead_letters.len(),
        secs = ingest_secs,
        "trusted zone: ingest done"
    );

    // Cloud zone: the shard applies every event to its customer's actor.
    let cloud_started = Instant::now();
    let mut engine = Engine::new(specs.features, specs.offers);
    if let Some(policy) = specs.policy {
        engine = engine.with_policy(policy);
    }
    if !opts.backfill.is_empty() {
        engine = engine.with_backfill(opts.backfill)?;
    }
    let engine = Arc::new(engine);
    let bus = Arc::new(MemoryBus::new(EMBEDDED_PARTITIONS));
    let config = ShardConfig {
        name: format!("shard-0-{}", std::process::id()),
        dir: opts.data.join("cloud").join("shard-0"),
        checkpoint_every: 50_000,
        batch: 512,
        max_hot: opts.max_hot,
        idle_after: None,
        peer_tls: None,
    };
    let mut shard = Shard::start(config, engine.clone(), bus.clone()).await?;
    // Erasures the cloud zone has not applied go first: each actor forgets before
    // anything else of the run reaches its partition.
    let forgets = crate::vault::publish_forgets(&erasures, &vault, &bus)?;

    // Trusted zone again: the de-tokenizer consumes matches as they come.
    let mut detokenizer = Detokenizer::new(vault.clone(), FileAdapter::new(&opts.out.join("deliveries.jsonl")));
    let consumer = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut matches = Vec::new();
            let mut next = 1;
            while let Some(batch) = bus.matches().read(next, 1024).await {
                for (pos, m) in batch {
                    detokenizer.deliver(&m)?;
                    matches.push(m.decision.clone());
                    next = pos + 1;
                }
                bus.matches().trim(next - 1);
            }
            anyhow::Ok((detokenizer, matches))
        })
    };

    let total = events.len() as u64;
    // An --as-of before the latest event is before the actors' clocks: windows cannot
    // be evaluated there from streaming state, so features.jsonl comes from the batch
    // evaluation of the events up to it.
    let earlier = opts.as_of.filter(|a| latest.is_some_and(|l| *a < l));
    let mut history: HashMap<Token, Vec<Event>> = HashMap::new();
    if let Some(at) = earlier {
        tracing::info!(
            "--as-of is before the latest event: features.jsonl is evaluated in batch from this run's events"
        );
        for e in events.iter().filter(|e| e.ts <= at) {
            history.entry(e.token.clone()).or_default().push(e.clone());
        }
    }
    // Scheduled offers sweep at their times from where earlier runs stopped (or this
    // run's first event) to its clock, each after the events up to its instant.
    let mut sweeps = sweep_times(&engine, &shard, events.first().map(|e| e.ts), latest)?;
    sweeps.reverse();
    for e in events {
        while sweeps.last().is_some_and(|(at, _)| *at < e.ts) {
            let (at, offer) = sweeps.pop().expect("just seen");
            Shard::publish_sweep(&bus, &offer, at);
        }
        if e.token.is_broadcast() {
            Shard::publish_broadcast(&bus, e);
        } else {
            bus.publish(e);
        }
    }
    while let Some((at, offer)) = sweeps.pop() {
        Shard::publish_sweep(&bus, &offer, at);
    }
    if let Some(clock) = latest {
        shard.save_swept_until(clock)?;
    }
    bus.close_events();
    let bar = progress.counter("actors", "events");
    let seen = shard.progress();
    let watch = async {
        loop {
            bar.set(seen.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        r = shard.drain() => r?,
        () = watch => unreachable!("the progress watch never ends"),
    }
    // Drained means checkpointed: the cloud's erasures are durable, and acknowledged.
    erasures.mark_delivered(forgets)?;
    // Matches the contact policy deferred to a time the run has reached go out now.
    if let Some(clock) = latest {
        shard.release_due(clock).await?;
    }
    let stats = shard.stats().await?;
    bar.finish(stats.applied + stats.duplicates + stats.forgotten);
    let cloud_secs = cloud_started.elapsed().as_secs_f64();
    bus.matches().close();
    let (detokenizer, mut matches) = consumer.await??;
    let (_, delivery) = detokenizer.finish(&opts.out.join("audit.jsonl"))?;

    let features = match earlier {
        Some(at) => {
            let mut batch: Vec<_> = history
                .into_iter()
                .map(|(token, events)| {
                    (
                        token,
                        at,
                        persona_features::batch::evaluate(&engine.features, &events, at),
                    )
                })
                .collect();
            batch.sort_by(|a, b| a.0.cmp(&b.0));
            batch
        }
        None => shard.features(opts.as_of.or(latest)).await?,
    };
    matches.sort_by(|a, b| (a.ts, &a.token, &a.offer).cmp(&(b.ts, &b.token, &b.offer)));
    crate::outputs::write_matches(&opts.out.join("matches.jsonl"), &matches)?;
    crate::outputs::write_features(&opts.out.join("features.jsonl"), &features)?;
    crate::outputs::write_dead_letters(&opts.out.join("dead_letter.jsonl"), &ingest.dead_letters)?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut summary = Summary::new(
        &ingest,
        &stats,
        &matches,
        &delivery,
        total,
        elapsed,
        cloud_secs,
        &specs.problems,
    );
    summary.record_kms(opts.kms.provider.as_str(), vault.kms_calls());
    summary.write(&opts.out.join("summary.json"))?;
    Ok(Finished {
        summary,
        shard,
        vault,
        matches,
    })
}

/// The scheduled sweeps a run makes, oldest first: each scheduled offer's times after
/// the instant earlier runs swept to (else just before this run's first event) and up
/// to this run's clock.
fn sweep_times(
    engine: &Engine,
    shard: &Shard,
    first: Option<DateTime<Utc>>,
    latest: Option<DateTime<Utc>>,
) -> Result<Vec<(DateTime<Utc>, String)>> {
    let (Some(first), Some(latest)) = (first, latest) else {
        return Ok(Vec::new());
    };
    let from = shard
        .swept_until()?
        .unwrap_or(first - chrono::TimeDelta::microseconds(1));
    let tz = engine.features.timezone();
    let mut times: Vec<(DateTime<Utc>, String)> = engine
        .catalog
        .scheduled()
        .flat_map(|(_, offer)| {
            let cron = offer.schedule.as_ref().expect("a scheduled offer has a schedule");
            cron.between(from, latest, tz)
                .into_iter()
                .map(|at| (at, offer.name.clone()))
        })
        .collect();
    times.sort();
    Ok(times)
}
