//! FeatureSets, Offers and ContactPolicies: each is compiled with the engine's own
//! compiler and gets a `Valid` condition with the diagnostic; the valid ones of a
//! namespace reach its PersonaClusters' shards through a `<cluster>-specs`
//! ConfigMap, which the shard pods mount and reload when it changes (no restart).
//!
//! The unit of work is a namespace: any change to one of these kinds, or to a
//! PersonaCluster, syncs its namespace ([`sync_namespace`]), which judges everything
//! ([`judge`], pure), writes the statuses that changed, and applies each cluster's
//! specs ConfigMap ([`bundle`], pure).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use persona_event::spec::{API_VERSION, Metadata};
use persona_expr::FieldError;
use persona_features::FeatureSetDocument;
use persona_offers::spec::OfferDocument;
use persona_offers::{ContactPolicyDocument, Offer as CompiledOffer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::conditions::{condition, find, merge};
use crate::controller::Context;
use crate::crd::{ContactPolicy, FeatureSet, Offer, PersonaCluster, SpecStatus};
use crate::error::{Error, Result};
use crate::resources::{FIELD_MANAGER, Names, labels, owner_reference};

/// The condition every spec kind reports.
pub const VALID: &str = "Valid";
/// The keys of a specs ConfigMap.
pub const FEATURE_SET_KEY: &str = "featureset.yaml";
pub const OFFERS_KEY: &str = "offers.yaml";
pub const POLICY_KEY: &str = "contactpolicy.yaml";

/// The outcome of compiling one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub valid: bool,
    /// CamelCase: `Compiled`, `InvalidSpec`, `NoFeatureSet`, `InvalidFeatureSet`,
    /// `AnotherContactPolicy`.
    pub reason: &'static str,
    /// Empty when valid; else the diagnostic (fields, lines, carets).
    pub message: String,
}

impl Verdict {
    fn ok(message: String) -> Verdict {
        Verdict {
            valid: true,
            reason: "Compiled",
            message,
        }
    }

    fn refused(reason: &'static str, message: String) -> Verdict {
        Verdict {
            valid: false,
            reason,
            message,
        }
    }
}

/// Every object of a namespace, judged, by kind and name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Judgement {
    pub feature_sets: BTreeMap<String, Verdict>,
    pub offers: BTreeMap<String, Verdict>,
    pub policies: BTreeMap<String, Verdict>,
}

/// Renders compile errors as the CLI does, the expressions with their carets; the
/// origin names the field (`spec.when`).
pub fn render(errors: &[FieldError]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .map(|e| match e {
            FieldError::Invalid { path, message } => format!("{}: {message}", spec_path(path)),
            FieldError::Expr {
                path,
                source_text,
                diagnostics,
            } => diagnostics
                .render(source_text, &spec_path(path), 1)
                .trim_end()
                .to_owned(),
        })
        .collect();
    parts.join("\n")
}

fn spec_path(path: &str) -> String {
    if path == "kind" || path.starts_with("metadata") {
        path.to_owned()
    } else {
        format!("spec.{path}")
    }
}

fn metadata(name: &str) -> Metadata {
    Metadata {
        name: name.to_owned(),
        ..Metadata::default()
    }
}

fn feature_set_document(fs: &FeatureSet) -> FeatureSetDocument {
    FeatureSetDocument {
        api_version: Some(API_VERSION.to_owned()),
        kind: "FeatureSet".to_owned(),
        metadata: metadata(&fs.name_any()),
        spec: fs.spec.0.clone(),
    }
}

fn offer_document(offer: &Offer) -> OfferDocument {
    OfferDocument {
        api_version: Some(API_VERSION.to_owned()),
        kind: "Offer".to_owned(),
        metadata: metadata(&offer.name_any()),
        spec: offer.spec.0.clone(),
    }
}

fn policy_document(policy: &ContactPolicy) -> ContactPolicyDocument {
    ContactPolicyDocument {
        api_version: Some(API_VERSION.to_owned()),
        kind: "ContactPolicy".to_owned(),
        metadata: metadata(&policy.name_any()),
        spec: policy.spec.0.clone(),
    }
}

/// Compiles every object of one namespace. An Offer is checked against each
/// FeatureSet a PersonaCluster of the namespace runs (every FeatureSet when no
/// cluster names one): it is valid when it compiles against all of them. One
/// ContactPolicy applies per namespace: the first valid one by name; the others are
/// refused.
pub fn judge(
    feature_sets: &[FeatureSet],
    offers: &[Offer],
    policies: &[ContactPolicy],
    clusters: &[PersonaCluster],
) -> Judgement {
    let mut judgement = Judgement::default();
    let mut compiled = BTreeMap::new();
    for fs in feature_sets {
        let name = fs.name_any();
        let verdict = match persona_features::FeatureSet::compile(&feature_set_document(fs)) {
            Ok(set) => {
                compiled.insert(name.clone(), set);
                Verdict::ok(String::new())
            }
            Err(errors) => Verdict::refused("InvalidSpec", render(&errors)),
        };
        judgement.feature_sets.insert(name, verdict);
    }
    let named: BTreeSet<&str> = clusters.iter().map(|c| c.spec.feature_set.as_str()).collect();
    let against: Vec<&str> = if named.is_empty() {
        judgement.feature_sets.keys().map(String::as_str).collect()
    } else {
        named.iter().copied().collect()
    };
    for offer in offers {
        let doc = offer_document(offer);
        let verdict = if against.is_empty() {
            Verdict::refused(
                "NoFeatureSet",
                "no FeatureSet in this namespace to check the offer against".to_owned(),
            )
        } else {
            let mut problems = Vec::new();
            for fs in &against {
                match compiled.get(*fs) {
                    Some(set) => {
                        if let Err(errors) = CompiledOffer::compile(&doc, set) {
                            problems.push(format!("against FeatureSet {fs}:\n{}", render(&errors)));
                        }
                    }
                    None => problems.push(format!(
                        "FeatureSet {fs} {}",
                        if judgement.feature_sets.contains_key(*fs) {
                            "is not valid"
                        } else {
                            "does not exist"
                        }
                    )),
                }
            }
            if problems.is_empty() {
                Verdict::ok(String::new())
            } else {
                let reason = if problems.iter().all(|p| p.starts_with("FeatureSet ")) {
                    "InvalidFeatureSet"
                } else {
                    "InvalidSpec"
                };
                Verdict::refused(reason, problems.join("\n"))
            }
        };
        judgement.offers.insert(offer.name_any(), verdict);
    }
    let mut sorted: Vec<&ContactPolicy> = policies.iter().collect();
    sorted.sort_by_key(|p| p.name_any());
    let mut chosen: Option<String> = None;
    for policy in sorted {
        let name = policy.name_any();
        let verdict = match persona_offers::ContactPolicy::compile(&policy_document(policy)) {
            Err(errors) => Verdict::refused("InvalidSpec", render(&errors)),
            Ok(_) => match &chosen {
                Some(first) => Verdict::refused(
                    "AnotherContactPolicy",
                    format!("ContactPolicy {first} applies in this namespace: one per namespace"),
                ),
                None => {
                    chosen = Some(name.clone());
                    Verdict::ok(String::new())
                }
            },
        };
        judgement.policies.insert(name, verdict);
    }
    judgement
}

/// The specs ConfigMap's data for `cluster`: its FeatureSet, the valid offers and the
/// namespace's ContactPolicy, as the YAML files `persona shard --specs` reads; or why
/// the cluster's shards keep what they run (its FeatureSet is missing or invalid).
pub fn bundle(
    cluster: &PersonaCluster,
    feature_sets: &[FeatureSet],
    offers: &[Offer],
    policies: &[ContactPolicy],
    judgement: &Judgement,
) -> Result<BTreeMap<String, String>, (&'static str, String)> {
    let wanted = &cluster.spec.feature_set;
    let Some(fs) = feature_sets.iter().find(|f| f.name_any() == *wanted) else {
        return Err((
            "FeatureSetMissing",
            format!("FeatureSet {wanted} does not exist; the shards keep the specs they run"),
        ));
    };
    if judgement.feature_sets.get(wanted).is_none_or(|v| !v.valid) {
        return Err((
            "FeatureSetNotValid",
            format!("FeatureSet {wanted} is not valid (see its status); the shards keep the specs they run"),
        ));
    }
    let mut data = BTreeMap::new();
    data.insert(FEATURE_SET_KEY.to_owned(), yaml(&feature_set_document(fs)));
    let mut valid: Vec<&Offer> = offers
        .iter()
        .filter(|o| judgement.offers.get(&o.name_any()).is_some_and(|v| v.valid))
        .collect();
    valid.sort_by_key(|o| o.name_any());
    let documents: Vec<String> = valid.iter().map(|o| yaml(&offer_document(o))).collect();
    data.insert(OFFERS_KEY.to_owned(), documents.join("---\n"));
    if let Some(policy) = policies
        .iter()
        .find(|p| judgement.policies.get(&p.name_any()).is_some_and(|v| v.valid))
    {
        data.insert(POLICY_KEY.to_owned(), yaml(&policy_document(policy)));
    }
    Ok(data)
}

fn yaml<T: Serialize>(document: &T) -> String {
    // The documents are plain data: serializing them does not fail.
    serde_yaml::to_string(document).expect("a spec document serializes")
}

/// The status a spec object should have: its `Valid` condition merged into what it
/// has, for `generation`. `None` when nothing would change.
pub fn status_update(
    previous: Option<&SpecStatus>,
    generation: Option<i64>,
    verdict: &Verdict,
    now: Timestamp,
) -> Option<SpecStatus> {
    let mut status = previous.cloned().unwrap_or_default();
    let current = find(&status.conditions, VALID);
    let same = current.is_some_and(|c| {
        c.status == crate::conditions::status_word(verdict.valid)
            && c.reason == verdict.reason
            && c.message == verdict.message
            && c.observed_generation == generation
    });
    if same && status.observed_generation == generation {
        return None;
    }
    status.observed_generation = generation;
    merge(
        &mut status.conditions,
        condition(
            VALID,
            verdict.valid,
            verdict.reason,
            verdict.message.clone(),
            generation,
            &Time(now),
        ),
    );
    Some(status)
}

/// Syncs one namespace: judges its specs, writes the statuses that changed (with a
/// Warning Event for an object that became invalid), and applies each
/// PersonaCluster's specs ConfigMap.
pub async fn sync_namespace(ctx: &Context, namespace: &str) -> Result<()> {
    let client = &ctx.client;
    let feature_sets = list::<FeatureSet>(client, namespace).await?;
    let offers = list::<Offer>(client, namespace).await?;
    let policies = list::<ContactPolicy>(client, namespace).await?;
    let clusters = list::<PersonaCluster>(client, namespace).await?;
    let judgement = judge(&feature_sets, &offers, &policies, &clusters);
    let present: Vec<String> = clusters.iter().map(ResourceExt::name_any).collect();
    ctx.retain_clusters(namespace, &present);
    let now = Timestamp::now();

    let mut changed = 0;
    for fs in &feature_sets {
        changed += report(ctx, namespace, fs, &judgement.feature_sets[&fs.name_any()], now).await?;
    }
    for offer in &offers {
        changed += report(ctx, namespace, offer, &judgement.offers[&offer.name_any()], now).await?;
    }
    for policy in &policies {
        changed += report(ctx, namespace, policy, &judgement.policies[&policy.name_any()], now).await?;
    }

    for cluster in &clusters {
        match bundle(cluster, &feature_sets, &offers, &policies, &judgement) {
            Ok(data) => {
                let names = Names::of(&cluster.name_any());
                let config_map = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(names.specs.clone()),
                        namespace: Some(namespace.to_owned()),
                        labels: Some(labels(&cluster.name_any(), "specs")),
                        owner_references: Some(vec![owner_reference(cluster)?]),
                        ..ObjectMeta::default()
                    },
                    data: Some(data),
                    ..ConfigMap::default()
                };
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
                api.patch(
                    &names.specs,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&config_map),
                )
                .await?;
            }
            Err((reason, message)) => {
                warn!(cluster = %cluster.name_any(), reason, %message, "specs not distributed");
                publish(ctx, cluster, EventType::Warning, reason, &message).await;
            }
        }
    }
    info!(
        namespace,
        feature_sets = feature_sets.len(),
        offers = offers.len(),
        policies = policies.len(),
        clusters = clusters.len(),
        statuses_written = changed,
        "specs synced"
    );
    Ok(())
}

async fn list<K>(client: &kube::Client, namespace: &str) -> Result<Vec<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    Ok(api.list(&ListParams::default()).await?.items)
}

/// Writes `object`'s status when `verdict` changes it; 1 when written.
async fn report<K>(ctx: &Context, namespace: &str, object: &K, verdict: &Verdict, now: Timestamp) -> Result<usize>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned
        + HasSpecStatus,
{
    let generation = object.meta().generation;
    let Some(status) = status_update(object.spec_status(), generation, verdict, now) else {
        return Ok(0);
    };
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    // Written only when it changed: an Event per new refusal, not per sync.
    if !verdict.valid {
        publish(ctx, object, EventType::Warning, verdict.reason, &verdict.message).await;
    }
    Ok(1)
}

async fn publish<K>(ctx: &Context, object: &K, type_: EventType, reason: &str, message: &str)
where
    K: Resource<DynamicType = ()>,
{
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(crate::controller::truncate(message, 1024)),
        action: "Validate".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        warn!(error = %e, "could not publish the event");
    }
}

/// The spec kinds' statuses, read uniformly.
pub trait HasSpecStatus {
    fn spec_status(&self) -> Option<&SpecStatus>;
}

impl HasSpecStatus for FeatureSet {
    fn spec_status(&self) -> Option<&SpecStatus> {
        self.status.as_ref()
    }
}

impl HasSpecStatus for Offer {
    fn spec_status(&self) -> Option<&SpecStatus> {
        self.status.as_ref()
    }
}

impl HasSpecStatus for ContactPolicy {
    fn spec_status(&self) -> Option<&SpecStatus> {
        self.status.as_ref()
    }
}

/// Runs until `shutdown`: watches the four kinds in `namespace` (or everywhere) and
/// syncs each namespace a change touches, at most once per half second, and every
/// namespace it knows every five minutes; a failed sync is retried after 10 s.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let client = ctx.client.clone();
    let mut watchers = tokio::task::JoinSet::new();
    macro_rules! watch_kind {
        ($kind:ty) => {{
            let api: Api<$kind> = match namespace {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            // Fails fast, with a clear error, when the CRD is missing or RBAC forbids.
            api.list(&ListParams::default().limit(1)).await?;
            let tx = tx.clone();
            watchers.spawn(async move {
                let mut stream = watcher(api, watcher::Config::default()).boxed();
                while let Some(event) = stream.next().await {
                    let touched = match event {
                        Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o)) => {
                            o.namespace()
                        }
                        Ok(_) => None,
                        Err(e) => {
                            warn!(error = %e, kind = %<$kind>::kind(&()), "watch failed; retrying");
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            None
                        }
                    };
                    if let Some(ns) = touched
                        && tx.send(ns).is_err()
                    {
                        return;
                    }
                }
            });
        }};
    }
    watch_kind!(FeatureSet);
    watch_kind!(Offer);
    watch_kind!(ContactPolicy);
    watch_kind!(PersonaCluster);
    drop(tx);

    let mut known: BTreeSet<String> = BTreeSet::new();
    let mut due: HashMap<String, tokio::time::Instant> = HashMap::new();
    let mut resync = tokio::time::interval(Duration::from_secs(300));
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            touched = rx.recv() => match touched {
                Some(ns) => {
                    known.insert(ns.clone());
                    due.entry(ns).or_insert_with(tokio::time::Instant::now);
                }
                None => break,
            },
            _ = resync.tick() => {
                for ns in &known {
                    due.entry(ns.clone()).or_insert_with(tokio::time::Instant::now);
                }
            }
            _ = tick.tick() => {
                let now = tokio::time::Instant::now();
                let ready: Vec<String> = due.iter().filter(|(_, at)| **at <= now).map(|(ns, _)| ns.clone()).collect();
                for ns in ready {
                    due.remove(&ns);
                    match sync_namespace(&ctx, &ns).await {
                        Ok(()) => ctx.metrics.reconciled("Specs", true),
                        Err(e) => {
                            ctx.metrics.reconciled("Specs", false);
                            warn!(namespace = %ns, error = %e, "specs sync failed; retrying in 10s");
                            due.insert(ns, now + Duration::from_secs(10));
                        }
                    }
                }
            }
        }
    }
    watchers.shutdown().await;
    Ok::<(), Error>(())
}

#[cfg(test)]
mod tests;
