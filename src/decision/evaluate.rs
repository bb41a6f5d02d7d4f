//! Kernite's `evaluate_execute`: from a validated request to a decision.
//!
//! The order is Kernite's: a denying guardrail decides alone; failing
//! validation rules deny; otherwise every selected policy is checked (its
//! conditions, then its rules or its bare effect); any reason denies, any
//! applicable policy approves, and with neither the no-policy outcome applies.

use std::cell::OnceCell;

use super::Unanswerable;
use super::python::{normalize_lower, to_str};
use super::record::{Decision, DecisionRecord, MatchedPolicy, PolicyOutcome, Reason, RuleEvent};
use super::request::{Condition, ConditionOp, Effect, NormalizedRequest, PolicyContextInput, PolicyInput};
use super::rules::{evaluate_rules, python_dict};
use super::trace::{TraceInput, trace_hash};
use super::value::object;
use super::value::{Map, Text, Value};

const DEFAULT_COMBINING_ALGORITHM: &str = "deny_overrides";
const DEFAULT_TRACE_DOMAIN: &str = "kernite.execute.v1";

static ZERO: Value = Value::Int(0);

/// A selected policy with Kernite's defaults filled in, borrowing from the request.
struct Policy<'a> {
    key: &'a str,
    policy_version: &'a Value,
    version: &'a Value,
    effect: Effect,
    priority: &'a Value,
    name: &'a str,
    rules: &'a [Map],
    conditions: &'a [Condition],
    policy_id: Option<&'a str>,
    policy_version_id: Option<&'a str>,
    deny_reason_code: Option<&'a str>,
    deny_reason_message: Option<&'a str>,
}

impl<'a> Policy<'a> {
    fn from_input(input: &'a PolicyInput) -> Policy<'a> {
        let key = input.policy_key.as_deref().unwrap_or("policy");
        // `policy_version or version`, then `int()` with 0 as the fallback.
        let policy_version = match (&input.policy_version, &input.version) {
            (Some(v), _) if v.is_truthy() => v,
            (_, Some(v)) => v,
            _ => &ZERO,
        };
        Policy {
            key,
            version: input.version.as_ref().unwrap_or(policy_version),
            policy_version,
            effect: input.effect.unwrap_or(Effect::Allow),
            priority: input.priority.as_ref().unwrap_or(&ZERO),
            name: input.policy_name.as_deref().unwrap_or(key),
            rules: input.rules.as_deref().unwrap_or_default(),
            conditions: input.conditions.as_deref().unwrap_or_default(),
            policy_id: input.policy_id.as_deref(),
            policy_version_id: input.policy_version_id.as_deref(),
            deny_reason_code: input.deny_reason_code.as_deref(),
            deny_reason_message: input.deny_reason_message.as_deref(),
        }
    }

    /// `details` entries every reason and event of this policy carries.
    fn attribution(&self) -> [(Text, Value); 4] {
        let optional = |s: Option<&str>| s.map_or(Value::Null, Value::str);
        [
            ("policy_key".into(), Value::str(self.key)),
            ("policy_id".into(), optional(self.policy_id)),
            ("policy_version_id".into(), optional(self.policy_version_id)),
            ("effect".into(), Value::str(self.effect.as_str())),
        ]
    }
}

/// The policy context with every default applied.
struct PolicyContext<'a> {
    selected_policies: Vec<Policy<'a>>,
    policy_selection_reason_code: &'a str,
    default_policy: Option<&'a Map>,
    guardrail_result: Option<&'a Map>,
    validation_rules: &'a [Map],
    combining_algorithm: &'a str,
    previous_trace_hash: &'a Option<Text>,
    trace_domain: &'a str,
    no_policy_decision: Decision,
    no_policy_reason_code: &'a str,
    no_policy_message: &'a str,
}

impl<'a> PolicyContext<'a> {
    fn resolve(input: Option<&'a PolicyContextInput>, request: &NormalizedRequest) -> PolicyContext<'a> {
        static NONE: Option<Text> = None;
        let Some(input) = input else {
            return PolicyContext {
                selected_policies: Vec::new(),
                policy_selection_reason_code: "out_of_scope_phase1",
                default_policy: None,
                guardrail_result: None,
                validation_rules: &[],
                combining_algorithm: DEFAULT_COMBINING_ALGORITHM,
                previous_trace_hash: &NONE,
                trace_domain: DEFAULT_TRACE_DOMAIN,
                no_policy_decision: Decision::Approved,
                no_policy_reason_code: "out_of_scope_phase1",
                no_policy_message: "Scope is outside governed policy context.",
            };
        };
        let selected_policies: Vec<Policy<'a>> =
            input.selected_policies.iter().flatten().map(Policy::from_input).collect();
        let in_governed_scope =
            || {
                input.governed_scopes.iter().flatten().any(|(object_type, operation)| {
                    *object_type == request.object_type && *operation == request.operation
                })
            };
        let governed = input.governed.unwrap_or_else(|| in_governed_scope() || !selected_policies.is_empty());

        let policy_selection_reason_code =
            input.policy_selection_reason_code.as_deref().unwrap_or(if !selected_policies.is_empty() {
                "policy_selected_workspace_default"
            } else if governed {
                "no_policy_found"
            } else {
                "out_of_scope_phase1"
            });
        let no_policy_decision = match input.no_policy_decision.as_deref() {
            Some("denied") => Decision::Denied,
            Some(_) => Decision::Approved,
            None if governed => Decision::Denied,
            None => Decision::Approved,
        };
        let (reason_code, message) = if governed {
            ("no_matching_policy", "No active policy matched this governed request.")
        } else {
            ("out_of_scope_phase1", "Scope is outside governed policy context.")
        };

        PolicyContext {
            selected_policies,
            policy_selection_reason_code,
            default_policy: input.default_policy.as_ref(),
            guardrail_result: input.guardrail_result.as_ref(),
            validation_rules: input.validation_rules.as_deref().unwrap_or_default(),
            combining_algorithm: input.combining_algorithm.as_deref().unwrap_or(DEFAULT_COMBINING_ALGORITHM),
            previous_trace_hash: &input.previous_trace_hash,
            trace_domain: input.trace_domain.as_deref().unwrap_or(DEFAULT_TRACE_DOMAIN),
            no_policy_decision,
            no_policy_reason_code: input.no_policy_reason_code.as_deref().unwrap_or(reason_code),
            no_policy_message: input.no_policy_message.as_deref().unwrap_or(message),
        }
    }
}

/// Kernite's `_normalize_reasons` for reasons a guardrail supplies.
fn guardrail_reasons(raw: &Value) -> Result<Vec<Reason>, Unanswerable> {
    let field = "policy_context.guardrail_result.reasons";
    let items: &[Value] = match raw {
        v if !v.is_truthy() => &[],
        Value::Array(items) => items,
        _ => return Err(Unanswerable::new(field, "Kernite 0.1.6 needs a list of objects here")),
    };
    items
        .iter()
        .map(|item| {
            let Value::Object(reason) = item else {
                return Err(Unanswerable::new(field, "Kernite 0.1.6 needs a list of objects here"));
            };
            let get = |key: &str| Value::or_null(reason.get(key));
            let text_or = |key: &str, fallback: &str| match get(key) {
                v if v.is_truthy() => to_str(v),
                _ => Text::from(fallback),
            };
            Ok(Reason {
                code: text_or("code", "policy_denied"),
                message: text_or("message", "Policy denied the request."),
                rule_key: get("rule_key").clone(),
                field_path: get("field_path").clone(),
                details: match get("details") {
                    v if !v.is_truthy() => Map::default(),
                    v => python_dict(v, "policy_context.guardrail_result.reasons[].details")?.into_owned(),
                },
            })
        })
        .collect()
}

/// The request as conditions see it: the normalised request plus `action`.
fn request_context(request: &NormalizedRequest) -> Value {
    object([
        ("workspace_id", Value::Str(request.workspace_id.clone())),
        ("principal", request.principal_value()),
        ("object_type", Value::Str(request.object_type.clone())),
        ("operation", Value::Str(request.operation.clone())),
        ("action", Value::Str(request.operation.clone())),
        ("payload", Value::Object(request.payload.clone())),
        ("resource", Value::Object(request.resource.clone())),
        ("context", Value::Object(request.context.clone())),
    ])
}

/// Kernite's condition path reader: empty tokens are skipped, so `"."` is the
/// whole context; lists are not indexed.
fn read_condition_path<'a>(context: &'a Value, path: &str) -> &'a Value {
    let mut current = context;
    for token in path.split('.').filter(|t| !t.is_empty()) {
        match current {
            Value::Object(map) => current = Value::or_null(map.get(token)),
            _ => return &Value::Null,
        }
    }
    current
}

fn condition_holds(condition: &Condition, context: &Value) -> bool {
    let current = read_condition_path(context, &condition.left);
    match condition.op {
        ConditionOp::Eq => *current == condition.right,
        ConditionOp::Neq => *current != condition.right,
    }
}

#[derive(Default)]
struct PoliciesOutcome {
    reasons: Vec<Reason>,
    events: Vec<RuleEvent>,
    matched: Vec<MatchedPolicy>,
    /// Indices into the selected policies, in order.
    applicable: Vec<usize>,
}

fn evaluate_policies(policies: &[Policy<'_>], request: &NormalizedRequest) -> Result<PoliciesOutcome, Unanswerable> {
    let mut outcome = PoliciesOutcome::default();
    let context = OnceCell::new();
    for (index, policy) in policies.iter().enumerate() {
        let mut matched = MatchedPolicy {
            policy_version_id: policy.policy_version_id.map(Text::from),
            policy_id: policy.policy_id.map(Text::from),
            policy_key: Text::from(policy.key),
            policy_name: Text::from(policy.name),
            effect: policy.effect,
            priority: policy.priority.clone(),
            version: [policy.version, policy.policy_version]
                .into_iter()
                .find(|v| v.is_truthy())
                .unwrap_or(&ZERO)
                .clone(),
            rule_count: policy.rules.len(),
            outcome: PolicyOutcome::Approved,
            reason_codes: Vec::new(),
            condition_count: policy.conditions.len(),
        };

        let holds = policy.conditions.is_empty() || {
            // Built once, and only when some policy has conditions.
            let context = context.get_or_init(|| request_context(request));
            policy.conditions.iter().all(|c| condition_holds(c, context))
        };
        if !holds {
            matched.outcome = PolicyOutcome::NotApplicable;
            outcome.matched.push(matched);
            continue;
        }
        outcome.applicable.push(index);

        if policy.rules.is_empty() {
            if policy.effect == Effect::Deny {
                let code = Text::from(policy.deny_reason_code.unwrap_or("policy_effect_deny"));
                let message = policy
                    .deny_reason_message
                    .map_or_else(|| format!("Policy {} denied the request.", policy.key).into(), Text::from);
                let mut details: Map = policy.attribution().into_iter().collect();
                details.insert("mode".into(), Value::str("unconditional"));
                outcome.reasons.push(Reason {
                    code: code.clone(),
                    message,
                    rule_key: Value::Null,
                    field_path: Value::Null,
                    details: details.clone(),
                });
                outcome.events.push(RuleEvent {
                    rule_key: None,
                    rule_type: "policy_effect".into(),
                    status: super::record::RuleStatus::Failed,
                    message: "Policy effect deny (no rules).".into(),
                    reason_code: Some(code.clone()),
                    field_path: None,
                    details,
                });
                matched.outcome = PolicyOutcome::Denied;
                matched.reason_codes = vec![code];
            }
            outcome.matched.push(matched);
            continue;
        }

        // With rules, the effect is only reported: rules alone decide.
        let rules = evaluate_rules(policy.rules, &request.payload)?;
        for mut event in rules.events {
            event.details.extend(policy.attribution());
            outcome.events.push(event);
        }
        if !rules.reasons.is_empty() {
            matched.outcome = PolicyOutcome::Denied;
            matched.reason_codes = rules.reasons.iter().map(|r| r.code.clone()).collect();
            for mut reason in rules.reasons {
                reason.details.extend(policy.attribution());
                outcome.reasons.push(reason);
            }
        }
        outcome.matched.push(matched);
    }
    Ok(outcome)
}

/// Decides a validated request.
pub fn evaluate(
    request: &NormalizedRequest,
    policy_context: Option<&PolicyContextInput>,
) -> Result<DecisionRecord, Unanswerable> {
    let context = PolicyContext::resolve(policy_context, request);
    let guardrail = |key: &str| Value::or_null(context.guardrail_result.and_then(|g| g.get(key)));
    let guardrail_decision = match guardrail("decision") {
        v if v.is_truthy() => normalize_lower(v),
        _ => Text::const_new("approved"),
    };
    // Kernite normalises the guardrail's reasons even when it approves.
    let guardrail_reasons = guardrail_reasons(guardrail("reasons"))?;

    let mut rule_events = Vec::new();
    let mut matched_policies = Vec::new();
    let mut applicable = Vec::new();
    let (decision, mut reasons) = if guardrail_decision == "denied" {
        (Decision::Denied, guardrail_reasons)
    } else {
        let validation = evaluate_rules(context.validation_rules, &request.payload)?;
        rule_events.extend(validation.events);
        if !validation.reasons.is_empty() {
            (Decision::Denied, validation.reasons)
        } else {
            let policies = evaluate_policies(&context.selected_policies, request)?;
            rule_events.extend(policies.events);
            matched_policies = policies.matched;
            applicable = policies.applicable;
            if !policies.reasons.is_empty() {
                (Decision::Denied, policies.reasons)
            } else if !applicable.is_empty() {
                (Decision::Approved, policies.reasons)
            } else {
                let reason = Reason::synthesized(context.no_policy_reason_code, context.no_policy_message);
                (context.no_policy_decision, vec![reason])
            }
        }
    };

    let mut reason_codes: Vec<Text> = reasons.iter().filter(|r| !r.code.is_empty()).map(|r| r.code.clone()).collect();
    if decision == Decision::Denied && reason_codes.is_empty() {
        reasons = vec![Reason::synthesized("policy_denied", "Policy denied the request.")];
        reason_codes = vec!["policy_denied".into()];
    }

    let policy = match (context.default_policy, applicable.first()) {
        (Some(default), _) if !default.is_empty() => default.clone(),
        (_, Some(&first)) => {
            let first = &context.selected_policies[first];
            Map::from_iter([
                ("policy_key".into(), Value::str(first.key)),
                ("policy_version".into(), first.policy_version.clone()),
            ])
        }
        _ => Map::default(),
    };

    let (trace_hash, ctx_id) = trace_hash(TraceInput {
        domain: context.trace_domain,
        input: request,
        decision,
        reason_codes: &reason_codes,
        policy_selection_reason_code: context.policy_selection_reason_code,
        matched_policies: &matched_policies,
        combining_algorithm: context.combining_algorithm,
        previous_trace_hash: context.previous_trace_hash,
    });

    Ok(DecisionRecord {
        ctx_id,
        decision,
        reason_codes,
        reasons,
        rule_events,
        matched_policies,
        combining_algorithm: Text::from(context.combining_algorithm),
        policy_selection_reason_code: Text::from(context.policy_selection_reason_code),
        policy,
        trace_hash,
        previous_trace_hash: context.previous_trace_hash.clone(),
        idempotency_key: request.idempotency_key.clone(),
        rendered: Default::default(),
    })
}
