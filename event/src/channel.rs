//! Delivery channels and the kinds of contact data that reach them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A channel an offer can be delivered on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Push,
    Email,
    Sms,
}

/// A kind of contact data the trusted zone vaults. The cloud zone learns only which
/// kinds a customer has, never a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ContactKind {
    Email,
    Phone,
    /// A push-notification device token.
    Device,
    /// The name a message greets her by (`{name}` and `{first_name}` in a message
    /// template, filled in by the de-tokenizer); no channel delivers to it.
    Name,
    Other,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Push, Channel::Email, Channel::Sms];

    /// The contact kind a channel is delivered to (DESIGN.md §3).
    pub fn contact_kind(self) -> ContactKind {
        match self {
            Channel::Push => ContactKind::Device,
            Channel::Email => ContactKind::Email,
            Channel::Sms => ContactKind::Phone,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Push => "push",
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

impl ContactKind {
    pub const ALL: [ContactKind; 5] = [
        ContactKind::Email,
        ContactKind::Phone,
        ContactKind::Device,
        ContactKind::Name,
        ContactKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ContactKind::Email => "email",
            ContactKind::Phone => "phone",
            ContactKind::Device => "device",
            ContactKind::Name => "name",
            ContactKind::Other => "other",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ContactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown channel `{s}`: expected push, email or sms"))
    }
}

impl FromStr for ContactKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ContactKind::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown contact kind `{s}`: expected email, phone, device, name or other"))
    }
}
