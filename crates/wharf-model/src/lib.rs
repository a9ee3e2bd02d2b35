//! The pure domain core of Wharf: the `wharf.toml` manifest (parsing, validation and
//! inference), app names, durations and sizes, cron schedules, the EventBridge event-pattern
//! matcher and the run state machine.
//!
//! Invariant: this crate does no I/O and depends on no other Wharf crate; everything here
//! is a plain function that can be unit-tested without a runtime.

pub mod access;
pub mod archive;
pub mod duration;
pub mod firing;
pub mod invocation;
pub mod manifest;
pub mod name;
pub mod notify;
pub mod pattern;
pub mod run;
pub mod scaling;
pub mod schedule;
mod suggest;
