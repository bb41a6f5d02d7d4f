//! A throwaway PostgreSQL for tests: `DATABASE_URL` if set, else a private
//! server started once per test binary from the installed binaries. Each
//! test gets a fresh database.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use governance_sidecar::postgres::local_postgres::LocalPostgres;

/// The admin URL without a database name, e.g. `postgresql://postgres@127.0.0.1:5432`.
fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return url.rsplit_once('/').map(|(base, _)| base.to_owned()).unwrap_or(url);
        }
        let (sender, receiver) = std::sync::mpsc::channel();
        // The server dies with the thread that started it: this one never ends.
        std::thread::spawn(move || {
            let dir = scratch_dir("test");
            let server = LocalPostgres::start(&dir, 0, false).expect("starting a private PostgreSQL");
            sender.send(server.url("")).unwrap();
            loop {
                std::thread::park();
            }
        });
        receiver.recv().expect("PostgreSQL start-up thread").trim_end_matches('/').to_owned()
    })
}

/// A data directory of this test process (see [`super::scratch`]). A
/// server's data is a few hundred megabytes: left behind by every test binary
/// of every run, they once filled this machine's disk. Data directories of
/// earlier runs whose process is gone (killed before it could clean up) are
/// removed first.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_orphans);
    super::scratch(name)
}

/// Removes `governance-sidecar-*-<pid>` data directories whose process no longer runs.
fn remove_orphans() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, pid)) = name.strip_prefix("governance-sidecar-").and_then(|rest| rest.rsplit_once('-')) else {
            continue;
        };
        let is_data_dir = entry.path().join("PG_VERSION").exists();
        let process_gone = pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists();
        if is_data_dir && process_gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A new, empty database; returns its URL.
pub async fn fresh_database() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = format!("gs_test_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let admin = format!("{}/postgres", server_url());
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("admin connection");
    tokio::spawn(connection);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("creating a test database");
    format!("{}/{name}", server_url())
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connecting");
    tokio::spawn(connection);
    client
}

/// A private server of one test's own, which the test may stop and start
/// again (same port, same data): for outage and TLS tests.
pub struct OwnedPostgres {
    pub port: u16,
    pub data_dir: std::path::PathBuf,
    commands: std::sync::mpsc::Sender<(bool, std::sync::mpsc::Sender<()>)>,
}

impl OwnedPostgres {
    pub fn start(name: &str) -> OwnedPostgres {
        let data_dir = scratch_dir(name);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (commands, receiver) = std::sync::mpsc::channel::<(bool, std::sync::mpsc::Sender<()>)>();
        let dir = data_dir.clone();
        // The server lives on this thread: it dies with it (PR_SET_PDEATHSIG).
        std::thread::spawn(move || {
            let mut server = None;
            while let Ok((run, done)) = receiver.recv() {
                server = None;
                if run {
                    server = Some(LocalPostgres::start(&dir, port, false).expect("starting PostgreSQL"));
                }
                let _ = done.send(());
            }
            drop(server);
        });
        let owned = OwnedPostgres { port, data_dir, commands };
        owned.set_running(true);
        owned
    }

    /// Starts or stops the server and waits until it is done.
    pub fn set_running(&self, run: bool) {
        let (done, wait) = std::sync::mpsc::channel();
        self.commands.send((run, done)).unwrap();
        wait.recv().unwrap();
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

/// A thread that outlives the servers started on it: a private PostgreSQL
/// dies with the thread that started it (`PR_SET_PDEATHSIG`), so tests that
/// start several start them here, and they stop when this is dropped.
pub struct ServerThread {
    jobs: Option<std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    pub fn new() -> ServerThread {
        let (jobs, receiver) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let thread = std::thread::spawn(move || {
            while let Ok(job) = receiver.recv() {
                job();
            }
        });
        ServerThread { jobs: Some(jobs), thread: Some(thread) }
    }

    /// Runs `job` on the thread and returns what it returns.
    pub fn run<R: Send + 'static>(&self, job: impl FnOnce() -> R + Send + 'static) -> R {
        let (result, receive) = std::sync::mpsc::channel();
        let job: Box<dyn FnOnce() + Send> = Box::new(move || {
            let _ = result.send(job());
        });
        self.jobs.as_ref().unwrap().send(job).unwrap();
        receive.recv().expect("the server thread's job panicked")
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
