//! The pool every call borrows its connection from: deadpool's, with two
//! promises deadpool alone does not keep.
//!
//! - **Never more backends than the pool.** A call dropped while its
//!   statement runs (its deadline passed) leaves a backend that keeps
//!   working, blocked on a lock say, until `statement_timeout`. Closing the
//!   socket does not stop it, and the pool would open another connection in
//!   its place: 43 backends on a pool of 16 in one test, the cluster's whole
//!   `max_connections` in another. Instead a [`Lease`] dropped while busy
//!   cancels its statement (the protocol's cancel request) and stays lent,
//!   counting against the pool, until its backend has answered; only then is
//!   the connection closed.
//! - **Nothing kept on a server that turned read-only.** [`Pool::retire`]
//!   closes every connection opened before it: idle ones at once, busy ones
//!   (the group committer's too) as they come back, so that the next call
//!   connects afresh and finds the writable server.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{HookError, Manager, ManagerConfig, Object, PoolError, QueueMode, RecyclingMethod, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::libpq::{self, ProcessEnvironment};
use super::{Connector, DatabaseSettings, DatabaseTarget};

/// How long a cancel request may take to reach the server.
const CANCEL_WITHIN: Duration = Duration::from_secs(5);

/// Beyond `statement_timeout`, how long an abandoned connection's ROLLBACK is waited for.
const ABANDON_MARGIN: Duration = Duration::from_secs(5);

/// The evidence store's connections.
#[derive(Clone)]
pub struct Pool {
    connections: deadpool_postgres::Pool,
    /// How cancel requests reach the server: as the connections do.
    tls: MakeRustlsConnect,
    retirement: Arc<Retirement>,
    /// How long an abandoned connection is waited for: its statement ends by
    /// `statement_timeout` even if the cancel request is lost.
    abandon_within: Duration,
}

/// Connections opened before [`Pool::retire`] was last called are not lent again.
struct Retirement {
    epoch: Instant,
    /// Nanoseconds from `epoch` to the last retirement; 0 for none.
    retired_at: AtomicU64,
}

impl Retirement {
    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    fn is_retired(&self, created: Instant) -> bool {
        self.nanos(created) <= self.retired_at.load(Ordering::Acquire)
    }
}

impl Pool {
    /// Connections are opened on demand; each session carries the statement
    /// timeout, so it costs no round trip per transaction, and no parallel
    /// query: every statement the sidecar sends reads or writes a few rows,
    /// and on the partitioned layout PostgreSQL would otherwise start workers
    /// for a lookup across months (10 ms of a 14 ms GetEvidence by ctx_id at
    /// 1 M rows, in the growth bench). The most recently returned connection
    /// is handed out first (LIFO): a few callers keep a few backends busy and
    /// warm instead of rotating through the whole pool, which cost PostgreSQL
    /// up to a third more CPU per write on a pool of 32 in our runs
    /// (`docs/performance.md`).
    pub fn new(settings: &DatabaseSettings) -> anyhow::Result<Pool> {
        let DatabaseTarget { url, ca_file } = &settings.target;
        let mut target = libpq::resolve(url, ca_file.as_deref(), &ProcessEnvironment)?;
        let session = format!(
            "-c statement_timeout={} -c max_parallel_workers_per_gather=0",
            settings.statement_timeout.as_millis()
        );
        let options = match target.config.get_options() {
            Some(options) => format!("{options} {session}"),
            None => session,
        };
        target.config.options(options);
        let connector = Connector::new(&target)?;
        let tls = connector.tls.clone();
        let retirement = Arc::new(Retirement { epoch: Instant::now(), retired_at: AtomicU64::new(0) });
        let retired = Arc::clone(&retirement);
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let connections =
            deadpool_postgres::Pool::builder(Manager::from_connect(target.config, connector, manager_config))
                .max_size(settings.pool_size)
                .queue_mode(QueueMode::Lifo)
                .wait_timeout(Some(settings.wait_timeout))
                .create_timeout(Some(settings.wait_timeout))
                .recycle_timeout(Some(settings.wait_timeout))
                .pre_recycle(deadpool_postgres::Hook::sync_fn(move |_, metrics| {
                    if retired.is_retired(metrics.created) {
                        Err(HookError::message("opened before the pool's connections were retired"))
                    } else {
                        Ok(())
                    }
                }))
                .runtime(Runtime::Tokio1)
                .build()?;
        let abandon_within = settings.statement_timeout + ABANDON_MARGIN;
        Ok(Pool { connections, tls, retirement, abandon_within })
    }

    /// A connection for one call: an idle one, or a new one within the pool's size.
    pub async fn get(&self) -> Result<Lease, PoolError> {
        let client = self.connections.get().await?;
        let (tls, abandon_within) = (self.tls.clone(), self.abandon_within);
        Ok(Lease { client: Some(client), busy: AtomicBool::new(false), tls, abandon_within })
    }

    /// Open connections, idle ones, and calls waiting for one.
    pub fn status(&self) -> (usize, usize, usize) {
        let status = self.connections.status();
        (status.size, status.available, status.waiting)
    }

    /// Closes every connection opened until now: the idle ones here, the
    /// busy ones when their calls give them back. After a failover they lead
    /// to the old primary.
    pub fn retire(&self, why: &str) {
        let now = self.retirement.nanos(Instant::now());
        self.retirement.retired_at.fetch_max(now, Ordering::AcqRel);
        let before = self.connections.status().size;
        self.connections.retain(|_, metrics| !self.retirement.is_retired(metrics.created));
        let closed = before.saturating_sub(self.connections.status().size);
        tracing::warn!(why, closed, busy = before - closed, "retired the pool's connections");
    }
}

/// A pooled connection lent to one call. While it is marked busy (a
/// statement or transaction in flight), dropping it abandons it: see the
/// module's notes.
pub struct Lease {
    client: Option<Object>,
    busy: AtomicBool,
    tls: MakeRustlsConnect,
    abandon_within: Duration,
}

impl Lease {
    /// Runs `work` with the connection marked busy: if the call is dropped
    /// before `work` ends, its statement is cancelled.
    pub async fn guard<T>(&self, work: impl Future<Output = T>) -> T {
        self.mark_busy();
        let output = work.await;
        self.mark_idle();
        output
    }

    /// From now until [`Self::mark_idle`], dropping the lease abandons it (a
    /// transaction marks its whole span).
    pub fn mark_busy(&self) {
        self.busy.store(true, Ordering::Relaxed);
    }

    /// The backend is idle, outside any transaction: the connection may be reused.
    pub fn mark_idle(&self) {
        self.busy.store(false, Ordering::Relaxed);
    }

    /// The connection as tokio-postgres's own client, for code written
    /// against its `GenericClient`.
    pub fn client(&self) -> &tokio_postgres::Client {
        self
    }

    /// Closes a connection known to be broken, without a cancel request.
    pub fn discard(mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

impl Deref for Lease {
    type Target = Object;

    fn deref(&self) -> &Object {
        self.client.as_ref().expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        if !*self.busy.get_mut() {
            return; // back to the pool
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !client.is_closed() => {
                runtime.spawn(abandon(client, self.tls.clone(), self.abandon_within));
            }
            _ => drop(Object::take(client)),
        }
    }
}

/// Cancels the statement of a connection whose call went away, waits until
/// its backend answers again, and closes it. Until then the connection
/// still counts against the pool, so that no new one takes its place while
/// the old backend works on.
async fn abandon(client: Object, tls: MakeRustlsConnect, within: Duration) {
    let token = client.cancel_token();
    if !matches!(tokio::time::timeout(CANCEL_WITHIN, token.cancel_query(tls)).await, Ok(Ok(()))) {
        tracing::warn!("could not send a cancel request for an abandoned call's statement");
    }
    // ROLLBACK queues behind the statement; its answer means the backend is
    // idle (and outside any transaction). The statement ends by
    // statement_timeout even if the cancel request was lost; a server that
    // answers nothing at all (gone from the network) is given up on after that.
    let rolled_back = tokio::time::timeout(within, client.batch_execute("ROLLBACK")).await;
    tracing::info!(
        idle = matches!(rolled_back, Ok(Ok(()))),
        "closed the connection of a call that ended before its statement (cancel request sent)"
    );
    // Closed, not reused: a cancel request that arrives late must not stop
    // the next caller's statement.
    drop(Object::take(client));
}
