//! `persona offer explain | simulate | report`: offline tools over the cloud-zone
//! state earlier runs left under `--data` (tokens only: nothing here is PII). They
//! open the shard's store, so no run may be using the same `--data` at the time.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use persona_event::Token;
use persona_offers::report::{Uplift, uplift};
use persona_offers::{Customer, Engine};
use serde::Serialize;

use crate::args::{OfferExplainArgs, OfferReportArgs, OfferSimulateArgs};
use crate::specs;

/// The engine of the specs (problems reported on stderr, as `persona run` does).
fn engine(dir: &Path) -> Result<(Engine, specs::Specs)> {
    let mut specs = specs::load(dir)?;
    crate::commands::report_problems(&specs);
    let mut engine = Engine::new(specs.features.clone(), std::mem::take(&mut specs.offers));
    if let Some(policy) = specs.policy.take() {
        engine = engine.with_policy(policy);
    }
    Ok((engine, specs))
}

/// Every customer of every shard under `DATA/cloud`.
fn customers(data: &Path, engine: &Engine) -> Result<Vec<(Token, Customer)>> {
    let cloud = data.join("cloud");
    if !cloud.is_dir() {
        bail!(
            "{} has no cloud-zone state: give the --data directory of an earlier run",
            data.display()
        );
    }
    let mut shards: Vec<_> = std::fs::read_dir(&cloud)
        .with_context(|| format!("reading {}", cloud.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    shards.sort();
    let mut all = Vec::new();
    for shard in shards {
        all.extend(
            persona_actors::stored_customers(&shard, engine)
                .with_context(|| format!("reading the shard state in {}", shard.display()))?,
        );
    }
    Ok(all)
}

pub(crate) fn explain(args: &OfferExplainArgs) -> Result<ExitCode> {
    let (engine, _) = engine(&args.state.specs)?;
    if engine.catalog.get(&args.offer).is_none() {
        bail!(
            "no offer `{}` among the specs in {}",
            args.offer,
            args.state.specs.display()
        );
    }
    let token = Token::parse(&args.token).map_err(|e| anyhow::anyhow!("--token: {e}"))?;
    let all = customers(&args.state.data, &engine)?;
    let Some((_, customer)) = all.iter().find(|(t, _)| *t == token) else {
        eprintln!(
            "{token} is not known to the cloud state in {}",
            args.state.data.display()
        );
        return Ok(ExitCode::from(1));
    };
    let why = customer
        .explain(&engine, &token, &args.offer, None, args.at)
        .expect("the offer exists");
    println!(
        "offer `{}` for {token} as of {}",
        why.offer,
        persona_event::time::format_ts(&why.at)
    );
    print!("{why}");
    Ok(ExitCode::SUCCESS)
}

/// What `offer simulate` found.
#[derive(Debug, Default, Serialize)]
struct Simulation {
    offer: String,
    customers: u64,
    /// Customers passing every clause up to and including this one.
    funnel: Vec<(String, u64)>,
    matches: u64,
    /// Of the matches, customers in the control group (recorded, not delivered).
    control: u64,
    by_variant: BTreeMap<String, u64>,
    by_channel: BTreeMap<String, u64>,
    /// Customers stopped by each gate (the condition, limits, channel...).
    by_gate: BTreeMap<String, u64>,
}

pub(crate) fn simulate(args: &OfferSimulateArgs) -> Result<ExitCode> {
    let (engine, specs) = engine(&args.state.specs)?;
    let (docs, problems) = specs::documents(std::slice::from_ref(&args.offer))?;
    for p in &problems {
        eprintln!("{}", p.rendered);
    }
    let offers: Vec<_> = docs.iter().filter(|d| d.kind == "Offer").collect();
    let [doc] = offers.as_slice() else {
        bail!("{}: expected one Offer, found {}", args.offer.display(), offers.len());
    };
    let offer = match specs::offer(doc, &specs.features) {
        Ok(o) if problems.is_empty() => o,
        Ok(_) => return Ok(ExitCode::from(1)),
        Err(p) => {
            eprintln!("{}", p.rendered);
            return Ok(ExitCode::from(1));
        }
    };
    let name = offer.name.clone();
    // The draft alone, with the features and history the live offers left.
    let draft = Engine::new(engine.features.clone(), vec![offer]);
    let all = customers(&args.state.data, &engine)?;
    let mut sim = Simulation {
        offer: name.clone(),
        ..Simulation::default()
    };
    for (token, customer) in &all {
        let why = customer
            .explain(&draft, token, &name, None, args.at)
            .expect("the draft is in the engine");
        sim.customers += 1;
        if sim.funnel.is_empty() {
            sim.funnel = why.clauses.iter().map(|c| (c.text.clone(), 0)).collect();
        }
        for (step, clause) in sim.funnel.iter_mut().zip(&why.clauses) {
            if !clause.passed {
                break;
            }
            step.1 += 1;
        }
        match why.outcome {
            Ok((variant, channel)) => {
                sim.matches += 1;
                sim.control += u64::from(why.control);
                *sim.by_variant.entry(variant).or_default() += 1;
                *sim.by_channel.entry(channel.to_string()).or_default() += 1;
            }
            Err(gate) => *sim.by_gate.entry(gate.describe().to_owned()).or_default() += 1,
        }
    }
    if args.json {
        println!("{}", serde_json::to_string(&sim)?);
        return Ok(ExitCode::SUCCESS);
    }
    let at = args.at.map_or("each customer's clock".to_owned(), |a| {
        persona_event::time::format_ts(&a)
    });
    println!("offer `{}` over {} customers, as of {at}", sim.offer, sim.customers);
    for (i, (clause, n)) in sim.funnel.iter().enumerate() {
        println!("  {n:>9}  {} {clause}", if i == 0 { "  " } else { "and" });
    }
    println!("  {:>9}  would match (control group: {})", sim.matches, sim.control);
    for (variant, n) in &sim.by_variant {
        println!("  {n:>9}    variant {variant}");
    }
    for (channel, n) in &sim.by_channel {
        println!("  {n:>9}    on {channel}");
    }
    for (gate, n) in &sim.by_gate {
        println!("  {n:>9}  not matched: {gate}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn report(args: &OfferReportArgs) -> Result<ExitCode> {
    let (engine, _) = engine(&args.state.specs)?;
    let all = customers(&args.state.data, &engine)?;
    let rows = uplift(all.iter().map(|(_, c)| c));
    let pct = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0));
    if args.json {
        for u in &rows {
            #[derive(Serialize)]
            struct Line<'a> {
                #[serde(flatten)]
                groups: &'a Uplift,
                treated_rate: Option<f64>,
                control_rate: Option<f64>,
                uplift: Option<f64>,
            }
            let line = Line {
                groups: u,
                treated_rate: u.treated_rate(),
                control_rate: u.control_rate(),
                uplift: u.uplift(),
            };
            println!("{}", serde_json::to_string(&line)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:>9} {:>9} {:>8} {:>9} {:>9} {:>8} {:>9}",
        "offer", "treated", "positive", "rate", "control", "positive", "rate", "uplift"
    );
    for u in &rows {
        let lift = u.uplift().map_or("-".to_owned(), |l| format!("{:+.1} pp", l * 100.0));
        println!(
            "{:<24} {:>9} {:>9} {:>8} {:>9} {:>9} {:>8} {:>9}",
            u.offer,
            u.treated,
            u.treated_converted,
            pct(u.treated_rate()),
            u.control,
            u.control_converted,
            pct(u.control_rate()),
            lift
        );
    }
    Ok(ExitCode::SUCCESS)
}
