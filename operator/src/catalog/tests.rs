use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

use super::*;
use crate::crd::{ContactPolicyResource, FeatureSetResource, OfferResource};
use crate::decision::Policy;
use crate::resources::ShardDefaults;
use crate::testing::{Handle, NAMESPACE, cluster, expect, respond};

const DEMO_FEATURE_SET: &str = include_str!("../../../cli/src/demo/specs/featureset.yaml");
const DEMO_OFFERS: &str = include_str!("../../../cli/src/demo/specs/offers.yaml");

fn meta(name: &str, generation: i64) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(NAMESPACE.to_owned()),
        uid: Some(format!("uid-{name}")),
        generation: Some(generation),
        ..ObjectMeta::default()
    }
}

/// The demo's FeatureSet as a resource, named `retail-banking` like the test cluster's.
fn demo_feature_set() -> FeatureSet {
    let doc: FeatureSetDocument = serde_yaml::from_str(DEMO_FEATURE_SET).unwrap();
    FeatureSet {
        metadata: meta(&doc.metadata.name, 1),
        spec: FeatureSetResource(doc.spec),
        status: None,
    }
}

/// The demo's four offers as resources.
fn demo_offers() -> Vec<Offer> {
    serde_yaml::Deserializer::from_str(DEMO_OFFERS)
        .map(|d| {
            let doc = OfferDocument::deserialize(d).unwrap();
            Offer {
                metadata: meta(&doc.metadata.name, 1),
                spec: OfferResource(doc.spec),
                status: None,
            }
        })
        .collect()
}

use serde::Deserialize as _;

fn offer_with_when(name: &str, when: &str) -> Offer {
    let mut offer = demo_offers().remove(0);
    offer.metadata = meta(name, 2);
    offer.spec.0.when = Some(when.to_owned());
    offer
}

fn policy(name: &str, max_per_day: u32) -> ContactPolicy {
    let doc: ContactPolicyDocument = serde_yaml::from_str(&format!(
        "kind: ContactPolicy\nmetadata: {{name: {name}}}\nspec: {{maxPerDay: {max_per_day}, quietHours: {{from: \"21:00\", to: \"08:00\"}}, timezone: Asia/Kolkata}}\n"
    ))
    .unwrap();
    ContactPolicy {
        metadata: meta(name, 1),
        spec: ContactPolicyResource(doc.spec),
        status: None,
    }
}

#[test]
fn the_demo_specs_are_valid_and_bundle_into_files_the_engine_reads_back() {
    let fs = vec![demo_feature_set()];
    let offers = demo_offers();
    let policies = vec![policy("default", 2)];
    let clusters = vec![cluster(64, 2, 4)];
    let judgement = judge(&fs, &offers, &policies, &clusters);
    assert!(judgement.feature_sets["retail-banking"].valid);
    assert_eq!(judgement.offers.len(), 4);
    assert!(judgement.offers.values().all(|v| v.valid), "{judgement:?}");
    assert!(judgement.policies["default"].valid);

    let data = bundle(&clusters[0], &fs, &offers, &policies, &judgement).unwrap();
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        [POLICY_KEY, FEATURE_SET_KEY, OFFERS_KEY]
    );
    // What the shard's specs loader reads: documents with kind and name, compiling
    // with the real compiler.
    let doc: FeatureSetDocument = serde_yaml::from_str(&data[FEATURE_SET_KEY]).unwrap();
    assert_eq!(
        (doc.kind.as_str(), doc.metadata.name.as_str()),
        ("FeatureSet", "retail-banking")
    );
    let set = persona_features::FeatureSet::compile(&doc).unwrap();
    let names: Vec<String> = serde_yaml::Deserializer::from_str(&data[OFFERS_KEY])
        .map(|d| {
            let doc = OfferDocument::deserialize(d).unwrap();
            CompiledOffer::compile(&doc, &set).unwrap();
            doc.metadata.name
        })
        .collect();
    assert_eq!(names, ["car-loan", "fixed-deposit", "fuel-card", "mall-discount"]);
    let doc: ContactPolicyDocument = serde_yaml::from_str(&data[POLICY_KEY]).unwrap();
    assert_eq!(doc.spec.max_per_day, Some(2));
}

#[test]
fn a_broken_offer_is_refused_with_its_diagnostic_and_left_out() {
    let fs = vec![demo_feature_set()];
    let mut offers = demo_offers();
    offers.push(offer_with_when(
        "typo",
        "features.car_intnet and profile.credit_band == \"A\"",
    ));
    offers.push(offer_with_when("syntax", "features.car_intent and and"));
    let clusters = vec![cluster(64, 2, 4)];
    let judgement = judge(&fs, &offers, &[], &clusters);
    let typo = &judgement.offers["typo"];
    assert!(!typo.valid);
    assert_eq!(typo.reason, "InvalidSpec");
    assert!(
        typo.message.starts_with("against FeatureSet retail-banking:"),
        "{}",
        typo.message
    );
    assert!(typo.message.contains("spec.when"), "{}", typo.message);
    assert!(typo.message.contains("car_intnet"), "{}", typo.message);
    assert!(
        typo.message.contains('^') || typo.message.contains('─'),
        "a caret: {}",
        typo.message
    );
    assert!(!judgement.offers["syntax"].valid);
    let data = bundle(&clusters[0], &fs, &offers, &[], &judgement).unwrap();
    assert!(!data[OFFERS_KEY].contains("name: typo"));
    assert!(!data[OFFERS_KEY].contains("name: syntax"));
    assert!(data[OFFERS_KEY].contains("name: car-loan"));
    assert!(!data.contains_key(POLICY_KEY));
}

#[test]
fn offers_need_the_feature_set_their_clusters_run() {
    let offers = demo_offers();
    let judgement = judge(&[], &offers, &[], &[]);
    assert!(judgement.offers.values().all(|v| v.reason == "NoFeatureSet"));
    // A cluster names a FeatureSet that is not there.
    let judgement = judge(&[], &offers, &[], &[cluster(64, 2, 4)]);
    let verdict = &judgement.offers["car-loan"];
    assert_eq!(
        (verdict.valid, verdict.reason, verdict.message.as_str()),
        (false, "InvalidFeatureSet", "FeatureSet retail-banking does not exist")
    );
    // An invalid FeatureSet: itself refused, its offers too, and nothing distributed.
    let mut broken = demo_feature_set();
    broken.spec.0.timezone = Some("Mars/Olympus".to_owned());
    let fs = vec![broken];
    let judgement = judge(&fs, &offers, &[], &[cluster(64, 2, 4)]);
    let verdict = &judgement.feature_sets["retail-banking"];
    assert!(!verdict.valid);
    assert!(verdict.message.contains("spec.timezone"), "{}", verdict.message);
    assert_eq!(
        judgement.offers["car-loan"].message,
        "FeatureSet retail-banking is not valid"
    );
    assert_eq!(
        bundle(&cluster(64, 2, 4), &fs, &offers, &[], &judgement).unwrap_err().0,
        "FeatureSetNotValid"
    );
    assert_eq!(
        bundle(&cluster(64, 2, 4), &[], &offers, &[], &judgement).unwrap_err().0,
        "FeatureSetMissing"
    );
}

#[test]
fn one_contact_policy_applies_per_namespace() {
    let mut bad = policy("a-broken", 1);
    bad.spec.0.timezone = Some("Nowhere/Else".to_owned());
    let judgement = judge(
        &[demo_feature_set()],
        &[],
        &[policy("strict", 1), policy("default", 3), bad],
        &[],
    );
    assert_eq!(judgement.policies["a-broken"].reason, "InvalidSpec");
    assert!(judgement.policies["default"].valid, "the first valid by name");
    let other = &judgement.policies["strict"];
    assert_eq!(other.reason, "AnotherContactPolicy");
    assert!(
        other.message.contains("ContactPolicy default applies"),
        "{}",
        other.message
    );
}

#[test]
fn a_status_is_written_only_when_it_changes() {
    let t0 = Timestamp::from_second(1_800_000_000).unwrap();
    let t1 = Timestamp::from_second(1_800_000_100).unwrap();
    let refused = Verdict::refused("InvalidSpec", "spec.when: …".to_owned());
    let first = status_update(None, Some(2), &refused, t0).unwrap();
    assert_eq!(first.observed_generation, Some(2));
    assert_eq!(status_update(Some(&first), Some(2), &refused, t1), None);
    // Another message, same status: rewritten, the transition time kept.
    let other = Verdict::refused("InvalidSpec", "spec.title: …".to_owned());
    let second = status_update(Some(&first), Some(2), &other, t1).unwrap();
    assert_eq!(second.conditions[0].last_transition_time, Time(t0));
    // Fixed: True, a new transition time.
    let fixed = status_update(Some(&second), Some(3), &Verdict::ok(String::new()), t1).unwrap();
    assert_eq!(fixed.conditions[0].status, "True");
    assert_eq!(fixed.conditions[0].last_transition_time, Time(t1));
    assert_eq!(fixed.conditions.len(), 1);
}

const BASE: &str = "/apis/persona.dev/v1alpha1/namespaces/banking";

async fn next(handle: &mut Handle, method: Method, path: &str) -> (Value, crate::testing::Send) {
    let (body, _, send) = expect(handle, method, path).await;
    (body, send)
}

fn list_of<T: Serialize>(kind: &str, items: &[T]) -> Value {
    json!({"apiVersion": "persona.dev/v1alpha1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": "1"}, "items": items})
}

/// One namespace with the demo's FeatureSet (already reported valid), its offers
/// (one already valid, three new) and a broken one: the statuses that changed are
/// written, the broken offer gets a Warning Event, and the cluster's specs ConfigMap
/// is applied with the valid offers only.
#[tokio::test]
async fn a_namespace_sync_writes_changed_statuses_an_event_and_the_specs_config_map() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let ctx = crate::controller::Context::new(
        kube::Client::new(service, NAMESPACE),
        ShardDefaults {
            image: "ghcr.io/persona/persona:0.1.0".to_owned(),
            image_pull_policy: None,
        },
        Policy::default(),
        Some("persona-operator-0".to_owned()),
    );
    let now = Timestamp::now();
    let mut fs = demo_feature_set();
    fs.status = status_update(None, Some(1), &Verdict::ok(String::new()), now);
    let mut offers = demo_offers();
    offers[0].status = status_update(None, Some(1), &Verdict::ok(String::new()), now);
    offers.push(offer_with_when("typo", "features.car_intnet"));
    let pc = cluster(64, 2, 4);
    let server = tokio::spawn(async move {
        for (kind, path, items) in [
            ("FeatureSet", "featuresets", serde_json::to_value(vec![&fs]).unwrap()),
            ("Offer", "offers", serde_json::to_value(&offers).unwrap()),
            ("ContactPolicy", "contactpolicies", json!([])),
            (
                "PersonaCluster",
                "personaclusters",
                serde_json::to_value(vec![&pc]).unwrap(),
            ),
        ] {
            let (_, send) = next(&mut handle, Method::GET, &format!("{BASE}/{path}")).await;
            respond(send, StatusCode::OK, &list_of(kind, items.as_array().unwrap()));
        }
        // car-loan's status is current: no write. The other three demo offers, then typo.
        let mut written = Vec::new();
        for _ in 0..4 {
            let (request, send) = handle.next_request().await.expect("a status patch");
            let path = request.uri().path().to_owned();
            let query = request.uri().query().unwrap_or_default().to_owned();
            assert_eq!(request.method(), Method::PATCH, "{path}");
            assert!(query.contains("fieldManager=persona-operator"), "{query}");
            let body: Value = serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
            assert_eq!(body["kind"], "Offer");
            let name = path
                .trim_start_matches(&format!("{BASE}/offers/"))
                .trim_end_matches("/status")
                .to_owned();
            // Answered as the API server does: the whole object, with its new status.
            let mut object = serde_json::to_value(offers.iter().find(|o| o.name_any() == name).unwrap()).unwrap();
            object["status"] = body["status"].clone();
            respond(send, StatusCode::OK, &object);
            written.push((name.clone(), body["status"]["conditions"][0].clone()));
            if name == "typo" {
                let (event, send) = next(
                    &mut handle,
                    Method::POST,
                    "/apis/events.k8s.io/v1/namespaces/banking/events",
                )
                .await;
                assert_eq!(
                    (event["type"].as_str(), event["reason"].as_str()),
                    (Some("Warning"), Some("InvalidSpec"))
                );
                assert_eq!(event["regarding"]["kind"], "Offer");
                assert!(event["note"].as_str().unwrap().contains("car_intnet"));
                respond(send, StatusCode::CREATED, &event);
            }
        }
        let names: Vec<&str> = written.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["mall-discount", "fixed-deposit", "fuel-card", "typo"]);
        let typo = &written[3].1;
        assert_eq!(
            (typo["status"].as_str(), typo["reason"].as_str()),
            (Some("False"), Some("InvalidSpec"))
        );
        assert_eq!(typo["observedGeneration"], 2);
        assert_eq!(written[0].1["status"], "True");

        let (cm, send) = next(
            &mut handle,
            Method::PATCH,
            "/api/v1/namespaces/banking/configmaps/prod-specs",
        )
        .await;
        respond(send, StatusCode::OK, &cm);
        assert_eq!(cm["metadata"]["ownerReferences"][0]["kind"], "PersonaCluster");
        assert_eq!(
            cm["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "persona-operator"
        );
        let offers = cm["data"][OFFERS_KEY].as_str().unwrap();
        assert!(offers.contains("name: fuel-card") && !offers.contains("name: typo"));
        assert!(
            cm["data"][FEATURE_SET_KEY]
                .as_str()
                .unwrap()
                .contains("name: retail-banking")
        );
        handle
    });
    sync_namespace(&ctx, NAMESPACE).await.unwrap();
    let mut handle = server.await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(50), handle.next_request()).await;
    assert!(matches!(quiet, Err(_) | Ok(None)), "no call beyond the sync");
}
