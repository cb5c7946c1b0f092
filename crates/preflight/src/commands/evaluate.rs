//! `preflight evaluate`: computes structural features locally and asks a preflight server
//! for a decision on each file, with bounded concurrency, retries and a summary.
//!
//! Only the adapters' output leaves the machine, plus the SHA-256 of the file's bytes
//! (`client_doc_hash`) and, unless `--no-correlation-id`, the file's *name* (never its
//! directory, which may itself say something about the document) as `client_correlation_id`.
//!
//! Also home of the HTTP side shared with `templates register`: [`ServerArgs`] and
//! [`Client::post`], which retries network errors, 429 and 5xx-unavailable answers with
//! exponential backoff and jitter, honouring `Retry-After`, under one `Idempotency-Key` so a
//! retried request is never stored twice.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::features::{read_features, InputArgs, InputError, EXIT_FILE_FAILED};

/// Exit codes shared by the client commands (docs/cli.md lists them).
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_FAIL_ON: u8 = 3;

const DECISIONS: [&str; 4] = ["MATCH", "REVIEW", "NEW", "REJECT"];
/// The server refuses longer tags (CONTRACT §4 validation).
const MAX_TAG_CHARS: usize = 256;
/// First backoff step; doubled per attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest computed backoff step.
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// Longest wait we accept from a `Retry-After`: a server asking for an hour is better
/// reported as a failure than silently waited for.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(120);

/// Where the server is and how to talk to it.
#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    /// Base URL of the preflight server.
    #[arg(
        long,
        env = "PREFLIGHT_URL",
        default_value = "http://127.0.0.1:8000",
        value_name = "URL"
    )]
    pub url: String,
    /// API key (sent as X-API-Key).
    #[arg(
        long,
        env = "PREFLIGHT_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: String,
    /// Retries per request after a network error, 429 or 502/503/504 (0 = try once).
    #[arg(long, default_value_t = 3, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=20))]
    pub retries: u32,
    /// Per-request timeout in seconds (connecting, sending and reading the answer).
    #[arg(long, default_value_t = 30.0, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: f64,
    /// Makes Idempotency-Keys stable across invocations: re-running the same command with
    /// the same run id within 24 h returns the first answers instead of deciding again.
    /// Default: a fresh id per invocation, so retries within a run never duplicate but a
    /// later run is a new evaluation.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds in (0, 3600]")),
    }
}

/// Why a request finally failed.
#[derive(Debug)]
pub enum RequestError {
    /// No HTTP answer (connection refused, DNS, timeout, reset), after every retry.
    Network { message: String, attempts: u32 },
    /// The server refused the credentials (401) or the scope (403): no other request can
    /// succeed either, so callers stop and exit with the configuration code.
    Auth { status: u16, message: String },
    /// Any other non-success answer (after retries, for retryable ones).
    Http {
        status: u16,
        code: Option<String>,
        message: String,
    },
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Network { message, attempts } => {
                write!(f, "{message} (after {attempts} attempt")?;
                if *attempts != 1 {
                    f.write_str("s")?;
                }
                f.write_str(")")
            }
            RequestError::Auth { status, message } => write!(f, "HTTP {status}: {message}"),
            RequestError::Http {
                status,
                code,
                message,
            } => match code {
                Some(code) => write!(f, "HTTP {status} {code}: {message}"),
                None => write!(f, "HTTP {status}: {message}"),
            },
        }
    }
}

/// A small HTTP client for the preflight API.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    api_key: String,
    retries: u32,
    run_id: String,
}

impl Client {
    /// Validates the URL and key; the error is a usage message.
    pub fn new(args: &ServerArgs) -> Result<Client, String> {
        let mut base = Url::parse(args.url.trim())
            .map_err(|e| format!("--url {:?} is not a URL: {e}", args.url))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(format!(
                "--url {:?} must be an http:// or https:// URL",
                args.url
            ));
        }
        // Joining "v1/evaluate" must keep a path prefix such as https://host/preflight/.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let api_key = args.api_key.trim().to_string();
        if api_key.is_empty() || !api_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("--api-key / PREFLIGHT_API_KEY is empty or not a valid key".into());
        }
        let timeout = Duration::from_secs_f64(args.timeout);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("preflight-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let run_id = match &args.run_id {
            Some(id) => id.clone(),
            None => format!(
                "{:016x}{:016x}",
                random_u64(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0)
                    ^ u64::from(std::process::id())
            ),
        };
        Ok(Client {
            http,
            base,
            api_key,
            retries: args.retries,
            run_id,
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The Idempotency-Key of a request: a hash of the server URL, the route, the run id
    /// and the body. The body holds the file's SHA-256 (`client_doc_hash`), so the key is
    /// derived from the file; hashing the whole body (not the file hash alone) keeps two
    /// requests that differ in anything else — another file name, pipeline or template id
    /// — from colliding, which the server would answer with a 422.
    fn idempotency_key(&self, path: &str, body: &[u8]) -> String {
        let mut h = Sha256::new();
        for part in [
            self.base.as_str().as_bytes(),
            path.as_bytes(),
            self.run_id.as_bytes(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.update(Sha256::digest(body));
        format!("pfcli-{}", hex(&h.finalize()))
    }

    /// POSTs a JSON body to `path` (relative, e.g. `v1/evaluate`), retrying what a retry
    /// can fix. Answers the status and the parsed JSON body of a 2xx answer.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> Result<(u16, Value), RequestError> {
        let url = self
            .base
            .join(path)
            .expect("a relative path joins onto an http(s) base");
        let key = self.idempotency_key(path, &body);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let sent = self
                .http
                .post(url.clone())
                .header("X-API-Key", &self.api_key)
                .header("Idempotency-Key", &key)
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let last = attempt > self.retries;
            let retry_after = match sent {
                Err(e) => {
                    if last {
                        return Err(RequestError::Network {
                            message: format!("cannot reach {}: {}", url, error_chain(&e)),
                            attempts: attempt,
                        });
                    }
                    None
                }
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    let text = response.text().await.unwrap_or_default();
                    if status.is_success() {
                        let value =
                            serde_json::from_str(&text).map_err(|e| RequestError::Http {
                                status: status.as_u16(),
                                code: None,
                                message: format!("the answer is not JSON ({e})"),
                            })?;
                        return Ok((status.as_u16(), value));
                    }
                    let retryable = matches!(
                        status,
                        StatusCode::TOO_MANY_REQUESTS
                            | StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                    );
                    if !retryable || last {
                        return Err(http_error(status, &text, attempt));
                    }
                    retry_after_of(&headers)
                }
            };
            tokio::time::sleep(backoff(attempt, retry_after)).await;
        }
    }
}

/// The wait before retry number `attempt` (1-based): exponential with "equal jitter"
/// (half fixed, half random) so concurrent workers that failed together spread out; at
/// least the server's `Retry-After`, plus a little jitter for the same reason.
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let step = BACKOFF_BASE
        .saturating_mul(1u32 << (attempt - 1).min(16))
        .min(BACKOFF_CAP);
    let jittered = step / 2 + step.mul_f64(random_unit() / 2.0);
    match retry_after {
        Some(after) => {
            let after = after.min(RETRY_AFTER_CAP);
            jittered.max(after + Duration::from_millis(250).mul_f64(random_unit()))
        }
        None => jittered,
    }
}

/// `Retry-After` in seconds (the server's form). HTTP dates are not used by preflight and
/// fall back to the computed backoff.
fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn http_error(status: StatusCode, text: &str, attempts: u32) -> RequestError {
    // RFC 9457 problem: `code`, `detail` or `title`, and `errors[{field, message}]`.
    let problem: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let mut message = problem["detail"]
        .as_str()
        .or_else(|| problem["title"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("unexpected answer")
                .to_string()
        });
    if let Some(errors) = problem["errors"].as_array() {
        let fields: Vec<String> = errors
            .iter()
            .take(5)
            .map(|e| {
                format!(
                    "{}: {}",
                    e["field"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("?")
                )
            })
            .collect();
        if !fields.is_empty() {
            message = format!("{message} ({})", fields.join("; "));
        }
    }
    if attempts > 1 {
        message = format!("{message} (after {attempts} attempts)");
    }
    let code = problem["code"].as_str().map(str::to_string);
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RequestError::Auth {
            status: status.as_u16(),
            message: match code {
                Some(code) => format!("{code}: {message}"),
                None => message,
            },
        },
        _ => RequestError::Http {
            status: status.as_u16(),
            code,
            message,
        },
    }
}

/// reqwest's own message ("error sending request for url (…)") repeats the URL and hides
/// the cause; the causes below it (connection refused, reset, DNS, timed out) are what a
/// user needs. hyper's "client error (Connect)" wrapper adds nothing either.
fn error_chain(e: &reqwest::Error) -> String {
    let mut causes: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !text.starts_with("client error (") && !causes.iter().any(|c| c.contains(&text)) {
            causes.push(text);
        }
        source = s.source();
    }
    if e.is_timeout() && !causes.iter().any(|c| c.contains("timed out")) {
        causes.insert(0, "timed out".into());
    }
    if causes.is_empty() {
        e.to_string()
    } else {
        causes.join(": ")
    }
}

/// A random u64 without a dependency: std's `RandomState` is seeded from the OS per process
/// and varied per instance. Good enough for jitter and run ids (not for secrets).
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish()
}

/// Uniform in [0, 1).
fn random_unit() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds a runtime for the client commands (the binary's `main` is synchronous).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    server: ServerArgs,
    /// Pipeline id stored with every evaluation (filterable on the server).
    #[arg(long, value_name = "ID")]
    pipeline_id: Option<String>,
    /// Requests in flight at once (1 to 64).
    #[arg(long, default_value_t = 8, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// One JSON object per file (the server's answer plus `file`, or `file` plus `error`),
    /// then one summary object.
    #[arg(long)]
    json: bool,
    /// Exit with code 3 when any file gets one of these decisions (comma-separated), e.g.
    /// --fail-on REVIEW,NEW,REJECT.
    #[arg(long, value_name = "DECISIONS", value_delimiter = ',', value_parser = parse_decision)]
    fail_on: Vec<String>,
    /// Don't send the file name as client_correlation_id.
    #[arg(long)]
    no_correlation_id: bool,
    /// Skip files whose content is no extractor output at all (e.g. label or manifest JSON
    /// beside the OCR results) instead of counting them as failed.
    #[arg(long)]
    skip_unrecognized: bool,
    /// Extractor output files, or directories (searched recursively; hidden entries skipped).
    #[arg(value_name = "FILE|DIR", required = true)]
    paths: Vec<PathBuf>,
}

fn parse_decision(s: &str) -> Result<String, String> {
    let upper = s.trim().to_ascii_uppercase();
    if DECISIONS.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!("{s:?} is not one of {}", DECISIONS.join(", ")))
    }
}

/// The files to evaluate: arguments as given, directories expanded recursively to their
/// regular files in sorted order, hidden files and directories (".name") skipped. A path
/// that does not exist is kept, so it is reported as a failed file like an unreadable one.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            for f in found {
                if seen.insert(f.clone()) {
                    files.push(f);
                }
            }
        } else if seen.insert(path.clone()) {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("{}: cannot list: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: cannot list: {e}", dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if kind.is_dir() {
            walk(&path, found)?;
        } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
            // Symlinks to files are followed; symlinks to directories are not, so a link
            // cycle cannot make the walk endless.
            found.push(path);
        }
    }
    Ok(())
}

/// SHA-256 of the file bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The evaluate request body: the adapter's output and the tags, nothing else.
fn request_body(
    path: &Path,
    bytes: &[u8],
    output: &preflight_adapters::AdapterOutput,
    pipeline_id: Option<&str>,
    send_name: bool,
) -> Result<Vec<u8>, String> {
    let mut body = json!({
        "structural_features": output.structural_features,
        "extractor_metadata": output.extractor_metadata,
        "layout_fingerprint": output.layout_fingerprint,
        "client_doc_hash": sha256_hex(bytes),
    });
    if send_name {
        if let Some(name) = path.file_name() {
            let name: String = name.to_string_lossy().chars().take(MAX_TAG_CHARS).collect();
            body["client_correlation_id"] = Value::String(name);
        }
    }
    if let Some(id) = pipeline_id {
        body["pipeline_id"] = Value::String(id.to_string());
    }
    serde_json::to_vec(&body).map_err(|e| format!("cannot encode the request: {e}"))
}

/// What happened to one file.
enum Outcome {
    Evaluated(Value),
    Skipped(String),
    Failed {
        message: String,
        status: Option<u16>,
    },
}

struct FileResult {
    index: usize,
    outcome: Outcome,
}

struct Job {
    client: Client,
    input: InputArgs,
    pipeline_id: Option<String>,
    send_name: bool,
    skip_unrecognized: bool,
    files: Vec<PathBuf>,
    next: AtomicUsize,
    /// Set on 401/403: the remaining files are not sent.
    auth_failed: AtomicBool,
}

async fn evaluate_one(job: &Job, path: &Path) -> Outcome {
    let failed = |message: String, status: Option<u16>| Outcome::Failed { message, status };
    if job.auth_failed.load(Ordering::Relaxed) {
        return failed("not sent: the server refused the API key".into(), None);
    }
    let owned_path = path.to_path_buf();
    let input = job.input.clone();
    let pipeline_id = job.pipeline_id.clone();
    let send_name = job.send_name;
    // Reading and parsing are blocking CPU/disk work; keep them off the async workers.
    let read = tokio::task::spawn_blocking(move || {
        let (bytes, output) = read_features(&owned_path, &input)?;
        request_body(
            &owned_path,
            &bytes,
            &output,
            pipeline_id.as_deref(),
            send_name,
        )
        .map_err(InputError::from)
    })
    .await;
    let body = match read {
        Ok(Ok(body)) => body,
        Ok(Err(e)) if e.unrecognized && job.skip_unrecognized => {
            return Outcome::Skipped(e.message)
        }
        Ok(Err(e)) => return failed(e.message, None),
        Err(e) => return failed(format!("internal error: {e}"), None),
    };
    match job.client.post("v1/evaluate", body).await {
        Ok((_, answer)) => Outcome::Evaluated(answer),
        Err(e) => {
            let status = match &e {
                RequestError::Auth { status, .. } => {
                    job.auth_failed.store(true, Ordering::Relaxed);
                    Some(*status)
                }
                RequestError::Http { status, .. } => Some(*status),
                RequestError::Network { .. } => None,
            };
            failed(e.to_string(), status)
        }
    }
}

async fn worker(job: Arc<Job>, tx: tokio::sync::mpsc::UnboundedSender<FileResult>) {
    loop {
        let index = job.next.fetch_add(1, Ordering::Relaxed);
        let Some(path) = job.files.get(index) else {
            return;
        };
        let outcome = evaluate_one(&job, path).await;
        if tx.send(FileResult { index, outcome }).is_err() {
            return;
        }
    }
}

/// Counts for the summary.
#[derive(Default)]
struct Tally {
    decisions: BTreeMap<String, usize>,
    skipped: usize,
    failed: usize,
}

/// The stderr progress line, drawn only on a terminal.
struct Progress {
    enabled: bool,
    total: usize,
}

impl Progress {
    fn draw(&self, done: usize, failed: usize) {
        if self.enabled {
            eprint!(
                "\r\x1b[2K{done}/{} evaluated{}",
                self.total,
                if failed > 0 {
                    format!(", {failed} failed")
                } else {
                    String::new()
                }
            );
            let _ = std::io::stderr().flush();
        }
    }

    fn clear(&self) {
        if self.enabled {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}

fn result_line(file: &str, answer: &Value) -> String {
    let decision = answer["decision"].as_str().unwrap_or("?");
    let confidence = answer["match_confidence"]
        .as_f64()
        .map(|c| format!("{c:.3}"))
        .unwrap_or_else(|| "-".into());
    let template = match (
        answer["template_id"].as_str(),
        answer["template_version"].as_i64(),
    ) {
        (Some(id), Some(v)) => format!("{id}@v{v}"),
        (Some(id), None) => id.to_string(),
        _ => "-".into(),
    };
    let codes: Vec<&str> = answer["reasons"]
        .as_array()
        .map(|rs| rs.iter().filter_map(|r| r["code"].as_str()).collect())
        .unwrap_or_default();
    let reasons = if codes.is_empty() {
        String::new()
    } else {
        format!("  [{}]", codes.join(","))
    };
    format!("{decision:<6}  {confidence:>5}  {template:<24}  {file}{reasons}")
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = match Client::new(&args.server) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("preflight: {message}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let files = match expand(&args.paths) {
        Ok(f) => f,
        Err(message) => {
            eprintln!("preflight: {message}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    if files.is_empty() {
        eprintln!("preflight: no files to evaluate (directories held no visible regular files)");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    if let Some(id) = &args.pipeline_id {
        if id.chars().count() > MAX_TAG_CHARS {
            eprintln!("preflight: --pipeline-id must be at most {MAX_TAG_CHARS} characters");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    }
    let total = files.len();
    let workers = usize::from(args.concurrency).min(total);
    let job = Arc::new(Job {
        client,
        input: args.input.clone(),
        pipeline_id: args.pipeline_id.clone(),
        send_name: !args.no_correlation_id,
        skip_unrecognized: args.skip_unrecognized,
        files,
        next: AtomicUsize::new(0),
        auth_failed: AtomicBool::new(false),
    });
    let progress = Progress {
        enabled: std::io::stderr().is_terminal() && total > 10,
        total,
    };
    let rt = runtime()?;
    let tally = rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..workers {
            tokio::spawn(worker(job.clone(), tx.clone()));
        }
        drop(tx);
        // Results are printed in input order (a reorder buffer holds the early finishers),
        // so the output of a run is deterministic whatever the concurrency.
        let mut pending: BTreeMap<usize, Outcome> = BTreeMap::new();
        let mut next_to_print = 0;
        let mut tally = Tally::default();
        let mut done = 0;
        let stdout = std::io::stdout();
        progress.draw(0, 0);
        while let Some(result) = rx.recv().await {
            done += 1;
            pending.insert(result.index, result.outcome);
            while let Some(outcome) = pending.remove(&next_to_print) {
                let file = job.files[next_to_print].display().to_string();
                progress.clear();
                let mut out = stdout.lock();
                match outcome {
                    Outcome::Evaluated(mut answer) => {
                        let decision = answer["decision"].as_str().unwrap_or("?").to_string();
                        *tally.decisions.entry(decision).or_default() += 1;
                        if args.json {
                            if let Value::Object(map) = &mut answer {
                                map.insert("file".into(), Value::String(file));
                            }
                            let _ = writeln!(out, "{answer}");
                        } else {
                            let _ = writeln!(out, "{}", result_line(&file, &answer));
                        }
                    }
                    Outcome::Skipped(message) => {
                        tally.skipped += 1;
                        if args.json {
                            let _ = writeln!(out, "{}", json!({"file": file, "skipped": message}));
                        }
                        let _ = out.flush();
                        eprintln!("preflight: skipped {file}: {message}");
                    }
                    Outcome::Failed { message, status } => {
                        tally.failed += 1;
                        if args.json {
                            let error = json!({"message": message, "status": status});
                            let _ = writeln!(out, "{}", json!({"file": file, "error": error}));
                        }
                        let _ = out.flush();
                        eprintln!("preflight: {file}: {message}");
                    }
                }
                let _ = out.flush();
                next_to_print += 1;
            }
            progress.draw(done, tally.failed);
        }
        progress.clear();
        tally
    });

    let evaluated: usize = tally.decisions.values().sum();
    let auth_failed = job.auth_failed.load(Ordering::Relaxed);
    let hit_fail_on = args
        .fail_on
        .iter()
        .any(|d| tally.decisions.get(d).copied().unwrap_or(0) > 0);
    // Precedence: a configuration problem hides everything else; then incomplete results;
    // only a complete run is judged by its decisions.
    let code = if auth_failed {
        EXIT_USAGE
    } else if tally.failed > 0 {
        EXIT_FILE_FAILED
    } else if hit_fail_on {
        EXIT_FAIL_ON
    } else {
        0
    };
    // The four decisions always (zeros included, so scripts can index them), then any
    // other value a newer server might send.
    let mut decisions: Vec<(String, usize)> = DECISIONS
        .iter()
        .map(|d| (d.to_string(), tally.decisions.get(*d).copied().unwrap_or(0)))
        .collect();
    for (d, n) in &tally.decisions {
        if !DECISIONS.contains(&d.as_str()) {
            decisions.push((d.clone(), *n));
        }
    }
    if let Err(e) = print_summary(&args, total, evaluated, &tally, &decisions, code) {
        // A closed pipe (`| head`) is the reader's choice, not a failure worth a message.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    if auth_failed {
        eprintln!(
            "preflight: the server at {} refused the API key; check --api-key / PREFLIGHT_API_KEY \
             and that the key has the `evaluate` scope",
            job.client.base()
        );
    }
    Ok(ExitCode::from(code))
}

fn print_summary(
    args: &Args,
    total: usize,
    evaluated: usize,
    tally: &Tally,
    decisions: &[(String, usize)],
    code: u8,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if args.json {
        let summary = json!({"summary": {
            "files": total,
            "evaluated": evaluated,
            "skipped": tally.skipped,
            "failed": tally.failed,
            "decisions": decisions
                .iter()
                .map(|(d, n)| (d.clone(), json!(n)))
                .collect::<serde_json::Map<String, Value>>(),
            "exit_code": code,
        }});
        writeln!(out, "{summary}")?;
    } else {
        writeln!(out)?;
        writeln!(
            out,
            "summary: {total} files, {evaluated} evaluated, {} skipped, {} failed",
            tally.skipped, tally.failed
        )?;
        for (d, n) in decisions {
            writeln!(out, "  {d:<8} {n:>6}")?;
        }
        if tally.skipped > 0 {
            writeln!(out, "  {:<8} {:>6}", "skipped", tally.skipped)?;
        }
        writeln!(out, "  {:<8} {:>6}", "failed", tally.failed)?;
    }
    out.flush()
}
