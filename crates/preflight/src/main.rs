//! The `preflight` binary: the API server, its operator commands and the client CLI.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "preflight",
    version,
    about = "Layout-template governance for document-extraction pipelines",
    long_about = "preflight decides MATCH / REVIEW / NEW / REJECT for extracted documents from \
                  layout metadata only. Configuration comes from the environment (see docs/deployment.md)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (embedded SQLite by default; PostgreSQL + Redis when configured).
    Serve,
    /// Apply database migrations and exit (a pre-deploy step or an init container).
    Migrate,
    /// Exit 0 when the local server answers /ready with 200 (for images without curl).
    Healthcheck(commands::healthcheck::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => commands::server::serve(),
        Command::Migrate => commands::server::migrate(),
        Command::Healthcheck(args) => commands::healthcheck::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("preflight: {e:#}");
            ExitCode::FAILURE
        }
    }
}
