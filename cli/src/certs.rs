//! `persona dev-certs`: a development CA and one certificate per service, for the
//! mutual-TLS links of a local cluster (the gateway's SealedVault and its
//! de-tokenizer). Development only: production certificates come from the bank's own
//! PKI (cert-manager in Kubernetes).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::Datelike;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where ca.pem and NAME.pem / NAME.key go (keys mode 0600).
    #[arg(long)]
    out: PathBuf,
    /// One certificate per name, each valid for serving and as a client.
    #[arg(long, value_delimiter = ',', default_value = "gateway,detokenizer")]
    names: Vec<String>,
    /// The host names and IP addresses the certificates are valid for.
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
    hosts: Vec<String>,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let year = chrono::Utc::now().year();
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "persona development CA (not for production)");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = date_time_ymd(year - 1, 1, 1);
    ca.not_after = date_time_ymd(year + 2, 1, 1);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    write(&args.out.join("ca.pem"), &ca_cert.pem(), false)?;
    let issuer = Issuer::new(ca, ca_key);
    for name in &args.names {
        let mut params = CertificateParams::new(args.hosts.clone())?;
        params.distinguished_name.push(DnType::CommonName, name.as_str());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = date_time_ymd(year - 1, 1, 1);
        params.not_after = date_time_ymd(year + 1, 12, 31);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write(&args.out.join(format!("{name}.pem")), &cert.pem(), false)?;
        write(&args.out.join(format!("{name}.key")), &key.serialize_pem(), true)?;
    }
    eprintln!(
        "DEVELOPMENT CERTIFICATES in {} (CA ca.pem; {}): for a local cluster only",
        args.out.display(),
        args.names.join(", ")
    );
    Ok(())
}

fn write(path: &Path, text: &str, private: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
