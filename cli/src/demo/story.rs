//! The persona's story at the end of the demo: who she is, what her actor learned,
//! which offer she got, and why. A trusted-zone view: it names her.

use anyhow::Result;
use persona_event::Value;
use persona_privacy::CustomerKey;

use super::bank::GeneratedBank;
use crate::pipeline::Finished;

/// Tells the story of the first persona built to receive an offer.
pub(crate) async fn tell(bank: &GeneratedBank, run: &Finished) -> Result<()> {
    let Some(persona) = bank.personas.iter().find(|p| p.expected_offer.is_some()) else {
        return Ok(());
    };
    let (token, _) = run.vault.tokenize(&CustomerKey::new(persona.customer_key.clone()))?;
    println!("\nthe story of {} ({})", persona.name, persona.customer_key);
    println!("  {}", persona.story);
    println!("  in the cloud zone she is only {token}");
    let hers: Vec<_> = run.matches.iter().filter(|m| m.token == token).collect();
    if hers.is_empty() {
        println!("  no offer matched her in this run");
    }
    for m in &hers {
        println!(
            "  {}: offer `{}` (variant `{}`) on {}",
            persona_event::time::format_ts(&m.ts),
            m.offer,
            m.variant,
            m.channel
        );
    }
    // Explain the offer her data was built for: why she got it, or why not yet.
    let Some(offer) = persona.expected_offer.clone() else {
        return Ok(());
    };
    let Some(why) = run.shard.explain(&token, &offer, None).await? else {
        return Ok(());
    };
    let got = hers.iter().any(|m| m.offer == offer);
    let at = persona_event::time::format_ts(&why.at);
    let verdict = if got { "why" } else { "why not" };
    println!("  {verdict} `{offer}`: its condition, clause by clause, as of {at}:");
    for c in &why.clauses {
        let reads: Vec<String> = c.features.iter().map(|(n, v)| format!("{n} = {}", show(v))).collect();
        let reads = if reads.is_empty() {
            String::new()
        } else {
            format!("   ({})", reads.join(", "))
        };
        println!("    {} {}{reads}", if c.passed { "yes" } else { "no " }, c.text);
    }
    match (&why.outcome, got) {
        (Err(gate), true) => println!("  (now: {} — the offer is not sent twice)", gate.describe()),
        (Err(gate), false) => println!("  (not sent: {})", gate.describe()),
        (Ok(_), _) => {}
    }
    Ok(())
}

fn show(v: &Value) -> String {
    match v {
        Value::Float(x) => format!("{x:.2}"),
        other => other.to_string(),
    }
}
