//! Logs and traces. Logs go to stderr (the cloud rule: tokens and counts, never a
//! protected value; `RUST_LOG` overrides the level). With `--otlp-endpoint URL` (or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) the services' spans also go to an OpenTelemetry
//! collector over OTLP/gRPC, whatever the log level: `gateway.ingest_file` /
//! `gateway.ingest_call` / `gateway.ingest_stream`, `shard.apply_batch`,
//! `detokenizer.deliver`, linked into one trace by the context carried in bus entries
//! and gRPC metadata. The same endpoint receives the services' metrics
//! (`crate::metrics::otlp`).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::args::{Cli, Command};

/// The OTLP endpoint of `--otlp-endpoint`, for the metrics push.
static OTLP_ENDPOINT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Where to push metrics over OTLP, if anywhere.
pub(crate) fn otlp_endpoint() -> Option<String> {
    OTLP_ENDPOINT.get().cloned()
}

/// Flushes the spans not yet exported when dropped.
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: traces not all exported: {e}");
        }
    }
}

/// The service name spans are exported under.
fn service_name(command: &Command) -> &'static str {
    match command {
        Command::Shard(_) => "persona-shard",
        Command::Gateway(_) => "persona-gateway",
        Command::Detokenizer(_) => "persona-detokenizer",
        Command::Operator(_) => "persona-operator",
        _ => "persona",
    }
}

/// Installs the subscriber; must run inside the tokio runtime (the OTLP exporter's
/// channel lives on it).
pub(crate) fn init(args: &Cli) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(args.log_level()));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .with_filter(filter);
    if let Some(endpoint) = &args.otlp_endpoint {
        let _ = OTLP_ENDPOINT.set(endpoint.clone());
    }
    let provider = args.otlp_endpoint.as_deref().and_then(|endpoint| {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build();
        match exporter {
            Ok(exporter) => Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        Resource::builder()
                            .with_service_name(service_name(&args.command))
                            .build(),
                    )
                    .build(),
            ),
            Err(e) => {
                eprintln!("warning: no traces: the OTLP exporter for {endpoint} failed: {e}");
                None
            }
        }
    });
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("persona"))
            // Spans only, at info and above: log events stay on stderr.
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.is_span() && *m.level() <= tracing::Level::INFO
            }))
    });
    tracing_subscriber::registry().with(logs).with(traces).init();
    Telemetry { provider }
}
