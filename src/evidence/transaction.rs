//! A transaction on a pooled connection whose statements can be pipelined.
//!
//! tokio-postgres's own `Transaction` borrows its client for every call, so
//! its statements cannot be in flight together, nor its COMMIT sent with the
//! last statement. This one issues `BEGIN`/`COMMIT`/`ROLLBACK` itself. Its
//! connection is marked busy from BEGIN until COMMIT or ROLLBACK has been
//! answered: if it is dropped before (the call's deadline passed, or it
//! failed mid-way), the running statement is cancelled and the connection
//! closed once its backend has rolled back, never handed to the next caller
//! inside an open transaction ([`crate::postgres::Lease`]).

use deadpool_postgres::Object;
use tokio_postgres::Statement;
use tokio_postgres::types::ToSql;

use crate::postgres::Lease;

pub struct Transaction {
    client: Option<Lease>,
}

impl Transaction {
    /// Guards `client` before anything is sent; the caller sends [`Self::begin`]
    /// pipelined with its first statements. On a connection fresh from the pool
    /// BEGIN can only fail if the connection does, and then those fail too.
    pub fn open(client: Lease) -> Transaction {
        client.mark_busy();
        Transaction { client: Some(client) }
    }

    /// The BEGIN to send first, in a `join!` with the first statements.
    pub async fn begin(&self) -> Result<(), tokio_postgres::Error> {
        self.client().batch_execute("BEGIN").await
    }

    pub fn client(&self) -> &Object {
        self.client.as_ref().expect("a transaction is open until it finishes")
    }

    /// Executes a last statement with COMMIT sent beside it. A COMMIT after a
    /// failed statement rolls back, so an error here means nothing was committed.
    pub async fn commit_with_execute(
        mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let client = self.client.take().expect("open");
        // Both run to completion; the statement's error, if any, is the cause
        // (a COMMIT after it only rolls back).
        let (executed, committed) = tokio::join!(client.execute(statement, params), client.batch_execute("COMMIT"));
        match executed.and_then(|rows| committed.map(|()| rows)) {
            Ok(rows) => {
                // Dropping the connection now returns it to the pool.
                client.mark_idle();
                Ok(rows)
            }
            Err(error) => {
                // Back in the guard: rolled back for reuse, or discarded on drop.
                self.client = Some(client);
                if !error.is_closed() {
                    let _ = self.rollback().await;
                }
                Err(error)
            }
        }
    }

    /// Ends the transaction with ROLLBACK, returning the connection for reuse.
    pub async fn rollback(mut self) -> Result<Lease, tokio_postgres::Error> {
        let client = self.client.take().expect("open");
        match client.batch_execute("ROLLBACK").await {
            Ok(()) => {
                client.mark_idle();
                Ok(client)
            }
            Err(error) => {
                self.client = Some(client);
                Err(error)
            }
        }
    }
}
