//! The reconciler against a mocked API server: each scenario lists the calls the
//! reconciler must make, in order, and answers them (controller-rs's fixture style).

use std::collections::BTreeMap;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::apps::v1::StatefulSetStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::client::Body;
use persona_placement::plan;
use serde_json::{Value, json};
use tower_test::mock;

use super::*;
use crate::resources::children;
use crate::testing::{Handle, NAMESPACE, UID, api_error, cluster, expect, respond};

const CORE: &str = "/api/v1/namespaces/banking";
const APPS: &str = "/apis/apps/v1/namespaces/banking";
const POLICY: &str = "/apis/policy/v1/namespaces/banking";
const CLUSTERS: &str = "/apis/persona.dev/v1alpha1/namespaces/banking/personaclusters";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/banking/events";

fn context(client: Client) -> Arc<Context> {
    Arc::new(Context::new(
        client,
        ShardDefaults {
            image: "ghcr.io/persona/persona:0.1.0".to_owned(),
            image_pull_policy: None,
        },
        Policy::default(),
        Some("persona-operator-0".to_owned()),
    ))
}

async fn not_found(handle: &mut Handle, path: &str) {
    let (_, _, send) = expect(handle, Method::GET, path).await;
    respond(send, StatusCode::NOT_FOUND, &api_error(404, "NotFound"));
}

/// A server-side apply by the operator's field manager, forced; answered with the
/// applied object. Returns the applied object.
async fn applied(handle: &mut Handle, path: &str) -> Value {
    let (body, query, send) = expect(handle, Method::PATCH, path).await;
    assert!(query.contains("fieldManager=persona-operator"), "{path}?{query}");
    assert!(query.contains("force=true"), "{path}?{query}");
    respond(send, StatusCode::OK, &body);
    body
}

/// The status apply; answered, as the API server does, with the whole object.
async fn status_applied(handle: &mut Handle, cluster: &PersonaCluster) -> Value {
    let (body, query, send) = expect(handle, Method::PATCH, &format!("{CLUSTERS}/prod/status")).await;
    assert!(
        query.contains("fieldManager=persona-operator") && query.contains("force=true"),
        "{query}"
    );
    let mut object = serde_json::to_value(cluster).unwrap();
    object["status"] = body["status"].clone();
    respond(send, StatusCode::OK, &object);
    body
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

fn owner() -> OwnerReference {
    OwnerReference {
        api_version: "persona.dev/v1alpha1".to_owned(),
        kind: "PersonaCluster".to_owned(),
        name: "prod".to_owned(),
        uid: UID.to_owned(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

#[tokio::test]
async fn a_new_cluster_gets_its_children_applied_and_a_status() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(Client::new(service, NAMESPACE));
    let object = cluster(64, 2, 4);
    let input = Arc::new(object.clone());
    let server = tokio::spawn(async move {
        not_found(&mut handle, &format!("{CORE}/configmaps/prod-assignment")).await;
        not_found(&mut handle, &format!("{APPS}/statefulsets/prod-shard")).await;
        let sa = applied(&mut handle, &format!("{CORE}/serviceaccounts/prod-shard")).await;
        assert_eq!(sa["automountServiceAccountToken"], false);
        let cm = applied(&mut handle, &format!("{CORE}/configmaps/prod-assignment")).await;
        let table: Value = serde_json::from_str(cm["data"]["assignment.json"].as_str().unwrap()).unwrap();
        assert_eq!(table["epoch"], 1);
        assert_eq!(table["shards"], 2);
        assert_eq!(cm["metadata"]["ownerReferences"][0]["uid"], UID);
        applied(&mut handle, &format!("{CORE}/services/prod-shard-peers")).await;
        applied(&mut handle, &format!("{CORE}/services/prod-grpc")).await;
        let sts = applied(&mut handle, &format!("{APPS}/statefulsets/prod-shard")).await;
        assert_eq!(sts["spec"]["replicas"], 2);
        applied(&mut handle, &format!("{POLICY}/poddisruptionbudgets/prod-shard")).await;
        let patch = status_applied(&mut handle, &object).await;
        assert_eq!(patch["apiVersion"], "persona.dev/v1alpha1");
        assert_eq!(patch["kind"], "PersonaCluster");
        let status = &patch["status"];
        assert_eq!((&status["shards"], &status["epoch"]), (&json!(2), &json!(1)));
        assert_eq!(status["assignment"][0], json!({"shard": 0, "partitions": "0-31"}));
        let ready = condition(status, "Ready");
        assert_eq!(
            (&ready["status"], &ready["reason"]),
            (&json!("False"), &json!("ShardsStarting"))
        );
        assert_eq!(condition(status, "Progressing")["status"], "True");
        assert_eq!(condition(status, "Degraded")["status"], "False");
        handle
    });
    let action = reconcile(input, ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Policy::default().busy_requeue));
    let mut handle = server.await.unwrap();
    // No call beyond the scenario.
    drop_and_check_quiet(&mut handle).await;
}

/// The existing children of a settled `prod` with `replicas` ready shard pods.
fn settled(replicas: u32) -> (ConfigMap, StatefulSet) {
    let c = cluster(64, 2, 4);
    let assignment = plan(None, 64, replicas).unwrap().assignment;
    let desired = Desired {
        assignment: &assignment,
        published_at: "2026-11-01T00:00:00Z",
        replicas,
    };
    let ch = children(&c, &desired, &context_defaults()).unwrap();
    let mut sts = ch.stateful_set;
    let n = i32::try_from(replicas).unwrap();
    sts.status = Some(StatefulSetStatus {
        replicas: n,
        ready_replicas: Some(n),
        updated_replicas: Some(n),
        ..StatefulSetStatus::default()
    });
    (ch.assignment, sts)
}

fn context_defaults() -> ShardDefaults {
    ShardDefaults {
        image: "ghcr.io/persona/persona:0.1.0".to_owned(),
        image_pull_policy: None,
    }
}

#[tokio::test]
async fn a_settled_cluster_reports_ready() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(Client::new(service, NAMESPACE));
    let (cm, sts) = settled(2);
    let object = cluster(64, 2, 4);
    let input = Arc::new(object.clone());
    let server = tokio::spawn(async move {
        let (_, _, send) = expect(&mut handle, Method::GET, &format!("{CORE}/configmaps/prod-assignment")).await;
        respond(send, StatusCode::OK, &serde_json::to_value(&cm).unwrap());
        let (_, _, send) = expect(&mut handle, Method::GET, &format!("{APPS}/statefulsets/prod-shard")).await;
        respond(send, StatusCode::OK, &serde_json::to_value(&sts).unwrap());
        applied(&mut handle, &format!("{CORE}/serviceaccounts/prod-shard")).await;
        let applied_cm = applied(&mut handle, &format!("{CORE}/configmaps/prod-assignment")).await;
        assert_eq!(
            applied_cm["metadata"]["annotations"]["persona.dev/published-at"], "2026-11-01T00:00:00Z",
            "an unchanged epoch keeps its publication time"
        );
        applied(&mut handle, &format!("{CORE}/services/prod-shard-peers")).await;
        applied(&mut handle, &format!("{CORE}/services/prod-grpc")).await;
        applied(&mut handle, &format!("{APPS}/statefulsets/prod-shard")).await;
        applied(&mut handle, &format!("{POLICY}/poddisruptionbudgets/prod-shard")).await;
        let patch = status_applied(&mut handle, &object).await;
        let ready = condition(&patch["status"], "Ready");
        assert_eq!(
            (&ready["status"], &ready["reason"]),
            (&json!("True"), &json!("ShardsReady"))
        );
        assert_eq!(condition(&patch["status"], "Progressing")["status"], "False");
        assert_eq!(patch["status"]["readyShards"], 2);
    });
    let action = reconcile(input, ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Policy::default().idle_requeue));
    server.await.unwrap();
}

#[tokio::test]
async fn an_invalid_cluster_gets_an_event_and_a_degraded_status_and_no_children() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(Client::new(service, NAMESPACE));
    let object = cluster(64, 5, 3);
    let input = Arc::new(object.clone());
    let server = tokio::spawn(async move {
        not_found(&mut handle, &format!("{CORE}/configmaps/prod-assignment")).await;
        not_found(&mut handle, &format!("{APPS}/statefulsets/prod-shard")).await;
        let (event, _, send) = expect(&mut handle, Method::POST, EVENTS).await;
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["reason"], "InvalidSpec");
        assert_eq!(event["regarding"]["name"], "prod");
        assert_eq!(event["reportingController"], "persona-operator");
        assert!(event["note"].as_str().unwrap().contains("exceeds spec.shards.max"));
        respond(send, StatusCode::CREATED, &event);
        let patch = status_applied(&mut handle, &object).await;
        let degraded = condition(&patch["status"], "Degraded");
        assert_eq!(
            (&degraded["status"], &degraded["reason"]),
            (&json!("True"), &json!("InvalidSpec"))
        );
        assert_eq!(condition(&patch["status"], "Ready")["status"], "False");
        handle
    });
    let action = reconcile(input, ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Policy::default().idle_requeue));
    let mut handle = server.await.unwrap();
    drop_and_check_quiet(&mut handle).await;
}

#[tokio::test]
async fn a_foreign_config_map_is_not_taken_over() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(Client::new(service, NAMESPACE));
    let foreign = ConfigMap {
        metadata: ObjectMeta {
            name: Some("prod-assignment".to_owned()),
            namespace: Some(NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("unrelated".to_owned(), "x".to_owned())])),
        ..ConfigMap::default()
    };
    let object = cluster(64, 2, 4);
    let input = Arc::new(object.clone());
    let server = tokio::spawn(async move {
        let (_, _, send) = expect(&mut handle, Method::GET, &format!("{CORE}/configmaps/prod-assignment")).await;
        respond(send, StatusCode::OK, &serde_json::to_value(&foreign).unwrap());
        not_found(&mut handle, &format!("{APPS}/statefulsets/prod-shard")).await;
        let (event, _, send) = expect(&mut handle, Method::POST, EVENTS).await;
        assert_eq!(event["reason"], "NameConflict");
        // Events are best effort: a refused Event does not stop the status.
        respond(send, StatusCode::FORBIDDEN, &api_error(403, "Forbidden"));
        let patch = status_applied(&mut handle, &object).await;
        assert_eq!(condition(&patch["status"], "Degraded")["reason"], "NameConflict");
        handle
    });
    reconcile(input, ctx).await.unwrap();
    let mut handle = server.await.unwrap();
    drop_and_check_quiet(&mut handle).await;
}

#[tokio::test]
async fn an_api_error_fails_the_reconcile_for_a_retry() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(Client::new(service, NAMESPACE));
    let server = tokio::spawn(async move {
        not_found(&mut handle, &format!("{CORE}/configmaps/prod-assignment")).await;
        not_found(&mut handle, &format!("{APPS}/statefulsets/prod-shard")).await;
        applied(&mut handle, &format!("{CORE}/serviceaccounts/prod-shard")).await;
        let (_, _, send) = expect(
            &mut handle,
            Method::PATCH,
            &format!("{CORE}/configmaps/prod-assignment"),
        )
        .await;
        respond(send, StatusCode::CONFLICT, &api_error(409, "Conflict"));
        handle
    });
    let cluster = Arc::new(cluster(64, 2, 4));
    let err = reconcile(cluster.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(err.metric_label(), "kube");
    assert_eq!(
        error_policy(cluster, &err, ctx),
        Action::requeue(Duration::from_secs(30))
    );
    let mut handle = server.await.unwrap();
    drop_and_check_quiet(&mut handle).await;
}

#[tokio::test]
async fn a_cluster_with_the_owner_is_recognised() {
    let (cm, sts) = settled(2);
    assert_eq!(cm.metadata.owner_references.as_deref(), Some(&[owner()][..]));
    assert!(owned_by(&cm, Some(UID)));
    assert!(owned_by(&sts, Some(UID)));
    assert!(!owned_by(&cm, Some("another-uid")));
    assert!(matches!(
        read_table(&cm),
        Table::Published {
            published_at: Some(_),
            ..
        }
    ));
}

/// After a scenario, the reconciler has made no call that was not expected.
async fn drop_and_check_quiet(handle: &mut Handle) {
    let next = tokio::time::timeout(Duration::from_millis(50), handle.next_request()).await;
    match next {
        Err(_) | Ok(None) => {}
        Ok(Some((request, _))) => panic!("unexpected call {} {}", request.method(), request.uri()),
    }
}

/// The load a test hands the autoscaler (the scraping itself is tested over loopback
/// HTTP in `load.rs`).
struct FixedLoad(crate::autoscale::Load);

impl LoadSource for FixedLoad {
    fn load<'a>(&'a self, _: &'a PersonaCluster, pods: u32) -> futures::future::BoxFuture<'a, Option<Load>> {
        let mut load = self.0;
        load.expected = pods;
        load.reporting = pods;
        Box::pin(async move { Some(load) })
    }
}

#[tokio::test]
async fn a_lagging_cluster_gets_more_shard_pods_before_its_partitions_move() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let load = crate::autoscale::Load {
        events_per_second: 90_000.0,
        lag: 45_000,
        ..crate::autoscale::Load::default()
    };
    let ctx = Context::new(
        Client::new(service, NAMESPACE),
        context_defaults(),
        Policy::default(),
        None,
    )
    .with_load(Arc::new(FixedLoad(load)));
    let ctx = Arc::new(ctx);
    let (cm, sts) = settled(2);
    // 2..4 shards; 50k events/s and 10k waiting entries per shard: the lag asks for 5,
    // the bound allows 4.
    let object = cluster(64, 2, 4);
    let input = Arc::new(object.clone());
    let server = tokio::spawn(async move {
        let (_, _, send) = expect(&mut handle, Method::GET, &format!("{CORE}/configmaps/prod-assignment")).await;
        respond(send, StatusCode::OK, &serde_json::to_value(&cm).unwrap());
        let (_, _, send) = expect(&mut handle, Method::GET, &format!("{APPS}/statefulsets/prod-shard")).await;
        respond(send, StatusCode::OK, &serde_json::to_value(&sts).unwrap());
        applied(&mut handle, &format!("{CORE}/serviceaccounts/prod-shard")).await;
        let applied_cm = applied(&mut handle, &format!("{CORE}/configmaps/prod-assignment")).await;
        let table: Value = serde_json::from_str(applied_cm["data"]["assignment.json"].as_str().unwrap()).unwrap();
        assert_eq!(
            (&table["epoch"], &table["shards"]),
            (&json!(1), &json!(2)),
            "partitions wait for the new pods"
        );
        applied(&mut handle, &format!("{CORE}/services/prod-shard-peers")).await;
        applied(&mut handle, &format!("{CORE}/services/prod-grpc")).await;
        let sts = applied(&mut handle, &format!("{APPS}/statefulsets/prod-shard")).await;
        assert_eq!(sts["spec"]["replicas"], 4);
        applied(&mut handle, &format!("{POLICY}/poddisruptionbudgets/prod-shard")).await;
        let patch = status_applied(&mut handle, &object).await;
        let status = &patch["status"];
        assert_eq!(status["desiredShards"], 4);
        assert!(
            status["scalingReason"]
                .as_str()
                .unwrap()
                .starts_with("ScaleUp: lag asks for 4"),
            "{status}"
        );
        assert_eq!(
            status["load"],
            json!({"eventsPerSecond": 90000, "lag": 45000, "memoryBytes": 0, "reportingShards": 2})
        );
        let rebalancing = condition(status, "Rebalancing");
        assert_eq!(
            (&rebalancing["status"], &rebalancing["reason"]),
            (&json!("True"), &json!("WaitingForShards"))
        );
        assert_eq!(
            condition(status, "Ready")["status"],
            "True",
            "the old owners still serve"
        );
    });
    let action = reconcile(input, ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Policy::default().busy_requeue));
    server.await.unwrap();
}

#[tokio::test]
async fn deleted_clusters_leave_no_autoscaler_or_gauge_behind() {
    let (service, _handle) = mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(Client::new(service, NAMESPACE));
    {
        let mut autoscalers = ctx.autoscalers.lock().unwrap();
        for key in ["banking/prod", "banking/gone", "cards/prod"] {
            autoscalers.insert(key.to_owned(), crate::autoscale::Autoscaler::default());
        }
    }
    for (ns, name) in [("banking", "prod"), ("banking", "gone"), ("cards", "prod")] {
        ctx.metrics.cluster(ns, name, Shards::default());
    }
    ctx.retain_clusters("banking", &["prod".to_owned()]);
    let mut left: Vec<String> = ctx.autoscalers.lock().unwrap().keys().cloned().collect();
    left.sort();
    assert_eq!(left, ["banking/prod", "cards/prod"]);
    let gauges: Vec<(String, String)> = ctx.metrics.clusters().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        gauges,
        [
            ("banking".to_owned(), "prod".to_owned()),
            ("cards".to_owned(), "prod".to_owned())
        ]
    );
}
