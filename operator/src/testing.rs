//! Builders of test objects and the mocked API server's helpers, shared by the unit
//! tests.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::{BusSpec, PersonaCluster, PersonaClusterSpec, ScalingSpec, ShardsSpec, StorageSpec};

pub(crate) const NAMESPACE: &str = "banking";
pub(crate) const UID: &str = "5b0f3f7e-2d1c-4c8a-9a53-3c1f00c0ffee";

/// `prod` in `banking`: `partitions` partitions, between `min` and `max` shards.
pub(crate) fn cluster(partitions: u32, min: u32, max: u32) -> PersonaCluster {
    PersonaCluster {
        metadata: ObjectMeta {
            name: Some("prod".to_owned()),
            namespace: Some(NAMESPACE.to_owned()),
            uid: Some(UID.to_owned()),
            generation: Some(3),
            ..ObjectMeta::default()
        },
        spec: PersonaClusterSpec {
            partitions,
            shards: ShardsSpec { min, max },
            scaling: ScalingSpec::default(),
            storage: StorageSpec::default(),
            bus: BusSpec {
                redis: "rediss://persona-redis:6379".to_owned(),
                password_secret: None,
                prefix: "persona".to_owned(),
            },
            feature_set: "retail-banking".to_owned(),
            image: None,
            resources: None,
        },
        status: None,
    }
}

/// The test side of a mocked API server (`kube::Client` over `tower_test`).
pub(crate) type Handle =
    tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>;
/// The means to answer one request.
pub(crate) type Send = tower_test::mock::SendResponse<http::Response<kube::client::Body>>;

/// One expected call: its method and path; returns the request body as JSON (Null
/// when empty), the query string, and the means to answer.
pub(crate) async fn expect(handle: &mut Handle, method: http::Method, path: &str) -> (serde_json::Value, String, Send) {
    let (request, send) = handle
        .next_request()
        .await
        .unwrap_or_else(|| panic!("expected {method} {path}, but no further call came"));
    assert_eq!(
        (request.method(), request.uri().path()),
        (&method, path),
        "unexpected call {} {}",
        request.method(),
        request.uri()
    );
    let query = request.uri().query().unwrap_or_default().to_owned();
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (body, query, send)
}

/// Answers with `status` and `body` as JSON.
pub(crate) fn respond(send: Send, status: http::StatusCode, body: &serde_json::Value) {
    send.send_response(
        http::Response::builder()
            .status(status)
            .body(kube::client::Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

/// A `Status` error body as the API server sends it.
pub(crate) fn api_error(code: u16, reason: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{reason} (test)"), "reason": reason, "code": code,
    })
}
