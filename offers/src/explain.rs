//! Explain: for a customer and an offer, every clause of its condition with its value
//! and whether it passed, the features it read, and the gate that decided.

use std::fmt;

use chrono::{DateTime, Utc};
use persona_event::{Channel, Event, Token, Value};
use persona_expr::{FeatureRef, Scope};

use crate::Engine;
use crate::customer::Customer;
use crate::matching::{CustomerScope, Gate, gates, in_control};

/// One top-level clause of `when`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClauseOutcome {
    pub text: String,
    pub value: Value,
    pub passed: bool,
    /// The features the clause reads, with their values.
    pub features: Vec<(String, Value)>,
}

/// Why an offer would or would not match now.
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    pub offer: String,
    pub at: DateTime<Utc>,
    pub clauses: Vec<ClauseOutcome>,
    /// The variant and channel chosen, or the first gate that failed.
    pub outcome: Result<(String, Channel), Gate>,
    /// She is in the offer's control group: a match is recorded, not delivered.
    pub control: bool,
}

impl Customer {
    /// Explains `offer` for this customer as of `at` (default: her clock), with
    /// `event` as the triggering event when given. `None` for an unknown offer.
    pub fn explain(
        &self,
        engine: &Engine,
        token: &Token,
        offer: &str,
        event: Option<&Event>,
        at: Option<DateTime<Utc>>,
    ) -> Option<Explanation> {
        let offer = engine.catalog.get(offer)?;
        let scope = CustomerScope::new(engine, self, event, at);
        let clauses = offer
            .condition()
            .map(|when| {
                when.clauses()
                    .into_iter()
                    .map(|c| {
                        let value = c.program.eval(&scope);
                        let features = c.program.features_used().into_iter().map(|f| {
                            let v = scope.feature(FeatureRef::named(&f));
                            (f, v)
                        });
                        ClauseOutcome {
                            passed: value == Value::Bool(true),
                            text: c.text,
                            value,
                            features: features.collect(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let outcome = gates(offer, token, &scope).map(|(v, c)| (v.name.clone(), c));
        Some(Explanation {
            offer: offer.name.clone(),
            at: scope.now(),
            clauses,
            outcome,
            control: in_control(offer, token),
        })
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.clauses {
            write!(f, "  {} {}", if c.passed { "✓" } else { "✗" }, c.text)?;
            if !c.features.is_empty() {
                let reads: Vec<String> = c.features.iter().map(|(n, v)| format!("{n} = {v}")).collect();
                write!(f, "   ({})", reads.join(", "))?;
            }
            writeln!(f)?;
        }
        match &self.outcome {
            Ok((variant, channel)) if self.control => writeln!(
                f,
                "  => matches: variant `{variant}` on {channel}, but she is in the control group: recorded, not delivered"
            ),
            Ok((variant, channel)) => writeln!(f, "  => matches: variant `{variant}` on {channel}"),
            Err(gate) => writeln!(f, "  => no match: {}", gate.describe()),
        }
    }
}
