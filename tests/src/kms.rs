//! The test KMS: moto's server, started by `./scripts/test`, which names it in
//! `PERSONA_TEST_KMS_ENDPOINT`. Tests that need it fail without it, never skip.

use std::process::Command;

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};

/// The region the tests use; moto accepts any.
pub const REGION: &str = "us-east-1";

/// The KMS endpoint of the test run; panics with what to do when there is none.
pub fn endpoint() -> String {
    std::env::var("PERSONA_TEST_KMS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "PERSONA_TEST_KMS_ENDPOINT is unset: the aws KMS tests need a KMS endpoint. \
             Run ./scripts/test, which installs and starts one (moto) and sets it."
        )
    })
}

/// A new symmetric key on the test KMS, made with CreateKey; returns its id.
pub fn create_key() -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "persona-tests"))
        .build();
    let client = aws_sdk_kms::Client::from_conf(config);
    runtime.block_on(async {
        let out = client
            .create_key()
            .description("persona end-to-end test key")
            .send()
            .await
            .expect("CreateKey on the test KMS");
        out.key_metadata().expect("key metadata").key_id().to_owned()
    })
}

/// Points a `persona` command at the test KMS through the environment, as a
/// deployment would: `PERSONA_KMS*`, and dummy credentials for the standard AWS
/// chain (any other AWS settings of the caller are removed).
pub fn use_aws_kms(command: &mut Command, key_id: &str) {
    for var in [
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_DEFAULT_REGION",
    ] {
        command.env_remove(var);
    }
    command
        .env("PERSONA_KMS", "aws")
        .env("PERSONA_KMS_KEY_ID", key_id)
        .env("PERSONA_KMS_ENDPOINT", endpoint())
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true");
}
