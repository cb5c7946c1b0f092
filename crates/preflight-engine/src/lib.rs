//! preflight's decision engine: a pure library (no I/O, no async, no clock, no global state)
//! that identifies a document's layout among a tenant's templates and decides
//! MATCH / REVIEW / NEW / REJECT with reasons, drift and reliability.

pub mod features;
