//! Who each customer is: identity, contact data and habits, drawn once per customer.
//!
//! The first four customers are the demo's personas, whose habits are fixed so that
//! their story shows for any seed; everyone else is drawn from a few archetypes so
//! that a few percent of the crowd look like each persona too.

mod ids;

use chrono::{Datelike, Days, NaiveDate};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::catalog::{
    BENGALURU, CHENNAI, CITIES, EVERYDAY_WEIGHTS, FIRST_NAMES, KOLKATA, LAST_NAMES, MUMBAI, PHOENIX_BENGALURU,
    SAVER_WEIGHTS,
};

pub(super) use ids::{IdSpace, permute};
#[cfg(test)]
pub(super) use ids::{PAN_SPACE, multiplier};
use ids::{card, email, pan, push_token};

/// How many leading customers are personas.
pub(super) const PERSONAS: u32 = 4;

/// Everyday weights for a young earner: no bills or gadgets of his own yet.
const YOUNG_WEIGHTS: [u16; 8] = [30, 10, 25, 15, 12, 8, 0, 0];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Segment {
    Mass,
    Affluent,
    Premium,
}

impl Segment {
    pub(super) fn code(self) -> &'static str {
        match self {
            Segment::Mass => "MS",
            Segment::Affluent => "AF",
            Segment::Premium => "PR",
        }
    }
}

/// A monthly salary: paid on `day` (or the month's last day when shorter).
#[derive(Debug)]
pub(super) struct Salary {
    pub day: u32,
    pub rupees: (u32, u32),
    pub employer: usize,
}

/// How often a customer buys fuel.
#[derive(Debug)]
pub(super) enum Fuel {
    Never,
    /// A chance each day, averaging `per_30d` fill-ups a month.
    Rate {
        per_30d: f64,
    },
    /// Exactly every `period` days: any 30-day window then holds 30 / period fill-ups.
    Every {
        period: i32,
        phase: i32,
    },
}

/// How often a customer goes to a mall on purpose (beyond chance swipes).
#[derive(Debug)]
pub(super) enum MallHabit {
    Never,
    Rate {
        mall: usize,
        per_week: f64,
    },
    /// Three fixed weekdays (residues 0, 2, 4 of the day number mod 7) plus the odd
    /// extra visit: any 7-day window then holds at least three visits.
    Weekly {
        mall: usize,
        phase: i32,
        extra: f64,
    },
}

/// Where end-of-day balances sit, in rupees.
#[derive(Debug)]
pub(super) enum Balance {
    /// Around a median, each snapshot off by a few percent.
    Around(f64),
    /// Uniform within bounds: used for personas whose story needs a hard floor.
    Between(f64, f64),
}

impl Balance {
    pub(super) fn typical(&self) -> f64 {
        match *self {
            Balance::Around(m) => m,
            Balance::Between(lo, hi) => (lo + hi) / 2.0,
        }
    }
}

#[derive(Debug)]
pub(super) struct Habits {
    pub salary: Option<Salary>,
    pub debits_per_day: f64,
    /// Rupees: no everyday debit above it, so a saver's month stays frugal.
    pub debit_cap: u32,
    pub weights: &'static [u16; 8],
    pub fuel: Fuel,
    pub fuel_rupees: (u32, u32),
    pub swipes_per_day: f64,
    /// Share of chance swipes that happen in a mall of the home city.
    pub mall_share: f64,
    pub mall: MallHabit,
    pub balance: Balance,
    /// Inclusive bounds of the monthly bureau score.
    pub score: (u32, u32),
}

#[derive(Debug)]
pub(super) struct Profile {
    pub idx: u32,
    pub cust_id: String,
    pub full_name: String,
    /// The name as card networks and narrations print it.
    pub upper_name: String,
    pub gender: char,
    pub dob: NaiveDate,
    pub email: String,
    pub mobile: String,
    pub pan: String,
    pub city: usize,
    pub segment: Segment,
    pub push: String,
    /// Seconds after local midnight of the KYC update on the first calendar day.
    pub kyc_secs: u32,
    pub acct: String,
    pub card: String,
    pub branch: String,
    pub habits: Habits,
}

impl Profile {
    pub(super) fn is_persona(&self) -> bool {
        self.idx < PERSONAS
    }
}

struct Identity {
    first: usize,
    last: usize,
    city: usize,
    segment: Segment,
    age: i32,
    email: bool,
    mobile: bool,
    push: bool,
}

/// Draws customer `idx` from its own generator, so no customer depends on another.
/// `first` and `end` bound the calendar: ages are as of `end`, and a persona's pay
/// day is placed so that her story shows in as many calendar months as it can.
pub(super) fn profile(idx: u32, (first, end): (NaiveDate, NaiveDate), ids: &IdSpace, rng: &mut ChaCha8Rng) -> Profile {
    let (who, habits) = match idx {
        0..PERSONAS => persona(idx, first, rng),
        _ => crowd(rng),
    };
    let first = &FIRST_NAMES[who.first];
    let last = LAST_NAMES[who.last];
    let full_name = format!("{} {}", first.name, last);
    let upper_name = full_name.to_uppercase();
    let email = if who.email {
        email(idx, first.name, last, ids, rng)
    } else {
        String::new()
    };
    let lead = rng.gen_range(6..=9);
    let tail = permute(idx, 1_000_000_000, ids.offsets[1]);
    let mobile = if who.mobile {
        format!("+91{lead}{tail:09}")
    } else {
        String::new()
    };
    let pan = pan(idx, last, ids, rng);
    let push = if who.push { push_token(rng) } else { String::new() };
    let acct = format!("50{:010}", permute(idx, 10_000_000_000, ids.offsets[3]));
    let card = card(idx, ids);
    let branch = format!("{}{:04}", CITIES[who.city].branch, rng.gen_range(1..=60));
    let back = rng.gen_range(0..365);
    let dob = birthday(end, who.age, back);
    Profile {
        idx,
        cust_id: format!("C{:08}", u64::from(idx) + 1),
        full_name,
        upper_name,
        gender: first.gender,
        dob,
        email,
        mobile,
        pan,
        city: who.city,
        segment: who.segment,
        push,
        kyc_secs: rng.gen_range(9 * 3600..18 * 3600),
        acct,
        card,
        branch,
        habits,
    }
}

/// A birth date that makes the customer exactly `age` on `end`.
fn birthday(end: NaiveDate, age: i32, back: u64) -> NaiveDate {
    let year = end.year() - age;
    let anniversary = end
        .with_year(year)
        .or_else(|| NaiveDate::from_ymd_opt(year, end.month(), 28))
        .expect("day 28 exists in every month");
    anniversary - Days::new(back)
}

fn name_index(first: &str) -> usize {
    FIRST_NAMES
        .iter()
        .position(|n| n.name == first)
        .expect("persona first name listed")
}

fn last_index(last: &str) -> usize {
    LAST_NAMES
        .iter()
        .position(|n| *n == last)
        .expect("persona last name listed")
}

/// A pay day in the first week, and never before the calendar's first day when that
/// falls in the first week: then the first month shows an early salary too.
fn early_pay_day(first: NaiveDate, rng: &mut ChaCha8Rng) -> u32 {
    let earliest = if first.day() <= 7 { first.day() } else { 1 };
    rng.gen_range(earliest..=7)
}

fn persona(idx: u32, first: NaiveDate, rng: &mut ChaCha8Rng) -> (Identity, Habits) {
    let id = |first, last, city, segment, age, (email, mobile, push)| Identity {
        first: name_index(first),
        last: last_index(last),
        city,
        segment,
        age,
        email,
        mobile,
        push,
    };
    match idx {
        // Early salary, regular fuel, a comfortable floor: a car buyer in the making.
        0 => (
            id("Saanvi", "Sarkar", MUMBAI, Segment::Affluent, 31, (true, true, true)),
            Habits {
                salary: Some(Salary {
                    day: early_pay_day(first, rng),
                    rupees: (85_000, 95_000),
                    employer: 0,
                }),
                debits_per_day: 1.0,
                debit_cap: u32::MAX,
                weights: &EVERYDAY_WEIGHTS,
                fuel: Fuel::Every {
                    period: 6,
                    phase: rng.gen_range(0..6),
                },
                fuel_rupees: (900, 1600),
                swipes_per_day: 0.3,
                mall_share: 0.0,
                mall: MallHabit::Never,
                balance: Balance::Between(350_000.0, 600_000.0),
                score: (795, 845),
            },
        ),
        // A mall regular: Phoenix Marketcity three or more evenings a week.
        1 => (
            id("Arjun", "Mehta", BENGALURU, Segment::Mass, 27, (true, false, true)),
            Habits {
                salary: Some(Salary {
                    day: 25,
                    rupees: (38_000, 45_000),
                    employer: 1,
                }),
                debits_per_day: 1.2,
                debit_cap: u32::MAX,
                weights: &EVERYDAY_WEIGHTS,
                fuel: Fuel::Never,
                fuel_rupees: (0, 0),
                swipes_per_day: 0.2,
                mall_share: 0.0,
                mall: MallHabit::Weekly {
                    mall: PHOENIX_BENGALURU,
                    phase: rng.gen_range(0..7),
                    extra: 0.15,
                },
                balance: Balance::Around(45_000.0),
                score: (728, 770),
            },
        ),
        // A retired-leaning saver: a large idle balance and interest, little spending.
        2 => (
            id("Meera", "Iyer", CHENNAI, Segment::Premium, 58, (true, true, false)),
            Habits {
                salary: None,
                debits_per_day: 0.2,
                debit_cap: 3_000,
                weights: &SAVER_WEIGHTS,
                fuel: Fuel::Never,
                fuel_rupees: (0, 0),
                swipes_per_day: 0.08,
                mall_share: 0.0,
                mall: MallHabit::Never,
                balance: Balance::Between(1_500_000.0, 2_500_000.0),
                score: (800, 860),
            },
        ),
        // The contrast: young, month-end salary, thin balance, weak credit.
        _ => (
            id("Rohan", "Das", KOLKATA, Segment::Mass, 22, (false, true, false)),
            Habits {
                salary: Some(Salary {
                    day: rng.gen_range(28..=30),
                    rupees: (18_000, 22_000),
                    employer: 2,
                }),
                debits_per_day: 1.0,
                debit_cap: u32::MAX,
                weights: &YOUNG_WEIGHTS,
                fuel: Fuel::Never,
                fuel_rupees: (0, 0),
                swipes_per_day: 0.2,
                mall_share: 0.0,
                mall: MallHabit::Never,
                balance: Balance::Between(5_000.0, 40_000.0),
                score: (605, 650),
            },
        ),
    }
}

/// A standard normal draw (Box-Muller): rand 0.8 alone has no normal distribution.
pub(super) fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = 1.0 - rng.r#gen::<f64>();
    let v: f64 = rng.r#gen();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn score_around(rng: &mut ChaCha8Rng, mean: f64, sd: f64) -> (u32, u32) {
    let base = (mean + sd * normal(rng)).clamp(310.0, 890.0) as u32;
    (base - 8, base + 8)
}

fn crowd(rng: &mut ChaCha8Rng) -> (Identity, Habits) {
    let archetype: f64 = rng.r#gen();
    let mut who = Identity {
        first: rng.gen_range(0..FIRST_NAMES.len()),
        last: rng.gen_range(0..LAST_NAMES.len()),
        city: rng.gen_range(0..CITIES.len()),
        segment: match rng.r#gen::<f64>() {
            x if x < 0.65 => Segment::Mass,
            x if x < 0.92 => Segment::Affluent,
            _ => Segment::Premium,
        },
        age: rng.gen_range(19..=70),
        email: rng.gen_bool(0.85),
        mobile: rng.gen_bool(0.97),
        push: rng.gen_bool(0.70),
    };
    let salary_rupees = match who.segment {
        Segment::Mass => (15_000, 60_000),
        Segment::Affluent => (50_000, 150_000),
        Segment::Premium => (120_000, 400_000),
    };
    let base_salary = rng.gen_range(salary_rupees.0..=salary_rupees.1);
    // Salaries vary a little month to month around the customer's own level.
    let salary_band = (base_salary * 97 / 100, base_salary * 103 / 100);
    let employer = rng.gen_range(0..5);
    let salary_day = if rng.gen_bool(0.4) {
        rng.gen_range(1..=14)
    } else {
        rng.gen_range(15..=31)
    };
    let median = match who.segment {
        Segment::Mass => 35_000.0 * (0.9 * normal(rng)).exp(),
        Segment::Affluent => 300_000.0 * (0.6 * normal(rng)).exp(),
        Segment::Premium => 1_200_000.0 * (0.5 * normal(rng)).exp(),
    };
    let mut habits = Habits {
        salary: rng.gen_bool(0.88).then_some(Salary {
            day: salary_day,
            rupees: salary_band,
            employer,
        }),
        debits_per_day: rng.gen_range(0.5..2.0),
        debit_cap: u32::MAX,
        weights: &EVERYDAY_WEIGHTS,
        fuel: if rng.gen_bool(0.3) {
            Fuel::Rate {
                per_30d: rng.gen_range(1.0..6.0),
            }
        } else {
            Fuel::Never
        },
        fuel_rupees: (500, 2500),
        swipes_per_day: rng.gen_range(0.15..0.45),
        mall_share: 0.3,
        mall: MallHabit::Never,
        balance: Balance::Around(median.max(1_000.0)),
        score: score_around(rng, 715.0, 70.0),
    };
    if archetype < 0.03 {
        // Looks like Saanvi: early salary, frequent fuel, high balance, good credit.
        who.segment = if rng.gen_bool(0.7) {
            Segment::Affluent
        } else {
            Segment::Premium
        };
        who.age = rng.gen_range(26..=45);
        habits.salary = Some(Salary {
            day: rng.gen_range(1..=10),
            rupees: (60_000, rng.gen_range(70_000..=150_000)),
            employer,
        });
        habits.fuel = Fuel::Rate {
            per_30d: rng.gen_range(5.0..8.0),
        };
        habits.fuel_rupees = (800, 2000);
        habits.balance = Balance::Around(rng.gen_range(400_000.0..900_000.0));
        habits.score = score_around(rng, 795.0, 25.0);
    } else if archetype < 0.07 {
        // Looks like Arjun: a mall of the home city several times a week.
        let malls = CITIES[who.city].malls;
        let mall = malls[rng.gen_range(0..malls.len())];
        habits.mall = MallHabit::Rate {
            mall,
            per_week: rng.gen_range(3.0..5.0),
        };
        who.age = rng.gen_range(20..=40);
    } else if archetype < 0.10 {
        // Looks like Meera: a large idle balance and little spending.
        who.segment = if rng.gen_bool(0.7) {
            Segment::Premium
        } else {
            Segment::Affluent
        };
        who.age = rng.gen_range(50..=70);
        if rng.gen_bool(0.7) {
            habits.salary = None;
        }
        habits.debits_per_day = rng.gen_range(0.1..0.4);
        habits.weights = &SAVER_WEIGHTS;
        habits.fuel = Fuel::Never;
        habits.swipes_per_day = rng.gen_range(0.05..0.15);
        habits.mall_share = 0.1;
        habits.balance = Balance::Around(rng.gen_range(1_000_000.0..3_000_000.0));
        habits.score = score_around(rng, 800.0, 30.0);
    }
    (who, habits)
}
