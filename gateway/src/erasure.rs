//! Erasures on their way to the cloud zone: each forgotten customer becomes one
//! `forget` event for the token that stood for her, which her actor answers by
//! deleting its state and snapshot. The trusted zone sends nothing else about her.

use persona_event::{Event, kinds};
use persona_privacy::{Erasure, Vault};

use crate::Error;

/// The `forget` event of an erasure: her former token, the time of the erasure, no
/// attribute. Its id is a keyed hash of the token, so sending it again (a run that
/// stopped before the cloud applied it) is the same event.
pub fn forget_event(vault: &Vault, erasure: &Erasure) -> Result<Event, Error> {
    // `#` cannot occur in a Source's name, so no source's ids collide with these.
    let id = vault
        .event_id("#forget", erasure.token.as_str().as_bytes())
        .map_err(|source| Error::Erasure { source })?;
    Ok(Event {
        id,
        token: erasure.token.clone(),
        kind: kinds::FORGET.to_owned(),
        ts: erasure.at,
        attrs: Default::default(),
    })
}
