//! The trusted zone's services as real processes around a real Redis bus: `persona
//! gateway` ingests a drop directory and gRPC `Ingest` calls (mutual TLS), a `persona
//! shard` decides, and `persona detokenizer` resolves each match through the gateway's
//! `SealedVault` (mutual TLS, records opened with its own KMS right) and delivers it to
//! a webhook (this test's HTTP server), an SMTP server (aiosmtpd, from the venv
//! `./scripts/test` installs) and a file. Checked: every match is handled once, with
//! the right contact of the right customer; a transient webhook failure is retried; a
//! permanent one is a bounce; the audit and every Redis key hold no protected value.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use persona_proto::GatewayClient;
use persona_proto::tls::MutualTls;
use persona_proto::v1::IngestRequest;
use persona_tests::pii::{KAVERI_PROTECTED, hits, protected_values};
use persona_tests::{Demo, csv_rows, free_port, jsonl, metric, persona, persona_command, redis_url, scrape};

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Child processes, stopped with SIGTERM (and waited for) when the test ends. Their
/// piped stdout and stderr are read as they come (a full pipe would block a chatty
/// service until the test reads it, which it does only at the end).
struct Processes(Vec<(String, Child)>);

type Drained = (std::thread::JoinHandle<Vec<u8>>, std::thread::JoinHandle<Vec<u8>>);

/// The readers of each child's pipes, by process id.
fn drains() -> &'static Mutex<HashMap<u32, Drained>> {
    static DRAINS: std::sync::OnceLock<Mutex<HashMap<u32, Drained>>> = std::sync::OnceLock::new();
    DRAINS.get_or_init(Mutex::default)
}

fn read_all(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut out);
        }
        out
    })
}

impl Processes {
    fn push(&mut self, (name, mut child): (String, Child)) {
        let readers = (read_all(child.stdout.take()), read_all(child.stderr.take()));
        drains().lock().unwrap().insert(child.id(), readers);
        self.0.push((name, child));
    }

    fn stop(&mut self, name: &str) -> std::process::Output {
        let i = self.0.iter().position(|(n, _)| n == name).expect("a started process");
        let (_, mut child) = self.0.remove(i);
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let status = child.wait().expect("waiting for it");
        let (stdout, stderr) = match drains().lock().unwrap().remove(&child.id()) {
            Some((out, err)) => (out.join().unwrap_or_default(), err.join().unwrap_or_default()),
            None => (Vec::new(), Vec::new()),
        };
        std::process::Output { status, stdout, stderr }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        for (name, child) in &mut self.0 {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
            // A failing test shows what its services said.
            if failing && let Some((_, err)) = drains().lock().unwrap().remove(&child.id()) {
                let err = err.join().unwrap_or_default();
                let text = String::from_utf8_lossy(&err);
                let tail: String = text
                    .chars()
                    .rev()
                    .take(4000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                eprintln!("--- {name} (stderr, last 4000 characters) ---\n{tail}");
            }
        }
    }
}

/// What the webhook received: (Idempotency-Key, body), and how it answers.
#[derive(Default)]
struct Hook {
    received: Vec<(String, serde_json::Value)>,
    requests: usize,
    gone: String,
}

/// A minimal HTTP/1.1 webhook on loopback: the first request gets 503 (the
/// de-tokenizer must retry it); the phone of the second is gone, so it and every later
/// message to it get 410 (a hard bounce); every other one 200 and is recorded.
fn webhook() -> (u16, Arc<Mutex<Hook>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hook = Arc::new(Mutex::new(Hook::default()));
    let shared = hook.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let hook = shared.clone();
            std::thread::spawn(move || serve_connection(stream, &hook));
        }
    });
    (port, hook)
}

fn serve_connection(stream: std::net::TcpStream, hook: &Mutex<Hook>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        let mut key = String::new();
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "idempotency-key" => key = value.trim().to_owned(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let status = {
            let mut hook = hook.lock().unwrap();
            hook.requests += 1;
            if hook.requests == 2 {
                hook.gone = body["to"].as_str().unwrap().to_owned();
            }
            if hook.requests == 1 {
                "503 Service Unavailable"
            } else if body["to"] == hook.gone.as_str() {
                "410 Gone"
            } else {
                hook.received.push((key, body));
                "200 OK"
            }
        };
        write!(writer, "HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").unwrap();
        writer.flush().unwrap();
    }
}

/// aiosmtpd writing a Maildir, from the venv `./scripts/test` installs.
fn smtp_server(maildir: &Path, port: u16) -> Child {
    let python = std::env::var("PERSONA_TEST_SMTP_PYTHON").unwrap_or_else(|_| {
        panic!(
            "PERSONA_TEST_SMTP_PYTHON is unset: this test needs aiosmtpd. Run ./scripts/test, which installs it \
             into .work/smtp-venv and sets it."
        )
    });
    let child = Command::new(python)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .args(["-c", "aiosmtpd.handlers.Mailbox", s(maildir)])
        .stdout(Stdio::null())
        .spawn()
        .expect("starting aiosmtpd");
    wait_for_port(port);
    child
}

fn wait_for_port(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The emails in a Maildir: (To, Message-ID, body).
fn mails(maildir: &Path) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for entry in entries {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            };
            out.push((header("To"), header("Message-ID"), body.trim().to_owned()));
        }
    }
    out
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Every value under `prefix` on the bus's Redis: stream entries and hash fields.
async fn everything_under(prefix: &str) -> Vec<u8> {
    let mut conn = redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut all = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
        let value: redis::Value = match kind.as_str() {
            "stream" => {
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut conn)
                    .await
            }
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await,
            "string" => redis::cmd("GET").arg(&key).query_async(&mut conn).await,
            other => panic!("unexpected {other} at {key}"),
        }
        .unwrap();
        raw_text(&value, &mut all);
    }
    all
}

/// The raw bytes of every string in a reply, each followed by a newline (not the
/// reply's Debug form, which escapes what a scan looks for).
fn raw_text(value: &redis::Value, out: &mut Vec<u8>) {
    match value {
        redis::Value::BulkString(bytes) => out.extend_from_slice(bytes),
        redis::Value::SimpleString(s) => out.extend_from_slice(s.as_bytes()),
        redis::Value::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
        redis::Value::Array(items) | redis::Value::Set(items) => items.iter().for_each(|v| raw_text(v, out)),
        redis::Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            raw_text(k, out);
            raw_text(v, out);
        }),
        redis::Value::Nil | redis::Value::Okay => {}
        other => panic!("unexpected reply {other:?}"),
    }
    out.push(b'\n');
}

/// Entries ever added to the partition streams (trimming does not lower it).
async fn entries_added(prefix: &str) -> u64 {
    let mut conn = redis().await;
    let mut total = 0;
    for p in 0..4 {
        let info: HashMap<String, redis::Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(format!("{prefix}:events:{p}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        match info.get("entries-added") {
            Some(redis::Value::Int(n)) => total += *n as u64,
            other => panic!("entries-added: {other:?}"),
        }
    }
    total
}

async fn matches_published(prefix: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(format!("{prefix}:matches"))
        .query_async(&mut redis().await)
        .await
        .unwrap()
}

/// POSTs `body` to `http://ADDR/PATH` and returns the status code.
fn post(addr: &str, path: &str, body: &str) -> u16 {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut status = String::new();
    BufReader::new(stream).read_line(&mut status).unwrap();
    status.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Puts a file into the drop directory whole, as writers do when the gateway's settle
/// time is 0: written beside it, then renamed in.
fn put(file: &Path, drop: &Path) {
    let name = file.file_name().unwrap();
    let staged = drop.parent().unwrap().join(name);
    std::fs::copy(file, &staged).unwrap();
    std::fs::rename(&staged, drop.join(name)).unwrap();
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_file())
        .count()
}

/// Whether the shards have read and acknowledged every event of every partition.
async fn bus_idle(prefix: &str) -> bool {
    let mut conn = redis().await;
    for p in 0..4 {
        let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(format!("{prefix}:events:{p}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        for g in groups {
            let number = |k: &str| match g.get(k) {
                Some(redis::Value::Int(n)) => *n,
                _ => 0,
            };
            if number("pending") > 0 || number("lag") > 0 {
                return false;
            }
        }
    }
    true
}

async fn wait_until<F: std::future::Future<Output = bool>>(mut done: impl FnMut() -> F) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < Duration::from_secs(120), "timed out");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A gRPC client of the gateway, over mutual TLS with the de-tokenizer's certificate.
async fn gateway_client(port: u16, certs: &Path) -> GatewayClient<tonic::transport::Channel> {
    let tls = MutualTls::in_dir(certs, "detokenizer").client("localhost").unwrap();
    let started = Instant::now();
    loop {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("https://localhost:{port}"))
            .unwrap()
            .tls_config(tls.clone())
            .unwrap();
        match endpoint.connect().await {
            Ok(channel) => return GatewayClient::new(channel),
            Err(e) if started.elapsed() > Duration::from_secs(60) => panic!("gateway on {port}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trusted_services_deliver_every_match_once_to_the_right_contact() {
    let demo = Demo::run(200, 45);
    let out = demo.out();
    let sources = out.join("sources");
    let work = demo.dir.path().join("trusted");
    let (drop, data, delivered, certs, maildir) = (
        work.join("drop"),
        work.join("data"),
        work.join("out"),
        work.join("certs"),
        work.join("maildir"),
    );
    for d in [
        drop.clone(),
        maildir.join("tmp"),
        maildir.join("new"),
        maildir.join("cur"),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    let customers: HashMap<String, HashMap<String, String>> = csv_rows(&sources.join("customers.csv"))
        .into_iter()
        .map(|r| (r["CUST_ID"].clone(), r))
        .collect();
    let (hook_port, hook) = webhook();
    let smtp_port = free_port();
    let mut procs = Processes(Vec::new());
    procs.push(("smtp".into(), smtp_server(&maildir, smtp_port)));

    persona(&["dev-certs", "--out", s(&certs)]);
    let prefix = format!("trusted:{}:{}", std::process::id(), free_port());
    let bus_args = ["--redis", &redis_url(), "--prefix", &prefix, "--partitions", "4"].map(str::to_owned);
    let bus: Vec<&str> = bus_args.iter().map(String::as_str).collect();
    persona(&[&["bus", "assign", "--shards", "s0"], &bus[..]].concat());
    let specs = out.join("specs");
    let gateway_port = free_port();
    let gateway_addr = format!("127.0.0.1:{gateway_port}");
    let spawn = |name: &str, args: Vec<&str>| -> (String, Child) {
        let child = persona_command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        (name.to_owned(), child)
    };
    let gateway_metrics = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["gateway", "--specs", s(&specs), "--data", s(&data), "--drop", s(&drop)];
    args.extend([
        "--settle",
        "0s",
        "--poll",
        "100ms",
        "--grpc",
        &gateway_addr,
        "--tls-dir",
        s(&certs),
        "--metrics",
        &gateway_metrics,
    ]);
    args.extend(&bus);
    procs.push(spawn("gateway", args));
    let shard_data = work.join("s0");
    let mut args = vec!["shard", "--name", "s0", "--data", s(&shard_data), "--specs", s(&specs)];
    args.extend(&bus);
    procs.push(spawn("shard", args));
    let vault_url = format!("https://localhost:{gateway_port}");
    let sms = format!("sms=http://127.0.0.1:{hook_port}/deliveries");
    let email = format!("email=smtp://127.0.0.1:{smtp_port}?from=offers@bank.example");
    let push_file = delivered.join("push.jsonl");
    let push = format!("push=file:{}", s(&push_file));
    let responses_addr = format!("127.0.0.1:{}", free_port());
    let detok_metrics = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "detokenizer",
        "--data",
        s(&data),
        "--vault",
        &vault_url,
        "--tls-dir",
        s(&certs),
    ];
    args.extend([
        "--out",
        s(&delivered),
        "--channel",
        &sms,
        "--channel",
        &email,
        "--channel",
        &push,
        "--responses",
        &responses_addr,
        "--metrics",
        &detok_metrics,
    ]);
    args.extend(&bus);
    procs.push(spawn("detokenizer", args));

    // The customer master, transactions, balances and bureau feed come in through the
    // drop directory; then the card swipes through gRPC Ingest, with one record that
    // is not JSON.
    for entry in std::fs::read_dir(&sources).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "card_swipes.jsonl" {
            put(&path, &drop);
        }
    }
    wait_until(|| async { files_in(&drop) == 0 && bus_idle(&prefix).await }).await;
    let mut client = gateway_client(gateway_port, &certs).await;
    let swipes: Vec<String> = std::fs::read_to_string(sources.join("card_swipes.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut records = swipes.clone();
    records.insert(3, "{not json".to_owned());
    let mut refused = Vec::new();
    let mut events = 0;
    for (i, chunk) in records.chunks(1000).enumerate() {
        let reply = client
            .ingest(IngestRequest {
                source: "card-swipes".into(),
                records: chunk.to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        events += reply.events;
        refused.extend(
            reply
                .refused
                .into_iter()
                .map(|r| (i * 1000 + r.index as usize, r.reason)),
        );
    }
    assert!(events > 0);
    assert!(
        refused
            .iter()
            .any(|(i, reason)| *i == 3 && reason.contains("invalid json")),
        "{refused:?}"
    );
    let unknown = client
        .ingest(IngestRequest {
            source: "no-such-source".into(),
            records: vec!["{}".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // Wait until the drop directory is empty and every published match is audited.
    let started = Instant::now();
    let audit_path = delivered.join("audit.jsonl");
    let mut stable = 0;
    let mut last = (0, 0);
    while stable < 6 {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "not delivered in time: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let left = files_in(&drop);
        let audited = if audit_path.exists() {
            jsonl(&audit_path).len()
        } else {
            0
        };
        let now = (matches_published(&prefix).await, audited);
        let idle = bus_idle(&prefix).await;
        stable = if left == 0 && idle && now.0 > 0 && now.0 as usize == now.1 && now == last {
            stable + 1
        } else {
            0
        };
        last = now;
    }
    // Channels report back by match id: a STOP to an SMS, an open of an email.
    let audit = jsonl(&audit_path);
    let delivered_on = |c: &str| {
        audit
            .iter()
            .find(|a| a["channel"] == c && a["outcome"] == "delivered")
            .map(|a| a["match_id"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let respond = |body: String| post(&responses_addr, "/v1/responses", &body);
    let stop = serde_json::json!({"match_id": delivered_on("sms"), "response": "stop"});
    assert_eq!(respond(stop.to_string()), 202);
    let opened = serde_json::json!({"match_id": delivered_on("email"), "response": "opened"});
    assert_eq!(respond(opened.to_string()), 202);
    let unknown = serde_json::json!({"match_id": "mt_aaaaaaaaaaaaaaaaaaaaaaaaaa", "response": "stop"});
    assert_eq!(respond(unknown.to_string()), 404);
    assert_eq!(respond(r#"{"match_id": "x", "response": "maybe"}"#.into()), 400);

    // The services' metrics say the same as their outputs.
    let detok = scrape(&detok_metrics);
    let gate = scrape(&gateway_metrics);

    let detokenizer = procs.stop("detokenizer");
    let gateway = procs.stop("gateway");
    let detok_out = String::from_utf8_lossy(&detokenizer.stdout).into_owned();
    let detok_err = String::from_utf8_lossy(&detokenizer.stderr).into_owned();
    assert!(detokenizer.status.success(), "{detok_out}\n{detok_err}");
    assert!(gateway.status.success(), "{}", String::from_utf8_lossy(&gateway.stderr));

    // Every match handled once, all delivered but the bounce.
    let audit = jsonl(&audit_path);
    let ids: HashSet<&str> = audit.iter().map(|a| a["match_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), audit.len(), "a match is handled once");
    let outcome_of = |o: &str| audit.iter().filter(|a| a["outcome"] == o).count();
    let bounced = outcome_of("bounced");
    assert_eq!(outcome_of("delivered") + bounced, audit.len(), "{audit:?}");
    let count = |name: &str, labels: &str| metric(&detok, name, labels) as usize;
    assert_eq!(
        count("persona_detokenizer_matches_total", "outcome=\"delivered\""),
        outcome_of("delivered")
    );
    assert_eq!(
        count("persona_detokenizer_matches_total", "outcome=\"bounced\""),
        bounced
    );
    assert_eq!(count("persona_detokenizer_deliver_seconds_count", ""), audit.len());
    assert!(count("persona_detokenizer_retries_total", "") >= 1, "{detok}");
    assert_eq!(
        metric(&gate, "persona_gateway_events_total", "way=\"grpc\"") as u64,
        events
    );
    assert!(
        metric(&gate, "persona_gateway_dead_lettered_total", "way=\"grpc\"") >= 1.0,
        "{gate}"
    );
    assert!(
        metric(&gate, "persona_gateway_records_total", "way=\"drop\"") > 1000.0,
        "{gate}"
    );
    assert!(detok_out.contains("retries "), "{detok_out}");

    // The right contact of the right customer on each channel.
    let channel_of: HashMap<&str, &str> = audit
        .iter()
        .map(|a| (a["match_id"].as_str().unwrap(), a["channel"].as_str().unwrap()))
        .collect();
    let received = hook.lock().unwrap().received.clone();
    let mails = mails(&maildir);
    let pushes = if push_file.exists() {
        jsonl(&push_file)
    } else {
        Vec::new()
    };
    let by_channel = |c: &str| channel_of.values().filter(|v| **v == c).count();
    assert_eq!(
        received.len() + bounced,
        by_channel("sms"),
        "each SMS once (the 503 retried): {audit:?}\n{detok_err}"
    );
    assert_eq!(mails.len(), by_channel("email"));
    assert_eq!(pushes.len(), by_channel("push"));
    eprintln!(
        "matches {}: sms {} (bounced {bounced}), email {}, push {}",
        audit.len(),
        received.len(),
        mails.len(),
        pushes.len()
    );
    assert!(
        !received.is_empty() && !mails.is_empty(),
        "{} sms, {} email",
        received.len(),
        mails.len()
    );
    for (key, body) in &received {
        assert_eq!(
            key,
            body["match_id"].as_str().unwrap(),
            "the idempotency key is the match id"
        );
        let customer = &customers[body["customer_key"].as_str().unwrap()];
        assert_eq!(body["to"].as_str().unwrap(), customer["MOBILE"]);
    }
    assert!(bounced > 0, "the gone phone bounced");
    assert!(audit.iter().all(|a| a["outcome"] != "bounced" || a["channel"] == "sms"));
    let gone = hook.lock().unwrap().gone.clone();
    assert!(received.iter().all(|(_, b)| b["to"] != gone.as_str()));

    // The outcomes went back to the cloud: every event on the partition streams is one
    // the gateway published or an outcome (offer_response per delivery, preference
    // per bounce).
    let gateway_log = String::from_utf8_lossy(&gateway.stderr);
    let dropped: u64 = gateway_log
        .lines()
        .filter(|l| l.contains("dropped file ingested"))
        .map(|l| {
            l.split(" events=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    // (and the two responses above).
    assert_eq!(entries_added(&prefix).await, dropped + events + audit.len() as u64 + 2);
    let email_of: HashSet<&str> = customers.values().map(|c| c["EMAIL"].as_str()).collect();
    let first_names: HashSet<&str> = customers
        .values()
        .map(|c| c["FULL_NAME"].split_whitespace().next().unwrap())
        .collect();
    for (to, message_id, body) in &mails {
        assert!(email_of.contains(to.as_str()), "{to}");
        let id = message_id.trim_matches(['<', '>']).trim_end_matches("@persona");
        assert_eq!(channel_of.get(id), Some(&"email"), "{message_id}");
        // The fixed deposit greets her by name, filled in here from the vault.
        if let Some((first, _)) = body.split_once(", lock in 7.5%") {
            assert!(first_names.contains(first), "{body}");
        }
    }
    for p in &pushes {
        let customer = &customers[p["customer_key"].as_str().unwrap()];
        assert_eq!(p["to"].as_str().unwrap(), customer["PUSH_ID"]);
    }

    // Nothing the trusted zone protects reached the audit or the bus.
    let needles = protected_values(&sources);
    assert_eq!(
        hits(&std::fs::read(&audit_path).unwrap(), &needles),
        Vec::<String>::new()
    );
    let on_redis = everything_under(&prefix).await;
    assert!(on_redis.len() > 10_000, "the bus was read: {} bytes", on_redis.len());
    assert_eq!(hits(&on_redis, &needles), Vec::<String>::new());
    // Refused records went to the dead-letter file, with where, never what.
    let dead = jsonl(&drop.join(".done/dead_letter.jsonl"));
    assert!(dead.iter().any(|d| d["file"] == "grpc" && d["line"] == 4), "{dead:?}");
    assert!(dead.iter().any(|d| d["file"] != "grpc"), "{dead:?}");
    let dead_text = std::fs::read(drop.join(".done/dead_letter.jsonl")).unwrap();
    assert_eq!(hits(&dead_text, &needles), Vec::<String>::new());
    drop_done(&drop, &sources);
}

/// Each dropped file moved under the done directory.
fn drop_done(drop: &Path, sources: &Path) {
    let moved: HashSet<PathBuf> = std::fs::read_dir(drop.join(".done"))
        .unwrap()
        .map(|e| PathBuf::from(e.unwrap().file_name()))
        .collect();
    for entry in std::fs::read_dir(sources).unwrap() {
        let name = PathBuf::from(entry.unwrap().file_name());
        if name != Path::new("card_swipes.jsonl") {
            assert!(moved.contains(&name), "{name:?} in {moved:?}");
        }
    }
}

/// The KMS going away mid-run: the gateway leaves the files it cannot tokenize where
/// they are, backs off, and takes them once the KMS answers again; in the end every
/// event is on the bus once and every customer has one token. (A disabled key is not
/// tested here: moto's DisableKey changes the key's state but its GenerateDataKey and
/// Decrypt still answer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_waits_out_a_kms_outage_and_loses_nothing() {
    use persona_tests::kms::{self, KmsProxy};

    let demo = Demo::run(60, 20);
    let out = demo.out();
    let sources = out.join("sources");
    let work = demo.dir.path().join("outage");
    let (drop, data) = (work.join("drop"), work.join("data"));
    std::fs::create_dir_all(&drop).unwrap();
    let expected = jsonl(&demo.canonical_events(&work.join("batch"))).len() as u64;

    let key = tokio::task::block_in_place(kms::create_key);
    let proxy = KmsProxy::start();
    let prefix = format!("outage:{}:{}", std::process::id(), free_port());
    let bus_args = ["--redis", &redis_url(), "--prefix", &prefix, "--partitions", "4"].map(str::to_owned);
    let bus: Vec<&str> = bus_args.iter().map(String::as_str).collect();
    let specs = out.join("specs");
    let mut args = vec!["gateway", "--specs", s(&specs), "--data", s(&data), "--drop", s(&drop)];
    // Unwrapped keys are kept 1 s only, so the gateway needs the KMS again mid-run.
    args.extend(["--settle", "0s", "--poll", "100ms", "--key-cache-max-age", "1s"]);
    args.extend(&bus);
    let mut command = persona_command(&args);
    kms::use_aws_kms(&mut command, &key);
    command
        .env("PERSONA_KMS_ENDPOINT", proxy.endpoint())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut procs = Processes(Vec::new());
    procs.push(("gateway".into(), command.spawn().unwrap()));
    let give = |names: &[&str]| {
        let mut given = 0;
        for entry in std::fs::read_dir(&sources).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap();
            if names.iter().any(|n| name.starts_with(n)) {
                put(&path, &drop);
                given += 1;
            }
        }
        given
    };
    give(&["customers"]);
    wait_until(|| async { files_in(&drop) == 0 }).await;

    // The KMS goes away; the cached keys expire; new files wait.
    tokio::task::block_in_place(|| proxy.cut());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let waiting = give(&["core_txn", "balances"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    if files_in(&drop) != waiting {
        let log = procs.stop("gateway");
        panic!(
            "a file was taken while the KMS was away:\n{}",
            String::from_utf8_lossy(&log.stderr)
        );
    }

    // It is back: the files are taken.
    proxy.restore();
    wait_until(|| async { files_in(&drop) == 0 }).await;
    give(&["card_swipes", "bureau"]);
    wait_until(|| async { files_in(&drop) == 0 }).await;
    let gateway = procs.stop("gateway");
    let log = String::from_utf8_lossy(&gateway.stderr).into_owned();
    assert!(gateway.status.success(), "{log}");
    assert!(
        log.contains("cannot connect to the endpoint"),
        "the outage was logged: {log}"
    );
    assert!(log.contains("the file stays and is retried"), "{log}");

    // No shard reads this bus, so the streams hold everything published.
    let mut conn = redis().await;
    let mut on_bus = 0;
    for p in 0..4 {
        let len: u64 = redis::cmd("XLEN")
            .arg(format!("{prefix}:events:{p}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        on_bus += len;
    }
    assert_eq!(on_bus, expected, "every event once");
    let customers = csv_rows(&sources.join("customers.csv")).len();
    let status = persona(&["vault", "status", "--data", s(&data)]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains(&format!("tokens {customers},")),
        "one token per customer: {status}"
    );
}

/// A continuous source: records arrive as the entries of a Redis stream, in the
/// source's own field names. The gateway tokenizes each, publishes its events,
/// dead-letters the refused entries by their entry id, and acknowledges everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_follows_a_redis_stream_source() {
    let work = tempfile::tempdir().unwrap();
    let (specs, data, done) = (
        work.path().join("specs"),
        work.path().join("data"),
        work.path().join("done"),
    );
    std::fs::create_dir_all(&specs).unwrap();
    let prefix = format!("stream:{}:{}", std::process::id(), free_port());
    let source_key = format!("{prefix}:app-clicks");
    std::fs::write(
        specs.join("clicks.yaml"),
        format!(
            "kind: Source\nmetadata: {{name: app-clicks}}\nspec:\n  stream: \"{source_key}\"\n  event: app_event\n  \
             id: [click_id]\n  time: {{field: at, format: \"%Y-%m-%dT%H:%M:%S%z\"}}\n  fields:\n    cust: key\n    \
             email: {{vault: email}}\n    screen: {{attr: screen}}\n"
        ),
    )
    .unwrap();
    let mut conn = redis().await;
    let mut emails = HashSet::new();
    for i in 0..40 {
        let email = format!("someone.{i}@example.in");
        let mut entry = vec![
            ("click_id", format!("K{i}")),
            ("cust", format!("C{:03}", i % 10)),
            ("at", format!("2026-10-01T10:{:02}:00+05:30", i)),
            ("screen", "loans".to_owned()),
            ("email", email.clone()),
        ];
        match i {
            7 => entry.retain(|(k, _)| *k != "cust"),
            11 => entry[2].1 = "yesterday".into(),
            _ => {
                emails.insert(email);
            }
        }
        let _: String = redis::AsyncCommands::xadd(&mut conn, &source_key, "*", &entry)
            .await
            .unwrap();
    }

    let bus_args = ["--redis", &redis_url(), "--prefix", &prefix, "--partitions", "4"].map(str::to_owned);
    let bus: Vec<&str> = bus_args.iter().map(String::as_str).collect();
    let grpc = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "gateway",
        "--specs",
        s(&specs),
        "--data",
        s(&data),
        "--source-redis",
        &bus_args[1],
    ];
    let dead_letters = done.join("dead_letter.jsonl");
    args.extend(["--grpc", &grpc, "--dead-letters", s(&dead_letters)]);
    args.extend(&bus);
    let child = persona_command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut procs = Processes(Vec::new());
    procs.push(("gateway".into(), child));
    let key = source_key.clone();
    wait_until(|| {
        let key = key.clone();
        async move {
            let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&key)
                .query_async(&mut redis().await)
                .await
                .unwrap_or_default();
            groups
                .iter()
                .any(|g| g.get("pending") == Some(&redis::Value::Int(0)) && g.get("lag") == Some(&redis::Value::Int(0)))
        }
    })
    .await;
    let gateway = procs.stop("gateway");
    assert!(gateway.status.success(), "{}", String::from_utf8_lossy(&gateway.stderr));

    // 38 entries accepted, each an app event and (it vaults an email) a profile event
    // with the contact kinds.
    let mut on_bus = Vec::new();
    for p in 0..4 {
        let entries: redis::Value = redis::cmd("XRANGE")
            .arg(format!("{prefix}:events:{p}"))
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap();
        raw_text(&entries, &mut on_bus);
    }
    let on_bus = String::from_utf8(on_bus).unwrap();
    assert_eq!(on_bus.matches("\"type\":\"app_event\"").count(), 38, "{on_bus}");
    assert_eq!(on_bus.matches("\"type\":\"profile\"").count(), 38, "{on_bus}");
    for email in &emails {
        assert!(!on_bus.contains(email.as_str()), "{email} reached the bus");
    }
    assert!(!on_bus.contains("C00"), "a customer key reached the bus");
    let dead = jsonl(&dead_letters);
    assert_eq!(dead.len(), 2, "{dead:?}");
    for d in &dead {
        assert!(
            d["file"].as_str().unwrap().starts_with(&format!("redis:{source_key}/")),
            "{d}"
        );
    }
    assert!(dead.iter().any(|d| d["field"] == "cust"), "{dead:?}");
    assert!(dead.iter().any(|d| d["field"] == "at"), "{dead:?}");
    let status = persona(&["vault", "status", "--data", s(&data)]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("tokens 10,"));
}

/// The kaveri bank (tests/fixtures/kaveri) run through the trusted services and one
/// shard on its own bus prefix: the members dropped first (their contacts), then the
/// ledger; returns once every match is delivered and every service stopped. `global`
/// goes before every command (e.g. `--otlp-endpoint URL`).
struct KaveriRun {
    work: tempfile::TempDir,
    prefix: String,
    /// The services' stderr, by name.
    logs: HashMap<String, String>,
}

impl KaveriRun {
    fn delivered(&self) -> PathBuf {
        self.work.path().join("out")
    }

    async fn run(global: &[&str]) -> KaveriRun {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("kaveri");
        let work = tempfile::tempdir().unwrap();
        let (drop, data, delivered, certs) = (
            work.path().join("drop"),
            work.path().join("data"),
            work.path().join("out"),
            work.path().join("certs"),
        );
        std::fs::create_dir_all(&drop).unwrap();
        persona(&["dev-certs", "--out", s(&certs)]);
        let prefix = format!("kaveri:{}:{}", std::process::id(), free_port());
        let bus_args = ["--redis", &redis_url(), "--prefix", &prefix, "--partitions", "4"].map(str::to_owned);
        let bus: Vec<&str> = bus_args.iter().map(String::as_str).collect();
        persona(&[&["bus", "assign", "--shards", "k0"], &bus[..]].concat());
        let specs = fixture.join("specs");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let spawn = |args: Vec<&str>| {
            persona_command(&[global, &args[..], &bus[..]].concat())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let mut procs = Processes(Vec::new());
        let mut args = vec!["gateway", "--specs", s(&specs), "--data", s(&data), "--drop", s(&drop)];
        args.extend([
            "--settle",
            "0s",
            "--poll",
            "100ms",
            "--grpc",
            &addr,
            "--tls-dir",
            s(&certs),
        ]);
        procs.push(("gateway".into(), spawn(args)));
        let shard_data = work.path().join("k0");
        let args = vec!["shard", "--name", "k0", "--data", s(&shard_data), "--specs", s(&specs)];
        procs.push(("shard".into(), spawn(args)));
        let vault = format!("https://localhost:{port}");
        let mut args = vec![
            "detokenizer",
            "--data",
            s(&data),
            "--vault",
            &vault,
            "--tls-dir",
            s(&certs),
        ];
        args.extend(["--out", s(&delivered)]);
        procs.push(("detokenizer".into(), spawn(args)));

        put(&fixture.join("sources/members.jsonl"), &drop);
        wait_until(|| async { files_in(&drop) == 0 && bus_idle(&prefix).await }).await;
        put(&fixture.join("sources/ledger.csv"), &drop);
        let audit_path = delivered.join("audit.jsonl");
        wait_until(|| async {
            files_in(&drop) == 0
                && bus_idle(&prefix).await
                && audit_path.exists()
                && jsonl(&audit_path).len() as u64 == matches_published(&prefix).await
        })
        .await;
        // Stopped, each process flushes (and exports) what it still holds.
        let mut logs = HashMap::new();
        for name in ["detokenizer", "shard", "gateway"] {
            let out = procs.stop(name);
            let log = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{name}: {log}");
            logs.insert(name.to_owned(), log);
        }
        KaveriRun { work, prefix, logs }
    }
}

/// A second bank in other dialects (tests/fixtures/kaveri: JSON Lines members, a CSV
/// ledger with quoted commas, another time zone) through the same services: its
/// matches reach its members' own contacts, and nothing it protects is on Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_banks_dialects_through_the_services_leave_nothing_protected_on_redis() {
    let run = KaveriRun::run(&[]).await;
    let contacts: HashMap<&str, (&str, &str)> = [
        ("M-001", ("anna.weber@example.de", "+4915112345678")),
        ("M-003", ("", "+4917698765432")),
    ]
    .into();
    let deliveries = jsonl(&run.delivered().join("deliveries.jsonl"));
    assert!(!deliveries.is_empty(), "the ledger triggered offers");
    for d in &deliveries {
        let (email, phone) = contacts[d["customer_key"].as_str().unwrap()];
        let expected = if d["channel"] == "email" { email } else { phone };
        assert_eq!(d["to"].as_str().unwrap(), expected, "{d}");
    }
    let protected: HashSet<String> = KAVERI_PROTECTED.iter().map(|v| v.to_lowercase()).collect();
    let on_redis = everything_under(&run.prefix).await;
    assert!(on_redis.len() > 1_000, "the bus was read: {} bytes", on_redis.len());
    assert_eq!(hits(&on_redis, &protected), Vec::<String>::new());
    let audit = std::fs::read(run.delivered().join("audit.jsonl")).unwrap();
    assert_eq!(hits(&audit, &protected), Vec::<String>::new());
    for (name, log) in &run.logs {
        assert_eq!(hits(log.as_bytes(), &protected), Vec::<String>::new(), "{name}'s log");
    }
}

/// An OTLP collector for the test: keeps every span and every metric exported to it,
/// with the service name of the process that sent it.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)>>>,
    metrics: Arc<Mutex<Vec<(String, opentelemetry_proto::tonic::metrics::v1::Metric)>>>,
}

/// The `service.name` of an exporting process.
fn service_of(resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    resource
        .iter()
        .flat_map(|r| &r.attributes)
        .find(|a| a.key == "service.name")
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            Any::StringValue(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest>,
    ) -> Result<
        tonic::Response<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse>,
        tonic::Status,
    > {
        for resource in request.into_inner().resource_metrics {
            let service = service_of(resource.resource.as_ref());
            for scope in resource.scope_metrics {
                for metric in scope.metrics {
                    self.metrics.lock().unwrap().push((service.clone(), metric));
                }
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
    ) -> Result<
        tonic::Response<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse>,
        tonic::Status,
    > {
        for resource in request.into_inner().resource_spans {
            let service = service_of(resource.resource.as_ref());
            for scope in resource.scope_spans {
                for span in scope.spans {
                    self.spans.lock().unwrap().push((service.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

/// Traces from ingest to delivery: the gateway, the shard and the de-tokenizer export
/// their spans to an OTLP collector (this test's), and the context carried in the bus
/// entries makes one trace of them: a delivery's parent is the shard's batch that
/// decided the match, whose parent is the gateway's ingest of the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_gateway_through_the_shard_to_the_detokenizer() {
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;

    let collector = Collector::default();
    let otlp_port = free_port();
    let serving = collector.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(serving.clone()))
            .add_service(MetricsServiceServer::new(serving))
            .serve(format!("127.0.0.1:{otlp_port}").parse().unwrap())
            .await
    });
    let otlp = format!("http://127.0.0.1:{otlp_port}");

    let run = KaveriRun::run(&["--otlp-endpoint", &otlp]).await;
    let audit_path = run.delivered().join("audit.jsonl");

    let spans = collector.spans.lock().unwrap().clone();
    let find = |service: &str, name: &str| -> Vec<&opentelemetry_proto::tonic::trace::v1::Span> {
        spans
            .iter()
            .filter(|(s, sp)| s == service && sp.name == name)
            .map(|(_, sp)| sp)
            .collect()
    };
    let ingests = find("persona-gateway", "gateway.ingest_file");
    let batches = find("persona-shard", "shard.apply_batch");
    let deliveries = find("persona-detokenizer", "detokenizer.deliver");
    assert_eq!(ingests.len(), 2, "one span per dropped file");
    assert!(
        !batches.is_empty() && !deliveries.is_empty(),
        "{} batches, {} deliveries",
        batches.len(),
        deliveries.len()
    );
    assert_eq!(deliveries.len(), jsonl(&audit_path).len(), "one span per match");
    for d in &deliveries {
        let batch = batches
            .iter()
            .find(|b| b.span_id == d.parent_span_id)
            .expect("a delivery's parent is the shard batch that decided its match");
        assert_eq!(batch.trace_id, d.trace_id);
        let ingest = ingests
            .iter()
            .find(|g| g.span_id == batch.parent_span_id)
            .expect("the batch's parent is the gateway's ingest of a file");
        assert_eq!(ingest.trace_id, d.trace_id, "one trace from ingest to delivery");
    }
    // Spans carry names, sources, partitions, offers and match ids, never a value.
    let text = format!("{spans:?}").to_lowercase();
    for value in KAVERI_PROTECTED {
        assert!(!text.contains(&value.to_lowercase()), "{value} is in a span");
    }

    // The metrics went over OTLP too (each service pushes once more as it stops),
    // saying what the services did: the last export of each is the total.
    use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data, number_data_point::Value as Number};
    let metrics = collector.metrics.lock().unwrap().clone();
    let last = |service: &str, name: &str| -> Metric {
        metrics
            .iter()
            .rev()
            .find(|(s, m)| s == service && m.name == name)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| panic!("{service} exported no {name}"))
    };
    let total = |service: &str, name: &str| -> f64 {
        let points = match last(service, name).data {
            Some(Data::Sum(s)) => s.data_points,
            Some(Data::Gauge(g)) => g.data_points,
            other => panic!("{name}: {other:?}"),
        };
        points
            .iter()
            .map(|p| match p.value {
                Some(Number::AsDouble(v)) => v,
                Some(Number::AsInt(v)) => v as f64,
                None => 0.0,
            })
            .sum()
    };
    let published = total("persona-gateway", "persona_gateway_events");
    let applied = total("persona-shard", "persona_events_applied");
    assert!(published > 0.0, "the gateway published events");
    assert!(
        applied >= published,
        "the shard applied the gateway's events (and the outcomes): {applied} < {published}"
    );
    assert_eq!(
        total("persona-detokenizer", "persona_detokenizer_matches") as usize,
        jsonl(&audit_path).len(),
        "one match counted per audit line"
    );
    let Some(Data::Histogram(batches)) = last("persona-shard", "persona_apply_batch_seconds").data else {
        panic!("the batch latency is a histogram")
    };
    let point = &batches.data_points[0];
    assert!(point.count > 0);
    assert_eq!(point.bucket_counts.iter().sum::<u64>(), point.count);
    for service in ["persona-gateway", "persona-shard", "persona-detokenizer"] {
        assert!(total(service, "process_resident_memory_bytes") > 1e6, "{service}");
    }
    let text = format!("{metrics:?}").to_lowercase();
    for value in KAVERI_PROTECTED {
        assert!(!text.contains(&value.to_lowercase()), "{value} is in a metric");
    }
}
