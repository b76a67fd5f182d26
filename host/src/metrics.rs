//! The Prometheus metrics: one registry for the process, the instruments,
//! and the text exposition `/metrics` serves. Each instrument is recorded
//! at the one place its event happens (the request middleware, the
//! runtime's call seam, the egress checks, the refresh, the sync runner,
//! the provider's answers); label values are bounded sets — route
//! templates, connector ids, model names, outcome codes — never raw paths,
//! integration ids or anything a caller or provider sends.

use std::sync::LazyLock;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    connector: String,
    function: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    connector: String,
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabels {
    connector: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabels {
    connector: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    connector: String,
    model: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordLabels {
    connector: String,
    model: String,
    change: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    connector: String,
    model: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Histograms<RouteLabels>,
    connector_calls: Family<CallLabels, Counter>,
    connector_duration: Histograms<FunctionLabels>,
    sandbox_faults: Family<FaultLabels, Counter>,
    egress_denials: Family<ReasonLabels, Counter>,
    oauth_refreshes: Family<OutcomeLabels, Counter>,
    rate_limit_remaining: Family<ConnectorLabels, Gauge>,
    rate_limited: Family<ConnectorLabels, Counter>,
    sync_runs: Family<SyncLabels, Counter>,
    sync_records: Family<RecordLabels, Counter>,
    sync_last_success: Family<ModelLabels, Gauge>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::default();
    let m = Metrics {
        http_requests: Family::default(),
        http_duration: Family::new_with_constructor(latency),
        connector_calls: Family::default(),
        connector_duration: Family::new_with_constructor(latency),
        sandbox_faults: Family::default(),
        egress_denials: Family::default(),
        oauth_refreshes: Family::default(),
        rate_limit_remaining: Family::default(),
        rate_limited: Family::default(),
        sync_runs: Family::default(),
        sync_records: Family::default(),
        sync_last_success: Family::default(),
        registry: Registry::default(),
    };
    registry.register(
        "gatehouse_http_requests",
        "API requests answered, by method, route template and status",
        m.http_requests.clone(),
    );
    registry.register(
        "gatehouse_http_request_duration_seconds",
        "Time to answer an API request (to the response head), by method and route template",
        m.http_duration.clone(),
    );
    registry.register(
        "gatehouse_connector_calls",
        "Calls into connector sandboxes, by connector, function and outcome (ok, trap, timeout, limit, busy, error)",
        m.connector_calls.clone(),
    );
    registry.register(
        "gatehouse_connector_call_duration_seconds",
        "Duration of connector calls, by connector and function",
        m.connector_duration.clone(),
    );
    registry.register(
        "gatehouse_sandbox_faults",
        "Connector calls stopped by the sandbox: kind trap, timeout or limit (memory, requests, answer size, …)",
        m.sandbox_faults.clone(),
    );
    registry.register(
        "gatehouse_egress_denials",
        "Outbound requests refused by the egress policy, by reason",
        m.egress_denials.clone(),
    );
    registry.register(
        "gatehouse_oauth_refreshes",
        "OAuth access-token refreshes, by outcome (ok, invalid_grant, or the error code)",
        m.oauth_refreshes.clone(),
    );
    registry.register(
        "gatehouse_provider_rate_limit_remaining",
        "The provider's last RateLimit-Remaining header seen, by connector",
        m.rate_limit_remaining.clone(),
    );
    registry.register(
        "gatehouse_provider_rate_limited",
        "Answers 429 Too Many Requests from providers, by connector",
        m.rate_limited.clone(),
    );
    registry.register(
        "gatehouse_sync_runs",
        "Sync runs finished, by connector, model and outcome (completed, failed, paused)",
        m.sync_runs.clone(),
    );
    registry.register(
        "gatehouse_sync_records",
        "Records a sync changed, by connector, model and change (added, updated, deleted)",
        m.sync_records.clone(),
    );
    registry.register(
        "gatehouse_sync_last_success_timestamp_seconds",
        "When a sync run of this connector and model last completed (unix seconds); lag is time() minus this",
        m.sync_last_success.clone(),
    );
    Metrics { registry, ..m }
});

/// The text exposition format (OpenMetrics), as `/metrics` serves it.
pub fn render() -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &METRICS.registry).is_err() {
        out.clear();
    }
    out
}

/// The content type of `render`'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An API request answered. `route` is the route template.
pub fn http_request(method: &str, route: &str, status: u16, seconds: f64) {
    let (method, route, status) = (method.to_string(), route.to_string(), status.to_string());
    METRICS.http_requests.get_or_create(&HttpLabels { method: method.clone(), route: route.clone(), status }).inc();
    METRICS.http_duration.get_or_create(&RouteLabels { method, route }).observe(seconds);
}

/// How a connector call ended, as the sandbox sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    Trap,
    Timeout,
    /// A limit of the host: memory, tables, requests, answer size, log.
    Limit,
    /// No call slot was free.
    Busy,
    /// Any other failure (an answer the host cannot use).
    Error,
}

impl CallOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Trap => "trap",
            Self::Timeout => "timeout",
            Self::Limit => "limit",
            Self::Busy => "busy",
            Self::Error => "error",
        }
    }
}

/// One call into a connector, at the runtime's one call seam.
pub fn connector_call(connector: &str, function: &str, outcome: CallOutcome, seconds: f64) {
    let labels = CallLabels {
        connector: connector.to_string(),
        function: function.to_string(),
        outcome: outcome.as_str().to_string(),
    };
    METRICS.connector_calls.get_or_create(&labels).inc();
    if outcome != CallOutcome::Busy {
        let labels = FunctionLabels { connector: connector.to_string(), function: function.to_string() };
        METRICS.connector_duration.get_or_create(&labels).observe(seconds);
    }
    if matches!(outcome, CallOutcome::Trap | CallOutcome::Timeout | CallOutcome::Limit) {
        let labels = FaultLabels { connector: connector.to_string(), kind: outcome.as_str().to_string() };
        METRICS.sandbox_faults.get_or_create(&labels).inc();
    }
}

/// An outbound request refused by the egress policy. `reason` is one of a
/// fixed set (the kind of address, or the rule that refused it).
pub fn egress_denied(reason: &'static str) {
    METRICS.egress_denials.get_or_create(&ReasonLabels { reason: reason.to_string() }).inc();
}

pub fn oauth_refresh(outcome: &str) {
    METRICS.oauth_refreshes.get_or_create(&OutcomeLabels { outcome: outcome.to_string() }).inc();
}

/// A provider's answer seen by the proxy or a connector's request: its
/// status and rate-limit headers (host-generic names only).
pub fn provider_answer(connector: &str, status: u16, headers: &http::HeaderMap) {
    let labels = ConnectorLabels { connector: connector.to_string() };
    if status == 429 {
        METRICS.rate_limited.get_or_create(&labels).inc();
    }
    let remaining = headers
        .get("ratelimit-remaining")
        .or_else(|| headers.get("x-ratelimit-remaining"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    if let Some(remaining) = remaining {
        METRICS.rate_limit_remaining.get_or_create(&labels).set(remaining);
    }
}

/// A sync run that ended (`completed`, `failed` or `paused`).
pub fn sync_run(connector: &str, model: &str, outcome: &str) {
    let labels =
        SyncLabels { connector: connector.to_string(), model: model.to_string(), outcome: outcome.to_string() };
    METRICS.sync_runs.get_or_create(&labels).inc();
    if outcome == "completed" {
        let labels = ModelLabels { connector: connector.to_string(), model: model.to_string() };
        METRICS.sync_last_success.get_or_create(&labels).set(crate::clock::Timestamp::now().unix());
    }
}

/// Records a sync page changed.
pub fn sync_records(connector: &str, model: &str, added: u64, updated: u64, deleted: u64) {
    for (change, n) in [("added", added), ("updated", updated), ("deleted", deleted)] {
        if n > 0 {
            let labels =
                RecordLabels { connector: connector.to_string(), model: model.to_string(), change: change.to_string() };
            METRICS.sync_records.get_or_create(&labels).inc_by(n);
        }
    }
}
