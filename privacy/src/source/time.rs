//! Event times: parsed strictly by the source's format, in its time zone, into UTC.

use chrono::format::{Fixed, Item, Numeric, Parsed, StrftimeItems};
use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// How a time field's text is read.
#[derive(Clone, Debug)]
pub(crate) enum TimeParse {
    /// RFC 3339 with an offset (the default when no format is given).
    Rfc3339,
    /// A format with its own offset (`%z`, `%:z`, ...): the time zone is not needed.
    WithOffset(Items),
    /// Seconds since the epoch (`%s`): already UTC.
    Epoch(Items),
    /// A local date and time, in the source's time zone.
    Local(Items),
    /// A local date only: midnight in the source's time zone.
    Date(Items),
}

/// A strftime format, parsed once (not once per record).
#[derive(Clone, Debug)]
pub(crate) struct Items(Vec<Item<'static>>);

impl Items {
    fn of(format: &str) -> Self {
        // The format was checked when the spec was read.
        Items(StrftimeItems::new(format).parse_to_owned().unwrap_or_default())
    }

    /// The fields `text` gives by this format.
    fn parse(&self, text: &str) -> Option<Parsed> {
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, text, self.0.iter()).ok()?;
        Some(parsed)
    }
}

impl TimeParse {
    /// Classifies a (valid) strftime format by what it carries.
    pub(crate) fn of(format: Option<&str>) -> Self {
        let Some(format) = format else {
            return TimeParse::Rfc3339;
        };
        let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
        let has = |f: &dyn Fn(&Item<'_>) -> bool| items.iter().any(f);
        if has(&|i| {
            matches!(
                i,
                Item::Fixed(
                    Fixed::TimezoneOffset
                        | Fixed::TimezoneOffsetColon
                        | Fixed::TimezoneOffsetDoubleColon
                        | Fixed::TimezoneOffsetTripleColon
                        | Fixed::TimezoneOffsetColonZ
                        | Fixed::TimezoneOffsetZ
                        | Fixed::RFC2822
                        | Fixed::RFC3339
                )
            )
        }) {
            TimeParse::WithOffset(Items::of(format))
        } else if has(&|i| matches!(i, Item::Numeric(Numeric::Timestamp, _))) {
            TimeParse::Epoch(Items::of(format))
        } else if has(&|i| matches!(i, Item::Numeric(Numeric::Hour | Numeric::Hour12, _))) {
            TimeParse::Local(Items::of(format))
        } else {
            TimeParse::Date(Items::of(format))
        }
    }

    /// The instant `text` stands for, or why it does not (never quoting `text`).
    pub(crate) fn parse(&self, text: &str, tz: Tz) -> Result<DateTime<Utc>, &'static str> {
        let text = text.trim();
        let local = |naive: NaiveDateTime| match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Ok(t.with_timezone(&Utc)),
            LocalResult::None => Err("time does not exist in the time zone (clock change)"),
        };
        match self {
            TimeParse::Rfc3339 => DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| "time is not rfc 3339"),
            TimeParse::WithOffset(f) => f
                .parse(text)
                .and_then(|p| p.to_datetime().ok())
                .map(|t| t.with_timezone(&Utc))
                .ok_or("time does not match the format"),
            TimeParse::Epoch(f) => f
                .parse(text)
                .and_then(|p| p.to_naive_datetime_with_offset(0).ok())
                .map(|t| t.and_utc())
                .ok_or("time does not match the format"),
            TimeParse::Local(f) => f
                .parse(text)
                .and_then(naive_with_defaults)
                .ok_or("time does not match the format")
                .and_then(local),
            TimeParse::Date(f) => f
                .parse(text)
                .and_then(|p| p.to_naive_date().ok())
                .ok_or("time does not match the format")
                .and_then(|d| local(d.and_time(chrono::NaiveTime::MIN))),
        }
    }
}

/// The time zone a time field is read in, for the privacy report: the source's, or
/// none when the text carries its own offset (or is epoch seconds).
pub(crate) fn zone(parse: &TimeParse, tz: &str) -> String {
    match parse {
        TimeParse::Rfc3339 | TimeParse::WithOffset(_) => "its own offset".to_owned(),
        TimeParse::Epoch(_) => "epoch seconds".to_owned(),
        TimeParse::Local(_) | TimeParse::Date(_) => tz.to_owned(),
    }
}

/// How finely a time field's format tells the instant, for the privacy report: the
/// event time leaves the trusted zone as `ts` at this precision.
pub(crate) fn precision(format: Option<&str>) -> &'static str {
    let Some(format) = format else {
        return "up to the sub-second";
    };
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    let has = |f: &dyn Fn(&Item<'_>) -> bool| items.iter().any(f);
    if has(&|i| {
        matches!(
            i,
            Item::Fixed(
                Fixed::Nanosecond
                    | Fixed::Nanosecond3
                    | Fixed::Nanosecond6
                    | Fixed::Nanosecond9
                    | Fixed::RFC3339
                    | Fixed::RFC2822
            ) | Item::Numeric(Numeric::Nanosecond, _)
        )
    }) {
        "up to the sub-second"
    } else if has(&|i| matches!(i, Item::Numeric(Numeric::Second | Numeric::Timestamp, _))) {
        "to the second"
    } else if has(&|i| matches!(i, Item::Numeric(Numeric::Minute, _))) {
        "to the minute"
    } else if has(&|i| matches!(i, Item::Numeric(Numeric::Hour | Numeric::Hour12, _))) {
        "to the hour"
    } else {
        "to the day (local midnight)"
    }
}

/// A local date and time from parsed fields; a format that stops at the hour (hourly
/// drops: `%Y-%m-%d %H`) or the minute reads the rest as zero.
fn naive_with_defaults(mut parsed: Parsed) -> Option<NaiveDateTime> {
    if let Ok(t) = parsed.to_naive_datetime_with_offset(0) {
        return Some(t);
    }
    if parsed.minute().is_none() {
        parsed.set_minute(0).ok()?;
    }
    if parsed.second().is_none() {
        parsed.set_second(0).ok()?;
    }
    parsed.to_naive_datetime_with_offset(0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use persona_event::time::format_ts;

    fn at(format: Option<&str>, tz: &str, text: &str) -> Result<String, &'static str> {
        let tz: Tz = tz.parse().unwrap();
        TimeParse::of(format).parse(text, tz).map(|t| format_ts(&t))
    }

    #[test]
    fn local_times_become_utc() {
        let f = Some("%d/%m/%Y %H:%M");
        assert_eq!(
            at(f, "Asia/Kolkata", "04/03/2026 15:52").unwrap(),
            "2026-03-04T10:22:00Z"
        );
        assert_eq!(at(f, "UTC", "04/03/2026 15:52").unwrap(), "2026-03-04T15:52:00Z");
        assert_eq!(
            at(Some("%Y-%m-%d %H"), "Asia/Kolkata", "2026-03-04 15").unwrap(),
            "2026-03-04T09:30:00Z"
        );
        assert!(at(Some("%Y-%m-%d %H"), "UTC", "2026-03-04 25").is_err());
        assert!(at(f, "UTC", "2026-03-04 15:52").is_err());
        assert!(at(f, "UTC", "04/03/2026").is_err());
        assert!(at(f, "UTC", "31/02/2026 10:00").is_err());
    }

    #[test]
    fn date_only_formats_read_local_midnight() {
        assert_eq!(
            at(Some("%Y-%m-%d"), "Asia/Kolkata", "2026-03-04").unwrap(),
            "2026-03-03T18:30:00Z"
        );
        assert_eq!(
            at(Some("%d-%m-%Y"), "UTC", "04-03-2026").unwrap(),
            "2026-03-04T00:00:00Z"
        );
        assert!(at(Some("%Y-%m-%d"), "UTC", "2026-03-04 10:00").is_err());
    }

    #[test]
    fn rfc3339_is_the_default() {
        assert_eq!(
            at(None, "Asia/Kolkata", "2026-03-04T15:52:00+05:30").unwrap(),
            "2026-03-04T10:22:00Z"
        );
        assert!(at(None, "UTC", "04/03/2026").is_err());
        assert!(at(None, "UTC", "").is_err());
    }

    #[test]
    fn offsets_and_epochs_ignore_the_zone() {
        let f = Some("%Y-%m-%d %H:%M %z");
        assert_eq!(
            at(f, "Asia/Kolkata", "2026-03-04 10:22 +0000").unwrap(),
            "2026-03-04T10:22:00Z"
        );
        assert_eq!(
            at(Some("%s"), "Asia/Kolkata", "1772619720").unwrap(),
            "2026-03-04T10:22:00Z"
        );
    }

    #[test]
    fn precision_is_the_finest_field_of_the_format() {
        assert_eq!(precision(Some("%d/%m/%Y %H:%M")), "to the minute");
        assert_eq!(precision(Some("%Y-%m-%d %H:%M:%S")), "to the second");
        assert_eq!(precision(Some("%s")), "to the second");
        assert_eq!(precision(Some("%Y-%m-%d %H")), "to the hour");
        assert_eq!(precision(Some("%d-%b-%Y")), "to the day (local midnight)");
        assert_eq!(precision(Some("%Y-%m-%dT%H:%M:%S%.f%z")), "up to the sub-second");
        assert_eq!(precision(None), "up to the sub-second");
    }

    #[test]
    fn clock_changes() {
        let f = Some("%Y-%m-%d %H:%M");
        // 2026-03-08 02:30 does not exist in New York; 01:30 on 2026-11-01 happens twice.
        assert!(at(f, "America/New_York", "2026-03-08 02:30").is_err());
        assert_eq!(
            at(f, "America/New_York", "2026-11-01 01:30").unwrap(),
            "2026-11-01T05:30:00Z"
        );
    }
}
