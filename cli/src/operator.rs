//! `persona operator`: the Kubernetes operator. One replica at a time leads (a Lease);
//! the leader reconciles PersonaClusters with the autoscaler reading the shards'
//! metrics. Every replica serves `/healthz`, `/readyz` and `/metrics`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use persona_operator::catalog;
use persona_operator::controller::{self, Context};
use persona_operator::decision::Policy;
use persona_operator::leader::{Elector, Timing};
use persona_operator::load::ShardScraper;
use persona_operator::metrics::Metrics;
use persona_operator::resources::ShardDefaults;
use tokio::sync::watch;

#[derive(Debug, clap::Args)]
pub(crate) struct OperatorArgs {
    /// Watch PersonaClusters in this namespace only (empty: every namespace).
    #[arg(long, env = "PERSONA_WATCH_NAMESPACE", default_value = "")]
    watch_namespace: String,
    /// The shard image for clusters that name none (the chart passes the operator's own).
    #[arg(long, env = "PERSONA_SHARD_IMAGE")]
    shard_image: String,
    /// `imagePullPolicy` of shard containers (empty: Kubernetes' default).
    #[arg(long, env = "PERSONA_SHARD_IMAGE_PULL_POLICY", default_value = "")]
    shard_image_pull_policy: String,
    /// When the shards' confirmations (`persona_table_epoch` on their /metrics) cannot
    /// be read: how long the pods of removed shard ordinals keep running after the
    /// table that moved their partitions off (`2m`).
    #[arg(long, env = "PERSONA_HANDOFF_GRACE", default_value = "2m", value_parser = crate::args::parse_duration)]
    handoff_grace: Duration,
    /// Serve /healthz, /readyz and /metrics here.
    #[arg(long, env = "PERSONA_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// The Lease the replicas elect a leader on.
    #[arg(long, env = "PERSONA_LEASE_NAME", default_value = "persona-operator")]
    lease_name: String,
    /// The Lease's namespace (the operator's own; default: the client's namespace).
    #[arg(long, env = "PERSONA_NAMESPACE")]
    namespace: Option<String>,
    /// This replica's identity in the Lease and in Events (its pod name).
    #[arg(long, env = "PERSONA_POD_NAME")]
    pod_name: Option<String>,
    /// Run without leader election: only when exactly one replica runs.
    #[arg(long)]
    no_leader_election: bool,
    /// Do not scale shards with the load (the count then changes only with the bounds).
    #[arg(long)]
    no_autoscale: bool,
}

pub(crate) async fn run(args: OperatorArgs) -> Result<ExitCode> {
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes API: neither an in-cluster service account nor a kubeconfig was found")?;
    let identity = match &args.pod_name {
        Some(name) if !name.is_empty() => name.clone(),
        _ => format!("persona-operator-{}", std::process::id()),
    };
    let lease_namespace = args
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let defaults = ShardDefaults {
        image: args.shard_image.clone(),
        image_pull_policy: Some(args.shard_image_pull_policy.clone()).filter(|p| !p.is_empty()),
    };
    let policy = Policy {
        handoff_grace: args.handoff_grace,
        ..Policy::default()
    };
    let mut ctx = Context::new(client.clone(), defaults, policy, Some(identity.clone()));
    if !args.no_autoscale {
        ctx = ctx.with_load(Arc::new(ShardScraper::default()));
    }
    let metrics = ctx.metrics.clone();

    let (leading_tx, leading) = watch::channel(args.no_leader_election);
    let (stop_tx, stop) = watch::channel(false);
    let served = crate::metrics::publish(
        Some(args.listen),
        "persona-operator",
        gather(metrics, leading.clone()),
        stop.clone(),
    );
    println!(
        "operator {identity} serving /healthz, /readyz and /metrics on {}",
        args.listen
    );

    let election = (!args.no_leader_election).then(|| {
        let elector = Elector::new(client, &lease_namespace, &args.lease_name, &identity, Timing::default());
        println!(
            "operator {identity} campaigning for lease {lease_namespace}/{}",
            args.lease_name
        );
        let stop = stop.clone();
        tokio::spawn(async move { elector.run(leading_tx, stop).await })
    });

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut signalled = Box::pin(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });

    // Follow until leading (or until told to stop).
    let mut waiting = leading.clone();
    let lead = tokio::select! {
        r = waiting.wait_for(|l| *l) => r.is_ok(),
        () = &mut signalled => false,
    };
    let mut lost = false;
    if lead {
        println!("operator {identity} leading");
        let namespace = Some(args.watch_namespace.as_str()).filter(|n| !n.is_empty());
        let mut watching = leading.clone();
        // Both controllers stop when leadership is lost or a signal comes.
        let (halt_tx, halt) = watch::channel(false);
        let halting = tokio::spawn(async move {
            let lost = tokio::select! {
                r = watching.wait_for(|l| !*l) => r.is_ok(),
                () = signalled => false,
            };
            halt_tx.send_replace(true);
            lost
        });
        let halted = |mut halt: watch::Receiver<bool>| async move {
            let _ = halt.wait_for(|h| *h).await;
        };
        let specs = catalog::run(Arc::new(ctx.clone()), namespace, halted(halt.clone()));
        let clusters = controller::run(ctx, namespace, halted(halt));
        // The first to fail (a missing CRD, RBAC) stops the other.
        tokio::try_join!(
            async {
                specs
                    .await
                    .context("running the FeatureSet, Offer and ContactPolicy sync")
            },
            async { clusters.await.context("running the PersonaCluster controller") },
        )?;
        lost = halting.await.unwrap_or(false);
    }
    stop_tx.send_replace(true);
    if let Some(election) = election {
        let _ = election.await;
    }
    for task in served {
        task.await??;
    }
    if lost {
        // Another replica may lead by now: restart as a follower.
        anyhow::bail!(
            "lost the lease {lease_namespace}/{}; exiting to restart as a follower",
            args.lease_name
        );
    }
    println!("operator {identity} stopped");
    Ok(ExitCode::SUCCESS)
}

/// The operator's metrics: leadership, reconciles, and each cluster's shard counts.
fn gather(metrics: Arc<Metrics>, leading: watch::Receiver<bool>) -> crate::metrics::Gather {
    use crate::metrics::{counters, gauges};
    Arc::new(move || {
        let (metrics, leading) = (metrics.clone(), leading.clone());
        Box::pin(async move {
            let mut registry = prometheus_client::registry::Registry::default();
            let leader = gauges(
                &mut registry,
                "persona_operator_leader",
                "1 on the replica that holds the lease",
            );
            leader.get_or_create(&Vec::new()).set(i64::from(*leading.borrow()));
            let reconciles = counters(
                &mut registry,
                "persona_operator_reconciles",
                "Reconciles by kind and result",
            );
            for ((kind, result), n) in metrics.reconciles() {
                let labels = vec![
                    ("kind".to_owned(), kind.to_owned()),
                    ("result".to_owned(), result.to_owned()),
                ];
                reconciles.get_or_create(&labels).inc_by(n);
            }
            let desired = gauges(
                &mut registry,
                "persona_operator_desired_shards",
                "Shards the autoscaler asks for",
            );
            let shards = gauges(
                &mut registry,
                "persona_operator_shards",
                "Shard pods the StatefulSet is asked to run",
            );
            let max = gauges(
                &mut registry,
                "persona_operator_max_shards",
                "The PersonaCluster's shards.max",
            );
            for ((namespace, cluster), counts) in metrics.clusters() {
                let labels = vec![("namespace".to_owned(), namespace), ("cluster".to_owned(), cluster)];
                desired.get_or_create(&labels).set(i64::from(counts.desired));
                shards.get_or_create(&labels).set(i64::from(counts.shards));
                max.get_or_create(&labels).set(i64::from(counts.max));
            }
            registry
        })
    })
}
