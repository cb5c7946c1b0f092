//! The one harness of the integration tests: spawns the real `preflight` binary and talks
//! HTTP to it, against real PostgreSQL and Redis (one database per test) or the embedded
//! default; plus the TCP relay that cuts those dependencies, and polling helpers.
//!
//! The server binds port 0 and the harness reads the bound address from its "preflight
//! listening" log line, so parallel tests never race for a port.

pub mod relay;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PG_ADMIN_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const REDIS_URL_DEFAULT: &str = "redis://127.0.0.1:6379";

/// How often [`eventually`] looks again: short against the seconds-long bounds the tests
/// allow, long enough not to load a busy machine.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A strong secret for tests (random per process, never a placeholder).
pub fn test_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

pub fn pg_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| PG_ADMIN_URL_DEFAULT.to_string())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| REDIS_URL_DEFAULT.to_string())
}

/// Polls `check` until it yields a value, for at most `limit`; `None` once the limit has
/// passed, so the caller panics with what it knows about the state it waited for.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A local port nothing listens on, for as long as this value lives. The socket is bound
/// but never listens: connecting to it is refused, and because it holds the port no other
/// test can start listening there meanwhile (which a port released after `bind` allows).
pub struct ClosedPort {
    pub port: u16,
    _socket: tokio::net::TcpSocket,
}

impl ClosedPort {
    pub fn hold() -> ClosedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("create a socket");
        socket
            .bind("127.0.0.1:0".parse().unwrap())
            .expect("bind an ephemeral port");
        ClosedPort {
            port: socket.local_addr().unwrap().port(),
            _socket: socket,
        }
    }
}

/// A fresh PostgreSQL database for one test, dropped afterwards.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let admin_url = pg_admin_url();
        let name = format!("preflight_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = connect_pg(&admin_url).await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin_url.rsplit_once('/').unwrap().0.to_string();
        TestDatabase {
            url: format!("{base}/{name}"),
            name,
            admin_url,
        }
    }

    /// The same database reached through another host:port (e.g. a relay).
    pub fn url_via(&self, port: u16) -> String {
        let after_at = self
            .url
            .split_once('@')
            .map(|(a, _)| a)
            .unwrap_or("postgres://postgres");
        format!("{after_at}@127.0.0.1:{port}/{}", self.name)
    }
}

async fn connect_pg(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    match sqlx::PgConnection::connect(url).await {
        Ok(c) => c,
        Err(e) => panic!(
            "PostgreSQL is required for this test and is not reachable at {url}: {e}. \
             Start it (see .ci/run) or set TEST_POSTGRES_URL."
        ),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee; use a small dedicated one.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Fails loudly when Redis is not there: these tests must not pass without it.
pub async fn require_redis() {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = match client.get_multiplexed_async_connection().await {
        Ok(c) => c,
        Err(e) => panic!(
            "Redis is required for this test and is not reachable at {}: {e}. Start it \
             (see .ci/run) or set TEST_REDIS_URL.",
            redis_url()
        ),
    };
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
}

/// A running `preflight serve` process.
pub struct TestServer {
    /// Where the server listens, as it logged it; a restarted server gets a new one.
    pub addr: SocketAddr,
    pub port: u16,
    pub base: String,
    child: Option<Child>,
    pub data_dir: tempfile::TempDir,
    log_path: PathBuf,
}

pub struct ServerOptions {
    pub env: HashMap<String, String>,
    /// Wait for /health before returning (the listening address is always waited for).
    pub wait_healthy: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            env: HashMap::new(),
            wait_healthy: true,
        }
    }
}

impl ServerOptions {
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.insert(key.to_string(), value.into());
        self
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_preflight")
}

/// A command for the binary with a clean environment: only what the test passes.
pub fn clean_command(data_dir: &Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PREFLIGHT_DATA_DIR", data_dir)
        .current_dir(data_dir);
    cmd
}

/// Generous: a cold start on a loaded two-core machine (migrations, password hashing of
/// the first-start key) takes seconds.
const START_LIMIT: Duration = Duration::from_secs(60);

impl TestServer {
    pub async fn start(options: ServerOptions) -> TestServer {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let log_path = data_dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = clean_command(data_dir.path());
        cmd.arg("serve")
            .env("API_HOST", "127.0.0.1")
            // The kernel picks a free port while the server binds it; the server logs it.
            .env("API_PORT", "0")
            // The listening line is found by parsing JSON lines.
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "info")
            .envs(&options.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().expect("spawn preflight");
        // Built before the address is known so that Drop kills the child if waiting panics.
        let mut server = TestServer {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            port: 0,
            base: String::new(),
            child: Some(child),
            data_dir,
            log_path,
        };
        let addr = server.wait_listening(START_LIMIT).await;
        server.addr = addr;
        server.port = addr.port();
        server.base = format!("http://{addr}");
        if options.wait_healthy {
            server.wait_healthy(START_LIMIT).await;
        }
        server
    }

    /// The address from the "preflight listening" line, once the server has written it.
    async fn wait_listening(&mut self, limit: Duration) -> SocketAddr {
        let log_path = self.log_path.clone();
        let child = self.child.as_mut().unwrap();
        let found = eventually(limit, || {
            // Exit status first: a server that logged and then exited still counts as started.
            let exited = child.try_wait().unwrap();
            let logs = std::fs::read_to_string(&log_path).unwrap_or_default();
            let addr = listening_address(&logs);
            if let (None, Some(status)) = (addr, exited) {
                panic!("server exited ({status}) before listening; log:\n{logs}");
            }
            std::future::ready(addr)
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "server did not log a \"preflight listening\" address within {limit:?}; log:\n{}",
                self.logs()
            )
        })
    }

    pub async fn wait_healthy(&self, limit: Duration) {
        let client = &http_client();
        let health = &self.url("/health");
        let healthy = eventually(limit, || async move {
            let r = client.get(health).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        if healthy.is_none() {
            panic!("server did not become healthy; log:\n{}", self.logs());
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The tenant-admin key printed once in the first-start banner (development mode on an
    /// empty database). The banner is written before the server listens, so it is there
    /// once the server is healthy.
    pub fn first_start_key(&self) -> String {
        let logs = self.logs();
        let marker = "PREFLIGHT_API_KEY=";
        let at = logs
            .find(&format!("{marker}pf_"))
            .unwrap_or_else(|| panic!("no first-start key in the output:\n{logs}"))
            + marker.len();
        logs[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal).unwrap();
    }

    /// Waits for the process to exit and returns its exit status code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let child = self.child.as_mut().unwrap();
        let status = eventually(limit, || std::future::ready(child.try_wait().unwrap())).await;
        match status {
            Some(status) => status.code(),
            None => panic!(
                "server did not exit within {limit:?}; log:\n{}",
                self.logs()
            ),
        }
    }
}

/// The address of the JSON log line `{"message":"preflight listening","address":...}`.
/// Lines that are not (yet complete) JSON are skipped: the banner is plain text, and the
/// file may be read in the middle of a write.
fn listening_address(logs: &str) -> Option<SocketAddr> {
    logs.lines().find_map(|line| {
        let event: serde_json::Value = serde_json::from_str(line).ok()?;
        if event["message"] != "preflight listening" {
            return None;
        }
        event["address"].as_str()?.parse().ok()
    })
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}
