//! The same metrics pushed to an OpenTelemetry collector over OTLP/gRPC (with
//! `--otlp-endpoint`): every `OTEL_METRIC_EXPORT_INTERVAL` milliseconds (default
//! 60 000) and once more when the service stops. Each push gathers the registry the
//! Prometheus endpoint serves and sends it as OTLP metrics: counters as cumulative
//! monotonic sums, gauges as gauges, histograms with their bucket bounds.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prometheus_client::encoding::text::encode;
use tokio::sync::watch;

use persona_operator::load::{Sample, sample};

use super::Gather;

/// The push interval: `OTEL_METRIC_EXPORT_INTERVAL` (milliseconds), else a minute.
pub(crate) fn interval() -> Duration {
    std::env::var("OTEL_METRIC_EXPORT_INTERVAL")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(Duration::from_secs(60), Duration::from_millis)
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Pushes what `gather` makes to `endpoint` every `every` until `stop` turns true,
/// then once more. A failed push is logged and the next one tried.
pub(crate) async fn push(
    endpoint: String,
    service: &'static str,
    gather: Gather,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let channel = match tonic::transport::Endpoint::from_shared(endpoint.clone()) {
        Ok(e) => e.timeout(Duration::from_secs(10)).connect_lazy(),
        Err(e) => {
            tracing::warn!(error = %e, "no OTLP metrics: the endpoint is not a URL");
            // The service's tasks end together: this one ends with the others.
            let _ = stop.wait_for(|s| *s).await;
            return;
        }
    };
    let mut client = MetricsServiceClient::new(channel);
    let started = now_nanos();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        let registry = super::with_process(gather().await);
        let mut text = String::new();
        if encode(&mut text, &registry).is_ok() {
            let request = request(&text, service, started, now_nanos());
            if let Err(e) = client.export(request).await {
                tracing::warn!(code = ?e.code(), "metrics not exported over OTLP; next push in {every:?}");
            }
        }
        if last {
            return;
        }
    }
}

/// The OTLP request for an OpenMetrics text, under `service`.
pub(crate) fn request(text: &str, service: &str, start: u64, now: u64) -> ExportMetricsServiceRequest {
    let mut families: Vec<(String, String, String, Vec<Sample>)> = Vec::new();
    // HELP comes before TYPE in the text format.
    let mut help: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.splitn(2, ' ');
            let (name, kind) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            let described = help.take().filter(|(n, _)| n == name).map(|(_, h)| h);
            families.push((
                name.to_owned(),
                kind.to_owned(),
                described.unwrap_or_default(),
                Vec::new(),
            ));
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ').map(|(n, h)| (n.to_owned(), h.to_owned()));
        } else if !line.starts_with('#')
            && let (Some(sample), Some(family)) = (sample(line), families.last_mut())
        {
            family.3.push(sample);
        }
    }
    let metrics = families
        .into_iter()
        .filter_map(|(name, kind, help, samples)| metric(name, &kind, help, samples, start, now))
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![attribute("service.name", service)],
                ..Resource::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

fn attributes(labels: &[(String, String)]) -> Vec<KeyValue> {
    labels.iter().map(|(k, v)| attribute(k, v)).collect()
}

fn metric(name: String, kind: &str, help: String, samples: Vec<Sample>, start: u64, now: u64) -> Option<Metric> {
    let point = |s: &Sample| NumberDataPoint {
        attributes: attributes(&s.labels),
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsDouble(s.value)),
        ..NumberDataPoint::default()
    };
    let data = match kind {
        "counter" => metric::Data::Sum(Sum {
            data_points: samples
                .iter()
                .filter(|s| s.series == format!("{name}_total"))
                .map(point)
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
        "gauge" => metric::Data::Gauge(Gauge {
            data_points: samples.iter().filter(|s| s.series == name).map(point).collect(),
        }),
        "histogram" => metric::Data::Histogram(Histogram {
            data_points: histogram_points(&name, &samples, start, now),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
        _ => return None,
    };
    Some(Metric {
        name,
        description: help,
        data: Some(data),
        ..Metric::default()
    })
}

/// Histogram points by label set: the cumulative `_bucket` counts made per bucket.
fn histogram_points(name: &str, samples: &[Sample], start: u64, now: u64) -> Vec<HistogramDataPoint> {
    type Key = Vec<(String, String)>;
    /// (le, cumulative count) pairs, the sum and the count of one label set.
    type Series = (Vec<(f64, f64)>, f64, f64);
    let mut points: BTreeMap<Key, Series> = BTreeMap::new();
    let (bucket, sum, count) = (format!("{name}_bucket"), format!("{name}_sum"), format!("{name}_count"));
    for s in samples {
        let key: Key = s.labels.iter().filter(|(k, _)| k != "le").cloned().collect();
        let entry = points.entry(key).or_default();
        if s.series == bucket {
            let le = s.labels.iter().find(|(k, _)| k == "le").and_then(|(_, v)| {
                if v == "+Inf" {
                    Some(f64::INFINITY)
                } else {
                    v.parse().ok()
                }
            });
            if let Some(le) = le {
                entry.0.push((le, s.value));
            }
        } else if s.series == sum {
            entry.1 = s.value;
        } else if s.series == count {
            entry.2 = s.value;
        }
    }
    points
        .into_iter()
        .map(|(labels, (mut buckets, sum, count))| {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut previous = 0.0;
            let bucket_counts = buckets
                .iter()
                .map(|(_, cumulative)| {
                    let n = (cumulative - previous).max(0.0);
                    previous = *cumulative;
                    n as u64
                })
                .collect();
            HistogramDataPoint {
                attributes: attributes(&labels),
                start_time_unix_nano: start,
                time_unix_nano: now,
                count: count as u64,
                sum: Some(sum),
                bucket_counts,
                explicit_bounds: buckets.iter().map(|(le, _)| *le).filter(|le| le.is_finite()).collect(),
                ..HistogramDataPoint::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP persona_events_applied Events applied to customer actors.
# TYPE persona_events_applied counter
persona_events_applied_total{partition="0"} 1200
persona_events_applied_total{partition="1"} 800
persona_events_applied_created{partition="1"} 1.7e9
# HELP persona_partition_lag Entries not yet checkpointed.
# TYPE persona_partition_lag gauge
persona_partition_lag{partition="0",note="a \"quoted\" } here"} 4
# HELP persona_apply_batch_seconds Time to apply one batch.
# TYPE persona_apply_batch_seconds histogram
persona_apply_batch_seconds_sum 0.5
persona_apply_batch_seconds_count 7
persona_apply_batch_seconds_bucket{le="0.001"} 2
persona_apply_batch_seconds_bucket{le="0.01"} 6
persona_apply_batch_seconds_bucket{le="+Inf"} 7
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 123456
# EOF
"#;

    #[test]
    fn counters_gauges_and_histograms_become_otlp_metrics() {
        let request = request(TEXT, "persona-shard", 1, 2);
        let resource = &request.resource_metrics[0];
        let service = &resource.resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
        let metrics = &resource.scope_metrics[0].metrics;
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "persona_events_applied",
                "persona_partition_lag",
                "persona_apply_batch_seconds",
                "process_resident_memory_bytes"
            ]
        );
        let value = |p: &NumberDataPoint| match p.value {
            Some(number_data_point::Value::AsDouble(v)) => v,
            _ => panic!("a double"),
        };
        let Some(metric::Data::Sum(sum)) = &metrics[0].data else {
            panic!("a sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.data_points.len(), 2, "the _created series is not a point");
        assert_eq!(sum.data_points.iter().map(value).sum::<f64>(), 2000.0);
        assert_eq!(metrics[0].description, "Events applied to customer actors.");
        let Some(metric::Data::Gauge(gauge)) = &metrics[1].data else {
            panic!("a gauge")
        };
        let labels: Vec<(&str, String)> = gauge.data_points[0]
            .attributes
            .iter()
            .map(|a| match &a.value.as_ref().unwrap().value {
                Some(any_value::Value::StringValue(s)) => (a.key.as_str(), s.clone()),
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            labels,
            [
                ("partition", "0".to_owned()),
                ("note", "a \"quoted\" } here".to_owned())
            ]
        );
        assert_eq!(value(&gauge.data_points[0]), 4.0);
        let Some(metric::Data::Histogram(h)) = &metrics[2].data else {
            panic!("a histogram")
        };
        let point = &h.data_points[0];
        assert_eq!((point.count, point.sum), (7, Some(0.5)));
        assert_eq!(point.bucket_counts, [2, 4, 1]);
        assert_eq!(point.explicit_bounds, [0.001, 0.01]);
    }

    #[test]
    fn lines_that_are_not_samples_are_skipped() {
        assert!(sample("garbage").is_none());
        assert!(sample("x{a=1} 2").is_none());
        assert!(sample("x{a=\"1\" 2").is_none());
        let s = sample("x{a=\"1\",b=\"\\\\\"} 2.5 1700000000").unwrap();
        assert_eq!((s.series.as_str(), s.value), ("x", 2.5));
        assert_eq!(
            s.labels,
            [("a".to_owned(), "1".to_owned()), ("b".to_owned(), "\\".to_owned())]
        );
    }
}
