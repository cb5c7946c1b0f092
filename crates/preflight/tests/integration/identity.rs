//! Identity end to end on the real binary: signup and sessions, API keys and their
//! lifecycle, forged and revoked JWTs, scopes and roles, tenant isolation, lockout, the
//! audit trail (and its append-only enforcement in the database itself), secrets kept out of
//! the logs, revocation across instances, request validation, and `preflight admin`.
//!
//! Every scenario that needs neither a second instance nor a particular backend runs twice:
//! on the embedded default (SQLite, in-process limiter) and on PostgreSQL + Redis, through
//! the `on_both_backends!` macro (test names `<scenario>::embedded` / `<scenario>::postgres`).

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

// ---------------------------------------------------------------------------------------
// Stacks: a server on one backend, plus what the CLI needs to reach the same database

#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Embedded,
    Postgres,
}

struct Stack {
    server: TestServer,
    /// Kept alive for the stack's lifetime; dropped (and the database removed) after it.
    db: Option<TestDatabase>,
    /// Everything the server was started with, so the CLI sees the same configuration.
    env: Vec<(String, String)>,
    /// Known when the test chose the secrets (then it can sign tokens with the server's key).
    jwt_secret: Option<String>,
    client: reqwest::Client,
}

/// Starts `preflight serve` on `backend` with explicit secrets and `extra` settings.
async fn stack(backend: Backend, extra: &[(&str, &str)]) -> Stack {
    stack_with(backend, extra, true).await
}

async fn stack_with(backend: Backend, extra: &[(&str, &str)], explicit_secrets: bool) -> Stack {
    let mut env: Vec<(String, String)> = Vec::new();
    let jwt_secret = explicit_secrets.then(test_secret);
    if let Some(secret) = &jwt_secret {
        env.push(("JWT_SECRET".into(), secret.clone()));
        env.push(("API_KEY_SALT".into(), test_secret()));
    }
    // Every request of these tests comes from 127.0.0.1; only the rate-limit tests (elsewhere)
    // care about the anonymous budget.
    env.push(("RATE_LIMIT_UNAUTHENTICATED".into(), "10000".into()));
    let db = match backend {
        Backend::Embedded => None,
        Backend::Postgres => {
            require_redis().await;
            let db = TestDatabase::create().await;
            env.push(("DATABASE_URL".into(), db.url.clone()));
            env.push(("REDIS_URL".into(), redis_url()));
            Some(db)
        }
    };
    for (k, v) in extra {
        env.push((k.to_string(), v.to_string()));
    }
    let mut options = ServerOptions::default();
    for (k, v) in &env {
        options = options.with(k, v.clone());
    }
    let server = TestServer::start(options).await;
    Stack {
        server,
        db,
        env,
        jwt_secret,
        client: http_client(),
    }
}

/// Another instance on the same database (and secrets) as `first`.
async fn second_instance(first: &Stack) -> TestServer {
    let mut options = ServerOptions::default();
    for (k, v) in &first.env {
        options = options.with(k, v.clone());
    }
    TestServer::start(options).await
}

/// An HTTP answer, read completely.
struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How a request authenticates.
#[derive(Clone, Copy)]
enum Cred<'a> {
    Anonymous,
    Key(&'a str),
    Bearer(&'a str),
    /// An operator key, optionally naming the tenant it acts in.
    Operator(&'a str, Option<&'a str>),
}

impl Stack {
    async fn call(&self, method: Method, path: &str, cred: Cred<'_>, body: Option<Value>) -> Resp {
        call_on(&self.client, &self.server, method, path, cred, body).await
    }

    async fn get(&self, path: &str, cred: Cred<'_>) -> Resp {
        self.call(Method::GET, path, cred, None).await
    }

    async fn post(&self, path: &str, cred: Cred<'_>, body: Value) -> Resp {
        self.call(Method::POST, path, cred, Some(body)).await
    }

    /// `preflight admin ...` against this stack's database, with `extra` env and `stdin`.
    async fn admin(&self, args: &[&str], extra: &[(&str, &str)], stdin: Option<&str>) -> Output {
        let mut cmd = clean_command(self.server.data_dir.path());
        cmd.arg("admin").args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let input = stdin.map(str::to_string);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        tokio::task::spawn_blocking(move || {
            let mut child = cmd.spawn().expect("run preflight admin");
            if let Some(text) = input {
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(text.as_bytes())
                    .unwrap();
            }
            child.wait_with_output().expect("wait for preflight admin")
        })
        .await
        .unwrap()
    }

    /// Runs an admin command that must succeed; returns its stdout.
    async fn admin_ok(&self, args: &[&str], extra: &[(&str, &str)], stdin: Option<&str>) -> String {
        let out = self.admin(args, extra, stdin).await;
        assert!(
            out.status.success(),
            "preflight admin {args:?} failed ({:?}):\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

async fn call_on(
    client: &reqwest::Client,
    server: &TestServer,
    method: Method,
    path: &str,
    cred: Cred<'_>,
    body: Option<Value>,
) -> Resp {
    let mut req = client.request(method, server.url(path));
    req = match cred {
        Cred::Anonymous => req,
        Cred::Key(k) => req.header("X-API-Key", k),
        Cred::Bearer(t) => req.header("Authorization", format!("Bearer {t}")),
        Cred::Operator(k, tenant) => {
            let req = req.header("X-API-Key", k);
            match tenant {
                Some(t) => req.header("X-Preflight-Tenant", t),
                None => req,
            }
        }
    };
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    Resp {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// An RFC 9457 problem with this status and code, with a request id.
#[track_caller]
fn assert_problem(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/problem+json")),
        "not problem+json: {:?}",
        r.header("content-type")
    );
    assert_eq!(r.body["code"], code, "{}", r.body);
    assert_eq!(r.body["status"], status, "{}", r.body);
    assert!(r.body["request_id"].is_string(), "{}", r.body);
    if status == 401 {
        assert!(
            r.header("www-authenticate").is_some(),
            "401 without WWW-Authenticate"
        );
    }
}

/// The body without its request id, for "exactly the same answer" comparisons.
fn without_request_id(body: &Value) -> Value {
    let mut b = body.clone();
    if let Some(o) = b.as_object_mut() {
        o.remove("request_id");
    }
    b
}

#[track_caller]
fn assert_logs_clean(server: &TestServer, secrets: &[&str]) {
    let logs = server.logs();
    for s in secrets {
        assert!(!s.is_empty());
        assert!(
            !logs.contains(s),
            "a secret ({}...) reached the server's output",
            &s[..s.len().min(12)]
        );
    }
}

// ---------------------------------------------------------------------------------------
// Accounts and keys

const PASSWORD: &str = "correct horse battery staple";

struct Account {
    email: String,
    token: String,
    user_id: String,
    tenant_id: String,
}

async fn signup(s: &Stack, tenant: &str, email: &str) -> Account {
    let r = s
        .post(
            "/v1/auth/signup",
            Cred::Anonymous,
            json!({"tenant_name": tenant, "email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    Account {
        email: email.to_string(),
        token: r.body["access_token"].as_str().unwrap().to_string(),
        user_id: r.body["user"]["id"].as_str().unwrap().to_string(),
        tenant_id: r.body["tenant"]["id"].as_str().unwrap().to_string(),
    }
}

async fn login(s: &Stack, email: &str, password: &str) -> Resp {
    s.post(
        "/v1/auth/login",
        Cred::Anonymous,
        json!({"email": email, "password": password}),
    )
    .await
}

async fn login_ok(s: &Stack, email: &str, password: &str) -> String {
    let r = login(s, email, password).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["token_type"], "bearer");
    r.body["access_token"].as_str().unwrap().to_string()
}

struct Key {
    id: String,
    secret: String,
    prefix: String,
}

async fn create_key(s: &Stack, cred: Cred<'_>, name: &str, scopes: &[&str]) -> Key {
    let r = s
        .post(
            "/v1/api-keys",
            cred,
            json!({"name": name, "scopes": scopes}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    key_from(&r.body)
}

fn key_from(body: &Value) -> Key {
    let secret = body["key"].as_str().unwrap().to_string();
    let prefix = body["prefix"].as_str().unwrap().to_string();
    assert!(secret.starts_with(&format!("{prefix}_")));
    Key {
        id: body["id"].as_str().unwrap().to_string(),
        secret,
        prefix,
    }
}

/// The tenant's audit trail as seen by `cred` (newest first).
async fn audit_rows(s: &Stack, cred: Cred<'_>, query: &str) -> Vec<Value> {
    let r = s.get(&format!("/v1/audit-logs?{query}"), cred).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

fn actions(rows: &[Value]) -> BTreeSet<String> {
    rows.iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------
// JWTs built by hand

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hs256(secret: &str, header: &Value, claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&mac.finalize().into_bytes()))
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims_for(a: &Account) -> Value {
    let now = now_secs();
    json!({
        "sub": a.user_id, "tid": a.tenant_id, "role": "admin",
        "iat": now, "exp": now + 600, "jti": uuid::Uuid::new_v4().simple().to_string(),
        "iss": "preflight", "aud": "preflight-api",
    })
}

fn payload_of(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------
// Scenarios on both backends

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test]
                async fn embedded() {
                    super::$scenario(super::Backend::Embedded).await
                }
                #[tokio::test]
                async fn postgres() {
                    super::$scenario(super::Backend::Postgres).await
                }
            }
        )*
    };
}

on_both_backends!(
    full_key_lifecycle,
    forged_expired_and_revoked_tokens_are_refused,
    refresh_and_password_change_revoke_older_tokens,
    tenants_never_see_each_others_resources,
    scopes_and_roles_are_enforced,
    lockout_answers_like_a_wrong_password_and_expires,
    audit_trail_is_complete_and_append_only,
    invalid_requests_are_refused_with_the_right_status,
    admin_commands_end_to_end,
);

/// signup → login → create key → use → rotate → old refused → new works → revoke → refused,
/// with debug logging on, and no secret anywhere in the output.
async fn full_key_lifecycle(backend: Backend) {
    let s = stack(backend, &[("LOG_LEVEL", "debug")]).await;
    let first_start_key = s.server.first_start_key();
    let account = signup(&s, "Lifecycle Ltd", "owner@lifecycle.example").await;
    let token = login_ok(&s, &account.email, PASSWORD).await;

    let me = s.get("/v1/auth/me", Cred::Bearer(&token)).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["kind"], "user");
    assert_eq!(me.body["role"], "admin");
    assert_eq!(me.body["tenant_id"], account.tenant_id.as_str());

    let key = create_key(&s, Cred::Bearer(&token), "pipeline", &["read", "evaluate"]).await;
    assert_eq!(key.secret.len(), "pf_".len() + 8 + 1 + 43, "pf_<8>_<43>");
    let me = s.get("/v1/auth/me", Cred::Key(&key.secret)).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["kind"], "api_key");
    assert_eq!(me.body["key_prefix"], key.prefix.as_str());
    assert_eq!(me.body["tenant_id"], account.tenant_id.as_str());
    assert_eq!(me.body["scopes"], json!(["evaluate", "read"]));
    assert_eq!(
        s.get("/v1/status", Cred::Key(&key.secret)).await.status,
        200
    );

    // The listing never shows a secret or its hash.
    let list = s.get("/v1/api-keys", Cred::Bearer(&token)).await;
    assert_eq!(list.status, 200);
    let listed = list.body.to_string();
    assert!(listed.contains(&key.id) && !listed.contains(&key.secret));
    assert!(list.body["items"][0].get("key").is_none());
    assert!(list.body["items"][0].get("key_hash").is_none());

    let r = s
        .call(
            Method::POST,
            &format!("/v1/api-keys/{}/rotate", key.id),
            Cred::Bearer(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rotated = key_from(&r.body);
    assert_ne!(rotated.id, key.id);
    assert_eq!(r.body["name"], "pipeline");
    assert_eq!(r.body["scopes"], json!(["evaluate", "read"]));

    // The same instance forgets the old key at once.
    let old = s.get("/v1/status", Cred::Key(&key.secret)).await;
    assert_problem(&old, 401, "INVALID_API_KEY");
    assert_eq!(
        s.get("/v1/status", Cred::Key(&rotated.secret)).await.status,
        200
    );

    let r = s
        .call(
            Method::DELETE,
            &format!("/v1/api-keys/{}", rotated.id),
            Cred::Bearer(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_problem(
        &s.get("/v1/status", Cred::Key(&rotated.secret)).await,
        401,
        "INVALID_API_KEY",
    );
    // Revoking twice: there is no live key by that id any more.
    let again = s
        .call(
            Method::DELETE,
            &format!("/v1/api-keys/{}", rotated.id),
            Cred::Bearer(&token),
            None,
        )
        .await;
    assert_problem(&again, 404, "NOT_FOUND");

    let rows = audit_rows(&s, Cred::Bearer(&token), "limit=1000").await;
    let seen = actions(&rows);
    for a in [
        "signup",
        "login",
        "api_key_created",
        "api_key_rotated",
        "api_key_revoked",
    ] {
        assert!(seen.contains(a), "no {a} in {seen:?}");
    }

    // Secrets: none in the logs; the first-start key only once, in the printed banner.
    assert_logs_clean(
        &s.server,
        &[
            PASSWORD,
            &token,
            &account.token,
            &key.secret,
            &rotated.secret,
        ],
    );
    let logs = s.server.logs();
    assert_eq!(logs.matches(&first_start_key).count(), 1);
    let line = logs.lines().find(|l| l.contains(&first_start_key)).unwrap();
    assert_eq!(
        line.trim(),
        format!("export PREFLIGHT_API_KEY={first_start_key}")
    );
    // ...and the banner key is a working tenant-admin key of the default tenant.
    let me = s.get("/v1/auth/me", Cred::Key(&first_start_key)).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(
        me.body["scopes"],
        json!([
            "evaluate",
            "read",
            "templates:write",
            "keys:manage",
            "admin",
            "alerts:manage"
        ])
    );
}

/// Tokens the server did not issue, or issued for someone else, or no longer honours.
async fn forged_expired_and_revoked_tokens_are_refused(backend: Backend) {
    let s = stack(backend, &[]).await;
    let secret = s.jwt_secret.clone().unwrap();
    let account = signup(&s, "Tokens Inc", "owner@tokens.example").await;
    let hs = json!({"alg": "HS256", "typ": "JWT"});

    // Control: a token built here with the server's secret and correct claims is accepted,
    // so each refusal below is caused by the one thing that differs.
    let good = hs256(&secret, &hs, &claims_for(&account));
    let r = s.get("/v1/auth/me", Cred::Bearer(&good)).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let mut forged: Vec<(&str, String)> = Vec::new();
    let c = claims_for(&account);
    forged.push((
        "alg none",
        format!(
            "{}.{}.",
            b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes()),
            b64(c.to_string().as_bytes())
        ),
    ));
    forged.push((
        "alg none with a signature",
        format!(
            "{}.{}.{}",
            b64(json!({"alg": "none"}).to_string().as_bytes()),
            b64(c.to_string().as_bytes()),
            good.split('.').nth(2).unwrap()
        ),
    ));
    forged.push((
        "another secret",
        hs256(
            "another-secret-that-is-long-enough-0123456789",
            &hs,
            &claims_for(&account),
        ),
    ));
    let mut expired = claims_for(&account);
    expired["iat"] = json!(now_secs() - 7200);
    expired["exp"] = json!(now_secs() - 3600);
    forged.push(("expired", hs256(&secret, &hs, &expired)));
    let mut aud = claims_for(&account);
    aud["aud"] = json!("someone-else");
    forged.push(("wrong audience", hs256(&secret, &hs, &aud)));
    let mut iss = claims_for(&account);
    iss["iss"] = json!("not-preflight");
    forged.push(("wrong issuer", hs256(&secret, &hs, &iss)));
    // The real token with another tenant in its payload and the original signature.
    let mut payload = payload_of(&account.token);
    payload["tid"] = json!(uuid::Uuid::new_v4().to_string());
    let parts: Vec<&str> = account.token.split('.').collect();
    forged.push((
        "tampered payload",
        format!(
            "{}.{}.{}",
            parts[0],
            b64(payload.to_string().as_bytes()),
            parts[2]
        ),
    ));
    forged.push(("garbage", "not.a.jwt".to_string()));

    for (what, token) in &forged {
        let r = s.get("/v1/auth/me", Cred::Bearer(token)).await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_problem(&r, 401, "INVALID_TOKEN");
        // Also on a route that would act with the token's authority.
        let r = s.get("/v1/api-keys", Cred::Bearer(token)).await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
    }

    // Logout revokes exactly the presented token.
    let token = login_ok(&s, &account.email, PASSWORD).await;
    let r = s
        .call(Method::POST, "/v1/auth/logout", Cred::Bearer(&token), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_problem(
        &s.get("/v1/auth/me", Cred::Bearer(&token)).await,
        401,
        "INVALID_TOKEN",
    );
    assert_eq!(
        s.get("/v1/auth/me", Cred::Bearer(&account.token))
            .await
            .status,
        200
    );
    assert_logs_clean(&s.server, &[PASSWORD, &token, &account.token, &good]);
}

async fn refresh_and_password_change_revoke_older_tokens(backend: Backend) {
    let s = stack(backend, &[]).await;
    let account = signup(&s, "Sessions GmbH", "owner@sessions.example").await;
    let t1 = login_ok(&s, &account.email, PASSWORD).await;

    let r = s
        .call(Method::POST, "/v1/auth/refresh", Cred::Bearer(&t1), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t2 = r.body["access_token"].as_str().unwrap().to_string();
    assert_ne!(t1, t2);
    assert_problem(
        &s.get("/v1/auth/me", Cred::Bearer(&t1)).await,
        401,
        "INVALID_TOKEN",
    );
    assert_eq!(s.get("/v1/auth/me", Cred::Bearer(&t2)).await.status, 200);

    let new_password = "a brand new passphrase 42";
    let wrong = s
        .post(
            "/v1/auth/change-password",
            Cred::Bearer(&t2),
            json!({"current_password": "not the password", "new_password": new_password}),
        )
        .await;
    assert_problem(&wrong, 401, "INVALID_CREDENTIALS");
    let r = s
        .post(
            "/v1/auth/change-password",
            Cred::Bearer(&t2),
            json!({"current_password": PASSWORD, "new_password": new_password}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t3 = r.body["access_token"].as_str().unwrap().to_string();
    // Every token issued before the change is void, including ones never logged out.
    for old in [&t2, &account.token] {
        assert_problem(
            &s.get("/v1/auth/me", Cred::Bearer(old)).await,
            401,
            "INVALID_TOKEN",
        );
    }
    assert_eq!(s.get("/v1/auth/me", Cred::Bearer(&t3)).await.status, 200);

    assert_problem(
        &login(&s, &account.email, PASSWORD).await,
        401,
        "INVALID_CREDENTIALS",
    );
    // A session started right after the change works at once, as does refreshing the token
    // the change returned.
    let t4 = login_ok(&s, &account.email, new_password).await;
    assert_eq!(s.get("/v1/auth/me", Cred::Bearer(&t4)).await.status, 200);
    let r = s
        .call(Method::POST, "/v1/auth/refresh", Cred::Bearer(&t3), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t5 = r.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(s.get("/v1/auth/me", Cred::Bearer(&t5)).await.status, 200);

    // Sessions are for users: an API key cannot refresh or change a password.
    let key = create_key(&s, Cred::Bearer(&t5), "k", &["read"]).await;
    let r = s
        .call(
            Method::POST,
            "/v1/auth/refresh",
            Cred::Key(&key.secret),
            None,
        )
        .await;
    assert_problem(&r, 403, "INSUFFICIENT_SCOPE");
    assert_logs_clean(
        &s.server,
        &[PASSWORD, new_password, &t1, &t2, &t3, &t4, &t5],
    );
}

/// Routes that address one of tenant A's resources by id; a caller from tenant B must get
/// exactly the answer a missing resource gets. Add new tenant-owned routes here.
fn routes_addressing_a_resource(key_id: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::DELETE, format!("/v1/api-keys/{key_id}"), None),
        (Method::POST, format!("/v1/api-keys/{key_id}/rotate"), None),
    ]
}

/// Routes that list tenant-owned rows; B's answer must not contain any of A's. Add new
/// listing routes here.
const LISTING_ROUTES: &[&str] = &["/v1/api-keys", "/v1/audit-logs?limit=1000"];

async fn tenants_never_see_each_others_resources(backend: Backend) {
    let s = stack(backend, &[]).await;
    let a = signup(&s, "Tenant A", "admin@a.example").await;
    let b = signup(&s, "Tenant B", "admin@b.example").await;
    let a_key = create_key(
        &s,
        Cred::Bearer(&a.token),
        "a-pipeline",
        &["read", "evaluate"],
    )
    .await;
    let b_key = create_key(
        &s,
        Cred::Bearer(&b.token),
        "b-admin",
        &["read", "keys:manage", "admin"],
    )
    .await;
    // A's trail now holds rows naming A's key; B's must never show them.
    let _ = login_ok(&s, &a.email, PASSWORD).await;

    let missing = uuid::Uuid::new_v4().to_string();
    for cred in [Cred::Key(&b_key.secret), Cred::Bearer(&b.token)] {
        for ((method, path, body), (_, missing_path, _)) in routes_addressing_a_resource(&a_key.id)
            .into_iter()
            .zip(routes_addressing_a_resource(&missing))
        {
            let foreign = s.call(method.clone(), &path, cred, body.clone()).await;
            assert_problem(&foreign, 404, "NOT_FOUND");
            let absent = s.call(method, &missing_path, cred, body).await;
            assert_eq!(
                without_request_id(&foreign.body),
                without_request_id(&absent.body),
                "{path}: another tenant's resource must look exactly like a missing one"
            );
            assert!(!foreign.body.to_string().contains(&a_key.prefix));
        }
        for path in LISTING_ROUTES {
            let r = s.get(path, cred).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            let text = r.body.to_string();
            for secretless_trace in [&a_key.id, &a_key.prefix, &a.tenant_id, &a.user_id] {
                assert!(
                    !text.contains(secretless_trace.as_str()),
                    "{path} shows tenant A's data to tenant B"
                );
            }
            for item in r.body["items"].as_array().unwrap() {
                if let Some(t) = item.get("tenant_id") {
                    assert_eq!(t, &json!(b.tenant_id), "{path}: {item}");
                }
            }
        }
    }
    // A's key survived B's attempts, and A still sees its own key.
    assert_eq!(
        s.get("/v1/status", Cred::Key(&a_key.secret)).await.status,
        200
    );
    let own = s.get("/v1/api-keys", Cred::Bearer(&a.token)).await;
    assert!(own.body.to_string().contains(&a_key.id));
}

async fn scopes_and_roles_are_enforced(backend: Backend) {
    let s = stack(backend, &[]).await;
    let admin = signup(&s, "Scoped", "admin@scoped.example").await;
    let admin_cred = Cred::Bearer(&admin.token);
    let victim = create_key(&s, admin_cred, "evaluator", &["evaluate"]).await;
    let read = create_key(&s, admin_cred, "reader", &["read"]).await;
    let manager = create_key(&s, admin_cred, "manager", &["keys:manage"]).await;

    let write_routes = |id: &str| {
        vec![
            (
                Method::POST,
                "/v1/api-keys".to_string(),
                Some(json!({"name": "x", "scopes": ["read"]})),
            ),
            (Method::GET, "/v1/api-keys".to_string(), None),
            (Method::DELETE, format!("/v1/api-keys/{id}"), None),
            (Method::POST, format!("/v1/api-keys/{id}/rotate"), None),
            (Method::GET, "/v1/audit-logs".to_string(), None),
        ]
    };
    for (method, path, body) in write_routes(&victim.id) {
        let r = s.call(method, &path, Cred::Key(&read.secret), body).await;
        assert_problem(&r, 403, "INSUFFICIENT_SCOPE");
    }

    // keys:manage can mint what it holds, never more.
    let r = s
        .post(
            "/v1/api-keys",
            Cred::Key(&manager.secret),
            json!({"name": "escalate", "scopes": ["admin"]}),
        )
        .await;
    assert_problem(&r, 403, "INSUFFICIENT_SCOPE");
    assert!(r.body["detail"].as_str().unwrap().contains("cannot grant"));
    let r = s
        .post(
            "/v1/api-keys",
            Cred::Key(&manager.secret),
            json!({"name": "escalate", "scopes": ["keys:manage", "evaluate"]}),
        )
        .await;
    assert_problem(&r, 403, "INSUFFICIENT_SCOPE");
    assert!(r.body["detail"].as_str().unwrap().contains("evaluate"));
    // ...nor rotate its way into a scope it lacks.
    let r = s
        .call(
            Method::POST,
            &format!("/v1/api-keys/{}/rotate", victim.id),
            Cred::Key(&manager.secret),
            None,
        )
        .await;
    assert_problem(&r, 403, "INSUFFICIENT_SCOPE");
    let ok = create_key(&s, Cred::Key(&manager.secret), "peer", &["keys:manage"]).await;
    assert_eq!(
        s.get("/v1/api-keys", Cred::Key(&ok.secret)).await.status,
        200
    );
    assert_eq!(
        s.get("/v1/status", Cred::Key(&victim.secret)).await.status,
        403
    );

    // Roles: users created with the admin CLI, signed in over HTTP.
    let tenant = admin.tenant_id.as_str();
    let mut tokens = Vec::new();
    for role in ["editor", "viewer"] {
        let email = format!("{role}@scoped.example");
        s.admin_ok(
            &[
                "create-user",
                "--tenant",
                tenant,
                "--email",
                &email,
                "--role",
                role,
            ],
            &[("PREFLIGHT_ADMIN_PASSWORD", PASSWORD)],
            None,
        )
        .await;
        tokens.push((role, login_ok(&s, &email, PASSWORD).await));
    }
    // (route, what admin / editor / viewer get)
    let matrix: Vec<(Method, &str, Option<Value>, [u16; 3])> = vec![
        (Method::GET, "/v1/status", None, [200, 200, 200]),
        (Method::GET, "/v1/auth/me", None, [200, 200, 200]),
        (Method::GET, "/v1/api-keys", None, [200, 403, 403]),
        (
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "r", "scopes": ["read"]})),
            [201, 403, 403],
        ),
        (Method::GET, "/v1/audit-logs", None, [200, 403, 403]),
    ];
    let who = [
        ("admin", admin.token.clone()),
        ("editor", tokens[0].1.clone()),
        ("viewer", tokens[1].1.clone()),
    ];
    for (method, path, body, expected) in matrix {
        for ((role, token), want) in who.iter().zip(expected) {
            let r = s
                .call(method.clone(), path, Cred::Bearer(token), body.clone())
                .await;
            assert_eq!(
                r.status.as_u16(),
                want,
                "{role} {method} {path}: {}",
                r.body
            );
            if want == 403 {
                assert_problem(&r, 403, "INSUFFICIENT_SCOPE");
            }
        }
    }
    let me = s.get("/v1/auth/me", Cred::Bearer(&tokens[0].1)).await;
    assert_eq!(me.body["role"], "editor");
    assert_eq!(
        me.body["scopes"],
        json!(["evaluate", "read", "templates:write", "alerts:manage"])
    );
    let me = s.get("/v1/auth/me", Cred::Bearer(&tokens[1].1)).await;
    assert_eq!(me.body["role"], "viewer");
    assert_eq!(me.body["scopes"], json!(["read"]));
}

async fn lockout_answers_like_a_wrong_password_and_expires(backend: Backend) {
    let s = stack(
        backend,
        &[("LOGIN_MAX_FAILURES", "3"), ("LOGIN_LOCKOUT_SECONDS", "2")],
    )
    .await;
    let account = signup(&s, "Locked", "owner@locked.example").await;
    let wrong = login(&s, &account.email, "wrong password, guess 0").await;
    assert_problem(&wrong, 401, "INVALID_CREDENTIALS");
    let unknown = login(&s, "nobody@locked.example", PASSWORD).await;
    assert_eq!(
        without_request_id(&unknown.body),
        without_request_id(&wrong.body),
        "an unknown email must be indistinguishable from a wrong password"
    );
    for i in 1..3 {
        let r = login(&s, &account.email, &format!("wrong password, guess {i}")).await;
        assert_problem(&r, 401, "INVALID_CREDENTIALS");
    }
    // Locked: the right password gets the very answer a wrong one gets.
    let locked = login(&s, &account.email, PASSWORD).await;
    assert_eq!(
        without_request_id(&locked.body),
        without_request_id(&wrong.body)
    );
    assert_eq!(locked.status, 401);

    // The window passes; a full set of new failures locks the account again (the count
    // does not keep growing past the limit and never lock again). The lockout runs on the
    // server's real clock, so the test waits the window out.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for i in 0..3 {
        let r = login(
            &s,
            &account.email,
            &format!("wrong password, round 2, guess {i}"),
        )
        .await;
        assert_problem(&r, 401, "INVALID_CREDENTIALS");
    }
    let locked = login(&s, &account.email, PASSWORD).await;
    assert_eq!(
        without_request_id(&locked.body),
        without_request_id(&wrong.body)
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let token = login_ok(&s, &account.email, PASSWORD).await;

    // A success resets the count: two more failures do not lock.
    for i in 0..2 {
        login(
            &s,
            &account.email,
            &format!("wrong password, round 3, guess {i}"),
        )
        .await;
    }
    login_ok(&s, &account.email, PASSWORD).await;

    let rows = audit_rows(&s, Cred::Bearer(&token), "limit=1000").await;
    let lockouts: Vec<&Value> = rows.iter().filter(|r| r["action"] == "lockout").collect();
    assert_eq!(lockouts.len(), 2, "{rows:?}");
    assert_eq!(lockouts[0]["actor"], format!("user:{}", account.user_id));
    assert!(actions(&rows).contains("login_failed"));
    // Lockout details are counts and times, never what was typed.
    assert!(!serde_json::to_string(&rows)
        .unwrap()
        .contains("wrong password"));
}

async fn audit_trail_is_complete_and_append_only(backend: Backend) {
    let s = stack(
        backend,
        &[("LOGIN_MAX_FAILURES", "2"), ("LOGIN_LOCKOUT_SECONDS", "60")],
    )
    .await;
    let account = signup(&s, "Audited", "owner@audited.example").await;
    let t0 = account.token.clone();
    let reader = create_key(&s, Cred::Bearer(&t0), "auditor", &["admin", "keys:manage"]).await;
    let by_key = create_key(&s, Cred::Key(&reader.secret), "made-by-a-key", &["admin"]).await;
    let t1 = login_ok(&s, &account.email, PASSWORD).await;
    for i in 0..2 {
        login(&s, &account.email, &format!("bad guess {i}")).await;
    }
    let k = create_key(&s, Cred::Bearer(&t0), "to-rotate", &["read"]).await;
    let r = s
        .call(
            Method::POST,
            &format!("/v1/api-keys/{}/rotate", k.id),
            Cred::Bearer(&t0),
            None,
        )
        .await;
    let rotated = key_from(&r.body);
    let r = s
        .call(
            Method::DELETE,
            &format!("/v1/api-keys/{}", rotated.id),
            Cred::Bearer(&t0),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = s
        .call(Method::POST, "/v1/auth/logout", Cred::Bearer(&t1), None)
        .await;
    assert_eq!(r.status, 204);
    let r = s
        .post(
            "/v1/auth/change-password",
            Cred::Bearer(&t0),
            json!({"current_password": PASSWORD, "new_password": "another long passphrase"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let auditor = Cred::Key(&reader.secret);
    let rows = audit_rows(&s, auditor, "limit=1000").await;
    let seen = actions(&rows);
    for a in [
        "signup",
        "login",
        "login_failed",
        "lockout",
        "logout",
        "password_changed",
        "api_key_created",
        "api_key_rotated",
        "api_key_revoked",
    ] {
        assert!(seen.contains(a), "no {a} in {seen:?}");
    }
    for row in &rows {
        assert_eq!(row["tenant_id"], account.tenant_id.as_str());
        assert!(row["occurred_at"].is_string() && row["actor"].is_string());
    }
    let text = serde_json::to_string(&rows).unwrap();
    for secret in [
        PASSWORD,
        &t0,
        &t1,
        &k.secret,
        &rotated.secret,
        &reader.secret,
        &by_key.secret,
    ] {
        assert!(!text.contains(secret), "a secret in the audit trail");
    }
    let created = rows
        .iter()
        .find(|r| r["action"] == "api_key_created" && r["details"]["prefix"] == k.prefix)
        .unwrap();
    assert_eq!(created["target"], format!("api_key:{}", k.id));
    assert_eq!(created["actor"], format!("user:{}", account.user_id));

    // Filters and the cursor.
    let logins = audit_rows(&s, auditor, "action=login").await;
    assert!(!logins.is_empty() && logins.iter().all(|r| r["action"] == "login"));
    let by_user = audit_rows(&s, auditor, &format!("actor=user:{}", account.user_id)).await;
    assert!(by_user
        .iter()
        .all(|r| r["actor"] == format!("user:{}", account.user_id)));
    assert!(
        by_user.len() < rows.len(),
        "the key's own rows are excluded"
    );
    let by_reader = audit_rows(&s, auditor, &format!("actor=key:{}", reader.prefix)).await;
    assert_eq!(by_reader.len(), 1, "{by_reader:?}");
    assert_eq!(by_reader[0]["action"], "api_key_created");
    assert_eq!(by_reader[0]["target"], format!("api_key:{}", by_key.id));
    let future = audit_rows(&s, auditor, "from=2999-01-01T00:00:00Z").await;
    assert!(future.is_empty());
    let past = audit_rows(&s, auditor, "to=2000-01-01T00:00:00Z").await;
    assert!(past.is_empty());
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("limit=3&cursor={c}"),
            None => "limit=3".into(),
        };
        let r = s.get(&format!("/v1/audit-logs?{q}"), auditor).await;
        assert_eq!(r.status, 200, "{}", r.body);
        paged.extend(r.body["items"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let ids = |v: &[Value]| {
        v.iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&paged),
        ids(&rows),
        "pages concatenate to the full trail"
    );
    let r = s.get("/v1/audit-logs?limit=1001", auditor).await;
    assert_problem(&r, 422, "VALIDATION_FAILED");
    let r = s.get("/v1/audit-logs?cursor=abc", auditor).await;
    assert_problem(&r, 422, "VALIDATION_FAILED");

    // The database itself refuses to rewrite history.
    let before = rows.len();
    match backend {
        Backend::Postgres => {
            use sqlx::Connection;
            let url = &s.db.as_ref().unwrap().url;
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            for sql in [
                "UPDATE audit_log SET action = 'x'",
                "DELETE FROM audit_log",
                "TRUNCATE audit_log",
            ] {
                let e = sqlx::query(sql).execute(&mut c).await;
                assert!(e.is_err(), "{sql} was accepted");
                assert!(e.unwrap_err().to_string().contains("append-only"));
            }
        }
        Backend::Embedded => {
            use sqlx::Connection;
            let path = s.server.data_dir.path().join("preflight.db");
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            for sql in ["UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"] {
                let e = sqlx::query(sql).execute(&mut c).await;
                assert!(e.is_err(), "{sql} was accepted");
                assert!(e.unwrap_err().to_string().contains("append-only"));
            }
        }
    }
    let after = audit_rows(&s, auditor, "limit=1000").await;
    assert_eq!(after.len(), before);
    assert!(actions(&after).iter().all(|a| a != "x"));
}

async fn invalid_requests_are_refused_with_the_right_status(backend: Backend) {
    let s = stack(backend, &[]).await;
    let r = s
        .post(
            "/v1/auth/signup",
            Cred::Anonymous,
            json!({"tenant_name": "V", "email": "not-an-email", "password": "short"}),
        )
        .await;
    assert_problem(&r, 422, "VALIDATION_FAILED");
    let fields: BTreeSet<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, BTreeSet::from(["email", "password"]));

    let raw = |path: &str, content_type: &str, body: &'static str| {
        s.client
            .post(s.server.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let r = raw("/v1/auth/login", "application/json", "{\"email\": ")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "MALFORMED_JSON");
    let r = raw(
        "/v1/auth/login",
        "text/plain",
        "{\"email\":\"a@b.c\",\"password\":\"x\"}",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 415);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/problem+json"));

    let account = signup(&s, "Valid", "owner@valid.example").await;
    let r = s
        .post(
            "/v1/api-keys",
            Cred::Bearer(&account.token),
            json!({"name": "k", "scopes": ["read", "superpowers"]}),
        )
        .await;
    assert_problem(&r, 422, "VALIDATION_FAILED");
    assert_eq!(r.body["errors"][0]["field"], "scopes[1]");
    let r = s
        .post(
            "/v1/api-keys",
            Cred::Bearer(&account.token),
            json!({"name": "", "scopes": [], "expires_at": "2001-01-01T00:00:00Z"}),
        )
        .await;
    assert_problem(&r, 422, "VALIDATION_FAILED");
    let fields: BTreeSet<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, BTreeSet::from(["name", "scopes", "expires_at"]));
    // Credentials: missing, malformed, unknown.
    assert_problem(
        &s.get("/v1/api-keys", Cred::Anonymous).await,
        401,
        "MISSING_CREDENTIALS",
    );
    assert_problem(
        &s.get("/v1/api-keys", Cred::Key("pf_nope_nope")).await,
        401,
        "INVALID_API_KEY",
    );
    assert_problem(
        &s.get("/v1/api-keys", Cred::Key("Basic abc")).await,
        401,
        "INVALID_API_KEY",
    );
}

/// `preflight admin` against the database of a running server: what it creates works over
/// HTTP, operator keys are cross-tenant only with `X-Preflight-Tenant`, and HTTP cannot mint
/// them. On the embedded stack no secrets are configured, so the CLI must find the server's
/// development secrets in the data directory to produce keys the server accepts.
async fn admin_commands_end_to_end(backend: Backend) {
    let s = stack_with(backend, &[], backend == Backend::Postgres).await;

    let out = s.admin(&["--help"], &[], None).await;
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    for sub in [
        "create-tenant",
        "create-user",
        "create-key",
        "revoke-key",
        "list-keys",
        "list-tenants",
    ] {
        assert!(help.contains(sub), "{sub} missing from --help");
        let out = s.admin(&[sub, "--help"], &[], None).await;
        assert!(out.status.success(), "{sub} --help");
    }

    // Human mode prints only the id on stdout, so it can be captured by a shell.
    let tenant = s
        .admin_ok(&["create-tenant", "--name", "Acme Corp"], &[], None)
        .await
        .trim()
        .to_string();
    uuid::Uuid::parse_str(&tenant).expect("create-tenant prints the id");
    let listed: Value =
        serde_json::from_str(&s.admin_ok(&["list-tenants", "--json"], &[], None).await).unwrap();
    let acme = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == tenant.as_str())
        .expect("the new tenant is listed");
    assert_eq!(acme["slug"], "acme-corp");
    let dup = s
        .admin(&["create-tenant", "--name", "Acme Corp"], &[], None)
        .await;
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("slug"));

    // Users: the password from the environment or one line on stdin, never a flag.
    let admin_password = "operator chose this one";
    s.admin_ok(
        &[
            "create-user",
            "--tenant",
            &tenant,
            "--email",
            "Boss@Acme.example",
            "--role",
            "admin",
        ],
        &[("PREFLIGHT_ADMIN_PASSWORD", admin_password)],
        None,
    )
    .await;
    let viewer_password = "piped in on stdin 123";
    let created: Value = serde_json::from_str(
        &s.admin_ok(
            &[
                "create-user",
                "--tenant",
                &tenant,
                "--email",
                "viewer@acme.example",
                "--role",
                "viewer",
                "--json",
            ],
            &[],
            Some(&format!("{viewer_password}\n")),
        )
        .await,
    )
    .unwrap();
    assert_eq!(created["role"], "viewer");
    assert!(!created.to_string().contains(viewer_password));
    let flag = s
        .admin(
            &[
                "create-user",
                "--tenant",
                &tenant,
                "--email",
                "x@acme.example",
                "--role",
                "viewer",
                "--password",
                "in-the-shell-history",
            ],
            &[],
            None,
        )
        .await;
    assert_eq!(flag.status.code(), Some(2), "there is no --password flag");
    let short = s
        .admin(
            &[
                "create-user",
                "--tenant",
                &tenant,
                "--email",
                "y@acme.example",
                "--role",
                "viewer",
            ],
            &[("PREFLIGHT_ADMIN_PASSWORD", "short")],
            None,
        )
        .await;
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 12"));

    let boss = login_ok(&s, "boss@acme.example", admin_password).await;
    let me = s.get("/v1/auth/me", Cred::Bearer(&boss)).await;
    assert_eq!(me.body["tenant_id"], tenant.as_str());
    assert_eq!(me.body["role"], "admin");
    let viewer = login_ok(&s, "viewer@acme.example", viewer_password).await;
    assert_eq!(
        s.get("/v1/auth/me", Cred::Bearer(&viewer)).await.body["role"],
        "viewer"
    );

    // A tenant key, printed once on stdout.
    let key = s
        .admin_ok(
            &[
                "create-key",
                "--tenant",
                &tenant,
                "--name",
                "ingest",
                "--scopes",
                "read,keys:manage",
                "--rate-limit",
                "500",
                "--expires-at",
                "2999-01-01T00:00:00Z",
            ],
            &[],
            None,
        )
        .await
        .trim()
        .to_string();
    assert!(key.starts_with("pf_"), "{key}");
    let r = s.get("/v1/api-keys", Cred::Key(&key)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mine = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| key.starts_with(k["prefix"].as_str().unwrap()))
        .expect("the CLI's key is listed in its tenant")
        .clone();
    assert_eq!(mine["created_by"], "operator-cli");
    assert_eq!(mine["rate_limit_per_minute"], 500);
    assert_eq!(mine["scopes"], json!(["read", "keys:manage"]));
    let key_id = mine["id"].as_str().unwrap().to_string();

    let bad = s
        .admin(
            &[
                "create-key",
                "--tenant",
                &tenant,
                "--name",
                "x",
                "--scopes",
                "read,root",
            ],
            &[],
            None,
        )
        .await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown scope \"root\""));
    let nowhere = uuid::Uuid::new_v4().to_string();
    let bad = s
        .admin(
            &[
                "create-key",
                "--tenant",
                &nowhere,
                "--name",
                "x",
                "--scopes",
                "read",
            ],
            &[],
            None,
        )
        .await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no tenant"));

    // An operator key: cross-tenant, all scopes, only with X-Preflight-Tenant.
    let op: Value = serde_json::from_str(
        &s.admin_ok(
            &["create-key", "--operator", "--name", "ops", "--json"],
            &[],
            None,
        )
        .await,
    )
    .unwrap();
    assert_eq!(op["operator"], true);
    assert_eq!(op["tenant_id"], Value::Null);
    let op_key = op["key"].as_str().unwrap().to_string();
    let op_id = op["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.get("/v1/status", Cred::Operator(&op_key, None))
            .await
            .status,
        200
    );
    let me = s.get("/v1/auth/me", Cred::Operator(&op_key, None)).await;
    assert_eq!(me.body["operator"], true);
    assert_eq!(me.body["tenant_id"], Value::Null);
    assert_problem(
        &s.get("/v1/api-keys", Cred::Operator(&op_key, None)).await,
        403,
        "INSUFFICIENT_SCOPE",
    );
    let r = s
        .get("/v1/api-keys", Cred::Operator(&op_key, Some(&tenant)))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.to_string().contains(&key_id));
    let r = s
        .get("/v1/audit-logs", Cred::Operator(&op_key, Some(&tenant)))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_problem(
        &s.get("/v1/api-keys", Cred::Operator(&op_key, Some(&nowhere)))
            .await,
        404,
        "NOT_FOUND",
    );
    // A tenant key cannot borrow the header to act elsewhere.
    let r = s
        .get("/v1/api-keys", Cred::Operator(&key, Some(&nowhere)))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.to_string().contains(&key_id));

    // HTTP cannot mint operator keys: the request type has no such field.
    for cred in [Cred::Bearer(&boss), Cred::Operator(&op_key, Some(&tenant))] {
        let r = s
            .post(
                "/v1/api-keys",
                cred,
                json!({"name": "sneaky", "scopes": ["read"], "operator": true}),
            )
            .await;
        assert_problem(&r, 422, "VALIDATION_FAILED");
    }
    let ops: Value = serde_json::from_str(
        &s.admin_ok(&["list-keys", "--operator", "--json"], &[], None)
            .await,
    )
    .unwrap();
    assert_eq!(ops["items"].as_array().unwrap().len(), 1);
    let listing = s
        .admin_ok(&["list-keys", "--tenant", &tenant], &[], None)
        .await;
    assert!(listing.contains(&key_id) && !listing.contains(&key));
    let listing = s
        .admin_ok(&["list-keys", "--tenant", &tenant, "--json"], &[], None)
        .await;
    assert!(!listing.contains(&key) && !listing.contains("key_hash"));

    // Revocation by the CLI reaches the running server within its key-cache lifetime.
    let wrong_tenant = s
        .admin(
            &["revoke-key", "--id", &key_id, "--tenant", &nowhere],
            &[],
            None,
        )
        .await;
    assert!(!wrong_tenant.status.success());
    assert_eq!(s.get("/v1/api-keys", Cred::Key(&key)).await.status, 200);
    s.admin_ok(
        &["revoke-key", "--id", &key_id, "--tenant", &tenant],
        &[],
        None,
    )
    .await;
    s.admin_ok(&["revoke-key", "--id", &op_id], &[], None).await;
    let again = s.admin(&["revoke-key", "--id", &op_id], &[], None).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no live API key"));
    for k in [&key, &op_key] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = s.get("/v1/status", Cred::Key(k)).await;
            if r.status == 401 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a revoked key still works: {}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Every change is in the tenant's trail with the CLI as the actor.
    let rows = audit_rows(&s, Cred::Bearer(&boss), "actor=operator-cli&limit=1000").await;
    let seen = actions(&rows);
    for a in [
        "tenant_created",
        "user_created",
        "api_key_created",
        "api_key_revoked",
    ] {
        assert!(seen.contains(a), "no {a} by operator-cli in {seen:?}");
    }
    assert_logs_clean(
        &s.server,
        &[
            admin_password,
            viewer_password,
            &key,
            &op_key,
            &boss,
            &viewer,
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Scenarios that need a particular setup

/// Two instances on one PostgreSQL database: a key revoked on A stops working on B within
/// the documented bound (`KEY_CACHE_TTL`, 5 s), even though B had it cached.
#[tokio::test]
async fn revocation_reaches_another_instance_within_the_key_cache_ttl() {
    let a = stack(Backend::Postgres, &[]).await;
    let b = second_instance(&a).await;
    let account = signup(&a, "Replicated", "owner@replicated.example").await;
    let key = create_key(&a, Cred::Bearer(&account.token), "k", &["read"]).await;
    // B has now verified (and cached) the key.
    assert_eq!(
        call_on(
            &a.client,
            &b,
            Method::GET,
            "/v1/status",
            Cred::Key(&key.secret),
            None
        )
        .await
        .status,
        200
    );
    // A session started on A is valid on B, and a logout on A is seen by B immediately
    // (sessions are checked against the database on every use).
    let token = login_ok(&a, &account.email, PASSWORD).await;
    assert_eq!(
        call_on(
            &a.client,
            &b,
            Method::GET,
            "/v1/status",
            Cred::Bearer(&token),
            None
        )
        .await
        .status,
        200
    );
    let r = a
        .call(Method::POST, "/v1/auth/logout", Cred::Bearer(&token), None)
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        call_on(
            &a.client,
            &b,
            Method::GET,
            "/v1/status",
            Cred::Bearer(&token),
            None
        )
        .await
        .status,
        401
    );

    let r = a
        .call(
            Method::DELETE,
            &format!("/v1/api-keys/{}", key.id),
            Cred::Bearer(&account.token),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let revoked_at = Instant::now();
    assert_eq!(
        a.get("/v1/status", Cred::Key(&key.secret)).await.status,
        401
    );
    loop {
        let r = call_on(
            &a.client,
            &b,
            Method::GET,
            "/v1/status",
            Cred::Key(&key.secret),
            None,
        )
        .await;
        if r.status == 401 {
            assert_problem(&r, 401, "INVALID_API_KEY");
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            revoked_at.elapsed() <= Duration::from_secs(6),
            "instance B still accepts a key revoked {:?} ago",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A chunked body (no Content-Length) larger than `MAX_REQUEST_BODY_SIZE` on an
/// unauthenticated JSON route is cut off at the limit and answered 413 problem+json.
#[tokio::test]
async fn chunked_login_body_over_the_limit_is_refused_with_413() {
    let s = stack(Backend::Embedded, &[("MAX_REQUEST_BODY_SIZE", "1024")]).await;
    let mut chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(b"{\"email\":\"a@b.example\",\"password\":\"".to_vec())];
    chunks.extend((0..40).map(|_| Ok(vec![b'x'; 64])));
    chunks.push(Ok(b"\"}".to_vec()));
    let total: usize = chunks.iter().map(|c| c.as_ref().unwrap().len()).sum();
    assert!(total > 1024);
    let r = s
        .client
        .post(s.server.url("/v1/auth/login"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("the server answers instead of dropping the connection");
    assert_eq!(r.status(), 413);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/problem+json"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(body["status"], 413);
    // A small body on the same route is still read normally.
    let r = login(&s, "nobody@b.example", "whatever password").await;
    assert_problem(&r, 401, "INVALID_CREDENTIALS");
}
