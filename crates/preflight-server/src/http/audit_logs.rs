//! `GET /v1/audit-logs`: the tenant's append-only trail, newest first, for tenant admins.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{next_cursor, page, ApiQuery, Violations};
use crate::auth::{Principal, Scope};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::identity::{AuditEntry, AuditFilter};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// e.g. `login_failed`, `api_key_created`.
    pub action: Option<String>,
    /// e.g. `user:<id>` or `key:<prefix>`.
    pub actor: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// 1..=1000, default 100.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/audit-logs", tag = "audit", params(AuditQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AuditPage), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Admin)?;
    let mut v = Violations::default();
    // Audit ids are positive; anything else cannot have come from this endpoint.
    let (limit, before_id) = page::<std::num::NonZeroU64>(&mut v, q.limit, q.cursor.as_deref());
    let before_id = before_id.map(|id| id.get() as i64);
    v.into_result()?;
    let items = state
        .store()
        .list_audit(
            tenant_id,
            &AuditFilter {
                action: q.action,
                actor: q.actor,
                from: q.from,
                to: q.to,
                before_id,
                limit,
            },
        )
        .await?;
    let next_cursor = next_cursor(&items, limit, |e| e.id);
    Ok(Json(AuditPage { items, next_cursor }))
}
