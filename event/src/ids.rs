//! Identifiers with a fixed textual form: `tk_` tokens, `ev_` event ids, `mt_` match ids,
//! each a prefix plus 26 lowercase, unpadded RFC 4648 base32 characters (128 bits).

use std::fmt;

use data_encoding::BASE32_NOPAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An identifier string that is not of the expected form.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what}: expected `{prefix}` followed by 26 lowercase base32 characters")]
pub struct IdError {
    what: &'static str,
    prefix: &'static str,
}

const BODY_LEN: usize = 26;

fn encode(prefix: &str, bytes: &[u8; 16]) -> String {
    let mut s = String::with_capacity(prefix.len() + BODY_LEN);
    s.push_str(prefix);
    s.push_str(&BASE32_NOPAD.encode(bytes).to_ascii_lowercase());
    s
}

/// Whether `s` is `prefix` and the lowercase base32 of 128 bits: 26 characters of
/// `a-z2-7` whose last one carries 3 bits and 2 zero padding bits. Ids are parsed for
/// every event read, so this checks the characters without decoding.
fn valid(prefix: &str, s: &str) -> bool {
    let Some(body) = s.strip_prefix(prefix) else {
        return false;
    };
    let digit = |c: u8| match c {
        b'a'..=b'z' => Some(c - b'a'),
        b'2'..=b'7' => Some(c - b'2' + 26),
        _ => None,
    };
    body.len() == BODY_LEN
        && body.bytes().all(|c| digit(c).is_some())
        && body.bytes().last().and_then(digit).is_some_and(|d| d & 0b11 == 0)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// Builds the identifier from its 128 bits.
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(encode($prefix, &bytes))
            }

            /// Parses the textual form, refusing anything else.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                if valid($prefix, s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(IdError { what: $what, prefix: $prefix })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The 128 bits back (for compact binary encodings).
            pub fn to_bytes(&self) -> [u8; 16] {
                let body = self.0[$prefix.len()..].to_ascii_uppercase();
                let bytes = BASE32_NOPAD.decode(body.as_bytes()).expect("validated on construction");
                bytes.try_into().expect("128 bits")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                crate::de::parse_str(d, $what, Self::parse)
            }
        }
    };
}

id_type!(
    /// A customer token: random, stands for one customer in the cloud zone, and says
    /// nothing about her. Only the trusted-zone vault can map it back.
    Token, "tk_", "token"
);
/// The bytes of [`Token::broadcast`].
const BROADCAST: [u8; 16] = *b"\0broadcast\0\0\0\0\0\0";

impl Token {
    /// The token of no customer: a `context` event that reaches every actor carries it
    /// (an alert for a region). Random tokens never take it (2^-128), nor do the
    /// simple patterns tests use.
    pub fn broadcast() -> Token {
        Token::from_bytes(BROADCAST)
    }

    pub fn is_broadcast(&self) -> bool {
        self.to_bytes() == BROADCAST
    }
}

id_type!(
    /// The id of one source record: a keyed hash, stable across re-reads, so that a
    /// re-delivered record is recognised.
    EventId, "ev_", "event id"
);
id_type!(
    /// The id of one match: a hash of (token, offer, trigger).
    MatchId, "mt_", "match id"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn token_has_the_contract_form() {
        let t = Token::from_bytes([0xff; 16]);
        assert_eq!(t.as_str().len(), 3 + 26);
        assert!(t.as_str().starts_with("tk_"));
        assert!(Token::parse(t.as_str()).is_ok());
        assert!(Token::parse("tk_ABC").is_err());
        assert!(Token::parse(&t.as_str().to_uppercase()).is_err());
        assert!(EventId::parse(t.as_str()).is_err());
    }

    proptest! {
        #[test]
        fn the_character_check_agrees_with_decoding(body in "[a-z2-7A]{25,27}") {
            let decodes = body.len() == BODY_LEN
                && body.bytes().all(|c| c != b'A')
                && BASE32_NOPAD.decode(body.to_ascii_uppercase().as_bytes()).is_ok_and(|b| b.len() == 16);
            prop_assert_eq!(valid("tk_", &format!("tk_{body}")), decodes);
        }

        #[test]
        fn every_128_bit_value_round_trips(bytes in any::<[u8; 16]>()) {
            let t = Token::from_bytes(bytes);
            prop_assert_eq!(Token::parse(t.as_str()).unwrap(), t.clone());
            prop_assert_eq!(t.to_bytes(), bytes);
            let json = serde_json::to_string(&t).unwrap();
            prop_assert_eq!(serde_json::from_str::<Token>(&json).unwrap(), t);
        }
    }
}
