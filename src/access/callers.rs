//! The callers file: who may call, how each proves it, and what each may do.
//!
//! ```toml
//! [[callers]]
//! name = "billing"                  # recorded in every evidence row it writes
//! token_sha256 = "9f86d081…"        # SHA-256 of its bearer token, hex
//! workspaces = ["acme", "tenant-*"]
//! operations = ["decide", "execute", "read"]
//! mutations = ["create_invoice"]    # optional: `execute` only these
//!
//! [[callers]]
//! name = "spiffe://cluster.local/ns/payments/sa/api"  # a client certificate's identity
//! certificate = true
//! workspaces = ["payments"]
//! operations = ["execute"]
//! ```
//!
//! Only a digest of each token is kept. A presented token is hashed and the
//! digest compared with every caller's, in constant time and without
//! stopping at a match, so the time taken says nothing about which digest
//! came close. The file is re-read while the sidecar runs ([`crate::reload`]),
//! and refused if group or others may read it ([`crate::secret_file`]).

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::grants::{Grants, Operation, WorkspacePattern};
use crate::defaults::MAX_IDENTIFIER_BYTES;
use crate::reload::{Reloadable, Reloading};

/// The callers file in force, replaced whole when it changes and the new one is valid.
pub type CallersSource = Reloading<Callers>;

/// One caller the file names.
#[derive(Debug)]
pub struct KnownCaller {
    pub name: Arc<str>,
    pub grants: Arc<Grants>,
    proof: Proof,
}

#[derive(Debug)]
enum Proof {
    /// SHA-256 of its bearer token.
    Token(Digest),
    /// A client certificate whose identity is its name.
    Certificate,
}

/// Every caller of one version of the file.
#[derive(Debug)]
pub struct Callers {
    callers: Vec<KnownCaller>,
}

impl Callers {
    /// The caller whose token this is. Every digest is compared, whatever
    /// matched before it.
    pub fn by_token(&self, token: &[u8]) -> Option<&KnownCaller> {
        let digest = Digest::of(token);
        let mut found = None;
        for caller in &self.callers {
            if let Proof::Token(expected) = &caller.proof
                && expected.same_as(&digest)
            {
                found = Some(caller);
            }
        }
        found
    }

    /// The caller a client certificate with this identity is.
    pub fn by_certificate(&self, identity: &str) -> Option<&KnownCaller> {
        self.callers.iter().find(|caller| matches!(caller.proof, Proof::Certificate) && &*caller.name == identity)
    }

    pub fn parse(text: &str) -> anyhow::Result<Callers> {
        let file: CallersFile = toml::from_str(text)?;
        let (mut names, mut digests) = (HashSet::new(), HashSet::new());
        let mut callers = Vec::with_capacity(file.callers.len());
        for (index, entry) in file.callers.into_iter().enumerate() {
            let name = entry.name.clone();
            let caller = entry.compile().with_context(|| format!("callers[{index}] (`{name}`)"))?;
            if !names.insert(name.clone()) {
                bail!("caller `{name}` is named twice");
            }
            if let Proof::Token(digest) = &caller.proof
                && !digests.insert(digest.0)
            {
                bail!("caller `{name}` has the same token as another caller");
            }
            callers.push(caller);
        }
        Ok(Callers { callers })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallersFile {
    #[serde(default)]
    callers: Vec<CallerEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerEntry {
    name: String,
    token_sha256: Option<String>,
    #[serde(default)]
    certificate: bool,
    workspaces: Vec<String>,
    operations: Vec<String>,
    mutations: Option<Vec<String>>,
}

impl CallerEntry {
    fn compile(self) -> anyhow::Result<KnownCaller> {
        if self.name.trim().is_empty() || self.name.contains('\0') || self.name.len() > MAX_IDENTIFIER_BYTES {
            bail!("a caller's name must be non-empty text of at most {MAX_IDENTIFIER_BYTES} bytes");
        }
        let proof = match (self.token_sha256, self.certificate) {
            (Some(digest), false) => Proof::Token(token_digest(&digest)?),
            (None, true) => Proof::Certificate,
            _ => bail!("give either token_sha256 or certificate = true"),
        };
        if self.workspaces.is_empty() {
            bail!("workspaces is empty: grant at least one (`*` for all)");
        }
        let workspaces = self
            .workspaces
            .iter()
            .map(|w| WorkspacePattern::parse(w))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("workspaces: {e}"))?;
        let operations = self
            .operations
            .iter()
            .map(|o| o.parse::<Operation>())
            .collect::<Result<BTreeSet<_>, _>>()
            .map_err(|e| anyhow::anyhow!("operations: {e}"))?;
        if operations.is_empty() {
            bail!("operations is empty: grant at least one of decide, execute, read, log");
        }
        let mutations = self.mutations.map(|names| names.into_iter().collect());
        Ok(KnownCaller {
            name: Arc::from(self.name),
            grants: Arc::new(Grants { workspaces, operations, mutations }),
            proof,
        })
    }
}

/// A token's SHA-256, as four machine words.
#[derive(Debug, Clone, Copy)]
struct Digest([u64; 4]);

impl Digest {
    fn of(token: &[u8]) -> Digest {
        Digest::from_bytes(Sha256::digest(token).into())
    }

    fn from_bytes(bytes: [u8; 32]) -> Digest {
        let word = |i: usize| u64::from_ne_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("eight bytes"));
        Digest([word(0), word(1), word(2), word(3)])
    }

    /// Equality in constant time: every word is compared, whatever differs
    /// first, and only the folded difference is tested.
    fn same_as(&self, other: &Digest) -> bool {
        let difference = self.0.iter().zip(&other.0).fold(0, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

/// 64 hex digits, either case.
fn token_digest(text: &str) -> anyhow::Result<Digest> {
    let mut digest = [0; 32];
    hex::decode_to_slice(text.trim(), &mut digest)
        .map_err(|_| anyhow::anyhow!("token_sha256 must be 64 hex digits (a SHA-256)"))?;
    Ok(Digest::from_bytes(digest))
}

impl Reloadable for Callers {
    const WHAT: &'static str = "callers file";
    type Files = PathBuf;
    type Contents = Vec<u8>;

    fn read(path: &PathBuf) -> anyhow::Result<(Vec<u8>, String)> {
        let bytes = crate::secret_file::read(path, "the callers file")?;
        let digest = hex::encode(Sha256::digest(&bytes));
        Ok((bytes, digest))
    }

    fn build(bytes: Vec<u8>) -> anyhow::Result<Callers> {
        let text = std::str::from_utf8(&bytes).context("the callers file is not UTF-8")?;
        let callers = Callers::parse(text)?;
        tracing::info!(callers = callers.callers.len(), "callers file loaded");
        Ok(callers)
    }
}

/// Loads the callers file; a missing, unreadable or invalid file stops start-up.
pub fn load(path: &std::path::Path) -> anyhow::Result<CallersSource> {
    CallersSource::load(path.to_owned())
        .map_err(|e| anyhow::anyhow!("callers file {} not loaded: {e:#}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    fn file(entries: &str) -> anyhow::Result<Callers> {
        Callers::parse(entries)
    }

    #[test]
    fn a_token_finds_its_caller_and_no_other() {
        let callers = file(&format!(
            "[[callers]]\nname = \"billing\"\ntoken_sha256 = \"{}\"\nworkspaces = [\"acme\"]\noperations = [\"decide\"]\n\
             [[callers]]\nname = \"reports\"\ntoken_sha256 = \"{}\"\nworkspaces = [\"*\"]\noperations = [\"read\"]\n",
            digest_of("t-billing"),
            digest_of("t-reports").to_uppercase()
        ))
        .unwrap();
        assert_eq!(&*callers.by_token(b"t-billing").unwrap().name, "billing");
        assert_eq!(&*callers.by_token(b"t-reports").unwrap().name, "reports");
        assert!(callers.by_token(b"t-billin").is_none());
        assert!(callers.by_token(digest_of("t-billing").as_bytes()).is_none(), "the digest is not the token");
        assert!(callers.by_certificate("billing").is_none(), "a token caller is not a certificate identity");
    }

    #[test]
    fn a_certificate_caller_is_found_by_its_identity_only() {
        let callers = file(
            "[[callers]]\nname = \"spiffe://cluster.local/ns/a/sa/b\"\ncertificate = true\n\
             workspaces = [\"a\"]\noperations = [\"execute\"]\nmutations = [\"create_invoice\"]\n",
        )
        .unwrap();
        let caller = callers.by_certificate("spiffe://cluster.local/ns/a/sa/b").unwrap();
        assert!(caller.grants.may_run("create_invoice") && !caller.grants.may_run("delete_invoice"));
        assert!(callers.by_certificate("spiffe://cluster.local/ns/a/sa/c").is_none());
    }

    #[test]
    fn mistakes_in_the_file_are_refused_with_the_caller_named() {
        let entry = |extra: &str| {
            format!("[[callers]]\nname = \"x\"\nworkspaces = [\"a\"]\noperations = [\"decide\"]\n{extra}")
        };
        let refused = |text: String, needle: &str| {
            let error = format!("{:#}", file(&text).unwrap_err());
            assert!(error.contains(needle), "{error}");
        };
        refused(entry(""), "either token_sha256 or certificate");
        refused(entry("certificate = true\ntoken_sha256 = \"00\"\n"), "either token_sha256 or certificate");
        refused(entry("token_sha256 = \"abc\"\n"), "64 hex digits");
        refused(entry("certificate = true\nrole = \"admin\"\n"), "unknown field");
        refused(entry("certificate = true\n").replace("decide", "write"), "unknown operation `write`");
        refused(entry("certificate = true\n").replace("[\"a\"]", "[\"a*b\"]"), "may only end");
        refused(format!("{}{}", entry("certificate = true\n"), entry("certificate = true\n")), "named twice");
        let twice = format!(
            "[[callers]]\nname = \"a\"\ntoken_sha256 = \"{d}\"\nworkspaces = [\"a\"]\noperations = [\"decide\"]\n\
             [[callers]]\nname = \"b\"\ntoken_sha256 = \"{d}\"\nworkspaces = [\"a\"]\noperations = [\"decide\"]\n",
            d = digest_of("same")
        );
        refused(twice, "same token");
    }
}
