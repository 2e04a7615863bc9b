//! Token -> customer key and contacts, just in time. In the service the vault belongs
//! to the gateway (sled lets one process open it): the de-tokenizer asks it for the
//! token's records over mutual-TLS gRPC, gets them still sealed, and opens them with
//! its own KMS Decrypt right on vault keys ([`Opener`]).

use std::sync::Arc;

use persona_event::{ContactKind, Token};
use persona_privacy::{Opened, Opener, SealedRecord, Vault, WrappedKey};
use persona_proto::SealedVaultClient;
use persona_proto::v1::SealedRequest;
use tonic::transport::Channel;

/// Where records come from.
#[derive(Debug)]
pub enum Resolver {
    /// A vault this process holds (the embedded mode, tools).
    Local(Arc<Vault>),
    /// The gateway's `SealedVault` service, records opened here.
    Remote(Box<Remote>),
}

/// The gateway's `SealedVault` client and the opener of what it sends.
#[derive(Debug)]
pub struct Remote {
    pub client: SealedVaultClient<Channel>,
    pub opener: Opener,
}

/// Why a token could not be resolved now. The message names no value.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The vault service is unreachable or failing: try again later.
    #[error("vault service unavailable: {0}")]
    Unavailable(String),
    /// A record does not open (wrong KMS, a tampered record, a refused Decrypt).
    #[error("cannot open the vault record")]
    Open(#[source] persona_privacy::Error),
}

impl Resolver {
    /// The customer key and the contacts of `kinds` she has; `None` for an unknown or
    /// forgotten token.
    pub async fn resolve(&self, token: &Token, kinds: &[ContactKind]) -> Result<Option<Opened>, ResolveError> {
        match self {
            Resolver::Local(vault) => {
                let Some(customer_key) = vault.resolve(token).map_err(ResolveError::Open)? else {
                    return Ok(None);
                };
                let mut contacts = Vec::new();
                for &kind in kinds {
                    if let Some(v) = vault.contact(token, kind).map_err(ResolveError::Open)? {
                        contacts.push((kind, v));
                    }
                }
                Ok(Some(Opened { customer_key, contacts }))
            }
            Resolver::Remote(remote) => {
                let Remote { client, opener } = &**remote;
                let reply = client
                    .clone()
                    .sealed(SealedRequest {
                        token: token.to_string(),
                        contact_kinds: kinds.iter().map(|k| k.as_str().to_owned()).collect(),
                    })
                    .await
                    .map_err(|s| ResolveError::Unavailable(format!("{:?}: {}", s.code(), s.message())))?
                    .into_inner();
                if !reply.found {
                    return Ok(None);
                }
                let mut record = SealedRecord {
                    reverse: reply.reverse,
                    ..SealedRecord::default()
                };
                for c in reply.contacts {
                    let kind = c.kind.parse::<ContactKind>().map_err(|_| {
                        ResolveError::Unavailable("the vault service sent an unknown contact kind".to_owned())
                    })?;
                    record.contacts.push((kind, c.sealed));
                }
                record.keys = reply
                    .keys
                    .into_iter()
                    .map(|k| (k.version, WrappedKey::from_bytes(k.wrapped)))
                    .collect();
                opener.open(token, &record).map(Some).map_err(ResolveError::Open)
            }
        }
    }

    /// KMS Decrypt calls made by this resolver (remote: its own; local: the vault's).
    pub fn kms_decrypts(&self) -> u64 {
        match self {
            Resolver::Local(vault) => vault.kms_calls().decrypt,
            Resolver::Remote(remote) => remote.opener.kms_decrypts(),
        }
    }
}
