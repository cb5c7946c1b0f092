//! preflight's server: configuration, the domain rules, storage backends, Redis, and the
//! HTTP API.
//!
//! Layers, top to bottom: `http` (parse, authorize, map) → `domain` (the rules) →
//! `storage`, `registry`, `writer` (persistence and the in-memory template index), with
//! `state` holding the services and `app` starting and stopping them. `docs/architecture.md`
//! draws it.

pub mod alert_windows;
pub mod app;
pub mod auth;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod http;
pub mod outbound;
pub mod rate_limit;
pub mod redis_link;
pub mod registry;
pub mod rule_cache;
pub mod secrets;
pub mod state;
pub mod storage;
pub mod supervisor;
pub mod telemetry;
pub mod writer;
