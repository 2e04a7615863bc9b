//! `persona operator` as a real process, against a stand-in for the Kubernetes API
//! server (tests/support/fake_apiserver.py: the Lease, empty lists, silent watches):
//! it elects itself on the Lease, starts its controllers, says so on /metrics, and
//! releases the Lease on SIGTERM; a replica that finds another's live Lease follows
//! and takes over when it expires; a leader whose Lease is taken exits to restart as
//! a follower.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use persona_tests::{free_port, metric, persona_command, scrape};
use serde_json::{Value, json};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/persona/leases";

/// The fake API server process and the kubeconfig that points at it.
struct ApiServer {
    child: Child,
    port: u16,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl ApiServer {
    fn start() -> ApiServer {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/fake_apiserver.py");
        let child = Command::new("python3")
            .arg(&script)
            .arg(&port_file)
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs the fake API server");
        let started = Instant::now();
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text.trim().parse::<u16>().unwrap();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the fake API server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\n\
                 users:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context: {{cluster: fake, user: test, namespace: persona}}\n\
                 current-context: test\n"
            ),
        )
        .unwrap();
        ApiServer {
            child,
            port,
            kubeconfig,
            _dir: dir,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> String {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    }

    /// Every request the operator made so far.
    fn log(&self) -> Vec<Value> {
        serde_json::from_str(&self.call("GET", "/_log", None)).unwrap()
    }

    /// Requests with this method to paths containing `part`.
    fn calls(&self, method: &str, part: &str) -> Vec<Value> {
        self.log()
            .into_iter()
            .filter(|r| r["method"] == method && r["path"].as_str().unwrap().contains(part))
            .collect()
    }

    /// Replaces the Lease's spec, as another replica would.
    fn set_lease(&self, spec: &Value) {
        self.call("PUT", "/_lease", Some(spec));
    }

    /// Creates the Lease held by `holder`, renewed `ago` seconds ago, for 15 s.
    fn create_lease(&self, holder: &str, ago: u64) -> Value {
        let spec = lease_spec(holder, ago);
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                           "metadata": {"name": "persona-operator"}, "spec": spec});
        let created: Value = serde_json::from_str(&self.call("POST", LEASES, Some(&lease))).unwrap();
        assert_eq!(created["spec"]["holderIdentity"], holder);
        created
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lease_spec(holder: &str, ago: u64) -> Value {
    let renewed = chrono::Utc::now() - chrono::Duration::seconds(ago as i64);
    json!({"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 0,
           "acquireTime": renewed.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
           "renewTime": renewed.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()})
}

/// A `persona operator` process named `pod` and its metrics port.
struct Operator {
    child: Option<Child>,
    metrics: String,
    log: PathBuf,
}

impl Operator {
    fn start(api: &ApiServer, pod: &str, dir: &Path) -> Operator {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let log = dir.join(format!("{pod}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = persona_command(&["operator", "--shard-image", "ghcr.io/persona-dev/persona:test"])
            .env("KUBECONFIG", &api.kubeconfig)
            .env("PERSONA_NAMESPACE", "persona")
            .env("PERSONA_POD_NAME", pod)
            .env("PERSONA_OPERATOR_LISTEN", &listen)
            .env("RUST_LOG", "info")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("starting persona operator");
        Operator {
            child: Some(child),
            metrics: listen,
            log,
        }
    }

    /// `persona_operator_leader` once /metrics answers.
    fn leader(&self) -> Option<f64> {
        std::net::TcpStream::connect(&self.metrics)
            .ok()
            .map(|_| metric(&scrape(&self.metrics), "persona_operator_leader", ""))
    }

    fn wait_for_leader(&self, want: f64, within: Duration) {
        let started = Instant::now();
        while self.leader() != Some(want) {
            assert!(
                started.elapsed() < within,
                "leader gauge {:?}, wanted {want}; log:\n{}",
                self.leader(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn terminate(&mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait(Duration::from_secs(20))
    }

    fn wait(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                started.elapsed() < within,
                "the operator did not exit; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn the_first_replica_leads_starts_its_controllers_and_releases_the_lease_on_sigterm() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut op = Operator::start(&api, "op-a", dir.path());
    op.wait_for_leader(1.0, Duration::from_secs(30));

    let created = api.calls("POST", "/leases");
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["body"]["spec"]["holderIdentity"], "op-a");
    assert_eq!(created[0]["path"], LEASES);
    // Leading, it lists (then watches) the kinds it reconciles.
    let started = Instant::now();
    for kind in ["personaclusters", "featuresets", "offers", "contactpolicies"] {
        while api.calls("GET", &format!("/{kind}")).is_empty() {
            assert!(started.elapsed() < Duration::from_secs(20), "no list of {kind}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // It renews (every 2 s), keeping its acquire time.
    let started = Instant::now();
    while api.calls("PUT", "/leases/persona-operator").is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "no renewal");
        std::thread::sleep(Duration::from_millis(100));
    }
    let renewal = &api.calls("PUT", "/leases/persona-operator")[0]["body"];
    assert_eq!(renewal["spec"]["holderIdentity"], "op-a");
    assert_eq!(
        renewal["spec"]["acquireTime"],
        created[0]["body"]["spec"]["acquireTime"]
    );

    let status = op.terminate();
    assert!(status.success(), "exit {status}");
    let last = api.calls("PUT", "/leases/persona-operator").pop().unwrap();
    assert!(last["body"]["spec"].get("holderIdentity").is_none(), "released: {last}");
    assert_eq!(last["body"]["spec"]["leaseDurationSeconds"], 1);
}

#[test]
fn a_replica_follows_a_live_lease_takes_it_over_when_it_expires_and_exits_when_it_loses_it() {
    let api = ApiServer::start();
    api.create_lease("op-b", 0);
    let dir = tempfile::tempdir().unwrap();
    let mut op = Operator::start(&api, "op-a", dir.path());
    op.wait_for_leader(0.0, Duration::from_secs(30));
    // Following: it reads the Lease, writes nothing, and watches nothing.
    std::thread::sleep(Duration::from_secs(3));
    assert!(api.calls("GET", "/leases/persona-operator").len() >= 2);
    assert!(api.calls("PUT", "/leases").is_empty());
    assert!(api.calls("GET", "/personaclusters").is_empty());

    // op-b stops renewing: 16 s ago is past its 15 s lease.
    api.set_lease(&lease_spec("op-b", 16));
    op.wait_for_leader(1.0, Duration::from_secs(15));
    let taken = api.calls("PUT", "/leases/persona-operator");
    assert_eq!(taken[0]["body"]["spec"]["holderIdentity"], "op-a");
    assert_eq!(taken[0]["body"]["spec"]["leaseTransitions"], 1);

    // An administrator (or a partitioned replica's clock) hands the Lease to op-c:
    // op-a stops leading and exits, to restart as a follower.
    api.set_lease(&lease_spec("op-c", 0));
    let status = op.wait(Duration::from_secs(20));
    assert!(!status.success(), "a replica that lost its lease exits with an error");
    let log = std::fs::read_to_string(&op.log).unwrap();
    assert!(log.contains("lost the lease persona/persona-operator"), "{log}");
}
