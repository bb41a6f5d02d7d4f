//! Admission: how many calls, and how many request bytes, are processed at
//! once, decided before a request's message is read.
//!
//! A call is admitted with a permit of the concurrency limit
//! (`--concurrency-limit`) and then a share of the request-bytes budget
//! (`--max-request-bytes-in-flight`) the size of its message. The budget is
//! what bounds memory: a request is parsed into a tree, copied into its
//! evidence row and written out as jsonb, several times its own size, and a
//! count of calls says nothing of their size. Both are taken before the
//! message is read, so a call still waiting holds no more of its message than
//! HTTP/2's flow-control window lets the client send: a gRPC call's size is
//! the length prefix of its message (`grpc_message_length`), an HTTP call's
//! its `Content-Length`. Both queues are fair, so a large request waits its
//! turn rather than being overtaken for ever, and every wait is within the
//! call's deadline.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use http_body::Frame;
use http_body_util::{BodyExt as _, BodyStream, StreamBody};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::server::NamedService;

use super::browsers::{self, HostGate};
use super::deadline::Deadline;
use super::error::ApiError;
use super::gate::Identification;
use crate::access::Gate;

/// The budget is counted in KiB, and no call takes less than one.
const UNIT: usize = 1024;

pub(crate) struct Admission {
    calls: Arc<Semaphore>,
    kib: Arc<Semaphore>,
    /// The budget, in KiB: no call takes more, so the largest message still runs.
    budget_kib: usize,
    /// A message declaring more is refused by tonic without being read.
    max_message_bytes: usize,
}

/// A call's admission: released when its answer is ready.
pub(crate) struct Admitted {
    _call: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

impl Admission {
    /// `calls` at once, holding at most `bytes` of requests (at least one
    /// largest message, `max_message_bytes`).
    pub(crate) fn new(calls: usize, bytes: usize, max_message_bytes: usize) -> Admission {
        let budget_kib = bytes.max(max_message_bytes).div_ceil(UNIT).clamp(1, u32::MAX as usize);
        Admission {
            calls: Arc::new(Semaphore::new(calls.clamp(1, Semaphore::MAX_PERMITS))),
            kib: Arc::new(Semaphore::new(budget_kib)),
            budget_kib,
            max_message_bytes,
        }
    }

    /// Waits for a permit, then for `request_bytes` of the budget (a call
    /// declaring more than the budget takes all of it). The semaphores are
    /// never closed: calls still queued at shutdown are served while the
    /// server drains.
    pub(crate) async fn admit(&self, request_bytes: usize) -> Admitted {
        let call = self.call().await;
        self.bytes(call, request_bytes).await
    }

    async fn call(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.calls).acquire_owned().await.expect("admission is never closed")
    }

    async fn bytes(&self, call: OwnedSemaphorePermit, request_bytes: usize) -> Admitted {
        let kib = request_bytes.div_ceil(UNIT).clamp(1, self.budget_kib) as u32;
        let bytes = Arc::clone(&self.kib).acquire_many_owned(kib).await.expect("admission is never closed");
        Admitted { _call: call, _bytes: bytes }
    }
}

/// The Governance gRPC service behind its admission. Health and reflection
/// are not behind it, so probes answer even when every permit is taken.
#[derive(Clone)]
pub(crate) struct AdmittedGrpc<S> {
    inner: S,
    admission: Arc<Admission>,
    /// The host names the listener answers (`browsers.rs`).
    hosts: HostGate,
    /// Who may call (`gate.rs`): a call is identified before it is admitted.
    gate: Gate,
    /// The server's bound on any call, beside the caller's `grpc-timeout`.
    request_timeout: Duration,
}

impl<S> AdmittedGrpc<S> {
    pub(crate) fn new(
        inner: S,
        admission: Arc<Admission>,
        hosts: HostGate,
        gate: Gate,
        request_timeout: Duration,
    ) -> AdmittedGrpc<S> {
        AdmittedGrpc { inner, admission, hosts, gate, request_timeout }
    }
}

impl<S: NamedService> NamedService for AdmittedGrpc<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower_service::Service<http::Request<Body>> for AdmittedGrpc<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The clone is the one made ready; this one stays for the next call.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let admission = Arc::clone(&self.admission);
        let deadline = Deadline::from_headers(request.headers(), self.request_timeout);
        let refused = browsers::grpc_refusal(&request, &self.hosts);
        let identification = Identification::of(&self.gate, &request);
        // A caller its grants exclude from the method is refused before admission too.
        let operation = super::grpc::operation_of(request.uri().path());
        let granted = identification.0.as_ref().is_ok_and(|caller| operation.is_none_or(|op| caller.may(op).is_ok()));
        Box::pin(async move {
            if let Some(refused) = refused {
                return Ok(refused);
            }
            if !granted {
                // Refused by the common path, with its span and count; its message is never read.
                let (mut parts, _unread) = request.into_parts();
                parts.extensions.insert(identification);
                return inner.call(http::Request::from_parts(parts, empty_message())).await;
            }
            let mut request = request;
            request.extensions_mut().insert(identification);
            let admitted = deadline.bound(admit_grpc(&admission, request)).await;
            let answered = match admitted {
                Ok((_admitted, mut request)) => {
                    // The handler keeps this deadline, measured on arrival, not on admission.
                    request.extensions_mut().insert(deadline);
                    // Bounded too: a client that drips its message would hold its admission.
                    deadline.bound(async { Ok(inner.call(request).await) }).await
                }
                Err(error) => Err(error),
            };
            answered.unwrap_or_else(|error| Ok(tonic::Status::from(error).into_http()))
        })
    }
}

/// Admits a gRPC call by the size of its message, read from the message's
/// length prefix before the message itself.
async fn admit_grpc(
    admission: &Admission,
    request: http::Request<Body>,
) -> Result<(Option<Admitted>, http::Request<Body>), ApiError> {
    let call = admission.call().await;
    let (parts, mut body) = request.into_parts();
    let mut frames: Vec<Frame<Bytes>> = Vec::new();
    let mut prefix = Vec::with_capacity(PREFIX_BYTES);
    while prefix.len() < PREFIX_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    if data.is_empty() {
                        continue;
                    }
                    prefix.extend_from_slice(&data[..data.len().min(PREFIX_BYTES - prefix.len())]);
                }
                frames.push(frame);
            }
            Some(Err(_)) => return Err(ApiError::BodyUnreadable),
            None => break,
        }
    }
    let length = grpc_message_length(&prefix);
    if length > admission.max_message_bytes {
        // tonic refuses it as soon as it reads the prefix: no need to wait for the budget.
        drop(call);
        return Ok((None, http::Request::from_parts(parts, rechain(frames, body))));
    }
    let admitted = admission.bytes(call, length).await;
    Ok((Some(admitted), http::Request::from_parts(parts, rechain(frames, body))))
}

/// A gRPC body of one empty message, in place of one that is not read.
fn empty_message() -> Body {
    Body::new(http_body_util::Full::new(Bytes::from_static(&[0; PREFIX_BYTES])))
}

/// The frames read so far, then the rest, as one body again.
fn rechain(frames: Vec<Frame<Bytes>>, rest: Body) -> Body {
    let read = futures_util::stream::iter(frames.into_iter().map(Ok::<_, tonic::Status>));
    Body::new(StreamBody::new(read.chain(BodyStream::new(rest))))
}

/// A gRPC message is framed as a compression flag and its length, four bytes big-endian.
const PREFIX_BYTES: usize = 5;

/// The length a message's prefix declares; 0 if the body ended before one.
fn grpc_message_length(prefix: &[u8]) -> usize {
    match prefix {
        [_, a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]) as usize,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_wait_while_the_budget_is_spent_and_a_large_one_still_fits_alone() {
        let admission = Admission::new(100, 8 * UNIT, 8 * UNIT);
        let first = admission.admit(6 * UNIT).await;
        let waits = tokio::time::timeout(Duration::from_millis(50), admission.admit(4 * UNIT)).await;
        assert!(waits.is_err(), "6 KiB + 4 KiB is over an 8 KiB budget");
        drop(first);
        let _larger_than_the_budget = admission.admit(100 * UNIT).await;
    }

    #[tokio::test]
    async fn calls_wait_for_a_permit_whatever_their_size() {
        let admission = Admission::new(1, 1 << 20, 1 << 20);
        let _first = admission.admit(1).await;
        assert!(tokio::time::timeout(Duration::from_millis(50), admission.admit(1)).await.is_err());
    }

    #[test]
    fn the_length_prefix_is_read_big_endian_after_the_flag() {
        assert_eq!(grpc_message_length(&[0, 0, 0x40, 0, 0]), 4 << 20);
        assert_eq!(grpc_message_length(&[0, 0, 0, 0, 7, 99]), 7);
        assert_eq!(grpc_message_length(&[0, 0]), 0);
    }
}
