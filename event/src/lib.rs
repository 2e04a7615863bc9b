//! The shared vocabulary of persona: the canonical event, the customer token, event
//! ids, attribute values, matches, channels and the time helpers every zone agrees on.

mod channel;
mod de;
mod event;
pub mod hash;
mod ids;
pub mod spec;
pub mod time;
mod value;

pub use channel::{Channel, ContactKind};
pub use event::{Event, Match, MatchMessage};
pub use ids::{EventId, IdError, MatchId, Token};
pub use value::Value;

/// Event types persona understands out of the box (DESIGN.md §2). Other types are
/// allowed; these names have a meaning to the actor.
pub mod kinds {
    pub const TRANSACTION: &str = "transaction";
    pub const BALANCE: &str = "balance";
    pub const CARD_SWIPE: &str = "card_swipe";
    pub const APP_EVENT: &str = "app_event";
    pub const PROFILE: &str = "profile";
    pub const PREFERENCE: &str = "preference";
    pub const OFFER_RESPONSE: &str = "offer_response";
    pub const CONTEXT: &str = "context";
    /// A scheduled sweep reaching a partition (attribute `offer`; no customer of its
    /// own): the runtime's, never a source's.
    pub const SWEEP: &str = "persona.sweep";
    /// The customer behind the token was forgotten (right to erasure): her actor
    /// deletes its state and snapshot. Only the trusted zone's erasure journal
    /// produces it (`persona vault forget`); a Source may not.
    pub const FORGET: &str = "forget";
}
