//! Typed configuration, parsed once at start from the environment.
//!
//! Every problem is collected before reporting, so an operator sees all missing or invalid
//! variables in one message instead of fixing them one restart at a time.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

/// Where the process runs: development is forgiving, production is strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Production => "production",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Which database backs the store.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// Embedded SQLite file (the zero-setup default, or an explicit `sqlite://PATH`).
    Sqlite { path: PathBuf },
    /// PostgreSQL; the URL is normalized to `postgres://` with the password filled in.
    Postgres { url: String },
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseConfig::Sqlite { path } => write!(f, "Sqlite({})", path.display()),
            DatabaseConfig::Postgres { url } => write!(f, "Postgres({})", redact_url(url)),
        }
    }
}

/// A secret string that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The whole configuration, in one section per part of the server. `K` is what is known
/// of the signing keys: [`GivenKeys`] as parsed (development may leave them out), then
/// [`AuthKeys`] once `secrets::resolve_keys` has loaded or generated them, so nothing past
/// start-up handles a key that might be missing.
#[derive(Debug, Clone)]
pub struct Config<K = AuthKeys> {
    pub environment: Environment,
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub redis: RedisConfig,
    pub auth: AuthConfig<K>,
    pub limits: LimitsConfig,
    pub telemetry: TelemetryConfig,
    pub webhooks: WebhookConfig,
    pub alerts: AlertsConfig,
    pub usage: UsageConfig,
    pub review: ReviewConfig,
}

/// Usage counting and quotas.
#[derive(Debug, Clone)]
pub struct UsageConfig {
    /// Refuse evaluations beyond the tenant's monthly limit with 429 `QUOTA_EXCEEDED`
    /// (usage is counted either way).
    pub enforce_quota: bool,
}

/// The review queue.
#[derive(Debug, Clone)]
pub struct ReviewConfig {
    /// The share of MATCHes that also become review items, for quality assurance (0..=1).
    pub sample_match_rate: f64,
}

/// Alert rules checked in the background.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// How often window rules (`new_rate`, …) are checked; checks fall on multiples of it.
    pub window_check_every: Duration,
}

/// Outbound webhook delivery.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Private ranges receivers may be in (the SSRF guard refuses loopback, private,
    /// link-local and metadata addresses otherwise). Empty by default.
    pub allowed_cidrs: Vec<IpNet>,
    /// The wait before each retry of a failed delivery; its length is the number of retries.
    pub retry_schedule: Vec<Duration>,
    /// How long one delivery attempt may take, connect to last byte.
    pub timeout: Duration,
    /// How long an endpoint's circuit stays open after it tripped (doubling with each
    /// failed probe, up to an hour).
    pub circuit_cooldown: Duration,
    /// An endpoint that has failed every attempt for this long is disabled, with an alert.
    pub disable_after: Duration,
}

/// About three days of retries: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h, 12 h, 24 h, 24 h.
pub const DEFAULT_WEBHOOK_RETRY_SECONDS: [u64; 11] = [
    5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200, 86400, 86400,
];

/// The HTTP listener and what it accepts.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: IpAddr,
    /// 0 binds a free port (the address is logged).
    pub port: u16,
    pub enable_docs: bool,
    pub allowed_origins: Vec<String>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub max_request_body_size: usize,
    pub shutdown_grace: Duration,
}

/// The database and the in-memory template index in front of it.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub database: DatabaseConfig,
    pub max_connections: u32,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    /// Templates held in memory across all tenants before idle tenants are dropped.
    pub template_cache_max: usize,
}

/// The shared rate-limit backend.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `None` means the in-process backend (embedded mode).
    pub url: Option<Secret>,
    pub timeout: Duration,
    /// Whether `/ready` fails while Redis is unreachable.
    pub ready_require: bool,
}

/// Sessions, API keys, signup and the login lockout.
#[derive(Debug, Clone)]
pub struct AuthConfig<K = AuthKeys> {
    pub keys: K,
    pub jwt_expire_minutes: u64,
    pub allow_signup: bool,
    /// Consecutive failed logins that lock an account.
    pub login_max_failures: u32,
    pub login_lockout: Duration,
}

/// The signing keys as the environment gave them.
#[derive(Debug, Clone)]
pub struct GivenKeys {
    pub jwt_secret: Option<Secret>,
    pub api_key_salt: Option<Secret>,
}

/// The signing keys, present and checked.
#[derive(Debug, Clone)]
pub struct AuthKeys {
    pub jwt_secret: Secret,
    pub api_key_salt: Secret,
}

/// Request budgets per minute.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub per_minute: u32,
    pub unauthenticated: u32,
    /// Refuse (503) instead of allowing when the shared backend is unreachable.
    pub fail_closed: bool,
}

/// Logs and error reporting.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub log_level: String,
    pub log_format: LogFormat,
    pub sentry_dsn: Option<Secret>,
    pub sentry_environment: Option<String>,
    pub sentry_traces_sample_rate: f32,
}

/// Every problem found in the environment, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<(String, String)>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem{}):",
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for (var, why) in &self.problems {
            writeln!(f, "  - {var}: {why}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
pub const MIN_SECRET_LEN: usize = 32;

/// Reads variables and records what is wrong with them instead of stopping at the first.
struct Reader<'a> {
    env: &'a HashMap<String, String>,
    problems: Vec<(String, String)>,
}

impl<'a> Reader<'a> {
    fn raw(&self, name: &str) -> Option<&'a str> {
        self.env
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn problem(&mut self, name: &str, why: impl Into<String>) {
        self.problems.push((name.to_string(), why.into()));
    }

    fn parse<T: std::str::FromStr>(&mut self, name: &str, default: T, what: &str) -> T {
        match self.raw(name) {
            None => default,
            Some(v) => match v.parse::<T>() {
                Ok(parsed) => parsed,
                Err(_) => {
                    self.problem(name, format!("expected {what}, got {v:?}"));
                    default
                }
            },
        }
    }

    /// A share between 0 and 1 (a sampling rate).
    fn fraction(&mut self, name: &str, default: f64) -> f64 {
        let v: f64 = self.parse(name, default, "a number between 0 and 1");
        if (0.0..=1.0).contains(&v) {
            v
        } else {
            self.problem(name, "must be between 0 and 1");
            default
        }
    }

    fn bool(&mut self, name: &str, default: bool) -> bool {
        match self.raw(name).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    self.problem(name, format!("expected true or false, got {v:?}"));
                    default
                }
            },
        }
    }

    /// A positive number that must fit `T`; a larger one is a problem, never truncated.
    fn positive<T: TryFrom<u64> + TryInto<u64> + Copy>(&mut self, name: &str, default: T) -> T {
        let v = self.positive_u64(name, default.try_into().unwrap_or(u64::MAX));
        T::try_from(v).unwrap_or_else(|_| {
            self.problem(name, format!("{v} is too large"));
            default
        })
    }

    /// A comma-separated list of CIDRs or single IPs.
    fn networks(&mut self, name: &str) -> Vec<IpNet> {
        let mut out = Vec::new();
        if let Some(v) = self.raw(name) {
            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let parsed = item
                    .parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from));
                match parsed {
                    Ok(net) => out.push(net),
                    Err(_) => {
                        let msg = format!("{item:?} is not a CIDR like 10.0.0.0/8 or an IP");
                        self.problem(name, msg);
                    }
                }
            }
        }
        out
    }

    fn positive_u64(&mut self, name: &str, default: u64) -> u64 {
        let v: u64 = self.parse(name, default, "a positive whole number");
        if v == 0 {
            self.problem(name, "must be greater than 0");
            return default;
        }
        v
    }
}

impl Config<GivenKeys> {
    /// Parses the configuration from a snapshot of the environment.
    pub fn from_env_map(env: &HashMap<String, String>) -> Result<Config<GivenKeys>, ConfigError> {
        let mut r = Reader {
            env,
            problems: Vec::new(),
        };

        let environment = match r.raw("PREFLIGHT_ENV").map(|v| v.to_ascii_lowercase()) {
            None => Environment::Development,
            Some(v) => match v.as_str() {
                "development" | "dev" | "local" | "test" => Environment::Development,
                "production" | "prod" => Environment::Production,
                _ => {
                    r.problem(
                        "PREFLIGHT_ENV",
                        format!("expected development or production, got {v:?}"),
                    );
                    Environment::Development
                }
            },
        };
        let production = environment == Environment::Production;

        let data_dir = PathBuf::from(r.raw("PREFLIGHT_DATA_DIR").unwrap_or("./data"));

        let postgres_password = r.raw("POSTGRES_PASSWORD").map(str::to_string);
        let database = match r.raw("DATABASE_URL") {
            None => {
                if production {
                    r.problem(
                        "DATABASE_URL",
                        "required in production (postgresql://user:pass@host:5432/db); \
                         the embedded store is for development only",
                    );
                }
                DatabaseConfig::Sqlite {
                    path: data_dir.join("preflight.db"),
                }
            }
            Some(url) => match parse_database_url(url, postgres_password.as_deref()) {
                Ok(db) => db,
                Err(why) => {
                    r.problem("DATABASE_URL", why);
                    DatabaseConfig::Sqlite {
                        path: data_dir.join("preflight.db"),
                    }
                }
            },
        };

        let redis_password = r.raw("REDIS_PASSWORD").map(str::to_string);
        let redis_url = match r.raw("REDIS_URL") {
            None => {
                if production {
                    r.problem(
                        "REDIS_URL",
                        "required in production so rate limits hold across replicas \
                         (redis://:password@host:6379)",
                    );
                }
                None
            }
            Some(url) => match parse_redis_url(url, redis_password.as_deref()) {
                Ok(u) => Some(Secret::new(u)),
                Err(why) => {
                    r.problem("REDIS_URL", why);
                    None
                }
            },
        };

        let jwt_secret = read_secret(&mut r, "JWT_SECRET", production);
        let api_key_salt = read_secret(&mut r, "API_KEY_SALT", production);

        let jwt_expire_minutes = r.positive_u64("JWT_EXPIRE_MINUTES", 60);
        let api_host: IpAddr = r.parse(
            "API_HOST",
            IpAddr::from([0, 0, 0, 0]),
            "an IP address such as 0.0.0.0",
        );
        let api_port: u16 = r.parse("API_PORT", 8000, "a port number 0-65535");
        let enable_docs = r.bool("ENABLE_DOCS", true);

        let allowed_origins: Vec<String> = r
            .raw("ALLOWED_ORIGINS")
            .map(|v| {
                v.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_string())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for origin in &allowed_origins {
            let ok = origin == "*"
                || Url::parse(origin)
                    .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                    .unwrap_or(false);
            if !ok {
                let msg = format!("{origin:?} is not an origin like https://app.example.com");
                r.problem("ALLOWED_ORIGINS", msg);
            }
        }

        let sentry_dsn = r.raw("SENTRY_DSN").map(Secret::new);
        if let Some(dsn) = &sentry_dsn {
            if Url::parse(dsn.expose()).is_err() {
                r.problem("SENTRY_DSN", "not a URL like https://key@sentry.io/project");
            }
        }
        let sentry_environment = r.raw("SENTRY_ENVIRONMENT").map(str::to_string);
        let sentry_traces_sample_rate: f32 = r.fraction("SENTRY_TRACES_SAMPLE_RATE", 0.0) as f32;

        let rate_limit_per_minute = r.positive::<u32>("RATE_LIMIT_PER_MINUTE", 1000);
        let rate_limit_unauthenticated = r.positive::<u32>("RATE_LIMIT_UNAUTHENTICATED", 10);
        let rate_limit_fail_closed = r.bool("RATE_LIMIT_FAIL_CLOSED", false);
        let ready_require_redis = r.bool("READY_REQUIRE_REDIS", false);

        let trusted_proxies = r.networks("TRUSTED_PROXIES");

        let max_request_body_size =
            r.positive::<usize>("MAX_REQUEST_BODY_SIZE", DEFAULT_BODY_LIMIT);

        let log_level = r.raw("LOG_LEVEL").unwrap_or("info").to_ascii_lowercase();
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            let msg = format!("expected trace, debug, info, warn or error, got {log_level:?}");
            r.problem("LOG_LEVEL", msg);
        }
        let default_format = if production {
            LogFormat::Json
        } else {
            LogFormat::Pretty
        };
        let log_format = match r.raw("LOG_FORMAT").map(|v| v.to_ascii_lowercase()) {
            None => default_format,
            Some(v) => match v.as_str() {
                "json" => LogFormat::Json,
                "pretty" | "text" => LogFormat::Pretty,
                _ => {
                    r.problem("LOG_FORMAT", format!("expected json or pretty, got {v:?}"));
                    default_format
                }
            },
        };
        let allow_signup = r.bool("ALLOW_SIGNUP", !production);

        let database_max_connections = r.positive::<u32>("DATABASE_MAX_CONNECTIONS", 10);
        let database_connect_timeout =
            Duration::from_secs(r.positive_u64("DATABASE_CONNECT_TIMEOUT_SECONDS", 5));
        let database_statement_timeout =
            Duration::from_secs(r.positive_u64("DATABASE_STATEMENT_TIMEOUT_SECONDS", 10));
        let redis_timeout = Duration::from_millis(r.positive_u64("REDIS_TIMEOUT_MS", 250));
        let shutdown_grace = Duration::from_secs(r.positive_u64("SHUTDOWN_GRACE_SECONDS", 20));
        let login_max_failures = r.positive::<u32>("LOGIN_MAX_FAILURES", 5).min(1000);
        let login_lockout = Duration::from_secs(r.positive_u64("LOGIN_LOCKOUT_SECONDS", 900));

        let template_cache_max = r.positive::<usize>("TEMPLATE_CACHE_MAX_TEMPLATES", 100_000);

        let webhook_allowed_cidrs = r.networks("WEBHOOK_ALLOWED_CIDRS");
        let mut retry_schedule: Vec<Duration> = DEFAULT_WEBHOOK_RETRY_SECONDS
            .iter()
            .map(|s| Duration::from_secs(*s))
            .collect();
        if let Some(v) = r.raw("WEBHOOK_RETRY_SECONDS") {
            let parsed: Result<Vec<u64>, _> =
                v.split(',').map(|x| x.trim().parse::<u64>()).collect();
            match parsed {
                Ok(secs)
                    if !secs.is_empty()
                        && secs.len() <= 30
                        && secs.iter().all(|s| (1..=604_800).contains(s)) =>
                {
                    retry_schedule = secs.into_iter().map(Duration::from_secs).collect();
                }
                _ => r.problem(
                    "WEBHOOK_RETRY_SECONDS",
                    "expected 1 to 30 comma-separated waits of 1 to 604800 seconds, e.g. 5,30,120",
                ),
            }
        }
        let webhook_timeout =
            Duration::from_secs(r.positive_u64("WEBHOOK_TIMEOUT_SECONDS", 10).min(60));
        let circuit_cooldown =
            Duration::from_secs(r.positive_u64("WEBHOOK_CIRCUIT_SECONDS", 30).min(3600));
        let disable_after =
            Duration::from_secs(r.positive_u64("WEBHOOK_DISABLE_AFTER_SECONDS", 432_000));
        let window_check_every =
            Duration::from_secs(r.positive_u64("ALERT_WINDOW_CHECK_SECONDS", 15).min(3600));
        let enforce_quota = r.bool("USAGE_ENFORCE_QUOTA", false);
        let sample_match_rate = r.fraction("REVIEW_SAMPLE_MATCH_RATE", 0.0);

        if !r.problems.is_empty() {
            return Err(ConfigError {
                problems: r.problems,
            });
        }
        Ok(Config {
            environment,
            data_dir,
            server: ServerConfig {
                host: api_host,
                port: api_port,
                enable_docs,
                allowed_origins,
                trusted_proxies,
                max_request_body_size,
                shutdown_grace,
            },
            storage: StorageConfig {
                database,
                max_connections: database_max_connections,
                connect_timeout: database_connect_timeout,
                statement_timeout: database_statement_timeout,
                template_cache_max,
            },
            redis: RedisConfig {
                url: redis_url,
                timeout: redis_timeout,
                ready_require: ready_require_redis,
            },
            auth: AuthConfig {
                keys: GivenKeys {
                    jwt_secret,
                    api_key_salt,
                },
                jwt_expire_minutes,
                allow_signup,
                login_max_failures,
                login_lockout,
            },
            limits: LimitsConfig {
                per_minute: rate_limit_per_minute,
                unauthenticated: rate_limit_unauthenticated,
                fail_closed: rate_limit_fail_closed,
            },
            telemetry: TelemetryConfig {
                log_level,
                log_format,
                sentry_dsn,
                sentry_environment,
                sentry_traces_sample_rate,
            },
            webhooks: WebhookConfig {
                allowed_cidrs: webhook_allowed_cidrs,
                retry_schedule,
                timeout: webhook_timeout,
                circuit_cooldown,
                disable_after,
            },
            alerts: AlertsConfig { window_check_every },
            usage: UsageConfig { enforce_quota },
            review: ReviewConfig { sample_match_rate },
        })
    }

    /// Parses the process environment.
    pub fn from_process_env() -> Result<Config<GivenKeys>, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Config::from_env_map(&env)
    }

    /// The same configuration with its keys resolved.
    pub fn with_keys(self, keys: AuthKeys) -> Config {
        Config {
            environment: self.environment,
            data_dir: self.data_dir,
            server: self.server,
            storage: self.storage,
            redis: self.redis,
            auth: AuthConfig {
                keys,
                jwt_expire_minutes: self.auth.jwt_expire_minutes,
                allow_signup: self.auth.allow_signup,
                login_max_failures: self.auth.login_max_failures,
                login_lockout: self.auth.login_lockout,
            },
            limits: self.limits,
            telemetry: self.telemetry,
            webhooks: self.webhooks,
            alerts: self.alerts,
            usage: self.usage,
            review: self.review,
        }
    }
}

impl<K> Config<K> {
    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self.storage.database, DatabaseConfig::Sqlite { .. })
    }
}

/// Values people paste from examples; accepting them would make every install share a key.
const PLACEHOLDER_MARKERS: [&str; 8] = [
    "your-secret",
    "your-salt",
    "change",
    "replace",
    "example",
    "placeholder",
    "secret-here",
    "salt-here",
];

/// Why a secret is unfit for use, if it is.
pub fn secret_weakness(value: &str) -> Option<String> {
    if value.chars().count() < MIN_SECRET_LEN {
        return Some(format!(
            "must be at least {MIN_SECRET_LEN} characters (generate one with `openssl rand -hex 32`)"
        ));
    }
    let lower = value.to_ascii_lowercase();
    if PLACEHOLDER_MARKERS.iter().any(|m| lower.contains(m)) {
        return Some("looks like a placeholder; generate one with `openssl rand -hex 32`".into());
    }
    let distinct: std::collections::BTreeSet<char> = value.chars().collect();
    if distinct.len() < 8 {
        return Some("has too little variety to be random; use `openssl rand -hex 32`".into());
    }
    None
}

fn read_secret(r: &mut Reader<'_>, name: &str, production: bool) -> Option<Secret> {
    match r.raw(name) {
        None => {
            if production {
                r.problem(name, "required in production (`openssl rand -hex 32`)");
            }
            None
        }
        Some(v) => {
            if let Some(why) = secret_weakness(v) {
                r.problem(name, why);
                None
            } else {
                Some(Secret::new(v))
            }
        }
    }
}

/// Accepts `postgres://`, `postgresql://`, `postgresql+asyncpg://` and `sqlite://PATH`.
pub fn parse_database_url(raw: &str, password: Option<&str>) -> Result<DatabaseConfig, String> {
    let lower = raw.to_ascii_lowercase();
    if let Some(path) = lower
        .strip_prefix("sqlite:")
        .map(|_| &raw["sqlite:".len()..])
    {
        let path = path.trim_start_matches("//");
        let path = path.split('?').next().unwrap_or("");
        if path.is_empty() || path == ":memory:" {
            return Err("sqlite:// needs a file path, e.g. sqlite://./data/preflight.db".into());
        }
        return Ok(DatabaseConfig::Sqlite {
            path: PathBuf::from(path),
        });
    }
    let scheme_end = raw
        .find("://")
        .ok_or_else(|| "expected postgresql://user:pass@host:port/db".to_string())?;
    let scheme = lower[..scheme_end].to_string();
    if !matches!(
        scheme.as_str(),
        "postgres" | "postgresql" | "postgresql+asyncpg" | "postgres+asyncpg"
    ) {
        return Err(format!(
            "unsupported scheme {scheme:?}; use postgresql://, postgresql+asyncpg:// or sqlite://"
        ));
    }
    let normalized = format!("postgres{}", &raw[scheme_end..]);
    let mut url =
        Url::parse(&normalized).map_err(|e| format!("not a valid PostgreSQL URL ({e})"))?;
    if url.host_str().map(str::is_empty).unwrap_or(true) {
        return Err("the PostgreSQL URL has no host".into());
    }
    if url.password().is_none() {
        if let Some(pw) = password {
            url.set_password(Some(pw))
                .map_err(|_| "cannot apply POSTGRES_PASSWORD to this URL".to_string())?;
        }
    }
    Ok(DatabaseConfig::Postgres {
        url: url.to_string(),
    })
}

/// Accepts `redis://[:password@]host[:port][/db]` and `rediss://` (TLS).
pub fn parse_redis_url(raw: &str, password: Option<&str>) -> Result<String, String> {
    let mut url = Url::parse(raw).map_err(|e| format!("not a valid Redis URL ({e})"))?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(format!(
            "unsupported scheme {:?}; use redis:// or rediss://",
            url.scheme()
        ));
    }
    if url.host_str().map(str::is_empty).unwrap_or(true) {
        return Err("the Redis URL has no host".into());
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(format!("database {db:?} must be a number"));
    }
    if url.password().is_none() {
        if let Some(pw) = password {
            url.set_password(Some(pw))
                .map_err(|_| "cannot apply REDIS_PASSWORD to this URL".to_string())?;
        }
    }
    Ok(url.to_string())
}

/// The URL with any password replaced, for logs and error messages.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparsable url>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const GOOD: &str = "5f0c1e9a7b3d42c8a6e1f0b9d8c7a6e5f4d3c2b1";

    #[test]
    fn defaults_are_the_guides() {
        let c = Config::from_env_map(&env(&[])).unwrap();
        assert_eq!(c.server.port, 8000);
        assert_eq!(c.server.host.to_string(), "0.0.0.0");
        assert!(c.server.enable_docs);
        assert_eq!(c.limits.per_minute, 1000);
        assert_eq!(c.limits.unauthenticated, 10);
        assert_eq!(c.auth.jwt_expire_minutes, 60);
        assert_eq!(c.server.max_request_body_size, 1024 * 1024);
        assert!(c.is_embedded());
        assert!(c.redis.url.is_none());
        assert_eq!(c.telemetry.log_format, LogFormat::Pretty);
        assert!(c.auth.allow_signup);
    }

    #[test]
    fn production_names_every_problem() {
        let e = Config::from_env_map(&env(&[
            ("PREFLIGHT_ENV", "production"),
            ("JWT_SECRET", "short"),
            ("API_PORT", "eighty"),
        ]))
        .unwrap_err();
        let vars: Vec<&str> = e.problems.iter().map(|(v, _)| v.as_str()).collect();
        for expected in [
            "DATABASE_URL",
            "REDIS_URL",
            "JWT_SECRET",
            "API_KEY_SALT",
            "API_PORT",
        ] {
            assert!(vars.contains(&expected), "{expected} missing from {vars:?}");
        }
    }

    #[test]
    fn the_review_sample_rate_is_a_share() {
        let rate = |v: &str| {
            Config::from_env_map(&env(&[("REVIEW_SAMPLE_MATCH_RATE", v)]))
                .map(|c| c.review.sample_match_rate)
                .map_err(|e| {
                    e.problems
                        .iter()
                        .map(|(n, _)| n.clone())
                        .collect::<Vec<_>>()
                })
        };
        assert_eq!(
            Config::from_env_map(&env(&[]))
                .unwrap()
                .review
                .sample_match_rate,
            0.0
        );
        assert_eq!(rate("0.05"), Ok(0.05));
        for bad in ["1.5", "-0.1", "NaN", "often"] {
            assert_eq!(
                rate(bad),
                Err(vec!["REVIEW_SAMPLE_MATCH_RATE".to_string()]),
                "{bad}"
            );
        }
    }

    #[test]
    fn placeholders_are_refused() {
        assert!(secret_weakness("your-secret-here-your-secret-here-xx").is_some());
        assert!(secret_weakness(&"a".repeat(40)).is_some());
        assert!(secret_weakness(GOOD).is_none());
    }

    #[test]
    fn database_url_forms() {
        let pg = |u: &str| match parse_database_url(u, Some("pw")).unwrap() {
            DatabaseConfig::Postgres { url } => url,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            pg("postgresql+asyncpg://user:pass@host:5432/db"),
            "postgres://user:pass@host:5432/db"
        );
        assert_eq!(
            pg("postgresql://user@host:5432/db"),
            "postgres://user:pw@host:5432/db"
        );
        assert_eq!(pg("postgres://u:p@h/db"), "postgres://u:p@h/db");
        assert_eq!(
            parse_database_url("sqlite://./data/x.db", None).unwrap(),
            DatabaseConfig::Sqlite {
                path: PathBuf::from("./data/x.db")
            }
        );
        assert!(parse_database_url("mysql://h/db", None).is_err());
        assert!(parse_database_url("nonsense", None).is_err());
    }

    #[test]
    fn redis_url_forms() {
        assert_eq!(
            parse_redis_url("redis://:pass@host:6379", None).unwrap(),
            "redis://:pass@host:6379"
        );
        assert_eq!(
            parse_redis_url("redis://host:6379/2", Some("pw")).unwrap(),
            "redis://:pw@host:6379/2"
        );
        assert!(parse_redis_url("rediss://host:6380", None).is_ok());
        assert!(parse_redis_url("http://host", None).is_err());
        assert!(parse_redis_url("redis://host/abc", None).is_err());
    }

    #[test]
    fn redaction_hides_passwords() {
        let r = redact_url("postgres://user:hunter2@host/db");
        assert!(!r.contains("hunter2"));
        assert!(format!("{:?}", Secret::new("hunter2"))
            .find("hunter2")
            .is_none());
    }

    #[test]
    fn bad_values_are_reported_not_defaulted_silently() {
        let e = Config::from_env_map(&env(&[
            ("ENABLE_DOCS", "maybe"),
            ("TRUSTED_PROXIES", "10.0.0.0/8,nope"),
            ("ALLOWED_ORIGINS", "https://ok.example.com,not an origin"),
            ("MAX_REQUEST_BODY_SIZE", "0"),
        ]))
        .unwrap_err();
        let vars: Vec<&str> = e.problems.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(
            vars,
            [
                "ENABLE_DOCS",
                "ALLOWED_ORIGINS",
                "TRUSTED_PROXIES",
                "MAX_REQUEST_BODY_SIZE"
            ]
        );
    }

    #[test]
    fn numbers_too_large_for_their_setting_are_refused_not_truncated() {
        let e = Config::from_env_map(&env(&[
            ("RATE_LIMIT_PER_MINUTE", "4294967296"),
            ("DATABASE_MAX_CONNECTIONS", "4294967297"),
        ]))
        .unwrap_err();
        let vars: Vec<&str> = e.problems.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(vars, ["RATE_LIMIT_PER_MINUTE", "DATABASE_MAX_CONNECTIONS"]);
        assert!(e.problems[0].1.contains("too large"));
        let ok = Config::from_env_map(&env(&[("RATE_LIMIT_PER_MINUTE", "4294967295")])).unwrap();
        assert_eq!(ok.limits.per_minute, u32::MAX);
    }
}
