//! The operator's policies: a Kernite policy bundle loaded from a file and
//! kept current while the sidecar runs ([`crate::reload`]: a poll reads a few
//! kilobytes once per interval and parses only when the bytes changed).

pub mod bundle;
pub mod operation_map;

use std::path::{Path, PathBuf};

pub use bundle::{BundleError, PolicyBundle, Resolution};
pub use operation_map::OperationMap;

use crate::metrics::{ReloadResult, metrics};
use crate::reload::{Reload, Reloadable, Reloading};

/// The bundle in force, replaced whole when the file changes and the new one is valid.
pub type PolicySource = Reloading<PolicyBundle>;

impl Reloadable for PolicyBundle {
    const WHAT: &'static str = "policy bundle";
    type Files = PathBuf;
    type Contents = Vec<u8>;

    fn read(path: &PathBuf) -> anyhow::Result<(Vec<u8>, String)> {
        let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let sha256 = bundle::sha256_of(&bytes);
        Ok((bytes, sha256))
    }

    fn build(bytes: Vec<u8>) -> anyhow::Result<PolicyBundle> {
        let bundle = PolicyBundle::parse(&bytes)?;
        tracing::info!(
            sha256 = %bundle.sha256, policies = bundle.policy_count, scopes = bundle.scope_count(),
            "policy bundle loaded"
        );
        Ok(bundle)
    }

    fn observe(reload: &Reload) {
        match reload {
            Reload::Unchanged => {}
            Reload::Replaced => metrics().bundle_reload(ReloadResult::success),
            Reload::Failed(_) => metrics().bundle_reload(ReloadResult::failure),
        }
    }
}

/// Loads the bundle at `path`; a missing or invalid file is an error (start-up stops).
pub fn load(path: &Path) -> anyhow::Result<PolicySource> {
    PolicySource::load(path.to_owned())
        .map_err(|e| anyhow::anyhow!("policy bundle {} not loaded: {e:#}", path.display()))
}
