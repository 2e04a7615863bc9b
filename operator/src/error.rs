//! The operator's one error type.

/// What can go wrong while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes api: {0}")]
    Kube(#[source] kube::Error),
    #[error("{kind} has no {field}")]
    MissingField { kind: &'static str, field: &'static str },
    #[error("serializing an object: {0}")]
    Serialize(#[source] serde_json::Error),
}

impl Error {
    /// A short, bounded label for the reconcile-failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::MissingField { .. } => "missing_field",
            Error::Serialize(_) => "serialize",
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
