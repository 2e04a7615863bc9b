//! Customer identifiers that look real and are unique by construction: each is a
//! seed-offset permutation of the customer index, so no look-up table is needed to
//! avoid collisions, however many customers there are.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::demo::bank::catalog::EMAIL_DOMAINS;

/// Seed-dependent offsets of the identifier permutations.
#[derive(Debug)]
pub(crate) struct IdSpace {
    email_mod: u64,
    pub(crate) offsets: [u64; 5],
}

/// Multiplies by about 0.618 of the modulus (made coprime with it), so `idx * a + b`
/// is a permutation of the modulus that scatters neighbouring indices: identifiers
/// look random yet are unique by construction.
pub(crate) fn multiplier(modulus: u64) -> u64 {
    let mut a = (modulus as f64 * 0.618_033_988_7) as u64 | 1;
    while gcd(a, modulus) != 1 {
        a += 2;
    }
    a
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

pub(crate) const PAN_SPACE: u64 = 26 * 26 * 26 * 10_000;

impl IdSpace {
    pub(crate) fn new(seed: u64, customers: u32) -> Self {
        let mut email_mod = 10_000;
        while email_mod < u64::from(customers) {
            email_mod *= 10;
        }
        let mut s = seed;
        let offsets = std::array::from_fn(|_| splitmix(&mut s));
        IdSpace { email_mod, offsets }
    }
}

pub(crate) fn permute(idx: u32, modulus: u64, offset: u64) -> u64 {
    let a = u128::from(multiplier(modulus));
    ((u128::from(idx) * a + u128::from(offset)) % u128::from(modulus)) as u64
}

pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A lowercase address unique by construction: the digit suffix is a permutation of
/// the customer index, and names hold no digits, so the local part determines it.
pub(crate) fn email(idx: u32, first: &str, last: &str, ids: &IdSpace, rng: &mut ChaCha8Rng) -> String {
    let n = permute(idx, ids.email_mod, ids.offsets[0]);
    let first = first.to_lowercase();
    let last = last.to_lowercase();
    let domain = EMAIL_DOMAINS[rng.gen_range(0..EMAIL_DOMAINS.len())];
    match rng.gen_range(0..4) {
        0 => format!("{first}.{last}{n}@{domain}"),
        1 => format!("{first}{last}{n}@{domain}"),
        2 => format!("{}{last}{n}@{domain}", &first[..1]),
        _ => format!("{last}.{first}{n}@{domain}"),
    }
}

/// `AAAPS1234X`: the fourth letter is P (an individual) and the fifth the surname's
/// initial, as on real PANs; letters 1-3 and the digits encode a permuted index.
pub(crate) fn pan(idx: u32, last: &str, ids: &IdSpace, rng: &mut ChaCha8Rng) -> String {
    let n = permute(idx, PAN_SPACE, ids.offsets[2]);
    let letters = n / 10_000;
    let l = |k: u64| char::from(b'A' + (letters / k % 26) as u8);
    let check = char::from(b'A' + rng.gen_range(0..26u8));
    format!("{}{}{}P{}{:04}{check}", l(676), l(26), l(1), &last[..1], n % 10_000)
}

pub(crate) fn push_token(rng: &mut ChaCha8Rng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut token = String::with_capacity(26);
    token.push_str("fcm:");
    for _ in 0..22 {
        token.push(char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]));
    }
    token
}

/// A 16-digit Visa-like number with a valid Luhn check digit.
pub(crate) fn card(idx: u32, ids: &IdSpace) -> String {
    let body = format!("438628{:09}", permute(idx, 1_000_000_000, ids.offsets[4]));
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}
