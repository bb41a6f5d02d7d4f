//! governance-sidecar: Kernite's decision contract over gRPC, with evidence
//! that commits in one Postgres transaction with the write it governs.
//!
//! Data flows one way: [`api`] decodes a call and encodes its answer,
//! [`decision`] decides (pure), [`evidence`] commits the governed write with
//! its evidence. Beside the write: [`postgres`] reaches the database,
//! [`schema`] migrates it, [`log`] makes the evidence a verifiable log, and
//! [`upkeep`] keeps the partitioned layout's months. The operator's inputs:
//! [`policies`] (which policies decide) and [`mutations`] (which writes
//! callers may ask for); [`policy_tests`] runs an operator's tests of their
//! policies. The words they share are in [`vocabulary`]; what
//! each error becomes on the wire, in [`error`]; every setting's default, in
//! [`defaults`]. [`config`] and [`server`] wire them together.
//! `docs/architecture.md` follows one call through these files.

pub mod access;
pub mod api;
pub mod authoring;
pub mod config;
mod ctx_id;
pub mod decision;
pub mod defaults;
pub mod error;
pub mod evidence;
pub mod gateway;
pub mod log;
pub mod metrics;
pub mod mutations;
pub mod policies;
pub mod policy_tests;
pub mod postgres;
pub mod proto;
pub mod reload;
pub mod replay;
pub mod schema;
pub mod secret_file;
pub mod server;
pub mod telemetry;
pub mod upkeep;
pub mod vocabulary;
