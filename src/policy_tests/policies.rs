//! The policies under test: an operator's bundle, loaded exactly as `serve
//! --policy-bundle` loads it, or one Kernite policy (such as the starter's
//! `policy.json`) that governs every request's scope. Either way the
//! engine's own `policy_context` validation checks the policies before any
//! case is decided, so a test never passes under policies the sidecar would
//! refuse to load.

use std::fmt;

use crate::decision::json::{self, JsonError};
use crate::decision::validate::policy_context;
use crate::decision::{FieldError, Map, NormalizedRequest, PolicyContextInput, Unanswerable, Value};
use crate::policies::bundle::{self, BundleError, PolicyBundle};

/// What decides the cases.
#[derive(Debug)]
pub enum Policies {
    /// The bundle resolves each request's scope, as the server does.
    Bundle(PolicyBundle),
    /// `{"governed": true, "selected_policies": [policy]}`, for every scope.
    Single(PolicyContextInput),
}

/// Why the policies cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PoliciesError {
    #[error("{0}")]
    Bundle(#[from] BundleError),
    #[error("not valid JSON: {0}")]
    Json(#[from] JsonError),
    #[error("must be a JSON object: one Kernite policy")]
    NotAnObject,
    #[error("this is a policy bundle: give it with --policy-bundle")]
    IsABundle,
    #[error("{}", PolicyFieldErrors(.0))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    Unanswerable(#[from] Unanswerable),
}

/// Where the single policy sits in the `policy_context` it is validated in:
/// its errors are named from the policy itself (`effect`, not
/// `policy_context.selected_policies[0].effect`).
const POLICY_PLACE: &str = "policy_context.selected_policies[0].";

struct PolicyFieldErrors<'e>(&'e [FieldError]);

impl fmt::Display for PolicyFieldErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            let field = error.field.strip_prefix(POLICY_PLACE).unwrap_or(&error.field);
            let message = error.message.strip_prefix(POLICY_PLACE).unwrap_or(&error.message);
            write!(f, "{}{field}: {message}", if i == 0 { "" } else { "; " })?;
        }
        Ok(())
    }
}

impl Policies {
    /// A `kernite.policy.bundle.v1` file's bytes.
    pub fn bundle(bytes: &[u8]) -> Result<Policies, PoliciesError> {
        Ok(Policies::Bundle(PolicyBundle::parse(bytes)?))
    }

    /// One Kernite policy, as JSON text.
    pub fn single(text: &str) -> Result<Policies, PoliciesError> {
        let Value::Object(policy) = json::parse(text)? else { return Err(PoliciesError::NotAnObject) };
        if policy.get("schema_version").and_then(Value::as_str) == Some(bundle::SCHEMA_VERSION) {
            return Err(PoliciesError::IsABundle);
        }
        let mut context = Map::default();
        context.insert("governed".into(), Value::Bool(true));
        context.insert("selected_policies".into(), Value::Array(vec![Value::Object(policy)]));
        Ok(Policies::Single(policy_context(context)?.map_err(PoliciesError::Invalid)?))
    }

    /// The `policy_context` a request is decided under.
    pub fn context_for(&self, request: &NormalizedRequest) -> &PolicyContextInput {
        match self {
            Policies::Bundle(bundle) => bundle.resolve(&request.object_type, &request.operation).context,
            Policies::Single(context) => context,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_policy_is_checked_by_the_engines_own_validation() {
        let refused = Policies::single(r#"{"policy_key": "p", "effect": "maybe", "rules": []}"#).unwrap_err();
        assert_eq!(refused.to_string(), "effect: effect must be one of: allow, deny.");
        assert!(matches!(Policies::single("[]"), Err(PoliciesError::NotAnObject)));
        assert!(matches!(Policies::single("{"), Err(PoliciesError::Json(_))));
        assert!(Policies::single(r#"{"policy_key": "p", "effect": "allow", "rules": []}"#).is_ok());
    }

    #[test]
    fn a_bundle_given_as_a_policy_is_pointed_to_the_right_flag() {
        let bundle = r#"{"schema_version": "kernite.policy.bundle.v1", "policies": []}"#;
        assert!(matches!(Policies::single(bundle), Err(PoliciesError::IsABundle)));
        assert!(Policies::bundle(bundle.as_bytes()).is_ok());
    }

    #[test]
    fn a_malformed_bundle_is_refused_as_the_server_refuses_it() {
        let refused = Policies::bundle(br#"{"schema_version": "kernite.policy.bundle.v2"}"#).unwrap_err();
        assert!(refused.to_string().starts_with("schema_version: must be \"kernite.policy.bundle.v1\""), "{refused}");
    }
}
