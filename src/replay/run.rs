//! The replay's driver: one read-only snapshot, pages of rows read while
//! the previous page is judged, verdicts handed to the caller page by page.
//!
//! A replay reads at most so many rows per second ([`Pace`]): on a shared
//! host any CPU it takes, even CPU nothing else seemed to want, slows the
//! writes beside it (docs/performance.md, "Replay").
//!
//! Judging runs on a thread of its own in the kernel's idle scheduling class
//! (it runs only when no other thread wants the CPU), so that on a shared
//! host the writes being governed come first: the reading side is paced by
//! it (two pages in flight at most), and with it the PostgreSQL backend that
//! serves the pages. The command line puts its reading thread in that class
//! too.

use std::ops::ControlFlow;

use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::judge::{Judge, Verdict};
use super::report::Tally;
use super::selection::{RecordedRow, Selection};
use crate::evidence::EvidenceError;

/// Pages read ahead of the judge, and judged pages not yet taken.
const PAGES_IN_FLIGHT: usize = 2;

/// How fast a replay may read: at most so many rows per second, or as fast
/// as the judge takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    RowsPerSecond(std::num::NonZeroU32),
    Unlimited,
}

impl Pace {
    /// `0` is unlimited.
    pub fn rows_per_second(rows: u32) -> Pace {
        std::num::NonZeroU32::new(rows).map_or(Pace::Unlimited, Pace::RowsPerSecond)
    }
}

impl Default for Pace {
    fn default() -> Pace {
        Pace::rows_per_second(crate::defaults::DEFAULT_REPLAY_ROWS_PER_SECOND)
    }
}

/// Keeps the reading to its pace: after each page, waits until the rows read
/// so far are due.
struct Pacer {
    pace: Pace,
    started: tokio::time::Instant,
    rows: u64,
}

impl Pacer {
    fn new(pace: Pace) -> Pacer {
        Pacer { pace, started: tokio::time::Instant::now(), rows: 0 }
    }

    async fn read(&mut self, rows: usize) {
        self.rows += rows as u64;
        if let Pace::RowsPerSecond(per_second) = self.pace {
            let due = std::time::Duration::from_secs_f64(self.rows as f64 / f64::from(per_second.get()));
            tokio::time::sleep_until(self.started + due).await;
        }
    }
}

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
    /// The sample's size; `None` for a whole selection, which is not counted
    /// first (counting is a scan of its own, at no pace).
    pub total: Option<u64>,
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
    pace: Pace,
    judge: Judge,
    pages: &mut impl Pages,
) -> Result<Tally, ReplayError> {
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
    let replayed = replay_in_snapshot(client, selection, pace, judge, pages).await;
    let ended = client.batch_execute(if replayed.is_ok() { "COMMIT" } else { "ROLLBACK" }).await;
    let tally = replayed?;
    ended?;
    Ok(tally)
}

async fn replay_in_snapshot(
    client: &Client,
    selection: &Selection,
    pace: Pace,
    judge: Judge,
    pages: &mut impl Pages,
) -> Result<Tally, ReplayError> {
    let mut reading = selection.start(client).await?;
    let total = reading.sample_size();
    let (page_sender, page_receiver) = mpsc::channel::<Vec<RecordedRow>>(PAGES_IN_FLIGHT);
    let (judged_sender, mut judged_receiver) = mpsc::channel::<Vec<Judged>>(PAGES_IN_FLIGHT);
    let judging = std::thread::Builder::new()
        .name("replay-judge".into())
        .spawn(move || judge_pages(judge, page_receiver, judged_sender))
        .map_err(|e| ReplayError::Judge(e.to_string()))?;

    let read = async move {
        let mut pacer = Pacer::new(pace);
        loop {
            let rows = reading.next_page(selection, client).await?;
            let count = rows.len();
            if count == 0 || page_sender.send(rows).await.is_err() {
                break;
            }
            pacer.read(count).await;
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
    yield_this_thread_to_other_work();
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

/// Puts the calling thread alone in Linux's `SCHED_IDLE` class: it runs
/// only on CPU no other thread wants, and yields it the moment one does
/// (sched(7)). On Linux the policy, like the nice value, is a thread's own.
/// Where the class is refused, the lowest nice value (19) instead.
#[allow(unsafe_code)]
pub fn yield_this_thread_to_other_work() {
    // SAFETY: sched_setscheduler reads the parameter struct it is given
    // (ours, on the stack) and gettid and setpriority take plain integers;
    // a failure leaves the thread as it was.
    unsafe {
        let parameter = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &parameter) != 0 {
            libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
        }
    }
}
