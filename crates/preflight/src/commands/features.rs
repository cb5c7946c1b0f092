//! `preflight features`: turns extractor outputs into structural features locally and prints
//! them as JSON.
//!
//! Also home of the input side shared by `evaluate` and `templates register`: the `--from` /
//! `--page-width` / `--page-height` flags and [`read_features`], which reads one file and runs
//! the adapters on it. Everything printed or sent comes from `preflight-adapters`, whose output
//! carries geometry, element types, counts and confidences but never text from the document.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

use preflight_adapters::{
    features_from_bytes_with, AdapterError, AdapterOptions, AdapterOutput, FormatChoice, PageSize,
};
use serde_json::Value;

/// Exit code when a file could not be read or turned into features (see docs/cli.md).
pub const EXIT_FILE_FAILED: u8 = 1;

/// How to read the input files.
#[derive(clap::Args, Clone, Debug)]
pub struct InputArgs {
    /// Extractor format: textract, azure, google, tesseract-tsv, hocr, paddleocr, docling, or
    /// tesseract (TSV or hOCR, told apart by content). Default: detected from each file's
    /// content.
    #[arg(long, value_name = "FORMAT", value_parser = parse_from)]
    pub from: Option<FormatChoice>,
    /// Page width in the input's units, for formats that carry no page size (PaddleOCR;
    /// Tesseract/hOCR pages without a page box). Default: estimated from the content.
    #[arg(long, value_name = "W", requires = "page_height", value_parser = parse_positive)]
    pub page_width: Option<f64>,
    /// Page height in the input's units (with --page-width).
    #[arg(long, value_name = "H", requires = "page_width", value_parser = parse_positive)]
    pub page_height: Option<f64>,
}

/// `--from` accepts what the adapters' [`FormatChoice`] does: every format name and alias,
/// plus `tesseract`, which the content settles as TSV or hOCR.
fn parse_from(s: &str) -> Result<FormatChoice, String> {
    FormatChoice::from_str(s).map_err(|e| e.to_string())
}

fn parse_positive(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

impl InputArgs {
    fn options(&self) -> AdapterOptions {
        AdapterOptions {
            page_size: match (self.page_width, self.page_height) {
                (Some(width), Some(height)) => Some(PageSize { width, height }),
                _ => None,
            },
        }
    }
}

/// Why a file gave no features: a one-line message without the file name (callers add it).
/// It never quotes document content, because adapter errors don't.
#[derive(Debug)]
pub struct InputError {
    pub message: String,
    /// The content is no extractor output at all (format detection failed), as opposed to
    /// an unreadable file or a broken extractor output; `evaluate --skip-unrecognized`
    /// skips these.
    pub unrecognized: bool,
}

impl From<String> for InputError {
    fn from(message: String) -> Self {
        InputError {
            message,
            unrecognized: false,
        }
    }
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Reads `bytes` (the content of one file) with the adapters.
pub fn features_of(bytes: &[u8], input: &InputArgs) -> Result<AdapterOutput, InputError> {
    let error = |e: AdapterError| InputError {
        message: match e {
            // The adapters say "tesseract: …"; here the user typed it as a flag.
            AdapterError::NotTesseract { .. } => format!("--from {e}"),
            _ => e.to_string(),
        },
        unrecognized: e.is_unrecognized(),
    };
    let format = input
        .from
        .map(|c| c.resolve(bytes))
        .transpose()
        .map_err(error)?;
    features_from_bytes_with(bytes, format, &input.options()).map_err(error)
}

/// Reads one file and derives its features; returns the bytes too (callers hash them).
pub fn read_features(
    path: &Path,
    input: &InputArgs,
) -> Result<(Vec<u8>, AdapterOutput), InputError> {
    let bytes = std::fs::read(path).map_err(|e| InputError::from(format!("cannot read: {e}")))?;
    let output = features_of(&bytes, input)?;
    Ok((bytes, output))
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    input: InputArgs,
    /// Pretty-print the JSON.
    #[arg(long, conflicts_with = "jsonl")]
    pretty: bool,
    /// One compact JSON object per line, even for several files (default for several files:
    /// one JSON array).
    #[arg(long)]
    jsonl: bool,
    /// Extractor output files.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<std::path::PathBuf>,
}

/// The printed object: the file as given on the command line, then the adapter output.
fn document(path: &Path, output: &AdapterOutput) -> Result<Value, serde_json::Error> {
    let mut object = serde_json::Map::new();
    object.insert("file".into(), Value::String(path.display().to_string()));
    if let Value::Object(fields) = serde_json::to_value(output)? {
        object.extend(fields);
    }
    Ok(Value::Object(object))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    let mut documents = Vec::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for path in &args.files {
        match read_features(path, &args.input) {
            Ok((_, output)) => {
                let doc = document(path, &output)?;
                if args.jsonl {
                    // Lines stream out as they are ready; a failure elsewhere doesn't hide them.
                    writeln!(out, "{}", serde_json::to_string(&doc)?)?;
                } else {
                    documents.push(doc);
                }
            }
            Err(e) => {
                eprintln!("preflight: {}: {e}", path.display());
                failed = true;
            }
        }
    }
    if failed {
        // Without --jsonl the output is one JSON value; printing it with a document missing
        // would let a script mistake it for the complete answer.
        return Ok(ExitCode::from(EXIT_FILE_FAILED));
    }
    if !args.jsonl {
        let value = if args.files.len() == 1 {
            documents.pop().expect("one document per file")
        } else {
            Value::Array(documents)
        };
        let text = if args.pretty {
            serde_json::to_string_pretty(&value)?
        } else {
            serde_json::to_string(&value)?
        };
        writeln!(out, "{text}")?;
    }
    Ok(ExitCode::SUCCESS)
}
