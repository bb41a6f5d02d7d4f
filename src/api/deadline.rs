//! The caller's deadline (`grpc-timeout`), enforced by the handlers themselves.
//!
//! tonic's timeout layer polls the handler before its timer, so a call that
//! arrives with its deadline already spent is still answered when the handler
//! is quick. Handlers therefore check: Evaluate before it answers,
//! ExecuteWithEvidence before it starts to write (a write that begins is then
//! bounded by the statement timeout and rolled back if cancelled).

use std::time::{Duration, Instant};

use tonic::metadata::MetadataMap;

use super::error::ApiError;

pub(crate) struct Deadline {
    expires: Option<Instant>,
}

impl Deadline {
    /// Measured from now, the handler's start: an upper bound of the caller's
    /// deadline, since the request already spent some time getting here.
    pub fn from_metadata(metadata: &MetadataMap) -> Deadline {
        let timeout = metadata.get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse_timeout);
        Deadline { expires: timeout.map(|t| Instant::now() + t) }
    }

    /// No deadline (HTTP calls carry none).
    pub fn none() -> Deadline {
        Deadline { expires: None }
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
        let deadline = Deadline::from_metadata(&metadata);
        std::thread::sleep(Duration::from_micros(10));
        assert!(matches!(deadline.check(), Err(ApiError::DeadlinePassed)));
        assert!(Deadline::from_metadata(&MetadataMap::new()).check().is_ok());
    }
}
