//! The domain's shared words, each defined once: what was decided
//! ([`Decision`]), how the operator runs governance ([`Mode`]), what an
//! evidence row records of the decision ([`RecordedDecision`]) and of the
//! write ([`Outcome`]).
//!
//! Each is spelled one way everywhere, in the evidence table, the metrics,
//! the configuration and the HTTP answers: `as_str` writes it and
//! [`FromStr`](std::str::FromStr) reads it back. An unknown spelling is an
//! [`UnknownWord`], never a default.

use std::fmt;
use std::str::FromStr;

/// A spelling that is none of a vocabulary's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{word:?} is not a {kind} (expected one of: {expected})")]
pub struct UnknownWord {
    pub kind: &'static str,
    pub word: String,
    pub expected: &'static str,
}

/// Declares a closed set of words: the enum, `as_str`, `ALL`, `Display`,
/// `FromStr` and serde's `Deserialize`, all from one list of spellings.
macro_rules! words {
    ($(#[$meta:meta])* $name:ident as $kind:literal { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            /// Every word, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;
            fn from_str(word: &str) -> Result<$name, UnknownWord> {
                match word {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownWord {
                        kind: $kind,
                        word: word.to_owned(),
                        expected: concat!($($word, ", "),+).trim_end_matches(", "),
                    }),
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let word = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                word.parse().map_err(serde::de::Error::custom)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

words! {
    /// Kernite's decision on a request.
    Decision as "decision" {
        Approved = "approved",
        Denied = "denied",
    }
}

words! {
    /// How the operator runs governance for a mutation, as Kernite's
    /// `evaluate_execute_controlled` defines the modes. Never the caller's choice.
    #[derive(Default)]
    Mode as "mode" {
        /// The decision gates the write.
        #[default]
        Enforce = "enforce",
        /// The real decision is recorded; the write goes through regardless.
        Observe = "observe",
        /// Nothing is evaluated; the write goes through and the evidence says so.
        Skip = "skip",
    }
}

words! {
    /// The `decision` column of an evidence row: Kernite's decision, or
    /// `skipped` when the operator's skip mode evaluated nothing.
    RecordedDecision as "recorded decision" {
        Approved = "approved",
        Denied = "denied",
        Skipped = "skipped",
    }
}

impl From<Option<Decision>> for RecordedDecision {
    fn from(decision: Option<Decision>) -> RecordedDecision {
        match decision {
            Some(Decision::Approved) => RecordedDecision::Approved,
            Some(Decision::Denied) => RecordedDecision::Denied,
            None => RecordedDecision::Skipped,
        }
    }
}

words! {
    /// What became of the write an evidence row governs.
    Outcome as "outcome" {
        /// The mutation committed with the row.
        Applied = "applied",
        /// The decision (in enforce mode) kept the mutation from running.
        NotApplied = "not_applied",
        /// The mutation failed and was rolled back; the row was written alone.
        Error = "error",
    }
}

words! {
    /// What becomes of a request whose route the operation map does not
    /// govern (not in it, or listed with `"governed": false`).
    Unmapped as "unmapped-route policy" {
        /// Denied (403), without an evidence row: there is no scope to decide.
        Deny = "deny",
        /// Passed, without an evidence row, and counted.
        Allow = "allow",
    }
}

words! {
    /// What becomes of an approved request whose evidence cannot be
    /// committed (PostgreSQL unreachable). A denied one is always denied.
    FailureMode as "failure mode" {
        /// Denied (503): no request passes without its row.
        Closed = "closed",
        /// Passed without a row, and counted (`governance_gateway_fail_open_total`).
        Open = "open",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_reads_back_as_itself() {
        for mode in Mode::ALL {
            assert_eq!(mode.as_str().parse::<Mode>(), Ok(*mode));
        }
        for outcome in Outcome::ALL {
            assert_eq!(outcome.as_str().parse::<Outcome>(), Ok(*outcome));
        }
        for decision in RecordedDecision::ALL {
            assert_eq!(decision.as_str().parse::<RecordedDecision>(), Ok(*decision));
        }
        assert_eq!("denied".parse::<Decision>(), Ok(Decision::Denied));
    }

    #[test]
    fn an_unknown_word_is_an_error_not_a_default() {
        let error = "Enforce".parse::<Mode>().unwrap_err();
        assert_eq!(error.to_string(), r#""Enforce" is not a mode (expected one of: enforce, observe, skip)"#);
        assert!("skipped".parse::<Decision>().is_err());
        assert!("".parse::<Outcome>().is_err());
    }

    #[test]
    fn the_recorded_decision_of_skip_mode_is_skipped() {
        assert_eq!(RecordedDecision::from(None).as_str(), "skipped");
        assert_eq!(RecordedDecision::from(Some(Decision::Denied)).as_str(), "denied");
    }
}
