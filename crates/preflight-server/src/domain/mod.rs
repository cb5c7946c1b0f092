//! The domain layer: the rules of templates, evaluations, drift, identity, idempotency and
//! the audit trail.
//!
//! It knows no HTTP (no axum, no status codes beyond what an idempotent replay must repeat)
//! and writes no SQL: it decides, and reaches storage, the template index and the writer
//! through [`crate::state::AppState`] or the store trait. HTTP handlers (`crate::http`) and
//! the operator CLI call these functions; new features (alerts, analytics, review,
//! suggestions) get a module here.

pub mod alerts;
pub mod analytics;
pub mod audit;
pub mod drift;
pub mod evaluations;
pub mod idempotency;
pub mod identity;
pub mod review;
pub mod suggestions;
pub mod templates;
pub mod usage;
pub mod webhooks;
