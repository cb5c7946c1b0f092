//! `/v1/api-keys`: self-service keys. A caller can never grant a scope it does not hold.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{resource_id, ApiJson, Violations};
use super::observe::RequestId;
use crate::auth::keys::KeySpec;
use crate::auth::{Principal, Scope, ScopeSet};
use crate::domain::audit::{self, AuditAction, AuditExt};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::identity::ApiKeyRecord;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    pub name: String,
    /// Any of `evaluate`, `read`, `templates:write`, `keys:manage`, `admin`.
    pub scopes: Vec<String>,
    /// This key's own limit; defaults to the server's `RATE_LIMIT_PER_MINUTE`.
    pub rate_limit_per_minute: Option<u32>,
    /// RFC 3339; the key stops working then.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key as listed: never the secret or its hash.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    /// The visible start of the key, e.g. `pf_Ab3dE9xQ`.
    pub prefix: String,
    pub scopes: Vec<&'static str>,
    pub rate_limit_per_minute: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// Recorded in batches, accurate to about 30 seconds.
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub view: ApiKeyView,
    /// The secret, shown this once. Store it now.
    pub key: String,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKeyView>,
}

impl From<&ApiKeyRecord> for ApiKeyView {
    fn from(k: &ApiKeyRecord) -> Self {
        ApiKeyView {
            id: k.id,
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            scopes: ScopeSet::from_storage(&k.scopes).names(),
            rate_limit_per_minute: k.rate_limit_per_minute,
            expires_at: k.expires_at,
            created_by: k.created_by.clone(),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// Refuses to mint scopes the caller lacks.
fn grantable(principal: &Principal, wanted: ScopeSet) -> Result<(), ApiError> {
    let missing = wanted.minus(principal.scopes);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "cannot grant scopes you do not hold: {}",
            missing.names().join(", ")
        )))
    }
}

/// Creates a key; the secret is in this response only.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = CreateKeyRequest,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = CreatedKey), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    ApiJson(body): ApiJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let tenant_id = principal.tenant_with(Scope::KeysManage)?;
    let mut v = Violations::default();
    let name = body.name.trim();
    v.check(
        !name.is_empty() && name.chars().count() <= 100,
        "name",
        "must be 1 to 100 characters",
    );
    let mut scopes = Vec::new();
    for (i, s) in body.scopes.iter().enumerate() {
        match Scope::parse(s) {
            Some(scope) => scopes.push(scope),
            None => v.add(format!("scopes[{i}]"), format!("unknown scope {s:?}")),
        }
    }
    v.check(
        !body.scopes.is_empty(),
        "scopes",
        "must name at least one scope",
    );
    if let Some(limit) = body.rate_limit_per_minute {
        v.check(
            (1..=1_000_000).contains(&limit),
            "rate_limit_per_minute",
            "must be between 1 and 1000000",
        );
    }
    if let Some(at) = body.expires_at {
        v.check(at > Utc::now(), "expires_at", "must be in the future");
    }
    v.into_result()?;
    let scopes = ScopeSet::from_iter(scopes);
    grantable(&principal, scopes)?;

    let (record, secret) = state.keys().mint(KeySpec {
        tenant_id: Some(tenant_id),
        name: name.to_string(),
        scopes,
        operator: false,
        rate_limit_per_minute: body.rate_limit_per_minute.map(|l| l as i32),
        expires_at: body.expires_at,
        created_by: principal.audit_actor(),
    });
    let event = audit::by(&principal, AuditAction::ApiKeyCreated)
        .target(format!("api_key:{}", record.id))
        .request(Some(&request_id))
        .details(serde_json::json!({"prefix": record.prefix, "name": record.name, "scopes": scopes.names()}));
    state.store().create_api_key(&record, &event).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            view: ApiKeyView::from(&record),
            key: secret,
        }),
    ))
}

/// Lists the tenant's keys, newest first, revoked ones included.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = ApiKeyList), (status = 403, body = crate::error::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<ApiKeyList>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::KeysManage)?;
    let keys = state.store().list_api_keys(tenant_id).await?;
    Ok(Json(ApiKeyList {
        items: keys.iter().map(ApiKeyView::from).collect(),
    }))
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    resource_id(raw, "api key")
}

/// Revokes a key at once on this instance, and on every replica within 5 seconds.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", security(("api_key" = []), ("bearer" = [])),
    params(("id" = Uuid, Path, description = "Key id")),
    responses((status = 204, description = "Revoked"), (status = 404, body = crate::error::Problem)))]
pub async fn revoke(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant_id = principal.tenant_with(Scope::KeysManage)?;
    let id = parse_id(&id)?;
    let event = audit::by(&principal, AuditAction::ApiKeyRevoked)
        .target(format!("api_key:{id}"))
        .request(Some(&request_id));
    let done = state
        .store()
        .revoke_api_key(tenant_id, id, Utc::now(), &event)
        .await?;
    if !done {
        return Err(ApiError::NotFound("api key".into()));
    }
    state.keys().forget(id);
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a key with a new secret of the same name, scopes, limit and expiry; the old one
/// stops working immediately.
#[utoipa::path(post, path = "/v1/api-keys/{id}/rotate", tag = "api-keys", security(("api_key" = []), ("bearer" = [])),
    params(("id" = Uuid, Path, description = "Key id")),
    responses((status = 201, body = CreatedKey), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
pub async fn rotate(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let tenant_id = principal.tenant_with(Scope::KeysManage)?;
    let id = parse_id(&id)?;
    let old = state
        .store()
        .list_api_keys(tenant_id)
        .await?
        .into_iter()
        .find(|k| k.id == id && k.revoked_at.is_none())
        .ok_or_else(|| ApiError::NotFound("api key".into()))?;
    let scopes = ScopeSet::from_storage(&old.scopes);
    grantable(&principal, scopes)?;
    let (record, secret) = state.keys().mint(KeySpec {
        tenant_id: Some(tenant_id),
        name: old.name.clone(),
        scopes,
        operator: false,
        rate_limit_per_minute: old.rate_limit_per_minute,
        expires_at: old.expires_at,
        created_by: principal.audit_actor(),
    });
    let event = audit::by(&principal, AuditAction::ApiKeyRotated)
        .target(format!("api_key:{id}"))
        .request(Some(&request_id))
        .details(serde_json::json!({"old_prefix": old.prefix, "new_prefix": record.prefix, "new_id": record.id}));
    let done = state
        .store()
        .rotate_api_key(tenant_id, id, &record, &event)
        .await?;
    if !done {
        return Err(ApiError::NotFound("api key".into()));
    }
    state.keys().forget(id);
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            view: ApiKeyView::from(&record),
            key: secret,
        }),
    ))
}
