//! The `local` KMS: a master key in a file. For development and the embedded demo
//! only; a real deployment uses a KMS whose keys never leave it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use super::{DataKey, EncryptionContext, Kms, WrappedKey, context_bytes};
use crate::{Error, Result};

const MASTER_FILE: &str = "master.key";
const FORMAT: u8 = 1;
const NONCE_LEN: usize = 12;

/// A KMS whose master key is a 32-byte file (`master.key`, mode 0600) in a directory.
/// Wrapping is AES-256-GCM under the master key with the encryption context as
/// associated data.
pub struct LocalKms {
    path: PathBuf,
    master: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for LocalKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKms")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LocalKms {
    /// Opens the master key in `dir`, creating the directory and a fresh random key
    /// (mode 0600) when there is none.
    pub fn open(dir: &Path) -> Result<Self> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(MASTER_FILE);
        let mut master = Zeroizing::new([0u8; 32]);
        match fs::read(&path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                if bytes.len() != 32 {
                    return Err(Error::MasterKey { path });
                }
                master.copy_from_slice(&bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                OsRng.fill_bytes(master.as_mut());
                write_private(&path, master.as_ref()).map_err(io(&path))?;
            }
            Err(e) => return Err(io(&path)(e)),
        }
        tracing::warn!(
            path = %path.display(),
            "LOCAL KMS IN USE: the master key is a plain file; for development and the \
             embedded demo only, never for customer data in production (use the aws kms provider)"
        );
        Ok(Self { path, master })
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.master.as_ref().into())
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

impl Kms for LocalKms {
    fn provider(&self) -> &'static str {
        "local"
    }

    fn generate_data_key(&self, context: &EncryptionContext) -> Result<(DataKey, WrappedKey)> {
        let mut plain = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(plain.as_mut());
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let aad = context_bytes(context);
        let sealed = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_ref(),
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Kms {
                message: "local kms cannot wrap a data key".to_owned(),
            })?;
        let mut wrapped = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        wrapped.push(FORMAT);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&sealed);
        Ok((DataKey::from_bytes(*plain), WrappedKey::from_bytes(wrapped)))
    }

    fn decrypt(&self, wrapped: &WrappedKey, context: &EncryptionContext) -> Result<DataKey> {
        let bytes = wrapped.as_bytes();
        if bytes.len() < 1 + NONCE_LEN || bytes[0] != FORMAT {
            return Err(Error::Unwrap);
        }
        let (nonce, sealed) = bytes[1..].split_at(NONCE_LEN);
        let aad = context_bytes(context);
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
                .map_err(|_| Error::Unwrap)?,
        );
        let key: [u8; 32] = plain.as_slice().try_into().map_err(|_| Error::Unwrap)?;
        Ok(DataKey::from_bytes(key))
    }
}
