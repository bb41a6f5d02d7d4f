//! Logs and traces: logs on stderr (`RUST_LOG` filters them), and, when the
//! standard `OTEL_*` variables ask for it, every call's span exported over
//! OTLP/gRPC, continuing the caller's W3C `traceparent`.
//!
//! Export is off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `OTEL_TRACES_EXPORTER=otlp`) is
//! set, and `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it
//! off. The SDK itself reads the endpoint, `*_HEADERS`, `*_TIMEOUT`,
//! `*_COMPRESSION`, `*_INSECURE`, the sampler (`OTEL_TRACES_SAMPLER`,
//! `_ARG`; parent-based always-on by default), `OTEL_RESOURCE_ATTRIBUTES`
//! and the batch settings (`OTEL_BSP_*`). Export never blocks or fails a
//! call: finished spans go into a bounded queue that a thread of the SDK's
//! own drains, and are dropped (and the drop logged) when it is full.

use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Key, KeyValue};
use opentelemetry_otlp::{SpanExporter, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::{EnvResourceDetector, ResourceDetector as _};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use tracing::span;
use tracing::subscriber::Interest;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::util::SubscriberInitExt as _;

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `service.name` when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
pub const DEFAULT_SERVICE_NAME: &str = "governance-sidecar";

/// How long the exporter may take to send what is queued at exit.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The trace exporter, to flush at exit; nothing when export is off.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Logs only: for the commands that serve nothing.
pub fn init_logs(format: LogFormat) {
    tracing_subscriber::registry().with(log_layer(format)).init();
}

/// Logs, and trace export if the environment asks for it. Call inside the
/// Tokio runtime (the exporter's gRPC channel lives there). A configuration
/// that cannot work is logged, and export stays off: the sidecar still serves.
pub fn init(format: LogFormat) -> Telemetry {
    let provider = tracer_provider();
    // Each layer filters for itself: RUST_LOG=warn must not silence exported
    // spans, and the exporter's own transport must never make spans.
    let traces = provider.as_ref().ok().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(DEFAULT_SERVICE_NAME))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(
                [
                    "h2",
                    "hyper",
                    "hyper_util",
                    "tonic",
                    "tower",
                    "opentelemetry",
                    "opentelemetry_sdk",
                    "opentelemetry_otlp",
                ]
                .into_iter()
                .fold(Targets::new().with_default(LevelFilter::INFO), |targets, target| {
                    targets.with_target(target, LevelFilter::OFF)
                }),
            )
    });
    tracing_subscriber::registry().with(log_layer(format)).with(traces).init();
    match &provider {
        Ok(_) => tracing::info!("OpenTelemetry trace export is on"),
        Err(Off::NotAsked) => {}
        Err(Off::Unusable(why)) => tracing::warn!(%why, "OpenTelemetry trace export is off"),
    }
    Telemetry { provider: provider.ok() }
}

impl Telemetry {
    /// Sends what is queued (waiting at most a few seconds). Call from a
    /// thread that is not a runtime worker while the runtime still exists.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        {
            tracing::warn!(%error, "OpenTelemetry export did not finish");
        }
    }
}

/// Makes `span` continue the caller's trace: call right after creating it,
/// before it is first entered. A missing or malformed `traceparent` starts a
/// new trace; with export off this does nothing.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent {
        let parent = TraceContextPropagator::new().extract(&Traceparent(traceparent));
        let _ = span.set_parent(parent);
    }
}

/// The caller's `traceparent` header as the propagator reads it.
struct Traceparent<'a>(&'a str);

impl Extractor for Traceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

fn log_layer<S>(format: LogFormat) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(std::io::stderr).boxed()
        }
    };
    layer.with_filter(WithoutBoundValues(filter))
}

/// tokio-postgres logs every statement's bound parameters at debug level
/// under this target: request values, workspaces, principals, the response.
/// No log line may carry them, so it is never printed below info.
const BOUND_VALUES_TARGET: &str = "tokio_postgres::query";

/// `RUST_LOG`'s filter, except that [`BOUND_VALUES_TARGET`] below info is
/// never enabled, whatever the directives say (a span-scoped `[rpc]=debug`,
/// a field filter, the target by name). It wraps the filter rather than
/// sitting beside it: a second filter combined with `and` makes every
/// statically disabled callsite dynamic, which cost 16 µs per Evaluate.
struct WithoutBoundValues(EnvFilter);

fn is_bound_values(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.target() == BOUND_VALUES_TARGET && *metadata.level() > tracing::Level::INFO
}

impl<S> Filter<S> for WithoutBoundValues {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, cx: &Context<'_, S>) -> bool {
        !is_bound_values(metadata) && Filter::<S>::enabled(&self.0, metadata, cx)
    }

    fn callsite_enabled(&self, metadata: &'static tracing::Metadata<'static>) -> Interest {
        if is_bound_values(metadata) { Interest::never() } else { Filter::<S>::callsite_enabled(&self.0, metadata) }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Filter::<S>::max_level_hint(&self.0)
    }

    fn on_new_span(&self, attributes: &span::Attributes<'_>, id: &span::Id, cx: Context<'_, S>) {
        Filter::<S>::on_new_span(&self.0, attributes, id, cx);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, cx: Context<'_, S>) {
        Filter::<S>::on_record(&self.0, id, values, cx);
    }

    fn on_enter(&self, id: &span::Id, cx: Context<'_, S>) {
        Filter::<S>::on_enter(&self.0, id, cx);
    }

    fn on_exit(&self, id: &span::Id, cx: Context<'_, S>) {
        Filter::<S>::on_exit(&self.0, id, cx);
    }

    fn on_close(&self, id: span::Id, cx: Context<'_, S>) {
        Filter::<S>::on_close(&self.0, id, cx);
    }
}

/// Why there is no exporter.
enum Off {
    /// The environment does not ask for export.
    NotAsked,
    /// It asks for something this sidecar cannot do.
    Unusable(String),
}

fn variable(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|value| value.trim().to_owned()).filter(|value| !value.is_empty())
}

fn endpoint() -> Option<String> {
    variable("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| variable("OTEL_EXPORTER_OTLP_ENDPOINT"))
}

fn tracer_provider() -> Result<SdkTracerProvider, Off> {
    if variable("OTEL_SDK_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true")) {
        return Err(Off::NotAsked);
    }
    let exporters = variable("OTEL_TRACES_EXPORTER").map(|list| list.to_ascii_lowercase());
    match &exporters {
        Some(list) if list.split(',').any(|name| name.trim() == "none") => return Err(Off::NotAsked),
        Some(list) if !list.split(',').any(|name| name.trim() == "otlp") => {
            return Err(Off::Unusable(format!("OTEL_TRACES_EXPORTER={list}: only otlp is supported")));
        }
        None if endpoint().is_none() => return Err(Off::NotAsked),
        _ => {}
    }
    let protocol = variable("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| variable("OTEL_EXPORTER_OTLP_PROTOCOL"));
    if let Some(protocol) = protocol.filter(|protocol| !protocol.eq_ignore_ascii_case("grpc")) {
        return Err(Off::Unusable(format!("OTLP protocol {protocol:?}: only grpc is supported")));
    }
    let mut exporter = SpanExporter::builder().with_tonic();
    if endpoint_is_https() {
        // The SDK's own TLS default trusts no root at all; native roots are
        // asked for only here, since without any they fail even plain http.
        exporter = exporter.with_tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots());
    }
    let exporter = exporter.build().map_err(|error| Off::Unusable(format!("the OTLP exporter: {error}")))?;
    Ok(SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_resource(resource())
        .build())
}

/// Whether the exporter will speak TLS, by the SDK's own rule: an `https`
/// scheme, or no scheme and no `*_INSECURE=true`.
fn endpoint_is_https() -> bool {
    let Some(endpoint) = endpoint() else { return false };
    match endpoint.split_once("://") {
        Some((scheme, _)) => scheme.eq_ignore_ascii_case("https"),
        None => !variable("OTEL_EXPORTER_OTLP_TRACES_INSECURE")
            .or_else(|| variable("OTEL_EXPORTER_OTLP_INSECURE"))
            .is_some_and(|value| value.eq_ignore_ascii_case("true")),
    }
}

/// `service.name` from `OTEL_SERVICE_NAME`, else from
/// `OTEL_RESOURCE_ATTRIBUTES`, else [`DEFAULT_SERVICE_NAME`], as the spec
/// orders them (the SDK alone lets the attributes win).
fn resource() -> Resource {
    let name = variable("OTEL_SERVICE_NAME")
        .or_else(|| {
            EnvResourceDetector::new().detect().get(&Key::from_static_str("service.name")).map(|v| v.to_string())
        })
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    Resource::builder()
        .with_service_name(name)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}
