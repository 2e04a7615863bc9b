//! Choosing the KMS that wraps the vault's data keys, for every command that opens
//! the vault: `--kms local|aws` and the aws provider's key, endpoint and region, each
//! also read from the environment.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use persona_privacy::kms::{AwsKms, AwsKmsConfig, Kms, LocalKms};
use persona_privacy::{CacheLimits, Vault, vault};

/// The KMS providers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Provider {
    /// A master key file in DATA/trusted/kms: development and the demo only.
    Local,
    /// AWS KMS, or any endpoint that speaks its API.
    Aws,
}

impl Provider {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Provider::Local => "local",
            Provider::Aws => "aws",
        }
    }
}

/// Which KMS wraps the vault's data keys, and how long unwrapped keys are cached.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Key management")]
pub(crate) struct KmsArgs {
    /// KMS provider: `local` keeps a master key in a file beside the data
    /// (development and the demo only); `aws` uses AWS KMS or a KMS-compatible
    /// endpoint, with credentials from the standard AWS chain (environment, profile,
    /// SSO, web identity, instance role).
    #[arg(long = "kms", env = "PERSONA_KMS", value_enum, default_value_t = Provider::Local)]
    pub(crate) provider: Provider,
    /// With --kms aws: the KMS key that wraps data keys (key id, ARN or alias/NAME).
    #[arg(long, env = "PERSONA_KMS_KEY_ID")]
    pub(crate) kms_key_id: Option<String>,
    /// With --kms aws: an endpoint instead of the region's (a VPC endpoint, or a
    /// KMS-compatible service).
    #[arg(long, env = "PERSONA_KMS_ENDPOINT")]
    pub(crate) kms_endpoint: Option<String>,
    /// With --kms aws: the region (default: the AWS config chain's).
    #[arg(long, env = "AWS_REGION")]
    pub(crate) kms_region: Option<String>,
    /// Longest time an unwrapped data key stays in memory before it is fetched from
    /// the KMS again (`90s`, `15m`, `1h`).
    #[arg(long, env = "PERSONA_KEY_CACHE_MAX_AGE", default_value = "15m", value_parser = parse_max_age)]
    pub(crate) key_cache_max_age: Duration,
    /// Most uses of an unwrapped data key (one record sealed or opened, one MAC)
    /// before it is fetched again; a sealing key is replaced by a new version.
    #[arg(long, env = "PERSONA_KEY_CACHE_MAX_USES", default_value_t = CacheLimits::DEFAULT_MAX_USES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) key_cache_max_uses: u64,
}

impl KmsArgs {
    /// The chosen provider. The local one keeps its master key in `trusted`/kms.
    pub(crate) fn connect(&self, trusted: &Path) -> Result<Arc<dyn Kms>> {
        match self.provider {
            Provider::Local => {
                let kms = LocalKms::open(&trusted.join("kms")).context("opening the local KMS")?;
                Ok(Arc::new(kms))
            }
            Provider::Aws => {
                let key_id = self
                    .kms_key_id
                    .clone()
                    .context("--kms aws needs the KMS key: give --kms-key-id or set PERSONA_KMS_KEY_ID")?;
                let config = AwsKmsConfig {
                    region: self.kms_region.clone(),
                    endpoint: self.kms_endpoint.clone(),
                    ..AwsKmsConfig::new(key_id)
                };
                let kms = AwsKms::connect(config).context("setting up the aws KMS client")?;
                tracing::info!(key_id = kms.key_id(), region = kms.region(), "kms: aws");
                Ok(Arc::new(kms))
            }
        }
    }

    /// Opening the local KMS makes a master key when there is none. Beside a vault
    /// whose keys another provider wrapped, that file would be useless and
    /// misleading: say which provider to use instead.
    fn refuse_new_local_key_for_another_provider(&self, trusted: &Path) -> Result<()> {
        if self.provider != Provider::Local || trusted.join("kms").join("master.key").exists() {
            return Ok(());
        }
        match vault::stored_provider(&trusted.join("vault")).context("reading the vault")? {
            Some(stored) if stored != Provider::Local.as_str() => bail!(
                "the vault's keys are wrapped by the `{stored}` kms provider: choose it with --kms {stored} (or PERSONA_KMS)"
            ),
            _ => Ok(()),
        }
    }

    pub(crate) fn limits(&self) -> CacheLimits {
        CacheLimits {
            max_age: self.key_cache_max_age,
            max_uses: self.key_cache_max_uses,
        }
    }

    /// The vault of `data` (DATA/trusted/vault) with this KMS, the erasure journal
    /// applied.
    pub(crate) fn open_vault(&self, data: &Path) -> Result<Arc<Vault>> {
        let trusted = data.join("trusted");
        self.refuse_new_local_key_for_another_provider(&trusted)?;
        let kms = self.connect(&trusted)?;
        let vault = Vault::open_with(&trusted.join("vault"), kms, self.limits()).context("opening the vault")?;
        // Whatever opens the vault sees every erasure in effect (a crash or a restore
        // cannot bring a forgotten customer back).
        crate::vault::enforce_erasures(data, &vault)?;
        Ok(Arc::new(vault))
    }
}

fn parse_max_age(s: &str) -> Result<Duration, String> {
    match crate::args::parse_duration(s)? {
        d if d.is_zero() => Err("the key cache's max age must be more than 0".to_owned()),
        d => Ok(d),
    }
}
