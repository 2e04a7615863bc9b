//! The behavioral model: the FeatureSet spec (DESIGN.md §3), compiled into a runtime
//! form, and the per-customer incremental state that an actor updates on every event
//! and evaluates as of an instant. Plain Rust, no I/O.

mod agg;
pub mod batch;
mod codec;
mod set;
pub mod spec;
mod state;
mod window;

pub use agg::Agg;
pub use set::{DEFAULT_MAX_KEYS, Derived, Feature, FeatureSet, Selection};
pub use spec::FeatureSetDocument;
pub use state::{FeatureState, FeatureView, Undo};
pub use window::{Tiles, Window};

/// What can go wrong with a FeatureSet or a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of the spec is invalid, or its expression does not compile.
    #[error(transparent)]
    Field(#[from] persona_expr::FieldError),
    /// The YAML does not parse into a FeatureSet.
    #[error("{0}")]
    Yaml(#[source] serde_yaml::Error),
    #[error("unreadable feature snapshot: {0}")]
    Snapshot(String),
}

impl FeatureSetDocument {
    /// Parses one YAML document.
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        serde_yaml::from_str(text).map_err(Error::Yaml)
    }
}

#[cfg(test)]
mod tests;
