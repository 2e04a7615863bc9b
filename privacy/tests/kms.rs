//! The local KMS against real files: key creation, permissions, reopen, and scoping by
//! encryption context.

use persona_privacy::kms::{Kms, LocalKms, context};
use persona_privacy::{Error, WrappedKey};

#[test]
fn wrapped_keys_unwrap_only_under_their_context() {
    let dir = tempfile::tempdir().unwrap();
    let kms = LocalKms::open(dir.path()).unwrap();
    let index = context([("purpose", "index")]);
    let vault = context([("purpose", "vault")]);
    let (plain, wrapped) = kms.generate_data_key(&index).unwrap();
    assert_eq!(
        kms.decrypt(&wrapped, &index).unwrap().expose_secret(),
        plain.expose_secret()
    );
    assert!(matches!(kms.decrypt(&wrapped, &vault), Err(Error::Unwrap)));
    assert!(matches!(kms.decrypt(&wrapped, &context([])), Err(Error::Unwrap)));

    let mut tampered = wrapped.as_bytes().to_vec();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(kms.decrypt(&WrappedKey::from_bytes(tampered), &index).is_err());
    assert!(!format!("{plain:?} {wrapped:?}").contains(&format!("{:?}", plain.expose_secret())));
}

#[test]
fn the_master_key_persists_and_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context([("purpose", "index")]);
    let (plain, wrapped) = LocalKms::open(dir.path()).unwrap().generate_data_key(&ctx).unwrap();
    let reopened = LocalKms::open(dir.path()).unwrap();
    assert_eq!(
        reopened.decrypt(&wrapped, &ctx).unwrap().expose_secret(),
        plain.expose_secret()
    );

    let other = tempfile::tempdir().unwrap();
    assert!(LocalKms::open(other.path()).unwrap().decrypt(&wrapped, &ctx).is_err());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(dir.path().join("master.key"), b"short").unwrap();
    assert!(matches!(LocalKms::open(dir.path()), Err(Error::MasterKey { .. })));
}
