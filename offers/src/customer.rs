//! One customer's model as her actor holds it: features, profile, preferences, the
//! contact kinds she can be reached by, the offers sent to her and her responses, and
//! the ids of events already applied (so a re-delivered event changes nothing).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use persona_event::hash::fnv1a64;
use persona_event::{Channel, ContactKind, Event, Match, MatchMessage, Value, kinds};
use persona_features::FeatureState;
use serde::{Deserialize, Serialize};

use crate::{Engine, Error};

/// Offers sent and responses kept per customer; older entries are forgotten first.
/// Limits and chaining look back over these.
pub const HISTORY_LIMIT: usize = 256;

/// A match emitted for this customer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    pub offer: String,
    pub variant: String,
    pub channel: Channel,
    /// Microseconds since the epoch.
    pub at: i64,
    /// In the offer's control group: recorded, not delivered.
    pub control: bool,
}

/// [`Sent`] in snapshot formats 1 and 2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SentV1 {
    offer: String,
    variant: String,
    channel: Channel,
    at: i64,
}

impl SentV1 {
    fn upgrade(self) -> Sent {
        Sent {
            offer: self.offer,
            variant: self.variant,
            channel: self.channel,
            at: self.at,
            control: false,
        }
    }
}

/// A delivery outcome or customer response to an offer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub offer: String,
    pub outcome: String,
    pub at: i64,
}

/// A match the contact policy deferred (quiet hours, a day she does not want, the
/// day's quota): a durable reminder in her actor, released when her time comes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// Microseconds since the epoch.
    pub due: i64,
    pub decision: Match,
    pub title: String,
    pub message: String,
}

impl Pending {
    pub(crate) fn new(due: i64, m: MatchMessage) -> Pending {
        Pending {
            due,
            decision: m.decision,
            title: m.title,
            message: m.message,
        }
    }

    pub(crate) fn into_message(self) -> MatchMessage {
        MatchMessage {
            decision: self.decision,
            title: self.title,
            message: self.message,
        }
    }
}

/// An attribute value with the event time it came from: the latest wins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dated {
    pub at: i64,
    pub value: Value,
}

/// The model of one customer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Customer {
    pub features: FeatureState,
    pub profile: BTreeMap<String, Dated>,
    pub prefs: BTreeMap<String, Dated>,
    pub contacts: BTreeSet<ContactKind>,
    pub sent: Vec<Sent>,
    pub responses: Vec<Response>,
    /// Matches deferred by the contact policy, earliest first.
    pub pending: Vec<Pending>,
    /// When her recent offers went out (microseconds), for the contact policy's
    /// daily quota; entries older than two days are forgotten.
    pub delivered: Vec<i64>,
    applied: HashSet<u64>,
    /// In a backfill run, the events already counted for the features it recomputes
    /// (kept while the customer is active, never in a snapshot: a run that stops
    /// half-way is run again and starts the backfill over).
    backfilled: HashSet<u64>,
}

/// Snapshot formats 2 and 3: format 1, the contact policy's pending matches and
/// delivery times (2), and whether each match was the control group's (3: `Sent`;
/// 2 has `SentV1`).
#[derive(Serialize, Deserialize)]
struct Snapshot<S = Sent> {
    features: Vec<u8>,
    profile: BTreeMap<String, Dated>,
    prefs: BTreeMap<String, Dated>,
    contacts: BTreeSet<ContactKind>,
    sent: Vec<S>,
    responses: Vec<Response>,
    applied: Vec<u64>,
    pending: Vec<Pending>,
    delivered: Vec<i64>,
}

/// Format 1, still read.
#[derive(Serialize, Deserialize)]
struct SnapshotV1 {
    features: Vec<u8>,
    profile: BTreeMap<String, Dated>,
    prefs: BTreeMap<String, Dated>,
    contacts: BTreeSet<ContactKind>,
    sent: Vec<SentV1>,
    responses: Vec<Response>,
    applied: Vec<u64>,
}

impl From<SnapshotV1> for Snapshot<SentV1> {
    fn from(v1: SnapshotV1) -> Self {
        Snapshot {
            features: v1.features,
            profile: v1.profile,
            prefs: v1.prefs,
            contacts: v1.contacts,
            sent: v1.sent,
            responses: v1.responses,
            applied: v1.applied,
            pending: Vec::new(),
            delivered: Vec::new(),
        }
    }
}

impl From<Snapshot<SentV1>> for Snapshot {
    fn from(v2: Snapshot<SentV1>) -> Self {
        Snapshot {
            sent: v2.sent.into_iter().map(SentV1::upgrade).collect(),
            features: v2.features,
            profile: v2.profile,
            prefs: v2.prefs,
            contacts: v2.contacts,
            responses: v2.responses,
            applied: v2.applied,
            pending: v2.pending,
            delivered: v2.delivered,
        }
    }
}

const VERSION: u8 = 3;

impl Customer {
    /// Applies an event to the model (features, profile, preferences, responses).
    /// Returns false, changing nothing, when this event id was applied before.
    pub fn apply(&mut self, engine: &Engine, event: &Event) -> bool {
        let id = fnv1a64(event.id.as_str().as_bytes());
        if let Some(only) = &engine.backfill
            && self.backfilled.insert(id)
            && self.applied.contains(&id)
        {
            // Counted before for the other features: now for the backfilled ones too.
            self.features.apply_selected(&engine.features, event, only);
            return false;
        }
        if !self.applied.insert(id) {
            return false;
        }
        self.features.apply(&engine.features, event);
        let at = event.ts.timestamp_micros();
        match event.kind.as_str() {
            kinds::PROFILE => {
                if let Value::List(kinds) = event.attr("contacts") {
                    self.contacts
                        .extend(kinds.iter().filter_map(|k| k.as_str()?.parse::<ContactKind>().ok()));
                }
                merge_latest(&mut self.profile, event, at);
            }
            kinds::PREFERENCE => merge_latest(&mut self.prefs, event, at),
            kinds::OFFER_RESPONSE => {
                if let (Some(offer), Some(outcome)) = (event.attr("offer").as_str(), event.attr("outcome").as_str()) {
                    self.responses.push(Response {
                        offer: offer.to_owned(),
                        outcome: outcome.to_owned(),
                        at,
                    });
                    trim(&mut self.responses);
                }
            }
            _ => {}
        }
        true
    }

    /// The customer under a new engine (a FeatureSet or offers replaced while
    /// running): through her snapshot, keeping what a backfill run counted so far.
    pub fn reload(&self, from: &Engine, to: &Engine) -> Result<Customer, Error> {
        let mut customer = Customer::decode(&self.encode(from), to)?;
        customer.backfilled.clone_from(&self.backfilled);
        Ok(customer)
    }

    /// Notes an id as applied; false when it was already.
    pub(crate) fn note_applied(&mut self, id: u64) -> bool {
        self.applied.insert(id)
    }

    /// Whether `event` was applied to her already (a replay changes nothing).
    pub(crate) fn has_applied(&self, event: &Event) -> bool {
        self.applied.contains(&fnv1a64(event.id.as_str().as_bytes()))
    }

    /// Starts a backfill run for this customer: empties the features the engine
    /// recomputes. Called once, when the run first activates her.
    pub fn start_backfill(&mut self, engine: &Engine) {
        if let Some(only) = &engine.backfill {
            self.features.reset(&engine.features, only);
            self.backfilled.clear();
        }
    }

    pub fn profile_value(&self, name: &str) -> Value {
        self.profile.get(name).map_or(Value::Null, |d| d.value.clone())
    }

    pub fn pref_value(&self, name: &str) -> Value {
        self.prefs.get(name).map_or(Value::Null, |d| d.value.clone())
    }

    /// The customer's clock: the latest event time applied.
    pub fn clock(&self) -> Option<DateTime<Utc>> {
        self.features.clock()
    }

    pub(crate) fn record_sent(&mut self, sent: Sent) {
        self.sent.push(sent);
        trim(&mut self.sent);
    }

    /// Versioned snapshot bytes.
    pub fn encode(&self, engine: &Engine) -> Vec<u8> {
        let mut applied: Vec<u64> = self.applied.iter().copied().collect();
        applied.sort_unstable();
        let snap = Snapshot {
            features: self.features.encode(&engine.features),
            profile: self.profile.clone(),
            prefs: self.prefs.clone(),
            contacts: self.contacts.clone(),
            sent: self.sent.clone(),
            responses: self.responses.clone(),
            applied,
            pending: self.pending.clone(),
            delivered: self.delivered.clone(),
        };
        let mut out = vec![VERSION];
        out.extend(postcard::to_stdvec(&snap).expect("customer state serializes"));
        out
    }

    pub fn decode(bytes: &[u8], engine: &Engine) -> Result<Customer, Error> {
        let (&version, body) = bytes
            .split_first()
            .ok_or_else(|| Error::Snapshot("empty snapshot".into()))?;
        let unreadable = |e: postcard::Error| Error::Snapshot(e.to_string());
        let snap: Snapshot = match version {
            VERSION => postcard::from_bytes(body).map_err(unreadable)?,
            2 => postcard::from_bytes::<Snapshot<SentV1>>(body)
                .map_err(unreadable)?
                .into(),
            1 => Snapshot::<SentV1>::from(postcard::from_bytes::<SnapshotV1>(body).map_err(unreadable)?).into(),
            other => return Err(Error::Snapshot(format!("unknown snapshot version {other}"))),
        };
        Ok(Customer {
            features: FeatureState::decode(&snap.features, &engine.features)
                .map_err(|e| Error::Snapshot(e.to_string()))?,
            profile: snap.profile,
            prefs: snap.prefs,
            contacts: snap.contacts,
            sent: snap.sent,
            responses: snap.responses,
            pending: snap.pending,
            delivered: snap.delivered,
            applied: snap.applied.into_iter().collect(),
            backfilled: HashSet::new(),
        })
    }

    /// When her earliest deferred match is due (microseconds), if any.
    pub fn next_due(&self) -> Option<i64> {
        self.pending.iter().map(|p| p.due).min()
    }

    /// Notes a delivery for the daily quota, forgetting those more than two days older.
    pub(crate) fn record_delivered(&mut self, at: i64) {
        self.delivered.push(at);
        let horizon = at - 2 * 86_400 * 1_000_000;
        self.delivered.retain(|&d| d > horizon);
    }
}

fn merge_latest(into: &mut BTreeMap<String, Dated>, event: &Event, at: i64) {
    for (k, v) in &event.attrs {
        let newer = into.get(k).is_none_or(|d| d.at <= at);
        if newer {
            into.insert(k.clone(), Dated { at, value: v.clone() });
        }
    }
}

fn trim<T>(v: &mut Vec<T>) {
    if v.len() > HISTORY_LIMIT {
        v.drain(..v.len() - HISTORY_LIMIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use persona_features::{FeatureSet, FeatureSetDocument};

    /// Snapshots written by earlier formats still read, their matches outside any
    /// control group and with nothing pending.
    #[test]
    fn formats_1_and_2_still_read() {
        let set = FeatureSet::compile(
            &FeatureSetDocument::from_yaml("kind: FeatureSet\nmetadata: {name: f}\nspec: {features: []}\n").unwrap(),
        )
        .unwrap();
        let engine = Engine::new(set, Vec::new());
        let sent = vec![SentV1 {
            offer: "o".into(),
            variant: "a".into(),
            channel: Channel::Sms,
            at: 5,
        }];
        let v1 = SnapshotV1 {
            features: FeatureState::default().encode(&engine.features),
            profile: BTreeMap::new(),
            prefs: BTreeMap::new(),
            contacts: BTreeSet::from([ContactKind::Phone]),
            sent,
            responses: Vec::new(),
            applied: vec![1, 2],
        };
        let v1_bytes = postcard::to_stdvec(&v1).unwrap();
        let v2_bytes = postcard::to_stdvec(&Snapshot::<SentV1>::from(v1)).unwrap();
        for (version, body) in [(1u8, v1_bytes), (2, v2_bytes)] {
            let mut bytes = vec![version];
            bytes.extend(body);
            let c = Customer::decode(&bytes, &engine).unwrap();
            assert_eq!(c.sent.len(), 1, "format {version}");
            assert!(!c.sent[0].control);
            assert!(c.pending.is_empty() && c.contacts.contains(&ContactKind::Phone));
        }
    }
}
