//! Leader election on a `coordination.k8s.io/v1` Lease, so that two operator
//! replicas are safe: only the holder reconciles.
//!
//! Each replica reads the Lease every `retry` and decides ([`step`], pure): create it
//! when missing, renew it when held, take it over when its holder let it expire, or
//! follow. Writes carry the `resourceVersion` read, so when two replicas race the API
//! server accepts one (the other gets 409 Conflict and follows). A leader that cannot
//! renew within `renew_deadline` (shorter than the lease) stops leading before any
//! other replica may take over; `persona operator` then exits and restarts as a
//! follower. On shutdown the leader releases the Lease so a follower takes over at
//! once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::error::{Error, Result};

/// Timing of the election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease holds without renewal.
    pub lease: Duration,
    /// A leader that has not renewed for this long stops leading (less than `lease`).
    pub renew_deadline: Duration,
    /// Between two reads of the Lease.
    pub retry: Duration,
}

impl Default for Timing {
    /// client-go's defaults: 15 s lease, 10 s deadline, 2 s retry.
    fn default() -> Self {
        Timing {
            lease: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// What one replica does after reading the Lease.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// No Lease: create it, held by us.
    Create(LeaseSpec),
    /// Ours: write this renewal.
    Renew(LeaseSpec),
    /// Another's, expired (or released): write this, held by us.
    TakeOver(LeaseSpec),
    /// Another holds it until `until`.
    Follow { holder: String, until: Timestamp },
}

/// Decides from the Lease's spec (`None`: no Lease) what `me` does at `now`.
pub fn step(lease: Option<&LeaseSpec>, me: &str, timing: &Timing, now: Timestamp) -> Step {
    let seconds = i32::try_from(timing.lease.as_secs()).unwrap_or(i32::MAX).max(1);
    let fresh = |transitions: i32, acquired: Timestamp| LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(seconds),
        acquire_time: Some(MicroTime(acquired)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let Some(spec) = lease else {
        return Step::Create(fresh(0, now));
    };
    let transitions = spec.lease_transitions.unwrap_or(0);
    let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
    if holder == Some(me) {
        let acquired = spec.acquire_time.as_ref().map_or(now, |t| t.0);
        return Step::Renew(fresh(transitions, acquired));
    }
    let Some(holder) = holder else {
        return Step::TakeOver(fresh(transitions + 1, now));
    };
    // A lease with no renewal time or duration counts as expired.
    let duration = spec.lease_duration_seconds.unwrap_or(0).max(0);
    let until = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).and_then(|t| {
        t.0.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(i64::from(duration)))
            .ok()
    });
    match until {
        Some(until) if until > now => Step::Follow {
            holder: holder.to_owned(),
            until,
        },
        _ => Step::TakeOver(fresh(transitions + 1, now)),
    }
}

/// One replica's candidacy for one Lease.
#[derive(Clone)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    me: String,
    timing: Timing,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("name", &self.name)
            .field("me", &self.me)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

impl Elector {
    /// Candidacy of `me` (the pod name) for Lease `name` in `namespace`.
    pub fn new(client: Client, namespace: &str, name: &str, me: &str, timing: Timing) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            me: me.to_owned(),
            timing,
        }
    }

    /// Reads the Lease and acts once: `Ok(true)` when we hold it afterwards.
    pub async fn try_once(&self) -> Result<bool> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let outcome = match step(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.me,
            &self.timing,
            now,
        ) {
            Step::Follow { .. } => return Ok(false),
            Step::Create(spec) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await.map(|_| ())
            }
            Step::Renew(spec) | Step::TakeOver(spec) => {
                // `current` is Some here: step() creates only when it is None.
                let mut lease = current.unwrap_or_default();
                let took_over = lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(&self.me);
                lease.spec = Some(spec);
                let written = self.api.replace(&self.name, &PostParams::default(), &lease).await;
                if written.is_ok() && took_over {
                    info!(lease = %self.name, holder = %self.me, "took over the lease");
                }
                written.map(|_| ())
            }
        };
        match outcome {
            Ok(()) => Ok(true),
            // Another replica wrote first (create or update): follow it.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(Error::Kube(e)),
        }
    }

    /// Campaigns until stopped: `leading` turns true when we hold the Lease and false
    /// when we could not renew it within the deadline. Returns when `stop` turns true,
    /// releasing the Lease if we hold it.
    pub async fn run(&self, leading: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        let mut last_renewal: Option<tokio::time::Instant> = None;
        loop {
            match self.try_once().await {
                Ok(true) => {
                    last_renewal = Some(tokio::time::Instant::now());
                    if !*leading.borrow() {
                        info!(lease = %self.name, holder = %self.me, "leading");
                    }
                    leading.send_replace(true);
                }
                Ok(false) => {
                    last_renewal = None;
                    leading.send_replace(false);
                }
                Err(e) => {
                    warn!(lease = %self.name, error = %e, "leader election: the lease could not be read or written");
                    if last_renewal.is_some_and(|t| t.elapsed() >= self.timing.renew_deadline) {
                        warn!(lease = %self.name, "no renewal within the deadline: no longer leading");
                        last_renewal = None;
                        leading.send_replace(false);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.timing.retry) => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
        }
        if *leading.borrow() {
            leading.send_replace(false);
            if let Err(e) = self.release().await {
                warn!(lease = %self.name, error = %e, "could not release the lease");
            }
        }
    }

    /// Gives the Lease up if we hold it, so a follower takes over without waiting
    /// for it to expire.
    pub async fn release(&self) -> Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(&self.me) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        spec.lease_duration_seconds = Some(1);
        match self
            .api
            .replace(&lease.name_any(), &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                info!(lease = %self.name, "released the lease");
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(Error::Kube(e)),
        }
    }
}

#[cfg(test)]
mod tests;
