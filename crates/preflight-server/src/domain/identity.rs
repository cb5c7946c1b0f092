//! Identity: tenants, users, logins and the lockout policy.
//!
//! The same functions serve the HTTP routes (signup, login, change-password) and the
//! operator CLI (`preflight admin create-tenant`, `create-user`), so a tenant or a user is
//! created one way only. Time is a parameter wherever a rule depends on it, so the lockout
//! window is tested with a controlled clock instead of a real wait.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::{self, AuditAction, AuditExt};
use crate::auth::login_throttle::FailedLoginThrottle;
use crate::auth::passwords::{password_problem, PasswordHasherPool};
use crate::auth::Role;
use crate::error::{ApiError, Violations};
use crate::state::AppState;
use crate::storage::identity::{Tenant, User};
use crate::storage::Store;

/// Longest password or email a login looks at; longer ones cannot be right and would only
/// cost hashing time.
const MAX_LOGIN_PASSWORD_BYTES: usize = 4096;
const MAX_EMAIL_LEN: usize = 254;
const MAX_TENANT_NAME_LEN: usize = 200;

pub fn normalize_email(email: &str) -> String {
    email.trim().to_ascii_lowercase()
}

pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && email.len() <= MAX_EMAIL_LEN
        && !email.contains(char::is_whitespace)
}

pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').chars().take(63).collect()
}

fn valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A new tenant from a display name and an optional explicit slug (derived otherwise).
pub fn new_tenant(
    v: &mut Violations,
    name: &str,
    slug: Option<&str>,
    now: DateTime<Utc>,
) -> Tenant {
    let name = name.trim().to_string();
    let name_ok = name.chars().count() <= MAX_TENANT_NAME_LEN;
    const NAME_RULE: &str = "must contain letters or digits and be at most 200 characters";
    let slug = match slug {
        Some(s) => {
            let s = s.trim().to_string();
            v.check(!name.is_empty() && name_ok, "tenant_name", NAME_RULE);
            v.check(
                valid_slug(&s),
                "slug",
                "must be 1 to 63 lower-case letters, digits or inner dashes",
            );
            s
        }
        None => {
            let s = slugify(&name);
            v.check(!s.is_empty() && name_ok, "tenant_name", NAME_RULE);
            s
        }
    };
    Tenant {
        id: Uuid::now_v7(),
        name,
        slug,
        created_at: now,
    }
}

/// A new user with a freshly hashed password, after the email and password checks.
pub async fn new_user(
    passwords: &PasswordHasherPool,
    tenant_id: Uuid,
    email: &str,
    password: String,
    role: Role,
    now: DateTime<Utc>,
    more: Violations,
) -> Result<User, ApiError> {
    let mut v = Violations::default();
    let email = normalize_email(email);
    v.check(
        valid_email(&email),
        "email",
        "must be a valid email address",
    );
    if let Some(p) = password_problem(&password) {
        v.add("password", p);
    }
    v.append(more);
    v.into_result()?;
    let password_hash = passwords.hash(password).await.map_err(ApiError::internal)?;
    Ok(User {
        id: Uuid::now_v7(),
        tenant_id,
        email,
        password_hash,
        role: role.as_str().into(),
        failed_logins: 0,
        locked_until: None,
        tokens_valid_after: now,
        created_at: now,
    })
}

/// Who is acting, for the audit trail of identity changes.
pub struct Acting<'a> {
    pub actor: String,
    pub ip: Option<IpAddr>,
    pub request_id: Option<&'a str>,
}

impl Acting<'_> {
    fn event(
        &self,
        tenant_id: Option<Uuid>,
        action: AuditAction,
    ) -> crate::storage::identity::NewAuditEvent {
        let mut e = audit::event(tenant_id, self.actor.clone(), action).request(self.request_id);
        if let Some(ip) = self.ip {
            e = e.ip(ip);
        }
        e
    }
}

/// Creates a tenant (operator CLI and the first start of an embedded install).
pub async fn create_tenant(
    store: &dyn Store,
    name: &str,
    slug: Option<&str>,
    by: &Acting<'_>,
) -> Result<Tenant, ApiError> {
    let mut v = Violations::default();
    let tenant = new_tenant(&mut v, name, slug, Utc::now());
    v.into_result()?;
    let event = by
        .event(Some(tenant.id), AuditAction::TenantCreated)
        .target(format!("tenant:{}", tenant.id))
        .details(serde_json::json!({"name": tenant.name, "slug": tenant.slug}));
    store.create_tenant(&tenant, &event).await?;
    Ok(tenant)
}

/// Creates a user in an existing tenant (operator CLI).
pub async fn create_user(
    store: &dyn Store,
    passwords: &PasswordHasherPool,
    tenant_id: Uuid,
    email: &str,
    password: String,
    role: Role,
    by: &Acting<'_>,
) -> Result<User, ApiError> {
    store
        .get_tenant(tenant_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("tenant".into()))?;
    let now = Utc::now();
    let user = new_user(
        passwords,
        tenant_id,
        email,
        password,
        role,
        now,
        Violations::default(),
    )
    .await?;
    // The email is not a secret but is personal data; the target id is enough to trace it.
    let event = by
        .event(Some(tenant_id), AuditAction::UserCreated)
        .target(format!("user:{}", user.id))
        .details(serde_json::json!({"role": role.as_str()}));
    store.create_user(&user, &event).await?;
    Ok(user)
}

/// Self-service signup: a tenant and its first admin, atomically.
pub async fn signup(
    store: &dyn Store,
    passwords: &PasswordHasherPool,
    tenant_name: &str,
    email: &str,
    password: String,
    ip: IpAddr,
    request_id: &str,
) -> Result<(Tenant, User), ApiError> {
    let now = Utc::now();
    let mut v = Violations::default();
    let tenant = new_tenant(&mut v, tenant_name, None, now);
    let user = new_user(passwords, tenant.id, email, password, Role::Admin, now, v).await?;
    let event = audit::event(
        Some(tenant.id),
        format!("user:{}", user.id),
        AuditAction::Signup,
    )
    .target(format!("tenant:{}", tenant.id))
    .ip(ip)
    .request(Some(request_id));
    store.signup(&tenant, &user, &event).await?;
    Ok((tenant, user))
}

/// How many wrong passwords lock an account, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct LoginPolicy {
    pub max_failures: u32,
    pub lockout: Duration,
}

pub fn bad_credentials() -> ApiError {
    ApiError::Unauthorized {
        code: "INVALID_CREDENTIALS",
        detail: "email or password is incorrect".into(),
    }
}

/// The login policy with this server's limits.
pub fn login(state: &AppState) -> Login<'_> {
    let config = state.config();
    Login {
        store: state.store().as_ref(),
        passwords: state.passwords(),
        throttle: state.login_throttle(),
        policy: LoginPolicy {
            max_failures: config.auth.login_max_failures,
            lockout: config.auth.login_lockout,
        },
    }
}

/// What a login needs besides the store.
pub struct Login<'a> {
    pub store: &'a dyn Store,
    pub passwords: &'a PasswordHasherPool,
    pub throttle: &'a FailedLoginThrottle,
    pub policy: LoginPolicy,
}

/// A login attempt as the client sent it, with where it came from and when.
pub struct LoginAttempt<'a> {
    pub email: &'a str,
    pub password: String,
    pub ip: IpAddr,
    pub request_id: &'a str,
    pub now: DateTime<Utc>,
    pub now_instant: Instant,
}

impl Login<'_> {
    /// Checks a password. A wrong one counts towards the lockout; the failure that reaches
    /// the limit locks the account until `now + lockout`, and while locked even the right
    /// password is refused. Every refusal is the same 401, so an attacker learns nothing
    /// about which emails exist or which accounts are locked.
    pub async fn attempt(&self, a: LoginAttempt<'_>) -> Result<User, ApiError> {
        let email = normalize_email(a.email);
        if a.password.len() > MAX_LOGIN_PASSWORD_BYTES || email.len() > MAX_EMAIL_LEN {
            return Err(bad_credentials());
        }
        let user = self.store.find_user_by_email(&email).await?;
        // Unknown emails are verified against a dummy hash, so timing does not tell them.
        let password_ok = self
            .passwords
            .verify(a.password, user.as_ref().map(|u| u.password_hash.clone()))
            .await
            .map_err(ApiError::internal)?;
        let Some(user) = user else {
            if self
                .throttle
                .should_record(&format!("anon:{email}"), a.now_instant)
            {
                let event = audit::event(None, "anonymous", AuditAction::LoginFailed)
                    .ip(a.ip)
                    .request(Some(a.request_id))
                    .details(serde_json::json!({"reason": "unknown_email"}));
                let _ = self.store.append_audit(&event).await;
            }
            return Err(bad_credentials());
        };
        let actor = format!("user:{}", user.id);
        let locked = user.locked_until.is_some_and(|t| t > a.now);
        if password_ok && !locked {
            if user.failed_logins > 0 || user.locked_until.is_some() {
                self.store
                    .reset_login_failures(user.tenant_id, user.id)
                    .await?;
            }
            let event = audit::event(Some(user.tenant_id), actor, AuditAction::Login)
                .ip(a.ip)
                .request(Some(a.request_id));
            self.store.append_audit(&event).await?;
            return Ok(user);
        }
        if !locked {
            let lock_until =
                a.now + chrono::Duration::from_std(self.policy.lockout).unwrap_or_default();
            let max = i32::try_from(self.policy.max_failures).unwrap_or(i32::MAX);
            let outcome = self
                .store
                .record_login_failure(user.tenant_id, user.id, max, a.now, lock_until)
                .await?;
            if outcome.locked_now {
                let event = audit::event(Some(user.tenant_id), actor, AuditAction::Lockout)
                    .ip(a.ip)
                    .request(Some(a.request_id))
                    .details(serde_json::json!({"failed_logins": outcome.failed_logins, "locked_until": lock_until}));
                self.store.append_audit(&event).await?;
                return Err(bad_credentials());
            }
        }
        if self.throttle.should_record(&actor, a.now_instant) {
            let event = audit::event(Some(user.tenant_id), actor, AuditAction::LoginFailed)
                .ip(a.ip)
                .request(Some(a.request_id))
                .details(serde_json::json!({"locked": locked}));
            let _ = self.store.append_audit(&event).await;
        }
        Err(bad_credentials())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(normalize_email("  Ann@Example.COM "), "ann@example.com");
        assert!(valid_email("ann@example.com"));
        assert!(!valid_email("ann@example"));
        assert!(!valid_email("@example.com"));
        assert!(!valid_email("a nn@example.com"));
    }

    #[test]
    fn slugs_are_derived_from_names() {
        assert_eq!(slugify("  ACME Invoices, Ltd. "), "acme-invoices-ltd");
        assert_eq!(slugify("---"), "");
        assert!(valid_slug("acme-1"));
        assert!(!valid_slug("-acme"));
        assert!(!valid_slug("Acme"));
    }

    /// The lockout window against the real embedded store, with the clock under the
    /// test's control instead of a real wait.
    #[tokio::test]
    async fn an_account_locks_at_the_limit_and_unlocks_when_the_window_ends() {
        let dir = tempfile_dir();
        let env = HashMap::from([(
            "DATABASE_URL".to_string(),
            format!("sqlite://{}", dir.join("t.db").display()),
        )]);
        let config = crate::config::Config::from_env_map(&env).unwrap();
        let store = crate::storage::open(&config.storage).await.unwrap();
        store.migrate().await.unwrap();
        let passwords = PasswordHasherPool::new();
        let by = Acting {
            actor: "test".into(),
            ip: None,
            request_id: None,
        };
        let tenant = create_tenant(store.as_ref(), "Lockout", None, &by)
            .await
            .unwrap();
        let password = "correct horse battery staple".to_string();
        create_user(
            store.as_ref(),
            &passwords,
            tenant.id,
            "ann@example.com",
            password.clone(),
            Role::Admin,
            &by,
        )
        .await
        .unwrap();
        let throttle = FailedLoginThrottle::new();
        let login = Login {
            store: store.as_ref(),
            passwords: &passwords,
            throttle: &throttle,
            policy: LoginPolicy {
                max_failures: 3,
                lockout: Duration::from_secs(600),
            },
        };
        let t0 = Utc::now();
        let attempt = |password: &str, at: DateTime<Utc>| LoginAttempt {
            email: "ann@example.com",
            password: password.to_string(),
            ip: IpAddr::from([127, 0, 0, 1]),
            request_id: "r",
            now: at,
            now_instant: Instant::now(),
        };
        for _ in 0..3 {
            assert!(login.attempt(attempt("wrong", t0)).await.is_err());
        }
        // Locked: even the right password is refused, until the window has passed.
        let in_window = t0 + chrono::Duration::seconds(599);
        assert!(login.attempt(attempt(&password, in_window)).await.is_err());
        let after = t0 + chrono::Duration::seconds(601);
        let user = login.attempt(attempt(&password, after)).await.unwrap();
        assert_eq!(user.email, "ann@example.com");
        // A success resets the count: two more failures do not lock again.
        for _ in 0..2 {
            assert!(login.attempt(attempt("wrong", after)).await.is_err());
        }
        assert!(login.attempt(attempt(&password, after)).await.is_ok());
        store.close().await;
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("preflight-identity-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
