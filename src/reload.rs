//! Files re-read while the sidecar runs: the policy bundle and the TLS
//! certificates.
//!
//! Both are replaced on disk by swapping a Kubernetes ConfigMap or Secret
//! volume's `..data` symlink, which file watches on the old inode never see.
//! So each is read again every interval, and only bytes that differ from
//! those in force are parsed. A new version that parses replaces the old one
//! whole; one that does not is refused, reported once (not at every poll),
//! and the version in force stays.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

/// Something built from files that may be replaced while the sidecar runs.
pub trait Reloadable: Sized + Send + Sync + 'static {
    /// What it is, for the logs: `policy bundle`.
    const WHAT: &'static str;
    /// Where its files are.
    type Files: Send + Sync + 'static;
    /// The files' contents as read.
    type Contents;

    /// Reads the files, with a digest of their bytes.
    fn read(files: &Self::Files) -> anyhow::Result<(Self::Contents, String)>;

    /// Builds the value from the files' contents, checking all of it.
    fn build(contents: Self::Contents) -> anyhow::Result<Self>;

    /// Told of every reload attempt that replaced the value or failed.
    fn observe(_reload: &Reload) {}
}

/// What one reload attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Replaced,
    Failed(String),
}

/// The value in force, and how to read its next version.
pub struct Reloading<T: Reloadable> {
    files: T::Files,
    current: ArcSwap<T>,
    digests: Mutex<Digests>,
    reloads: AtomicU64,
    failures: AtomicU64,
}

/// Digests of the files' bytes in force, and of the last version refused.
struct Digests {
    in_force: String,
    refused: Option<String>,
}

impl<T: Reloadable> Reloading<T> {
    /// Reads and builds the first version: anything missing or invalid stops start-up.
    pub fn load(files: T::Files) -> anyhow::Result<Reloading<T>> {
        let (contents, digest) = T::read(&files)?;
        let value = T::build(contents)?;
        Ok(Reloading {
            files,
            current: ArcSwap::from_pointee(value),
            digests: Mutex::new(Digests { in_force: digest, refused: None }),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// The version in force now. Whoever holds it keeps it until done.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    pub fn files(&self) -> &T::Files {
        &self.files
    }

    /// Reads the files again; swaps in a new version if they changed and it
    /// builds. A broken version leaves the one in force.
    pub fn reload(&self) -> Reload {
        let mut digests = self.digests.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let outcome = T::read(&self.files).and_then(|(contents, digest)| {
            if digest == digests.in_force || digests.refused.as_deref() == Some(&digest) {
                return Ok(None);
            }
            match T::build(contents) {
                Ok(value) => Ok(Some((value, digest))),
                Err(error) => {
                    digests.refused = Some(digest);
                    Err(error)
                }
            }
        });
        let reload = match outcome {
            Ok(None) => return Reload::Unchanged,
            Ok(Some((value, digest))) => {
                tracing::info!(what = T::WHAT, digest, previous = digests.in_force, "reloaded");
                self.current.store(Arc::new(value));
                *digests = Digests { in_force: digest, refused: None };
                self.reloads.fetch_add(1, Ordering::Relaxed);
                Reload::Replaced
            }
            Err(error) => {
                // A file half-way through being replaced is read again at the next poll.
                let reason = format!("{error:#}");
                tracing::warn!(what = T::WHAT, %reason, in_force = digests.in_force, "not reloaded: keeping the version in force");
                self.failures.fetch_add(1, Ordering::Relaxed);
                Reload::Failed(reason)
            }
        };
        T::observe(&reload);
        reload
    }

    /// Successful reloads and failed attempts since start-up.
    pub fn reload_counts(&self) -> (u64, u64) {
        (self.reloads.load(Ordering::Relaxed), self.failures.load(Ordering::Relaxed))
    }

    /// Reads the files again every `interval` (the first time one interval
    /// from now), on the blocking pool so that a slow volume never stalls a
    /// runtime worker, until the returned task is aborted.
    pub fn watch(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let this = Arc::clone(&self);
                let _ = tokio::task::spawn_blocking(move || this.reload()).await;
            }
        })
    }
}
