//! The local cluster on a real redis-server (started by `./scripts/test` or
//! `scripts/chaos`, named in `PERSONA_TEST_REDIS_URL`): three `persona shard`
//! processes feed their partitions while events are published in chunks; shards are
//! killed with SIGKILL and restarted on their own data directories, and partitions are
//! moved between live shards (`persona bus move`: lease, handoff over gRPC, resume).
//! At the end every customer's features equal the batch computation over the same
//! events, and a lifetime count of every event type shows none was lost or applied
//! twice.
//!
//! Sizes come from the environment, so `scripts/chaos` runs the same test larger:
//! `PERSONA_CHAOS_CUSTOMERS` (default 120), `PERSONA_CHAOS_DAYS` (30),
//! `PERSONA_CHAOS_KILLS` (3), `PERSONA_CHAOS_MOVES` (3). It prints
//! `events N, customers C, kills K, moves M, lost L, applied twice T`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use persona_tests::{Demo, close, free_port, jsonl, persona, persona_command, redis_url};
use serde_json::Value;

const SHARDS: usize = 3;
const PARTITIONS: &str = "12";
const COUNT: &str = "chaos_events_lifetime";

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The cluster under test: its bus prefix, the shards' processes and directories.
struct Cluster {
    dir: PathBuf,
    prefix: String,
    specs: PathBuf,
    as_of: String,
    shards: Vec<Option<Child>>,
    ports: Vec<u16>,
}

impl Cluster {
    fn bus_args(&self) -> Vec<String> {
        let mut args = vec!["--redis".into(), redis_url(), "--prefix".into(), self.prefix.clone()];
        args.extend(["--partitions".into(), PARTITIONS.into()]);
        args
    }

    fn bus(&self, command: &str, extra: &[&str]) -> String {
        let mut args = vec!["bus", command];
        let bus = self.bus_args();
        args.extend(bus.iter().map(String::as_str));
        args.extend_from_slice(extra);
        String::from_utf8(persona(&args).stdout).expect("utf-8")
    }

    fn start(&mut self, i: usize) {
        let name = format!("s{i}");
        let data = self.dir.join(&name);
        let features = self.dir.join(format!("{name}.features.jsonl"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .expect("shard log");
        let mut args = vec![
            "-q",
            "shard",
            "--name",
            &name,
            "--data",
            s(&data),
            "--specs",
            s(&self.specs),
        ];
        args.extend(["--checkpoint-every", "150", "--batch", "64"]);
        args.extend(["--features-out", s(&features), "--as-of", &self.as_of]);
        let grpc = format!("127.0.0.1:{}", self.ports[i]);
        args.extend(["--grpc", &grpc]);
        let bus = self.bus_args();
        args.extend(bus.iter().map(String::as_str));
        let child = persona_command(&args)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting a shard");
        self.shards[i] = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.shards[i].take() {
            child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
            child.wait().expect("reaping the killed shard");
        }
    }

    /// Moves `partition` to the shard after its current owner, retrying while that
    /// shard (just restarted) does not answer yet.
    fn move_partition(&self, partition: u32) {
        let status: Value = serde_json::from_str(&self.bus("status", &["--json"])).expect("status json");
        let owner = status["partitions"][partition as usize]["shard"]
            .as_str()
            .expect("an owner")
            .to_owned();
        let next: usize = owner[1..].parse::<usize>().expect("sN") + 1;
        let to = format!("s{}", next % SHARDS);
        let p = partition.to_string();
        let started = Instant::now();
        loop {
            let mut args = vec!["bus".to_owned(), "move".into(), "--partition".into(), p.clone()];
            args.extend(["--to".to_owned(), to.clone()]);
            args.extend(self.bus_args());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = persona_command(&args).output().expect("persona bus move");
            if out.status.success() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moving partition {partition} to {to}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Sends SIGTERM to every shard and waits for each to checkpoint and exit 0.
    fn stop_all(&mut self) {
        for child in self.shards.iter().flatten() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill -TERM");
            assert!(status.success());
        }
        for (i, child) in self.shards.iter_mut().enumerate() {
            let status = child
                .take()
                .expect("running shard")
                .wait()
                .expect("waiting for a shard");
            let log = std::fs::read_to_string(self.dir.join(format!("s{i}.log"))).unwrap_or_default();
            assert!(status.success(), "shard s{i} exited with {status}:\n{log}");
        }
    }

    /// Waits until every partition's entries are applied and acknowledged.
    fn wait_for_no_lag(&self) {
        let started = Instant::now();
        loop {
            let status: Value = serde_json::from_str(&self.bus("status", &["--json"])).expect("status json");
            if status["lag"] == 0 {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the cluster still lags after 2 minutes: {status}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.shards.len() {
            self.kill(i);
        }
    }
}

/// The demo's specs with one more feature: a lifetime count of every event type the
/// events hold, so a lost or twice-applied event shows as a count off by one.
fn specs_with_a_count(demo: &Demo, events: &[Value]) -> PathBuf {
    let specs = demo.specs_copy("chaos-specs");
    let types: BTreeSet<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    let on = types.into_iter().collect::<Vec<_>>().join(", ");
    let path = specs.join("featureset.yaml");
    let yaml = std::fs::read_to_string(&path).expect("featureset");
    let line = format!("    - {{name: {COUNT}, on: [{on}], agg: count}}\n  derived:\n");
    assert!(yaml.contains("\n  derived:\n"));
    std::fs::write(&path, yaml.replacen("  derived:\n", &line, 1)).expect("featureset");
    specs
}

#[test]
fn shards_killed_while_events_flow_lose_nothing_and_apply_nothing_twice() {
    let customers = env_or("PERSONA_CHAOS_CUSTOMERS", 120);
    let days = env_or("PERSONA_CHAOS_DAYS", 30);
    let kills = env_or("PERSONA_CHAOS_KILLS", 3);
    let moves = env_or("PERSONA_CHAOS_MOVES", 3);
    let demo = Demo::run(customers, days);
    let work = demo.dir.path().join("cluster");
    std::fs::create_dir_all(&work).unwrap();

    // The events, and the same FeatureSet (plus the count) computed in batch.
    let events_file = demo.canonical_events(&demo.dir.path().join("first-backfill"));
    let events = jsonl(&events_file);
    let specs = specs_with_a_count(&demo, &events);
    let batch_dir = demo.dir.path().join("batch");
    persona(&[
        "-q",
        "bench",
        "features",
        "--events",
        s(&events_file),
        "--featureset",
        s(&specs.join("featureset.yaml")),
        "--runs",
        "1",
        "--json",
        "--features-out",
        s(&batch_dir.join("features.jsonl")),
    ]);
    let batch = jsonl(&batch_dir.join("features.jsonl"));
    let as_of = batch[0]["as_of"].as_str().expect("as_of").to_owned();

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut cluster = Cluster {
        dir: work.clone(),
        prefix: format!("chaos:{}:{nanos}", std::process::id()),
        specs,
        as_of,
        shards: (0..SHARDS).map(|_| None).collect(),
        ports: (0..SHARDS).map(|_| free_port()).collect(),
    };
    let names: Vec<String> = (0..SHARDS).map(|i| format!("s{i}")).collect();
    cluster.bus("assign", &["--shards", &names.join(",")]);
    for i in 0..SHARDS {
        cluster.start(i);
    }

    // Publish in chunks; after each of the first `kills` chunks, SIGKILL a shard while
    // it works and start it again on its own data directory; after each of the first
    // `moves`, move a partition to another shard while the chunk is being applied.
    let lines = std::fs::read_to_string(&events_file).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    let chunks = (kills.max(moves) as usize + 2).max(4);
    let size = lines.len().div_ceil(chunks);
    for (n, chunk) in lines.chunks(size).enumerate() {
        let file = work.join(format!("chunk-{n}.jsonl"));
        std::fs::write(&file, chunk.join("\n") + "\n").unwrap();
        cluster.bus("publish", &[s(&file)]);
        if n < moves as usize {
            cluster.move_partition((n * 5 % 12) as u32);
        }
        if n < kills as usize {
            std::thread::sleep(Duration::from_millis(150));
            let victim = n % SHARDS;
            cluster.kill(victim);
            cluster.start(victim);
        }
    }
    cluster.wait_for_no_lag();
    cluster.stop_all();

    // Every shard wrote the features of the customers of its partitions.
    let mut streamed: BTreeMap<String, Value> = BTreeMap::new();
    for i in 0..SHARDS {
        for line in jsonl(&work.join(format!("s{i}.features.jsonl"))) {
            let token = line["token"].as_str().unwrap().to_owned();
            assert!(streamed.insert(token, line).is_none(), "a customer on two shards");
        }
    }
    let count = |v: &Value| v["features"][COUNT].as_i64().expect("the count");
    let (mut lost, mut twice) = (0i64, 0i64);
    for want in &batch {
        let token = want["token"].as_str().unwrap();
        let diff = streamed.get(token).map_or(-count(want), |got| count(got) - count(want));
        lost += (-diff).max(0);
        twice += diff.max(0);
    }
    println!(
        "events {}, customers {}, kills {kills}, moves {moves}, lost {lost}, applied twice {twice}",
        events.len(),
        batch.len()
    );
    let total: i64 = batch.iter().map(count).sum();
    assert_eq!(total, events.len() as i64, "the count sees every event");
    assert_eq!((lost, twice), (0, 0));
    assert_eq!(streamed.len(), batch.len());
    for want in &batch {
        let token = want["token"].as_str().unwrap();
        let got = &streamed[token];
        assert_eq!(got["as_of"], want["as_of"]);
        for (name, value) in want["features"].as_object().unwrap() {
            assert!(
                close(&got["features"][name], value),
                "{token} {name}: cluster {} batch {value}",
                got["features"][name]
            );
        }
    }
}

/// `persona bus` refuses a malformed events file with its file and line, having
/// published what came before it.
#[test]
fn a_malformed_events_file_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let good = r#"{"id":"ev_aaaaaaaaaaaaaaaaaaaaaaaaaa","token":"tk_baaaaaaaaaaaaaaaaaaaaaaaaa","type":"transaction","ts":"2026-03-04T10:22:00Z","attrs":{"amount":5}}"#;
    std::fs::write(&file, format!("{good}\nnot json\n")).unwrap();
    let prefix = format!("malformed:{}", std::process::id());
    let args = ["bus", "publish", "--redis", &redis_url(), "--prefix", &prefix, s(&file)];
    let output = persona_command(&args).stdin(Stdio::null()).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("events.jsonl:2: not a canonical event"), "{stderr}");
    let status = persona(&["bus", "status", "--redis", &redis_url(), "--prefix", &prefix, "--json"]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["lag"], 1, "the first line was published");
}
