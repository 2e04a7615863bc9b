//! The contact policy (`kind: ContactPolicy`, DESIGN.md §3): how often and when a
//! customer may be contacted at all, whatever the offer. At most `maxPerDay` offers
//! a day; none in quiet hours; with `respectPreferredDays`, only on the days she
//! prefers (`prefs.preferred_days`). A match that falls in quiet hours or on a day she
//! does not want is deferred to her next allowed time, not dropped.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use persona_event::Value;
use persona_event::spec::Metadata;
use persona_expr::FieldError;
use serde::{Deserialize, Serialize};

/// A `ContactPolicy` document; one per cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContactPolicyDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Always `ContactPolicy`.
    pub kind: String,
    pub metadata: Metadata,
    pub spec: ContactPolicySpec,
}

/// Limits on contacting a customer, across all offers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContactPolicySpec {
    /// At most this many offers per customer per calendar day (in `timezone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_day: Option<u32>,
    /// No contact between `from` and `to` (local `HH:MM`; may wrap past midnight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHoursSpec>,
    /// IANA time zone of days and hours; the FeatureSet's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Contact a customer only on the weekdays in her `prefs.preferred_days` (a list
    /// or a comma-separated string of day names such as `SAT` or `Saturday`); any day
    /// when she has none.
    #[serde(default)]
    pub respect_preferred_days: bool,
}

/// `{from: "21:00", to: "09:00"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct QuietHoursSpec {
    /// Local `HH:MM` at which quiet hours begin (inclusive).
    pub from: String,
    /// Local `HH:MM` at which they end (exclusive); before `from` wraps past midnight.
    pub to: String,
}

impl ContactPolicyDocument {
    pub fn from_yaml(text: &str) -> Result<Self, crate::Error> {
        serde_yaml::from_str(text).map_err(crate::Error::Yaml)
    }
}

/// The compiled policy.
#[derive(Clone, Debug, PartialEq)]
pub struct ContactPolicy {
    pub name: String,
    pub max_per_day: Option<u32>,
    /// Local times: quiet from the first (inclusive) to the second (exclusive).
    pub quiet: Option<(NaiveTime, NaiveTime)>,
    /// `None`: the FeatureSet's.
    pub timezone: Option<Tz>,
    pub preferred_days: bool,
}

/// When a match may be delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// Now.
    Now,
    /// Not now: at this later instant.
    At(DateTime<Utc>),
    /// Not today: the day's quota is spent.
    Capped,
}

impl ContactPolicy {
    /// Validates a document; every problem is reported with its field's path.
    pub fn compile(doc: &ContactPolicyDocument) -> Result<ContactPolicy, Vec<FieldError>> {
        let mut errors = Vec::new();
        if doc.kind != "ContactPolicy" {
            errors.push(FieldError::invalid(
                "kind",
                format!("expected `ContactPolicy`, found `{}`", doc.kind),
            ));
        }
        let spec = &doc.spec;
        let timezone = spec.timezone.as_deref().and_then(|tz| match tz.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                errors.push(FieldError::invalid("spec.timezone", "unknown IANA time zone"));
                None
            }
        });
        let mut time = |path: &str, text: &str| match NaiveTime::parse_from_str(text.trim(), "%H:%M") {
            Ok(t) => Some(t),
            Err(_) => {
                errors.push(FieldError::invalid(
                    path,
                    format!("invalid time `{text}`: expected HH:MM, e.g. 21:00"),
                ));
                None
            }
        };
        let quiet = spec.quiet_hours.as_ref().and_then(|q| {
            let from = time("spec.quietHours.from", &q.from);
            let to = time("spec.quietHours.to", &q.to);
            Some((from?, to?))
        });
        if quiet.is_some_and(|(from, to)| from == to) {
            errors.push(FieldError::invalid(
                "spec.quietHours",
                "`from` and `to` are equal: quiet hours would never end",
            ));
        }
        if spec.max_per_day == Some(0) {
            errors.push(FieldError::invalid(
                "spec.maxPerDay",
                "0 would forbid every contact; leave offers out, or pause them, instead",
            ));
        }
        if errors.is_empty() {
            Ok(ContactPolicy {
                name: doc.metadata.name.clone(),
                max_per_day: spec.max_per_day,
                quiet,
                timezone,
                preferred_days: spec.respect_preferred_days,
            })
        } else {
            Err(errors)
        }
    }

    /// Whether local time `t` is in quiet hours.
    fn quiet_at(&self, t: NaiveTime) -> bool {
        match self.quiet {
            None => false,
            Some((from, to)) if from < to => t >= from && t < to,
            // Wraps past midnight: 21:00 to 09:00.
            Some((from, to)) => t >= from || t < to,
        }
    }

    /// The earliest instant at or after `at` outside quiet hours and on one of `days`
    /// (any day when empty), in `tz`.
    pub fn next_allowed(&self, at: DateTime<Utc>, tz: Tz, days: &[Weekday]) -> DateTime<Utc> {
        let mut local = at.with_timezone(&tz).naive_local();
        // Each step moves to the end of quiet hours or to the next day, so a week and
        // a day of steps reaches any allowed time there is.
        for _ in 0..16 {
            let day_ok = days.is_empty() || days.contains(&local.weekday());
            if day_ok && !self.quiet_at(local.time()) {
                return resolve(tz, local, at);
            }
            if !day_ok {
                local = start_of(local.date() + Duration::days(1));
                continue;
            }
            let (_, to) = self.quiet.expect("quiet hours, since the time is quiet");
            let end = local.date().and_time(to);
            local = if end > local {
                end
            } else {
                (local.date() + Duration::days(1)).and_time(to)
            };
        }
        at
    }

    /// When a match found at `at` may go out, given the delivery instants already
    /// used (`delivered`) and her preferred days.
    pub fn allowed(&self, at: DateTime<Utc>, tz: Tz, days: &[Weekday], delivered: &[i64]) -> Allowed {
        let when = self.next_allowed(at, tz, days);
        if when > at {
            return Allowed::At(when);
        }
        match self.max_per_day {
            Some(cap) if self.sent_on(at, tz, delivered) >= cap as usize => Allowed::Capped,
            _ => Allowed::Now,
        }
    }

    /// How many deliveries fell on the local day of `at`.
    pub fn sent_on(&self, at: DateTime<Utc>, tz: Tz, delivered: &[i64]) -> usize {
        let day = at.with_timezone(&tz).date_naive();
        delivered
            .iter()
            .filter_map(|&d| DateTime::from_timestamp_micros(d))
            .filter(|d| d.with_timezone(&tz).date_naive() == day)
            .count()
    }

    /// The first allowed instant of the day after `at`'s (for a delivery the day's
    /// quota pushed back).
    pub fn next_day(&self, at: DateTime<Utc>, tz: Tz, days: &[Weekday]) -> DateTime<Utc> {
        let tomorrow = start_of(at.with_timezone(&tz).date_naive() + Duration::days(1));
        self.next_allowed(resolve(tz, tomorrow, at), tz, days)
    }
}

fn start_of(day: NaiveDate) -> chrono::NaiveDateTime {
    day.and_time(NaiveTime::MIN)
}

/// A local time as an instant; in a daylight-saving gap, the first instant after it.
fn resolve(tz: Tz, local: chrono::NaiveDateTime, fallback: DateTime<Utc>) -> DateTime<Utc> {
    for minutes in [0, 30, 60, 90, 120] {
        if let Some(t) = tz.from_local_datetime(&(local + Duration::minutes(minutes))).earliest() {
            return t.with_timezone(&Utc).max(fallback);
        }
    }
    fallback
}

/// Weekdays from a preference value: a list or a comma-separated string of day names
/// (`SAT`, `Saturday`, `sat`); unknown names are ignored.
pub fn weekdays(value: &Value) -> Vec<Weekday> {
    crate::matching::list_of(value)
        .iter()
        .filter_map(|n| n.trim().parse::<Weekday>().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use persona_event::time::parse_ts;

    fn policy(yaml: &str) -> ContactPolicy {
        ContactPolicy::compile(&ContactPolicyDocument::from_yaml(yaml).unwrap()).unwrap()
    }

    const POLICY: &str = "kind: ContactPolicy\nmetadata: {name: p}\nspec: {maxPerDay: 2, quietHours: {from: \"21:00\", to: \"09:00\"}, timezone: Asia/Kolkata, respectPreferredDays: true}\n";

    #[test]
    fn quiet_hours_defer_to_their_end() {
        let p = policy(POLICY);
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        // 23:00 in Kolkata -> 09:00 the next morning.
        let at = parse_ts("2026-11-02T17:30:00Z").unwrap();
        assert_eq!(p.next_allowed(at, tz, &[]), parse_ts("2026-11-03T03:30:00Z").unwrap());
        // 07:00 -> 09:00 the same morning.
        let at = parse_ts("2026-11-03T01:30:00Z").unwrap();
        assert_eq!(p.next_allowed(at, tz, &[]), parse_ts("2026-11-03T03:30:00Z").unwrap());
        // 12:00 is allowed.
        let at = parse_ts("2026-11-03T06:30:00Z").unwrap();
        assert_eq!(p.allowed(at, tz, &[], &[]), Allowed::Now);
    }

    #[test]
    fn preferred_days_defer_to_the_next_one_after_quiet_hours() {
        let p = policy(POLICY);
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        let days = weekdays(&Value::from("SAT, sunday, nonsense"));
        assert_eq!(days, vec![Weekday::Sat, Weekday::Sun]);
        // Tuesday 2026-11-03 noon -> Saturday 2026-11-07 09:00 (00:00 is quiet).
        let at = parse_ts("2026-11-03T06:30:00Z").unwrap();
        assert_eq!(
            p.allowed(at, tz, &days, &[]),
            Allowed::At(parse_ts("2026-11-07T03:30:00Z").unwrap())
        );
    }

    #[test]
    fn the_daily_quota_counts_local_days() {
        let p = policy(POLICY);
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        let noon = parse_ts("2026-11-03T06:30:00Z").unwrap();
        let used = [
            parse_ts("2026-11-03T04:00:00Z").unwrap().timestamp_micros(),
            // 2026-11-02 20:00 in Kolkata: the day before.
            parse_ts("2026-11-02T14:30:00Z").unwrap().timestamp_micros(),
        ];
        assert_eq!(p.allowed(noon, tz, &[], &used), Allowed::Now);
        let more = [used[0], used[0]];
        assert_eq!(p.allowed(noon, tz, &[], &more), Allowed::Capped);
        assert_eq!(p.next_day(noon, tz, &[]), parse_ts("2026-11-04T03:30:00Z").unwrap());
    }

    #[test]
    fn bad_policies_name_the_field() {
        let doc = ContactPolicyDocument::from_yaml(
            "kind: ContactPolicy\nmetadata: {name: p}\nspec: {maxPerDay: 0, quietHours: {from: \"25:00\", to: \"9\"}, timezone: Mars/Base}\n",
        )
        .unwrap();
        let errors: Vec<String> = ContactPolicy::compile(&doc)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        for field in [
            "spec.timezone",
            "spec.quietHours.from",
            "spec.quietHours.to",
            "spec.maxPerDay",
        ] {
            assert!(errors.iter().any(|e| e.starts_with(field)), "{field}: {errors:?}");
        }
        assert!(
            ContactPolicyDocument::from_yaml("kind: ContactPolicy\nmetadata: {name: p}\nspec: {maxPerDya: 1}\n")
                .is_err()
        );
    }
}
