//! `preflight admin`: operator tasks straight against the database, without HTTP.
//!
//! These commands exist for what the API deliberately cannot do: bootstrap a tenant on a
//! server with signup disabled, create users with a chosen role, and mint **operator keys**
//! (cross-tenant, `tenant_id` NULL), which no HTTP route can create. Whoever can run this
//! binary with the server's database credentials is already trusted with everything, so the
//! commands need no further authentication; every change they make is written to the audit
//! trail with the actor `operator-cli`.
//!
//! The configuration is loaded exactly as `serve` loads it (environment, `.env` in
//! development, the development secrets kept in the data directory), so keys minted here are
//! hashed with the same `API_KEY_SALT` the server verifies them with.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use preflight_server::auth::keys::{new_api_key_record, KeySpec};
use preflight_server::auth::passwords::PasswordHasherPool;
use preflight_server::auth::{Role, Scope, ScopeSet};
use preflight_server::config::Config;
use preflight_server::domain::audit::{self, AuditAction, AuditExt};
use preflight_server::domain::identity::{self, Acting};
use preflight_server::domain::usage;
use preflight_server::error::ApiError;
use preflight_server::secrets;
use preflight_server::storage::identity::{ApiKeyRecord, Tenant};
use preflight_server::storage::{self, Store, StoreError};
use serde_json::{json, Value};
use uuid::Uuid;

use super::server::load_config;

/// The actor every audit row written by these commands carries.
const ACTOR: &str = "operator-cli";
/// Where `create-user` reads the password from when stdin is not used; never a flag, so it
/// cannot end up in shell history or `ps` output.
const PASSWORD_ENV: &str = "PREFLIGHT_ADMIN_PASSWORD";

#[derive(clap::Args)]
#[command(
    about = "Operator tasks without HTTP: tenants, users, API keys (incl. operator keys), plans",
    long_about = "Operator tasks run directly against the configured database (the same \
                  DATABASE_URL / PREFLIGHT_DATA_DIR as `serve`). Every change is recorded in the \
                  audit trail with the actor `operator-cli`. Human-readable output by default, \
                  one JSON document with --json; errors go to stderr with a non-zero exit."
)]
pub struct Args {
    /// Print one JSON document instead of human-readable text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create a tenant; prints its id.
    CreateTenant(CreateTenant),
    /// Create a user in a tenant. The password is read from PREFLIGHT_ADMIN_PASSWORD or,
    /// when that is unset, from one line on stdin.
    CreateUser(CreateUser),
    /// Mint an API key for a tenant, or a cross-tenant operator key; prints the key once.
    CreateKey(CreateKey),
    /// Revoke an API key (tenant or operator key).
    RevokeKey(RevokeKey),
    /// List a tenant's keys or the operator keys (never their secrets).
    ListKeys(ListKeys),
    /// List every tenant.
    ListTenants,
    /// Set a tenant's plan (free 1 000, developer 10 000, team 100 000 evaluations a month,
    /// enterprise unlimited) and optionally a tenant-specific monthly limit.
    SetPlan(SetPlan),
    /// Show a tenant's plan and this month's usage, as `GET /v1/usage` does.
    Usage(UsageArgs),
}

#[derive(clap::Args)]
struct SetPlan {
    /// Tenant id (see `admin list-tenants`).
    #[arg(long, value_name = "TENANT_ID")]
    tenant: Uuid,
    #[arg(long, value_name = "PLAN", value_parser = ["free", "developer", "team", "enterprise"])]
    plan: String,
    /// Evaluations a month for this tenant instead of the plan's limit (0 stops it);
    /// omitted, the plan's limit applies.
    #[arg(long, value_name = "N")]
    monthly_limit: Option<u64>,
}

#[derive(clap::Args)]
struct UsageArgs {
    /// Tenant id (see `admin list-tenants`).
    #[arg(long, value_name = "TENANT_ID")]
    tenant: Uuid,
}

#[derive(clap::Args)]
struct CreateTenant {
    /// Display name, e.g. "Acme Corp".
    #[arg(long, value_name = "NAME")]
    name: String,
    /// URL-safe identifier (lower-case letters, digits, dashes); derived from the name when
    /// omitted.
    #[arg(long, value_name = "SLUG")]
    slug: Option<String>,
}

#[derive(clap::Args)]
struct CreateUser {
    /// Tenant id (see `admin list-tenants`).
    #[arg(long, value_name = "TENANT_ID")]
    tenant: Uuid,
    /// Login email; unique across all tenants.
    #[arg(long, value_name = "EMAIL")]
    email: String,
    /// admin (everything in the tenant), editor (evaluate, read, templates:write) or viewer
    /// (read).
    #[arg(long, value_name = "ROLE", value_parser = ["admin", "editor", "viewer"])]
    role: String,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("owner").required(true).args(["tenant", "operator"])))]
struct CreateKey {
    /// The tenant the key belongs to.
    #[arg(long, value_name = "TENANT_ID")]
    tenant: Option<Uuid>,
    /// Mint a cross-tenant operator key instead: it carries every scope, acts in a tenant
    /// only when a request names one with `X-Preflight-Tenant: <tenant id>`, and otherwise
    /// reaches only tenant-less routes such as /v1/status.
    #[arg(long)]
    operator: bool,
    /// A label for the key, e.g. "ingest-pipeline".
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Comma-separated: evaluate, read, templates:write, keys:manage, admin. Required for
    /// tenant keys; not accepted with --operator (operator keys carry every scope).
    #[arg(
        long,
        value_name = "SCOPES",
        value_delimiter = ',',
        required_unless_present = "operator",
        conflicts_with = "operator"
    )]
    scopes: Vec<String>,
    /// Requests per minute for this key (default: the server's RATE_LIMIT_PER_MINUTE).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    rate_limit: Option<u32>,
    /// When the key stops working, RFC 3339 (e.g. 2030-01-31T00:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    expires_at: Option<DateTime<Utc>>,
}

#[derive(clap::Args)]
struct RevokeKey {
    /// The key's id (see `admin list-keys`).
    #[arg(long, value_name = "KEY_ID")]
    id: Uuid,
    /// Only revoke the key if it belongs to this tenant (a guard against a mistyped id).
    #[arg(long, value_name = "TENANT_ID")]
    tenant: Option<Uuid>,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("owner").required(true).args(["tenant", "operator"])))]
struct ListKeys {
    /// List this tenant's keys.
    #[arg(long, value_name = "TENANT_ID")]
    tenant: Option<Uuid>,
    /// List the operator keys.
    #[arg(long)]
    operator: bool,
}

fn parse_rfc3339(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 timestamp ({e}); e.g. 2030-01-31T00:00:00Z"))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    // The same secrets file the server uses, so a key minted here verifies there.
    let (config, generated) = secrets::resolve_keys(config)?;
    if !generated.is_empty() {
        eprintln!(
            "preflight: warning: generated development secrets in {}; set JWT_SECRET and \
             API_KEY_SALT for anything but local development",
            config.data_dir.display()
        );
    }
    // Read before touching the database, so a missing password fails fast and cleanly.
    let password = match &args.command {
        Command::CreateUser(_) => Some(read_password()?),
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let output = runtime.block_on(async {
        let store = open_store(&config).await?;
        let result = execute(&config, store.as_ref(), args.command, password).await;
        store.close().await;
        result
    })?;
    print_output(&output, args.json);
    Ok(ExitCode::SUCCESS)
}

/// What a command produced: the JSON document, the human text for stdout, and an optional
/// note for stderr (kept off stdout so `$(preflight admin create-key ...)` captures only the
/// key).
struct Output {
    json: Value,
    text: String,
    note: Option<String>,
}

fn print_output(output: &Output, as_json: bool) {
    let mut stdout = std::io::stdout().lock();
    if as_json {
        let _ = writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&output.json).unwrap_or_default()
        );
    } else {
        if let Some(note) = &output.note {
            eprintln!("{note}");
        }
        if !output.text.is_empty() {
            let _ = writeln!(stdout, "{}", output.text.trim_end());
        }
    }
}

/// Opens the configured store. Development applies pending migrations as `serve` does;
/// production refuses an unmigrated schema, as `serve` does, rather than change it here.
async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let store = storage::open(&config.storage).await?;
    if config.is_production() {
        let pending = store.pending_migrations().await?;
        anyhow::ensure!(
            pending.is_empty(),
            "the database has {} pending migration(s) {:?}; run `preflight migrate` first",
            pending.len(),
            pending
        );
    } else {
        store.migrate().await?;
    }
    Ok(store)
}

/// One line from `PREFLIGHT_ADMIN_PASSWORD` or stdin; only the line ending is stripped, so
/// a password may begin or end with spaces.
fn read_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(p);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        // No echo suppression without a terminal library; say so rather than pretend.
        eprint!("password (input is visible; prefer {PASSWORD_ENV} or a pipe): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line)
        .to_string();
    anyhow::ensure!(
        !password.is_empty(),
        "no password: set {PASSWORD_ENV} or pass one line on stdin"
    );
    Ok(password)
}

fn store_error(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::Duplicate(m) => anyhow::anyhow!("{m}"),
        other => anyhow::anyhow!(other),
    }
}

async fn require_tenant(store: &dyn Store, id: Uuid) -> anyhow::Result<Tenant> {
    store.get_tenant(id).await?.ok_or_else(|| {
        anyhow::anyhow!("no tenant with id {id} (see `preflight admin list-tenants`)")
    })
}

async fn execute(
    config: &Config,
    store: &dyn Store,
    command: Command,
    password: Option<String>,
) -> anyhow::Result<Output> {
    match command {
        Command::CreateTenant(a) => create_tenant(store, a).await,
        Command::CreateUser(a) => {
            let password = password.expect("read before the runtime started");
            create_user(store, a, password).await
        }
        Command::CreateKey(a) => create_key(config, store, a).await,
        Command::RevokeKey(a) => revoke_key(store, a).await,
        Command::ListKeys(a) => list_keys(store, a).await,
        Command::ListTenants => list_tenants(store).await,
        Command::SetPlan(a) => set_plan(config, store, a).await,
        Command::Usage(a) => show_usage(config, store, a.tenant).await,
    }
}

async fn set_plan(config: &Config, store: &dyn Store, a: SetPlan) -> anyhow::Result<Output> {
    let limit = a
        .monthly_limit
        .map(i64::try_from)
        .transpose()
        .map_err(|_| anyhow::anyhow!("--monthly-limit is too large"))?;
    usage::set_plan(store, a.tenant, &a.plan, limit, ACTOR)
        .await
        .map_err(domain_error)?;
    let mut output = show_usage(config, store, a.tenant).await?;
    output.text = format!(
        "tenant {} is on the {} plan\n{}",
        a.tenant, a.plan, output.text
    );
    Ok(output)
}

async fn show_usage(config: &Config, store: &dyn Store, tenant: Uuid) -> anyhow::Result<Output> {
    let report = usage::report(store, tenant, config.usage.enforce_quota, Utc::now())
        .await
        .map_err(domain_error)?;
    let limit = report
        .monthly_limit
        .map_or_else(|| "unlimited".to_string(), |l| l.to_string());
    Ok(Output {
        text: format!(
            "plan {}, {} used of {} in {}{}",
            report.plan,
            report.used,
            limit,
            report.period,
            if report.enforced {
                " (enforced)"
            } else {
                " (not enforced)"
            }
        ),
        json: serde_json::to_value(&report)?,
        note: None,
    })
}

fn tenant_json(t: &Tenant) -> Value {
    json!({"id": t.id, "name": t.name, "slug": t.slug, "created_at": t.created_at})
}

/// Who the operator CLI acts as in the audit trail.
fn operator() -> Acting<'static> {
    Acting {
        actor: ACTOR.into(),
        ip: None,
        request_id: None,
    }
}

/// A domain refusal in the CLI's words: `--field message` per invalid field.
fn domain_error(e: ApiError) -> anyhow::Error {
    match e {
        ApiError::Validation(errors) => {
            let lines: Vec<String> = errors
                .iter()
                .map(|f| {
                    let flag = match f.field.as_str() {
                        "tenant_name" => "name",
                        other => other,
                    };
                    format!("--{flag} {}", f.message)
                })
                .collect();
            anyhow::anyhow!("{}", lines.join("; "))
        }
        ApiError::NotFound(_) => {
            anyhow::anyhow!("no such tenant (see `preflight admin list-tenants`)")
        }
        ApiError::Internal(e) => e,
        other => anyhow::anyhow!("{other}"),
    }
}

async fn create_tenant(store: &dyn Store, a: CreateTenant) -> anyhow::Result<Output> {
    let tenant = identity::create_tenant(store, &a.name, a.slug.as_deref(), &operator())
        .await
        .map_err(domain_error)?;
    Ok(Output {
        json: tenant_json(&tenant),
        text: tenant.id.to_string(),
        note: Some(format!(
            "created tenant {:?} (slug {})",
            tenant.name, tenant.slug
        )),
    })
}

async fn create_user(store: &dyn Store, a: CreateUser, password: String) -> anyhow::Result<Output> {
    let role = Role::parse(&a.role).expect("clap allows only known roles");
    let tenant = require_tenant(store, a.tenant).await?;
    let user = identity::create_user(
        store,
        &PasswordHasherPool::new(),
        tenant.id,
        &a.email,
        password,
        role,
        &operator(),
    )
    .await
    .map_err(domain_error)?;
    Ok(Output {
        json: json!({
            "id": user.id, "tenant_id": user.tenant_id, "email": user.email,
            "role": role.as_str(), "created_at": user.created_at,
        }),
        text: user.id.to_string(),
        note: Some(format!(
            "created {} user {} in tenant {:?}",
            role.as_str(),
            user.email,
            tenant.name
        )),
    })
}

fn parse_scopes(raw: &[String]) -> anyhow::Result<ScopeSet> {
    let mut scopes = Vec::new();
    for name in raw.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let scope = Scope::parse(name).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown scope {name:?}; known: {}",
                Scope::ALL.map(Scope::as_str).join(", ")
            )
        })?;
        scopes.push(scope);
    }
    let set = ScopeSet::from_iter(scopes);
    anyhow::ensure!(!set.is_empty(), "--scopes must name at least one scope");
    Ok(set)
}

fn key_json(k: &ApiKeyRecord) -> Value {
    json!({
        "id": k.id,
        "tenant_id": k.tenant_id,
        "name": k.name,
        "prefix": k.prefix,
        "scopes": ScopeSet::from_storage(&k.scopes).names(),
        "operator": k.operator,
        "rate_limit_per_minute": k.rate_limit_per_minute,
        "expires_at": k.expires_at,
        "created_by": k.created_by,
        "created_at": k.created_at,
        "last_used_at": k.last_used_at,
        "revoked_at": k.revoked_at,
    })
}

async fn create_key(config: &Config, store: &dyn Store, a: CreateKey) -> anyhow::Result<Output> {
    let name = a.name.trim().to_string();
    anyhow::ensure!(
        !name.is_empty() && name.chars().count() <= 100,
        "--name must be 1 to 100 characters"
    );
    let scopes = if a.operator {
        ScopeSet::all()
    } else {
        parse_scopes(&a.scopes)?
    };
    if let Some(at) = a.expires_at {
        anyhow::ensure!(at > Utc::now(), "--expires-at must be in the future");
    }
    let tenant = match a.tenant {
        Some(id) => Some(require_tenant(store, id).await?),
        None => None,
    };
    let salt = &config.auth.keys.api_key_salt;
    let (record, secret) = new_api_key_record(
        salt.expose(),
        KeySpec {
            tenant_id: tenant.as_ref().map(|t| t.id),
            name,
            scopes,
            operator: a.operator,
            rate_limit_per_minute: a.rate_limit.map(|l| l as i32),
            expires_at: a.expires_at,
            created_by: ACTOR.into(),
        },
    );
    let event = audit::event(record.tenant_id, ACTOR, AuditAction::ApiKeyCreated)
        .target(format!("api_key:{}", record.id))
        .details(json!({
            "prefix": record.prefix, "name": record.name,
            "scopes": scopes.names(), "operator": record.operator,
        }));
    store
        .create_api_key(&record, &event)
        .await
        .map_err(store_error)?;
    let mut document = key_json(&record);
    document["key"] = Value::String(secret.clone());
    let owner = match &tenant {
        Some(t) => format!("tenant {:?} ({})", t.name, t.id),
        None => "operators (cross-tenant; name a tenant with X-Preflight-Tenant)".into(),
    };
    Ok(Output {
        json: document,
        text: secret,
        note: Some(format!(
            "created API key {} ({}) for {owner} with scopes {}; it is shown this once, store it now",
            record.id,
            record.prefix,
            scopes.names().join(", ")
        )),
    })
}

async fn revoke_key(store: &dyn Store, a: RevokeKey) -> anyhow::Result<Output> {
    let not_found = || {
        anyhow::anyhow!(
            "no live API key with id {}{}",
            a.id,
            a.tenant
                .map(|t| format!(" in tenant {t}"))
                .unwrap_or_default()
        )
    };
    // The operator CLI may look a key up in any tenant; the revocation itself still goes
    // through the tenant-scoped (or operator-scoped) statement.
    let key = store
        .find_api_key_any_tenant(a.id)
        .await?
        .filter(|k| k.revoked_at.is_none())
        .filter(|k| a.tenant.is_none() || k.tenant_id == a.tenant)
        .ok_or_else(not_found)?;
    let now = Utc::now();
    let event = audit::event(key.tenant_id, ACTOR, AuditAction::ApiKeyRevoked)
        .target(format!("api_key:{}", key.id))
        .details(json!({"prefix": key.prefix}));
    let done = match key.tenant_id {
        Some(tenant_id) => store.revoke_api_key(tenant_id, key.id, now, &event).await?,
        None => store.revoke_operator_key(key.id, now, &event).await?,
    };
    if !done {
        // Revoked concurrently between the lookup and the update.
        return Err(not_found());
    }
    Ok(Output {
        json: json!({"id": key.id, "prefix": key.prefix, "tenant_id": key.tenant_id, "revoked_at": now}),
        text: format!("revoked API key {} ({})", key.id, key.prefix),
        note: Some(
            "running servers refuse it within 5 seconds (their verified-key cache lifetime)".into(),
        ),
    })
}

async fn list_keys(store: &dyn Store, a: ListKeys) -> anyhow::Result<Output> {
    let keys = match a.tenant {
        Some(id) => {
            require_tenant(store, id).await?;
            store.list_api_keys(id).await?
        }
        None => store.list_operator_keys().await?,
    };
    let mut text = String::new();
    for k in &keys {
        let state = if k.revoked_at.is_some() {
            "revoked"
        } else if k.expires_at.is_some_and(|e| e <= Utc::now()) {
            "expired"
        } else {
            "active"
        };
        text.push_str(&format!(
            "{}  {}  {:<7}  {}  [{}]  created {} by {}\n",
            k.id,
            k.prefix,
            state,
            k.name,
            ScopeSet::from_storage(&k.scopes).names().join(","),
            k.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
            k.created_by
        ));
    }
    Ok(Output {
        json: json!({"items": keys.iter().map(key_json).collect::<Vec<_>>()}),
        note: keys.is_empty().then(|| "no keys".to_string()),
        text,
    })
}

async fn list_tenants(store: &dyn Store) -> anyhow::Result<Output> {
    let tenants = store.list_tenants().await?;
    let text = tenants
        .iter()
        .map(|t| format!("{}  {}  {}\n", t.id, t.slug, t.name))
        .collect();
    Ok(Output {
        json: json!({"items": tenants.iter().map(tenant_json).collect::<Vec<_>>()}),
        note: tenants.is_empty().then(|| "no tenants".to_string()),
        text,
    })
}
