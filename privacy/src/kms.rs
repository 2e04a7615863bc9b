//! Key management: the small seam between the vault and a KMS. A data key is made by
//! the KMS, stored only wrapped, and unwrapped under the same encryption context.
//! Two providers: [`AwsKms`] (AWS KMS or any endpoint that speaks its API) and
//! [`LocalKms`] (a master key file, for development only).

mod aws;
mod local;

use std::collections::BTreeMap;
use std::fmt;

use zeroize::Zeroize;

use crate::Result;

pub use aws::{AwsCredentials, AwsKms, AwsKmsConfig};
pub use local::LocalKms;

/// Binds a wrapped key to its use, e.g. `{"purpose": "index"}` vs `{"purpose":
/// "vault"}`: a key wrapped under one context does not unwrap under another, so KMS
/// policy can grant Decrypt per purpose.
pub type EncryptionContext = BTreeMap<String, String>;

/// Builds an encryption context from pairs.
pub fn context<const N: usize>(pairs: [(&str, &str); N]) -> EncryptionContext {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// A plaintext 256-bit data key. Lives only in memory, prints redacted, is not
/// `Serialize`, and is zeroized on drop, together with the HMAC midstates derived from
/// it (made on first use as an HMAC key, so each MAC skips the pad blocks).
pub struct DataKey {
    bytes: [u8; 32],
    mac: std::sync::OnceLock<crate::mac::HmacKey>,
}

impl DataKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            bytes,
            mac: std::sync::OnceLock::new(),
        }
    }

    /// The key material, for the cipher or MAC that uses it.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// HMAC-SHA256 under this key of the concatenation of `parts`.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.mac
            .get_or_init(|| crate::mac::HmacKey::new(&self.bytes))
            .mac(parts)
    }
}

impl Clone for DataKey {
    fn clone(&self) -> Self {
        Self::from_bytes(self.bytes)
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(**REDACTED**)")
    }
}

/// A data key as the KMS wrapped it: opaque bytes, safe to store.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey(Vec<u8>);

impl WrappedKey {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedKey({} bytes)", self.0.len())
    }
}

/// A key management service: makes data keys and unwraps them.
///
/// Calls are synchronous: the vault is used from plain threads and from async tasks
/// alike, so a provider that talks to a service runs its I/O on a runtime of its own.
pub trait Kms: Send + Sync + fmt::Debug {
    /// The provider's name (`local`, `aws`). The vault records it with its keys, so
    /// opening a vault with the other provider fails clearly instead of as an unwrap
    /// error on the first record.
    fn provider(&self) -> &'static str;

    /// A fresh data key, in plaintext and wrapped under `context`.
    fn generate_data_key(&self, context: &EncryptionContext) -> Result<(DataKey, WrappedKey)>;

    /// Unwraps a key made by [`Kms::generate_data_key`] under the same `context`.
    fn decrypt(&self, wrapped: &WrappedKey, context: &EncryptionContext) -> Result<DataKey>;
}

/// The context in a canonical byte form (length-prefixed pairs in key order), used as
/// associated data when wrapping.
pub(crate) fn context_bytes(context: &EncryptionContext) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in context {
        for part in [k, v] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_key_is_redacted() {
        let key = DataKey::from_bytes([0x41; 32]);
        let shown = format!("{key:?}");
        assert_eq!(shown, "DataKey(**REDACTED**)");
        assert!(!shown.contains("65"));
    }

    #[test]
    fn context_bytes_are_unambiguous() {
        let a = context([("ab", "c")]);
        let b = context([("a", "bc")]);
        assert_ne!(context_bytes(&a), context_bytes(&b));
    }
}
