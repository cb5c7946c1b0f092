//! One module per subcommand family.

pub mod healthcheck;
pub mod server;
