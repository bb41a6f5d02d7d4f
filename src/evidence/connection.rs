//! Reaching PostgreSQL: the settings, the pool every call borrows from, and
//! single connections outside it (migrations, the example schema).
//!
//! TLS is used whenever the URL's `sslmode` is not `disable` ([`super::tls`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;

use super::tls;

/// How to reach Postgres.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub pool_size: usize,
    /// How long a call waits for a pooled connection (and to open one).
    pub wait_timeout: Duration,
    /// Longest any statement may run; a mutation over it is cancelled and rolled back.
    pub statement_timeout: Duration,
    /// PEM file of the CA that signs the server's certificate, for `sslmode=require`
    /// (and stricter); the system's roots are used without it.
    pub ca_file: Option<PathBuf>,
}

/// The pool of the evidence store. Connections are opened on demand; each
/// session carries the statement timeout, so it costs no round trip per
/// transaction.
pub(super) fn pool(settings: &DatabaseSettings) -> anyhow::Result<Pool> {
    let mut config: tokio_postgres::Config = settings.url.parse()?;
    config.options(format!("-c statement_timeout={}", settings.statement_timeout.as_millis()));
    let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
    let manager = match config.get_ssl_mode() {
        SslMode::Disable => Manager::from_config(config, NoTls, manager_config),
        _ => Manager::from_config(config, tls::connector(settings.ca_file.as_deref())?, manager_config),
    };
    Ok(Pool::builder(manager)
        .max_size(settings.pool_size)
        .wait_timeout(Some(settings.wait_timeout))
        .create_timeout(Some(settings.wait_timeout))
        .recycle_timeout(Some(settings.wait_timeout))
        .runtime(Runtime::Tokio1)
        .build()?)
}

/// One connection outside the pool (for migrations), with TLS whenever the
/// URL's `sslmode` asks for it, exactly as the pool connects.
pub async fn connect_once(url: &str, ca_file: Option<&Path>) -> anyhow::Result<tokio_postgres::Client> {
    let config: tokio_postgres::Config = url.parse()?;
    let client = match config.get_ssl_mode() {
        SslMode::Disable => {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(connection);
            client
        }
        _ => {
            let (client, connection) = config.connect(tls::connector(ca_file)?).await?;
            tokio::spawn(connection);
            client
        }
    };
    Ok(client)
}
