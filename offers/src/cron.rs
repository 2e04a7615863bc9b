//! Cron schedules of scheduled offers (`trigger: {schedule: "0 9 * * MON"}`): the five
//! classic fields (minute, hour, day of month, month, day of week) with `*`, lists,
//! ranges, steps and names (`JAN`, `MON`; 0 and 7 are Sunday), evaluated on the wall
//! clock of a time zone. As in Vixie cron, when both day fields are restricted a day
//! matching either counts. A wall time that a daylight-saving jump skips does not
//! happen that day; one that repeats happens once, at its first occurrence.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    source: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    any_day: bool,
    any_weekday: bool,
}

const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Cron {
    /// Parses `minute hour day-of-month month day-of-week`.
    pub fn parse(source: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = source.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "invalid schedule `{source}`: expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                parts.len()
            ));
        }
        let mut sets = [0u64; 5];
        for (i, (part, &(name, lo, hi))) in parts.iter().zip(&FIELDS).enumerate() {
            sets[i] =
                field(part, i, lo, hi).map_err(|m| format!("invalid schedule `{source}`: {name} `{part}`: {m}"))?;
        }
        // 7 is Sunday too.
        if sets[4] & (1 << 7) != 0 {
            sets[4] = (sets[4] | 1) & !(1 << 7);
        }
        Ok(Cron {
            source: source.to_owned(),
            minutes: sets[0],
            hours: sets[1],
            days: sets[2],
            months: sets[3],
            weekdays: sets[4],
            any_day: parts[2].starts_with('*'),
            any_weekday: parts[4].starts_with('*'),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    fn day_matches(&self, day: NaiveDate) -> bool {
        if self.months & (1 << day.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << day.day()) != 0;
        let dow = self.weekdays & (1 << day.weekday().num_days_from_sunday()) != 0;
        match (self.any_day, self.any_weekday) {
            (false, false) => dom || dow,
            _ => dom && dow,
        }
    }

    /// The first time of the schedule strictly after `after`, within five years.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let start = after.with_timezone(&tz).date_naive();
        for offset in 0..(5 * 366) {
            let day = start + Duration::days(offset);
            if !self.day_matches(day) {
                continue;
            }
            for hour in (0..24).filter(|h| self.hours & (1 << h) != 0) {
                for minute in (0..60).filter(|m| self.minutes & (1 << m) != 0) {
                    let time = NaiveTime::from_hms_opt(hour, minute, 0).expect("valid wall time");
                    // A skipped wall time does not happen; a repeated one happens once.
                    let Some(at) = tz.from_local_datetime(&day.and_time(time)).earliest() else {
                        continue;
                    };
                    let at = at.with_timezone(&Utc);
                    if at > after {
                        return Some(at);
                    }
                }
            }
        }
        None
    }

    /// The times of the schedule in `(after, until]`, oldest first.
    pub fn between(&self, after: DateTime<Utc>, until: DateTime<Utc>, tz: Tz) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = after;
        while let Some(next) = self.next_after(t, tz).filter(|n| *n <= until) {
            out.push(next);
            t = next;
        }
        out
    }
}

/// One field as a bit set.
fn field(part: &str, index: usize, lo: u32, hi: u32) -> Result<u64, String> {
    let mut set = 0u64;
    for item in part.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("step `{s}` is not a number"))?;
                if step == 0 {
                    return Err("a step of 0 never advances".into());
                }
                (r, step)
            }
            None => (item, 1),
        };
        let (from, to) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, index, lo, hi)?, value(b, index, lo, hi)?)
        } else {
            let v = value(range, index, lo, hi)?;
            // `5/15` means from 5 to the end, every 15.
            (v, if step > 1 { hi } else { v })
        };
        if from > to {
            return Err(format!("range {from}-{to} runs backwards"));
        }
        let mut v = from;
        while v <= to {
            set |= 1 << v;
            v += step;
        }
    }
    Ok(set)
}

fn value(text: &str, index: usize, lo: u32, hi: u32) -> Result<u32, String> {
    let names: &[&str] = match index {
        3 => &MONTHS,
        4 => &WEEKDAYS,
        _ => &[],
    };
    let upper = text.to_ascii_uppercase();
    if let Some(i) = names.iter().position(|n| *n == upper) {
        return Ok(if index == 3 { i as u32 + 1 } else { i as u32 });
    }
    let v: u32 = text.parse().map_err(|_| match index {
        3 => format!("`{text}` is not a number or a month name (JAN..DEC)"),
        4 => format!("`{text}` is not a number or a day name (SUN..SAT)"),
        _ => format!("`{text}` is not a number"),
    })?;
    if v < lo || v > hi {
        return Err(format!("{v} is out of range {lo}-{hi}"));
    }
    Ok(v)
}

/// The wall-clock minute of an instant, for messages.
pub fn wall(at: DateTime<Utc>, tz: Tz) -> String {
    let local = at.with_timezone(&tz);
    format!(
        "{} {:02}:{:02} {}",
        local.date_naive(),
        local.hour(),
        local.minute(),
        tz.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use persona_event::time::parse_ts;

    #[test]
    fn mondays_at_nine_in_kolkata() {
        let c = Cron::parse("0 9 * * MON").unwrap();
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        // Monday 2026-11-02 09:00 IST is 03:30Z.
        let from = parse_ts("2026-11-01T00:00:00Z").unwrap();
        let until = parse_ts("2026-11-17T00:00:00Z").unwrap();
        let got: Vec<String> = c
            .between(from, until, tz)
            .iter()
            .map(persona_event::time::format_ts)
            .collect();
        assert_eq!(
            got,
            ["2026-11-02T03:30:00Z", "2026-11-09T03:30:00Z", "2026-11-16T03:30:00Z"]
        );
        assert_eq!(
            wall(parse_ts("2026-11-02T03:30:00Z").unwrap(), tz),
            "2026-11-02 09:00 Asia/Kolkata"
        );
    }

    #[test]
    fn lists_ranges_steps_and_either_day_field() {
        let c = Cron::parse("*/30 8-9 1,15 * 7").unwrap();
        let from = parse_ts("2026-11-14T23:59:00Z").unwrap();
        let until = parse_ts("2026-11-16T00:00:00Z").unwrap();
        // The 15th (a Sunday, and day 15): 08:00, 08:30, 09:00, 09:30.
        assert_eq!(c.between(from, until, Tz::UTC).len(), 4);
        // Day 1 or any Sunday: Sunday 2026-11-22 counts although it is not the 1st.
        let next = c
            .next_after(parse_ts("2026-11-16T00:00:00Z").unwrap(), Tz::UTC)
            .unwrap();
        assert_eq!(next, parse_ts("2026-11-22T08:00:00Z").unwrap());
    }

    #[test]
    fn a_skipped_wall_time_does_not_happen() {
        // 02:30 does not exist in New York on 2026-03-08.
        let c = Cron::parse("30 2 * * *").unwrap();
        let tz: Tz = "America/New_York".parse().unwrap();
        let next = c.next_after(parse_ts("2026-03-08T00:00:00Z").unwrap(), tz).unwrap();
        assert_eq!(next, parse_ts("2026-03-09T06:30:00Z").unwrap());
    }

    #[test]
    fn bad_schedules_say_which_field() {
        for (bad, says) in [
            ("0 9 * *", "expected 5 fields"),
            ("60 9 * * *", "minute `60`: 60 is out of range 0-59"),
            ("0 9 32 * *", "day of month `32`"),
            ("0 9 * FOO *", "not a number or a month name"),
            ("0 9 * * MOON", "not a number or a day name"),
            ("*/0 9 * * *", "a step of 0"),
            ("0 17-9 * * *", "runs backwards"),
        ] {
            let e = Cron::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(Cron::parse("0 0 * * 7").is_ok());
    }
}
