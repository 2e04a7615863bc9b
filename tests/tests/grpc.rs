//! The gRPC API of shard processes, over real loopback connections, with Redis as the
//! bus (`PERSONA_TEST_REDIS_URL`, started by `./scripts/test`): events published with
//! PublishStream to one shard reach every partition; GetProfile, Decide and Explain
//! for a customer of the other shard are forwarded to it and answered by her actor;
//! Decide records nothing; health and reflection are served; bad input is refused
//! with the field it concerns.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use persona_proto::v1::{DecideRequest, ExplainRequest, GetProfileRequest};
use persona_proto::{PersonaClient, v1};
use persona_tests::{Demo, free_port, jsonl, metric, persona, persona_command, redis_url, scrape};
use tonic::transport::Channel;

const PARTITIONS: &str = "8";

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

struct Shards(Vec<Child>);

impl Drop for Shards {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }
}

/// Shards s0 and s1 on `bus`, serving gRPC and metrics on loopback, with `extra`
/// arguments; their gRPC and metrics ports.
fn start_two_shards(work: &Path, specs: &Path, bus: &[&str], extra: &[&str]) -> (Shards, [u16; 2], [u16; 2]) {
    let ports = [free_port(), free_port()];
    let metric_ports = [free_port(), free_port()];
    let mut shards = Shards(Vec::new());
    for (i, port) in ports.iter().enumerate() {
        let (name, data, addr) = (format!("s{i}"), work.join(format!("s{i}")), format!("127.0.0.1:{port}"));
        let metrics = format!("127.0.0.1:{}", metric_ports[i]);
        let mut args = vec!["-q", "shard", "--name", &name, "--data", s(&data), "--specs", s(specs)];
        args.extend(["--grpc", &addr, "--metrics", &metrics]);
        args.extend(extra);
        args.extend(bus);
        let child = persona_command(&args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        shards.0.push(child);
    }
    (shards, ports, metric_ports)
}

async fn connect(port: u16) -> PersonaClient<Channel> {
    let started = Instant::now();
    loop {
        match PersonaClient::connect(format!("http://127.0.0.1:{port}")).await {
            Ok(client) => return client,
            Err(e) if started.elapsed() > Duration::from_secs(60) => panic!("shard on {port}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn channel(port: u16) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn features(profile: &v1::Profile, name: &str) -> Option<v1::value::Kind> {
    profile.features.get(name).and_then(|v| v.kind.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_serve_and_forward_the_persona_api() {
    let demo = Demo::run(150, 30);
    let out = demo.out();
    let work = demo.dir.path().join("grpc");
    let events_file = demo.canonical_events(&work.join("batch"));
    let events: Vec<persona_event::Event> = std::fs::read_to_string(&events_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let batch = jsonl(&work.join("batch/features.jsonl"));

    let prefix = format!("grpc:{}:{}", std::process::id(), free_port());
    let bus = ["--redis", &redis_url(), "--prefix", &prefix, "--partitions", PARTITIONS].map(str::to_owned);
    let bus: Vec<&str> = bus.iter().map(String::as_str).collect();
    persona(&[&["bus", "assign", "--shards", "s0,s1"], &bus[..]].concat());
    let (mut shards, ports, metric_ports) = start_two_shards(&work, &out.join("specs"), &bus, &[]);
    let mut s0 = connect(ports[0]).await;
    let mut s1 = connect(ports[1]).await;

    // Health and reflection.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(ports[0]).await);
    let check = tonic_health::pb::HealthCheckRequest {
        service: "persona.v1.Persona".into(),
    };
    let status = health.check(check).await.unwrap().into_inner().status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let services = list_services(ports[1]).await;
    assert!(services.contains(&"persona.v1.Persona".to_owned()), "{services:?}");
    assert!(services.contains(&"grpc.health.v1.Health".to_owned()), "{services:?}");

    // Everything goes in through one shard, as a client stream.
    let wire: Vec<v1::Event> = events.iter().map(v1::Event::from).collect();
    let accepted = s0
        .publish_stream(tokio_stream::iter(wire))
        .await
        .unwrap()
        .into_inner()
        .accepted;
    assert_eq!(accepted as usize, events.len());
    wait_for_no_lag(&bus);

    // The shards' metrics: every event applied once between them, nothing lagging,
    // every batch timed.
    let texts: Vec<String> = metric_ports.iter().map(|p| scrape(&format!("127.0.0.1:{p}"))).collect();
    let total = |name: &str| texts.iter().map(|t| metric(t, name, "")).sum::<f64>();
    assert_eq!(
        total("persona_events_applied_total") + total("persona_events_duplicate_total"),
        events.len() as f64
    );
    assert_eq!(total("persona_partition_lag"), 0.0);
    assert!(total("persona_apply_batch_seconds_count") > 0.0);
    assert!(total("persona_actors_hot") > 0.0);
    for t in &texts {
        assert!(t.contains("persona_events_applied_total{partition=\""), "{t}");
        let sample = persona_operator::load::parse(t);
        assert_eq!(sample.applied, metric(t, "persona_events_applied_total", ""));
        assert!(
            sample.memory_bytes > f64::from(8u32 << 20),
            "resident memory {}",
            sample.memory_bytes
        );
    }

    // The operator's autoscaler reads the same endpoints: the lag and the memory at
    // once, a rate from two readings (nothing applied in between: zero).
    let scraper = persona_operator::load::ShardScraper::default();
    let addresses: Vec<String> = metric_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let first = scraper.load_of(&addresses).await.unwrap();
    assert_eq!((first.lag, first.reporting, first.expected), (0, 0, 2));
    assert!(first.memory_bytes > 16 << 20, "resident memory {}", first.memory_bytes);
    let second = scraper.load_of(&addresses).await.unwrap();
    assert_eq!((second.reporting, second.events_per_second), (2, 0.0));

    // Each customer's profile, asked of the shard that does not own her, is forwarded
    // and equals what the owner answers and what the batch computed.
    let as_of = batch[0]["as_of"].as_str().unwrap();
    let as_of_micros = persona_event::time::parse_ts(as_of).unwrap().timestamp_micros();
    let mut forwarded = 0;
    for line in &batch {
        let token = line["token"].as_str().unwrap().to_owned();
        let ask = GetProfileRequest {
            token: token.clone(),
            as_of_micros: Some(as_of_micros),
        };
        let (a, b) = (
            s0.get_profile(ask.clone()).await.unwrap().into_inner(),
            s1.get_profile(ask).await.unwrap().into_inner(),
        );
        assert_eq!(a, b, "{token}: both shards answer alike");
        assert!(a.known);
        let lifetime = line["features"]["txn_count_lifetime"].as_i64().unwrap();
        assert_eq!(
            features(&a, "txn_count_lifetime"),
            Some(v1::value::Kind::Int(lifetime)),
            "{token}"
        );
        forwarded += 1;
    }
    assert_eq!(forwarded, 150);

    // Decide a card swipe at a mall for every customer: the mall regulars get the mall
    // offer; the answer is the owner's whichever shard is asked, and nothing is recorded.
    let mut matched = 0;
    for (n, line) in batch.iter().enumerate() {
        let token = line["token"].as_str().unwrap().to_owned();
        let mut id = [0x5a; 16];
        id[..8].copy_from_slice(&(n as u64).to_be_bytes());
        let swipe = persona_event::Event {
            id: persona_event::EventId::from_bytes(id),
            token: persona_event::Token::parse(&token).unwrap(),
            kind: "card_swipe".into(),
            ts: persona_event::time::parse_ts(as_of).unwrap(),
            attrs: [
                ("mall".to_owned(), persona_event::Value::from("Lulu Mall")),
                ("amount".to_owned(), persona_event::Value::Float(1200.0)),
            ]
            .into(),
        };
        let ask = DecideRequest {
            event: Some(v1::Event::from(&swipe)),
        };
        let profile = GetProfileRequest {
            token: token.clone(),
            as_of_micros: None,
        };
        let before = s1.get_profile(profile.clone()).await.unwrap().into_inner();
        let (a, b) = (
            s0.decide(ask.clone()).await.unwrap().into_inner(),
            s1.decide(ask).await.unwrap().into_inner(),
        );
        assert_eq!(a, b, "{token}");
        assert_eq!(a.shard, format!("s{}", a.partition % 2), "answered by the owner");
        let after = s0.get_profile(profile).await.unwrap().into_inner();
        assert_eq!(before, after, "{token}: deciding recorded nothing");
        if let Some(m) = &a.r#match {
            assert_eq!(m.token, token);
            if m.offer == "mall-discount" {
                matched += 1;
                // The swipe itself counts: a mall day today may make her a regular.
                let days = line["features"]["mall_days_30d"].as_i64().unwrap();
                assert!(days >= 5, "{token}: only (nearly) mall regulars get the mall offer");
            }
        }
    }
    assert!(matched > 0, "no customer of the demo got the mall offer");
    // Every Decide is timed where it arrived, and once more at the owner it was
    // forwarded to: 2 x 150 calls, half of them forwarded.
    let decided: f64 = metric_ports
        .iter()
        .map(|p| metric(&scrape(&format!("127.0.0.1:{p}")), "persona_decide_seconds_count", ""))
        .sum();
    assert_eq!(decided, 450.0);

    // A third shard joins the running cluster with no partition and takes one by a
    // move: it answers for every customer, those of the moved partition from the
    // state it pulled, the same as before the move.
    let joined = free_port();
    let data = work.join("s2");
    let specs = out.join("specs");
    let addr = format!("127.0.0.1:{joined}");
    let mut args = vec!["-q", "shard", "--name", "s2", "--data", s(&data), "--specs", s(&specs)];
    args.extend(["--grpc", &addr, "--join"]);
    args.extend(&bus);
    shards.0.push(
        persona_command(&args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut s2 = connect(joined).await;
    let probe = batch[0]["token"].as_str().unwrap().to_owned();
    let profile = GetProfileRequest {
        token: probe.clone(),
        as_of_micros: Some(as_of_micros),
    };
    let swipe = persona_event::Event {
        id: persona_event::EventId::from_bytes([0x77; 16]),
        token: persona_event::Token::parse(&probe).unwrap(),
        kind: "card_swipe".into(),
        ts: persona_event::time::parse_ts(as_of).unwrap(),
        attrs: [("mall".to_owned(), persona_event::Value::from("Lulu Mall"))].into(),
    };
    let ask = DecideRequest {
        event: Some(v1::Event::from(&swipe)),
    };
    let before = s2.get_profile(profile.clone()).await.unwrap().into_inner();
    let owner = s2.decide(ask.clone()).await.unwrap().into_inner();
    assert_ne!(owner.shard, "s2", "it holds nothing before the move");
    let partition = owner.partition.to_string();
    persona(&[&["bus", "move", "--partition", &partition, "--to", "s2"], &bus[..]].concat());
    let after = s2.get_profile(profile).await.unwrap().into_inner();
    assert_eq!(before.features, after.features, "the moved customer's state came along");
    assert_eq!(s2.decide(ask).await.unwrap().into_inner().shard, "s2");

    // Rebalanced over the three with the planner's fewest moves, each with its state:
    // 3, 3 and 2 partitions, and every customer's features as before.
    let tokens: Vec<String> = batch.iter().map(|l| l["token"].as_str().unwrap().to_owned()).collect();
    let mut features_before = Vec::new();
    for token in &tokens {
        let ask = GetProfileRequest {
            token: token.clone(),
            as_of_micros: Some(as_of_micros),
        };
        features_before.push(s0.get_profile(ask).await.unwrap().into_inner().features);
    }
    let dry = persona(&[&["bus", "rebalance", "--shards", "s0,s1,s2", "--dry-run"], &bus[..]].concat());
    let dry = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(dry.contains("moves planned"), "{dry}");
    let moved = persona(&[&["bus", "rebalance", "--shards", "s0,s1,s2"], &bus[..]].concat());
    let moved = String::from_utf8_lossy(&moved.stdout).into_owned();
    assert_eq!(
        moved.lines().filter(|l| l.starts_with("partition ")).count(),
        dry.lines().filter(|l| l.starts_with("partition ")).count(),
        "{dry}\n{moved}"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&persona(&[&["bus", "status", "--json"], &bus[..]].concat()).stdout).unwrap();
    let mut held: Vec<usize> = ["s0", "s1", "s2"]
        .iter()
        .map(|s| {
            status["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["shard"] == *s)
                .count()
        })
        .collect();
    held.sort_unstable();
    assert_eq!(held, [2, 3, 3], "{status}");
    for (token, before) in tokens.iter().zip(&features_before) {
        let ask = GetProfileRequest {
            token: token.clone(),
            as_of_micros: Some(as_of_micros),
        };
        assert_eq!(
            &s1.get_profile(ask).await.unwrap().into_inner().features,
            before,
            "{token}"
        );
    }
    let again = persona(&[&["bus", "rebalance", "--shards", "s0,s1,s2"], &bus[..]].concat());
    assert!(String::from_utf8_lossy(&again.stdout).contains("balanced already"));

    // Explain through the other shard.
    let token = batch[0]["token"].as_str().unwrap().to_owned();
    let ask = ExplainRequest {
        token,
        offer: "car-loan".into(),
        as_of_micros: None,
    };
    let explained = s0.explain(ask.clone()).await.unwrap().into_inner();
    assert!(explained.found);
    assert!(explained.clauses.len() >= 2, "{explained:?}");
    assert_eq!(explained, s1.explain(ask).await.unwrap().into_inner());

    // A new offer in the specs directory (in Kubernetes, the operator's ConfigMap) is
    // taken up by the running shards, without a restart.
    let late = ExplainRequest {
        token: batch[0]["token"].as_str().unwrap().to_owned(),
        offer: "car-loan-again".into(),
        as_of_micros: None,
    };
    let unknown = s0.explain(late.clone()).await;
    assert!(
        !matches!(&unknown, Ok(r) if r.get_ref().found),
        "not an offer yet: {unknown:?}"
    );
    let specs = out.join("specs");
    let offers = std::fs::read_to_string(specs.join("offers.yaml")).unwrap();
    let car_loan = offers.split("\n---").next().unwrap();
    assert!(car_loan.contains("metadata: {name: car-loan}"), "{car_loan}");
    std::fs::write(
        specs.join("late-offer.yaml"),
        car_loan.replace("metadata: {name: car-loan}", "metadata: {name: car-loan-again}"),
    )
    .unwrap();
    let started = Instant::now();
    for client in [&mut s0, &mut s1] {
        loop {
            match client.explain(late.clone()).await {
                Ok(r) if r.get_ref().found => break,
                other => assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the new offer was not taken up: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Bad input names its field.
    let mut bad = v1::Event::from(&events[0]);
    bad.token = "tk_nope".into();
    let refused = s1.decide(DecideRequest { event: Some(bad) }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().starts_with("event.token"), "{}", refused.message());
    let refused = s0
        .get_profile(GetProfileRequest {
            token: "nope".into(),
            as_of_micros: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}

fn wait_for_no_lag(bus: &[&str]) {
    let started = Instant::now();
    loop {
        let out = persona(&[&["bus", "status", "--json"], bus].concat());
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if status["lag"] == 0 {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "still lagging: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The services a shard lists through server reflection.
async fn list_services(port: u16) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut client = ServerReflectionClient::new(channel(port).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().expect("a reflection reply");
    match reply.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reflection reply {other:?}"),
    }
}

/// The two gRPC bench scenarios run end to end on a tiny load and report what
/// `--json` promises.
#[test]
fn the_grpc_bench_scenarios_measure_a_local_shard() {
    for scenario in ["grpc-ingest", "decide"] {
        let mut args = vec![
            "-q",
            "bench",
            scenario,
            "--customers",
            "30",
            "--events-per-customer",
            "20",
        ];
        args.extend(["--runs", "1", "--seconds", "1", "--json"]);
        let out = persona_command(&args)
            .env("PERSONA_REDIS_URL", redis_url())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["scenario"], scenario);
        assert!(report["ops_per_sec"].as_f64().unwrap() > 0.0);
        assert_eq!(report["params"]["events"], 30 * 21, "20 events and a profile each");
        assert!(report["peak_rss_bytes"].as_u64().unwrap() > 0);
        if scenario == "decide" {
            let (p50, p99) = (report["p50_ms"].as_f64().unwrap(), report["p99_ms"].as_f64().unwrap());
            assert!(0.0 < p50 && p50 <= p99, "{report}");
        }
    }
}

/// Shards started with `--tls-dir` serve and call each other over mutual TLS: a client
/// with a certificate of the cluster's CA is answered for every customer (those of the
/// other shard forwarded over TLS); a plain-text client, and a TLS client without a
/// certificate, are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_serve_and_forward_over_mutual_tls() {
    use persona_proto::tls::{MutualTls, connect};

    let demo = Demo::run(40, 20);
    let out = demo.out();
    let work = demo.dir.path().join("tls");
    let events_file = demo.canonical_events(&work.join("batch"));
    let tokens: std::collections::BTreeSet<String> = jsonl(&events_file)
        .iter()
        .filter_map(|e| e["token"].as_str().map(str::to_owned))
        .filter(|t| !persona_event::Token::parse(t).unwrap().is_broadcast())
        .collect();
    let certs = work.join("certs");
    persona(&["dev-certs", "--out", s(&certs), "--names", "shard,client"]);

    let prefix = format!("tls:{}:{}", std::process::id(), free_port());
    let bus = ["--redis", &redis_url(), "--prefix", &prefix, "--partitions", PARTITIONS].map(str::to_owned);
    let bus: Vec<&str> = bus.iter().map(String::as_str).collect();
    persona(&[&["bus", "assign", "--shards", "s0,s1"], &bus[..]].concat());
    persona(&[&["bus", "publish"], &bus[..], &[s(&events_file)]].concat());
    let extra = ["--tls-dir", s(&certs), "--idle-after", "500ms"];
    let (_shards, ports, metric_ports) = start_two_shards(&work, &out.join("specs"), &bus, &extra);
    wait_for_no_lag(&bus);

    let client_tls = MutualTls::in_dir(&certs, "client");
    let address = format!("https://127.0.0.1:{}", ports[1]);
    let started = Instant::now();
    let channel = loop {
        match connect(&address, Some(&client_tls)).await {
            Ok(c) => break c,
            Err(e) if started.elapsed() > Duration::from_secs(60) => panic!("{e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let mut s1 = PersonaClient::new(channel);
    for token in &tokens {
        let profile = s1
            .get_profile(GetProfileRequest {
                token: token.clone(),
                as_of_micros: None,
            })
            .await
            .unwrap_or_else(|e| panic!("{token}: {e}"))
            .into_inner();
        assert!(!profile.features.is_empty(), "{token}");
    }

    // Started with --idle-after 500ms: once quiet, every customer leaves memory (the
    // feeders' idle sweeps), and comes back when asked for.
    let hot_and_passivated = || {
        metric_ports.iter().fold((0.0, 0.0), |(h, p), port| {
            let text = scrape(&format!("127.0.0.1:{port}"));
            (
                h + metric(&text, "persona_actors_hot", ""),
                p + metric(&text, "persona_actor_passivations_total", ""),
            )
        })
    };
    let started = Instant::now();
    while hot_and_passivated().0 > 0.0 {
        assert!(started.elapsed() < Duration::from_secs(30), "customers stay in memory");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(hot_and_passivated().1 >= tokens.len() as f64);
    let again = s1
        .get_profile(GetProfileRequest {
            token: tokens.iter().next().unwrap().clone(),
            as_of_micros: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.features.is_empty());

    // Without TLS, or with TLS but no client certificate: refused.
    let plain = connect(&format!("http://127.0.0.1:{}", ports[1]), None).await;
    if let Ok(channel) = plain {
        let call = PersonaClient::new(channel)
            .get_profile(GetProfileRequest {
                token: tokens.iter().next().unwrap().clone(),
                as_of_micros: None,
            })
            .await;
        assert!(call.is_err(), "a plain-text call was answered");
    }
    let ca = std::fs::read(certs.join("ca.pem")).unwrap();
    let anonymous = tonic::transport::ClientTlsConfig::new()
        .domain_name("127.0.0.1")
        .ca_certificate(tonic::transport::Certificate::from_pem(ca));
    let endpoint = tonic::transport::Endpoint::from_shared(address)
        .unwrap()
        .tls_config(anonymous)
        .unwrap();
    if let Ok(channel) = endpoint.connect().await {
        let call = PersonaClient::new(channel)
            .get_profile(GetProfileRequest {
                token: tokens.iter().next().unwrap().clone(),
                as_of_micros: None,
            })
            .await;
        assert!(call.is_err(), "a client without a certificate was answered");
    }
}
