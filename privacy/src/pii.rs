//! Types that carry personal data: they print as `**REDACTED**`, are not `Serialize`,
//! and wipe their memory on drop. Reading the value takes an explicit `expose` call.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

const REDACTED: &str = "**REDACTED**";

/// A piece of personal data (an email, a phone number, a raw field value).
///
/// Deliberately not `Serialize` and without a readable `Debug` or `Display`: the only
/// way to the value is [`Pii::expose`], so every use is visible in review.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Pii<T: Zeroize>(T);

impl<T: Zeroize> Pii<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value itself. Never log it, never send it out of the trusted zone.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> From<T> for Pii<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T: Zeroize> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T: Zeroize> fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The customer identifier of a system of record (the `key` field of a Source): what
/// a token stands for. It identifies a person, so it is treated as PII.
#[derive(Clone, PartialEq, Eq, Hash, Zeroize, ZeroizeOnDrop)]
pub struct CustomerKey(String);

impl CustomerKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The identifier itself. Never log it, never send it out of the trusted zone.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for CustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let key = CustomerKey::new("CUST-000123");
        let email = Pii::new("saanvi.sarkar@example.com".to_owned());
        for shown in [
            format!("{key}"),
            format!("{key:?}"),
            format!("{key:#?}"),
            format!("{email}"),
            format!("{email:?}"),
            format!("{:?}", Some(&email)),
            format!("{:?}", vec![(1, email.clone())]),
        ] {
            assert!(shown.contains("**REDACTED**"), "{shown}");
            assert!(!shown.contains("CUST-000123"));
            assert!(!shown.contains("saanvi"));
        }
        assert_eq!(key.expose_secret(), "CUST-000123");
        assert_eq!(email.expose(), "saanvi.sarkar@example.com");
    }

    #[test]
    fn zeroize_wipes_the_value() {
        let mut email = Pii::new("a@b.c".to_owned());
        email.zeroize();
        assert!(email.expose().is_empty());
    }
}
