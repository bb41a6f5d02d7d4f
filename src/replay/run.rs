//! The replay's driver: one read-only snapshot, pages of rows read while
//! the previous page is judged, verdicts handed to the caller page by page.
//!
//! Judging runs on a thread of its own at the lowest CPU priority, so that
//! on a shared host the writes being governed come first: the reading side
//! is paced by it (two pages in flight at most), and with it the PostgreSQL
//! backend that serves the pages.

use std::ops::ControlFlow;

use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::judge::{Judge, Verdict};
use super::report::Tally;
use super::selection::{PAGE_ROWS, RecordedRow, Selection};
use crate::evidence::EvidenceError;

/// Pages read ahead of the judge, and judged pages not yet taken.
const PAGES_IN_FLIGHT: usize = 2;

/// A row and what the candidate makes of it.
#[derive(Debug, Clone)]
pub struct Judged {
    pub row: RecordedRow,
    pub verdict: Verdict,
}

/// How far a replay has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    /// The selection's rows (the sample's size, when sampled).
    pub total: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Database(#[from] EvidenceError),
    #[error("the replay's judging thread failed: {0}")]
    Judge(String),
}

impl From<tokio_postgres::Error> for ReplayError {
    fn from(error: tokio_postgres::Error) -> ReplayError {
        ReplayError::Database(error.into())
    }
}

/// Where judged pages go: the command line's printer, the gRPC stream.
pub trait Pages: Send {
    /// Takes one judged page; `Break` stops the replay (the reader has gone).
    fn take(&mut self, page: &[Judged], progress: Progress) -> impl Future<Output = ControlFlow<()>> + Send;
}

/// Replays `selection` under the judge's candidate, handing each judged
/// page to `pages` (which may stop the replay); returns the tally of what
/// was judged. Reads on one `REPEATABLE READ READ ONLY` snapshot.
pub async fn replay(
    client: &Client,
    selection: &Selection,
    judge: Judge,
    pages: &mut impl Pages,
) -> Result<Tally, ReplayError> {
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
    let replayed = replay_in_snapshot(client, selection, judge, pages).await;
    let ended = client.batch_execute(if replayed.is_ok() { "COMMIT" } else { "ROLLBACK" }).await;
    let tally = replayed?;
    ended?;
    Ok(tally)
}

async fn replay_in_snapshot(
    client: &Client,
    selection: &Selection,
    judge: Judge,
    pages: &mut impl Pages,
) -> Result<Tally, ReplayError> {
    let sample = match selection.sample {
        Some(size) => Some(selection.sample_ids(client, size).await?),
        None => None,
    };
    let total = match &sample {
        Some(ids) => ids.len() as u64,
        None => selection.count(client).await?,
    };
    let (page_sender, page_receiver) = mpsc::channel::<Vec<RecordedRow>>(PAGES_IN_FLIGHT);
    let (judged_sender, mut judged_receiver) = mpsc::channel::<Vec<Judged>>(PAGES_IN_FLIGHT);
    let judging = std::thread::Builder::new()
        .name("replay-judge".into())
        .spawn(move || judge_pages(judge, page_receiver, judged_sender))
        .map_err(|e| ReplayError::Judge(e.to_string()))?;

    let read = async move {
        match &sample {
            Some(ids) => {
                for chunk in ids.chunks(PAGE_ROWS as usize) {
                    let rows = selection.rows_of(client, chunk).await?;
                    if page_sender.send(rows).await.is_err() {
                        break;
                    }
                }
            }
            None => {
                let mut after = i64::MIN;
                loop {
                    let rows = selection.page_after(client, after).await?;
                    let Some(last) = rows.last() else { break };
                    after = last.id;
                    if page_sender.send(rows).await.is_err() {
                        break;
                    }
                }
            }
        }
        Ok::<_, ReplayError>(())
    };
    let hand_over = async {
        let mut tally = Tally::default();
        let mut done = 0;
        while let Some(page) = judged_receiver.recv().await {
            for judged in &page {
                tally.add(&judged.row, &judged.verdict);
            }
            done += page.len() as u64;
            if pages.take(&page, Progress { done, total }).await.is_break() {
                break;
            }
        }
        // Stops the judge, and through it the reading, if they are not done.
        drop(judged_receiver);
        tally
    };
    let (read, tally) = tokio::join!(read, hand_over);
    let judged = tokio::task::spawn_blocking(move || judging.join()).await;
    read?;
    match judged {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(ReplayError::Judge("it panicked".into())),
        Err(error) => return Err(ReplayError::Judge(error.to_string())),
    }
    Ok(tally)
}

/// The judging thread: pages in, verdicts out, until either side closes.
fn judge_pages(mut judge: Judge, mut pages: mpsc::Receiver<Vec<RecordedRow>>, judged: mpsc::Sender<Vec<Judged>>) {
    lower_this_threads_priority();
    while let Some(rows) = pages.blocking_recv() {
        let page = rows
            .into_iter()
            .map(|row| {
                let verdict = judge.judge(&row);
                Judged { row, verdict }
            })
            .collect();
        if judged.blocking_send(page).is_err() {
            return;
        }
    }
}

/// The lowest CPU priority (nice 19) for the calling thread alone: on
/// Linux a thread's nice value is its own (setpriority(2), NOTES).
#[allow(unsafe_code)]
fn lower_this_threads_priority() {
    // SAFETY: gettid and setpriority take and return plain integers and
    // touch no memory of ours; a failure leaves the priority as it was.
    unsafe {
        let thread = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, thread as libc::id_t, 19);
    }
}
