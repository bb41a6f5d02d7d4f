//! Wires the server: Governance, health and reflection (v1 and v1alpha) over
//! gRPC, the HTTP/JSON routes on the same port, optional TLS ([`tls`]), the
//! health-only probe listener, limits, keepalive and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;

pub mod tls;

use crate::api::GovernanceApi;
use crate::api::browsers::HostGate;
use crate::config::ServerSettings;
use crate::evidence::EvidenceStore;
use crate::log::sequencer::LogState;
use crate::proto::governance_server::SERVICE_NAME;

/// Accepted connections with Nagle's algorithm off: small gRPC frames must
/// leave at once, or each call waits ~40 ms for a delayed ACK. (tonic's own
/// `tcp_nodelay` setting applies only to listeners it binds itself.)
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// HTTP/2's own default flow-control window of a stream.
const STREAM_WINDOW: u32 = 65_535;

/// Health names: "" is the server as a whole.
const OVERALL: &str = "";

/// Serves until `shutdown` resolves, then reports NOT_SERVING, waits the
/// configured delay, stops accepting and lets in-flight calls finish.
pub async fn serve(
    listener: TcpListener,
    settings: &ServerSettings,
    api: GovernanceApi,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::Serving).await;
    let database_monitor = api.evidence().map(|store| tokio::spawn(monitor_database(store, health.clone())));
    let log_monitor = api.log_state().map(|log| tokio::spawn(monitor_log(log, health.clone())));

    let delay = settings.limits.shutdown_delay;
    let drain = async move {
        shutdown.await;
        for monitor in [database_monitor, log_monitor].into_iter().flatten() {
            monitor.abort();
        }
        tracing::info!(delay_ms = delay.as_millis() as u64, "shutting down: health is NOT_SERVING, draining");
        set_health(&health, ServingStatus::NotServing).await;
        tokio::time::sleep(delay).await;
    };

    // Probes keep their answers (NOT_SERVING while draining) until the main
    // listener has stopped.
    let (stop_probes, probes_stopped) = tokio::sync::oneshot::channel::<()>();
    let probes = match settings.listen.health_address {
        Some(address) => Some(serve_probes(address, health_service.clone(), probes_stopped).await?),
        None => None,
    };
    let address = listener.local_addr()?;
    if check_exposure(address, settings)? {
        tracing::warn!(%address, "--insecure-listen: serving callers that prove nothing on a non-loopback listener");
    }
    if !address.ip().is_loopback() && settings.callers.is_some() && settings.listen.tls.is_none() {
        tracing::warn!(%address, "bearer tokens cross the network in cleartext: give --tls-cert and --tls-key");
    }
    let hosts = HostGate::for_listener(address.ip(), &settings.listen.allowed_hosts);
    let routes = routes(api, health_service, settings, hosts)?;
    serve_routes(listener, settings, routes, drain).await?;
    let _ = stop_probes.send(());
    if let Some(probes) = probes {
        probes.await??;
    }
    tracing::info!("stopped");
    Ok(())
}

/// gRPC and the Kernite-compatible HTTP/JSON routes share the port: HTTP/2
/// requests with a gRPC content type reach the services, the rest the routes.
fn routes(
    api: GovernanceApi,
    health: HealthServer<impl Health>,
    settings: &ServerSettings,
    hosts: HostGate,
) -> anyhow::Result<axum::Router> {
    let limits = &settings.limits;
    let api = api
        .with_admission(limits.concurrency_limit, limits.max_request_bytes_in_flight, limits.max_message_bytes)
        .with_request_timeout(limits.request_timeout);
    let governance = api.clone().grpc_service(limits.max_message_bytes, hosts.clone());
    let authorization = api.clone().authorization_service(limits.max_message_bytes, hosts.clone());
    let mut grpc = tonic::service::Routes::builder();
    grpc.add_service(health).add_service(governance).add_service(authorization);
    if settings.listen.reflection {
        grpc.add_service(reflection().build_v1()?).add_service(reflection().build_v1alpha()?);
    }
    let body_limits =
        crate::api::http::BodyLimits { request: limits.max_message_bytes, document: limits.max_document_bytes };
    let http = crate::api::http::router(api, body_limits, hosts, settings.listen.metrics);
    Ok(grpc.routes().into_axum_router().merge(http).fallback(crate::api::http::not_found))
}

/// A listener beyond loopback serves only callers that prove who they are
/// (a callers file, or mutual TLS), unless the operator says otherwise with
/// `--insecure-listen`. Whether it does so: [`serve`] logs a warning then.
pub fn check_exposure(address: SocketAddr, settings: &ServerSettings) -> anyhow::Result<bool> {
    let authenticated = settings.callers.is_some() || settings.listen.mutual_tls();
    if address.ip().is_loopback() || authenticated {
        return Ok(false);
    }
    if !settings.listen.insecure {
        anyhow::bail!(
            "refusing to listen on {address} without authentication: any caller that reaches it could act for \
             any workspace. Give --callers (bearer tokens), --tls-client-ca (mutual TLS), a loopback address, \
             or --insecure-listen to accept the risk"
        );
    }
    Ok(true)
}

/// The main listener, with TLS when configured, until `drain` resolves.
async fn serve_routes(
    listener: TcpListener,
    settings: &ServerSettings,
    routes: axum::Router,
    drain: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = &settings.limits;
    // No `.timeout()`: tonic's would answer CANCELLED; the API's common path
    // answers DEADLINE_EXCEEDED at the same bound (`api/deadline.rs`).
    let server = Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(limits.max_concurrent_streams)
        // A call waiting for admission leaves its message unread (`api/admission.rs`):
        // the connection's window holds every stream's, so that waiting streams can
        // never take the window the admitted ones need to finish their messages.
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(STREAM_WINDOW.saturating_mul(limits.max_concurrent_streams))
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .add_routes(routes.into());
    let address = listener.local_addr()?;
    match &settings.listen.tls {
        None => {
            tracing::info!(%address, tls = false, "serving gRPC and HTTP");
            server.serve_with_incoming_shutdown(incoming(listener), drain).await?;
        }
        Some(tls_settings) => {
            let tls = Arc::new(tls::ServerTls::load(tls_settings.files.clone())?);
            let reloader = Arc::clone(&tls).watch(tls_settings.reload);
            let files = &tls_settings.files;
            let (cert, mutual) = (files.cert.display(), files.client_ca.is_some());
            tracing::info!(%address, tls = true, %cert, mutual, "serving gRPC and HTTP");
            let served = server.serve_with_incoming_shutdown(tls.incoming(listener), drain).await;
            reloader.abort();
            served?;
        }
    }
    Ok(())
}

/// The health-only listener for kubelet's probes, until `stopped` resolves.
async fn serve_probes(
    address: SocketAddr,
    health: HealthServer<impl Health>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>> {
    let listener = TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "serving gRPC health probes");
    Ok(tokio::spawn(Server::builder().add_service(health).serve_with_incoming_shutdown(incoming(listener), async {
        let _ = stopped.await;
    })))
}

/// Reflection knows our services, health, and the `google.rpc` error
/// details, so that grpcurl can show a BadRequest instead of raw bytes.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

/// How often the database is checked for the health of the Governance
/// service while it answers, and while it does not.
const DATABASE_CHECK_INTERVAL: Duration = Duration::from_millis(500);
const DATABASE_RECHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Keeps `governance.v1.Governance` NOT_SERVING while Postgres does not
/// answer, and SERVING again once it does. A call that finds no writable
/// database brings the next check forward, so that health follows what
/// calls meet within milliseconds, not at the next tick; while NOT_SERVING
/// the checks are closer together. The overall status stays SERVING:
/// Evaluate needs no database.
async fn monitor_database(store: Arc<EvidenceStore>, health: HealthReporter) {
    let mut serving = true;
    loop {
        let answers = tokio::time::timeout(Duration::from_secs(2), store.ping()).await.unwrap_or(false);
        if answers != serving {
            serving = answers;
            if serving {
                tracing::info!("database is back: Governance is SERVING");
                health.set_service_status(SERVICE_NAME, ServingStatus::Serving).await;
            } else {
                tracing::warn!("database does not answer: Governance is NOT_SERVING");
                health.set_service_status(SERVICE_NAME, ServingStatus::NotServing).await;
            }
        }
        tokio::time::sleep(DATABASE_RECHECK_INTERVAL).await;
        if serving {
            tokio::select! {
                () = tokio::time::sleep(DATABASE_CHECK_INTERVAL - DATABASE_RECHECK_INTERVAL) => {}
                // A storm of failing calls is one check per recheck interval.
                () = store.calls_failing() => {}
            }
        }
    }
}

/// The health name of the verifiable log: SERVING while evidence reaches
/// signed checkpoints within [`crate::log::sequencer::MAX_HEALTHY_LAG`] (whichever sidecar sequences).
pub const LOG_HEALTH_SERVICE: &str = "governance.v1.Governance/log";

/// Keeps [`LOG_HEALTH_SERVICE`] up to date with the sequencer's reports.
async fn monitor_log(log: watch::Receiver<LogState>, health: HealthReporter) {
    let mut serving = None;
    let mut ticks = tokio::time::interval(DATABASE_CHECK_INTERVAL);
    loop {
        ticks.tick().await;
        let state = *log.borrow();
        let keeping_up = state.keeping_up();
        if serving != Some(keeping_up) {
            serving = Some(keeping_up);
            let (status, lag_seconds) =
                (if keeping_up { ServingStatus::Serving } else { ServingStatus::NotServing }, state.lag_seconds);
            tracing::info!(?status, leader = state.leader, lag_seconds, "verifiable log health");
            health.set_service_status(LOG_HEALTH_SERVICE, status).await;
        }
    }
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status(OVERALL, status).await;
    health.set_service_status(SERVICE_NAME, status).await;
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed by this call,
/// not when the future is first polled, so a signal arriving during start-up
/// is not lost (nor does it kill the process).
pub fn termination_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    }
}

pub use tonic_health::pb::health_check_response::ServingStatus as ReportedStatus;

/// Asks a sidecar's health service about `service`, as a probe would.
pub async fn health_check(address: SocketAddr, service: String, timeout: Duration) -> anyhow::Result<ReportedStatus> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let ask = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?.connect().await?;
        let response = HealthClient::new(channel).check(HealthCheckRequest { service }).await?;
        anyhow::Ok(response.into_inner().status())
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {address} within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt as _;

    use super::*;

    #[test]
    fn a_listener_beyond_loopback_needs_authentication_or_the_operators_word() {
        let everywhere: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        let mut settings = ServerSettings::default();
        assert!(!check_exposure("127.0.0.1:50051".parse().unwrap(), &settings).unwrap());
        assert!(!check_exposure("[::1]:50051".parse().unwrap(), &settings).unwrap());
        let refused = check_exposure(everywhere, &settings).unwrap_err().to_string();
        assert!(refused.contains("--insecure-listen"), "{refused}");
        settings.listen.insecure = true;
        assert!(check_exposure(everywhere, &settings).unwrap(), "served, and said to be insecure");
        settings.listen.insecure = false;
        settings.callers = Some(crate::config::CallersSettings { file: "callers.toml".into(), poll: Duration::ZERO });
        assert!(!check_exposure(everywhere, &settings).unwrap());
    }

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut incoming = incoming(listener);
        let _client = tokio::net::TcpStream::connect(address).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap(), "small gRPC frames would wait for delayed ACKs");
    }
}
