//! `persona bench dsl`: offer decisions per second on one core (the matching engine:
//! triggers, gates, the offers' conditions and variants over live feature state),
//! with the latency of each decision, for the demo's FeatureSet and offers over
//! generated customers.

use std::fmt;
use std::time::Instant;

use anyhow::Result;
use persona_event::{Event, EventId, Value};
use persona_offers::{Customer, Engine, Offer, OfferDocument};
use serde::Serialize;

use super::features::{customer_events, feature_set};
use super::{median, percentile, rss};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Customers, each with her own state.
    #[arg(long, default_value_t = 5_000)]
    customers: u32,
    /// Events per customer over 90 days; each is applied, then decided on.
    #[arg(long, default_value_t = 100)]
    events: u32,
    /// Runs; throughput is their median.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Instead of the demo's offers, this many generated ones (spread over the event
    /// types, each reading a feature and the profile): the engine's trigger index and
    /// arbitration under many live offers.
    #[arg(long)]
    offers: Option<usize>,
    /// Measure one simple predicate (`event.amount > 1000`) evaluated over the events,
    /// instead of whole decisions.
    #[arg(long, conflicts_with = "offers")]
    predicate: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Params {
    /// `decisions`, or `predicate` for one expression's evaluations.
    counts: &'static str,
    offers: usize,
    features: usize,
    customers: u32,
    events_per_customer: u32,
    runs: u32,
}

#[derive(Debug, Serialize)]
struct Report {
    scenario: &'static str,
    /// Decisions (an event's offers evaluated, arbitrated, recorded) per second.
    ops_per_sec: f64,
    cores_used: u32,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_bytes: u64,
    matches: u64,
    runs_ops_per_sec: Vec<f64>,
    params: Params,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        writeln!(
            f,
            "bench dsl: {} offers over {} features, {} customers x {} events, {} runs, 1 core",
            p.offers, p.features, p.customers, p.events_per_customer, p.runs
        )?;
        super::median_line(f, &format!("{}/s", p.counts), self.ops_per_sec, &self.runs_ops_per_sec)?;
        if p.counts == "decisions" {
            writeln!(
                f,
                "  latency p50 / p99        {:>12.4} / {:.4} ms",
                self.p50_ms, self.p99_ms
            )?;
            writeln!(f, "  matches (last run)       {:>12}", self.matches)?;
        } else {
            writeln!(f, "  held (last run)          {:>12}", self.matches)?;
        }
        write!(f, "  peak RSS                 {:>12} bytes", self.peak_rss_bytes)
    }
}

/// Numeric features of the demo set that generated offers read.
const NUMERIC: [(&str, u32); 10] = [
    ("debit_spend_30d", 20000),
    ("debit_count_30d", 10),
    ("card_spend_30d", 5000),
    ("swipes_7d", 2),
    ("dining_spend_30d", 1500),
    ("credits_30d", 30000),
    ("fuel_spend_30d", 2000),
    ("txn_count_lifetime", 40),
    ("active_days_30d", 12),
    ("debit_spend_7d", 5000),
];

/// `n` generated offers: 70 % on transactions, 20 % on card swipes, 10 % on
/// balances, each reading one feature and the profile, in ten priority tiers.
fn generated_offers(n: usize) -> String {
    (0..n)
        .map(|i| {
            let on = match i % 10 {
                0..=6 => "transaction",
                7 | 8 => "card_swipe",
                _ => "balance",
            };
            let (feature, bar) = NUMERIC[i % NUMERIC.len()];
            format!(
                "kind: Offer\nmetadata: {{name: gen-{i:03}}}\nspec:\n  title: Offer {i}\n  priority: {}\n  trigger: {{on: [{on}]}}\n  when: features.{feature} > {} and profile.credit_band in [\"A\", \"B\"]\n  channels: [sms, email]\n  variants: [{{name: a, message: m}}]\n  limits: {{perCustomer: \"1 per 30d\"}}\n",
                i % 10,
                // Each tier of ten a little harder to reach.
                bar + bar * (i / NUMERIC.len()) as u32 / 10,
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The demo's offers (or `generated` ones), compiled against its FeatureSet.
pub(crate) fn engine(generated: Option<usize>) -> Result<Engine> {
    let set = feature_set(super::features::SetChoice::Demo)?;
    let demo = include_str!("../demo/specs/offers.yaml");
    let made;
    let text = match generated {
        Some(n) => {
            made = generated_offers(n);
            made.as_str()
        }
        None => demo,
    };
    let mut offers = Vec::new();
    for doc in text.split("---\n").filter(|d| d.contains("kind:")) {
        let parsed = OfferDocument::from_yaml(doc)?;
        let offer = Offer::compile(&parsed, &set).map_err(|e| {
            anyhow::anyhow!(
                "demo offer: {}",
                e.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
            )
        })?;
        offers.push(offer);
    }
    Ok(Engine::new(set, offers))
}

/// Her profile: a credit band and every contact kind, so the offers' conditions and
/// channels have something to read.
pub(crate) fn profile(first: &Event, c: u32) -> Event {
    let mut id = [0xffu8; 16];
    id[..4].copy_from_slice(&c.to_be_bytes());
    let contacts = Value::List(vec!["email".into(), "phone".into(), "device".into()]);
    Event {
        id: EventId::from_bytes(id),
        token: first.token.clone(),
        kind: "profile".into(),
        ts: first.ts,
        attrs: [
            ("credit_band".to_owned(), Value::from(["A", "B", "C"][c as usize % 3])),
            ("city".to_owned(), Value::from("Mumbai")),
            ("contacts".to_owned(), contacts),
        ]
        .into(),
    }
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let engine = engine(args.offers)?;
    let start = persona_event::time::parse_ts("2026-08-01T00:00:00Z")?;
    let customers: Vec<Vec<Event>> = (0..args.customers)
        .map(|c| {
            let mut events = customer_events(c, args.events, start);
            if let Some(first) = events.first() {
                let p = profile(first, c);
                events.insert(0, p);
            }
            events
        })
        .collect();
    let mut rates = Vec::new();
    let mut latencies = Vec::new();
    let mut matches = 0;
    if args.predicate {
        let predicate = persona_expr::compile(
            "event.amount > 1000",
            &persona_expr::Schema::new().allow_root(persona_expr::Root::Event),
        )
        .map_err(|d| anyhow::anyhow!("{d}"))?;
        let events: Vec<&Event> = customers.iter().flatten().collect();
        for _ in 0..args.runs.max(1) {
            let t = Instant::now();
            let mut held = 0u64;
            for e in &events {
                held += u64::from(predicate.eval_bool(&OnEvent(e)));
            }
            rates.push(events.len() as f64 / t.elapsed().as_secs_f64());
            matches = held;
        }
    }
    for _ in 0..if args.predicate { 0 } else { args.runs.max(1) } {
        latencies.clear();
        matches = 0;
        let mut decide_secs = 0.0;
        for events in &customers {
            let mut customer = Customer::default();
            for e in events {
                customer.apply(&engine, e);
                let t = Instant::now();
                let decided = customer.decide(&engine, &e.token, e);
                let dt = t.elapsed().as_secs_f64();
                decide_secs += dt;
                latencies.push(dt * 1e3);
                matches += u64::from(decided.is_some());
            }
        }
        rates.push(latencies.len() as f64 / decide_secs);
    }
    let report = Report {
        scenario: "dsl",
        ops_per_sec: median(rates.clone()),
        cores_used: 1,
        p50_ms: percentile(&mut latencies, 0.50),
        p99_ms: percentile(&mut latencies, 0.99),
        peak_rss_bytes: rss().1,
        matches,
        runs_ops_per_sec: rates,
        params: Params {
            counts: if args.predicate {
                "predicate evaluations"
            } else {
                "decisions"
            },
            offers: if args.predicate {
                0
            } else {
                engine.catalog.offers().len()
            },
            features: engine.features.features().len() + engine.features.derived().len(),
            customers: args.customers,
            events_per_customer: args.events,
            runs: args.runs,
        },
    };
    super::print(&report, args.json);
    Ok(())
}

/// A scope of one event, for the predicate measurement.
struct OnEvent<'a>(&'a Event);

impl persona_expr::Scope for OnEvent<'_> {
    fn event(&self, name: &str) -> Value {
        self.0.field(name)
    }
    fn event_ref(&self, name: &str) -> Option<&Value> {
        self.0.attr_field(name)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_and_generated_offers_compile_for_the_bench() {
        assert!(super::engine(None).unwrap().catalog.offers().len() >= 4);
        assert_eq!(super::engine(Some(100)).unwrap().catalog.offers().len(), 100);
    }
}
