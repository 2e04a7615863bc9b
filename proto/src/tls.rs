//! Mutual TLS for persona's gRPC links (rustls through tonic): a service presents its
//! certificate and accepts only clients whose certificate the given CA signed; a
//! client presents its own and trusts only that CA. The files are PEM.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// A PEM file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the TLS file {}: {source}", path.display())]
pub struct TlsError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// One side of a mutual-TLS link: its certificate chain and private key, and the CA
/// that signs the other side's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutualTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl MutualTls {
    /// The files `NAME.pem`, `NAME.key` and `ca.pem` in `dir` (as `persona dev-certs`
    /// writes them).
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        Self {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
            ca: dir.join("ca.pem"),
        }
    }

    /// The server side: requires and verifies a client certificate.
    pub fn server(&self) -> Result<ServerTlsConfig, TlsError> {
        Ok(ServerTlsConfig::new()
            .identity(self.identity()?)
            .client_ca_root(Certificate::from_pem(read(&self.ca)?)))
    }

    /// The client side, for a server whose certificate names `domain`.
    pub fn client(&self, domain: &str) -> Result<ClientTlsConfig, TlsError> {
        Ok(ClientTlsConfig::new()
            .domain_name(domain)
            .ca_certificate(Certificate::from_pem(read(&self.ca)?))
            .identity(self.identity()?))
    }

    fn identity(&self) -> Result<Identity, TlsError> {
        Ok(Identity::from_pem(read(&self.cert)?, read(&self.key)?))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError {
        path: path.to_owned(),
        source,
    })
}

/// A channel to `address`: over mutual TLS when `tls` is given (the server's
/// certificate checked for the address's host), else plain. Errors name the address,
/// never a certificate's content.
pub async fn connect(address: &str, tls: Option<&MutualTls>) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(address.to_owned()).map_err(|e| format!("`{address}`: {e}"))?;
    let endpoint = match tls {
        Some(tls) => {
            let host = endpoint.uri().host().unwrap_or("localhost").to_owned();
            let config = tls.client(&host).map_err(|e| e.to_string())?;
            endpoint
                .tls_config(config)
                .map_err(|e| format!("`{address}`: TLS: {e}"))?
        }
        None => endpoint,
    };
    endpoint.connect().await.map_err(|e| format!("`{address}`: {e}"))
}
