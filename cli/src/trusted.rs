//! The trusted zone's long-running services on a local cluster: `persona gateway`
//! (drop directory and gRPC ingest to the Redis bus, and the vault's sealed records
//! for the de-tokenizer), `persona detokenizer` (matches -> resolve -> channel sinks ->
//! audit, outcomes back to the cloud), and `persona dev-certs` (a development CA and
//! certificates for their mutual-TLS link).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use persona_detokenizer::channels::{Auth, Sink};
use persona_detokenizer::resolve::{Remote, Resolver};
use persona_detokenizer::service::{DetokenizerService, ServiceConfig};
use persona_event::Channel;
use persona_gateway::Gateway;
use persona_gateway::service::{DropDir, IngestService};
use persona_privacy::Opener;
use persona_proto::SealedVaultClient;
use persona_proto::tls::MutualTls;
use tokio::sync::watch;

use crate::cluster::BusArgs;
use crate::kms::KmsArgs;

/// Mutual TLS for a trusted-zone link: this side's certificate and key, and the CA
/// that signs the other side's.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Mutual TLS")]
pub(crate) struct TlsArgs {
    /// A directory holding `ca.pem`, `NAME.pem` and `NAME.key` (as `persona dev-certs`
    /// writes them), NAME being this service's name (gateway, detokenizer).
    #[arg(long, env = "PERSONA_TLS_DIR")]
    tls_dir: Option<PathBuf>,
}

impl TlsArgs {
    fn files(&self, name: &str) -> Option<MutualTls> {
        self.tls_dir.as_ref().map(|d| MutualTls::in_dir(d, name))
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct GatewayArgs {
    #[command(flatten)]
    bus: BusArgs,
    /// Directory of Source YAML.
    #[arg(long, env = "PERSONA_SPECS", required_unless_present = "sources_namespace")]
    specs: Option<PathBuf>,
    /// Also read the Source objects of this Kubernetes namespace (kubectl apply -f
    /// source.yaml), at start; restart the gateway to take up a change.
    #[arg(long, env = "PERSONA_SOURCES_NAMESPACE")]
    sources_namespace: Option<String>,
    /// The trusted data directory: the vault is DATA/trusted/vault.
    #[arg(long, env = "PERSONA_DATA")]
    data: PathBuf,
    #[command(flatten)]
    kms: KmsArgs,
    /// Watch this directory for source files (each Source's glob under it).
    #[arg(long = "drop", env = "PERSONA_DROP_DIR")]
    drop_dir: Option<PathBuf>,
    /// Where ingested files move, and where dead_letter.jsonl is appended (default:
    /// DROP/.done).
    #[arg(long, env = "PERSONA_DONE_DIR", requires = "drop_dir")]
    done: Option<PathBuf>,
    /// How often the drop directory is scanned.
    #[arg(long, default_value = "1s", value_parser = crate::args::parse_duration)]
    poll: Duration,
    /// A file is taken once unmodified this long (0 when writers rename finished
    /// files in).
    #[arg(long, default_value = "2s", value_parser = crate::args::parse_duration)]
    settle: Duration,
    /// The trusted zone's Redis that stream sources (`stream: KEY`) are read from, in
    /// the consumer group `persona-gateway`. Never logged.
    #[arg(long, env = "PERSONA_SOURCE_REDIS_URL", hide_env_values = true)]
    source_redis: Option<String>,
    /// This gateway's consumer name in the stream sources' group.
    #[arg(long, env = "PERSONA_CONSUMER", default_value = "gateway-0")]
    consumer: String,
    /// The dead-letter file refused records are appended to (default: DONE/
    /// dead_letter.jsonl with --drop, else DATA/trusted/dead_letter.jsonl).
    #[arg(long, env = "PERSONA_DEAD_LETTERS")]
    dead_letters: Option<PathBuf>,
    /// Serve gRPC (Gateway.Ingest; SealedVault with --tls-dir) on this address.
    #[arg(long, env = "PERSONA_GRPC_ADDR")]
    grpc: Option<SocketAddr>,
    #[command(flatten)]
    tls: TlsArgs,
    /// Serve Prometheus metrics (OpenMetrics text) on http://ADDR/metrics.
    #[arg(long, env = "PERSONA_METRICS_ADDR")]
    metrics: Option<SocketAddr>,
}

/// `persona gateway`: runs until SIGTERM or Ctrl-C, then finishes the file in hand,
/// flushes the vault and exits 0.
pub(crate) async fn gateway(args: GatewayArgs) -> Result<ExitCode> {
    let (mut sources, problems) = match &args.specs {
        Some(dir) => crate::specs::sources(dir)?,
        None => (Vec::new(), Vec::new()),
    };
    for p in &problems {
        eprintln!("{}", p.rendered);
    }
    if let Some(namespace) = &args.sources_namespace {
        let client = kube::Client::try_default()
            .await
            .context("--sources-namespace: no Kubernetes API (neither in-cluster nor a kubeconfig)")?;
        let (from_api, refused) = persona_privacy::crd::load(client, namespace)
            .await
            .with_context(|| format!("listing the Sources of namespace {namespace}"))?;
        for (name, error) in &refused {
            eprintln!("Source {namespace}/{name} refused: {error}");
            tracing::warn!(source = %name, "Source refused; the gateway goes on without it");
        }
        for source in from_api {
            if sources.iter().any(|s| s.name() == source.name()) {
                bail!(
                    "Source `{}` is both a file and an object of namespace {namespace}: keep one",
                    source.name()
                );
            }
            sources.push(source);
        }
    }
    if sources.is_empty() {
        bail!("no Source: none in the specs directory nor in the namespace given");
    }
    let streams: Vec<String> = sources
        .iter()
        .filter(|s| s.stream().is_some())
        .map(|s| s.name().to_owned())
        .collect();
    if let (Some(first), None) = (streams.first(), &args.source_redis) {
        bail!("source `{first}` reads a Redis stream: give --source-redis URL (or PERSONA_SOURCE_REDIS_URL)");
    }
    if args.drop_dir.is_none() && args.grpc.is_none() && streams.is_empty() {
        bail!("nothing to serve: give --drop DIR, --grpc ADDR, or a Source with a `stream`");
    }
    let vault = args.kms.open_vault(&args.data)?;
    let bus = args.bus.connect().await?;
    let dead_letters = match (&args.dead_letters, &args.done, &args.drop_dir) {
        (Some(path), _, _) => path.clone(),
        (None, Some(done), _) => done.join("dead_letter.jsonl"),
        (None, None, Some(drop)) => drop.join(".done").join("dead_letter.jsonl"),
        (None, None, None) => args.data.join("trusted").join("dead_letter.jsonl"),
    };
    let names: Vec<String> = sources.iter().map(|s| s.name().to_owned()).collect();
    let service = IngestService::new(
        std::sync::Arc::new(Gateway::new(sources, vault.clone())),
        bus,
        dead_letters,
    );
    let (stop, stopped) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(dir) = &args.drop_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let drop = DropDir {
            dir: dir.clone(),
            done: args.done.clone().unwrap_or_else(|| dir.join(".done")),
            poll: args.poll,
            settle: args.settle,
        };
        println!("gateway watching {} for sources {}", dir.display(), names.join(", "));
        tasks.spawn(service.clone().watch(drop, stopped.clone()).map_ok());
    }
    if let Some(url) = &args.source_redis {
        for name in &streams {
            let follow = service
                .clone()
                .follow(url.clone(), name.clone(), args.consumer.clone(), stopped.clone());
            tasks.spawn(async move { follow.await.map_err(anyhow::Error::from) });
        }
        if !streams.is_empty() {
            println!("gateway following the streams of sources {}", streams.join(", "));
        }
    }
    if let Some(addr) = args.grpc {
        let tls = args.tls.files("gateway");
        let mut rx = stopped.clone();
        let serving = service.clone().serve(addr, tls, async move {
            let _ = rx.wait_for(|s| *s).await;
        });
        println!("gateway serving gRPC on {addr}");
        tasks.spawn(async move { serving.await.map_err(anyhow::Error::from) });
    }
    if args.metrics.is_some() || crate::telemetry::otlp_endpoint().is_some() {
        let gather = gateway_metrics(service.clone());
        for task in crate::metrics::publish(args.metrics, "persona-gateway", gather, stopped.clone()) {
            tasks.spawn(async move { task.await? });
        }
    }
    if let Some(addr) = args.metrics {
        println!("gateway serving metrics on http://{addr}/metrics");
    }
    let failed = wait_for_signal_or(&mut tasks).await;
    let _ = stop.send(true);
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    vault.flush().context("flushing the vault")?;
    println!("gateway stopped");
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(ExitCode::SUCCESS)
}

trait MapOk {
    fn map_ok(self) -> impl std::future::Future<Output = Result<()>> + Send;
}

impl<F: std::future::Future<Output = ()> + Send> MapOk for F {
    async fn map_ok(self) -> Result<()> {
        self.await;
        Ok(())
    }
}

/// Waits for SIGTERM or Ctrl-C, or for a task to end early (an error it returns).
async fn wait_for_signal_or(tasks: &mut tokio::task::JoinSet<Result<()>>) -> Option<anyhow::Error> {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => return Some(e.into()),
    };
    tokio::select! {
        _ = terminate.recv() => None,
        _ = tokio::signal::ctrl_c() => None,
        Some(done) = tasks.join_next() => match done {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(e.into()),
        },
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct DetokenizerArgs {
    #[command(flatten)]
    bus: BusArgs,
    /// The trusted data directory: the service's own store is DATA/trusted/detokenizer;
    /// with --kms local the master key is DATA/trusted/kms.
    #[arg(long, env = "PERSONA_DATA")]
    data: PathBuf,
    #[command(flatten)]
    kms: KmsArgs,
    /// The gateway's gRPC address (https://HOST:PORT), whose SealedVault serves the
    /// vault's records; needs --tls-dir.
    #[arg(long, env = "PERSONA_VAULT_ADDR")]
    vault: String,
    /// A channel's sink: `CHANNEL=URL`, CHANNEL one of push, email, sms; URL one of
    /// file:PATH, http(s)://… (webhook), smtp://HOST:PORT?from=ADDR,
    /// smtp+starttls://…, smtps://…. Repeat per channel; channels not named go to
    /// file:OUT/deliveries.jsonl. Several may be given comma-separated.
    #[arg(
        long = "channel",
        value_name = "CHANNEL=URL",
        env = "PERSONA_CHANNELS",
        value_delimiter = ','
    )]
    channels: Vec<String>,
    /// Sent to webhook sinks as `Authorization: Bearer TOKEN`. Never logged.
    #[arg(long, env = "PERSONA_WEBHOOK_TOKEN", hide_env_values = true)]
    webhook_token: Option<String>,
    /// SMTP AUTH user name for smtp sinks.
    #[arg(long, env = "PERSONA_SMTP_USERNAME", requires = "smtp_password")]
    smtp_username: Option<String>,
    /// SMTP AUTH password for smtp sinks. Never logged.
    #[arg(
        long,
        env = "PERSONA_SMTP_PASSWORD",
        hide_env_values = true,
        requires = "smtp_username"
    )]
    smtp_password: Option<String>,
    /// Where audit.jsonl (and the default deliveries.jsonl) go.
    #[arg(long, env = "PERSONA_OUT")]
    out: PathBuf,
    /// This process's consumer name in the matches stream's group.
    #[arg(long, env = "PERSONA_CONSUMER", default_value = "detokenizer-0")]
    consumer: String,
    /// Serve `POST /v1/responses` here: channels report opens, clicks, STOP replies
    /// and late bounces of delivered matches (plain HTTP: bind it inside the trusted
    /// zone only).
    #[arg(long, env = "PERSONA_RESPONSES_ADDR")]
    responses: Option<SocketAddr>,
    /// Matches another consumer left pending this long are taken over.
    #[arg(long, env = "PERSONA_STALE_AFTER", default_value = "30s", value_parser = crate::args::parse_duration)]
    stale: Duration,
    #[command(flatten)]
    tls: TlsArgs,
    /// Serve Prometheus metrics (OpenMetrics text) on http://ADDR/metrics.
    #[arg(long, env = "PERSONA_METRICS_ADDR")]
    metrics: Option<SocketAddr>,
}

/// `persona detokenizer`: delivers until SIGTERM or Ctrl-C.
pub(crate) async fn detokenizer(args: DetokenizerArgs) -> Result<ExitCode> {
    let auth = Auth {
        webhook_bearer: args.webhook_token.clone().filter(|t| !t.is_empty()),
        smtp: args.smtp_username.clone().zip(args.smtp_password.clone()),
    };
    let mut routes = BTreeMap::new();
    for spec in &args.channels {
        let (channel, url) = spec
            .split_once('=')
            .with_context(|| format!("--channel `{spec}`: expected CHANNEL=URL"))?;
        let channel: Channel = channel.parse().map_err(|e: String| anyhow::anyhow!("--channel: {e}"))?;
        let sink = Sink::parse_with(url, &auth).map_err(|e| anyhow::anyhow!("--channel {channel}: {e}"))?;
        routes.insert(channel, sink);
    }
    let default_sink = format!("file:{}", args.out.join("deliveries.jsonl").display());
    for channel in Channel::ALL {
        if let std::collections::btree_map::Entry::Vacant(e) = routes.entry(channel) {
            e.insert(Sink::parse(&default_sink).map_err(anyhow::Error::msg)?);
        }
    }
    let tls = args
        .tls
        .files("detokenizer")
        .context("the vault link is mutual TLS: give --tls-dir (see `persona dev-certs`)")?;
    let endpoint = tonic::transport::Endpoint::from_shared(args.vault.clone())
        .with_context(|| format!("--vault `{}` is not a URL", args.vault))?;
    let domain = endpoint.uri().host().unwrap_or("localhost").to_owned();
    let channel = endpoint
        .tls_config(tls.client(&domain)?)
        .context("TLS for the vault link")?
        .connect_lazy();
    let trusted = args.data.join("trusted");
    let kms = args.kms.connect(&trusted)?;
    let resolver = Resolver::Remote(Box::new(Remote {
        client: SealedVaultClient::new(channel),
        opener: Opener::new(kms, args.kms.limits()),
    }));
    let bus = args.bus.connect().await?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let config = ServiceConfig {
        routes,
        audit: args.out.join("audit.jsonl"),
        store: trusted.join("detokenizer"),
        consumer: args.consumer.clone(),
        stale: args.stale,
    };
    let service = std::sync::Arc::new(DetokenizerService::open(bus, resolver, config)?);
    let (stop, stopped) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let running = service.clone();
    let responses_stop = stopped.clone();
    let responses_stop_metrics = stopped.clone();
    tasks.spawn(async move { running.run(stopped).await.map_err(anyhow::Error::from) });
    if let Some(addr) = args.responses {
        let serving = persona_detokenizer::service::responses::serve(service.clone(), addr, responses_stop);
        tasks.spawn(async move { serving.await.map_err(anyhow::Error::from) });
        println!("detokenizer taking channel responses on http://{addr}/v1/responses");
    }
    if args.metrics.is_some() || crate::telemetry::otlp_endpoint().is_some() {
        let gather = detokenizer_metrics(service.clone());
        for task in crate::metrics::publish(args.metrics, "persona-detokenizer", gather, responses_stop_metrics) {
            tasks.spawn(async move { task.await? });
        }
    }
    if let Some(addr) = args.metrics {
        println!("detokenizer serving metrics on http://{addr}/metrics");
    }
    println!("detokenizer {} delivering", args.consumer);
    let failed = wait_for_signal_or(&mut tasks).await;
    let _ = stop.send(true);
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let stats = service.stats();
    println!(
        "detokenizer stopped: matches {}, outcomes {}, duplicates {}, retries {}, kms decrypts {}",
        stats.matches,
        serde_json::to_string(&stats.by_outcome)?,
        stats.duplicates,
        stats.retries,
        service.kms_decrypts()
    );
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(ExitCode::SUCCESS)
}

/// The gateway's metrics: records, events, dead letters and tokens issued by way in,
/// and failed batches.
fn gateway_metrics(service: std::sync::Arc<IngestService>) -> crate::metrics::Gather {
    use std::sync::atomic::Ordering::Relaxed;

    use crate::metrics::{counters, label};
    std::sync::Arc::new(move || {
        let service = service.clone();
        Box::pin(async move {
            let mut registry = prometheus_client::registry::Registry::default();
            let c = service.counters();
            let families = [
                ("persona_gateway_records", "Source records read"),
                ("persona_gateway_events", "Events published to the bus"),
                ("persona_gateway_dead_lettered", "Records refused (dead-lettered)"),
                ("persona_gateway_tokens_issued", "Tokens issued to new customers"),
            ]
            .map(|(name, help)| counters(&mut registry, name, help));
            for (way, w) in persona_gateway::service::WAYS.iter().zip(&c.by_way) {
                let l = label("way", way);
                let values = [&w.records, &w.events, &w.dead_lettered, &w.tokens_issued];
                for (family, value) in families.iter().zip(values) {
                    family.get_or_create(&l).inc_by(value.load(Relaxed));
                }
            }
            let failures = prometheus_client::metrics::counter::Counter::<u64>::default();
            failures.inc_by(c.failures.load(Relaxed));
            registry.register(
                "persona_gateway_failures",
                "Files, calls or stream batches that failed (kept and retried)",
                failures,
            );
            registry
        })
    })
}

/// The de-tokenizer's metrics: matches by outcome, duplicates, retries, KMS Decrypt
/// calls, and the delivery latency histogram.
fn detokenizer_metrics(service: std::sync::Arc<DetokenizerService>) -> crate::metrics::Gather {
    use crate::metrics::{counters, label};
    std::sync::Arc::new(move || {
        let service = service.clone();
        Box::pin(async move {
            let mut registry = prometheus_client::registry::Registry::default();
            let stats = service.stats();
            let outcomes = counters(
                &mut registry,
                "persona_detokenizer_matches",
                "Matches handled, by outcome",
            );
            for (outcome, n) in &stats.by_outcome {
                outcomes.get_or_create(&label("outcome", outcome)).inc_by(*n);
            }
            let single = |registry: &mut prometheus_client::registry::Registry, name: &str, help: &str, v: u64| {
                let c = prometheus_client::metrics::counter::Counter::<u64>::default();
                c.inc_by(v);
                registry.register(name, help, c);
            };
            single(
                &mut registry,
                "persona_detokenizer_duplicates",
                "Matches read again and recognised as handled",
                stats.duplicates,
            );
            single(
                &mut registry,
                "persona_detokenizer_retries",
                "Waits before retrying a vault or channel",
                stats.retries,
            );
            single(
                &mut registry,
                "persona_detokenizer_kms_decrypts",
                "KMS Decrypt calls (vault keys unwrapped)",
                service.kms_decrypts(),
            );
            registry.register(
                "persona_detokenizer_deliver_seconds",
                "Time to resolve and hand over one match, retries included",
                service.deliver_seconds().clone(),
            );
            registry
        })
    })
}
