//! One module per subcommand family.

pub mod admin;
pub mod evaluate;
pub mod features;
pub mod healthcheck;
pub mod server;
pub mod templates;
