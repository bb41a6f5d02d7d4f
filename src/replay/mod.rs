//! Replay: what a candidate policy bundle would have decided, asked of the
//! evidence itself. Every row since migration 11 holds the request it
//! decided (as the engine read it, secrets masked), the bundle's digest and
//! the mode, so a row is re-decided by the same engine under the candidate
//! and the two decisions compared.
//!
//! The story, in [`run::replay`]: open one read-only snapshot, read the
//! selected rows in pages ([`selection`]), judge each on a low-priority
//! thread ([`judge`]), and hand each verdict to the caller, which tallies
//! it ([`report`]): the command line prints and writes JSON Lines
//! (`main.rs`), the gRPC call streams (`api/replay.rs`).
//!
//! Replay is honest about what it cannot know: a row from before migration
//! 11, a row decided by the caller's own policies, a row not enforced, a
//! request masked where the candidate reads, and a scope the candidate does
//! not govern each have their own class ([`Class`]), never a guess.

pub mod command_line;
pub mod judge;
pub mod report;
pub mod run;
pub mod selection;

pub use judge::{Class, Judge, Verdict};
pub use report::Tally;
pub use run::{Pace, ReplayError, replay};
pub use selection::{RecordedRow, Selection};
