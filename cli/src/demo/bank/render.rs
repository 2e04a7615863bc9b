//! How each system of record prints its rows: the five dialects' exact formats.
//!
//! Rows are written straight into buffered writers; every value comes from a closed
//! list or a number, so none needs CSV quoting or JSON escaping.

use std::io::{self, Write};

use chrono::{Datelike, NaiveDate};

use super::activity::{Narration, Swipe, Txn};
use super::catalog::CITIES;
use super::people::Profile;

pub(super) const CUSTOMERS_HEADER: &str =
    "CUST_ID,FULL_NAME,DOB,GENDER,EMAIL,MOBILE,PAN,CITY,SEGMENT,PUSH_ID,KYC_UPDATED";
pub(super) const TXN_HEADER: &str = "ACCT_NO,TXN_REF,CUST_ID,TXN_DATE,TXN_AMT,DR_CR,MCC,NARRATION,BRANCH";
pub(super) const BALANCES_HEADER: &str = "AS_OF_DATE,CUSTOMER_NO,ACCOUNT_NO,LEDGER_BALANCE,CCY";
pub(super) const BUREAU_HEADER: &str = "REPORT_ID,CUSTOMER_NUMBER,PAN,REPORT_DATE,SCORE,GRADE";

/// A day's dates as each dialect spells them, formatted once per day.
#[derive(Debug)]
pub(super) struct DayText {
    /// `DD/MM/YYYY`, the core system's date.
    pub dmy: String,
    /// `YYYY-MM-DD`.
    pub iso: String,
    /// The bank's UTC offset that day, `+05:30`.
    pub offset: String,
    pub year: i32,
}

impl DayText {
    pub(super) fn new(date: NaiveDate, offset_secs: i32) -> Self {
        let sign = if offset_secs < 0 { '-' } else { '+' };
        let off = offset_secs.unsigned_abs();
        DayText {
            dmy: date.format("%d/%m/%Y").to_string(),
            iso: date.format("%Y-%m-%d").to_string(),
            offset: format!("{sign}{:02}:{:02}", off / 3600, off % 3600 / 60),
            year: date.year(),
        }
    }
}

/// The fields of a customer the two large feeds print, packed inline in one small
/// struct: rows are written in time order across customers, and chasing each
/// profile's heap strings made cache misses the bulk of generation time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stamp {
    cust_id: [u8; 9],
    acct: [u8; 12],
    card: [u8; 16],
    branch: [u8; 7],
    name: [u8; 24],
    name_len: u8,
    pub persona: bool,
}

impl Stamp {
    pub(super) fn new(p: &Profile) -> Self {
        let mut name = [b' '; 24];
        let upper = p.upper_name.as_bytes();
        let name_len = upper.len().min(name.len());
        name[..name_len].copy_from_slice(&upper[..name_len]);
        Stamp {
            cust_id: fixed(&p.cust_id),
            acct: fixed(&p.acct),
            card: fixed(&p.card),
            branch: fixed(&p.branch),
            name,
            name_len: name_len as u8,
            persona: p.is_persona(),
        }
    }

    fn name(&self) -> &[u8] {
        &self.name[..usize::from(self.name_len)]
    }
}

fn fixed<const N: usize>(s: &str) -> [u8; N] {
    s.as_bytes().try_into().expect("identifiers have a fixed width")
}

/// A deliberate fault in a core-banking row, for the dead-letter path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BadTxn {
    /// February 31st at 25:61: no such time.
    Date,
    /// `N/A` where the amount should be.
    Amount,
}

pub(super) fn customer(w: &mut impl Write, p: &Profile, kyc_day: &str) -> io::Result<()> {
    let s = p.kyc_secs;
    writeln!(
        w,
        "{},{},{:02}-{:02}-{},{},{},{},{},{},{},{},{kyc_day} {:02}:{:02}:{:02}",
        p.cust_id,
        p.full_name,
        p.dob.day(),
        p.dob.month(),
        p.dob.year(),
        p.gender,
        p.email,
        p.mobile,
        p.pan,
        CITIES[p.city].name,
        p.segment.code(),
        p.push,
        s / 3600,
        s % 3600 / 60,
        s % 60,
    )
}

struct Amount(u64);

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// Appends a core-banking row. The two large feeds are formatted by hand into a byte
/// buffer: `write!` through `core::fmt` made formatting the bulk of generation time.
pub(super) fn txn(buf: &mut Vec<u8>, t: &Txn, p: &Stamp, day: &DayText, txn_ref: u64, bad: Option<BadTxn>) {
    buf.extend_from_slice(&p.acct);
    buf.extend_from_slice(b",TR");
    push_num(buf, txn_ref, 10);
    buf.push(b',');
    buf.extend_from_slice(&p.cust_id);
    buf.push(b',');
    if bad == Some(BadTxn::Date) {
        buf.extend_from_slice(b"31/02/");
        push_num(buf, day.year.unsigned_abs().into(), 4);
        buf.extend_from_slice(b" 25:61,");
    } else {
        buf.extend_from_slice(day.dmy.as_bytes());
        buf.push(b' ');
        push_num(buf, (t.minute / 60).into(), 2);
        buf.push(b':');
        push_num(buf, (t.minute % 60).into(), 2);
        buf.push(b',');
    }
    if bad == Some(BadTxn::Amount) {
        buf.extend_from_slice(b"N/A");
    } else {
        push_amount(buf, t.paise);
    }
    buf.extend_from_slice(if t.mcc.is_credit() { b",C," } else { b",D," });
    buf.extend_from_slice(t.mcc.code().as_bytes());
    buf.push(b',');
    match t.narration {
        Narration::Pos(payee) => {
            buf.extend_from_slice(b"POS ");
            buf.extend_from_slice(&p.card[..4]);
            buf.extend_from_slice(b"XXXXXXXX");
            buf.extend_from_slice(&p.card[12..]);
            buf.push(b' ');
            buf.extend_from_slice(payee.as_bytes());
        }
        Narration::Upi(payee) => {
            buf.extend_from_slice(b"UPI/");
            buf.extend_from_slice(payee.as_bytes());
            buf.extend_from_slice(b"/PAYMENT");
        }
        Narration::SelfTransfer(app) => {
            buf.extend_from_slice(b"UPI/");
            buf.extend_from_slice(p.name());
            buf.push(b'/');
            buf.extend_from_slice(app.as_bytes());
        }
        Narration::Atm => {
            buf.extend_from_slice(b"ATM/CASH WDL/");
            buf.extend_from_slice(&p.branch);
        }
        Narration::Bill(biller) => {
            buf.extend_from_slice(b"BIL/BPAY/");
            buf.extend_from_slice(biller.as_bytes());
        }
        Narration::Salary(employer) => {
            buf.extend_from_slice(b"NEFT SALARY ");
            buf.extend_from_slice(employer.as_bytes());
        }
        Narration::Interest => buf.extend_from_slice(b"SB INTEREST CREDIT"),
    }
    buf.push(b',');
    buf.extend_from_slice(&p.branch);
    buf.push(b'\n');
}

/// Appends `n` in decimal, zero-padded to at least `width` digits.
fn push_num(buf: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(digits.len() - width);
    buf.extend_from_slice(&digits[start..]);
}

/// Appends paise as rupees with two decimals: `1250.00`.
fn push_amount(buf: &mut Vec<u8>, paise: u64) {
    push_num(buf, paise / 100, 1);
    buf.push(b'.');
    push_num(buf, paise % 100, 2);
}

pub(super) fn balance(w: &mut impl Write, p: &Profile, day: &DayText, paise: u64) -> io::Result<()> {
    writeln!(w, "{},{},{},{},INR", day.iso, p.cust_id, p.acct, Amount(paise))
}

pub(super) fn bureau(
    w: &mut impl Write,
    report: u64,
    p: &Profile,
    date: &str,
    score: u32,
    grade: &str,
) -> io::Result<()> {
    writeln!(w, "BR{report:010},{},{},{date},{score},{grade}", p.cust_id, p.pan)
}

/// Appends a card-network JSON line.
pub(super) fn swipe(buf: &mut Vec<u8>, id: u64, s: &Swipe, p: &Stamp, day: &DayText) {
    buf.extend_from_slice(br#"{"swipe_id":"SW"#);
    push_num(buf, id, 12);
    for (name, value) in [
        (&br#"","customer_ref":""#[..], &p.cust_id[..]),
        (br#"","card_number":""#, &p.card),
        (br#"","cardholder":""#, p.name()),
        (br#"","ts":""#, day.iso.as_bytes()),
    ] {
        buf.extend_from_slice(name);
        buf.extend_from_slice(value);
    }
    buf.push(b'T');
    let t = s.second;
    push_num(buf, (t / 3600).into(), 2);
    buf.push(b':');
    push_num(buf, (t % 3600 / 60).into(), 2);
    buf.push(b':');
    push_num(buf, (t % 60).into(), 2);
    buf.extend_from_slice(day.offset.as_bytes());
    buf.extend_from_slice(br#"","merchant":""#);
    buf.extend_from_slice(s.merchant.name.as_bytes());
    buf.extend_from_slice(br#"","mcc":""#);
    buf.extend_from_slice(s.merchant.mcc.code().as_bytes());
    buf.extend_from_slice(br#"","mall":"#);
    match s.mall {
        Some(mall) => {
            buf.push(b'"');
            buf.extend_from_slice(mall.name.as_bytes());
            buf.push(b'"');
        }
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(br#","city":""#);
    buf.extend_from_slice(CITIES[s.city].name.as_bytes());
    buf.extend_from_slice(br#"","amount":"#);
    // As serde_json prints an f64: `450.5`, `1200.0`, `99.95`.
    let (whole, cents) = (s.paise / 100, s.paise % 100);
    push_num(buf, whole, 1);
    buf.push(b'.');
    match cents {
        c if c % 10 == 0 => push_num(buf, c / 10, 1),
        c => push_num(buf, c, 2),
    }
    buf.extend_from_slice(b"}\n");
}

/// A swipe cut off mid-line, as a feed interrupted in transfer leaves it.
pub(super) fn truncated_swipe(buf: &mut Vec<u8>, id: u64, s: &Swipe, p: &Stamp, day: &DayText) {
    let start = buf.len();
    swipe(buf, id, s, p, day);
    buf.truncate(start + (buf.len() - start) / 2);
    buf.push(b'\n');
}
