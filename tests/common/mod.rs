//! A real sidecar on an ephemeral loopback port, for integration tests.

#![allow(dead_code)]
// libc for the exit hook and for signalling the child sidecar; each use has its SAFETY comment.
#![allow(unsafe_code)]

use std::net::SocketAddr;

use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::ServerSettings;
use governance_sidecar::proto::governance_client::GovernanceClient;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub struct TestServer {
    pub address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    pub async fn start(settings: ServerSettings, api: GovernanceApi) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding a loopback port");
        let address = listener.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            governance_sidecar::server::serve(listener, &settings, api, async {
                let _ = signal.await;
            })
            .await
        });
        TestServer { address, shutdown: Some(shutdown), task }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.address))
            .unwrap()
            .connect()
            .await
            .expect("connecting to the sidecar")
    }

    pub async fn client(&self) -> GovernanceClient<Channel> {
        GovernanceClient::new(self.channel().await)
    }

    /// Sends the shutdown signal (as SIGTERM would) without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Signals shutdown and waits for the server to stop.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.begin_shutdown();
        self.task.await.expect("server task panicked")
    }
}
pub mod certificates;
pub mod dev;
pub mod evidence;
pub mod http;
pub mod load;
pub mod months;
pub mod postgres;

/// An empty directory of this test process under the temp dir,
/// `governance-sidecar-<name>-<pid>`, removed when the process exits, so
/// that no run leaves certificates, bundles or databases behind.
pub fn scratch(name: &str) -> std::path::PathBuf {
    static DIRS: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
    extern "C" fn remove_all() {
        for dir in DIRS.lock().map(|dirs| dirs.clone()).unwrap_or_default() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    // SAFETY: registers a plain function to run at exit.
    AT_EXIT.call_once(|| unsafe {
        libc::atexit(remove_all);
    });
    let dir = std::env::temp_dir().join(format!("governance-sidecar-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch directory");
    DIRS.lock().expect("scratch list").push(dir.clone());
    dir
}

/// Panics unless a finished command succeeded, showing what it printed.
pub fn assert_success(what: &str, output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A verifiable-log key pair in this test's scratch directory: (signer key file, verifier key).
pub fn log_key_pair(name: &str) -> (std::path::PathBuf, String) {
    let (signer, verifier) = governance_sidecar::log::checkpoint::generate_key("test.example/evidence").unwrap();
    let path = scratch(name).join("log-signing-key");
    std::fs::write(&path, &signer).unwrap();
    // The sidecar reads a signing key only its owner may read.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    (path, verifier)
}

/// `governance-sidecar verify` against `url`: whether it passed, and what it printed.
pub fn verify_log(url: &str, verifier_key: &str) -> (bool, String) {
    let output = std::process::Command::new(dev::BINARY)
        .args(["verify", "--database-url", url, "--public-key", verifier_key])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (output.status.success(), String::from_utf8(output.stdout).unwrap())
}
