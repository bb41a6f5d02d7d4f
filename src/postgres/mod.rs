//! Reaching PostgreSQL: where it is ([`DatabaseTarget`]), the [`Pool`] every
//! call borrows from, and single connections outside it (migrations, the
//! log's sequencer, upkeep, `verify`).
//!
//! Where and how to connect follows libpq's conventions ([`libpq`] for the
//! URL, the `PG*` variables and `.pgpass`; [`tls`] for `sslmode`), so that
//! the URL that works with psql works here. [`failure`] says which database
//! failures are worth a retry; [`local_postgres`] starts a private server
//! for `dev` and the tests.

pub mod failure;
pub mod libpq;
pub mod local_postgres;
mod pool;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

use deadpool_postgres::Connect;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use libpq::{ConnectionTarget, ProcessEnvironment};
pub use pool::{Lease, Pool};
use tls::SslMode;

/// Which PostgreSQL, and how its certificate is checked: one value wherever it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseTarget {
    /// A libpq connection string: a `postgresql://` URL or `key=value` pairs,
    /// completed from the `PG*` variables and the password file.
    pub url: String,
    /// PEM root certificate(s) to verify the server with: libpq's `sslrootcert`,
    /// which the URL's own `sslrootcert` overrides.
    pub ca_file: Option<PathBuf>,
}

impl DatabaseTarget {
    /// A target whose certificate is checked as libpq would without a CA file.
    pub fn new(url: impl Into<String>) -> DatabaseTarget {
        DatabaseTarget { url: url.into(), ca_file: None }
    }

    /// One connection outside the pool, made exactly as the pool makes its connections.
    pub async fn connect_once(&self) -> anyhow::Result<Client> {
        let target = libpq::resolve(&self.url, self.ca_file.as_deref(), &ProcessEnvironment)?;
        let (client, _connection) = Connector::new(&target)?.connect(&target.config).await?;
        Ok(client)
    }
}

/// How to reach PostgreSQL, and the pool's bounds.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub target: DatabaseTarget,
    pub pool_size: usize,
    /// How long a call waits for a pooled connection (and to open one).
    pub wait_timeout: Duration,
    /// Longest any statement may run; a mutation over it is cancelled and rolled back.
    pub statement_timeout: Duration,
}

/// Opens connections with libpq's `sslmode` behaviour, which tokio-postgres
/// alone has only in part: `allow` tries plaintext first and TLS if that is
/// refused; `prefer` falls back to plaintext when the TLS handshake fails,
/// not only when the server offers no TLS.
struct Connector {
    mode: SslMode,
    tls: MakeRustlsConnect,
}

impl Connector {
    fn new(target: &ConnectionTarget) -> anyhow::Result<Connector> {
        Ok(Connector { mode: target.tls.mode, tls: target.tls.connector()? })
    }

    async fn attempt(
        &self,
        config: &Config,
        transport: tokio_postgres::config::SslMode,
    ) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
        let mut config = config.clone();
        config.ssl_mode(transport);
        let (client, connection) = config.connect(self.tls.clone()).await?;
        let task = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "database connection ended");
            }
        });
        Ok((client, task))
    }
}

/// A connection being opened, as deadpool's [`Connect`] returns it.
type Connecting<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>> + Send + 'a>>;

impl Connect for Connector {
    fn connect(&self, config: &Config) -> Connecting<'_> {
        use tokio_postgres::config::SslMode as Transport;
        let config = config.clone();
        Box::pin(async move {
            match self.mode {
                SslMode::Allow => match self.attempt(&config, Transport::Disable).await {
                    Err(error) if error.as_db_error().is_some() => self.attempt(&config, Transport::Require).await,
                    connected => connected,
                },
                SslMode::Prefer => match self.attempt(&config, Transport::Prefer).await {
                    Err(error) if error.as_db_error().is_none() => self.attempt(&config, Transport::Disable).await,
                    connected => connected,
                },
                mode => self.attempt(&config, mode.transport()).await,
            }
        })
    }
}
