//! Command-line arguments. The doc comments are the `--help` text.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand};

use crate::kms::KmsArgs;

/// persona: real-time offer personalization for banks, with customer data kept on-prem.
#[derive(Debug, Parser)]
#[command(name = "persona", version, about)]
pub(crate) struct Cli {
    /// Less output on stderr: warnings and errors only.
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,
    /// Export the services' spans to this OpenTelemetry collector (OTLP over gRPC,
    /// e.g. http://otel-collector:4317).
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub(crate) otlp_endpoint: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    pub(crate) fn log_level(&self) -> &'static str {
        if self.quiet {
            "warn,sled=error,aws_config=error"
        } else {
            // aws-config warns with whole HTTP responses while it probes for a region
            // or credentials; the KMS provider reports what matters itself.
            "info,sled=warn,ractor=warn,aws_config=error"
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Generate a synthetic bank and run all five stages on it, embedded.
    Demo(DemoArgs),
    /// Run the pipeline over your own sources and specs, embedded.
    Run(RunArgs),
    /// Compute features.jsonl in batch from the source files, without actors.
    Backfill(crate::backfill::Args),
    /// Trusted-zone vault administration: resolve, forget, key rotation, rewrap, backup.
    #[command(subcommand)]
    Vault(crate::vault::VaultCommand),
    /// Trusted-zone privacy tools: what each Source lets out, field by field.
    #[command(subcommand)]
    Privacy(crate::privacy::PrivacyCommand),
    /// Offer tools.
    #[command(subcommand)]
    Offer(OfferCommand),
    /// Measured scenarios (see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Write the CustomResourceDefinitions, one YAML file per kind (default into crds/).
    Crdgen(crate::crdgen::Args),
    /// A shard process on the Redis bus: feeds the partitions leased to it until
    /// SIGTERM, then checkpoints and exits.
    Shard(crate::cluster::ShardArgs),
    /// The Kubernetes operator: reconciles PersonaClusters (shard StatefulSet,
    /// Services, assignment table) and scales shards with the load; replicas elect a
    /// leader on a Lease.
    Operator(crate::operator::OperatorArgs),
    /// The Redis bus of a local cluster: publish events, assign partitions, status.
    #[command(subcommand)]
    Bus(crate::cluster::BusCommand),
    /// The trusted zone's ingest service: a drop directory and gRPC Ingest, scrubbed
    /// and tokenized onto the Redis bus; serves the vault's sealed records to the
    /// de-tokenizer over mutual TLS.
    Gateway(crate::trusted::GatewayArgs),
    /// The trusted zone's delivery service: matches from the Redis bus, resolved just
    /// in time, to webhook, SMTP or file sinks, audited; outcomes back to the cloud.
    Detokenizer(crate::trusted::DetokenizerArgs),
    /// A development CA and certificates for the mutual-TLS links of a local cluster.
    DevCerts(crate::certs::Args),
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Events/s per core applied to feature state, RAM and snapshot bytes per customer.
    Features(crate::bench::features::Args),
    /// Offer decisions/s per core and their latency (the matching engine).
    Dsl(crate::bench::dsl::Args),
    /// The whole embedded pipeline over a generated bank: events/s, peak memory.
    E2e(crate::bench::e2e::Args),
    /// Source records read, scrubbed and tokenized per second on one core.
    Tokenize(crate::bench::vault::Args),
    /// Token resolutions (customer key and contact) per second on one core, with the
    /// KMS calls they cost.
    Detokenize(crate::bench::vault::Args),
    /// Events/s through gRPC PublishStream into a local shard on Redis.
    GrpcIngest(crate::bench::grpc::Args),
    /// Decide calls/s against a local shard on Redis, and their latency at half that rate.
    Decide(crate::bench::grpc::Args),
    /// A shard holding far more customers than its memory bound: events/s, peak RSS
    /// against hot x (model + 1 KB) + 256 MB.
    Passivation(crate::bench::passivation::Args),
    /// The time from an event published on the Redis bus to its match on the matches
    /// stream (p50, p99), through a local shard.
    EventToMatch {
        #[command(flatten)]
        args: crate::bench::grpc::Args,
        /// Swipes published per second.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Customers in the synthetic bank.
    #[arg(long, default_value_t = 2_000)]
    pub(crate) customers: u32,
    /// Days of history, ending on --end.
    #[arg(long, default_value_t = 60)]
    pub(crate) days: u32,
    /// Seed: the same seed gives the same bank.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Last day of the calendar (YYYY-MM-DD).
    #[arg(long, default_value = "2026-10-31")]
    pub(crate) end: NaiveDate,
    /// Output directory; replaced on every run.
    #[arg(long, default_value = "persona-demo")]
    pub(crate) out: PathBuf,
    /// State directory (trusted/ and cloud/); default OUT/data.
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) kms: KmsArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Directory of Source, FeatureSet and Offer YAML.
    #[arg(long)]
    pub(crate) specs: PathBuf,
    /// Directory the Sources' file globs are read under.
    #[arg(long)]
    pub(crate) sources: PathBuf,
    /// State kept between runs: DATA/trusted (vault, keys) and DATA/cloud (shard state).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Output directory for matches, deliveries, features, audit, summary, dead letters.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Evaluate features.jsonl as of this RFC 3339 instant (default: the latest event).
    #[arg(long, value_parser = parse_instant)]
    pub(crate) as_of: Option<DateTime<Utc>>,
    /// Recompute these features (comma-separated names) from every event this run
    /// reads, those applied by earlier runs included: for a feature added to the
    /// FeatureSet, give it the full history. Other features and offers see only new
    /// events.
    #[arg(long, value_delimiter = ',')]
    pub(crate) backfill: Vec<String>,
    /// Customers kept in memory: beyond it the least recently used are passivated to
    /// the store after each checkpoint and reactivated on their next event (default:
    /// all stay in memory for the run).
    #[arg(long)]
    pub(crate) max_hot: Option<usize>,
    #[command(flatten)]
    pub(crate) kms: KmsArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum OfferCommand {
    /// Validate offers and print diagnostics; exit 1 on any error.
    Check {
        /// Offer YAML files (FeatureSet documents among them are used for type-checking).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The FeatureSet file the offers are checked against.
        #[arg(long)]
        features: Option<PathBuf>,
    },
    /// Every clause of an offer's condition for one customer, with its value, whether
    /// it passed and the features it read, and the gate that decides.
    Explain(OfferExplainArgs),
    /// How many stored customers an offer (a draft, before it goes live) would match
    /// now: the funnel clause by clause, the gates, per variant and channel.
    Simulate(OfferSimulateArgs),
    /// Per offer, the response rate of treated customers against its control group.
    Report(OfferReportArgs),
}

/// Where the offline offer tools read: the specs and the state of earlier runs.
#[derive(Debug, clap::Args)]
pub(crate) struct OfferStateArgs {
    /// Directory of the specs the runs used (FeatureSet, Offers, ContactPolicy).
    #[arg(long)]
    pub(crate) specs: PathBuf,
    /// The `--data` directory of earlier runs; its cloud zone is read (tokens only).
    #[arg(long)]
    pub(crate) data: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct OfferExplainArgs {
    #[command(flatten)]
    pub(crate) state: OfferStateArgs,
    #[arg(long)]
    pub(crate) token: String,
    #[arg(long)]
    pub(crate) offer: String,
    /// Evaluate as of this RFC 3339 instant (default, and at the earliest: her clock).
    #[arg(long, value_parser = parse_instant)]
    pub(crate) at: Option<DateTime<Utc>>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct OfferSimulateArgs {
    #[command(flatten)]
    pub(crate) state: OfferStateArgs,
    /// The offer to simulate (a YAML file with one Offer).
    #[arg(long)]
    pub(crate) offer: PathBuf,
    /// Evaluate as of this RFC 3339 instant (default: each customer's clock).
    #[arg(long, value_parser = parse_instant)]
    pub(crate) at: Option<DateTime<Utc>>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct OfferReportArgs {
    #[command(flatten)]
    pub(crate) state: OfferStateArgs,
    /// Print JSON lines instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    persona_event::time::parse_ts(s).map_err(|e| e.to_string())
}

/// A duration as a whole number and a unit: `250ms`, `90s`, `15m`, `1h`; `0` alone
/// is zero.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: a number and a unit (ms, s, m, h), e.g. 15m"))?;
    let per_unit = match unit {
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(format!("`{s}` has no known unit: use ms, s, m or h")),
    };
    per_unit
        .checked_mul(u32::try_from(n).map_err(|_| format!("`{s}` is too long"))?)
        .ok_or_else(|| format!("`{s}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_their_unit() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "15", "m", "1.5h", "-1s", "10d", "99999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_kms_flags_parse_and_are_checked() {
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "persona",
            "run",
            "--specs",
            "s",
            "--sources",
            "x",
            "--data",
            "d",
            "--out",
            "o",
            "--kms",
            "aws",
            "--kms-key-id",
            "alias/persona",
            "--kms-endpoint",
            "http://127.0.0.1:1",
            "--kms-region",
            "eu-west-1",
            "--key-cache-max-age",
            "90s",
            "--key-cache-max-uses",
            "10",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("a run")
        };
        assert_eq!(run.kms.provider, crate::kms::Provider::Aws);
        assert_eq!(run.kms.kms_key_id.as_deref(), Some("alias/persona"));
        assert_eq!(run.kms.kms_region.as_deref(), Some("eu-west-1"));
        assert_eq!(run.kms.limits().max_age, Duration::from_secs(90));
        assert_eq!(run.kms.limits().max_uses, 10);
        assert!(
            Cli::try_parse_from([
                "persona",
                "run",
                "--specs",
                "s",
                "--sources",
                "x",
                "--data",
                "d",
                "--out",
                "o",
                "--key-cache-max-uses",
                "0"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "persona",
                "run",
                "--specs",
                "s",
                "--sources",
                "x",
                "--data",
                "d",
                "--out",
                "o",
                "--kms",
                "gcp"
            ])
            .is_err()
        );
    }
}
