//! Building audit events: who did what to which resource, with sanitized details only.

use chrono::Utc;
use uuid::Uuid;

use crate::auth::Principal;
use crate::storage::identity::NewAuditEvent;

/// Starts an event for an authenticated principal.
pub fn by(principal: &Principal, action: &str) -> NewAuditEvent {
    NewAuditEvent {
        tenant_id: principal.tenant_id,
        occurred_at: Utc::now(),
        actor: principal.audit_actor(),
        action: action.to_string(),
        target: None,
        ip: Some(principal.client_ip.to_string()),
        request_id: None,
        details: serde_json::json!({}),
    }
}

/// Starts an event for an actor named explicitly (anonymous, operator CLI, a user at login).
pub fn event(tenant_id: Option<Uuid>, actor: impl Into<String>, action: &str) -> NewAuditEvent {
    NewAuditEvent {
        tenant_id,
        occurred_at: Utc::now(),
        actor: actor.into(),
        action: action.to_string(),
        target: None,
        ip: None,
        request_id: None,
        details: serde_json::json!({}),
    }
}

pub trait AuditExt {
    fn target(self, target: impl Into<String>) -> Self;
    fn details(self, details: serde_json::Value) -> Self;
    fn ip(self, ip: impl ToString) -> Self;
    fn request(self, request_id: Option<&str>) -> Self;
}

impl AuditExt for NewAuditEvent {
    fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }
    fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
    fn ip(mut self, ip: impl ToString) -> Self {
        self.ip = Some(ip.to_string());
        self
    }
    fn request(mut self, request_id: Option<&str>) -> Self {
        self.request_id = request_id.map(str::to_string);
        self
    }
}
