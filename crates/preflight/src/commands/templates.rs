//! `preflight templates register`: registers a layout template on a server from one or more
//! sample documents, computing their structural features locally (`POST /v1/templates`).
//!
//! As with `evaluate`, only the adapters' output is sent: the sample's text never leaves
//! the machine.

use std::path::PathBuf;
use std::process::ExitCode;

use preflight_engine::ExtractorIdentity;
use serde_json::{json, Value};

use super::evaluate::{runtime, Client, RequestError, ServerArgs, EXIT_USAGE};
use super::features::{read_features, InputArgs, EXIT_FILE_FAILED};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Register a template from a sample document's extractor output.
    Register(RegisterArgs),
}

#[derive(clap::Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    server: ServerArgs,
    /// The template's id (your name for the layout, e.g. contoso-invoice).
    #[arg(long, value_name = "ID")]
    template_id: String,
    /// Version number (default: chosen by the server).
    #[arg(long, value_name = "V", value_parser = clap::value_parser!(i64).range(1..))]
    version: Option<i64>,
    /// Human-readable name.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Free-text description (sent as given: don't put document content here).
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// Print the server's answer as JSON.
    #[arg(long)]
    json: bool,
    /// The sample's extractor output; several samples of the same layout (up to 50) are
    /// sent as the template's exemplars.
    #[arg(value_name = "FILE", required = true, num_args = 1..=50)]
    files: Vec<PathBuf>,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Register(args) => register(args),
    }
}

fn register(args: RegisterArgs) -> anyhow::Result<ExitCode> {
    let client = match Client::new(&args.server) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("preflight: {message}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    if args.template_id.trim().is_empty() {
        eprintln!("preflight: --template-id must not be empty");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let mut layouts = Vec::with_capacity(args.files.len());
    let mut extractors = std::collections::BTreeSet::new();
    for file in &args.files {
        match read_features(file, &args.input) {
            Ok((_, output)) => {
                extractors.insert(ExtractorIdentity::of(&output.extractor_metadata));
                layouts.push(output.structural_features);
            }
            Err(e) => {
                eprintln!("preflight: {}: {e}", file.display());
                return Ok(ExitCode::from(EXIT_FILE_FAILED));
            }
        }
    }
    let mut body = json!({ "template_id": args.template_id });
    // One sample uses the simple form; the server names its field errors after it.
    if layouts.len() == 1 {
        body["structural_features"] = json!(layouts[0]);
    } else {
        body["exemplars"] = json!(layouts);
    }
    // The samples' extractor is one the template has seen; with samples from several, the
    // server learns them from matched evaluations instead.
    if let (1, Some(extractor)) = (extractors.len(), extractors.first()) {
        body["extractor"] = json!(extractor);
    }
    if let Some(v) = args.version {
        body["version"] = json!(v);
    }
    if let Some(name) = &args.name {
        body["name"] = json!(name);
    }
    if let Some(description) = &args.description {
        body["description"] = json!(description);
    }
    let body = serde_json::to_vec(&body)?;
    let answer = runtime()?.block_on(client.post("v1/templates", body));
    match answer {
        Ok((_, created)) => {
            if args.json {
                println!("{created}");
            } else {
                println!(
                    "registered template {} version {} (id {})",
                    text_of(&created["template_id"]),
                    text_of(&created["version"]),
                    text_of(&created["id"]),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("preflight: registering {}: {e}", args.template_id);
            Ok(ExitCode::from(match e {
                RequestError::Auth { .. } => EXIT_USAGE,
                _ => EXIT_FILE_FAILED,
            }))
        }
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "?".into(),
        other => other.to_string(),
    }
}
