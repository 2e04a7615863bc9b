//! The synthetic bank of `persona demo`: deterministic source files in five dialects.
//!
//! Each file imitates a different system of record (CRM master, core banking, data
//! warehouse, card network, credit bureau) with its own column names, date formats and
//! codes, which is the "data dialect" problem the Source specs in `specs/sources.yaml`
//! solve. Every customer draws from her own ChaCha8 generator, keyed by the seed and
//! her index and split into streams by date, so a file depends only on the
//! configuration, never on iteration order or on other customers. The first customers
//! are personas whose data is built to tell a story (see [`Persona`]).

mod activity;
mod catalog;
mod people;
mod render;
#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{Datelike, Days, NaiveDate, Offset, TimeZone, Weekday};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use activity::{Day, Swipe, Txn};
use people::{IdSpace, Profile};
use render::{BadTxn, DayText, Stamp};

/// The size and calendar of the bank to generate.
#[derive(Debug, Clone)]
pub(crate) struct BankConfig {
    pub customers: u32,
    pub days: u32,
    pub seed: u64,
    /// The last calendar day, inclusive.
    pub end: NaiveDate,
}

/// What `generate` wrote.
#[derive(Debug, Clone)]
pub(crate) struct GeneratedBank {
    /// The source files, relative to the output directory, in writing order.
    pub files: Vec<PathBuf>,
    /// Records written across all files (CSV rows without headers, JSON lines),
    /// the deliberately malformed ones included.
    pub records: u64,
    pub personas: Vec<Persona>,
}

/// A customer whose data is built to tell a story in the demo.
#[derive(Debug, Clone)]
pub(crate) struct Persona {
    pub name: String,
    pub customer_key: String,
    /// One sentence: who she is and what her data shows.
    pub story: String,
    /// The demo offer her data is built to trigger, if any.
    pub expected_offer: Option<String>,
}

/// The bank's time zone: every local time in the files is in it.
const BANK_TZ: chrono_tz::Tz = chrono_tz::Asia::Kolkata;
/// Above this the identifier permutations would no longer be unique in every field.
const MAX_CUSTOMERS: u32 = 10_000_000;
/// Roughly one deliberately malformed record in this many, per feed.
const FAULT_EVERY: u64 = 50_000;

// Generator streams of one customer: disjoint ranges, so a profile draw never shifts
// a day's draws and a day's draws never shift another day's.
const STREAM_PROFILE: u64 = 0;
const STREAM_DAY: u64 = 1 << 40;
const STREAM_BALANCE: u64 = 2 << 40;
const STREAM_MONTH: u64 = 3 << 40;

fn customer_rng(seed: u64, idx: u32, stream: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..12].copy_from_slice(&idx.to_le_bytes());
    key[12..24].copy_from_slice(b"persona-bank");
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(stream);
    rng
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned())
}

/// Writes the bank's source files into `dir` (created if missing). `progress` is
/// called now and then with records written so far.
pub(crate) fn generate(cfg: &BankConfig, dir: &Path, progress: &mut dyn FnMut(u64)) -> io::Result<GeneratedBank> {
    if cfg.days == 0 {
        return Err(invalid("the bank's calendar needs at least one day"));
    }
    if cfg.customers > MAX_CUSTOMERS {
        return Err(invalid("the synthetic bank holds at most 10,000,000 customers"));
    }
    let first = cfg
        .end
        .checked_sub_days(Days::new(u64::from(cfg.days - 1)))
        .ok_or_else(|| invalid("the calendar starts before the earliest date"))?;
    fs::create_dir_all(dir)?;

    let ids = IdSpace::new(cfg.seed, cfg.customers);
    let profiles: Vec<Profile> = (0..cfg.customers)
        .map(|idx| {
            people::profile(
                idx,
                (first, cfg.end),
                &ids,
                &mut customer_rng(cfg.seed, idx, STREAM_PROFILE),
            )
        })
        .collect();
    let stamps: Vec<Stamp> = profiles.iter().map(Stamp::new).collect();
    let mut out = Outputs::open(dir)?;

    let kyc_day = first.format("%Y-%m-%d").to_string();
    for p in &profiles {
        render::customer(&mut out.customers, p, &kyc_day)?;
    }
    out.records += u64::from(cfg.customers);
    progress(out.records);

    let mut txns: Vec<Txn> = Vec::new();
    let mut swipes: Vec<Swipe> = Vec::new();
    let mut faults = Faults::new(cfg.days / 3);
    for n in 0..cfg.days {
        let date = first + Days::new(u64::from(n));
        let day = Day::new(date);
        let offset = BANK_TZ.offset_from_utc_date(&date).fix().local_minus_utc();
        let text = DayText::new(date, offset);
        if n == 0 || date.day() == 1 {
            out.start_month(dir, date)?;
            let month_last = date.with_day(day.month_len).expect("month length is a valid day");
            bureau_month(cfg, &profiles, &mut out, date, month_last.min(cfg.end))?;
        }

        txns.clear();
        swipes.clear();
        for p in &profiles {
            let mut rng = customer_rng(cfg.seed, p.idx, STREAM_DAY + day.number as u64);
            activity::day(p, &day, &mut rng, &mut txns, &mut swipes);
        }
        // Systems of record write in time order; ties keep a stable, seed-only order.
        txns.sort_unstable_by_key(|t| (t.minute, t.cust, t.seq));
        swipes.sort_unstable_by_key(|s| (s.second, s.cust, s.seq));
        out.write_day(&stamps, &txns, &swipes, &text, n, &mut faults)?;

        if date.weekday() == Weekday::Sun || date == cfg.end {
            for p in &profiles {
                let mut rng = customer_rng(cfg.seed, p.idx, STREAM_BALANCE + day.number as u64);
                render::balance(&mut out.balances, p, &text, activity::balance(p, &mut rng))?;
            }
            out.records += u64::from(cfg.customers);
        }
        progress(out.records);
    }

    let records = out.records;
    let files = out.finish()?;
    let personas = profiles.iter().take_while(|p| p.is_persona()).map(persona).collect();
    Ok(GeneratedBank {
        files,
        records,
        personas,
    })
}

/// One bureau report per customer for the month of `from`, dated on a day 2-6 of the
/// month but never outside the calendar (`from..=to`), so every month touched has one.
fn bureau_month(
    cfg: &BankConfig,
    profiles: &[Profile],
    out: &mut Outputs,
    from: NaiveDate,
    to: NaiveDate,
) -> io::Result<()> {
    let month = u64::from(from.year().unsigned_abs()) * 12 + u64::from(from.month0());
    let mut reports: Vec<(u32, u32, u32)> = profiles
        .iter()
        .map(|p| {
            let mut rng = customer_rng(cfg.seed, p.idx, STREAM_MONTH + month);
            let day = rng.gen_range(2..=6).clamp(from.day(), to.day());
            (day, p.idx, activity::score(p, &mut rng))
        })
        .collect();
    reports.sort_unstable();
    let mut dates: [Option<String>; 32] = std::array::from_fn(|_| None);
    for (day, idx, score) in reports {
        let date = dates[day as usize].get_or_insert_with(|| {
            let d = from.with_day(day).expect("day lies in the month");
            d.format("%d-%b-%Y").to_string()
        });
        out.reports += 1;
        let p = &profiles[idx as usize];
        render::bureau(&mut out.bureau, out.reports, p, date, score, activity::grade(score))?;
    }
    out.records += profiles.len() as u64;
    Ok(())
}

/// Decides which records are written malformed: never a persona's, about one in
/// `FAULT_EVERY` per feed, and in any case the first eligible transactions (one bad
/// date, one bad amount) and swipe from a third of the way into the calendar, so
/// even a tiny bank shows the dead-letter path.
#[derive(Debug)]
struct Faults {
    from_day: u32,
    txns_seen: u64,
    forced_txns: u8,
    swipes_seen: u64,
    forced_swipe: bool,
}

impl Faults {
    fn new(from_day: u32) -> Self {
        Faults {
            from_day,
            txns_seen: 0,
            forced_txns: 0,
            swipes_seen: 0,
            forced_swipe: false,
        }
    }

    fn txn(&mut self, day: u32, persona: bool) -> Option<BadTxn> {
        if persona {
            return None;
        }
        let n = self.txns_seen;
        self.txns_seen += 1;
        if day >= self.from_day && self.forced_txns < 2 {
            self.forced_txns += 1;
            return Some(if self.forced_txns == 1 {
                BadTxn::Date
            } else {
                BadTxn::Amount
            });
        }
        (n % FAULT_EVERY == FAULT_EVERY - 1).then_some(if (n / FAULT_EVERY).is_multiple_of(2) {
            BadTxn::Date
        } else {
            BadTxn::Amount
        })
    }

    fn swipe(&mut self, day: u32, persona: bool) -> bool {
        if persona {
            return false;
        }
        let n = self.swipes_seen;
        self.swipes_seen += 1;
        if day >= self.from_day && !self.forced_swipe {
            self.forced_swipe = true;
            return true;
        }
        n % FAULT_EVERY == FAULT_EVERY - 1
    }
}

const CUSTOMERS_FILE: &str = "customers.csv";
const BALANCES_FILE: &str = "balances.csv";
const SWIPES_FILE: &str = "card_swipes.jsonl";
const BUREAU_FILE: &str = "bureau_scores.csv";

/// The open files and the running counters that number their records.
#[derive(Debug)]
struct Outputs {
    customers: BufWriter<File>,
    balances: BufWriter<File>,
    swipes: BufWriter<File>,
    bureau: BufWriter<File>,
    txns: Option<BufWriter<File>>,
    txn_files: Vec<PathBuf>,
    records: u64,
    txn_refs: u64,
    swipe_ids: u64,
    reports: u64,
    buf: Vec<u8>,
}

fn create(dir: &Path, name: &str, header: &str) -> io::Result<BufWriter<File>> {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(dir.join(name))?);
    if !header.is_empty() {
        writeln!(w, "{header}")?;
    }
    Ok(w)
}

impl Outputs {
    fn open(dir: &Path) -> io::Result<Self> {
        Ok(Outputs {
            customers: create(dir, CUSTOMERS_FILE, render::CUSTOMERS_HEADER)?,
            balances: create(dir, BALANCES_FILE, render::BALANCES_HEADER)?,
            swipes: create(dir, SWIPES_FILE, "")?,
            bureau: create(dir, BUREAU_FILE, render::BUREAU_HEADER)?,
            txns: None,
            txn_files: Vec::new(),
            records: 0,
            txn_refs: 0,
            swipe_ids: 0,
            reports: 0,
            buf: Vec::new(),
        })
    }

    /// Core banking drops one file per calendar month.
    fn start_month(&mut self, dir: &Path, date: NaiveDate) -> io::Result<()> {
        if let Some(mut w) = self.txns.take() {
            w.flush()?;
        }
        let name = format!("core_txn_{:04}{:02}.csv", date.year(), date.month());
        self.txns = Some(create(dir, &name, render::TXN_HEADER)?);
        self.txn_files.push(PathBuf::from(name));
        Ok(())
    }

    fn write_day(
        &mut self,
        stamps: &[Stamp],
        txns: &[Txn],
        swipes: &[Swipe],
        text: &DayText,
        day: u32,
        faults: &mut Faults,
    ) -> io::Result<()> {
        // A day's rows go out in one write: formatting into a byte buffer by hand is
        // several times faster than `write!` through a writer.
        self.buf.clear();
        for t in txns {
            let p = &stamps[t.cust as usize];
            self.txn_refs += 1;
            render::txn(&mut self.buf, t, p, text, self.txn_refs, faults.txn(day, p.persona));
        }
        self.txns
            .as_mut()
            .expect("a month is open before its first day")
            .write_all(&self.buf)?;
        self.buf.clear();
        for s in swipes {
            let p = &stamps[s.cust as usize];
            self.swipe_ids += 1;
            if faults.swipe(day, p.persona) {
                render::truncated_swipe(&mut self.buf, self.swipe_ids, s, p, text);
            } else {
                render::swipe(&mut self.buf, self.swipe_ids, s, p, text);
            }
        }
        self.swipes.write_all(&self.buf)?;
        self.records += (txns.len() + swipes.len()) as u64;
        Ok(())
    }

    fn finish(mut self) -> io::Result<Vec<PathBuf>> {
        for w in [
            &mut self.customers,
            &mut self.balances,
            &mut self.swipes,
            &mut self.bureau,
        ] {
            w.flush()?;
        }
        if let Some(w) = self.txns.as_mut() {
            w.flush()?;
        }
        let mut files = vec![PathBuf::from(CUSTOMERS_FILE)];
        files.append(&mut self.txn_files);
        files.extend([BALANCES_FILE, SWIPES_FILE, BUREAU_FILE].map(PathBuf::from));
        Ok(files)
    }
}

fn ordinal(day: u32) -> String {
    let suffix = match (day % 10, day % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{day}{suffix}")
}

fn persona(p: &Profile) -> Persona {
    let salary_day = p.habits.salary.as_ref().map_or(0, |s| s.day);
    let (story, offer) = match p.idx {
        0 => (
            format!(
                "Saanvi Sarkar, 31, an affluent professional in Mumbai: a salary of about ₹90,000 lands on the {} of every month, she fills up with fuel every six days and her balance never drops below ₹3.5 lakh, so she looks ready for a car loan.",
                ordinal(salary_day)
            ),
            Some("car-loan"),
        ),
        1 => (
            "Arjun Mehta, 27, a young Bengaluru earner paid on the 25th, swipes his card at Phoenix Marketcity for dinner and clothes three or more times a week, so a mall discount will reach him where he already is.".to_owned(),
            Some("mall-discount"),
        ),
        2 => (
            "Meera Iyer, 58, a premium customer in Chennai, keeps ₹15-25 lakh idle in savings that earn monthly interest while she spends little, so a fixed deposit would serve her better.".to_owned(),
            Some("fixed-deposit"),
        ),
        _ => (
            format!(
                "Rohan Das, 22, in Kolkata, is paid about ₹20,000 on the {}, keeps under ₹40,000 in the bank, has no car and a grade D credit record, so no loan is offered to him.",
                ordinal(salary_day)
            ),
            None,
        ),
    };
    Persona {
        name: p.full_name.clone(),
        customer_key: p.cust_id.clone(),
        story,
        expected_offer: offer.map(str::to_owned),
    }
}
