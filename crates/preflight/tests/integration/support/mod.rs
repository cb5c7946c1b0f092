//! Shared test harness: spawns the real `preflight` binary on a free port and talks HTTP to
//! it, against real PostgreSQL and Redis (one database per test) or the embedded default.
#![allow(dead_code)]

pub mod relay;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PG_ADMIN_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const REDIS_URL_DEFAULT: &str = "redis://127.0.0.1:6379";

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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .unwrap()
        .port()
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
            "Redis is required for this test and is not reachable at {}: {e}. Start it (see .ci/run).",
            redis_url()
        ),
    };
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
}

/// A running `preflight serve` process.
pub struct TestServer {
    pub port: u16,
    pub base: String,
    child: Option<Child>,
    pub data_dir: tempfile::TempDir,
    log_path: PathBuf,
}

pub struct ServerOptions {
    pub env: HashMap<String, String>,
    /// Wait for /health before returning.
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

impl TestServer {
    pub async fn start(options: ServerOptions) -> TestServer {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log_path = data_dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = clean_command(data_dir.path());
        cmd.arg("serve")
            .env("API_HOST", "127.0.0.1")
            .env("API_PORT", port.to_string())
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "info")
            .envs(&options.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().expect("spawn preflight");
        let server = TestServer {
            port,
            base: format!("http://127.0.0.1:{port}"),
            child: Some(child),
            data_dir,
            log_path,
        };
        if options.wait_healthy {
            server.wait_healthy(Duration::from_secs(60)).await;
        }
        server
    }

    pub async fn wait_healthy(&self, limit: Duration) {
        let started = Instant::now();
        let client = http_client();
        loop {
            if let Ok(r) = client.get(self.url("/health")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if started.elapsed() > limit {
                panic!("server did not become healthy; log:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
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
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return status.code();
            }
            if started.elapsed() > limit {
                panic!(
                    "server did not exit within {limit:?}; log:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
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
