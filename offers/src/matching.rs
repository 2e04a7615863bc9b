//! The matching engine: for one applied event, which offer (if any), in which variant,
//! on which channel. Gates run cheapest first; the first offer in arbitration order
//! that passes them all wins, so an event yields at most one match.

use std::cell::RefCell;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use persona_event::Match;
use persona_event::hash::fnv1a64;
use persona_event::{Channel, Event, MatchId, MatchMessage, Token, Value, kinds};
use persona_expr::{FeatureRef, Scope};
use persona_features::FeatureView;
use sha2::{Digest, Sha256};

use crate::Engine;
use crate::customer::{Customer, Pending, Sent};
use crate::offer::{Offer, Variant};
use crate::policy::{Allowed, ContactPolicy, weekdays};

/// The expression scope of an offer: the triggering event, the customer's features as
/// of the evaluation instant, her profile, preferences and history.
pub(crate) struct CustomerScope<'a> {
    pub(crate) customer: &'a Customer,
    pub(crate) event: Option<&'a Event>,
    pub(crate) features: FeatureView<'a>,
    pub(crate) tz: Tz,
    /// Features already computed for this decision, by slot: many offers read the
    /// same few, and a windowed feature costs a pass over its tiles.
    seen: RefCell<Vec<(u32, Value)>>,
}

impl<'a> CustomerScope<'a> {
    pub(crate) fn new(
        engine: &'a Engine,
        customer: &'a Customer,
        event: Option<&'a Event>,
        at: Option<DateTime<Utc>>,
    ) -> Self {
        CustomerScope {
            customer,
            event,
            features: customer.features.view(&engine.features, at),
            tz: engine.features.timezone(),
            seen: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.features.at()
    }

    fn since(&self, within: TimeDelta) -> i64 {
        (self.now() - within).timestamp_micros()
    }
}

impl Scope for CustomerScope<'_> {
    fn event(&self, name: &str) -> Value {
        self.event.map_or(Value::Null, |e| e.field(name))
    }
    fn event_ref(&self, name: &str) -> Option<&Value> {
        self.event.and_then(|e| e.attr_field(name))
    }
    fn feature(&self, f: FeatureRef<'_>) -> Value {
        let Some(slot) = f.slot else {
            return self.features.get_ref(f);
        };
        if let Some((_, v)) = self.seen.borrow().iter().find(|(s, _)| *s == slot) {
            return v.clone();
        }
        let v = self.features.get_ref(f);
        self.seen.borrow_mut().push((slot, v.clone()));
        v
    }
    fn profile(&self, name: &str) -> Value {
        self.customer.profile_value(name)
    }
    fn profile_ref(&self, name: &str) -> Option<&Value> {
        self.customer.profile.get(name).map(|d| &d.value)
    }
    fn prefs(&self, name: &str) -> Value {
        self.customer.pref_value(name)
    }
    fn now(&self) -> Option<DateTime<Utc>> {
        Some(self.features.at())
    }
    fn timezone(&self) -> Tz {
        self.tz
    }
    fn sent(&self, offer: &str, within: TimeDelta) -> bool {
        let since = self.since(within);
        self.customer.sent.iter().any(|s| s.offer == offer && s.at > since)
    }
    fn responded(&self, offer: &str, outcome: &str, within: TimeDelta) -> bool {
        let since = self.since(within);
        self.customer
            .responses
            .iter()
            .any(|r| r.offer == offer && r.outcome == outcome && r.at > since)
    }
}

/// Why an offer did not match, gate by gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    Paused,
    NotValidYet,
    Expired,
    TopicOptOut,
    ChainNotMet,
    AfterNegative,
    PerCustomerLimit,
    Condition,
    NoVariant,
    NoChannel,
    Budget,
}

impl Gate {
    pub fn describe(&self) -> &'static str {
        match self {
            Gate::Paused => "paused",
            Gate::NotValidYet => "not valid yet",
            Gate::Expired => "no longer valid",
            Gate::TopicOptOut => "the customer opted out of its topic",
            Gate::ChainNotMet => "the chained offer's response is missing",
            Gate::AfterNegative => "blocked after a negative response",
            Gate::PerCustomerLimit => "per-customer limit reached",
            Gate::Condition => "`when` is false",
            Gate::NoVariant => "no variant's condition holds",
            Gate::NoChannel => "no channel reaches the customer",
            Gate::Budget => "budget spent",
        }
    }
}

/// The customer's list preference `name` (a list, or a comma-separated string).
fn pref_list(customer: &Customer, name: &str) -> Vec<String> {
    list_of(&customer.pref_value(name))
}

/// A preference's items: a list, or a comma-separated string (blanks trimmed, empty
/// items dropped).
pub(crate) fn list_of(value: &Value) -> Vec<String> {
    match value {
        Value::List(items) => items.iter().map(Value::to_key).collect(),
        Value::Str(s) => s
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

/// The first of the offer's channels the customer has a contact for and did not opt out
/// of: by `opt_out_channels`, or by `opt_out_<channel>: true` (what the de-tokenizer
/// sends after a STOP reply or a hard bounce, which leaves her other opt-outs alone).
pub(crate) fn pick_channel(offer: &Offer, customer: &Customer) -> Option<Channel> {
    let opted_out = pref_list(customer, "opt_out_channels");
    offer.channels.iter().copied().find(|c| {
        customer.contacts.contains(&c.contact_kind())
            && !opted_out.iter().any(|o| o == c.as_str())
            && customer.pref_value(&format!("opt_out_{}", c.as_str())) != Value::Bool(true)
    })
}

/// The variant for (token, offer): a fixed point in [0, total weight) of the
/// variants whose condition holds, so the choice is stable and follows the weights.
pub(crate) fn pick_variant<'o>(offer: &'o Offer, token: &Token, scope: &CustomerScope<'_>) -> Option<&'o Variant> {
    let eligible: Vec<&Variant> = offer
        .variants
        .iter()
        .filter(|v| v.weight > 0 && v.when.as_ref().is_none_or(|w| w.eval_bool(scope)))
        .collect();
    let total: u64 = eligible.iter().map(|v| u64::from(v.weight)).sum();
    if total == 0 {
        return None;
    }
    let digest = Sha256::new()
        .chain_update(token.as_str())
        .chain_update([0])
        .chain_update(&offer.name)
        .finalize();
    let mut point = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) % total;
    for v in eligible {
        if point < u64::from(v.weight) {
            return Some(v);
        }
        point -= u64::from(v.weight);
    }
    None
}

/// Every gate but the budget, in order; the chosen variant and channel when all pass.
pub(crate) fn gates<'o>(
    offer: &'o Offer,
    token: &Token,
    scope: &CustomerScope<'_>,
) -> Result<(&'o Variant, Channel), Gate> {
    let now = scope.now();
    let customer = scope.customer;
    if offer.paused {
        return Err(Gate::Paused);
    }
    if offer.valid_from.is_some_and(|f| now < f) {
        return Err(Gate::NotValidYet);
    }
    if offer.valid_before.is_some_and(|b| now >= b) {
        return Err(Gate::Expired);
    }
    if let Some(topic) = &offer.topic
        && pref_list(customer, "opt_out_topics").contains(topic)
    {
        return Err(Gate::TopicOptOut);
    }
    if let Some(a) = &offer.after
        && !scope.responded(&a.offer, &a.response, a.within)
    {
        return Err(Gate::ChainNotMet);
    }
    if let Some(cooldown) = offer.after_negative
        && scope.responded(&offer.name, "negative", cooldown)
    {
        return Err(Gate::AfterNegative);
    }
    if let Some((k, period)) = offer.per_customer {
        let since = (now - period).timestamp_micros();
        let recent = customer
            .sent
            .iter()
            .filter(|s| s.offer == offer.name && s.at > since)
            .count();
        if recent >= k as usize {
            return Err(Gate::PerCustomerLimit);
        }
    }
    if offer.when.as_ref().is_some_and(|w| !w.eval_bool(scope)) {
        return Err(Gate::Condition);
    }
    let channel = pick_channel(offer, customer).ok_or(Gate::NoChannel)?;
    let variant = pick_variant(offer, token, scope).ok_or(Gate::NoVariant)?;
    Ok((variant, channel))
}

/// What triggered a match: an event (its id), or a sweep (`sweep:` + its instant).
struct Trigger {
    id: String,
    event: Option<persona_event::EventId>,
}

/// Whether the customer is in the offer's control group: a fixed point in [0, 10000)
/// per (token, offer), below the control share in basis points. (Another salt than the
/// variant's, so the groups do not line up with variants.)
pub fn in_control(offer: &Offer, token: &Token) -> bool {
    if offer.control_bp == 0 {
        return false;
    }
    let digest = Sha256::new()
        .chain_update(b"control")
        .chain_update([0])
        .chain_update(token.as_str())
        .chain_update([0])
        .chain_update(&offer.name)
        .finalize();
    let point = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) % 10_000;
    point < u64::from(offer.control_bp)
}

/// How arbitration treats a budgeted offer: a decision takes a unit of it, a what-if
/// only looks whether one is left.
#[derive(Clone, Copy)]
enum Budget {
    Take,
    Look,
}

/// What a customer's actor would decide for an event, without recording it.
#[derive(Clone, Debug, PartialEq)]
pub enum WhatIf {
    /// No offer.
    None,
    /// This offer would go out now.
    Send(Match),
    /// She is in the offer's control group: it would be recorded, not sent.
    Control(Sent),
    /// The contact policy would defer it to `due` (microseconds).
    Deferred(Match, i64),
}

/// The offer a triggering event wins, by arbitration: the highest priority among the
/// offers passing their gates, then the largest `value` (null last), then the name;
/// one whose budget is spent gives way to the next. A control-group customer wins
/// no budget: her match is recorded, not delivered.
fn arbitrate<'e>(
    engine: &'e Engine,
    token: &Token,
    kind: &str,
    scope: &CustomerScope<'_>,
    budget: Budget,
) -> Option<(&'e Offer, Variant, Channel, bool)> {
    let mut tier: Vec<(usize, &Offer, &Variant, Channel, Option<f64>)> = Vec::new();
    let mut offers = engine.catalog.triggered_by(kind).peekable();
    while let Some((i, offer)) = offers.next() {
        if let Ok((variant, channel)) = gates(offer, token, scope) {
            let value = offer.value.as_ref().and_then(|v| v.eval(scope).as_f64());
            tier.push((i, offer, variant, channel, value));
        }
        let tier_ends = offers.peek().is_none_or(|(_, next)| next.priority != offer.priority);
        if !tier_ends || tier.is_empty() {
            continue;
        }
        // Stable: equal values keep the name order.
        tier.sort_by(|a, b| match (a.4, b.4) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        for &(i, offer, variant, channel, _) in &tier {
            if in_control(offer, token) {
                return Some((offer, variant.clone(), channel, true));
            }
            let left = match budget {
                Budget::Take => engine.catalog.take_budget(i),
                Budget::Look => engine.catalog.has_budget(i),
            };
            if left {
                return Some((offer, variant.clone(), channel, false));
            }
        }
        tier.clear();
    }
    None
}

/// `mt_` + 128 bits of SHA-256 over (token, offer, trigger).
pub fn match_id(token: &Token, offer: &str, trigger: &str) -> MatchId {
    let digest = Sha256::new()
        .chain_update(token.as_str())
        .chain_update([0])
        .chain_update(offer)
        .chain_update([0])
        .chain_update(trigger)
        .finalize();
    MatchId::from_bytes(digest[..16].try_into().expect("16 bytes"))
}

impl Customer {
    /// Runs the offers `event` triggers, after the event was applied. At most one
    /// match; it is recorded in the customer's history. Under a contact policy, a
    /// match that may not go out now is kept as a reminder (see
    /// [`Customer::release_due`]) and `None` is returned; when the day's quota is
    /// spent, no offer is evaluated at all.
    pub fn decide(&mut self, engine: &Engine, token: &Token, event: &Event) -> Option<MatchMessage> {
        let now = self.features.view(&engine.features, None).at();
        let allowed = self.contact_allowed(engine, now)?;
        let chosen = {
            let scope = CustomerScope::new(engine, self, Some(event), None);
            arbitrate(engine, token, &event.kind, &scope, Budget::Take)
        };
        let (offer, variant, channel, control) = chosen?;
        let trigger = Trigger {
            id: event.id.as_str().to_owned(),
            event: Some(event.id.clone()),
        };
        self.emit(token, offer, variant, channel, control, now, allowed, trigger)
    }

    /// What [`Customer::decide`] would give for `event` after applying it, with
    /// nothing recorded and no budget taken: the event counts only when it comes
    /// through the bus. An event that changes only her features is applied and undone
    /// in place (the cost is the features it reads, not her whole state); one that
    /// changes her profile, preferences or responses, or a backfill run's, is tried
    /// on a copy. Her state is the same afterwards.
    pub fn what_if(&mut self, engine: &Engine, token: &Token, event: &Event) -> WhatIf {
        let in_place = engine.backfill.is_none()
            && !matches!(
                event.kind.as_str(),
                kinds::PROFILE | kinds::PREFERENCE | kinds::OFFER_RESPONSE
            );
        if !in_place {
            let mut copy = self.clone();
            copy.apply(engine, event);
            return copy.what_if_applied(engine, token, event);
        }
        let undo = (!self.has_applied(event)).then(|| self.features.apply_undoable(&engine.features, event));
        let out = self.what_if_applied(engine, token, event);
        if let Some(undo) = undo {
            self.features.undo(undo);
        }
        out
    }

    fn what_if_applied(&self, engine: &Engine, token: &Token, event: &Event) -> WhatIf {
        let now = self.features.view(&engine.features, None).at();
        let Some(allowed) = self.contact_allowed(engine, now) else {
            return WhatIf::None;
        };
        let chosen = {
            let scope = CustomerScope::new(engine, self, Some(event), None);
            arbitrate(engine, token, &event.kind, &scope, Budget::Look)
        };
        let Some((offer, variant, channel, control)) = chosen else {
            return WhatIf::None;
        };
        if control {
            return WhatIf::Control(Sent {
                offer: offer.name.clone(),
                variant: variant.name,
                channel,
                at: now.timestamp_micros(),
                control: true,
            });
        }
        let decision = Match {
            match_id: match_id(token, &offer.name, event.id.as_str()),
            token: token.clone(),
            offer: offer.name.clone(),
            variant: variant.name,
            channel,
            ts: now,
            event_id: Some(event.id.clone()),
        };
        match allowed {
            Some(Allowed::At(due)) => WhatIf::Deferred(Match { ts: due, ..decision }, due.timestamp_micros()),
            _ => WhatIf::Send(decision),
        }
    }

    /// A scheduled sweep of `offer` for this customer at `at` (at the earliest her
    /// clock): the offer alone, with no triggering event; `match_id` from (token,
    /// offer, `sweep:` + the instant). A sweep already run for her (a replay) decides
    /// nothing again.
    pub fn sweep(&mut self, engine: &Engine, token: &Token, offer: &str, at: DateTime<Utc>) -> Option<MatchMessage> {
        let trigger = format!("sweep:{}", persona_event::time::format_ts(&at));
        let seen = fnv1a64(format!("{offer}\0{trigger}").as_bytes());
        if !self.note_applied(seen) {
            return None;
        }
        let (i, offer) = engine
            .catalog
            .offers()
            .iter()
            .enumerate()
            .find(|(_, o)| o.name == offer)?;
        let now = self.features.view(&engine.features, Some(at)).at();
        let allowed = self.contact_allowed(engine, now)?;
        let chosen = {
            let scope = CustomerScope::new(engine, self, None, Some(now));
            let (variant, channel) = gates(offer, token, &scope).ok()?;
            let control = in_control(offer, token);
            (control || engine.catalog.take_budget(i)).then(|| (variant.clone(), channel, control))
        };
        let (variant, channel, control) = chosen?;
        let trigger = Trigger {
            id: trigger,
            event: None,
        };
        self.emit(token, offer, variant, channel, control, now, allowed, trigger)
    }

    /// When the contact policy lets a match found `now` go out: `None` when the day's
    /// quota is spent (nothing is to be decided), else `Some(None)` without a policy.
    fn contact_allowed(&self, engine: &Engine, now: DateTime<Utc>) -> Option<Option<Allowed>> {
        let Some(p) = &engine.policy else {
            return Some(None);
        };
        let days = self.preferred_days(p);
        match p.allowed(now, engine.policy_timezone(), &days, &self.delivered) {
            Allowed::Capped => None,
            other => Some(Some(other)),
        }
    }

    /// Records a decided match; returns it when it goes out now, keeps it as a
    /// reminder when the policy defers it, and keeps only the record for the control
    /// group.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        token: &Token,
        offer: &Offer,
        variant: Variant,
        channel: Channel,
        control: bool,
        now: DateTime<Utc>,
        allowed: Option<Allowed>,
        trigger: Trigger,
    ) -> Option<MatchMessage> {
        self.record_sent(Sent {
            offer: offer.name.clone(),
            variant: variant.name.clone(),
            channel,
            at: now.timestamp_micros(),
            control,
        });
        if control {
            return None;
        }
        let mut message = MatchMessage {
            decision: Match {
                match_id: match_id(token, &offer.name, &trigger.id),
                token: token.clone(),
                offer: offer.name.clone(),
                variant: variant.name,
                channel,
                ts: now,
                event_id: trigger.event,
            },
            title: offer.title.clone(),
            message: variant.message,
        };
        if let Some(Allowed::At(due)) = allowed {
            message.decision.ts = due;
            self.defer(due.timestamp_micros(), message);
            return None;
        }
        self.record_delivered(now.timestamp_micros());
        Some(message)
    }

    /// The deferred matches due by `until`, earliest first, each with its due time as
    /// `ts`. One that finds its day's quota spent moves to the next allowed day.
    pub fn release_due(&mut self, engine: &Engine, until: DateTime<Utc>) -> Vec<MatchMessage> {
        let until = until.timestamp_micros();
        let tz = engine.policy_timezone();
        let mut out = Vec::new();
        while let Some(first) = self.pending.first().filter(|p| p.due <= until) {
            let due = first.due;
            let at = DateTime::from_timestamp_micros(due).unwrap_or(DateTime::UNIX_EPOCH);
            if let Some(p) = &engine.policy
                && let Some(cap) = p.max_per_day
                && p.sent_on(at, tz, &self.delivered) >= cap as usize
            {
                let days = self.preferred_days(p);
                let later = p.next_day(at, tz, &days);
                let mut moved = self.pending.remove(0).into_message();
                moved.decision.ts = later;
                self.defer(later.timestamp_micros(), moved);
                continue;
            }
            let released = self.pending.remove(0);
            self.record_delivered(due);
            out.push(released.into_message());
        }
        out
    }

    fn defer(&mut self, due: i64, message: MatchMessage) {
        let at = self.pending.partition_point(|p| p.due <= due);
        self.pending.insert(at, Pending::new(due, message));
    }

    /// Her preferred weekdays, when the policy respects them.
    fn preferred_days(&self, policy: &ContactPolicy) -> Vec<chrono::Weekday> {
        if policy.preferred_days {
            weekdays(&self.pref_value("preferred_days"))
        } else {
            Vec::new()
        }
    }
}
