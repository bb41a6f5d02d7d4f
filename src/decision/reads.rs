//! Which parts of a request a policy context reads. Replay needs this
//! before it re-decides a request whose stored copy had secrets masked: a
//! masked value no rule or condition reads changes nothing, and one that is
//! read makes the request undecidable (never guessed).
//!
//! Paths are request-relative: a rule's field `card.number` reads
//! `payload.card.number`, a condition's `principal.attributes.role` reads
//! itself. The check is conservative: anything that may overlap does.

use super::Unanswerable;
use super::request::PolicyContextInput;
use super::rules::paths_read;
use super::value::Text;

/// Everything a policy context may read of a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reads {
    /// Request-relative paths, as segments.
    paths: Vec<Vec<Text>>,
    /// A condition on the whole request (`"."`).
    everything: bool,
}

impl Reads {
    /// What deciding under `context` reads: its validation rules and each
    /// selected policy's conditions and rules. (The guardrail, the default
    /// policy and the no-policy outcome read nothing of the request.)
    pub fn of(context: &PolicyContextInput) -> Result<Reads, Unanswerable> {
        let mut reads = Reads::default();
        let mut payload_paths = paths_read(context.validation_rules.as_deref().unwrap_or_default())?;
        for policy in context.selected_policies.iter().flatten() {
            payload_paths.extend(paths_read(policy.rules.as_deref().unwrap_or_default())?);
            for condition in policy.conditions.iter().flatten() {
                // Kernite's condition reader skips empty tokens; none left is the whole request.
                let path: Vec<Text> = condition.left.split('.').filter(|t| !t.is_empty()).map(Text::from).collect();
                reads.everything |= path.is_empty();
                reads.paths.push(path);
            }
        }
        for path in payload_paths.iter().filter(|p| !p.is_empty()) {
            // Kernite's rule reader keeps empty tokens as keys.
            let segments = std::iter::once(Text::const_new("payload")).chain(path.split('.').map(Text::from));
            reads.paths.push(segments.collect());
        }
        reads.paths.sort();
        reads.paths.dedup();
        Ok(reads)
    }

    /// The first masked path (as redaction names them: `payload.card`,
    /// `payload.items[0].password`) that something read may overlap: one is
    /// a prefix of the other.
    pub fn first_overlap<'m>(&self, masked: &'m [String]) -> Option<&'m str> {
        masked
            .iter()
            .map(String::as_str)
            .find(|masked| self.everything || self.paths.iter().any(|read| overlaps(read, masked)))
    }
}

/// Whether a read path and a masked path share a prefix that makes one
/// contain the other. A masked segment with an index (`items[0]`) stops the
/// comparison there: rules read no list items, so reading `items` or anything
/// starting like it counts as reading the masked value.
fn overlaps(read: &[Text], masked: &str) -> bool {
    let mut masked = masked.split('.');
    for segment in read {
        let Some(step) = masked.next() else { return true };
        match step.find('[') {
            Some(bracket) => return segment.starts_with(&step[..bracket]),
            None if step != segment.as_str() => return false,
            None => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Value;
    use crate::decision::json::parse;
    use crate::decision::validate::policy_context;

    fn reads(context: &str) -> Reads {
        let Value::Object(raw) = parse(context).unwrap() else { panic!("an object") };
        Reads::of(&policy_context(raw).unwrap().unwrap()).unwrap()
    }

    const LIMITS: &str = r#"{"governed": true, "selected_policies": [{"policy_key": "p", "effect": "allow",
        "conditions": [{"left": "principal.attributes.role", "op": "eq", "right": "clerk"}],
        "rules": [{"rule_key": "max", "rule_definition": {"type": "max_value", "field": "card.limit", "max": 5}},
                  {"rule_key": "req", "rule_definition": {"type": "required_fields", "fields": ["currency", "a..b"]}}]}]}"#;

    #[test]
    fn rules_read_payload_paths_and_conditions_read_request_paths() {
        let reads = reads(LIMITS);
        let masked = |paths: &[&str]| paths.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert_eq!(reads.first_overlap(&masked(&["payload.card"])), Some("payload.card"), "an ancestor of a read");
        assert_eq!(reads.first_overlap(&masked(&["payload.card.limit.cents"])), Some("payload.card.limit.cents"));
        assert_eq!(reads.first_overlap(&masked(&["payload.cardholder", "context.token"])), None);
        assert_eq!(reads.first_overlap(&masked(&["principal.attributes.role"])), Some("principal.attributes.role"));
        assert_eq!(reads.first_overlap(&masked(&["payload.a..b"])), Some("payload.a..b"), "empty keys are keys");
        assert_eq!(reads.first_overlap(&masked(&["payload.currency[0].x"])), Some("payload.currency[0].x"));
        assert_eq!(reads.first_overlap(&masked(&["payload.items[0].password"])), None);
    }

    #[test]
    fn a_condition_on_the_whole_request_reads_everything() {
        let context = r#"{"governed": true, "selected_policies": [{"policy_key": "p",
            "conditions": [{"left": ".", "op": "neq", "right": null}]}]}"#;
        assert_eq!(reads(context).first_overlap(&["context.x".to_owned()]), Some("context.x"));
        assert_eq!(reads(r#"{"governed": true}"#).first_overlap(&["payload.x".to_owned()]), None);
    }
}
