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

/// A TCP proxy in front of the test KMS that can be cut and restored: while cut, its
/// port refuses connections and open ones are closed, as when the KMS goes away.
#[derive(Debug)]
pub struct KmsProxy {
    port: u16,
    up: std::sync::Arc<std::sync::Mutex<Option<Vec<std::net::TcpStream>>>>,
}

impl KmsProxy {
    pub fn start() -> KmsProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let proxy = KmsProxy {
            port,
            up: std::sync::Arc::new(std::sync::Mutex::new(None)),
        };
        proxy.serve(listener);
        proxy
    }

    /// The endpoint URL to give `PERSONA_KMS_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The KMS goes away: the port is closed and every open connection cut.
    pub fn cut(&self) {
        if let Some(open) = self.up.lock().unwrap().take() {
            for s in open {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        // Wake the accept loop so it drops the listener, and wait until it has.
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "the proxy did not close"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The KMS is back, on the same port.
    pub fn restore(&self) {
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).expect("the proxy's port again");
        self.serve(listener);
    }

    fn serve(&self, listener: std::net::TcpListener) {
        *self.up.lock().unwrap() = Some(Vec::new());
        let up = self.up.clone();
        let upstream = endpoint().trim_start_matches("http://").to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let mut guard = up.lock().unwrap();
                let Some(open) = guard.as_mut() else {
                    return; // cut: the listener is dropped with this thread
                };
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                drop(guard);
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
    }
}

fn pipe(mut from: std::net::TcpStream, mut to: std::net::TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}
