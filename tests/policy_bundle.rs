//! Operator policy bundles: they decide like Kernite given the same policies,
//! reload from disk the way a ConfigMap changes, refuse broken edits, and
//! refuse request-supplied policies unless the operator allows them.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::ServerSettings;
use governance_sidecar::decision::json::{self, Layout};
use governance_sidecar::decision::{self, Map, Value};
use governance_sidecar::policies::{self, PolicyBundle, PolicySource};
use governance_sidecar::proto::{Decision, EvaluateRequest, evaluate_request::Body};
use tonic::Code;

fn corpus_cases() -> Vec<Value> {
    let path = std::env::var_os("GOVERNANCE_CONFORMANCE_CORPUS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/kernite-0.1.6-execute.jsonl")
    });
    std::fs::read_to_string(path).unwrap().lines().map(|line| json::parse(line).unwrap()).collect()
}

/// A bundle saying what `policy_context` said, if a bundle can say it: selected
/// policies (each with its own key) for the request's scope, governed.
fn bundle_for(request: &Map) -> Option<String> {
    let context = request.get("policy_context")?.as_object()?;
    if context.keys().any(|k| k != "selected_policies" && k != "governed") {
        return None;
    }
    if !matches!(context.get("governed"), None | Some(Value::Bool(true))) {
        return None;
    }
    let policies = context.get("selected_policies")?.as_sequence()?;
    let mut keys = Vec::new();
    for policy in policies {
        let key = policy.as_object()?.get("policy_key")?.as_str()?;
        if key.trim().is_empty() || key.trim() != key || keys.contains(&key) {
            return None;
        }
        keys.push(key);
    }
    // Kernite: governed if it says so, or if any policy is selected.
    let governed = context.get("governed") == Some(&Value::Bool(true)) || !keys.is_empty();
    let (object_type, operation) = (request.get("object_type")?.as_str()?, request.get("operation")?.as_str()?);
    let scope = format!(r#""object_type": {}, "operation": {}"#, quoted(object_type), quoted(operation));
    let entries: Vec<String> =
        keys.iter().map(|key| format!(r#"{{{scope}, "governed": true, "policy_key": {}}}"#, quoted(key))).collect();
    let governed_scopes = if governed { format!("{{{scope}}}") } else { String::new() };
    Some(format!(
        r#"{{"schema_version": "kernite.policy.bundle.v1", "policies": {}, "governed_scopes": [{governed_scopes}], "operation_map": [{}]}}"#,
        json::to_string(&Value::Array(policies.to_vec()), Layout::Response),
        entries.join(", ")
    ))
}

fn quoted(s: &str) -> String {
    json::to_string(&Value::str(s), Layout::Response)
}

#[test]
fn a_bundle_decides_like_kernite_given_the_same_policies_in_the_request() {
    let mut compared = 0;
    for case in corpus_cases() {
        let case = case.as_object().unwrap();
        if case["status"] != Value::Int(200) {
            continue;
        }
        let mut request = json::parse(case["request_json"].as_str().unwrap()).unwrap();
        let Some(bundle) = request.as_object().and_then(bundle_for) else { continue };
        let bundle = PolicyBundle::parse(bundle.as_bytes()).unwrap_or_else(|e| panic!("{:?}: {e}", case["name"]));
        // The same request without its policies, decided under the bundle's.
        request.as_object_mut().unwrap().shift_remove("policy_context");
        let key = case["idempotency_key"].as_str();
        let validation = decision::validate(request, key).unwrap().unwrap();
        let scope = bundle.resolve(&validation.request.object_type, &validation.request.operation);
        let record = decision::evaluate_under(&validation.request, scope.context).unwrap();
        assert_eq!(
            json::to_string(&record.to_value(), Layout::Canonical),
            json::to_string(&case["response"], Layout::Canonical),
            "{:?}",
            case["name"]
        );
        compared += 1;
    }
    println!("{compared} corpus decisions re-made under a bundle, all equal to Kernite's");
    assert!(compared >= 100, "only {compared} corpus cases could be expressed as a bundle");
}

/// A directory laid out as kubelet lays out a ConfigMap volume: the file is a
/// symlink through `..data`, and an update swaps `..data` to a new directory.
struct ConfigMapVolume {
    dir: PathBuf,
    generation: usize,
}

impl ConfigMapVolume {
    fn new(name: &str, bundle: &str) -> ConfigMapVolume {
        let dir = common::scratch(&format!("bundle-{name}"));
        let mut volume = ConfigMapVolume { dir, generation: 0 };
        volume.update(bundle);
        std::os::unix::fs::symlink("..data/policy-bundle.json", volume.path()).unwrap();
        volume
    }

    fn path(&self) -> PathBuf {
        self.dir.join("policy-bundle.json")
    }

    /// Writes a new generation and swaps `..data` to it atomically (rename).
    fn update(&mut self, bundle: &str) {
        self.generation += 1;
        let generation = format!("..{}", self.generation);
        std::fs::create_dir(self.dir.join(&generation)).unwrap();
        std::fs::write(self.dir.join(&generation).join("policy-bundle.json"), bundle).unwrap();
        let staging = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&generation, &staging).unwrap();
        std::fs::rename(&staging, self.dir.join("..data")).unwrap();
    }
}

fn limit_bundle(max: i64) -> String {
    format!(
        r#"{{"schema_version": "kernite.policy.bundle.v1",
            "policies": [{{"policy_key": "invoice_limit", "policy_version": {max}, "effect": "allow",
                          "rules": [{{"rule_key": "max_amount", "rule_definition": {{"type": "max_value", "field": "amount", "max": {max}}}}}]}}],
            "governed_scopes": [{{"object_type": "invoice", "operation": "create"}}],
            "operation_map": [{{"object_type": "invoice", "operation": "create", "governed": true, "policy_key": "invoice_limit", "mode": "enforce"}}]}}"#
    )
}

fn evaluate(amount: i64, policy_context: Option<&str>) -> EvaluateRequest {
    let context = policy_context.map(|c| format!(r#", "policy_context": {c}"#)).unwrap_or_default();
    EvaluateRequest {
        body: Some(Body::RequestJson(format!(
            r#"{{"workspace_id": "ws_1", "principal": {{"type": "user", "id": "usr_42"}}, "object_type": "invoice", "operation": "create", "payload": {{"amount": {amount}}}{context}}}"#
        ))),
        idempotency_key: None,
        answer_form: 0,
    }
}

async fn server_with(path: &Path, poll: Duration, allow_request_policies: bool) -> (TestServer, Arc<PolicySource>) {
    let policies = Arc::new(policies::load(path).unwrap());
    Arc::clone(&policies).watch(poll);
    let api = GovernanceApi::new().with_policies(Arc::clone(&policies), allow_request_policies);
    (TestServer::start(ServerSettings::default(), api).await, policies)
}

#[tokio::test]
async fn an_edited_bundle_is_picked_up_without_restart_and_a_broken_edit_is_refused() {
    let mut volume = ConfigMapVolume::new("reload", &limit_bundle(1000));
    let (server, policies) = server_with(&volume.path(), Duration::from_millis(50), false).await;
    let mut client = server.client().await;
    let decide = |response: tonic::Response<governance_sidecar::proto::EvaluateResponse>| response.into_inner();
    let first = decide(client.evaluate(evaluate(500, None)).await.unwrap());
    assert_eq!(first.decision(), Decision::Approved);
    assert_eq!(first.policy.unwrap().policy_version, Some(1000));

    // The ConfigMap changes: max 100. Picked up within a few polls.
    volume.update(&limit_bundle(100));
    let started = Instant::now();
    loop {
        let response = decide(client.evaluate(evaluate(500, None)).await.unwrap());
        if response.decision() == Decision::Denied {
            assert_eq!(response.reason_codes, ["max_amount_denied"]);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the new bundle was not picked up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("bundle swap took effect after {:?}", started.elapsed());
    assert_eq!(policies.reload_counts(), (1, 0));

    // A broken edit (a policy naming no rules array) is refused; max 100 stays.
    volume.update(&limit_bundle(100).replace(r#""rules": ["#, r#""rules": {"oops": ["#).replace("]}],", "]}}],"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(policies.reload_counts(), (1, 1), "counted once, not at every poll");
    assert_eq!(decide(client.evaluate(evaluate(500, None)).await.unwrap()).decision(), Decision::Denied);
    assert_eq!(decide(client.evaluate(evaluate(50, None)).await.unwrap()).decision(), Decision::Approved);

    // Mended: picked up again.
    volume.update(&limit_bundle(10_000));
    let started = Instant::now();
    while decide(client.evaluate(evaluate(5000, None)).await.unwrap()).decision() != Decision::Approved {
        assert!(started.elapsed() < Duration::from_secs(5), "the mended bundle was not picked up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(policies.reload_counts(), (2, 1));
}

#[tokio::test]
async fn a_request_with_its_own_policies_is_refused_in_bundle_mode() {
    let volume = ConfigMapVolume::new("refuse", &limit_bundle(1000));
    let own = r#"{"selected_policies": [{"policy_key": "lenient", "rules": []}]}"#;
    let (server, _) = server_with(&volume.path(), Duration::from_secs(60), false).await;
    let refused = server.client().await.evaluate(evaluate(5000, Some(own))).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("policy bundle"), "{}", refused.message());
    // `null` is Kernite's "no policy_context": the bundle decides.
    let null = server.client().await.evaluate(evaluate(5000, Some("null"))).await.unwrap().into_inner();
    assert_eq!(null.decision(), Decision::Denied);

    // Allowed by the operator: the request's own policies decide.
    let (server, _) = server_with(&volume.path(), Duration::from_secs(60), true).await;
    let mut client = server.client().await;
    let own_decision = client.evaluate(evaluate(5000, Some(own))).await.unwrap().into_inner();
    assert_eq!(own_decision.decision(), Decision::Approved);
    let bundle_decision = client.evaluate(evaluate(5000, None)).await.unwrap().into_inner();
    assert_eq!(bundle_decision.decision(), Decision::Denied, "without its own, the bundle decides");
}

#[test]
fn a_bundle_that_does_not_load_stops_start_up() {
    let volume = ConfigMapVolume::new("startup", "{\"schema_version\": \"kernite.policy.bundle.v1\", \"policies\": 3}");
    let error = policies::load(&volume.path()).err().expect("an invalid bundle must not load").to_string();
    assert!(error.contains("policies: must be an array"), "{error}");
}

#[tokio::test]
async fn reloads_are_counted_in_the_metrics() {
    use governance_sidecar::metrics::metrics;
    let reloads = |result: &str| {
        let text = metrics().render();
        let needle = format!("governance_policy_bundle_reloads_total{{result=\"{result}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(needle.as_str())).map_or(0, |v| v.parse::<u64>().unwrap())
    };
    let (successes, failures) = (reloads("success"), reloads("failure"));
    let mut volume = ConfigMapVolume::new("metrics", &limit_bundle(1000));
    let source = policies::load(&volume.path()).unwrap();
    volume.update(&limit_bundle(10));
    source.reload();
    volume.update("{not json");
    source.reload();
    source.reload();
    // Other tests in this binary reload too: at least ours moved each counter.
    assert!(reloads("success") > successes && reloads("failure") > failures);
}
