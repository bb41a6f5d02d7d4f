//! Group commit: concurrent callers' one-statement writes share a transaction.
//!
//! Approved writes that are one statement ([`super::one_statement`]) queue
//! here. Committers (`--group-commit`, default
//! [`crate::config::DEFAULT_GROUP_COMMIT`]) take turns: each takes what is
//! queued, up to [`MAX_BATCH`] writes, and sends BEGIN, the statements and
//! COMMIT pipelined on one connection, so the batch costs one round trip and
//! one commit (one WAL flush). Whatever queues while every committer is busy
//! is the next batch; the fewer committers, the larger the batches. A
//! committer never waits on a timer: a lone caller's write goes out at once,
//! as its single statement without BEGIN or COMMIT.
//!
//! Every caller keeps the outcome it would have had alone:
//! - A statement that fails (a key already held, a failing mutation, a
//!   deadlock) aborts the transaction, and PostgreSQL answers the pipelined
//!   COMMIT with a ROLLBACK: nothing of the batch is written. Every caller
//!   of the batch then writes alone ([`Committed::Alone`]) and gets the
//!   answer it would have got without group commit. SAVEPOINTs would keep
//!   the others' writes, but a pipeline cannot roll back to one only when a
//!   statement has failed, and they cost PostgreSQL a third of the gain
//!   (`docs/performance.md`).
//! - A connection lost before COMMIT is answered leaves the batch's outcome
//!   unknown: every caller gets UNAVAILABLE, and its retry with its key
//!   replays or writes again.
//! - Two writes with the same key never share a batch; the second waits for
//!   the next, so a batch cannot fail on itself.
//! - A caller that has gone (its deadline expired) before its batch is sent
//!   is left out of it. Answers leave only after COMMIT.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::EvidenceError;
use super::one_statement::{OneStatementWrite, WriteParams};
use super::returning::MutationResult;
use crate::postgres::Pool;

/// Most writes in one transaction.
pub const MAX_BATCH: usize = 32;

/// What a one-statement write came to: written (`Some`), or its key held by
/// another row (`None`), as [`OneStatementWrite::answer`] says.
pub(super) type Written = Result<Option<(i64, MutationResult)>, EvidenceError>;

/// The queue and its committers.
pub(super) struct GroupCommit {
    queue: mpsc::UnboundedSender<Queued>,
}

/// What became of a queued write.
pub(super) enum Committed {
    /// Its statement's answer, committed (or, alone, failed).
    Done(Written),
    /// Its batch rolled back, for its own failure or another's: write alone,
    /// with the parameters handed back.
    Alone(WriteParams),
}

/// One caller's write, owned, so that nothing sent borrows from a caller
/// that may go away.
struct Queued {
    write: Arc<OneStatementWrite>,
    params: WriteParams,
    /// `(workspace_id, idempotency_key)`, when the call has a key.
    key: Option<(String, String)>,
    reply: oneshot::Sender<Committed>,
}

impl GroupCommit {
    /// Starts `committers` committers on `pool`.
    pub(super) fn start(pool: Pool, committers: usize) -> GroupCommit {
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..committers.max(1) {
            tokio::spawn(commit_batches(pool.clone(), receiver.clone()));
        }
        GroupCommit { queue }
    }

    /// Queues a write and waits for its batch to end.
    pub(super) async fn write(
        &self,
        write: Arc<OneStatementWrite>,
        params: WriteParams,
        key: Option<(String, String)>,
    ) -> Committed {
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(queued)) = self.queue.send(Queued { write, params, key, reply }) {
            return Committed::Alone(queued.params);
        }
        // A committer that ended without answering (the runtime shutting
        // down) may have committed: the outcome is unknown.
        answer.await.unwrap_or_else(|_| {
            Committed::Done(Err(EvidenceError::Unavailable("the group commit ended before answering".into())))
        })
    }
}

/// One committer: takes a batch, commits it, answers, and again.
async fn commit_batches(pool: Pool, queue: Arc<Mutex<mpsc::UnboundedReceiver<Queued>>>) {
    // Writes held back from a batch that already had their key.
    let mut held: VecDeque<Queued> = VecDeque::new();
    loop {
        if held.is_empty() {
            // One idle committer waits on the queue; the others wait for it.
            let mut queue = queue.lock().await;
            match queue.recv().await {
                Some(first) => held.push_back(first),
                None => return,
            }
            take_queued(&mut queue, &mut held);
        } else if let Ok(mut queue) = queue.try_lock() {
            // Never wait for the queue with writes in hand: the committer
            // waiting on it may wait for callers that wait for these.
            take_queued(&mut queue, &mut held);
        }
        let batch = take_batch(&mut held);
        if !batch.is_empty() {
            commit(&pool, batch).await;
        }
    }
}

/// Moves what is queued now into `held`, up to a batch's worth.
fn take_queued(queue: &mut mpsc::UnboundedReceiver<Queued>, held: &mut VecDeque<Queued>) {
    while held.len() < MAX_BATCH
        && let Ok(next) = queue.try_recv()
    {
        held.push_back(next);
    }
}

/// Up to [`MAX_BATCH`] writes from `held`, no key twice, leaving out callers
/// that have gone; the rest stay held, in order.
fn take_batch(held: &mut VecDeque<Queued>) -> Vec<Queued> {
    let mut batch: Vec<Queued> = Vec::with_capacity(held.len().min(MAX_BATCH));
    let mut later = VecDeque::new();
    while let Some(write) = held.pop_front() {
        if write.reply.is_closed() {
            continue;
        }
        let repeated = write.key.is_some() && batch.iter().any(|other| other.key == write.key);
        if repeated || batch.len() == MAX_BATCH {
            later.push_back(write);
        } else {
            batch.push(write);
        }
    }
    *held = later;
    batch
}

/// Whether a statement failed for want of a connection rather than by
/// PostgreSQL's answer: then nothing says whether the batch committed.
fn lost<T>(result: &Result<T, tokio_postgres::Error>) -> bool {
    result.as_ref().is_err_and(|e| e.as_db_error().is_none())
}

/// Sends one batch and answers each of its callers.
async fn commit(pool: &Pool, mut batch: Vec<Queued>) {
    let client = match pool.get().await {
        Ok(client) => client,
        Err(error) => {
            let message = error.to_string();
            for write in batch {
                let _ = write.reply.send(Committed::Done(Err(EvidenceError::Unavailable(message.clone()))));
            }
            return;
        }
    };
    if batch.len() == 1 {
        let write = batch.pop().expect("one");
        let written = write.write.execute(&*client, &write.params).await;
        let _ = write.reply.send(Committed::Done(written));
        return;
    }
    // Prepared first: a prepare is a round trip of its own, which must not
    // fall between BEGIN and COMMIT. (Each connection prepares each mutation once.)
    let mut statements = Vec::with_capacity(batch.len());
    for write in &batch {
        match client.prepare_typed_cached(write.write.sql(), write.write.param_types()).await {
            Ok(statement) => statements.push(statement),
            Err(_) => {
                // Each caller meets the error, if it lasts, on its own.
                send_back(batch);
                return;
            }
        }
    }
    let params: Vec<_> = batch.iter().map(|write| write.params.refs()).collect();
    let queries = statements.iter().zip(&params).map(|(statement, params)| client.query(statement, params));
    let (began, answers, committed) = tokio::join!(
        client.batch_execute("BEGIN"),
        futures_util::future::join_all(queries),
        client.batch_execute("COMMIT")
    );

    if lost(&began) || lost(&committed) || answers.iter().any(lost) {
        // Whether COMMIT was carried out is unknown; the connection is not reused.
        client.discard();
        for write in batch {
            let unknown = EvidenceError::Unavailable("the connection was lost while a group commit ended".into());
            let _ = write.reply.send(Committed::Done(Err(unknown)));
        }
        return;
    }
    if began.is_ok() && (committed.is_err() || answers.iter().any(Result::is_err)) {
        // Rolled back, all of it.
        send_back(batch);
        return;
    }
    // Committed together; or, BEGIN refused, each statement ran and
    // committed on its own: either way each answer is its caller's.
    for (write, answer) in batch.into_iter().zip(answers) {
        let written = write.write.answer(answer);
        let _ = write.reply.send(Committed::Done(written));
    }
}

/// Hands every write of a batch that wrote nothing back to its caller, to
/// write alone.
fn send_back(batch: Vec<Queued>) {
    for Queued { params, reply, .. } in batch {
        let _ = reply.send(Committed::Alone(params));
    }
}
