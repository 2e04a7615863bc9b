//! Windows and their tiles. A tiled window of N days, evaluated at instant t, covers
//! the events whose calendar day (in the FeatureSet's time zone) is one of the N days
//! ending with t's day; `Nh` likewise with clock hours. Tiles are numbered so that
//! consecutive days (hours) are consecutive integers.

use chrono::{DateTime, Datelike, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// Tile number of a lifetime window: everything falls in one tile.
pub(crate) const LIFETIME_TILE: i64 = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    Lifetime,
    Days(u32),
    Hours(u32),
}

impl Window {
    /// Parses `90d` or `12h`; lifetime when absent.
    pub fn parse(s: Option<&str>) -> Result<Window, String> {
        let Some(s) = s.map(str::trim) else {
            return Ok(Window::Lifetime);
        };
        let bad = || format!("invalid window `{s}`: expected a positive number of days or hours, e.g. 30d or 12h");
        let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
        let n: u32 = digits.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        match unit {
            "d" => Ok(Window::Days(n)),
            "h" => Ok(Window::Hours(n)),
            _ => Err(bad()),
        }
    }

    /// Whether both windows count the same kind of tiles (lifetime, days or hours).
    pub(crate) fn same_unit(&self, other: &Window) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    /// Number of tiles, `None` for lifetime.
    pub fn tiles(&self) -> Option<i64> {
        match *self {
            Window::Lifetime => None,
            Window::Days(n) | Window::Hours(n) => Some(i64::from(n)),
        }
    }

    /// The tile an instant falls in.
    pub fn tile(&self, ts: DateTime<Utc>, tz: Tz) -> i64 {
        self.tile_of(&Tiles::of(ts, tz))
    }

    /// The tile of an instant whose tiles are already computed.
    pub fn tile_of(&self, tiles: &Tiles) -> i64 {
        match self {
            Window::Lifetime => LIFETIME_TILE,
            Window::Days(_) => tiles.day,
            Window::Hours(_) => tiles.hour,
        }
    }

    /// Whether a tile is inside the window that ends with tile `end`.
    pub fn covers(&self, tile: i64, end: i64) -> bool {
        match self.tiles() {
            None => true,
            Some(n) => tile <= end && tile > end - n,
        }
    }
}

/// Days from 0001-01-01 (day 1) to 1970-01-01.
const UNIX_EPOCH_DAY: i64 = 719_163;

/// The calendar day, clock hour and calendar month of an instant in a time zone,
/// computed with one time-zone lookup: every windowed feature an event touches needs
/// them, so an event computes them once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiles {
    /// Days since 0001-01-01, as `NaiveDate::num_days_from_ce`.
    pub day: i64,
    /// Local clock hours since the epoch.
    pub hour: i64,
    /// year * 12 + month - 1.
    pub month: i64,
}

impl Tiles {
    pub fn of(ts: DateTime<Utc>, tz: Tz) -> Tiles {
        let offset = i64::from(tz.offset_from_utc_datetime(&ts.naive_utc()).fix().local_minus_utc());
        let local = ts.timestamp() + offset;
        let day = local.div_euclid(86_400) + UNIX_EPOCH_DAY;
        let month = chrono::NaiveDate::from_num_days_from_ce_opt(day as i32)
            .map_or(0, |d| i64::from(d.year()) * 12 + i64::from(d.month0()));
        Tiles {
            day,
            hour: local.div_euclid(3_600),
            month,
        }
    }
}

/// Calendar day number in `tz` (days since 0001-01-01).
pub fn local_day(ts: DateTime<Utc>, tz: Tz) -> i64 {
    i64::from(ts.with_timezone(&tz).date_naive().num_days_from_ce())
}

/// Calendar month number in `tz` (year * 12 + month - 1).
pub fn local_month(ts: DateTime<Utc>, tz: Tz) -> i64 {
    let d = ts.with_timezone(&tz).date_naive();
    i64::from(d.year()) * 12 + i64::from(d.month0())
}

#[cfg(test)]
mod tests {
    use super::*;
    use persona_event::time::parse_ts;

    #[test]
    fn windows_parse() {
        assert_eq!(Window::parse(Some("90d")), Ok(Window::Days(90)));
        assert_eq!(Window::parse(Some("12h")), Ok(Window::Hours(12)));
        assert_eq!(Window::parse(None), Ok(Window::Lifetime));
        for bad in ["0d", "d", "3w", "-1d", "1.5d"] {
            assert!(Window::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn days_are_calendar_days_in_the_time_zone() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        let w = Window::Days(2);
        // 19:00Z is already the next day in Kolkata (+05:30).
        let a = w.tile(parse_ts("2026-03-01T17:00:00Z").unwrap(), tz);
        let b = w.tile(parse_ts("2026-03-01T19:00:00Z").unwrap(), tz);
        assert_eq!(b, a + 1);
        assert!(w.covers(a, b) && w.covers(b, b) && !w.covers(a - 1, b));
    }

    #[test]
    fn tiles_agree_with_the_calendar() {
        for tz in ["UTC", "Asia/Kolkata", "America/New_York", "Pacific/Chatham"] {
            let tz: Tz = tz.parse().unwrap();
            for ts in [
                "2026-03-08T06:59:00Z",
                "2026-03-08T07:00:00Z",
                "2026-12-31T23:59:59Z",
                "1969-12-31T23:00:00Z",
            ] {
                let ts = parse_ts(ts).unwrap();
                let t = Tiles::of(ts, tz);
                assert_eq!(t.day, local_day(ts, tz));
                assert_eq!(t.month, local_month(ts, tz));
            }
        }
    }

    #[test]
    fn hours_are_clock_hours_in_the_time_zone() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        let w = Window::Hours(1);
        // 10:29Z is 15:59 in Kolkata, 10:31Z is 16:01: different clock hours although
        // the same UTC hour.
        let a = w.tile(parse_ts("2026-03-01T10:29:00Z").unwrap(), tz);
        let b = w.tile(parse_ts("2026-03-01T10:31:00Z").unwrap(), tz);
        assert_eq!(b, a + 1);
    }
}
