//! preflight's server: configuration, storage backends, Redis, and the HTTP API.

pub mod app;
pub mod config;
pub mod error;
pub mod http;
pub mod redis_link;
pub mod secrets;
pub mod storage;
pub mod telemetry;
