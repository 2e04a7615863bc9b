//! The `aws` KMS: AWS KMS, or any endpoint that speaks its API, through aws-sdk-kms.
//! Data keys are made by `GenerateDataKey` (AES_256) and unwrapped by `Decrypt`, both
//! under the vault's encryption context, so a KMS key policy can grant Decrypt per
//! purpose (`kms:EncryptionContext:purpose`).
//!
//! The [`Kms`] trait is synchronous and its callers may sit inside a tokio runtime
//! (the de-tokenizer resolves from an async task). `Runtime::block_on` panics there,
//! so the SDK runs on a small runtime owned by the provider and a caller waits for
//! the answer on a plain channel, which works from any thread.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, ProvideCredentials, Region};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

use super::{DataKey, EncryptionContext, Kms, WrappedKey};
use crate::{Error, Result};

/// How the provider reaches the KMS.
#[derive(Clone, Debug)]
pub struct AwsKmsConfig {
    /// The KMS key that wraps data keys: a key id, an ARN or `alias/NAME`.
    pub key_id: String,
    /// The region. `None` takes the standard chain's (`AWS_REGION`, the profile).
    pub region: Option<String>,
    /// An endpoint to use instead of the region's public one: a VPC endpoint, or a
    /// KMS-compatible service (`http://127.0.0.1:4566`).
    pub endpoint: Option<String>,
    pub credentials: AwsCredentials,
    /// The longest one KMS call may take, retries included.
    pub timeout: Duration,
}

impl AwsKmsConfig {
    /// A configuration for `key_id` with the standard credential and region chains.
    pub fn new(key_id: impl Into<String>) -> Self {
        Self {
            key_id: key_id.into(),
            region: None,
            endpoint: None,
            credentials: AwsCredentials::Chain,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Where the provider's AWS credentials come from.
#[derive(Clone, Default)]
pub enum AwsCredentials {
    /// The standard chain of aws-config: environment, profile files, SSO, web
    /// identity, container and instance roles. What a deployment uses.
    #[default]
    Chain,
    /// A fixed key pair, for KMS-compatible endpoints that want one and for tests
    /// against a local KMS. Never a real AWS key in code or on a command line.
    Static {
        access_key_id: String,
        secret_access_key: Zeroizing<String>,
    },
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Chain => f.write_str("Chain"),
            Self::Static { access_key_id, .. } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"**REDACTED**")
                .finish(),
        }
    }
}

/// The `aws` provider. Cheap to share (`Arc<dyn Kms>`); its runtime stops when the
/// provider is dropped, from any context.
pub struct AwsKms {
    key_id: String,
    region: String,
    endpoint: Option<String>,
    client: aws_sdk_kms::Client,
    runtime: OwnRuntime,
    /// How long a caller waits for an answer before giving up on it.
    wait: Duration,
}

impl fmt::Debug for AwsKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKms")
            .field("key_id", &self.key_id)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl AwsKms {
    /// Resolves the region and the credentials chain and builds the client. Makes no
    /// KMS call: a wrong key id or missing rights show on the first use.
    pub fn connect(config: AwsKmsConfig) -> Result<Self> {
        if config.key_id.trim().is_empty() {
            return Err(config_error("the aws provider needs a key id"));
        }
        if let Some(endpoint) = &config.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(config_error("the kms endpoint must be an http:// or https:// url"));
        }
        let runtime = OwnRuntime::start()?;
        // The SDK enforces config.timeout per call; the margin covers loading credentials.
        let wait = config.timeout + Duration::from_secs(10);
        let (key_id, endpoint) = (config.key_id.clone(), config.endpoint.clone());
        let (client, region) = runtime.wait("connect", wait, load_client(config))?;
        Ok(Self {
            key_id,
            region,
            endpoint,
            client,
            runtime,
            wait,
        })
    }

    /// The KMS key that wraps data keys.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The region the client calls.
    pub fn region(&self) -> &str {
        &self.region
    }
}

/// A runtime of the provider's own: one worker is plenty for a call at a time per
/// caller, and it cannot be the caller's runtime, so waiting on it never deadlocks.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    fn start() -> Result<Self> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("persona-kms")
            .enable_all()
            .build()
            .map(|rt| Self(Some(rt)))
            .map_err(|_| config_error("cannot start the kms client's runtime"))
    }

    /// Runs `fut` on this runtime and waits for it on the calling thread, which may be
    /// a plain thread or one of another runtime's workers.
    fn wait<T, F>(&self, operation: &'static str, wait: Duration, fut: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let Some(runtime) = &self.0 else {
            unreachable!("the runtime is only taken on drop")
        };
        let (tx, rx) = mpsc::sync_channel(1);
        runtime.spawn(async move {
            // The caller may have given up waiting; then nobody needs the answer.
            let _ = tx.send(fut.await);
        });
        match rx.recv_timeout(wait) {
            Ok(answer) => answer,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::KmsUnavailable {
                operation,
                reason: "timed out",
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::KmsUnavailable {
                operation,
                reason: "the kms client stopped",
            }),
        }
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        // Dropping a runtime inside another runtime panics; this does not block.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

async fn load_client(config: AwsKmsConfig) -> Result<(aws_sdk_kms::Client, String)> {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(10).min(config.timeout))
        .operation_timeout(config.timeout)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
    if let Some(region) = config.region {
        loader = loader.region(Region::new(region));
    }
    if let AwsCredentials::Static {
        access_key_id,
        secret_access_key,
    } = config.credentials
    {
        loader = loader.credentials_provider(Credentials::new(
            access_key_id,
            secret_access_key.as_str(),
            None,
            None,
            "persona-static",
        ));
    }
    let shared = loader.load().await;
    let region = shared
        .region()
        .map(|r| r.as_ref().to_owned())
        .ok_or_else(|| config_error("no aws region: give one (--kms-region) or set AWS_REGION"))?;
    // Resolve credentials once now: without any, every call would fail later with
    // a vaguer error.
    let credentials = shared
        .credentials_provider()
        .ok_or_else(|| config_error(NO_CREDENTIALS))?;
    if credentials.provide_credentials().await.is_err() {
        return Err(config_error(NO_CREDENTIALS));
    }
    // The endpoint goes on the KMS client only: an STS call made by the credentials
    // chain (web identity, assumed roles) keeps its own endpoint.
    let mut kms = aws_sdk_kms::config::Builder::from(&shared);
    if let Some(endpoint) = config.endpoint {
        kms = kms.endpoint_url(endpoint);
    }
    Ok((aws_sdk_kms::Client::from_conf(kms.build()), region))
}

impl Kms for AwsKms {
    fn provider(&self) -> &'static str {
        "aws"
    }

    fn generate_data_key(&self, context: &EncryptionContext) -> Result<(DataKey, WrappedKey)> {
        const OP: &str = "GenerateDataKey";
        let request = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(as_map(context)));
        let out = self.runtime.wait(OP, self.wait, async move {
            request.send().await.map_err(|e| sdk_error(OP, e))
        })?;
        let wrapped = out.ciphertext_blob.ok_or(Error::KmsUnavailable {
            operation: OP,
            reason: "the answer has no wrapped key",
        })?;
        Ok((
            data_key(OP, out.plaintext)?,
            WrappedKey::from_bytes(wrapped.into_inner()),
        ))
    }

    fn decrypt(&self, wrapped: &WrappedKey, context: &EncryptionContext) -> Result<DataKey> {
        const OP: &str = "Decrypt";
        // Naming the key makes KMS refuse a blob wrapped by any other key, even one
        // these credentials could decrypt.
        let request = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped.as_bytes().to_vec()))
            .set_encryption_context(Some(as_map(context)));
        let out = self.runtime.wait(OP, self.wait, async move {
            request.send().await.map_err(|e| sdk_error(OP, e))
        })?;
        data_key(OP, out.plaintext)
    }
}

fn as_map(context: &EncryptionContext) -> HashMap<String, String> {
    context.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The plaintext of an answer as a key; the SDK's buffer is wiped on the way.
/// The plaintext data key of a KMS answer, which must hold one of 256 bits.
fn data_key(operation: &'static str, plain: Option<Blob>) -> Result<DataKey> {
    let plain = plain.ok_or(Error::KmsUnavailable {
        operation,
        reason: "the answer has no plaintext key",
    })?;
    let plain = Zeroizing::new(plain.into_inner());
    let mut key = Zeroizing::new([0u8; 32]);
    if plain.len() != key.len() {
        return Err(Error::KmsUnavailable {
            operation,
            reason: "the data key is not 256 bits",
        });
    }
    key.copy_from_slice(&plain);
    Ok(DataKey::from_bytes(*key))
}

const NO_CREDENTIALS: &str = "no aws credentials: the standard chain (environment, profile, SSO, \
                              web identity, container or instance role) gave none";

fn config_error(reason: &str) -> Error {
    Error::KmsConfig {
        reason: reason.to_owned(),
    }
}

/// An SDK error as ours. Only the service's error code and fixed reasons go in: no
/// message text from the wire, and nothing of the request (which holds a wrapped key).
fn sdk_error<E: ProvideErrorMetadata, R>(operation: &'static str, err: SdkError<E, R>) -> Error {
    let reason = match &err {
        SdkError::ServiceError(e) => {
            return match e.err().code() {
                // A wrong encryption context, a tampered blob, another key's blob.
                Some("InvalidCiphertextException" | "IncorrectKeyException") => Error::Unwrap,
                code => Error::KmsRefused {
                    operation,
                    code: safe_code(code),
                },
            };
        }
        SdkError::TimeoutError(_) => "timed out",
        SdkError::DispatchFailure(e) if e.is_timeout() => "timed out",
        SdkError::DispatchFailure(e) if e.is_io() => "cannot connect to the endpoint",
        SdkError::DispatchFailure(_) => "the request could not be sent (credentials?)",
        SdkError::ResponseError(_) => "the answer could not be read",
        SdkError::ConstructionFailure(_) => "the request could not be built",
        _ => "the request failed",
    };
    Error::KmsUnavailable { operation, reason }
}

/// An error code as the service sent it, reduced to the characters error codes use.
fn safe_code(code: Option<&str>) -> String {
    let code: String = code
        .unwrap_or("unknown")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
        .take(64)
        .collect();
    if code.is_empty() { "unknown".to_owned() } else { code }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_credentials_print_redacted() {
        let creds = AwsCredentials::Static {
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: Zeroizing::new("wJalrXUtnFEMI/K7MDENG".to_owned()),
        };
        let shown = format!(
            "{creds:?} {:?}",
            AwsKmsConfig {
                credentials: creds.clone(),
                ..AwsKmsConfig::new("alias/persona")
            }
        );
        assert!(!shown.contains("wJalr"), "{shown}");
        assert!(shown.contains("AKIDEXAMPLE") && shown.contains("**REDACTED**"));
    }

    #[test]
    fn error_codes_are_reduced_to_code_characters() {
        assert_eq!(safe_code(Some("DisabledException")), "DisabledException");
        assert_eq!(safe_code(Some("Bad code <script>\n")), "Badcodescript");
        assert_eq!(safe_code(None), "unknown");
        assert_eq!(safe_code(Some("  ")), "unknown");
        assert_eq!(safe_code(Some(&"x".repeat(500))).len(), 64);
    }

    #[test]
    fn bad_configurations_are_refused_before_any_call() {
        let err = AwsKms::connect(AwsKmsConfig::new(" ")).unwrap_err();
        assert_eq!(err.to_string(), "kms configuration: the aws provider needs a key id");
        let err = AwsKms::connect(AwsKmsConfig {
            endpoint: Some("127.0.0.1:4566".to_owned()),
            ..AwsKmsConfig::new("k")
        })
        .unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
    }
}
