//! `/v1/auth/*`: signup, login, refresh, logout, me, change-password.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::ClientIp;
use super::extract::{ApiJson, Violations};
use super::observe::RequestId;
use crate::auth::passwords::password_problem;
use crate::auth::{Actor, Principal, Role};
use crate::domain::audit::{self, AuditAction, AuditExt};
use crate::domain::identity::{self, LoginAttempt};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::identity::Tenant;

#[derive(Deserialize, ToSchema)]
pub struct SignupRequest {
    /// Name of the new tenant (organisation).
    pub tenant_name: String,
    pub email: String,
    /// At least 12 characters.
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: i64,
}

#[derive(Serialize, ToSchema)]
pub struct SignupResponse {
    pub tenant: Tenant,
    pub user: MeResponse,
    #[serde(flatten)]
    pub token: TokenResponse,
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    /// User id, or the key id for an API key.
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    /// `user` or `api_key`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    pub scopes: Vec<&'static str>,
    pub operator: bool,
}

/// Issues a token at `issued_at`, never earlier than now. Callers pass a later instant
/// when the user's `tokens_valid_after` lies ahead (a password change moments ago sets it to
/// the next whole second, as `iat` has whole-second precision): a token issued before that
/// cut would be refused the moment it is used.
fn token_response(
    state: &AppState,
    user_id: Uuid,
    tenant_id: Uuid,
    role: &str,
    issued_at: chrono::DateTime<Utc>,
) -> Result<TokenResponse, ApiError> {
    let issued = state
        .tokens()
        .issue(user_id, tenant_id, role, issued_at.max(Utc::now()))
        .map_err(ApiError::internal)?;
    Ok(TokenResponse {
        access_token: issued.token,
        token_type: "bearer",
        expires_in: state.tokens().lifetime_seconds(),
    })
}

/// Creates a tenant and its admin user, and signs the user in.
#[utoipa::path(post, path = "/v1/auth/signup", tag = "auth", request_body = SignupRequest,
    responses((status = 201, body = SignupResponse), (status = 403, description = "Signup disabled", body = crate::error::Problem),
        (status = 409, description = "Email or tenant name taken", body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn signup(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<SignupRequest>,
) -> Result<(StatusCode, Json<SignupResponse>), ApiError> {
    if !state.config().auth.allow_signup {
        return Err(ApiError::Forbidden(
            "signup is disabled on this server".into(),
        ));
    }
    let (tenant, user) = identity::signup(
        state.store().as_ref(),
        state.passwords(),
        &body.tenant_name,
        &body.email,
        body.password,
        ip,
        &request_id,
    )
    .await?;
    let email = user.email.clone();
    let token = token_response(
        &state,
        user.id,
        tenant.id,
        Role::Admin.as_str(),
        user.created_at,
    )?;
    Ok((
        StatusCode::CREATED,
        Json(SignupResponse {
            user: MeResponse {
                id: user.id,
                tenant_id: Some(tenant.id),
                kind: "user",
                email: Some(email),
                role: Some(Role::Admin),
                key_prefix: None,
                scopes: Role::Admin.scopes().names(),
                operator: false,
            },
            tenant,
            token,
        }),
    ))
}

/// Exchanges email and password for a bearer token. Unknown emails, wrong passwords and
/// locked accounts all get the same answer in the same time.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = crate::error::Problem)))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let user = identity::login(&state)
        .attempt(LoginAttempt {
            email: &body.email,
            password: body.password,
            ip,
            request_id: &request_id,
            now: Utc::now(),
            now_instant: Instant::now(),
        })
        .await?;
    Ok(Json(token_response(
        &state,
        user.id,
        user.tenant_id,
        &user.role,
        user.tokens_valid_after,
    )?))
}

/// The session behind a user principal: user id, token id, issued at, expires at.
type Session = (Uuid, String, chrono::DateTime<Utc>, chrono::DateTime<Utc>);

fn require_user(principal: &Principal) -> Result<Session, ApiError> {
    match &principal.actor {
        Actor::User {
            id,
            jti,
            issued_at,
            expires_at,
            ..
        } => Ok((*id, jti.clone(), *issued_at, *expires_at)),
        Actor::ApiKey { .. } => Err(ApiError::Forbidden(
            "this route needs a user session (Bearer token), not an API key".into(),
        )),
    }
}

/// Issues a fresh token and revokes the presented one.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = TokenResponse), (status = 401, body = crate::error::Problem)))]
pub async fn refresh(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
) -> Result<Json<TokenResponse>, ApiError> {
    let (user_id, jti, issued_at, expires_at) = require_user(&principal)?;
    let tenant_id = principal.tenant()?;
    let role = principal_role(&principal);
    let event = audit::by(&principal, AuditAction::TokenRefreshed).request(Some(&request_id));
    state.store().revoke_token(&jti, expires_at, &event).await?;
    Ok(Json(token_response(
        &state, user_id, tenant_id, role, issued_at,
    )?))
}

fn principal_role(principal: &Principal) -> &'static str {
    [Role::Admin, Role::Editor, Role::Viewer]
        .into_iter()
        .find(|r| r.scopes() == principal.scopes)
        .unwrap_or(Role::Viewer)
        .as_str()
}

/// Revokes the presented token on every replica.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "Token revoked"), (status = 401, body = crate::error::Problem)))]
pub async fn logout(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
) -> Result<StatusCode, ApiError> {
    let (_, jti, _, expires_at) = require_user(&principal)?;
    let event = audit::by(&principal, AuditAction::Logout).request(Some(&request_id));
    state.store().revoke_token(&jti, expires_at, &event).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who am I: the user or key behind the credentials, with its scopes.
#[utoipa::path(get, path = "/v1/auth/me", tag = "auth", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = crate::error::Problem)))]
pub async fn me(principal: Principal) -> Json<MeResponse> {
    let (id, kind, email, prefix) = match &principal.actor {
        Actor::User { id, email, .. } => (*id, "user", Some(email.clone()), None),
        Actor::ApiKey { id, prefix } => (*id, "api_key", None, Some(prefix.clone())),
    };
    Json(MeResponse {
        id,
        tenant_id: principal.tenant_id,
        kind,
        role: email
            .as_ref()
            .and_then(|_| Role::parse(principal_role(&principal))),
        email,
        key_prefix: prefix,
        scopes: principal.scopes.names(),
        operator: principal.operator,
    })
}

/// Changes the password; every older token of the user stops working.
#[utoipa::path(post, path = "/v1/auth/change-password", tag = "auth", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses((status = 200, description = "Changed; a fresh token", body = TokenResponse),
        (status = 401, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn change_password(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let (user_id, _, _, _) = require_user(&principal)?;
    let tenant_id = principal.tenant()?;
    let mut v = Violations::default();
    if let Some(p) = password_problem(&body.new_password) {
        v.add("new_password", p);
    }
    v.into_result()?;
    let email = match &principal.actor {
        Actor::User { email, .. } => email.clone(),
        Actor::ApiKey { .. } => unreachable!("require_user accepted only users"),
    };
    let user = state
        .store()
        .find_user_by_email(&email)
        .await?
        .filter(|u| u.id == user_id && u.tenant_id == tenant_id)
        .ok_or_else(identity::bad_credentials)?;
    let ok = state
        .passwords()
        .verify(body.current_password, Some(user.password_hash.clone()))
        .await
        .map_err(ApiError::internal)?;
    if !ok {
        return Err(ApiError::Unauthorized {
            code: "INVALID_CREDENTIALS",
            detail: "the current password is incorrect".into(),
        });
    }
    let new_hash = state
        .passwords()
        .hash(body.new_password)
        .await
        .map_err(ApiError::internal)?;
    // Tokens carry whole seconds: everything issued up to this second is void, and the fresh
    // token below is issued one second later so it survives the cut.
    let now = Utc::now();
    let cut = chrono::DateTime::from_timestamp(now.timestamp() + 1, 0).unwrap_or(now);
    let event = audit::by(&principal, AuditAction::PasswordChanged).request(Some(&request_id));
    state
        .store()
        .set_password(tenant_id, user_id, &new_hash, cut, &event)
        .await?;
    let issued = state
        .tokens()
        .issue(user_id, tenant_id, &user.role, cut)
        .map_err(ApiError::internal)?;
    Ok(Json(TokenResponse {
        access_token: issued.token,
        token_type: "bearer",
        expires_in: state.tokens().lifetime_seconds(),
    }))
}
