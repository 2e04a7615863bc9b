//! `persona bench features`: events per second per core applied to customers' feature
//! state (no actors, no I/O), memory per customer in RAM and snapshot bytes on disk,
//! for the demo's FeatureSet (about 50 features) or a generated 1,000-feature set with
//! families.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{DateTime, TimeDelta, Utc};
use persona_actors::CustomerFeatures;
use persona_event::hash::fnv1a64;
use persona_event::{Event, EventId, Token, Value};
use persona_features::{FeatureSet, FeatureSetDocument, FeatureState};
use persona_offers::{Customer, Engine};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{median, rss};

const CATEGORIES: [&str; 12] = [
    "fuel",
    "dining",
    "grocery",
    "transport",
    "electronics",
    "shopping",
    "utilities",
    "atm",
    "transfer",
    "salary",
    "interest",
    "travel",
];
const MALLS: [&str; 4] = ["Phoenix Marketcity", "Select Citywalk", "Lulu Mall", "Inorbit Mall"];
const CITIES: [&str; 5] = ["Mumbai", "Bengaluru", "Delhi", "Chennai", "Kochi"];

#[derive(Debug, Clone, Copy, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SetChoice {
    /// The demo's FeatureSet.
    Demo,
    /// 1,000 generated features, every tenth a family by merchant.
    Wide,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Customers, each with her own feature state.
    #[arg(long, default_value_t = 20_000)]
    customers: u32,
    /// Generated events per customer, over 90 days.
    #[arg(long, default_value_t = 100)]
    events_per_customer: u32,
    /// Which FeatureSet to measure.
    #[arg(long, value_enum, default_value_t = SetChoice::Demo)]
    set: SetChoice,
    /// Runs; throughput is their median.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Measure over the canonical events in this JSON Lines file (as `persona backfill
    /// --events-out` writes them) instead of generated ones.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["customers", "events_per_customer"])]
    events: Option<PathBuf>,
    /// The FeatureSet YAML to measure, instead of --set.
    #[arg(long, conflicts_with = "set")]
    featureset: Option<PathBuf>,
    /// Write every customer's features as of the latest event (features.jsonl format).
    #[arg(long)]
    features_out: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Threads, each applying the events of its share of the customers (customers are
    /// independent, as a shard's partitions are); 0: every core.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Time the whole job from the --events file: each run reads and parses the file,
    /// applies every event as it is read and ends with every customer's features as
    /// of the latest event. Without it only applying events already in memory is timed
    /// (each customer's events lying together, as Spark's cache holds them by token).
    #[arg(long, requires = "events")]
    from_file: bool,
}

#[derive(Debug, Serialize)]
struct Params {
    /// The FeatureSet: `demo`, `wide` or the file given.
    set: String,
    features: usize,
    customers: usize,
    events: u64,
    /// The events file measured, when not generated.
    #[serde(skip_serializing_if = "Option::is_none")]
    events_file: Option<PathBuf>,
    runs: u32,
    /// What a run times: `apply` (events already in memory applied to feature state)
    /// or `from-file` (reading and parsing the file, applying, the features at the end).
    timed: &'static str,
}

#[derive(Debug, Serialize)]
struct Report {
    scenario: &'static str,
    /// Events applied per second on `cores_used` threads (median of the runs).
    ops_per_sec: f64,
    cores_used: u32,
    peak_rss_bytes: u64,
    /// Resident memory of the feature states, per customer.
    ram_bytes_per_customer: f64,
    /// Mean feature snapshot size per customer.
    snapshot_bytes_per_customer: f64,
    /// Mean size of the whole customer record an actor checkpoints (features, the ids
    /// of applied events, profile and offer history), over the first 1,000 customers.
    record_bytes_per_customer: f64,
    runs_ops_per_sec: Vec<f64>,
    params: Params,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        writeln!(
            f,
            "bench features: {} set ({} features), {} customers, {} events, {} runs, {} cores, timed: {}",
            p.set, p.features, p.customers, p.events, p.runs, self.cores_used, p.timed
        )?;
        if let Some(file) = &p.events_file {
            writeln!(f, "  events from {}", file.display())?;
        }
        super::median_line(f, "events/s", self.ops_per_sec, &self.runs_ops_per_sec)?;
        writeln!(
            f,
            "  RAM per customer         {:>12.0} bytes",
            self.ram_bytes_per_customer
        )?;
        writeln!(
            f,
            "  snapshot per customer    {:>12.0} bytes (features)",
            self.snapshot_bytes_per_customer
        )?;
        writeln!(
            f,
            "  record per customer      {:>12.0} bytes (features, applied event ids, history)",
            self.record_bytes_per_customer
        )?;
        write!(f, "  peak RSS                 {:>12} bytes", self.peak_rss_bytes)
    }
}

/// The generated 1,000-feature set: every aggregation over several windows and
/// categories; every tenth feature a family keyed by merchant.
fn wide_set() -> String {
    let aggs = ["sum", "count", "avg", "max", "min", "distinct_days", "last", "sum"];
    let windows = ["1d", "7d", "30d", "90d", "24h"];
    let mut yaml =
        String::from("kind: FeatureSet\nmetadata: {name: wide}\nspec:\n  timezone: Asia/Kolkata\n  features:\n");
    for i in 0..1000 {
        let agg = aggs[i % aggs.len()];
        let window = windows[(i / aggs.len()) % windows.len()];
        let category = CATEGORIES[(i / 40) % CATEGORIES.len()];
        let direction = ["debit", "credit"][(i / 480) % 2];
        let value = if agg == "count" || agg == "distinct_days" {
            String::new()
        } else {
            ", value: event.amount".into()
        };
        let by = if i % 10 == 0 { ", by: event.merchant" } else { "" };
        yaml.push_str(&format!(
            "    - {{name: f{i:04}, on: transaction, where: 'event.category == \"{category}\" and event.direction == \"{direction}\"', agg: {agg}{value}, window: {window}{by}}}\n"
        ));
    }
    yaml
}

pub(crate) fn feature_set(choice: SetChoice) -> Result<FeatureSet> {
    let yaml = match choice {
        SetChoice::Demo => include_str!("../demo/specs/featureset.yaml").to_owned(),
        SetChoice::Wide => wide_set(),
    };
    let doc = FeatureSetDocument::from_yaml(&yaml)?;
    FeatureSet::compile(&doc).map_err(|errors| {
        anyhow::anyhow!(
            "bench FeatureSet: {}",
            errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        )
    })
}

/// One customer's events over 90 days, in time order.
pub(crate) fn customer_events(c: u32, n: u32, start: DateTime<Utc>) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(u64::from(c));
    let token = {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&c.to_be_bytes());
        Token::from_bytes(b)
    };
    let mut minutes: Vec<i64> = (0..n).map(|_| rng.gen_range(0..90 * 24 * 60)).collect();
    minutes.sort_unstable();
    minutes
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&c.to_be_bytes());
            id[4..8].copy_from_slice(&(i as u32).to_be_bytes());
            let roll: f64 = rng.r#gen();
            let mut attrs = std::collections::BTreeMap::new();
            let kind = if roll < 0.7 {
                let category = CATEGORIES[rng.gen_range(0..CATEGORIES.len())];
                let credit = category == "salary" || category == "interest" || rng.gen_bool(0.1);
                attrs.insert("category".into(), Value::from(category));
                attrs.insert("direction".into(), Value::from(if credit { "credit" } else { "debit" }));
                attrs.insert(
                    "amount".into(),
                    Value::Float(f64::from(rng.gen_range(50..500_000)) / 100.0),
                );
                attrs.insert("merchant".into(), Value::from(format!("m{}", rng.gen_range(0..20))));
                "transaction"
            } else if roll < 0.85 {
                attrs.insert(
                    "balance".into(),
                    Value::Float(f64::from(rng.gen_range(1_000..5_000_000)) / 10.0),
                );
                "balance"
            } else {
                attrs.insert(
                    "amount".into(),
                    Value::Float(f64::from(rng.gen_range(100..200_000)) / 100.0),
                );
                attrs.insert("city".into(), Value::from(CITIES[rng.gen_range(0..CITIES.len())]));
                if rng.gen_bool(0.4) {
                    attrs.insert("mall".into(), Value::from(MALLS[rng.gen_range(0..MALLS.len())]));
                }
                "card_swipe"
            };
            Event {
                id: EventId::from_bytes(id),
                token: token.clone(),
                kind: kind.into(),
                ts: start + TimeDelta::minutes(m),
                attrs,
            }
        })
        .collect()
}

/// Every customer's events from a canonical events file, in file order, customers in
/// order of first appearance. A line that is not an event is an error naming it.
fn read_events(path: &Path) -> Result<Vec<Vec<Event>>> {
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut customers: Vec<Vec<Event>> = Vec::new();
    let mut index: HashMap<Token, usize> = HashMap::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a canonical event", path.display(), n + 1))?;
        let slot = *index.entry(event.token.clone()).or_insert_with(|| {
            customers.push(Vec::new());
            customers.len() - 1
        });
        customers[slot].push(event);
    }
    // Parsed in file (time) order, a customer's events lie scattered over the heap
    // among everyone else's, and applying them would time cache misses on event
    // strings: a shard applies each event just parsed, and Spark's timed compute
    // reads its cache sorted by customer. Copied customer by customer, each one's
    // events lie together.
    Ok(customers.iter().map(|events| events.to_vec()).collect())
}

fn load_set(args: &Args) -> Result<(FeatureSet, String)> {
    let Some(path) = &args.featureset else {
        return Ok((feature_set(args.set)?, format!("{:?}", args.set).to_lowercase()));
    };
    let yaml = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let doc = FeatureSetDocument::from_yaml(&yaml).with_context(|| format!("{}", path.display()))?;
    let set = FeatureSet::compile(&doc).map_err(|errors| {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}: {}", path.display(), all.join("; "))
    })?;
    Ok((set, path.display().to_string()))
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let (set, set_name) = load_set(args)?;
    let customers: Vec<Vec<Event>> = match &args.events {
        Some(path) => read_events(path)?,
        None => {
            let start = persona_event::time::parse_ts("2026-08-01T00:00:00Z")?;
            let n = args.events_per_customer;
            (0..args.customers).map(|c| customer_events(c, n, start)).collect()
        }
    };
    let total: u64 = customers.iter().map(|c| c.len() as u64).sum();
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let per_customer = customers.len().max(1) as f64;
    let mut kept: Vec<FeatureState> = Vec::new();
    let mut rates = Vec::new();
    let mut ram = 0.0;
    let mut snapshot = 0.0;
    let mut from_file = Vec::new();
    for run in 0..args.runs.max(1) {
        // The last run's states and features are dropped before the clock starts, not
        // during.
        drop(std::mem::take(&mut from_file));
        drop(std::mem::take(&mut kept));
        let (before, _) = rss();
        let started = Instant::now();
        let states = match (&args.events, args.from_file) {
            (Some(path), true) => {
                let (states, rows) = from_file_run(path, &set, threads)?;
                from_file = rows;
                states
            }
            _ => apply_all(&set, &customers, threads),
        };
        rates.push(total as f64 / started.elapsed().as_secs_f64());
        let (after, _) = rss();
        // Only the first run measures memory: later runs reuse what the allocator kept.
        if run == 0 {
            ram = after.saturating_sub(before) as f64 / per_customer;
        }
        snapshot = states.iter().map(|s| s.encode(&set).len() as f64).sum::<f64>() / per_customer;
        kept = states;
    }
    match &args.features_out {
        Some(path) if args.from_file => {
            from_file.sort_by(|a, b| a.0.cmp(&b.0));
            crate::outputs::write_features(path, &from_file)?;
        }
        Some(path) => write_features(path, &set, &customers, &kept)?,
        None => {}
    }
    drop(from_file);
    drop(kept);
    // The record an actor checkpoints, with the ids of applied events it keeps to
    // recognise re-deliveries.
    let engine = Engine::new(set.clone(), Vec::new());
    let sample = &customers[..customers.len().min(1000)];
    let record = sample
        .iter()
        .map(|events| {
            let mut customer = Customer::default();
            for e in events {
                customer.apply(&engine, e);
            }
            customer.encode(&engine).len() as f64
        })
        .sum::<f64>()
        / sample.len().max(1) as f64;
    let report = Report {
        scenario: "features",
        ops_per_sec: median(rates.clone()),
        cores_used: u32::try_from(threads).unwrap_or(u32::MAX),
        peak_rss_bytes: rss().1,
        ram_bytes_per_customer: ram,
        snapshot_bytes_per_customer: snapshot,
        record_bytes_per_customer: record,
        runs_ops_per_sec: rates,
        params: Params {
            set: set_name,
            features: set.features().len() + set.derived().len(),
            customers: customers.len(),
            events: total,
            events_file: args.events.clone(),
            runs: args.runs,
            timed: if args.from_file { "from-file" } else { "apply" },
        },
    };
    super::print(&report, args.json);
    Ok(())
}

/// Each customer's feature state after her events, in order, computed by `threads`
/// threads over contiguous shares of the customers.
fn apply_all(set: &FeatureSet, customers: &[Vec<Event>], threads: usize) -> Vec<FeatureState> {
    let one = |share: &[Vec<Event>]| -> Vec<FeatureState> {
        share
            .iter()
            .map(|events| {
                let mut state = FeatureState::default();
                for e in events {
                    state.apply(set, e);
                }
                state
            })
            .collect()
    };
    if threads <= 1 || customers.len() < 2 {
        return one(customers);
    }
    let size = customers.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = customers
            .chunks(size)
            .map(|share| scope.spawn(move || one(share)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a features thread panicked"))
            .collect()
    })
}

/// One `--from-file` run: `threads` threads each read the whole file and parse and
/// apply the events of their share of the customers (by a hash of the token, as a
/// shard takes its partitions), each event as it is read; then every customer's
/// features as of the latest event of all. Returns the states and the features.
fn from_file_run(path: &Path, set: &FeatureSet, threads: usize) -> Result<(Vec<FeatureState>, Vec<CustomerFeatures>)> {
    let threads = threads.max(1);
    let shares: Vec<Share> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|me| scope.spawn(move || read_share(path, set, me, threads)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a features thread panicked"))
            .collect::<Result<_>>()
    })?;
    let Some(as_of) = shares.iter().filter_map(|s| s.latest).max() else {
        anyhow::bail!("{}: no events", path.display());
    };
    let done: Vec<(Vec<FeatureState>, Vec<CustomerFeatures>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                scope.spawn(move || {
                    share
                        .states
                        .into_iter()
                        .map(|(token, state)| {
                            let features = state.view(set, Some(as_of)).all();
                            (state, (token, as_of, features))
                        })
                        .unzip()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a features thread panicked"))
            .collect()
    });
    let (mut states, mut rows) = (Vec::new(), Vec::new());
    for (s, r) in done {
        states.extend(s);
        rows.extend(r);
    }
    Ok((states, rows))
}

/// One thread's customers after a pass over the file, and their latest event time.
struct Share {
    states: HashMap<Token, FeatureState>,
    latest: Option<DateTime<Utc>>,
}

/// Reads `path`, parsing and applying the events of share `me` of `of`. A line whose
/// token is not where persona writes it is parsed to find it.
fn read_share(path: &Path, set: &FeatureSet, me: usize, of: usize) -> Result<Share> {
    let mine = |token: &str| of == 1 || fnv1a64(token.as_bytes()) % of as u64 == me as u64;
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut share = Share {
        states: HashMap::new(),
        latest: None,
    };
    let mut line = String::new();
    let mut n = 0;
    loop {
        line.clear();
        n += 1;
        if reader
            .read_line(&mut line)
            .with_context(|| format!("{}:{n}", path.display()))?
            == 0
        {
            break;
        }
        let text = line.trim();
        if text.is_empty() || token_text(text).is_some_and(|t| !mine(t)) {
            continue;
        }
        let event: Event =
            serde_json::from_str(text).with_context(|| format!("{}:{n}: not a canonical event", path.display()))?;
        if !mine(event.token.as_str()) {
            continue;
        }
        share.latest = share.latest.max(Some(event.ts));
        match share.states.get_mut(&event.token) {
            Some(state) => state.apply(set, &event),
            None => share.states.entry(event.token.clone()).or_default().apply(set, &event),
        }
    }
    Ok(share)
}

/// The token of an event line as persona writes it (`"token":"tk_..."`), without
/// parsing the line; `None` when it is written otherwise (spaces, escapes), so that
/// the line is parsed and routed by the token it really holds.
fn token_text(line: &str) -> Option<&str> {
    const KEY: &str = "\"token\":\"";
    let at = line.find(KEY)? + KEY.len();
    let rest = &line[at..];
    let token = &rest[..rest.find('"')?];
    (!token.contains('\\')).then_some(token)
}

/// Every customer's features as of the latest event of all, sorted by token, in the
/// features.jsonl format.
fn write_features(path: &Path, set: &FeatureSet, customers: &[Vec<Event>], states: &[FeatureState]) -> Result<()> {
    let Some(as_of) = customers.iter().flatten().map(|e| e.ts).max() else {
        anyhow::bail!("no events: no features to write");
    };
    let mut lines: Vec<CustomerFeatures> = customers
        .iter()
        .zip(states)
        .filter_map(|(events, state)| {
            let token = events.first()?.token.clone();
            Some((token, as_of, state.view(set, Some(as_of)).all()))
        })
        .collect();
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    crate::outputs::write_features(path, &lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_of_a_line_is_found_without_parsing() {
        let line = r#"{"id":"ev_1","token":"tk_abc","type":"t","ts":"2026-01-01T00:00:00Z"}"#;
        assert_eq!(token_text(line), Some("tk_abc"));
        assert_eq!(token_text(r#"{"token": "tk_abc"}"#), None);
        assert_eq!(token_text(r#"{"token":"tk_\u0061bc"}"#), None);
    }

    #[test]
    fn both_bench_sets_compile_and_have_their_size() {
        assert!(feature_set(SetChoice::Demo).unwrap().features().len() >= 50);
        assert_eq!(feature_set(SetChoice::Wide).unwrap().features().len(), 1000);
    }
}
