//! W3C trace context across persona's links: a span's `traceparent` goes into a bus
//! entry (field `t`) or gRPC metadata, and the span that handles it on the other side
//! takes it as its parent, so one trace runs from the gateway's ingest through the
//! shard's actors to the de-tokenizer's delivery. Without an OpenTelemetry layer (no
//! `--otlp-endpoint`) spans have no context and nothing is carried.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The gRPC metadata key of the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of `span`, when OpenTelemetry records it.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

fn context_of(traceparent: &str) -> Option<opentelemetry::Context> {
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes the span `traceparent` names the parent of `span` (nothing for a malformed
/// one).
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    if let Some(cx) = context_of(traceparent) {
        let _ = span.set_parent(cx);
    }
}

/// Links `span` to the span `traceparent` names (a batch has one parent, and links to
/// the other traces it continues).
pub fn add_link(span: &tracing::Span, traceparent: &str) {
    if let Some(cx) = context_of(traceparent) {
        span.add_link(cx.span().span_context().clone());
    }
}

/// The trace context of a gRPC request's metadata.
pub fn from_metadata(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    metadata.get(TRACEPARENT)?.to_str().ok().map(str::to_owned)
}
