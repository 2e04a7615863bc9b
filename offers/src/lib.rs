//! Offers: the Offer spec (DESIGN.md §3), compiled and type-checked against the
//! FeatureSet; the customer model an actor holds; the matching engine that picks at
//! most one offer, variant and channel per event; and explain. Plain Rust, no I/O.

pub mod cron;
mod customer;
mod explain;
mod matching;
mod offer;
mod policy;
pub mod report;
pub mod spec;

use persona_features::{FeatureSet, Selection};

pub use customer::{Customer, Dated, HISTORY_LIMIT, Pending, Response, Sent};
pub use explain::{ClauseOutcome, Explanation};
pub use matching::{Gate, WhatIf, in_control, match_id};
pub use offer::{After, Catalog, OUTCOMES, Offer, Variant, offer_schema};
pub use policy::{Allowed, ContactPolicy, ContactPolicyDocument, ContactPolicySpec, QuietHoursSpec};
pub use spec::OfferDocument;

/// What can go wrong with an offer or a customer snapshot.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of the spec is invalid, or its expression does not compile.
    #[error(transparent)]
    Field(#[from] persona_expr::FieldError),
    #[error("{0}")]
    Yaml(#[source] serde_yaml::Error),
    #[error("unreadable customer snapshot: {0}")]
    Snapshot(String),
    /// `--backfill` names a feature that cannot be backfilled.
    #[error("cannot backfill: {0}")]
    Backfill(String),
}

impl OfferDocument {
    /// Parses one YAML document.
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        serde_yaml::from_str(text).map_err(Error::Yaml)
    }
}

/// The cloud zone's model: the FeatureSet and the offer catalog an actor runs.
#[derive(Debug)]
pub struct Engine {
    pub features: FeatureSet,
    pub catalog: Catalog,
    /// Features this run recomputes from the events it reads, those already applied
    /// included (`persona run --backfill`).
    pub backfill: Option<Selection>,
    /// The cluster's contact policy, if it has one.
    pub policy: Option<ContactPolicy>,
}

impl Engine {
    pub fn new(features: FeatureSet, offers: Vec<Offer>) -> Engine {
        Engine {
            features,
            catalog: Catalog::new(offers),
            backfill: None,
            policy: None,
        }
    }

    /// An engine that contacts customers only as `policy` allows.
    pub fn with_policy(mut self, policy: ContactPolicy) -> Engine {
        self.policy = Some(policy);
        self
    }

    /// The time zone of the contact policy's days and hours: its own, else the
    /// FeatureSet's.
    pub fn policy_timezone(&self) -> chrono_tz::Tz {
        self.policy
            .as_ref()
            .and_then(|p| p.timezone)
            .unwrap_or_else(|| self.features.timezone())
    }

    /// An engine whose customers recompute the named features from the events they
    /// receive: each customer's named features are emptied when she is first
    /// activated, then every event counts for them once, whether or not it was applied
    /// before. The other features, offers and history see only new events as always.
    pub fn with_backfill<S: AsRef<str>>(mut self, names: &[S]) -> Result<Engine, Error> {
        let selection = self.features.select(names).map_err(Error::Backfill)?;
        self.backfill = Some(selection);
        Ok(self)
    }
}

#[cfg(test)]
mod tests;
