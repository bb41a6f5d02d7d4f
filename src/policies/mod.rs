//! The operator's policies: a Kernite policy bundle loaded from a file and
//! kept current while the sidecar runs.
//!
//! The file is polled ([`crate::poll`]): a poll reads a few kilobytes once per
//! interval and parses only when the bytes changed.

pub mod bundle;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::metrics::{ReloadResult, metrics};

pub use bundle::{BundleError, PolicyBundle, Resolution};

/// The current bundle, replaced whole when the file changes and the new one is valid.
pub struct PolicySource {
    path: PathBuf,
    current: ArcSwap<PolicyBundle>,
    reloads: AtomicU64,
    failures: AtomicU64,
    /// The hash of the last content refused, so that a broken file is
    /// reported (and counted) once, not at every poll.
    refused: Mutex<Option<String>>,
}

impl PolicySource {
    /// Loads the bundle; a missing or invalid file is an error (start-up stops).
    pub fn load(path: &Path) -> anyhow::Result<PolicySource> {
        let bytes =
            std::fs::read(path).map_err(|e| anyhow::anyhow!("reading policy bundle {}: {e}", path.display()))?;
        let bundle = PolicyBundle::parse(&bytes)
            .map_err(|e| anyhow::anyhow!("policy bundle {} is invalid: {e}", path.display()))?;
        tracing::info!(
            path = %path.display(), sha256 = %bundle.sha256, policies = bundle.policy_count,
            scopes = bundle.scope_count(), "policy bundle loaded"
        );
        Ok(PolicySource {
            path: path.to_owned(),
            current: ArcSwap::from_pointee(bundle),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            refused: Mutex::new(None),
        })
    }

    /// The bundle in force now. Calls keep the one they started with.
    pub fn current(&self) -> Arc<PolicyBundle> {
        self.current.load_full()
    }

    /// Reads the file again; swaps in the new bundle if it changed and is valid.
    /// A broken file leaves the current bundle in force.
    pub fn reload(&self) -> Reload {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) => return self.failed(format!("reading {}: {e}", self.path.display())),
        };
        let sha256 = bundle::sha256_of(&bytes);
        let current = self.current.load();
        let mut refused = self.refused.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if sha256 == current.sha256 || refused.as_deref() == Some(&sha256) {
            return Reload::Unchanged;
        }
        match PolicyBundle::parse(&bytes) {
            Ok(bundle) => {
                tracing::info!(
                    path = %self.path.display(), sha256 = %bundle.sha256, previous = %current.sha256,
                    policies = bundle.policy_count, scopes = bundle.scope_count(), "policy bundle reloaded"
                );
                self.current.store(Arc::new(bundle));
                self.reloads.fetch_add(1, Ordering::Relaxed);
                metrics().bundle_reload(ReloadResult::success);
                *refused = None;
                Reload::Replaced
            }
            Err(e) => {
                *refused = Some(sha256);
                self.failed(e.to_string())
            }
        }
    }

    fn failed(&self, reason: String) -> Reload {
        tracing::warn!(
            path = %self.path.display(), %reason, in_force = %self.current.load().sha256,
            "policy bundle not reloaded: keeping the one in force"
        );
        self.failures.fetch_add(1, Ordering::Relaxed);
        metrics().bundle_reload(ReloadResult::failure);
        Reload::Failed(reason)
    }

    /// Successful reloads and failed attempts since start-up.
    pub fn reload_counts(&self) -> (u64, u64) {
        (self.reloads.load(Ordering::Relaxed), self.failures.load(Ordering::Relaxed))
    }

    /// Reads the file again every `interval` until the task is aborted.
    pub fn watch(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        crate::poll::every(interval, move || {
            self.reload();
        })
    }
}

/// What one reload attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Replaced,
    Failed(String),
}
