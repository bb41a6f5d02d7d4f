//! Signed tree heads: a C2SP tlog-checkpoint (origin, size, base64 root, and
//! one extension line with the time it was made) in a C2SP signed note,
//! signed with the operator's Ed25519 key.
//!
//! Keys use Go's `golang.org/x/mod/sumdb/note` encodings, which the C2SP
//! ecosystem shares: the signer key `PRIVATE+KEY+<name>+<id>+<base64>` and
//! the verifier key `<name>+<id>+<base64>`. The key's name is the log's origin.

use std::path::Path;

use signed_note::{Note, Signer as _, StandardSigner, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

/// The extension line that says when a checkpoint's batch began, in
/// microseconds since the Unix epoch, on the database's clock (the clock of
/// the rows' `created_at`): before the batch's snapshot was taken.
const TIME_LINE: &str = "time-us ";

/// The operator's signing key.
pub struct LogSigner {
    signer: StandardSigner,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSigner").field("origin", &self.origin()).finish_non_exhaustive()
    }
}

impl LogSigner {
    /// Reads a signer key (`PRIVATE+KEY+…`) from a file, e.g. a mounted Secret.
    pub fn load(path: &Path) -> anyhow::Result<LogSigner> {
        let bytes = crate::secret_file::read(path, "the log signing key")?;
        let text = String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{} is not UTF-8", path.display()))?;
        let signer = StandardSigner::new(text.trim())
            .map_err(|e| anyhow::anyhow!("{} is not a note signer key (PRIVATE+KEY+…): {e}", path.display()))?;
        Ok(LogSigner { signer })
    }

    /// The log's origin: the key's name.
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The signed note of the checkpoint of a tree.
    pub fn sign(&self, size: u64, root: Hash, time_us: i64) -> anyhow::Result<String> {
        let checkpoint = Checkpoint::new(self.origin(), size, root, &format!("{TIME_LINE}{time_us}\n"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut note = Note::new(&checkpoint.to_bytes(), &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
        note.add_sigs(&[&self.signer]).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(String::from_utf8(note.to_bytes()).expect("a note is UTF-8"))
    }
}

/// A new key pair for a log named `origin`: (signer key, verifier key).
pub fn generate_key(origin: &str) -> anyhow::Result<(String, String)> {
    if !signed_note::is_key_name_valid(origin) {
        anyhow::bail!("{origin:?} cannot name a key: it must be non-empty, with no spaces or `+`");
    }
    Ok(signed_note::generate_key(&mut rand_core::OsRng, origin))
}

/// What a checkpoint says, once its signature is verified.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenedCheckpoint {
    pub size: u64,
    pub root: Hash,
    pub time_us: Option<i64>,
}

/// Checks checkpoints against the log's public key.
pub struct LogVerifier {
    origin: String,
    verifiers: VerifierList,
}

impl LogVerifier {
    /// From a verifier key (`<name>+<id>+<base64>`).
    pub fn new(vkey: &str) -> anyhow::Result<LogVerifier> {
        let verifier = StandardVerifier::new(vkey.trim())
            .map_err(|e| anyhow::anyhow!("not a note verifier key (<name>+<id>+<base64>): {e}"))?;
        let origin = signed_note::Verifier::name(&verifier).to_owned();
        Ok(LogVerifier { origin, verifiers: VerifierList::new(vec![Box::new(verifier)]) })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The checkpoint in a signed note, if the log's key signed it and it is
    /// a well-formed checkpoint of this log.
    pub fn open(&self, signed_note: &str) -> Result<OpenedCheckpoint, String> {
        let note = Note::from_bytes(signed_note.as_bytes()).map_err(|e| format!("not a signed note: {e}"))?;
        note.verify(&self.verifiers).map_err(|e| match e {
            signed_note::NoteError::UnverifiedNote => "not signed by the log's key".to_owned(),
            other => format!("signature does not verify: {other}"),
        })?;
        let checkpoint = Checkpoint::from_bytes(note.text()).map_err(|e| format!("not a checkpoint: {e}"))?;
        if checkpoint.origin() != self.origin {
            return Err(format!("origin {:?} is not the log's ({:?})", checkpoint.origin(), self.origin));
        }
        let time_us =
            checkpoint.extension().lines().find_map(|line| line.strip_prefix(TIME_LINE)).and_then(|t| t.parse().ok());
        Ok(OpenedCheckpoint { size: checkpoint.size(), root: *checkpoint.hash(), time_us })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (LogSigner, LogVerifier) {
        let (skey, vkey) = generate_key("example.com/evidence").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{skey}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        (LogSigner::load(&path).unwrap(), LogVerifier::new(&vkey).unwrap())
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_only() {
        let (signer, verifier) = pair();
        let root = tlog_tiles::record_hash(b"x");
        let note = signer.sign(7, root, 1_700_000_000_000_000).unwrap();
        assert!(note.starts_with("example.com/evidence\n7\n"), "{note}");
        let opened = verifier.open(&note).unwrap();
        assert_eq!(opened, OpenedCheckpoint { size: 7, root, time_us: Some(1_700_000_000_000_000) });

        let (_, stranger) = pair();
        assert_eq!(stranger.open(&note).unwrap_err(), "not signed by the log's key");
        let forged = note.replacen("\n7\n", "\n8\n", 1);
        assert!(verifier.open(&forged).unwrap_err().starts_with("signature does not verify"));
    }

    #[test]
    fn key_names_with_spaces_are_refused() {
        assert!(generate_key("my log").is_err());
    }
}
