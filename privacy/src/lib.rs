//! The trusted zone's privacy layer: Source specs, scrubbing, the token vault and the
//! KMS seam. Raw customer data enters here; only tokens and non-identifying
//! attributes leave.

#[cfg(feature = "crd")]
pub mod crd;
mod error;
pub mod kms;
mod mac;
mod pii;
pub mod source;
pub mod vault;

pub use error::{Error, Result};
pub use kms::{AwsKms, AwsKmsConfig, DataKey, EncryptionContext, Kms, LocalKms, WrappedKey};
pub use pii::{CustomerKey, Pii};
pub use source::{FieldCounts, RawRecord, Read, Refusal, Scrubbed, Source, SourceReport, SourceSpec, SpecError};
pub use vault::{CacheLimits, Erasure, ErasureJournal, Forgotten, KmsCalls, Opened, Opener, SealedRecord, Vault};
