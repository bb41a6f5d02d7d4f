//! Every setting's default, in one place: the help text, the resolver and
//! the subsystems that have a `Default` all read these.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

// ---- listening and limits
/// A sidecar talks to its own pod: loopback by default.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 50051));
pub const DEFAULT_TLS_RELOAD_MS: u64 = 5_000;
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// An OpenAPI document sent to the authoring routes: the largest published
/// ones (GitHub's) are 13–14 MB.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// Largest answer written, in bytes: a ListEvidence page ends before it
/// (`api/audit.rs`); any other answer over it (a mutation returning millions
/// of rows) is refused with OUT_OF_RANGE rather than held in memory whole.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Longest identifier a request may carry (`workspace_id`, `principal.type`,
/// `principal.id`, `object_type`, `operation`), in bytes. Kernite sets no
/// bound; the longest in its conformance cases is a few dozen bytes. Each is
/// stored in every evidence row and logged with every call.
pub const MAX_IDENTIFIER_BYTES: usize = 1024;
pub const DEFAULT_CONCURRENCY_LIMIT: usize = 1024;
/// Request bytes processed at once (see `api/admission.rs`): four messages of
/// the largest size, each of which takes several times its size to decide and store.
pub const DEFAULT_MAX_REQUEST_BYTES_IN_FLIGHT: usize = 16 * 1024 * 1024;
/// HTTP/2 streams one connection may have open at once (nginx's default):
/// a caller cannot hold more calls, and their memory, on one connection.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 128;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_KEEPALIVE_INTERVAL_MS: u64 = 30_000;
pub const DEFAULT_KEEPALIVE_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_SHUTDOWN_DELAY_MS: u64 = 0;
pub const DEFAULT_HEALTH_SERVICE: &str = "governance.v1.Governance";
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 2_000;

// ---- policies and callers
pub const DEFAULT_POLICY_BUNDLE_POLL_MS: u64 = 1_000;
pub const DEFAULT_CALLERS_POLL_MS: u64 = 1_000;

// ---- the database and the governed write
pub const DEFAULT_POOL_SIZE: usize = 16;
pub const DEFAULT_POOL_WAIT_TIMEOUT_MS: u64 = 2_000;
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 5_000;
/// Group-commit transactions in flight at once (see `evidence/group_commit.rs`):
/// one makes the largest batches, which cost PostgreSQL least per write.
pub const DEFAULT_GROUP_COMMIT: usize = 1;
/// The largest request an evidence row keeps for replay (its canonical JSON):
/// every pooled connection keeps a buffer as large as the largest statement
/// it has sent, so what one row may hold bounds what the pool holds.
pub const DEFAULT_MAX_RECORDED_REQUEST_BYTES: usize = 64 * 1024;
/// Key-name patterns masked anywhere in stored evidence (`evidence/redact.rs`).
pub const DEFAULT_KEY_PATTERNS: &[&str] =
    &["password", "passwd", "secret", "*_secret", "token", "*_token", "api_key", "authorization", "card_number", "cvv"];

// ---- the partitioned layout's upkeep
/// Stripe's lifetime for idempotency keys.
pub const DEFAULT_KEY_LIFETIME: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_MONTHS_AHEAD: u32 = 3;

// ---- the verifiable log
pub const DEFAULT_LOG_INTERVAL_MS: u64 = 1_000;
/// `verify`: the longest a governed transaction may run from its rows' `created_at` to its commit.
pub const DEFAULT_MAX_TRANSACTION_AGE: Duration = Duration::from_secs(120);
/// `verify`: rows not yet sequenced are a discrepancy once older than this.
pub const DEFAULT_MAX_LAG: Duration = Duration::from_secs(60);

// ---- replay
/// How many evidence rows a replay reads per second at most, by default: on
/// the 2-core bench machine, a replay at this pace beside ExecuteWithEvidence
/// at 8 callers took under 5% of its throughput (docs/performance.md, "Replay").
pub const DEFAULT_REPLAY_ROWS_PER_SECOND: u32 = 5_000;

// ---- floors: polling faster than these only burns CPU
pub const MIN_TLS_RELOAD_MS: u64 = 100;
pub const MIN_POLICY_BUNDLE_POLL_MS: u64 = 10;
pub const MIN_CALLERS_POLL_MS: u64 = 10;
pub const MIN_LOG_INTERVAL_MS: u64 = 10;
