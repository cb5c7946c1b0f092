//! The foundation end to end: the real binary on ports the kernel picks, embedded and with real
//! PostgreSQL + Redis, probes, faults, configuration, HTTP plumbing and shutdown.

use std::time::{Duration, Instant};

use crate::support::relay::Relay;
use crate::support::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get_json(url: &str) -> (StatusCode, Value) {
    let r = http_client().get(url).send().await.expect("request");
    let status = r.status();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

fn postgres_target() -> String {
    let url = pg_admin_url();
    let host = url.split('@').nth(1).unwrap().split('/').next().unwrap();
    host.to_string()
}

fn redis_target() -> String {
    redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string()
}

#[tokio::test]
async fn embedded_mode_starts_from_an_empty_directory_with_no_configuration() {
    let server = TestServer::start(ServerOptions::default()).await;

    let (status, body) = get_json(&server.url("/health")).await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"status": "healthy"}));

    let (status, body) = get_json(&server.url("/ready")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["services"]["database"]["healthy"], true);
    assert!(body["services"]["database"]["latency_ms"].is_number());
    assert_eq!(body["services"]["database"]["backend"], "sqlite");
    assert_eq!(body["services"]["redis"]["healthy"], true);
    assert_eq!(body["services"]["redis"]["backend"], "in-process");

    let dir = server.data_dir.path();
    assert!(dir.join("preflight.db").exists());
    let secrets = std::fs::read_to_string(dir.join("dev-secrets.json")).unwrap();
    assert!(server.logs().contains("generated development secrets"));
    // Secrets are kept for restarts and never printed.
    let stored: Value = serde_json::from_str(&secrets).unwrap();
    let jwt = stored["jwt_secret"].as_str().unwrap();
    assert!(jwt.len() >= 32);
    assert!(!server.logs().contains(jwt));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("dev-secrets.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "secrets file must be private");
    }
}

#[tokio::test]
async fn dev_secrets_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestServer::start(
        ServerOptions::default().with("PREFLIGHT_DATA_DIR", dir.path().to_str().unwrap()),
    )
    .await;
    let before = std::fs::read(dir.path().join("dev-secrets.json")).unwrap();
    drop(first);
    let second = TestServer::start(
        ServerOptions::default().with("PREFLIGHT_DATA_DIR", dir.path().to_str().unwrap()),
    )
    .await;
    let after = std::fs::read(dir.path().join("dev-secrets.json")).unwrap();
    assert_eq!(before, after);
    assert!(!second.logs().contains("generated development secrets"));
}

/// A private Redis with a password, so the guide's `redis://:password@host:port` form is
/// exercised for real.
struct PasswordRedis {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl PasswordRedis {
    fn start(password: &str) -> PasswordRedis {
        // redis-server cannot be told to take any free port and report it, so it gets a port
        // that was free a moment ago; should something else take it first, redis-server
        // exits and another port is tried.
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            if let Some(redis) = PasswordRedis::try_start(password) {
                return redis;
            }
        }
        panic!("redis-server found its port taken {ATTEMPTS} times in a row");
    }

    /// `None` when the port was taken before redis-server could bind it.
    fn try_start(password: &str) -> Option<PasswordRedis> {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind an ephemeral port")
            .port();
        let log_path = dir.path().join("redis.log");
        let mut child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--requirepass",
                password,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                dir.path().to_str().unwrap(),
                // Its own log tells whether *it* listens, which a connect to the port cannot.
                "--logfile",
                log_path.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed for this test (see .ci/run)");
        let started = Instant::now();
        loop {
            let exited = child.try_wait().unwrap();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log.contains("Ready to accept connections") {
                break;
            }
            if let Some(status) = exited {
                assert!(
                    log.contains("Address already in use"),
                    "redis-server exited ({status}):\n{log}"
                );
                return None;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(PasswordRedis {
            port,
            child,
            _dir: dir,
        })
    }
}

impl Drop for PasswordRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn postgres_and_redis_with_the_guides_url_forms() {
    require_redis().await;
    let db = TestDatabase::create().await;
    let redis = PasswordRedis::start("s3cret-redis-pw");
    // The guide's forms, verbatim in shape: postgresql+asyncpg://user:pass@host:port/db and
    // redis://:password@host:port.
    let database_url = format!(
        "postgresql+asyncpg://postgres:unused@{}/{}",
        postgres_target(),
        db.name
    );
    let server = TestServer::start(
        ServerOptions::default()
            .with("DATABASE_URL", database_url)
            .with(
                "REDIS_URL",
                format!("redis://:s3cret-redis-pw@127.0.0.1:{}", redis.port),
            )
            .with("JWT_SECRET", test_secret())
            .with("API_KEY_SALT", test_secret()),
    )
    .await;
    let (status, body) = wait_for_ready_status(&server, "ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["services"]["database"]["backend"], "postgresql");
    assert_eq!(body["services"]["redis"]["backend"], "redis");
    assert!(body["services"]["redis"]["latency_ms"].is_number());
    assert!(
        !server.logs().contains("s3cret-redis-pw"),
        "password leaked into logs"
    );

    // A wrong Redis password is an unhealthy Redis, not a crash.
    let wrong = TestServer::start(
        ServerOptions::default()
            .with("DATABASE_URL", db.url.clone())
            .with(
                "REDIS_URL",
                format!("redis://:wrong-password@127.0.0.1:{}", redis.port),
            )
            .with("JWT_SECRET", test_secret())
            .with("API_KEY_SALT", test_secret()),
    )
    .await;
    let (status, body) = get_json(&wrong.url("/ready")).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "degraded");
}

/// Polls `/ready` until it reports `want` (connections come up in the background).
async fn wait_for_ready_status(server: &TestServer, want: &str) -> (StatusCode, Value) {
    let started = Instant::now();
    loop {
        let (status, body) = get_json(&server.url("/ready")).await;
        if body["status"] == want || started.elapsed() > Duration::from_secs(20) {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn timed_ready(server: &TestServer) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let (status, body) = get_json(&server.url("/ready")).await;
    (status, body, started.elapsed())
}

#[tokio::test]
async fn ready_follows_the_database_down_and_back_without_a_restart() {
    let db = TestDatabase::create().await;
    let relay = Relay::start(&postgres_target()).await;
    let server = TestServer::start(
        ServerOptions::default()
            .with("DATABASE_URL", db.url_via(relay.port))
            .with("DATABASE_CONNECT_TIMEOUT_SECONDS", "1"),
    )
    .await;
    let (status, body) = wait_for_ready_status(&server, "ready").await;
    assert_eq!(status, 200, "{body}");

    relay.close();
    let (status, body, took) = timed_ready(&server).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["services"]["database"]["healthy"], false);
    assert!(body["services"]["database"].get("latency_ms").is_none());
    assert_eq!(body["services"]["redis"]["healthy"], true);
    assert!(took < Duration::from_secs(2), "took {took:?}");

    relay.hang();
    let (status, _, took) = timed_ready(&server).await;
    assert_eq!(status, 503);
    assert!(
        took < Duration::from_secs(2),
        "a hanging database held /ready for {took:?}"
    );

    relay.open();
    let (status, body) = wait_for_ready_status(&server, "ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["services"]["database"]["healthy"], true);
}

#[tokio::test]
async fn ready_degrades_when_redis_is_down_and_recovers() {
    require_redis().await;
    let relay = Relay::start(&redis_target()).await;
    let server = TestServer::start(
        ServerOptions::default().with("REDIS_URL", format!("redis://127.0.0.1:{}", relay.port)),
    )
    .await;
    let (status, body) = wait_for_ready_status(&server, "ready").await;
    assert_eq!(status, 200, "{body}");

    relay.close();
    let (status, body) = wait_for_ready_status(&server, "degraded").await;
    assert_eq!(
        status, 200,
        "Redis down must not take the instance out: {body}"
    );
    assert_eq!(body["services"]["redis"]["healthy"], false);
    assert_eq!(body["services"]["database"]["healthy"], true);

    relay.hang();
    let (status, body, took) = timed_ready(&server).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "degraded");
    assert!(
        took < Duration::from_secs(2),
        "a hanging Redis held /ready for {took:?}"
    );

    relay.open();
    let (status, body) = wait_for_ready_status(&server, "ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["services"]["redis"]["healthy"], true);
}

#[tokio::test]
async fn ready_requires_redis_when_configured() {
    require_redis().await;
    let relay = Relay::start(&redis_target()).await;
    let server = TestServer::start(
        ServerOptions::default()
            .with("REDIS_URL", format!("redis://127.0.0.1:{}", relay.port))
            .with("READY_REQUIRE_REDIS", "true"),
    )
    .await;
    let (status, _) = wait_for_ready_status(&server, "ready").await;
    assert_eq!(status, 200);
    relay.close();
    let (status, body) = wait_for_ready_status(&server, "not_ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["services"]["redis"]["healthy"], false);
    relay.open();
    let (status, _) = wait_for_ready_status(&server, "ready").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn production_refuses_to_start_and_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    // The one server here given a port in advance: the test checks that nothing listens
    // there afterwards. The port stays held (bound, not listening) so that no other test's
    // listener can turn up on it.
    let closed = ClosedPort::hold();
    let port = closed.port;
    let out = clean_command(dir.path())
        .arg("serve")
        .env("PREFLIGHT_ENV", "production")
        .env("API_PORT", port.to_string())
        .env("JWT_SECRET", "changeme")
        .env("RATE_LIMIT_PER_MINUTE", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for var in [
        "JWT_SECRET",
        "API_KEY_SALT",
        "DATABASE_URL",
        "REDIS_URL",
        "RATE_LIMIT_PER_MINUTE",
    ] {
        assert!(stderr.contains(var), "{var} not named in: {stderr}");
    }
    assert!(
        !stderr.contains("changeme"),
        "the rejected secret was echoed: {stderr}"
    );
    // It never generated secrets nor created an embedded database.
    assert!(!dir.path().join("dev-secrets.json").exists());
    assert!(!dir.path().join("preflight.db").exists());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[tokio::test]
async fn production_refuses_an_unmigrated_database_and_migrate_fixes_it() {
    require_redis().await;
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let production = |cmd: &mut std::process::Command| {
        cmd.env("PREFLIGHT_ENV", "production")
            .env("DATABASE_URL", &db.url)
            .env("REDIS_URL", redis_url())
            .env("JWT_SECRET", test_secret())
            .env("API_KEY_SALT", test_secret())
            .env("API_HOST", "127.0.0.1")
            // serve must refuse before listening and migrate never listens.
            .env("API_PORT", "0");
    };
    let mut serve = clean_command(dir.path());
    serve.arg("serve");
    production(&mut serve);
    let out = serve.output().unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("preflight migrate"), "{text}");

    let mut migrate = clean_command(dir.path());
    migrate.arg("migrate");
    production(&mut migrate);
    let out = migrate.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Idempotent.
    let mut again = clean_command(dir.path());
    again.arg("migrate");
    production(&mut again);
    assert!(again.output().unwrap().status.success());

    let server = TestServer::start(
        ServerOptions::default()
            .with("PREFLIGHT_ENV", "production")
            .with("DATABASE_URL", db.url.clone())
            .with("REDIS_URL", redis_url())
            .with("JWT_SECRET", test_secret())
            .with("API_KEY_SALT", test_secret()),
    )
    .await;
    let (status, body) = wait_for_ready_status(&server, "ready").await;
    assert_eq!(status, 200, "{body}");
    // Production logs are JSON lines.
    let first_line = server.logs().lines().next().unwrap_or_default().to_string();
    assert!(
        serde_json::from_str::<Value>(&first_line).is_ok(),
        "{first_line}"
    );
    assert!(!dir.path().join("dev-secrets.json").exists());
}

#[tokio::test]
async fn every_error_is_problem_json_with_a_request_id() {
    let server = TestServer::start(ServerOptions::default()).await;
    let client = http_client();

    let r = client
        .get(server.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(body["code"], "NOT_FOUND");
    assert_eq!(body["request_id"], rid);
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "{field} missing: {body}");
    }

    let r = client.post(server.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "METHOD_NOT_ALLOWED");

    // A sane client id is kept; an unsafe or overlong one is replaced.
    let r = client
        .get(server.url("/health"))
        .header("x-request-id", "pipeline-42.run_7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "pipeline-42.run_7");
    let long = "a".repeat(129);
    let r = client
        .get(server.url("/health"))
        .header("x-request-id", &long)
        .send()
        .await
        .unwrap();
    let got = r.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(got, long);
    assert!(!got.is_empty());
    let r = client
        .get(server.url("/health"))
        .header("x-request-id", "bad id<script>")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "bad id<script>");

    // Security headers on every response.
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(r.headers().contains_key("content-security-policy"));
}

#[tokio::test]
async fn declared_bodies_over_the_limit_are_refused_with_413() {
    let server =
        TestServer::start(ServerOptions::default().with("MAX_REQUEST_BODY_SIZE", "1024")).await;
    let r = http_client()
        .post(server.url("/health"))
        .header("content-type", "application/json")
        .body(vec![b' '; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn cors_preflight_allows_only_configured_origins() {
    let server = TestServer::start(ServerOptions::default().with(
        "ALLOWED_ORIGINS",
        "https://app.example.com, https://ops.example.com",
    ))
    .await;
    let client = http_client();
    let preflight = |origin: &'static str| {
        client
            .request(
                reqwest::Method::OPTIONS,
                server.url("/v1/templates/abc/status"),
            )
            .header("origin", origin)
            .header("access-control-request-method", "PATCH")
            .header("access-control-request-headers", "x-api-key, content-type")
            .send()
    };
    let r = preflight("https://app.example.com").await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let methods = r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(methods.contains("PATCH"), "{methods}");
    let allowed_headers = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed_headers.contains("x-api-key"), "{allowed_headers}");

    let r = preflight("https://evil.example.net").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // No ALLOWED_ORIGINS: no CORS at all.
    let plain = TestServer::start(ServerOptions::default()).await;
    let r = client
        .get(plain.url("/health"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn docs_are_served_from_the_binary_and_can_be_turned_off() {
    let server = TestServer::start(ServerOptions::default()).await;
    let client = http_client();
    let r = client.get(server.url("/docs")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("swagger-ui"));
    assert!(
        !html.contains("cdn"),
        "docs must not load assets from a CDN"
    );
    for asset in [
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/docs/init.js",
    ] {
        let r = client.get(server.url(asset)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(r.bytes().await.unwrap().len() > 100, "{asset} is empty");
    }
    let (status, spec) = get_json(&server.url("/openapi.json")).await;
    assert_eq!(status, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/health", "/ready", "/metrics"] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from the spec"
        );
    }

    // Each route documents the query parameters it takes, and no others: `interval` only on
    // the timeseries (the other analytics routes answer 400 to it), `status` only on the
    // queue's listing (claim-next takes open items and answers 422 to it), and numbers as
    // numbers.
    let params = |path: &str, method: &str| -> Vec<String> {
        spec["paths"][path][method]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} has no parameters"))
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let has = |path: &str, method: &str, name: &str| params(path, method).iter().any(|p| p == name);
    assert!(has("/v1/analytics/timeseries", "get", "interval"));
    for route in ["summary", "extractors", "templates", "calibration"] {
        let path = format!("/v1/analytics/{route}");
        assert!(!has(&path, "get", "interval"), "{path}");
        assert!(
            has(&path, "get", "from_ts") && has(&path, "get", "tz"),
            "{path}"
        );
    }
    assert!(has("/v1/review-items", "get", "status"));
    assert!(!has("/v1/review-items/claim-next", "post", "status"));
    assert!(has("/v1/review-items/claim-next", "post", "template_id"));
    let min_size = spec["paths"]["/v1/template-suggestions"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "min_size")
        .unwrap()["schema"]
        .clone();
    let integer = min_size["type"] == "integer" || min_size["type"] == json!(["integer", "null"]);
    assert!(integer, "{min_size}");
    assert_eq!(
        (&min_size["minimum"], &min_size["maximum"]),
        (&json!(2), &json!(5000)),
        "{min_size}"
    );

    let off = TestServer::start(ServerOptions::default().with("ENABLE_DOCS", "false")).await;
    for path in ["/docs", "/openapi.json"] {
        let r = client.get(off.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn metrics_use_the_guides_names_and_route_templates() {
    let server = TestServer::start(ServerOptions::default()).await;
    let client = http_client();
    let health_count = |text: &str| -> u64 {
        text.lines()
            .find(|l| {
                l.starts_with("request_count_total{")
                    && l.contains(r#"endpoint="/health""#)
                    && l.contains(r#"method="GET""#)
                    && l.contains(r#"status="200""#)
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .unwrap_or(0)
    };
    let scrape = || async {
        client
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = health_count(&scrape().await);
    for _ in 0..3 {
        client.get(server.url("/health")).send().await.unwrap();
    }
    client
        .get(server.url("/secret/raw/path/123"))
        .send()
        .await
        .unwrap();
    let text = scrape().await;
    assert_eq!(health_count(&text), before + 3, "{text}");
    assert!(text.contains("request_latency_seconds_bucket{"), "{text}");
    assert!(text.contains(r#"endpoint="unmatched""#));
    assert!(
        !text.contains("/secret/raw/path/123"),
        "raw paths must never be labels"
    );
    assert!(
        text.contains(r#"rate_limit_hits_total{scope="key"} 0"#),
        "{text}"
    );
    assert!(text.contains("# TYPE evaluation_latency_seconds"), "{text}");
}

#[tokio::test]
async fn healthcheck_command_reports_readiness() {
    let server = TestServer::start(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ok = clean_command(dir.path())
        .args(["healthcheck", "--port", &server.port.to_string()])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let closed = ClosedPort::hold();
    let nothing = clean_command(dir.path())
        .args([
            "healthcheck",
            "--port",
            &closed.port.to_string(),
            "--timeout",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!nothing.status.success());
}

#[tokio::test]
async fn sigterm_lets_the_in_flight_request_finish_and_refuses_new_connections() {
    let db = TestDatabase::create().await;
    let relay = Relay::start(&postgres_target()).await;
    let mut server =
        TestServer::start(ServerOptions::default().with("DATABASE_URL", db.url_via(relay.port)))
            .await;
    let (status, _) = wait_for_ready_status(&server, "ready").await;
    assert_eq!(status, 200);
    // A hanging database makes /ready a request that takes ~1.5 s: our slow request.
    relay.hang();
    let (mut stream, client_port) = send_raw_get(server.addr, "/ready").await;
    let in_flight = tokio::spawn(async move {
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        parse_response(&raw).expect("in-flight request was cut")
    });
    // SIGTERM only once the server has read the request: before that it is not in flight
    // yet, and the server may rightly drop it.
    eventually(Duration::from_secs(10), || {
        std::future::ready(server_has_read(server.port, client_port).then_some(()))
    })
    .await
    .unwrap_or_else(|| panic!("the server never read the request; log:\n{}", server.logs()));
    server.signal(nix::sys::signal::Signal::SIGTERM);
    // The listener closes a moment after the signal; bounded, so a server that keeps
    // accepting still fails the assertion below.
    let _ = eventually(Duration::from_secs(5), || {
        std::future::ready(
            std::net::TcpStream::connect(("127.0.0.1", server.port))
                .is_err()
                .then_some(()),
        )
    })
    .await;

    let refused = std::net::TcpStream::connect(("127.0.0.1", server.port));
    assert!(
        refused.is_err(),
        "new connections must be refused after SIGTERM"
    );

    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(body["status"], "not_ready");
    let code = server.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(code, Some(0), "log:\n{}", server.logs());
    assert!(server.logs().contains("shutdown signal received"));
}

/// Opens a connection and sends `GET path` on it; returns the stream and its local port,
/// which tells its connection apart in the kernel's table.
async fn send_raw_get(addr: std::net::SocketAddr, path: &str) -> (tokio::net::TcpStream, u16) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let port = stream.local_addr().unwrap().port();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    (stream, port)
}

/// Status and JSON body of a whole HTTP/1.1 response; `None` when there is no response.
fn parse_response(raw: &[u8]) -> Option<(StatusCode, Value)> {
    let text = std::str::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        StatusCode::from_u16(code).ok()?,
        serde_json::from_str(body).unwrap(),
    ))
}

/// Whether the server process has read everything the client at `client_port` sent: the
/// client has nothing unacknowledged and the server's socket nothing unread. The server
/// gives no other sign that a request has reached it before it answers, and the kernel's
/// table (`/proc/net/tcp`, Linux) shows it without touching the server.
fn server_has_read(server_port: u16, client_port: u16) -> bool {
    let client = tcp_queues(client_port, server_port);
    let server = tcp_queues(server_port, client_port);
    matches!((client, server), (Some((0, _)), Some((_, 0))))
}

/// `(send queue, receive queue)` in bytes of the established IPv4 connection from
/// `local_port` to `remote_port`.
fn tcp_queues(local_port: u16, remote_port: u16) -> Option<(u64, u64)> {
    const ESTABLISHED: &str = "01";
    let port = |address: &str| -> Option<u16> {
        u16::from_str_radix(address.rsplit_once(':')?.1, 16).ok()
    };
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5
            || port(fields[1])? != local_port
            || port(fields[2])? != remote_port
            || fields[3] != ESTABLISHED
        {
            return None;
        }
        let (tx, rx) = fields[4].split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
        ))
    })
}
