//! Callers as a client with idempotency keys behaves: each writes one key
//! after another and retries a key until it is acknowledged, whatever fails
//! meanwhile. What they saw tells whether a fault lost or doubled a write.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governance_sidecar::proto::ExecuteWithEvidenceRequest;
use governance_sidecar::proto::governance_client::GovernanceClient;

/// How long one key may go unacknowledged before the test fails.
const GIVE_UP: Duration = Duration::from_secs(60);

pub struct KeyedLoad {
    stop: Arc<AtomicBool>,
    failed_attempts: Arc<AtomicU64>,
    last_acknowledged: Arc<Mutex<Instant>>,
    callers: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl KeyedLoad {
    /// `callers` callers at `address` (a sidecar that may be down now and
    /// then), writing keys `{prefix}-{caller}-{n}` with `request(key)`.
    pub fn start(
        address: &str,
        callers: usize,
        prefix: &str,
        request: fn(&str) -> ExecuteWithEvidenceRequest,
    ) -> KeyedLoad {
        let (stop, failed_attempts) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let last_acknowledged = Arc::new(Mutex::new(Instant::now()));
        let callers = (0..callers)
            .map(|caller| {
                let (stop, failed, last) =
                    (Arc::clone(&stop), Arc::clone(&failed_attempts), Arc::clone(&last_acknowledged));
                let channel =
                    tonic::transport::Endpoint::from_shared(format!("http://{address}")).unwrap().connect_lazy();
                let prefix = format!("{prefix}-{caller}");
                tokio::spawn(async move {
                    let mut client = GovernanceClient::new(channel);
                    let mut acknowledged = Vec::new();
                    for n in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let key = format!("{prefix}-{n}");
                        let started = Instant::now();
                        while client.execute_with_evidence(request(&key)).await.is_err() {
                            failed.fetch_add(1, Ordering::Relaxed);
                            assert!(started.elapsed() < GIVE_UP, "{key} never acknowledged");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        *last.lock().unwrap() = Instant::now();
                        acknowledged.push(key);
                    }
                    acknowledged
                })
            })
            .collect();
        KeyedLoad { stop, failed_attempts, last_acknowledged, callers }
    }

    /// When a key was last acknowledged.
    pub fn last_acknowledged(&self) -> Instant {
        *self.last_acknowledged.lock().unwrap()
    }

    /// Stops the callers; the keys acknowledged, and the attempts that failed.
    pub async fn stop(self) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let mut acknowledged = Vec::new();
        for caller in self.callers {
            acknowledged.extend(caller.await.unwrap());
        }
        (acknowledged, self.failed_attempts.load(Ordering::Relaxed))
    }
}
