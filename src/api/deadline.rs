//! A call's deadline: the caller's (`grpc-timeout`), bounded by the server's
//! `--request-timeout-ms` (the only one an HTTP call has).
//!
//! The common path of both transports runs the whole call (its admission
//! and the handler) within it ([`Deadline::bound`]), and a call still
//! running when it passes is answered DEADLINE_EXCEEDED (HTTP 504): tonic's
//! own timeout layer would answer CANCELLED, which clients do not retry.
//! Handlers also check it where answering late would be wrong: Evaluate
//! before it answers, ExecuteWithEvidence before it starts to write. A write
//! cut short by the deadline has rolled back, or committed just before: with
//! an idempotency key, a retry replays what happened.

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::metadata::MetadataMap;

use super::error::ApiError;

/// How long before the caller's deadline the call is answered, at most.
const MARGIN: Duration = Duration::from_millis(50);

/// Copied into a gRPC request's extensions by its admission, so that the
/// handler keeps the deadline measured when the call arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    expires: Option<Instant>,
}

impl Deadline {
    /// Measured from now, the call's arrival, and never later than `limit`
    /// from now. It falls a little before the caller's own: tonic's layers,
    /// the server's and the caller's, cancel the call at the caller's
    /// deadline, so the answer must be on its way before then (a tenth of
    /// the time, at most [`MARGIN`]).
    pub fn from_metadata(metadata: &MetadataMap, limit: Duration) -> Deadline {
        Deadline::from_grpc_timeout(metadata.get("grpc-timeout").and_then(|v| v.to_str().ok()), limit)
    }

    /// As [`Self::from_metadata`], from the request's headers.
    pub fn from_headers(headers: &http::HeaderMap, limit: Duration) -> Deadline {
        Deadline::from_grpc_timeout(headers.get("grpc-timeout").and_then(|v| v.to_str().ok()), limit)
    }

    fn from_grpc_timeout(header: Option<&str>, limit: Duration) -> Deadline {
        let timeout = header.and_then(parse_timeout);
        let before_the_callers = |timeout: Duration| timeout - (timeout / 10).min(MARGIN);
        Deadline::within(timeout.map_or(limit, |timeout| before_the_callers(timeout).min(limit)))
    }

    /// `limit` from now (HTTP calls carry no deadline of their own).
    pub fn within(limit: Duration) -> Deadline {
        Deadline { expires: Instant::now().checked_add(limit) }
    }

    /// Runs `work` until it ends or the deadline passes, whichever is first.
    pub async fn bound<T>(&self, work: impl Future<Output = Result<T, ApiError>>) -> Result<T, ApiError> {
        match self.expires {
            Some(expires) => {
                tokio::time::timeout_at(expires.into(), work).await.unwrap_or(Err(ApiError::DeadlinePassed))
            }
            None => work.await,
        }
    }

    /// Whether the caller is still waiting.
    pub fn check(&self) -> Result<(), ApiError> {
        match self.expires {
            Some(expires) if Instant::now() >= expires => Err(ApiError::DeadlinePassed),
            _ => Ok(()),
        }
    }
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n), per the gRPC HTTP/2 spec.
fn parse_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_per_the_spec() {
        assert_eq!(parse_timeout("1n"), Some(Duration::from_nanos(1)));
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout("99999999S"), Some(Duration::from_secs(99_999_999)));
        for bad in ["", "m", "123456789S", "10x", "-1S", "1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_spent_deadline_is_refused_and_an_absent_one_never_is() {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", "1n".parse().unwrap());
        let deadline = Deadline::from_metadata(&metadata, Duration::from_secs(30));
        std::thread::sleep(Duration::from_micros(10));
        assert!(matches!(deadline.check(), Err(ApiError::DeadlinePassed)));
        assert!(Deadline::from_metadata(&MetadataMap::new(), Duration::from_secs(30)).check().is_ok());
    }

    #[tokio::test]
    async fn work_still_running_when_the_deadline_passes_is_answered_deadline_exceeded() {
        let deadline = Deadline::within(Duration::from_millis(20));
        let slow = deadline.bound(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, ApiError>(())
        });
        assert!(matches!(slow.await, Err(ApiError::DeadlinePassed)));
        let ample = Deadline::within(Duration::from_secs(5));
        assert_eq!(ample.bound(async { Ok::<_, ApiError>(7) }).await.unwrap(), 7);
    }
}
