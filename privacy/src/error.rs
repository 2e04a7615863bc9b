//! The one error type of the privacy crate. Messages are lowercase and never carry a
//! value read from a record, a key or a contact.

use std::path::PathBuf;

use crate::source::SpecError;

/// What can go wrong in the trusted zone's privacy layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid source spec")]
    Spec(#[from] SpecError),
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read csv file {}", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("invalid file pattern `{pattern}`")]
    Pattern {
        pattern: String,
        #[source]
        source: glob::PatternError,
    },
    #[error("cannot list source files")]
    Glob {
        #[source]
        source: glob::GlobError,
    },
    #[error("vault store error")]
    Store {
        #[from]
        source: sled::Error,
    },
    #[error("master key file {} is not 32 bytes", path.display())]
    MasterKey { path: PathBuf },
    #[error("kms cannot unwrap the data key: wrong key or encryption context")]
    Unwrap,
    #[error("kms provider failed: {message}")]
    Kms { message: String },
    /// The KMS answered and said no (a disabled or unknown key, missing rights). `code`
    /// is the service's error code, never a message that could echo request data.
    #[error("kms {operation} refused: {code}")]
    KmsRefused { operation: &'static str, code: String },
    /// The KMS could not be asked (connection refused, timeout, unreadable answer).
    /// Worth retrying later; nothing was changed.
    #[error("kms {operation} failed: {reason}")]
    KmsUnavailable {
        operation: &'static str,
        reason: &'static str,
    },
    #[error("kms configuration: {reason}")]
    KmsConfig { reason: String },
    #[error("the vault's keys are wrapped by the `{stored}` kms provider, not `{given}`")]
    ProviderMismatch { stored: String, given: String },
    #[error("no vault at {}", path.display())]
    NoVault { path: PathBuf },
    #[error("vault {} is open in another process", path.display())]
    Busy { path: PathBuf },
    #[error("vault {} is not empty (restore over it with force)", path.display())]
    NotEmpty { path: PathBuf },
    #[error("vault backup {}: {reason}", path.display())]
    Backup { path: PathBuf, reason: &'static str },
    #[error("vault cannot seal a record")]
    Seal,
    #[error("vault {what} record is corrupt or sealed with another key")]
    Corrupt { what: &'static str },
    #[error("vault key version {version} for `{purpose}` is missing")]
    MissingKey { purpose: String, version: u32 },
    /// The customer key was forgotten (`persona vault forget`): her records are
    /// refused, never given a token again.
    #[error("the customer was forgotten (right to erasure)")]
    Forgotten,
    /// The erasure journal cannot be trusted; `reason` names the line, never a value.
    #[error("erasure journal {}: {reason}", path.display())]
    Journal { path: PathBuf, reason: String },
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
