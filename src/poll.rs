//! Re-reading files on an interval: the policy bundle and the TLS
//! certificates are both replaced on disk (a Kubernetes ConfigMap or Secret
//! volume swaps a `..data` symlink, which file watches on the old inode never
//! see), so each is read again every interval and compared with what is in force.

use std::time::Duration;

/// Calls `check` every `interval` (the first time one interval from now), on
/// the blocking pool so that a slow volume never stalls a runtime worker,
/// until the returned task is aborted.
pub fn every(interval: Duration, check: impl Fn() + Send + Sync + 'static) -> tokio::task::JoinHandle<()> {
    let check = std::sync::Arc::new(check);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let check = std::sync::Arc::clone(&check);
            let _ = tokio::task::spawn_blocking(move || check()).await;
        }
    })
}
