//! `persona detokenizer`, the long-running delivery service of the trusted zone. It
//! reads the matches stream in the `detokenizer` consumer group and, for each match:
//!
//! 1. skips a match id it has handled before (its `delivered` store), so a re-read
//!    match is not sent twice;
//! 2. resolves the token just in time ([`Resolver`]) to the customer key, the contact
//!    the channel needs and the fields the message's placeholders name;
//! 3. fills the placeholders (`{name}`, `{first_name}`, `{email}`, `{phone}`) and hands
//!    the message to the channel's sink, retrying a transient refusal with backoff;
//! 4. records the outcome, appends a PII-free audit line, and sends the outcome back
//!    to the cloud: `offer_response` (`outcome: delivered`) for a delivery,
//!    `preference` (`opt_out_<channel>: true`) for a hard bounce;
//! 5. acknowledges the batch only after all of that is durable.
//!
//! A crash between a send and its record means the match is read again and sent
//! again (at least once): the webhook's `Idempotency-Key` and the email's Message-ID
//! (both the match id) let the far side drop the copy.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use persona_bus::redis::{MatchEntry, RedisBus};
use persona_event::{Channel, ContactKind, Event, EventId, MatchMessage, Token, Value, kinds};
use persona_privacy::Pii;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

pub mod responses;

use crate::channels::{Outgoing, Refused, Sink};
use crate::resolve::{ResolveError, Resolver};
use crate::{AuditRecord, Outcome};

/// Matches read per batch.
const BATCH: usize = 256;
/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How the service runs.
#[derive(Debug)]
pub struct ServiceConfig {
    /// The sink of each channel.
    pub routes: BTreeMap<Channel, Sink>,
    /// `audit.jsonl`, appended.
    pub audit: PathBuf,
    /// The service's own sled store (handled match ids).
    pub store: PathBuf,
    /// This process's consumer name in the `detokenizer` group.
    pub consumer: String,
    /// Pending matches of another consumer idle this long are taken over.
    pub stale: Duration,
}

/// Counters since the start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServiceStats {
    pub matches: u64,
    pub by_outcome: BTreeMap<String, u64>,
    pub duplicates: u64,
    pub retries: u64,
}

/// What the store keeps per handled match (no PII): enough to turn a later response
/// (a STOP reply, an open) into an event for the right actor.
#[derive(Debug, Serialize, Deserialize)]
struct Handled {
    token: String,
    offer: String,
    variant: String,
    channel: Channel,
    outcome: Outcome,
}

/// The service.
#[derive(Debug)]
pub struct DetokenizerService {
    bus: RedisBus,
    resolver: Resolver,
    config: ServiceConfig,
    handled: sled::Tree,
    db: sled::Db,
    stats: Mutex<ServiceStats>,
    /// Resolve and hand over, per match (retries included).
    deliver_seconds: prometheus_client::metrics::histogram::Histogram,
}

/// What stops the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("store {}: {source}", path.display())]
    Store {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no sink for channel {0}")]
    NoRoute(Channel),
    #[error("cannot publish to the bus")]
    Bus(#[source] persona_bus::redis::RedisBusError),
    #[error("the store's record of a match is unreadable")]
    Corrupt,
}

/// Whether the service was told to stop while waiting.
struct Stopped;

impl DetokenizerService {
    pub fn open(bus: RedisBus, resolver: Resolver, config: ServiceConfig) -> Result<Self, ServiceError> {
        for channel in Channel::ALL {
            if !config.routes.contains_key(&channel) {
                return Err(ServiceError::NoRoute(channel));
            }
        }
        let store_err = |source| ServiceError::Store {
            path: config.store.clone(),
            source,
        };
        let db = sled::open(&config.store).map_err(store_err)?;
        let handled = db.open_tree("handled").map_err(store_err)?;
        Ok(Self {
            bus,
            resolver,
            config,
            handled,
            db,
            stats: Mutex::new(ServiceStats::default()),
            // 100 µs to ~3 s.
            deliver_seconds: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.000_1, 2.0, 16),
            ),
        })
    }

    /// How long each match took to resolve and hand over.
    pub fn deliver_seconds(&self) -> &prometheus_client::metrics::histogram::Histogram {
        &self.deliver_seconds
    }

    pub fn stats(&self) -> ServiceStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// KMS Decrypt calls made so far (about one per vault key version, not per match).
    pub fn kms_decrypts(&self) -> u64 {
        self.resolver.kms_decrypts()
    }

    /// Delivers until `stop` turns true; the batch in hand is finished (or left
    /// unacknowledged, to be read again) first.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) -> Result<(), ServiceError> {
        let mut reader = loop {
            match self.bus.match_reader(&self.config.consumer).await {
                Ok(r) => break r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot join the matches stream; retrying");
                    if sleep_or_stop(Duration::from_secs(1), &mut stop).await.is_err() {
                        return Ok(());
                    }
                }
            }
        };
        let mut backoff = Duration::ZERO;
        while !*stop.borrow() {
            let entries = tokio::select! {
                r = reader.read(BATCH, Duration::from_millis(500), self.config.stale) => r,
                _ = stop.changed() => return Ok(()),
            };
            let entries = match entries {
                Ok(e) => {
                    backoff = Duration::ZERO;
                    e
                }
                Err(e) => {
                    backoff = next_backoff(backoff);
                    tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot read the matches stream");
                    if sleep_or_stop(backoff, &mut stop).await.is_err() {
                        return Ok(());
                    }
                    continue;
                }
            };
            if entries.is_empty() {
                continue;
            }
            let (done, stopped) = self.handle_batch(&entries, &mut stop).await?;
            // Outcomes out first, then the acknowledgement: a crash between the two
            // reads the matches again, finds them handled, and sends the outcomes
            // again (same event ids: the cloud applies each once).
            if !self.publish(&done.events, &mut stop).await {
                // Stopped before the bus took them: left unacknowledged, re-read later.
                return Ok(());
            }
            while let Err(e) = reader.ack(&done.acked).await {
                tracing::error!(error = %e, "cannot acknowledge delivered matches; retrying");
                if sleep_or_stop(Duration::from_millis(500), &mut stop).await.is_err() {
                    return Ok(());
                }
            }
            if stopped {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Handles a batch: every match delivered or given its outcome, the store and the
    /// audit trail durable. Returns what to publish and acknowledge, and whether it
    /// was told to stop (the matches after that point are left for a re-read).
    async fn handle_batch(
        &self,
        entries: &[MatchEntry],
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(Batch, bool), ServiceError> {
        let mut batch = Batch::default();
        for entry in entries {
            let m = &entry.message;
            let id = m.decision.match_id.as_str().as_bytes();
            if let Some(seen) = self.handled.get(id).map_err(|e| self.store_err(e))? {
                // Handled before: its outcome goes out again in case it had not.
                let seen: Handled = serde_json::from_slice(&seen).map_err(|_| ServiceError::Corrupt)?;
                batch.events.extend(response_events(m, seen.outcome));
                batch.acked.push(entry.id);
                self.stats.lock().unwrap_or_else(|e| e.into_inner()).duplicates += 1;
                continue;
            }
            let span = tracing::info_span!(
                "detokenizer.deliver",
                match_id = %m.decision.match_id,
                offer = %m.decision.offer,
                channel = %m.decision.channel,
            );
            if let Some(parent) = &entry.trace {
                persona_proto::trace::set_parent(&span, parent);
            }
            let started = std::time::Instant::now();
            let delivered = self.deliver(m, stop).await;
            self.deliver_seconds.observe(started.elapsed().as_secs_f64());
            std::mem::drop(span);
            let Ok((outcome, sink)) = delivered else {
                // Stopped mid-batch: what was handled is recorded, the rest re-read.
                self.record(&batch)?;
                return Ok((batch, true));
            };
            let d = &m.decision;
            let handled = Handled {
                token: d.token.to_string(),
                offer: d.offer.clone(),
                variant: d.variant.clone(),
                channel: d.channel,
                outcome,
            };
            self.handled
                .insert(id, serde_json::to_vec(&handled).expect("serializes"))
                .map_err(|e| self.store_err(e))?;
            batch
                .audit
                .push(AuditRecord::of(d, resolved_fields(outcome, d.channel), outcome, sink));
            batch.events.extend(response_events(m, outcome));
            batch.acked.push(entry.id);
            let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            stats.matches += 1;
            *stats.by_outcome.entry(outcome_name(outcome)).or_default() += 1;
        }
        self.record(&batch)?;
        Ok((batch, false))
    }

    /// Makes the store and the audit lines of a batch durable.
    fn record(&self, batch: &Batch) -> Result<(), ServiceError> {
        self.db.flush().map_err(|e| self.store_err(e))?;
        append_lines(
            &self.config.audit,
            batch
                .audit
                .iter()
                .map(|a| serde_json::to_string(a).expect("serializes")),
        )
    }

    /// One match, to its outcome. `Err(Stopped)` when told to stop while retrying.
    async fn deliver(
        &self,
        m: &MatchMessage,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(Outcome, &'static str), Stopped> {
        let d = &m.decision;
        let sink = &self.config.routes[&d.channel];
        let need = d.channel.contact_kind();
        let mut kinds = vec![need];
        kinds.extend(
            placeholder_kinds(&m.title)
                .chain(placeholder_kinds(&m.message))
                .filter(|k| *k != need),
        );
        kinds.sort_unstable();
        kinds.dedup();
        let mut backoff = Duration::ZERO;
        let opened = loop {
            match self.resolver.resolve(&d.token, &kinds).await {
                Ok(Some(o)) => break o,
                Ok(None) => return Ok((Outcome::UnknownToken, sink.name())),
                Err(ResolveError::Open(persona_privacy::Error::Corrupt { what })) => {
                    tracing::error!(match_id = %d.match_id, what, "a vault record does not open; the match is not delivered");
                    return Ok((Outcome::Unresolvable, sink.name()));
                }
                Err(e) => {
                    backoff = self.retry_wait(backoff);
                    tracing::warn!(match_id = %d.match_id, error = %crate::error_chain(&e), retry_in_ms = backoff.as_millis() as u64, "cannot resolve now; retrying");
                    sleep_or_stop(backoff, stop).await?;
                }
            }
        };
        let Some(to) = opened.contact(need) else {
            return Ok((Outcome::NoContact, sink.name()));
        };
        let title = Pii::new(fill(&m.title, &opened));
        let message = Pii::new(fill(&m.message, &opened));
        let out = Outgoing {
            decision: d,
            customer_key: &opened.customer_key,
            to,
            title: &title,
            message: &message,
        };
        let mut backoff = Duration::ZERO;
        loop {
            match sink.send(&out).await {
                Ok(()) => return Ok((Outcome::Delivered, sink.name())),
                Err(Refused::Permanent { reason, bounce }) => {
                    tracing::warn!(match_id = %d.match_id, channel = %d.channel, %reason, bounce, "the channel refused the message");
                    let outcome = if bounce { Outcome::Bounced } else { Outcome::Rejected };
                    return Ok((outcome, sink.name()));
                }
                Err(Refused::Transient(reason)) => {
                    backoff = self.retry_wait(backoff);
                    tracing::warn!(match_id = %d.match_id, channel = %d.channel, %reason, retry_in_ms = backoff.as_millis() as u64, "the channel did not take the message; retrying");
                    sleep_or_stop(backoff, stop).await?;
                }
            }
        }
    }

    /// Turns a channel's response to a delivered match into its event on the bus:
    /// `Ok(None)` when this service delivered no match with that id.
    pub async fn respond(
        &self,
        match_id: &str,
        response: responses::ChannelResponse,
    ) -> Result<Option<()>, ServiceError> {
        use responses::ChannelResponse as R;
        let Some(raw) = self.handled.get(match_id.as_bytes()).map_err(|e| self.store_err(e))? else {
            return Ok(None);
        };
        let h: Handled = serde_json::from_slice(&raw).map_err(|_| ServiceError::Corrupt)?;
        if h.outcome != Outcome::Delivered {
            return Ok(None);
        }
        let token = Token::parse(&h.token).map_err(|_| ServiceError::Corrupt)?;
        let (what, kind, attrs): (&str, &str, Vec<(String, Value)>) = match response {
            R::Stop | R::Bounce => {
                let reason = if response == R::Stop { "stop" } else { "bounce" };
                (
                    reason,
                    kinds::PREFERENCE,
                    vec![
                        (format!("opt_out_{}", h.channel.as_str()), Value::Bool(true)),
                        ("reason".to_owned(), Value::from(reason)),
                    ],
                )
            }
            R::Opened | R::Positive | R::Negative => {
                let outcome = match response {
                    R::Opened => "opened",
                    R::Positive => "positive",
                    _ => "negative",
                };
                (
                    outcome,
                    kinds::OFFER_RESPONSE,
                    vec![
                        ("offer".to_owned(), Value::from(h.offer.as_str())),
                        ("variant".to_owned(), Value::from(h.variant.as_str())),
                        ("outcome".to_owned(), Value::from(outcome)),
                        ("channel".to_owned(), Value::from(h.channel.as_str())),
                    ],
                )
            }
        };
        let event = Event {
            id: outcome_id(match_id, what),
            token,
            kind: kind.to_owned(),
            ts: Utc::now(),
            attrs: attrs.into_iter().collect(),
        };
        self.bus.publish(&[event]).await.map_err(ServiceError::Bus)?;
        tracing::info!(match_id, response = what, "channel response sent to the cloud");
        Ok(Some(()))
    }

    fn retry_wait(&self, backoff: Duration) -> Duration {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).retries += 1;
        next_backoff(backoff)
    }

    /// Sends the outcome events to the cloud, retrying until the bus takes them;
    /// `false` when told to stop first.
    async fn publish(&self, events: &[Event], stop: &mut watch::Receiver<bool>) -> bool {
        if events.is_empty() {
            return true;
        }
        let mut backoff = Duration::ZERO;
        while let Err(e) = self.bus.publish(events).await {
            backoff = next_backoff(backoff);
            tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot publish delivery outcomes; retrying");
            if sleep_or_stop(backoff, stop).await.is_err() {
                return false;
            }
        }
        true
    }

    fn store_err(&self, source: sled::Error) -> ServiceError {
        ServiceError::Store {
            path: self.config.store.clone(),
            source,
        }
    }
}

#[derive(Default)]
struct Batch {
    audit: Vec<AuditRecord>,
    events: Vec<Event>,
    /// The entries handled (or found handled before): to acknowledge.
    acked: Vec<persona_bus::redis::EntryId>,
}

fn next_backoff(b: Duration) -> Duration {
    (b * 2).clamp(Duration::from_millis(100), MAX_BACKOFF)
}

async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> Result<(), Stopped> {
    if *stop.borrow() {
        return Err(Stopped);
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => Ok(()),
        _ = stop.changed() => Err(Stopped),
    }
}

/// What the audit says was read from the vault for an outcome.
fn resolved_fields(outcome: Outcome, channel: Channel) -> Vec<&'static str> {
    match outcome {
        Outcome::UnknownToken | Outcome::Duplicate | Outcome::Unresolvable => vec![],
        Outcome::NoContact => vec!["customer_key"],
        _ => vec!["customer_key", channel.contact_kind().as_str()],
    }
}

fn outcome_name(o: Outcome) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The events that tell the cloud what became of a match: an `offer_response` with
/// outcome `delivered`, or after a hard bounce a `preference` opting her out of the
/// channel. Their ids are hashes of the match id (stable: a re-sent outcome is
/// recognised).
pub fn response_events(m: &MatchMessage, outcome: Outcome) -> Vec<Event> {
    let d = &m.decision;
    let id = |what: &str| outcome_id(d.match_id.as_str(), what);
    let ts = Utc::now().max(d.ts);
    match outcome {
        Outcome::Delivered => vec![Event {
            id: id("delivered"),
            token: d.token.clone(),
            kind: kinds::OFFER_RESPONSE.to_owned(),
            ts,
            attrs: [
                ("offer".to_owned(), Value::from(d.offer.as_str())),
                ("variant".to_owned(), Value::from(d.variant.as_str())),
                ("outcome".to_owned(), Value::from("delivered")),
                ("channel".to_owned(), Value::from(d.channel.as_str())),
            ]
            .into(),
        }],
        Outcome::Bounced => vec![Event {
            id: id("bounced"),
            token: d.token.clone(),
            kind: kinds::PREFERENCE.to_owned(),
            ts,
            attrs: [
                (format!("opt_out_{}", d.channel.as_str()), Value::Bool(true)),
                ("reason".to_owned(), Value::from("bounce")),
            ]
            .into(),
        }],
        _ => Vec::new(),
    }
}

/// The id of the event that reports `what` for a match: a hash of both, so a
/// re-sent outcome is recognised as the same event.
fn outcome_id(match_id: &str, what: &str) -> EventId {
    let digest = Sha256::new()
        .chain_update(b"persona/detokenizer/v1\0")
        .chain_update(what.as_bytes())
        .chain_update([0])
        .chain_update(match_id.as_bytes())
        .finalize();
    EventId::from_bytes(digest[..16].try_into().expect("16 bytes"))
}

/// The contact kinds a template's placeholders name.
pub(crate) fn placeholder_kinds(text: &str) -> impl Iterator<Item = ContactKind> + '_ {
    placeholders(text).filter_map(|p| match p {
        "name" | "first_name" => Some(ContactKind::Name),
        other => other.parse().ok(),
    })
}

/// The `{word}` placeholders of a text.
fn placeholders(text: &str) -> impl Iterator<Item = &str> {
    text.split('{').skip(1).filter_map(|rest| {
        let (word, _) = rest.split_once('}')?;
        (!word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')).then_some(word)
    })
}

/// `text` with its placeholders filled from the opened record: `{name}`,
/// `{first_name}` (the name's first word), and a contact kind (`{email}`, `{phone}`,
/// …). A placeholder whose field is not held becomes empty (a greeting reads "Hi ,"
/// rather than showing the braces); an unknown one is left as written.
pub fn fill(text: &str, opened: &persona_privacy::Opened) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let word = after
            .split_once('}')
            .map(|(w, _)| w)
            .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        let value = word.and_then(|w| {
            let (kind, first) = match w {
                "name" => (ContactKind::Name, false),
                "first_name" => (ContactKind::Name, true),
                other => (other.parse::<ContactKind>().ok()?, false),
            };
            let v = opened.contact(kind).map(|v| v.expose().as_str()).unwrap_or("");
            Some(if first {
                v.split_whitespace().next().unwrap_or("")
            } else {
                v
            })
        });
        match (word, value) {
            (Some(w), Some(v)) => {
                out.push_str(v);
                rest = &after[w.len() + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Appends lines to a file and syncs it.
fn append_lines(path: &Path, lines: impl Iterator<Item = String>) -> Result<(), ServiceError> {
    let mut text = String::new();
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    if text.is_empty() {
        return Ok(());
    }
    let io = |source| ServiceError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_data().map_err(io)
}

#[cfg(test)]
mod tests {
    use persona_privacy::{CustomerKey, Opened};

    use super::*;

    fn opened() -> Opened {
        Opened {
            customer_key: CustomerKey::new("C-1"),
            contacts: vec![
                (ContactKind::Name, Pii::new("Saanvi Sarkar".to_owned())),
                (ContactKind::Email, Pii::new("s@example.in".to_owned())),
            ],
        }
    }

    #[test]
    fn placeholders_are_filled_from_the_record() {
        let o = opened();
        assert_eq!(fill("Hi {first_name}!", &o), "Hi Saanvi!");
        assert_eq!(fill("{name} <{email}>", &o), "Saanvi Sarkar <s@example.in>");
        assert_eq!(fill("call {phone}", &o), "call ", "a field not held is empty");
        assert_eq!(
            fill("{unknown} {} {", &o),
            "{unknown} {} {",
            "others are left as written"
        );
        assert_eq!(fill("₹{first_name}{", &o), "₹Saanvi{");
    }

    #[test]
    fn placeholders_name_the_kinds_to_resolve() {
        let kinds: Vec<_> = placeholder_kinds("Hi {first_name}, {email} {x} {name}").collect();
        assert_eq!(kinds, [ContactKind::Name, ContactKind::Email, ContactKind::Name]);
    }
}
