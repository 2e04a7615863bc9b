use http::{Method, Request, Response, StatusCode};
use k8s_openapi::jiff::SignedDuration;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

use super::*;
use crate::testing::{Handle, api_error, expect, respond};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/persona/leases";

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn held(holder: &str, renewed: i64, seconds: i32, transitions: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(holder.to_owned()),
        lease_duration_seconds: Some(seconds),
        acquire_time: Some(MicroTime(at(0))),
        renew_time: Some(MicroTime(at(renewed))),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

#[test]
fn no_lease_is_created_held_by_us() {
    let Step::Create(spec) = step(None, "op-a", &Timing::default(), at(5)) else {
        panic!("expected a create");
    };
    assert_eq!(spec.holder_identity.as_deref(), Some("op-a"));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(0));
    assert_eq!(spec.renew_time, Some(MicroTime(at(5))));
}

#[test]
fn our_lease_is_renewed_keeping_its_acquire_time() {
    let Step::Renew(spec) = step(Some(&held("op-a", 10, 15, 3)), "op-a", &Timing::default(), at(12)) else {
        panic!("expected a renewal");
    };
    assert_eq!(spec.acquire_time, Some(MicroTime(at(0))));
    assert_eq!(spec.renew_time, Some(MicroTime(at(12))));
    assert_eq!(spec.lease_transitions, Some(3));
}

#[test]
fn anothers_live_lease_is_followed_until_it_expires() {
    let lease = held("op-b", 10, 15, 1);
    assert_eq!(
        step(Some(&lease), "op-a", &Timing::default(), at(24)),
        Step::Follow {
            holder: "op-b".to_owned(),
            until: at(25),
        }
    );
    let Step::TakeOver(spec) = step(Some(&lease), "op-a", &Timing::default(), at(25)) else {
        panic!("an expired lease is taken over");
    };
    assert_eq!(spec.holder_identity.as_deref(), Some("op-a"));
    assert_eq!(spec.lease_transitions, Some(2));
    assert_eq!(spec.acquire_time, Some(MicroTime(at(25))));
}

#[test]
fn a_released_or_malformed_lease_is_taken_over() {
    let mut released = held("op-b", 10, 15, 4);
    released.holder_identity = Some(String::new());
    assert!(matches!(
        step(Some(&released), "op-a", &Timing::default(), at(11)),
        Step::TakeOver(_)
    ));
    let no_times = LeaseSpec {
        holder_identity: Some("op-b".to_owned()),
        ..LeaseSpec::default()
    };
    assert!(matches!(
        step(Some(&no_times), "op-a", &Timing::default(), at(11)),
        Step::TakeOver(_)
    ));
    // A holder's clock ahead of ours only makes us wait longer.
    let ahead = held("op-b", 100, 15, 0);
    assert!(matches!(
        step(Some(&ahead), "op-a", &Timing::default(), at(11)),
        Step::Follow { .. }
    ));
}

async fn next(handle: &mut Handle, method: Method, path: &str) -> (Value, crate::testing::Send) {
    let (body, _, send) = expect(handle, method, path).await;
    (body, send)
}

fn status(code: u16, reason: &str) -> Value {
    api_error(code, reason)
}

fn lease_object(spec: &LeaseSpec, version: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "persona-operator", "namespace": "persona", "resourceVersion": version},
        "spec": spec,
    })
}

fn elector(me: &str) -> (Elector, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "persona");
    (
        Elector::new(client, "persona", "persona-operator", me, Timing::default()),
        handle,
    )
}

#[tokio::test]
async fn the_first_replica_creates_the_lease_and_leads() {
    let (elector, mut handle) = elector("op-a");
    let server = tokio::spawn(async move {
        let (_, send) = next(&mut handle, Method::GET, &format!("{LEASES}/persona-operator")).await;
        respond(send, StatusCode::NOT_FOUND, &status(404, "NotFound"));
        let (body, send) = next(&mut handle, Method::POST, LEASES).await;
        assert_eq!(body["metadata"]["name"], "persona-operator");
        assert_eq!(body["spec"]["holderIdentity"], "op-a");
        assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
        respond(send, StatusCode::CREATED, &body);
    });
    assert!(elector.try_once().await.unwrap());
    server.await.unwrap();
}

#[tokio::test]
async fn a_replica_that_loses_the_create_race_follows() {
    let (elector, mut handle) = elector("op-b");
    let server = tokio::spawn(async move {
        let (_, send) = next(&mut handle, Method::GET, &format!("{LEASES}/persona-operator")).await;
        respond(send, StatusCode::NOT_FOUND, &status(404, "NotFound"));
        let (_, send) = next(&mut handle, Method::POST, LEASES).await;
        respond(send, StatusCode::CONFLICT, &status(409, "AlreadyExists"));
    });
    assert!(!elector.try_once().await.unwrap());
    server.await.unwrap();
}

#[tokio::test]
async fn a_live_lease_of_another_is_left_alone() {
    let (elector, mut handle) = elector("op-b");
    let now = Timestamp::now();
    let spec = LeaseSpec {
        renew_time: Some(MicroTime(now)),
        ..held("op-a", 0, 15, 0)
    };
    let server = tokio::spawn(async move {
        let (_, send) = next(&mut handle, Method::GET, &format!("{LEASES}/persona-operator")).await;
        respond(send, StatusCode::OK, &lease_object(&spec, "41"));
        // No write follows.
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), handle.next_request()).await;
        assert!(matches!(quiet, Err(_) | Ok(None)), "no write to another's live lease");
    });
    assert!(!elector.try_once().await.unwrap());
    server.await.unwrap();
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_its_resource_version_and_a_lost_race_follows() {
    let (elector, mut handle) = elector("op-b");
    let stale = LeaseSpec {
        renew_time: Some(MicroTime(Timestamp::now() - SignedDuration::from_secs(60))),
        ..held("op-a", 0, 15, 2)
    };
    let server = tokio::spawn(async move {
        for outcome in [StatusCode::OK, StatusCode::CONFLICT] {
            let (_, send) = next(&mut handle, Method::GET, &format!("{LEASES}/persona-operator")).await;
            respond(send, StatusCode::OK, &lease_object(&stale, "41"));
            let (body, send) = next(&mut handle, Method::PUT, &format!("{LEASES}/persona-operator")).await;
            // Optimistic concurrency: the write names the version it read.
            assert_eq!(body["metadata"]["resourceVersion"], "41");
            assert_eq!(body["spec"]["holderIdentity"], "op-b");
            assert_eq!(body["spec"]["leaseTransitions"], 3);
            if outcome == StatusCode::OK {
                respond(send, outcome, &body);
            } else {
                respond(send, outcome, &status(409, "Conflict"));
            }
        }
    });
    assert!(elector.try_once().await.unwrap(), "took over");
    assert!(!elector.try_once().await.unwrap(), "another replica wrote first");
    server.await.unwrap();
}

#[tokio::test]
async fn the_leader_renews_and_releases_on_stop() {
    let (elector, mut handle) = elector("op-a");
    let (leading_tx, mut leading) = watch::channel(false);
    let (stop_tx, stop) = watch::channel(false);
    let ours = LeaseSpec {
        renew_time: Some(MicroTime(Timestamp::now())),
        ..held("op-a", 0, 15, 0)
    };
    let server = tokio::spawn(async move {
        let (_, send) = next(&mut handle, Method::GET, &format!("{LEASES}/persona-operator")).await;
        respond(send, StatusCode::OK, &lease_object(&ours, "7"));
        let (body, send) = next(&mut handle, Method::PUT, &format!("{LEASES}/persona-operator")).await;
        assert_eq!(body["spec"]["holderIdentity"], "op-a");
        assert_eq!(body["spec"]["leaseTransitions"], 0, "a renewal is no transition");
        respond(send, StatusCode::OK, &body);
        // The release: read, then write with no holder.
        let (_, send) = next(&mut handle, Method::GET, &format!("{LEASES}/persona-operator")).await;
        respond(send, StatusCode::OK, &lease_object(&ours, "8"));
        let (body, send) = next(&mut handle, Method::PUT, &format!("{LEASES}/persona-operator")).await;
        assert!(body["spec"].get("holderIdentity").is_none(), "{body}");
        assert_eq!(body["spec"]["leaseDurationSeconds"], 1);
        respond(send, StatusCode::OK, &body);
    });
    let run = tokio::spawn(async move { elector.run(leading_tx, stop).await });
    leading.changed().await.unwrap();
    assert!(*leading.borrow());
    stop_tx.send_replace(true);
    run.await.unwrap();
    assert!(!*leading.borrow(), "no longer leading after the release");
    server.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_within_the_deadline_stops_leading() {
    let (elector, mut handle) = elector("op-a");
    let (leading_tx, leading) = watch::channel(false);
    let (_stop_tx, stop) = watch::channel(false);
    let server = tokio::spawn(async move {
        let (_, send) = next(&mut handle, Method::GET, &format!("{LEASES}/persona-operator")).await;
        respond(send, StatusCode::NOT_FOUND, &status(404, "NotFound"));
        let (body, send) = next(&mut handle, Method::POST, LEASES).await;
        respond(send, StatusCode::CREATED, &body);
        // Then the API server fails every read.
        loop {
            let Some((_, send)) = handle.next_request().await else {
                break;
            };
            respond(
                send,
                StatusCode::SERVICE_UNAVAILABLE,
                &status(503, "ServiceUnavailable"),
            );
        }
    });
    let observer = leading.clone();
    let run = tokio::spawn(async move { elector.run(leading_tx, stop).await });
    let mut seen = Vec::new();
    let mut rx = observer;
    for _ in 0..2 {
        rx.changed().await.unwrap();
        seen.push((*rx.borrow(), tokio::time::Instant::now()));
    }
    assert!(seen[0].0, "led first");
    assert!(!seen[1].0, "then stopped leading");
    let gap = seen[1].1 - seen[0].1;
    assert!(
        gap >= Timing::default().renew_deadline && gap < Timing::default().lease,
        "stopped {gap:?} after the last renewal: after the deadline, before the lease expires"
    );
    run.abort();
    server.abort();
}
