//! Files that hold secrets (the database client key, the log's signing key,
//! the callers file) are read only when no one but their owner may read
//! them, as libpq insists for `.pgpass` and client keys.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use anyhow::Context as _;

/// The bytes of `path`, refused when group or others may access it (a file
/// root owns may also be group-readable, 0640, as libpq allows for keys:
/// Kubernetes mounts Secrets that way under an `fsGroup`). `what` names the
/// file in errors, which never quote its contents.
pub fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    // The file opened is the file checked and the file read, whatever replaces the path meanwhile.
    let mut file = std::fs::File::open(path).with_context(|| format!("reading {what} {}", path.display()))?;
    let metadata = file.metadata().with_context(|| format!("reading {what} {}", path.display()))?;
    refuse_if_shared(&metadata, path, what)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).with_context(|| format!("reading {what} {}", path.display()))?;
    Ok(bytes)
}

/// Refuses `path` when group or others may access it (see [`read`]).
pub fn check(path: &Path, what: &str) -> anyhow::Result<()> {
    let metadata = std::fs::metadata(path).with_context(|| format!("reading {what} {}", path.display()))?;
    refuse_if_shared(&metadata, path, what)
}

fn refuse_if_shared(metadata: &std::fs::Metadata, path: &Path, what: &str) -> anyhow::Result<()> {
    let forbidden = if metadata.uid() == 0 { 0o037 } else { 0o077 };
    if metadata.mode() & forbidden != 0 {
        anyhow::bail!(
            "{what} {} has group or world access (mode {:o}); permissions should be u=rw (0600) or less",
            path.display(),
            metadata.mode() & 0o777
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_file_others_may_read_is_refused_and_an_owners_file_is_read() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("key");
        std::fs::write(&path, "secret").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = format!("{:#}", read(&path, "the key").unwrap_err());
        assert!(error.contains("group or world access") && !error.contains("secret"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read(&path, "the key").unwrap(), b"secret");
    }
}
