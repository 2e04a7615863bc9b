//! `persona bench grpc-ingest` and `persona bench decide`: a local shard process on
//! Redis serving gRPC over loopback, measured from a client in this process.
//!
//! - grpc-ingest: events per second through `PublishStream` into the shard, which
//!   appends them to the partitions' Redis streams (and feeds them to its actors at
//!   the same time, as in production).
//! - decide: once the shard has applied every event, the maximum rate of `Decide`
//!   calls (a card swipe at a mall for a random customer) with several calls in
//!   flight, then the latency of calls paced at half that rate.
//!
//! - event-to-match: once the shard has applied every event, card swipes published to
//!   the bus (Redis) at a steady rate, each for another customer; the time from the
//!   publish to the match appearing on the matches stream, for every swipe that
//!   matched.
//!
//! Client, shard and Redis share the machine's cores: the figures are for all three.

use std::fmt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use persona_bus::redis::RedisBus;
use persona_event::{Event, EventId, Value};
use persona_proto::PersonaClient;
use persona_proto::v1::{self, DecideRequest};
use serde::Serialize;
use tonic::transport::Channel;

use super::features::customer_events;
use super::{median, percentile};

const PARTITIONS: u32 = 8;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Redis URL (the bus); the bench uses its own key prefix and leaves it behind.
    #[arg(long = "redis", env = "PERSONA_REDIS_URL", hide_env_values = true)]
    redis: String,
    /// Customers, each with her own events.
    #[arg(long, default_value_t = 5_000)]
    customers: u32,
    /// Events per customer over 90 days.
    #[arg(long, default_value_t = 100)]
    events_per_customer: u32,
    /// Runs of the ingest; throughput is their median.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Seconds of each Decide phase (maximum rate, then paced at half of it).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Decide calls in flight while finding the maximum rate.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// gRPC connections the Decide callers share, round robin (as a client pool would).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Params {
    customers: u32,
    events: u64,
    runs: u32,
    partitions: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connections: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paced_rate: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    scenario: &'static str,
    ops_per_sec: f64,
    /// Client, shard and Redis share the machine.
    cores_used: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p99_ms: Option<f64>,
    /// Decide: the 99th percentile of the shard's own time per call over the paced
    /// phase (`persona_decide_seconds`), as the upper bound of its histogram bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    shard_p99_ms: Option<f64>,
    /// The shard process's peak resident memory.
    peak_rss_bytes: u64,
    runs_ops_per_sec: Vec<f64>,
    /// Operations per second of the shard process's own CPU time (user + system):
    /// the rate one core of the shard sustains, the client and Redis apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    ops_per_shard_core_sec: Option<f64>,
    params: Params,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        writeln!(
            f,
            "bench {}: {} customers, {} events, {} partitions, one shard on Redis, {} cores shared",
            self.scenario, p.customers, p.events, p.partitions, self.cores_used
        )?;
        let what = match self.scenario {
            "decide" => "Decide calls/s",
            "event-to-match" => "matches/s",
            _ => "events/s",
        };
        super::median_line(f, what, self.ops_per_sec, &self.runs_ops_per_sec)?;
        if let Some(per_core) = self.ops_per_shard_core_sec {
            writeln!(f, "  {:<28} {:>12.0}", format!("{what} per shard core"), per_core)?;
        }
        if let (Some(p50), Some(p99), Some(rate)) = (self.p50_ms, self.p99_ms, p.paced_rate) {
            let unit = if self.scenario == "decide" {
                "calls/s"
            } else {
                "events/s"
            };
            writeln!(
                f,
                "  {:<28} {:>12.3} / {:.3} ms at {rate:.0} {unit}",
                "latency p50 / p99", p50, p99
            )?;
        }
        if let Some(p99) = self.shard_p99_ms {
            writeln!(
                f,
                "  {:<28} {:>12} ms (histogram bucket bound)",
                "in the shard p99 <=", p99
            )?;
        }
        write!(f, "  {:<28} {:>12} bytes (shard)", "peak RSS", self.peak_rss_bytes)
    }
}

/// The shard process under measurement; stopped when dropped.
struct LocalShard {
    child: Child,
    dir: std::path::PathBuf,
    /// Where it serves gRPC.
    address: String,
    /// Where it serves `/metrics` (host:port).
    metrics: String,
}

impl LocalShard {
    /// The shard process's CPU time so far (user + system), in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // After the command name in parentheses: state is field 3, utime 14, stime 15,
        // in clock ticks of 1/100 s (USER_HZ, fixed for /proc).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / 100.0
    }

    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for LocalShard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// An offer every mall swipe triggers (lowest priority: a demo offer that passes its
/// own gates wins): so each measured swipe has a match, after the demo's offers were
/// evaluated for it as usual.
const EVERY_MALL_SWIPE: &str = "kind: Offer
metadata: {name: bench-every-mall-swipe}
spec:
  title: Bench
  priority: 1
  trigger: {on: [card_swipe]}
  when: coalesce(event.mall, \"\") != \"\"
  channels: [push, sms]
  variants: [{name: a, message: m}]
";

async fn start(args: &Args, name: &str) -> Result<(LocalShard, RedisBus, PersonaClient<Channel>)> {
    let dir = std::env::temp_dir().join(format!("persona-bench-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    crate::demo::write_specs(&dir.join("specs"))?;
    if name == "latency" {
        std::fs::write(dir.join("specs").join("bench-latency.yaml"), EVERY_MALL_SWIPE)?;
    }
    let prefix = format!(
        "bench:{name}:{}:{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let bus = RedisBus::connect(&args.redis, &prefix, PARTITIONS)
        .await
        .context("connecting to Redis")?;
    // The ingest scenario measures the way in alone: its shard owns no partition (it
    // joins empty), so it publishes to the bus and applies nothing meanwhile.
    let ingest_only = name == "ingest";
    let owner = if ingest_only { "elsewhere" } else { "bench" };
    let grants: Vec<(u32, &str)> = (0..PARTITIONS).map(|p| (p, owner)).collect();
    bus.assign(&grants).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let metrics = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()
    );
    let child = Command::new(std::env::current_exe()?)
        .args(["-q", "shard", "--name", "bench", "--prefix", &prefix])
        .args([
            "--partitions",
            &PARTITIONS.to_string(),
            "--grpc",
            &format!("127.0.0.1:{port}"),
            "--metrics",
            &metrics,
        ])
        .arg("--data")
        .arg(dir.join("shard"))
        .arg("--specs")
        .arg(dir.join("specs"))
        .args(ingest_only.then_some("--join"))
        .env("PERSONA_REDIS_URL", &args.redis)
        .stdout(Stdio::null())
        .spawn()
        .context("starting the shard")?;
    let shard = LocalShard {
        child,
        dir,
        address: format!("http://127.0.0.1:{port}"),
        metrics,
    };
    let started = Instant::now();
    let client = loop {
        match PersonaClient::connect(format!("http://127.0.0.1:{port}")).await {
            Ok(client) => break client,
            Err(_) if started.elapsed() < Duration::from_secs(60) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => anyhow::bail!("the shard did not serve gRPC within a minute: {e}"),
        }
    };
    Ok((shard, bus, client))
}

fn events(args: &Args) -> Result<Vec<Vec<Event>>> {
    let start = persona_event::time::parse_ts("2026-08-01T00:00:00Z")?;
    // Each customer starts with a profile (contacts, a credit band), so offers can reach her.
    Ok((0..args.customers)
        .map(|c| {
            let mut events = customer_events(c, args.events_per_customer, start);
            if let Some(first) = events.first() {
                let profile = super::dsl::profile(first, c);
                events.insert(0, profile);
            }
            events
        })
        .collect())
}

/// Publishes every event over one client stream; returns events per second.
async fn ingest(client: &mut PersonaClient<Channel>, wire: &[v1::Event]) -> Result<f64> {
    let started = Instant::now();
    let accepted = client
        .publish_stream(tokio_stream::iter(wire.to_vec()))
        .await
        .context("PublishStream")?
        .into_inner()
        .accepted;
    anyhow::ensure!(
        accepted as usize == wire.len(),
        "the shard accepted {accepted} of {}",
        wire.len()
    );
    Ok(wire.len() as f64 / started.elapsed().as_secs_f64())
}

async fn wait_applied(bus: &RedisBus) -> Result<()> {
    let started = Instant::now();
    loop {
        let mut lag = 0;
        for p in 0..bus.partitions() {
            lag += bus.lag(p).await?;
        }
        if lag == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the shard still lags by {lag}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn grpc_ingest(args: &Args) -> Result<()> {
    let (shard, bus, mut client) = start(args, "ingest").await?;
    let wire: Vec<v1::Event> = events(args)?.iter().flatten().map(v1::Event::from).collect();
    let mut rates = Vec::new();
    let mut per_core = Vec::new();
    for _ in 0..args.runs.max(1) {
        let cpu = shard.cpu_seconds();
        rates.push(ingest(&mut client, &wire).await?);
        let used = shard.cpu_seconds() - cpu;
        per_core.push(wire.len() as f64 / used.max(0.01));
    }
    // Nothing applies them (the shard owns no partition): the bus keeps them.
    let published: u64 = {
        let mut n = 0;
        for p in 0..bus.partitions() {
            n += bus.len(p).await?;
        }
        n
    };
    anyhow::ensure!(
        published == wire.len() as u64 * u64::from(args.runs.max(1)),
        "{published} events on the bus"
    );
    let report = Report {
        scenario: "grpc-ingest",
        ops_per_sec: median(rates.clone()),
        cores_used: std::thread::available_parallelism().map_or(1, usize::from),
        p50_ms: None,
        p99_ms: None,
        shard_p99_ms: None,
        peak_rss_bytes: shard.peak_rss(),
        runs_ops_per_sec: rates,
        ops_per_shard_core_sec: Some(median(per_core)),
        params: Params {
            customers: args.customers,
            events: wire.len() as u64,
            runs: args.runs,
            partitions: PARTITIONS,
            concurrency: None,
            connections: None,
            paced_rate: None,
        },
    };
    super::print(&report, args.json);
    Ok(())
}

/// A card swipe at a mall for customer `c`, at the end of her history.
fn swipe(c: u32, n: u64, history: &[Event]) -> DecideRequest {
    DecideRequest {
        event: Some(v1::Event::from(&swipe_event(c, n, history))),
    }
}

fn swipe_event(c: u32, n: u64, history: &[Event]) -> Event {
    let mut id = [0xdd; 16];
    id[..4].copy_from_slice(&c.to_be_bytes());
    id[8..].copy_from_slice(&n.to_be_bytes());
    let last = history.last().expect("events");
    Event {
        id: EventId::from_bytes(id),
        token: last.token.clone(),
        kind: "card_swipe".into(),
        ts: last.ts,
        attrs: [
            ("mall".to_owned(), Value::from("Lulu Mall")),
            ("amount".to_owned(), Value::Float(1800.0)),
            ("city".to_owned(), Value::from("Kochi")),
        ]
        .into(),
    }
}

/// What the Decide phases measured.
struct Decided {
    max_rate: f64,
    paced_rate: f64,
    /// Each paced call's latency, milliseconds.
    latencies: Vec<f64>,
    /// The shard's own p99 over the paced phase, milliseconds.
    shard_p99: Option<f64>,
}

/// The two Decide phases: the maximum rate, then calls paced at half of it.
async fn decide_calls(
    shard: &LocalShard,
    connections: usize,
    concurrency: usize,
    customers: Arc<Vec<Vec<Event>>>,
    phase: Duration,
) -> Result<Decided> {
    let address = shard.address.clone();
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(PersonaClient::connect(address.clone()).await?);
    }
    // The maximum rate: `concurrency` callers, each one call at a time.
    let started = Instant::now();
    let mut callers = Vec::new();
    for k in 0..concurrency {
        let (mut client, customers) = (clients[k % clients.len()].clone(), customers.clone());
        callers.push(tokio::spawn(async move {
            let mut calls = 0u64;
            while started.elapsed() < phase {
                let c = ((k as u64 * 7919 + calls * 104_729) % customers.len() as u64) as u32;
                client.decide(swipe(c, calls, &customers[c as usize])).await?;
                calls += 1;
            }
            Ok::<u64, tonic::Status>(calls)
        }));
    }
    let mut calls = 0;
    for caller in callers {
        calls += caller.await??;
    }
    let max_rate = calls as f64 / started.elapsed().as_secs_f64();
    let before = persona_operator::load::fetch(&shard.metrics).await.ok();

    // Paced at half of it: one call every 1/rate seconds, each on its own task. The
    // calls are spaced by a thread that sleeps to each one's instant: tokio's timer
    // counts whole milliseconds, so an interval of 80 µs would fire a dozen calls at
    // once every millisecond, a burst rather than a steady rate.
    let rate = max_rate / 2.0;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let runtime = tokio::runtime::Handle::current();
    let pacer = std::thread::spawn(move || {
        let started = Instant::now();
        let mut inflight = Vec::new();
        let mut n = 0u64;
        loop {
            let at = started + interval.mul_f64(n as f64);
            if at - started >= phase {
                break inflight;
            }
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let (mut client, customers) = (clients[n as usize % clients.len()].clone(), customers.clone());
            let c = (n * 104_729 % customers.len() as u64) as u32;
            n += 1;
            let t = Instant::now();
            inflight.push(runtime.spawn(async move {
                client.decide(swipe(c, 1 << 40 | n, &customers[c as usize])).await?;
                Ok::<f64, tonic::Status>(t.elapsed().as_secs_f64() * 1e3)
            }));
        }
    });
    let inflight = loop {
        if pacer.is_finished() {
            break pacer.join().map_err(|_| anyhow::anyhow!("the pacer thread panicked"))?;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut latencies = Vec::with_capacity(inflight.len());
    for call in inflight {
        latencies.push(call.await??);
    }
    let after = persona_operator::load::fetch(&shard.metrics).await.ok();
    let shard_p99 = before
        .zip(after)
        .and_then(|(b, a)| bucket_quantile(&b, &a, "persona_decide_seconds", 0.99))
        .map(|s| s * 1e3);
    Ok(Decided {
        max_rate,
        paced_rate: rate,
        latencies,
        shard_p99,
    })
}

/// The upper bound of the histogram bucket holding quantile `q` of the observations
/// made between two scrapes of a `/metrics` text.
fn bucket_quantile(before: &str, after: &str, histogram: &str, q: f64) -> Option<f64> {
    let series = format!("{histogram}_bucket");
    let buckets = |text: &str| -> Vec<(f64, f64)> {
        let mut b: Vec<(f64, f64)> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(persona_operator::load::sample)
            .filter(|s| s.series == series)
            .filter_map(|s| {
                let le = s.labels.iter().find(|(k, _)| k == "le")?.1.parse::<f64>().ok()?;
                Some((le, s.value))
            })
            .collect();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        b
    };
    let (b, a) = (buckets(before), buckets(after));
    let count = |le: f64, of: &[(f64, f64)]| of.iter().find(|(l, _)| *l == le).map_or(0.0, |(_, c)| *c);
    let total = a.last().map(|(le, c)| c - count(*le, &b))?;
    if total <= 0.0 {
        return None;
    }
    a.iter()
        .find(|(le, c)| (c - count(*le, &b)) >= q * total)
        .map(|(le, _)| *le)
}

pub(crate) async fn decide(args: &Args) -> Result<()> {
    let (shard, bus, mut client) = start(args, "decide").await?;
    let customers = Arc::new(events(args)?);
    let wire: Vec<v1::Event> = customers.iter().flatten().map(v1::Event::from).collect();
    ingest(&mut client, &wire).await?;
    wait_applied(&bus).await?;
    let phase = Duration::from_secs(args.seconds.max(1));
    let mut decided = decide_calls(
        &shard,
        args.connections.max(1),
        args.concurrency.max(1),
        customers,
        phase,
    )
    .await?;
    let (max_rate, rate, latencies) = (decided.max_rate, decided.paced_rate, &mut decided.latencies);
    let report = Report {
        scenario: "decide",
        ops_per_sec: max_rate,
        cores_used: std::thread::available_parallelism().map_or(1, usize::from),
        p50_ms: Some(percentile(latencies, 0.5)),
        p99_ms: Some(percentile(latencies, 0.99)),
        shard_p99_ms: decided.shard_p99,
        peak_rss_bytes: shard.peak_rss(),
        runs_ops_per_sec: vec![max_rate],
        ops_per_shard_core_sec: None,
        params: Params {
            customers: args.customers,
            events: wire.len() as u64,
            runs: 1,
            partitions: PARTITIONS,
            concurrency: Some(args.concurrency),
            connections: Some(args.connections),
            paced_rate: Some(rate),
        },
    };
    super::print(&report, args.json);
    Ok(())
}

/// The time from publishing an event on the bus to its match on the matches stream.
pub(crate) async fn event_to_match(args: &Args, rate: f64) -> Result<()> {
    let (shard, bus, mut client) = start(args, "latency").await?;
    let customers = Arc::new(events(args)?);
    let wire: Vec<v1::Event> = customers.iter().flatten().map(v1::Event::from).collect();
    ingest(&mut client, &wire).await?;
    wait_applied(&bus).await?;
    // Matches of the history are not measured: drain them first.
    let mut reader = bus.match_reader("bench").await?;
    let mut drained = Vec::new();
    loop {
        let batch = reader
            .read(10_000, Duration::from_millis(300), Duration::from_secs(3600))
            .await?;
        if batch.is_empty() {
            break;
        }
        drained.extend(batch.iter().map(|m| m.id));
        reader.ack(&drained).await?;
        drained.clear();
    }

    // One swipe per customer (an offer's caps would hold back a second), paced.
    let phase = Duration::from_secs(args.seconds.max(1));
    let count = ((rate * phase.as_secs_f64()) as usize).min(customers.len());
    let sent: Arc<std::sync::Mutex<std::collections::HashMap<EventId, Instant>>> = Arc::default();
    let publisher = {
        let (bus, customers, sent) = (bus.clone(), customers.clone(), sent.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1.0)));
            for c in 0..count {
                ticker.tick().await;
                let event = swipe_event(c as u32, 1 << 41, &customers[c]);
                sent.lock().expect("sent").insert(event.id.clone(), Instant::now());
                bus.publish(std::slice::from_ref(&event)).await?;
            }
            Ok::<(), anyhow::Error>(())
        })
    };
    let mut latencies = Vec::new();
    let deadline = Instant::now() + phase + Duration::from_secs(5);
    while Instant::now() < deadline {
        let batch = reader
            .read(1_000, Duration::from_millis(100), Duration::from_secs(3600))
            .await?;
        let seen = Instant::now();
        let mut ids = Vec::with_capacity(batch.len());
        for m in &batch {
            ids.push(m.id);
            let Some(event) = &m.message.decision.event_id else {
                continue;
            };
            if let Some(at) = sent.lock().expect("sent").remove(event) {
                latencies.push(seen.duration_since(at).as_secs_f64() * 1e3);
            }
        }
        reader.ack(&ids).await?;
        if publisher.is_finished() && latencies.len() >= count {
            break;
        }
    }
    publisher.await??;
    anyhow::ensure!(!latencies.is_empty(), "no swipe matched: nothing to measure");
    let matched = latencies.len();
    let report = Report {
        scenario: "event-to-match",
        ops_per_sec: matched as f64 / phase.as_secs_f64(),
        cores_used: std::thread::available_parallelism().map_or(1, usize::from),
        p50_ms: Some(percentile(&mut latencies, 0.5)),
        p99_ms: Some(percentile(&mut latencies, 0.99)),
        shard_p99_ms: None,
        peak_rss_bytes: shard.peak_rss(),
        runs_ops_per_sec: vec![matched as f64 / phase.as_secs_f64()],
        ops_per_shard_core_sec: None,
        params: Params {
            customers: args.customers,
            events: count as u64,
            runs: 1,
            partitions: PARTITIONS,
            concurrency: None,
            connections: None,
            paced_rate: Some(rate),
        },
    };
    super::print(&report, args.json);
    Ok(())
}
