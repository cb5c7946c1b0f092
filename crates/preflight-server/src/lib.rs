//! preflight's server: configuration, storage backends, Redis, and the HTTP API.

pub mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod rate_limit;
pub mod redis_link;
pub mod registry;
pub mod secrets;
pub mod storage;
pub mod telemetry;
pub mod writer;
