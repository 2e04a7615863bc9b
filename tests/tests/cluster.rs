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
    /// The shards' names: `s0`, `s1`… or, following a table, `pc-shard-0`…
    names: Vec<String>,
    /// The assignment table file the shards follow (as the operator's ConfigMap
    /// mounted in their pods), if any.
    table: Option<PathBuf>,
    /// The shards' metrics ports (served when they follow a table).
    metrics: Vec<u16>,
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
        let name = self.names[i].clone();
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
        let ordinal = i.to_string();
        let metrics = format!("127.0.0.1:{}", self.metrics[i]);
        if let Some(table) = &self.table {
            args.extend(["--assignment-file", s(table), "--ordinal", &ordinal]);
            args.extend(["--metrics", &metrics]);
        }
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
        for i in 0..self.shards.len() {
            self.stop(i);
        }
    }

    /// Sends SIGTERM to shard `i` if it runs and waits for it to checkpoint and exit 0.
    fn stop(&mut self, i: usize) {
        let Some(mut child) = self.shards[i].take() else {
            return;
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let status = child.wait().expect("waiting for a shard");
        let name = &self.names[i];
        let log = std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        assert!(status.success(), "shard {name} exited with {status}:\n{log}");
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

/// The events of a demo bank, its specs with the count, and the batch computation.
struct Workload {
    /// Holds the temporary directory everything lives in.
    _demo: Demo,
    work: PathBuf,
    events_file: PathBuf,
    events: Vec<Value>,
    specs: PathBuf,
    batch: Vec<Value>,
    as_of: String,
}

fn workload(customers: u32, days: u32) -> Workload {
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
    Workload {
        _demo: demo,
        work,
        events_file,
        events,
        specs,
        batch,
        as_of,
    }
}

impl Workload {
    fn cluster(&self, names: Vec<String>, table: Option<PathBuf>) -> Cluster {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Cluster {
            dir: self.work.clone(),
            prefix: format!("chaos:{}:{nanos}", std::process::id()),
            specs: self.specs.clone(),
            as_of: self.as_of.clone(),
            shards: names.iter().map(|_| None).collect(),
            ports: names.iter().map(|_| free_port()).collect(),
            metrics: names.iter().map(|_| free_port()).collect(),
            names,
            table,
        }
    }

    /// The events file cut into `n` chunk files.
    fn chunks(&self, n: usize) -> Vec<PathBuf> {
        let lines = std::fs::read_to_string(&self.events_file).unwrap();
        let lines: Vec<&str> = lines.lines().collect();
        let size = lines.len().div_ceil(n);
        lines
            .chunks(size)
            .enumerate()
            .map(|(i, chunk)| {
                let file = self.work.join(format!("chunk-{i}.jsonl"));
                std::fs::write(&file, chunk.join("\n") + "\n").unwrap();
                file
            })
            .collect()
    }

    /// Compares what the stopped shards wrote with the batch: prints the chaos line,
    /// asserts nothing was lost or applied twice and every feature agrees.
    fn check(&self, cluster: &Cluster, kills: u32, moves: u32) {
        let (batch, events) = (&self.batch, &self.events);
        // Every shard wrote the features of the customers of its partitions.
        let mut streamed: BTreeMap<String, Value> = BTreeMap::new();
        for name in &cluster.names {
            for line in jsonl(&self.work.join(format!("{name}.features.jsonl"))) {
                let token = line["token"].as_str().unwrap().to_owned();
                assert!(streamed.insert(token, line).is_none(), "a customer on two shards");
            }
        }
        let count = |v: &Value| v["features"][COUNT].as_i64().expect("the count");
        let (mut lost, mut twice) = (0i64, 0i64);
        for want in batch {
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
        for want in batch {
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
}

#[test]
fn shards_killed_while_events_flow_lose_nothing_and_apply_nothing_twice() {
    let customers = env_or("PERSONA_CHAOS_CUSTOMERS", 120);
    let days = env_or("PERSONA_CHAOS_DAYS", 30);
    let kills = env_or("PERSONA_CHAOS_KILLS", 3);
    let moves = env_or("PERSONA_CHAOS_MOVES", 3);
    let w = workload(customers, days);
    let names: Vec<String> = (0..SHARDS).map(|i| format!("s{i}")).collect();
    let mut cluster = w.cluster(names.clone(), None);
    cluster.bus("assign", &["--shards", &names.join(",")]);
    for i in 0..SHARDS {
        cluster.start(i);
    }

    // Publish in chunks; after each of the first `kills` chunks, SIGKILL a shard while
    // it works and start it again on its own data directory; after each of the first
    // `moves`, move a partition to another shard while the chunk is being applied.
    let chunks = w.chunks((kills.max(moves) as usize + 2).max(4));
    for (n, file) in chunks.iter().enumerate() {
        cluster.bus("publish", &[s(file)]);
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
    w.check(&cluster, kills, moves);
}

/// Writes `table` where the shards read it, as the kubelet refreshes a ConfigMap
/// volume: a new file renamed over the old, never a half-written one.
fn publish_table(path: &Path, table: &persona_placement::Assignment) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(table).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The shard that holds each partition's lease on Redis, by name.
fn lease_holders(cluster: &Cluster) -> Vec<Option<String>> {
    let status: Value = serde_json::from_str(&cluster.bus("status", &["--json"])).expect("status json");
    status["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["shard"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until every running shard reports (`persona_table_epoch`, which the operator
/// reads before it removes a pod) that it took all its partitions under `epoch`.
fn wait_for_confirmation(cluster: &Cluster, epoch: u64) {
    let started = Instant::now();
    for (i, child) in cluster.shards.iter().enumerate() {
        if child.is_none() {
            continue;
        }
        let addr = format!("127.0.0.1:{}", cluster.metrics[i]);
        loop {
            let confirmed = std::net::TcpStream::connect(&addr)
                .ok()
                .map(|_| persona_tests::metric(&persona_tests::scrape(&addr), "persona_table_epoch", ""));
            if confirmed == Some(epoch as f64) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{} confirms {confirmed:?}, not epoch {epoch}",
                cluster.names[i]
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Waits until every partition's lease is held by the shard `table` gives it.
fn wait_for_table(cluster: &Cluster, table: &persona_placement::Assignment) {
    let want: Vec<Option<String>> = table
        .owners
        .iter()
        .map(|o| Some(cluster.names[*o as usize].clone()))
        .collect();
    let started = Instant::now();
    loop {
        let holders = lease_holders(cluster);
        if holders == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the shards did not follow table epoch {}: leases {holders:?}, table {want:?}",
            table.epoch
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Shards in the operator's mode: each follows the assignment table file (as its pod
/// reads the mounted ConfigMap) and takes the partitions it is given, pulling their
/// state from the old owner. The table grows from 2 to 3 shards and back to 2 while
/// events flow, with a shard killed in between; the removed shard leaves with nothing
/// and no event is lost or applied twice.
#[test]
fn shards_following_the_operators_table_scale_up_and_down_losing_nothing() {
    use persona_placement::plan;
    let w = workload(120, 30);
    let names: Vec<String> = (0..SHARDS).map(|i| format!("pc-shard-{i}")).collect();
    let table_file = w.work.join("assignment.json");
    let mut cluster = w.cluster(names, Some(table_file.clone()));
    let partitions: u32 = PARTITIONS.parse().unwrap();
    let chunks = w.chunks(4);

    // A new cluster: two pods, the first table.
    let first = plan(None, partitions, 2).unwrap().assignment;
    publish_table(&table_file, &first);
    cluster.start(0);
    cluster.start(1);
    wait_for_table(&cluster, &first);
    cluster.bus("publish", &[s(&chunks[0])]);

    // Scale up: the third pod starts with nothing, then the table gives it its share.
    cluster.start(2);
    cluster.bus("publish", &[s(&chunks[1])]);
    let grown = plan(Some(&first), partitions, 3).unwrap();
    assert_eq!(grown.assignment.partitions_of(2).len(), 4);
    publish_table(&table_file, &grown.assignment);
    // A pod dies while partitions move, and comes back on its own volume.
    std::thread::sleep(Duration::from_millis(300));
    cluster.kill(1);
    cluster.start(1);
    wait_for_table(&cluster, &grown.assignment);
    wait_for_confirmation(&cluster, grown.assignment.epoch);
    cluster.bus("publish", &[s(&chunks[2])]);

    // Scale down: partitions move off the highest ordinal, then its pod goes.
    let shrunk = plan(Some(&grown.assignment), partitions, 2).unwrap();
    publish_table(&table_file, &shrunk.assignment);
    cluster.bus("publish", &[s(&chunks[3])]);
    wait_for_table(&cluster, &shrunk.assignment);
    // As the operator does: the pod goes once every shard confirmed the epoch.
    wait_for_confirmation(&cluster, shrunk.assignment.epoch);
    cluster.stop(2);
    assert!(
        jsonl(&w.work.join("pc-shard-2.features.jsonl")).is_empty(),
        "the removed shard kept customers"
    );

    cluster.wait_for_no_lag();
    cluster.stop_all();
    let moves = (grown.moves.len() + shrunk.moves.len()) as u32;
    w.check(&cluster, 1, moves);
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

/// `persona bus assign` over leases that exist refuses (it would move no state and
/// stop their owners) unless told `--force`.
#[test]
fn assigning_over_existing_leases_needs_force() {
    let prefix = format!("reassign:{}:{}", std::process::id(), free_port());
    let bus = ["--redis", &redis_url(), "--prefix", &prefix, "--partitions", "4"].map(str::to_owned);
    let bus: Vec<&str> = bus.iter().map(String::as_str).collect();
    persona(&[&["bus", "assign", "--shards", "a,b"], &bus[..]].concat());
    let again = persona_command(&[&["bus", "assign", "--shards", "c"], &bus[..]].concat())
        .output()
        .unwrap();
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("4 partitions are leased already"), "{stderr}");
    assert!(stderr.contains("persona bus move"), "{stderr}");
    let status: Value =
        serde_json::from_slice(&persona(&[&["bus", "status", "--json"], &bus[..]].concat()).stdout).unwrap();
    assert_eq!(status["partitions"][0]["shard"], "a", "nothing changed");
    persona(&[&["bus", "assign", "--shards", "c", "--force"], &bus[..]].concat());
    let status: Value =
        serde_json::from_slice(&persona(&[&["bus", "status", "--json"], &bus[..]].concat()).stdout).unwrap();
    assert_eq!(status["partitions"][3]["shard"], "c");
}

/// A shard whose leases go elsewhere (`bus assign --force`) stops feeding those
/// partitions at its next fenced write and lets their actors go: it no longer
/// answers for them (calls are forwarded to the owner), and it keeps running.
#[test]
fn a_fenced_shard_lets_its_partitions_go_and_keeps_running() {
    let w = workload(40, 10);
    let cluster = w.cluster(vec!["f0".to_owned()], None);
    let chunks = w.chunks(2);
    cluster.bus("assign", &["--shards", "f0"]);
    let metrics = format!("127.0.0.1:{}", cluster.metrics[0]);
    // A shard with a metrics endpoint (Cluster::start serves one only with a table).
    let log = std::fs::File::create(w.work.join("f0-metrics.log")).unwrap();
    let mut args = vec!["-q", "shard", "--name", "f0", "--data"];
    let data = w.work.join("f0");
    args.push(s(&data));
    args.extend(["--specs", s(&w.specs), "--metrics", &metrics]);
    let bus = cluster.bus_args();
    args.extend(bus.iter().map(String::as_str));
    let mut child = persona_command(&args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    cluster.bus("publish", &[s(&chunks[0])]);
    cluster.wait_for_no_lag();
    let partitions = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("persona_events_applied_total{"))
            .count()
    };
    let started = Instant::now();
    while std::net::TcpStream::connect(&metrics).is_err() || partitions(&persona_tests::scrape(&metrics)) < 12 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the shard never served its 12 partitions"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    cluster.bus("assign", &["--shards", "elsewhere", "--force"]);
    cluster.bus("publish", &[s(&chunks[1])]);
    let started = Instant::now();
    loop {
        let text = persona_tests::scrape(&metrics);
        if partitions(&text) == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still serving {} partitions after losing them:\n{text}",
            partitions(&text)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(child.try_wait().unwrap().is_none(), "being fenced is not a failure");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// `scripts/local-cluster`, the development cluster, runs a generated bank all the
/// way through: its own redis-server, shards, gateway and de-tokenizer; every source
/// event applied once (plus the delivery outcomes sent back), every match delivered.
#[test]
fn the_local_cluster_script_runs_a_bank_through_every_service() {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/local-cluster");
    let out = Command::new("bash")
        .arg(&script)
        .args([
            "--shards",
            "2",
            "--partitions",
            "4",
            "--customers",
            "120",
            "--days",
            "14",
        ])
        .arg("--dir")
        .arg(dir.path().join("cluster"))
        .arg("--until-delivered")
        .env("PERSONA_BIN", persona_tests::persona_bin())
        .output()
        .expect("running scripts/local-cluster");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("shard s1     gRPC 127.0.0.1:"), "{stdout}");
    let last = stdout.lines().last().unwrap();
    let numbers: Vec<u64> = last
        .split(", ")
        .map(|part| part.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    let [events, applied, matches, delivered, shards] = numbers[..] else {
        panic!("{last}")
    };
    assert!(last.starts_with("events "), "{last}");
    assert_eq!(shards, 2);
    assert!(events > 1000, "{last}");
    assert!(matches > 0 && delivered == matches, "{last}");
    // Each delivery's outcome comes back as one more event.
    assert_eq!(applied, events + delivered, "{last}");
}
