//! The Kubernetes side of persona's cloud zone: the custom resources (PersonaCluster,
//! FeatureSet, Offer, ContactPolicy), the objects a PersonaCluster stands for, the
//! decisions of its reconciler as pure functions, and the controller that applies
//! them with server-side apply.

pub mod autoscale;
pub mod catalog;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod decision;
mod error;
pub mod leader;
pub mod load;
pub mod metrics;
pub mod resources;
#[cfg(test)]
mod testing;

pub use error::{Error, Result};
