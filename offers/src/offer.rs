//! An Offer validated into its runtime form, type-checked against the FeatureSet, and
//! the catalog of all offers in arbitration order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use persona_event::Channel;
use persona_event::time::{parse_duration, parse_ts};
use persona_expr::{FieldError, Program, Root, Schema, compile_condition_field, compile_field};
use persona_features::FeatureSet;

use crate::cron::Cron;
use crate::spec::OfferDocument;

/// Outcomes an `offer_response` event can carry.
pub const OUTCOMES: [&str; 4] = ["delivered", "opened", "positive", "negative"];

#[derive(Clone, Debug)]
pub struct Variant {
    pub name: String,
    pub weight: u32,
    pub message: String,
    pub(crate) when: Option<Program>,
}

#[derive(Clone, Debug)]
pub struct After {
    pub offer: String,
    pub response: String,
    pub within: TimeDelta,
}

/// A runnable offer.
#[derive(Clone, Debug)]
pub struct Offer {
    pub name: String,
    pub title: String,
    pub priority: i64,
    pub on: Vec<String>,
    pub(crate) when: Option<Program>,
    pub channels: Vec<Channel>,
    pub variants: Vec<Variant>,
    /// (K, P) of `K per P`.
    pub per_customer: Option<(u32, TimeDelta)>,
    pub after_negative: Option<TimeDelta>,
    pub budget: Option<u64>,
    pub after: Option<After>,
    /// First instant the offer is valid.
    pub valid_from: Option<DateTime<Utc>>,
    /// First instant it is no longer valid (the day after `until`).
    pub valid_before: Option<DateTime<Utc>>,
    pub topic: Option<String>,
    /// A sweep's schedule (then `on` is empty).
    pub schedule: Option<Cron>,
    pub paused: bool,
    /// The control group's share, in basis points (5% = 500).
    pub control_bp: u32,
    pub(crate) value: Option<Program>,
}

/// The schema offers are checked against: every root, and the FeatureSet's features.
pub fn offer_schema(features: &FeatureSet) -> Schema {
    features.declare(
        Schema::new()
            .allow_root(Root::Event)
            .allow_root(Root::Features)
            .allow_root(Root::Profile)
            .allow_root(Root::Prefs),
    )
}

impl Offer {
    /// Validates one document. Every problem is reported with the path of its field.
    pub fn compile(doc: &OfferDocument, features: &FeatureSet) -> Result<Offer, Vec<FieldError>> {
        Offer::compile_in(doc, &offer_schema(features), features.timezone())
    }

    /// Validates against an expression schema and the time zone of calendar dates;
    /// `compile` uses the FeatureSet's. (`persona offer check` without a FeatureSet
    /// uses an open schema.)
    pub fn compile_in(doc: &OfferDocument, schema: &Schema, tz: Tz) -> Result<Offer, Vec<FieldError>> {
        let mut errors = Vec::new();
        let spec = &doc.spec;
        let err = |path: &str, message: String| FieldError::invalid(path, message);
        if doc.kind != "Offer" {
            errors.push(err("kind", format!("expected `Offer`, found `{}`", doc.kind)));
        }
        // A sweep has no triggering event: `event.*` is refused in its expressions.
        let swept;
        let schema = if spec.trigger.schedule.is_some() {
            swept = schema.clone().forbid_root(Root::Event);
            &swept
        } else {
            schema
        };
        // `what` names a field that must be a condition.
        let mut expr = |path: String, src: &Option<String>, what: Option<&str>| -> Option<Program> {
            let src = src.as_deref()?;
            match what {
                Some(what) => compile_condition_field(path, src, schema, what),
                None => compile_field(path, src, schema),
            }
            .map_err(|e| errors.push(e))
            .ok()
        };
        let when = expr("spec.when".into(), &spec.when, Some("`when`"));
        let value = expr("spec.value".into(), &spec.value, None);
        let variants: Vec<Variant> = spec
            .variants
            .iter()
            .enumerate()
            .map(|(i, v)| Variant {
                name: v.name.clone(),
                weight: v.weight,
                message: v.message.clone(),
                when: expr(format!("spec.variants[{i}].when"), &v.when, Some("a variant's `when`")),
            })
            .collect();
        if variants.is_empty() {
            errors.push(err("spec.variants", "an offer needs at least one variant".into()));
        }
        if variants.iter().all(|v| v.weight == 0) && !variants.is_empty() {
            errors.push(err(
                "spec.variants",
                "at least one variant needs a positive weight".into(),
            ));
        }
        for (i, v) in variants.iter().enumerate() {
            if variants[..i].iter().any(|w| w.name == v.name) {
                errors.push(err(
                    &format!("spec.variants[{i}].name"),
                    format!("variant `{}` is defined twice", v.name),
                ));
            }
        }
        if spec.channels.is_empty() {
            errors.push(err(
                "spec.channels",
                "name at least one channel: push, email or sms".into(),
            ));
        }
        let schedule = match (&spec.trigger.schedule, spec.trigger.on.is_empty()) {
            (None, true) => {
                errors.push(err(
                    "spec.trigger",
                    "name event types (`on: [transaction]`) or a schedule (`schedule: \"0 9 * * MON\"`)".into(),
                ));
                None
            }
            (Some(_), false) => {
                errors.push(err(
                    "spec.trigger.schedule",
                    "a trigger is events (`on`) or a schedule, not both".into(),
                ));
                None
            }
            (Some(s), true) => Cron::parse(s)
                .map_err(|m| errors.push(err("spec.trigger.schedule", m)))
                .ok(),
            (None, false) => None,
        };
        let limits = spec.limits.clone().unwrap_or_default();
        let per_customer = limits.per_customer.as_deref().and_then(|s| {
            parse_per(s)
                .map_err(|m| errors.push(err("spec.limits.perCustomer", m)))
                .ok()
        });
        let mut duration = |path: &str, s: Option<&str>| {
            s.and_then(|s| {
                parse_duration(s)
                    .map_err(|e| errors.push(err(path, e.to_string())))
                    .ok()
            })
        };
        let after_negative = duration("spec.limits.afterNegative", limits.after_negative.as_deref());
        let after = spec.after.as_ref().and_then(|a| {
            let within = duration("spec.after.within", Some(&a.within))?;
            Some(After {
                offer: a.offer.clone(),
                response: a.response.clone(),
                within,
            })
        });
        if let Some(a) = &spec.after
            && !OUTCOMES.contains(&a.response.as_str())
        {
            let expected = OUTCOMES.join(", ");
            errors.push(err(
                "spec.after.response",
                format!("unknown response `{}`: expected one of {expected}", a.response),
            ));
        }
        let valid = spec.valid.clone().unwrap_or_default();
        let mut instant = |path: &str, s: Option<&str>, day_after: bool| {
            s.and_then(|s| {
                parse_instant(s, tz, day_after)
                    .map_err(|m| errors.push(err(path, m)))
                    .ok()
            })
        };
        let valid_from = instant("spec.valid.from", valid.from.as_deref(), false);
        let valid_before = instant("spec.valid.until", valid.until.as_deref(), true);
        if let (Some(f), Some(b)) = (valid_from, valid_before)
            && f >= b
        {
            errors.push(err("spec.valid", "`from` is after `until`".into()));
        }
        let control_bp = spec
            .control
            .as_deref()
            .and_then(|c| parse_share(c).map_err(|m| errors.push(err("spec.control", m))).ok());
        if let Some(v) = &value
            && !matches!(v.ty(), persona_expr::Type::Number | persona_expr::Type::Any)
        {
            errors.push(err(
                "spec.value",
                format!("`value` ranks matching offers: it must be a number, not {}", v.ty()),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Offer {
            name: doc.metadata.name.clone(),
            title: spec.title.clone(),
            priority: spec.priority,
            on: {
                let mut on = spec.trigger.on.clone();
                on.sort();
                on.dedup();
                on
            },
            when,
            channels: spec.channels.clone(),
            variants,
            per_customer,
            after_negative,
            budget: limits.budget,
            after,
            valid_from,
            valid_before,
            topic: spec.topic.clone(),
            schedule,
            paused: spec.paused,
            control_bp: control_bp.unwrap_or(0),
            value,
        })
    }

    /// The offer's condition, for explain.
    pub fn condition(&self) -> Option<&Program> {
        self.when.as_ref()
    }
}

/// `"1 per 30d"`.
/// `5%` or `2.5%` as basis points; strictly between 0% and 100%.
fn parse_share(s: &str) -> Result<u32, String> {
    let bad = || format!("invalid share `{s}`: expected a percentage between 0% and 100%, e.g. 5%");
    let number = s.trim().strip_suffix('%').ok_or_else(bad)?.trim();
    let pct: f64 = number.parse().map_err(|_| bad())?;
    let bp = (pct * 100.0).round();
    if !(1.0..10_000.0).contains(&bp) || (bp - pct * 100.0).abs() > 1e-6 {
        return Err(bad());
    }
    Ok(bp as u32)
}

fn parse_per(s: &str) -> Result<(u32, TimeDelta), String> {
    let bad = || format!("invalid limit `{s}`: expected `K per PERIOD`, e.g. `1 per 30d`");
    let (k, p) = s.split_once(" per ").ok_or_else(bad)?;
    let k: u32 = k.trim().parse().map_err(|_| bad())?;
    let p = parse_duration(p).map_err(|_| bad())?;
    if k == 0 || p <= TimeDelta::zero() {
        return Err(bad());
    }
    Ok((k, p))
}

/// A date (local midnight in `tz`, or the next midnight for an inclusive end) or an
/// RFC 3339 instant.
fn parse_instant(s: &str, tz: Tz, day_after: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        let d = if day_after {
            d.succ_opt().ok_or("date out of range")?
        } else {
            d
        };
        let midnight = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        return tz
            .from_local_datetime(&midnight)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| format!("`{s}` has no midnight in {tz}"));
    }
    let instant = parse_ts(s).map_err(|_| format!("invalid date `{s}`: expected YYYY-MM-DD or an RFC 3339 instant"))?;
    // An inclusive end instant: valid up to and including it.
    Ok(if day_after {
        instant + chrono::TimeDelta::microseconds(1)
    } else {
        instant
    })
}

/// All offers, in arbitration order (priority, then name), with their global budgets.
#[derive(Debug, Default)]
pub struct Catalog {
    offers: Vec<Offer>,
    by_trigger: HashMap<String, Vec<usize>>,
    budget_used: Vec<AtomicU64>,
}

impl Catalog {
    pub fn new(mut offers: Vec<Offer>) -> Catalog {
        offers.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));
        let mut by_trigger: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, o) in offers.iter().enumerate() {
            for kind in &o.on {
                by_trigger.entry(kind.clone()).or_default().push(i);
            }
        }
        let budget_used = offers.iter().map(|_| AtomicU64::new(0)).collect();
        Catalog {
            offers,
            by_trigger,
            budget_used,
        }
    }

    pub fn offers(&self) -> &[Offer] {
        &self.offers
    }

    pub fn get(&self, name: &str) -> Option<&Offer> {
        self.offers.iter().find(|o| o.name == name)
    }

    /// The scheduled offers, in arbitration order, with their index.
    pub fn scheduled(&self) -> impl Iterator<Item = (usize, &Offer)> {
        self.offers.iter().enumerate().filter(|(_, o)| o.schedule.is_some())
    }

    /// Offers an event type triggers, in arbitration order.
    pub(crate) fn triggered_by(&self, kind: &str) -> impl Iterator<Item = (usize, &Offer)> {
        self.by_trigger
            .get(kind)
            .into_iter()
            .flatten()
            .map(|&i| (i, &self.offers[i]))
    }

    /// Whether an offer has budget left, without taking any (a what-if).
    pub(crate) fn has_budget(&self, i: usize) -> bool {
        self.offers[i]
            .budget
            .is_none_or(|budget| self.budget_used[i].load(Ordering::Acquire) < budget)
    }

    /// Takes one unit of an offer's budget; false when it is spent.
    pub(crate) fn take_budget(&self, i: usize) -> bool {
        let Some(budget) = self.offers[i].budget else {
            return true;
        };
        self.budget_used[i]
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < budget).then_some(used + 1)
            })
            .is_ok()
    }

    /// Matches counted against each budgeted offer, to persist.
    pub fn budget_used(&self) -> Vec<(String, u64)> {
        self.offers
            .iter()
            .zip(&self.budget_used)
            .filter(|(o, _)| o.budget.is_some())
            .map(|(o, u)| (o.name.clone(), u.load(Ordering::Acquire)))
            .collect()
    }

    /// Restores persisted budget use.
    pub fn restore_budget_used(&self, used: &[(String, u64)]) {
        for (name, n) in used {
            if let Some(i) = self.offers.iter().position(|o| &o.name == name) {
                self.budget_used[i].store(*n, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        assert_eq!(parse_per("1 per 30d"), Ok((1, TimeDelta::days(30))));
        assert!(parse_per("per 30d").is_err());
        assert!(parse_per("0 per 30d").is_err());
        assert!(parse_per("1 per month").is_err());
    }

    #[test]
    fn validity_dates_are_local_and_until_is_inclusive() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(
            parse_instant("2026-11-01", tz, false).unwrap(),
            parse_ts("2026-10-31T18:30:00Z").unwrap()
        );
        assert_eq!(
            parse_instant("2026-12-31", tz, true).unwrap(),
            parse_ts("2026-12-31T18:30:00Z").unwrap()
        );
        assert!(parse_instant("31/12/2026", tz, false).is_err());
        let until = parse_ts("2026-03-05T10:00:00Z").unwrap();
        assert!(parse_instant("2026-03-05T10:00:00Z", tz, true).unwrap() > until);
    }
}
