//! Time as the contract writes it: RFC 3339 in UTC with a `Z`, and durations such as
//! `30d`, `12h`, `15m`, `45s` or `2w`.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

/// A timestamp or duration that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    #[error("invalid timestamp `{0}`: expected RFC 3339, e.g. 2026-03-04T10:22:00Z")]
    Timestamp(String),
    #[error("invalid duration `{0}`: expected a whole number and a unit s, m, h, d or w, e.g. 30d")]
    Duration(String),
}

/// Formats a timestamp as RFC 3339 in UTC, `Z`, with a fraction only when it has one.
pub fn format_ts(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Parses an RFC 3339 timestamp with any offset into UTC.
pub fn parse_ts(s: &str) -> Result<DateTime<Utc>, TimeError> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| TimeError::Timestamp(s.to_owned()))
}

/// Parses a duration literal: digits then one unit (`s`, `m`, `h`, `d`, `w`).
pub fn parse_duration(s: &str) -> Result<TimeDelta, TimeError> {
    let bad = || TimeError::Duration(s.to_owned());
    let s = s.trim();
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = s.split_at(unit_at);
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs).and_then(TimeDelta::try_seconds).ok_or_else(bad)
}

/// Formats a duration back into the largest unit that divides it.
pub fn format_duration(d: &TimeDelta) -> String {
    let secs = d.num_seconds();
    for (unit, size) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs != 0 && secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// Serde adapter for `DateTime<Utc>` in the contract's RFC 3339 form.
pub mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_ts(ts))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        crate::de::parse_str(d, "an RFC 3339 timestamp", super::parse_ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_in_utc_with_z() {
        let t = parse_ts("2026-03-04T15:52:00+05:30").unwrap();
        assert_eq!(format_ts(&t), "2026-03-04T10:22:00Z");
        assert!(parse_ts("04/03/2026").is_err());
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("30d").unwrap(), TimeDelta::days(30));
        assert_eq!(parse_duration("12h").unwrap(), TimeDelta::hours(12));
        assert_eq!(parse_duration("2w").unwrap(), TimeDelta::days(14));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("3y").is_err());
        assert_eq!(format_duration(&TimeDelta::days(14)), "2w");
        assert_eq!(format_duration(&TimeDelta::hours(36)), "36h");
    }
}
