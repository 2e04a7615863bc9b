//! What a customer does on one day: transactions and card swipes, and the balance and
//! bureau draws that go with her profile.
//!
//! Records are small `Copy` structs pointing into the static catalog; text is only
//! produced when a record is written, so a day of a large bank costs no allocation.

use chrono::{Datelike, NaiveDate};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::catalog::{CITIES, EVERYDAY, MALLS, Mall, Mcc, Merchant, STREET, payees};
use super::people::{Balance, Fuel, MallHabit, Profile, normal};

/// A calendar day as the generator needs it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Day {
    pub date: NaiveDate,
    /// Days since the common era: the phase of fixed schedules, independent of the
    /// calendar's start, so a persona's rhythm does not depend on `--days`.
    pub number: i32,
    pub month_len: u32,
}

impl Day {
    pub(super) fn new(date: NaiveDate) -> Self {
        let next = date
            .with_day(1)
            .and_then(|d| d.checked_add_months(chrono::Months::new(1)));
        let first = date.with_day(1).expect("day 1 exists");
        let month_len = next.map_or(31, |n| (n - first).num_days() as u32);
        Day {
            date,
            number: date.num_days_from_ce(),
            month_len,
        }
    }

    pub(super) fn is_month_end(&self) -> bool {
        self.date.day() == self.month_len
    }
}

/// What a core-banking narration says, rendered at write time.
#[derive(Debug, Clone, Copy)]
pub(super) enum Narration {
    Pos(&'static str),
    Upi(&'static str),
    /// A transfer to the customer's own account elsewhere: carries her own name.
    SelfTransfer(&'static str),
    Atm,
    Bill(&'static str),
    Salary(&'static str),
    Interest,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Txn {
    pub minute: u16,
    pub cust: u32,
    pub seq: u16,
    pub paise: u64,
    pub mcc: Mcc,
    pub narration: Narration,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Swipe {
    pub second: u32,
    pub cust: u32,
    pub seq: u16,
    pub merchant: &'static Merchant,
    pub mall: Option<&'static Mall>,
    pub city: usize,
    pub paise: u64,
}

/// Appends customer `p`'s records for day `d`.
pub(super) fn day(p: &Profile, d: &Day, rng: &mut ChaCha8Rng, txns: &mut Vec<Txn>, swipes: &mut Vec<Swipe>) {
    let h = &p.habits;
    let mut seq = 0u16;
    let mut txn = |minute: u32, paise: u64, mcc: Mcc, narration: Narration| {
        txns.push(Txn {
            minute: minute as u16,
            cust: p.idx,
            seq,
            paise,
            mcc,
            narration,
        });
        seq += 1;
    };
    if let Some(s) = &h.salary
        && d.date.day() == s.day.min(d.month_len)
    {
        let rupees = rng.gen_range(s.rupees.0..=s.rupees.1);
        let employer = payees(Mcc::Salary)[s.employer];
        txn(
            rng.gen_range(6 * 60..12 * 60),
            u64::from(rupees) * 100,
            Mcc::Salary,
            Narration::Salary(employer),
        );
    }
    if d.is_month_end() {
        // Savings interest at 3% a year, credited monthly.
        let paise = (h.balance.typical() * 0.03 / 12.0 * rng.gen_range(0.95..1.05) * 100.0) as u64;
        if paise >= 100 {
            txn(
                rng.gen_range(22 * 60..24 * 60),
                paise,
                Mcc::Interest,
                Narration::Interest,
            );
        }
    }
    let fuel = match h.fuel {
        Fuel::Never => false,
        Fuel::Rate { per_30d } => rng.gen_bool((per_30d / 30.0).min(1.0)),
        Fuel::Every { period, phase } => (d.number + phase).rem_euclid(period) == 0,
    };
    if fuel {
        let (lo, hi) = h.fuel_rupees;
        // Pumps are often filled to a round sum.
        let paise = if rng.gen_bool(0.5) {
            u64::from(rng.gen_range(lo.div_ceil(100)..=hi / 100)) * 10_000
        } else {
            rng.gen_range(u64::from(lo) * 100..=u64::from(hi) * 100)
        };
        let station = pick(rng, payees(Mcc::Fuel));
        txn(
            rng.gen_range(7 * 60..22 * 60),
            paise,
            Mcc::Fuel,
            Narration::Pos(station),
        );
    }
    for _ in 0..count(rng, h.debits_per_day) {
        let mcc = EVERYDAY[weighted(rng, h.weights)];
        let (lo, hi) = mcc.rupees();
        let hi = hi.min(h.debit_cap.max(lo));
        let paise = match mcc {
            Mcc::Atm => u64::from(rng.gen_range(lo / 500..=hi / 500)) * 50_000,
            _ => rng.gen_range(u64::from(lo) * 100..=u64::from(hi) * 100),
        };
        let payee = pick(rng, payees(mcc));
        let narration = match mcc {
            Mcc::Atm => Narration::Atm,
            Mcc::Transfer => Narration::SelfTransfer(payee),
            Mcc::Utilities => Narration::Bill(payee),
            _ if rng.gen_bool(0.5) => Narration::Pos(payee),
            _ => Narration::Upi(payee),
        };
        txn(rng.gen_range(7 * 60..23 * 60 + 30), paise, mcc, narration);
    }
    swipes_of_day(p, d, rng, swipes);
}

fn swipes_of_day(p: &Profile, d: &Day, rng: &mut ChaCha8Rng, swipes: &mut Vec<Swipe>) {
    let h = &p.habits;
    let mut seq = 0u16;
    let mut swipe =
        |second: u32, merchant: &'static Merchant, mall: Option<&'static Mall>, city, rng: &mut ChaCha8Rng| {
            let (lo, hi) = merchant.mcc.rupees();
            let paise = rng.gen_range(u64::from(lo) * 100..=u64::from(hi) * 100);
            swipes.push(Swipe {
                second,
                cust: p.idx,
                seq,
                merchant,
                mall,
                city,
                paise,
            });
            seq += 1;
        };
    let visit = match h.mall {
        MallHabit::Never => None,
        MallHabit::Rate { mall, per_week } => rng.gen_bool((per_week / 7.0).min(1.0)).then_some(mall),
        MallHabit::Weekly { mall, phase, extra } => {
            let fixed = matches!((d.number + phase).rem_euclid(7), 0 | 2 | 4);
            (rng.gen_bool(extra) || fixed).then_some(mall)
        }
    };
    if let Some(m) = visit {
        let mall = &MALLS[m];
        let mut second = rng.gen_range(11 * 3600..21 * 3600);
        for _ in 0..rng.gen_range(1..=2) {
            let merchant = pick(rng, mall.merchants);
            swipe(second, merchant, Some(mall), mall.city, rng);
            second += rng.gen_range(20 * 60..90 * 60);
        }
    }
    for _ in 0..count(rng, h.swipes_per_day) {
        let second = rng.gen_range(9 * 3600..23 * 3600);
        let malls = CITIES[p.city].malls;
        if !malls.is_empty() && rng.gen_bool(h.mall_share) {
            let mall = &MALLS[malls[rng.gen_range(0..malls.len())]];
            let merchant = pick(rng, mall.merchants);
            swipe(second, merchant, Some(mall), mall.city, rng);
        } else {
            let mut i = rng.gen_range(0..STREET.len());
            // Customers without a car never buy fuel, not even by card.
            if matches!(h.fuel, Fuel::Never) && STREET[i].mcc == Mcc::Fuel {
                i = (i + 1) % STREET.len();
            }
            let city = if rng.gen_bool(0.03) {
                rng.gen_range(0..CITIES.len())
            } else {
                p.city
            };
            swipe(second, &STREET[i], None, city, rng);
        }
    }
}

/// An end-of-day balance in paise.
pub(super) fn balance(p: &Profile, rng: &mut ChaCha8Rng) -> u64 {
    let rupees = match p.habits.balance {
        Balance::Around(median) => median * (0.08 * normal(rng)).exp(),
        Balance::Between(lo, hi) => rng.gen_range(lo..hi),
    };
    (rupees * 100.0).round() as u64
}

/// This month's bureau score.
pub(super) fn score(p: &Profile, rng: &mut ChaCha8Rng) -> u32 {
    let (lo, hi) = p.habits.score;
    rng.gen_range(lo..=hi).clamp(300, 900)
}

pub(super) fn grade(score: u32) -> &'static str {
    match score {
        780.. => "A",
        720.. => "B",
        660.. => "C",
        600.. => "D",
        _ => "E",
    }
}

/// A whole number of events averaging `rate`.
fn count(rng: &mut ChaCha8Rng, rate: f64) -> u32 {
    let whole = rate.floor();
    whole as u32 + u32::from(rng.gen_bool(rate - whole))
}

fn weighted(rng: &mut ChaCha8Rng, weights: &[u16; 8]) -> usize {
    let total: u32 = weights.iter().map(|w| u32::from(*w)).sum();
    let mut x = rng.gen_range(0..total);
    for (i, w) in weights.iter().enumerate() {
        let w = u32::from(*w);
        if x < w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

fn pick<T>(rng: &mut ChaCha8Rng, items: &'static [T]) -> &'static T {
    &items[rng.gen_range(0..items.len())]
}
