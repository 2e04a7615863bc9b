//! The load of a PersonaCluster, read from its shards' Prometheus endpoints: events
//! applied per second (the rate of `persona_events_applied_total` between two
//! readings), the partitions' lag (`persona_partition_lag`, which each shard reads
//! on Redis: the entries after the checkpoint) and resident memory
//! (`process_resident_memory_bytes`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, join_all};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use kube::ResourceExt;
use tokio::net::TcpStream;

use crate::autoscale::Load;
use crate::crd::PersonaCluster;
use crate::resources::{METRICS_PORT, Names};

/// Where the autoscaler gets a cluster's load.
pub trait LoadSource: Send + Sync {
    /// The load of `cluster`'s shards `0..pods`; `None` when no shard answered.
    fn load<'a>(&'a self, cluster: &'a PersonaCluster, pods: u32) -> BoxFuture<'a, Option<Load>>;
}

/// One shard's metrics as read.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ShardSample {
    /// `persona_events_applied_total`, summed over partitions.
    pub applied: f64,
    /// `persona_partition_lag`, summed over partitions.
    pub lag: f64,
    /// `process_resident_memory_bytes`.
    pub memory_bytes: f64,
    /// `persona_table_epoch`, if the shard follows a table.
    pub table_epoch: Option<f64>,
}

/// One sample line of the Prometheus or OpenMetrics text format.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series name (`persona_events_applied_total`, `…_bucket`, …).
    pub series: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Sums the samples of the three metrics in a Prometheus or OpenMetrics text.
pub fn parse(text: &str) -> ShardSample {
    let mut summed = ShardSample::default();
    for s in text.lines().filter(|l| !l.starts_with('#')).filter_map(sample) {
        if !s.value.is_finite() {
            continue;
        }
        match s.series.as_str() {
            "persona_events_applied_total" => summed.applied += s.value,
            "persona_partition_lag" => summed.lag += s.value,
            "process_resident_memory_bytes" => summed.memory_bytes += s.value,
            "persona_table_epoch" => summed.table_epoch = Some(s.value),
            _ => {}
        }
    }
    summed
}

/// `series{k="v",…} value [timestamp]`, or `None` for a line that is not a sample.
pub fn sample(line: &str) -> Option<Sample> {
    let at = line.find(['{', ' '])?;
    let series = line[..at].to_owned();
    let mut rest = &line[at..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            // key
            let start = chars.peek()?.0;
            let mut end = start;
            let mut closed = false;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    end = i;
                    break;
                }
                if c == '}' {
                    closed = true;
                    end = i;
                    break;
                }
            }
            if closed {
                rest = &inner[end + 1..];
                break;
            }
            let key = inner[start..end].trim_start_matches(',').to_owned();
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break,
                    other => value.push(other),
                }
            }
            labels.push((key, value));
            match chars.peek()?.1 {
                ',' => {
                    chars.next();
                }
                '}' => {
                    let (i, _) = chars.next()?;
                    rest = &inner[i + 1..];
                    break;
                }
                _ => return None,
            }
        }
    }
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample { series, labels, value })
}

/// Reads the shards' `/metrics` over HTTP at their stable pod names
/// (`NAME-shard-N.NAME-shard-peers.NS.svc`) and keeps the last reading of each, for
/// rates.
#[derive(Debug)]
pub struct ShardScraper {
    timeout: Duration,
    /// The pods' host names are formatted with this domain (`svc` in a cluster with
    /// the default `cluster.local` search path).
    domain: String,
    previous: Mutex<HashMap<String, (Instant, f64)>>,
}

impl Default for ShardScraper {
    fn default() -> Self {
        ShardScraper::new(Duration::from_secs(2), "svc")
    }
}

impl ShardScraper {
    pub fn new(timeout: Duration, domain: &str) -> ShardScraper {
        ShardScraper {
            timeout,
            domain: domain.to_owned(),
            previous: Mutex::new(HashMap::new()),
        }
    }

    /// The metrics address (`host:port`) of shard `ordinal`.
    pub fn address(&self, cluster: &PersonaCluster, ordinal: u32) -> String {
        let names = Names::of(&cluster.name_any());
        let namespace = cluster.namespace().unwrap_or_default();
        format!(
            "{}-{ordinal}.{}.{namespace}.{}:{METRICS_PORT}",
            names.shards, names.peers, self.domain
        )
    }

    /// The load of the shards at `addresses`: a shard counts as reporting once two
    /// readings of it give a rate.
    pub async fn load_of(&self, addresses: &[String]) -> Option<Load> {
        let readings = join_all(addresses.iter().map(|a| async move {
            let sample = tokio::time::timeout(self.timeout, fetch(a)).await;
            (a, sample.ok().and_then(|r| r.ok()).map(|t| parse(&t)))
        }))
        .await;
        let now = Instant::now();
        let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        let mut load = Load {
            expected: u32::try_from(addresses.len()).unwrap_or(u32::MAX),
            ..Load::default()
        };
        let mut answered = false;
        // The lowest epoch over every shard; any shard silent or without one: none.
        let mut epochs: Option<Vec<u64>> = Some(Vec::new());
        for (address, sample) in readings {
            let Some(sample) = sample else {
                previous.remove(address.as_str());
                epochs = None;
                continue;
            };
            answered = true;
            match (&mut epochs, sample.table_epoch) {
                (Some(list), Some(e)) if e >= 0.0 => list.push(e as u64),
                _ => epochs = None,
            }
            load.lag += sample.lag as u64;
            load.memory_bytes += sample.memory_bytes as u64;
            if let Some((then, applied)) = previous.insert(address.clone(), (now, sample.applied)) {
                let seconds = now.duration_since(then).as_secs_f64();
                // A counter that fell belongs to a restarted shard: no rate this time.
                if seconds > 0.0 && sample.applied >= applied {
                    load.events_per_second += (sample.applied - applied) / seconds;
                    load.reporting += 1;
                }
            }
        }
        previous.retain(|a, _| addresses.contains(a));
        load.table_epoch = epochs.and_then(|e| e.into_iter().min());
        answered.then_some(load)
    }
}

impl LoadSource for ShardScraper {
    fn load<'a>(&'a self, cluster: &'a PersonaCluster, pods: u32) -> BoxFuture<'a, Option<Load>> {
        Box::pin(async move {
            let addresses: Vec<String> = (0..pods).map(|i| self.address(cluster, i)).collect();
            self.load_of(&addresses).await
        })
    }
}

/// `GET http://ADDRESS/metrics`: the body, or why not.
pub async fn fetch(address: &str) -> Result<String, String> {
    let stream = TcpStream::connect(address).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get("/metrics")
        .header(hyper::header::HOST, address)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        driver.abort();
        return Err(format!("HTTP {}", response.status()));
    }
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?;
    driver.abort();
    String::from_utf8(body.to_bytes().to_vec()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP persona_events_applied Events applied to customer actors.
# TYPE persona_events_applied counter
persona_events_applied_total{partition="0"} 1200
persona_events_applied_total{partition="1"} 800
persona_events_applied_created{partition="1"} 1.7e9
# TYPE persona_partition_lag gauge
persona_partition_lag{partition="0"} 40
persona_partition_lag{partition="1",note="a } in {quotes}"} 2
persona_partition_lag_other 99
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 123456789
persona_table_epoch 7
persona_apply_batch_seconds_bucket{le="0.001"} 5
# EOF
"#;

    #[test]
    fn sums_the_three_metrics_over_partitions() {
        assert_eq!(
            parse(TEXT),
            ShardSample {
                applied: 2000.0,
                lag: 42.0,
                memory_bytes: 123_456_789.0,
                table_epoch: Some(7.0),
            }
        );
        assert_eq!(
            parse("garbage\n{\npersona_partition_lag{x=\"1\" 4\n"),
            ShardSample::default()
        );
    }

    /// A real HTTP endpoint on loopback: two readings give a rate; a shard that stops
    /// answering stops reporting; none answering is `None`.
    #[tokio::test]
    async fn rates_come_from_two_readings() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let applied = Arc::new(AtomicU64::new(1000));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let served = applied.clone();
        let server = tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await.unwrap();
                let body = format!(
                    "persona_events_applied_total{{partition=\"3\"}} {}\npersona_partition_lag{{partition=\"3\"}} 7\nprocess_resident_memory_bytes 1000\npersona_table_epoch 4\n",
                    served.load(Ordering::SeqCst)
                );
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let scraper = ShardScraper::new(Duration::from_secs(2), "svc");
        let dead = "127.0.0.1:1".to_owned();
        let addresses = [address.clone(), dead];
        let first = scraper.load_of(&addresses).await.unwrap();
        assert_eq!(
            (first.reporting, first.expected, first.lag, first.memory_bytes),
            (0, 2, 7, 1000)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        applied.fetch_add(500, Ordering::SeqCst);
        let second = scraper.load_of(&addresses).await.unwrap();
        assert_eq!((second.reporting, second.expected), (1, 2));
        assert_eq!(second.table_epoch, None, "a silent shard confirms no epoch");
        let alone = scraper.load_of(std::slice::from_ref(&address)).await.unwrap();
        assert_eq!(alone.table_epoch, Some(4));
        // 500 events in a bit over 0.2 s.
        assert!(
            (1000.0..2600.0).contains(&second.events_per_second),
            "{}",
            second.events_per_second
        );
        server.abort();
        assert_eq!(scraper.load_of(&[address]).await, None);
    }
}
