//! The integration tests of the server and the CLI, in one test binary: one link per build
//! instead of one per file, and one harness ([`support`]) for all of them.
//!
//! Each module was a test binary of its own before; the test names are now prefixed with
//! the module (`cargo test -p preflight --test integration -- foundation::`). The
//! data-driven tests are `#[ignore]`d and run with `-- --ignored` (see `scripts/test`).

mod support;

mod alerts;
mod analytics;
mod cli;
mod evaluation;
mod foundation;
mod identity;
mod quality_http;
mod rate_limit;
mod rate_limit_backend;
mod review;
mod suggestions;
mod webhooks;
