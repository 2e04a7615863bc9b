//! Helpers for persona's end-to-end tests: find (or build) the `persona` binary, run
//! it as a real process, and read its outputs; and reach the test KMS endpoint.

pub mod kms;
pub mod pii;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The debug `persona` binary of this workspace's target directory, built on first
/// use when missing (`cargo test` does not build other packages' binaries).
pub fn persona_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> -> target/<profile>/persona
        let profile_dir = exe.parent().and_then(Path::parent).expect("target profile dir");
        let bin = profile_dir.join(format!("persona{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-p", "persona", "--bin", "persona"])
                .status()
                .expect("running cargo build");
            assert!(status.success(), "cargo build -p persona failed");
        }
        bin
    })
}

/// Runs `persona ARGS`, returning its output; panics with stderr when it fails.
pub fn persona(args: &[&str]) -> Output {
    succeeded(persona_unchecked(args), args)
}

/// The output of `persona ARGS`, after checking it succeeded (panics with its stderr).
pub fn succeeded(out: Output, args: &[&str]) -> Output {
    assert!(
        out.status.success(),
        "persona {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `persona ARGS` whatever its exit status.
pub fn persona_unchecked(args: &[&str]) -> Output {
    persona_command(args).output().expect("running persona")
}

/// `persona ARGS` as a command to adjust (environment, stdio) before it runs: no
/// colours, default log levels.
pub fn persona_command(args: &[&str]) -> Command {
    let mut command = Command::new(persona_bin());
    command.args(args).env("NO_COLOR", "1").env_remove("RUST_LOG");
    command
}

/// `persona run --specs --sources --data --out` plus `extra` arguments; panics when it fails.
pub fn run_files(specs: &Path, sources: &Path, data: &Path, out: &Path, extra: &[&str]) -> Output {
    let paths = [specs, sources, data, out].map(|p| p.to_str().expect("utf-8 path").to_owned());
    let mut args = vec![
        "run",
        "--specs",
        &paths[0],
        "--sources",
        &paths[1],
        "--data",
        &paths[2],
        "--out",
        &paths[3],
    ];
    args.extend_from_slice(extra);
    persona(&args)
}

/// A demo run in a temporary directory.
#[derive(Debug)]
pub struct Demo {
    pub dir: tempfile::TempDir,
    pub stdout: String,
    pub stderr: String,
}

impl Demo {
    pub fn run(customers: u32, days: u32) -> Demo {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let (c, d) = (customers.to_string(), days.to_string());
        let o = persona(&[
            "demo",
            "--customers",
            &c,
            "--days",
            &d,
            "--out",
            out.to_str().expect("utf-8 path"),
        ]);
        Demo {
            dir,
            stdout: String::from_utf8(o.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(o.stderr).expect("utf-8 stderr"),
        }
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// A copy of the demo's specs in `name` under its directory, to edit.
    pub fn specs_copy(&self, name: &str) -> PathBuf {
        let specs = self.dir.path().join(name);
        copy_dir(&self.out().join("specs"), &specs);
        specs
    }

    /// Runs `persona backfill` on the demo's files: batch features in `out`, and the
    /// canonical tokenized events (what the cloud receives) in the returned file.
    pub fn canonical_events(&self, out: &Path) -> PathBuf {
        let demo = self.out();
        let events = out.join("events.jsonl");
        let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
        let args = [
            "-q".to_owned(),
            "backfill".into(),
            "--specs".into(),
            path(&demo.join("specs")),
            "--sources".into(),
            path(&demo.join("sources")),
            "--data".into(),
            path(&demo.join("data")),
            "--out".into(),
            path(out),
            "--events-out".into(),
            path(&events),
        ];
        persona(&args.iter().map(String::as_str).collect::<Vec<_>>());
        events
    }

    /// A `--data` directory `name` holding the demo's trusted zone (its vault, so the
    /// same tokens) and no cloud state.
    pub fn data_with_its_vault(&self, name: &str) -> PathBuf {
        let data = self.dir.path().join(name);
        copy_dir(&self.out().join("data").join("trusted"), &data.join("trusted"));
        data
    }
}

/// The redis-server of the test run, started by `./scripts/test` (or
/// `scripts/chaos`), which names it in `PERSONA_TEST_REDIS_URL`. Tests that need it
/// fail without it, never skip.
pub fn redis_url() -> String {
    std::env::var("PERSONA_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "PERSONA_TEST_REDIS_URL is unset: this test needs a redis-server. \
             Run ./scripts/test, which installs and starts one and sets it."
        )
    })
}

/// A loopback port free at the moment of asking, below the kernel's ephemeral range
/// (32768 and up): a port from that range could be taken, before the service binds
/// it, by any outgoing connection of any test (to Redis, say). Ports are tried from
/// a point that differs between processes and calls.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CALLS: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let seed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(call.wrapping_mul(40_503));
    for i in 0..SPAN {
        let port = (LOW + (seed.wrapping_add(i.wrapping_mul(7_919)) % SPAN)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener.local_addr().expect("its address").port()
}

/// Whether two feature values agree: objects key by key, numbers within a relative
/// 1e-9 when either is a decimal (sums in another order), anything else exactly.
pub fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (Some(x), Some(y)) = (x.as_f64(), y.as_f64()) else {
                return false;
            };
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-12)
        }
        _ => a == b,
    }
}

/// Lines of a JSONL file as JSON values.
pub fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

/// Rows of a CSV file as (header -> value) maps; rows with the wrong field count are skipped.
pub fn csv_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .expect("csv file");
    let header: Vec<String> = reader
        .headers()
        .expect("csv header")
        .iter()
        .map(str::to_owned)
        .collect();
    reader
        .records()
        .filter_map(Result::ok)
        .filter(|r| r.len() == header.len())
        .map(|r| header.iter().cloned().zip(r.iter().map(str::to_owned)).collect())
        .collect()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Copies every file under `from` to the same place under `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    for file in files_under(from) {
        let target = to.join(file.strip_prefix(from).expect("under from"));
        std::fs::create_dir_all(target.parent().expect("a parent")).expect("create dir");
        std::fs::copy(&file, &target).expect("copy");
    }
}

/// The text of `http://ADDR/metrics` (OpenMetrics), fetched over a plain socket.
pub fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("metrics on {addr}: {e}"));
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("application/openmetrics-text"),
        "{head}"
    );
    body.to_owned()
}

/// The sum of the samples of `name` whose labels contain `labels` (`""` for all).
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && rest.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}
