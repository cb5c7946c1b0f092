//! The audit trail's vocabulary: who did what to which resource, with sanitized details.
//!
//! Actions are an enum so that every state change names one of a known set (clients filter
//! the trail by these names); events are built here and written by the store in the same
//! transaction as the change they describe.

use std::fmt;

use chrono::Utc;
use uuid::Uuid;

use crate::auth::Principal;
use crate::storage::identity::NewAuditEvent;

/// Every action the audit trail records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Signup,
    Login,
    LoginFailed,
    Lockout,
    Logout,
    TokenRefreshed,
    PasswordChanged,
    TenantCreated,
    UserCreated,
    ApiKeyCreated,
    ApiKeyRotated,
    ApiKeyRevoked,
    TemplateCreated,
    TemplateCreatedFromEvaluation,
    TemplateUpdated,
    TemplateExemplarAdded,
    TemplateStatusChanged,
    TemplateDeprecated,
    AlertRuleCreated,
    AlertRuleUpdated,
    AlertRuleDeleted,
    AlertAcknowledged,
    AlertResolved,
    WebhookCreated,
    WebhookUpdated,
    WebhookDeleted,
    WebhookSecretRotated,
    WebhookRedelivered,
    PlanChanged,
    ReviewItemClaimed,
    ReviewItemReleased,
    ReviewItemResolved,
    // Template suggestions.
    TemplateSuggestionAccepted,
    TemplateSuggestionDismissed,
}

impl AuditAction {
    pub const ALL: [AuditAction; 34] = [
        AuditAction::Signup,
        AuditAction::Login,
        AuditAction::LoginFailed,
        AuditAction::Lockout,
        AuditAction::Logout,
        AuditAction::TokenRefreshed,
        AuditAction::PasswordChanged,
        AuditAction::TenantCreated,
        AuditAction::UserCreated,
        AuditAction::ApiKeyCreated,
        AuditAction::ApiKeyRotated,
        AuditAction::ApiKeyRevoked,
        AuditAction::TemplateCreated,
        AuditAction::TemplateCreatedFromEvaluation,
        AuditAction::TemplateUpdated,
        AuditAction::TemplateExemplarAdded,
        AuditAction::TemplateStatusChanged,
        AuditAction::TemplateDeprecated,
        AuditAction::AlertRuleCreated,
        AuditAction::AlertRuleUpdated,
        AuditAction::AlertRuleDeleted,
        AuditAction::AlertAcknowledged,
        AuditAction::AlertResolved,
        AuditAction::WebhookCreated,
        AuditAction::WebhookUpdated,
        AuditAction::WebhookDeleted,
        AuditAction::WebhookSecretRotated,
        AuditAction::WebhookRedelivered,
        AuditAction::PlanChanged,
        AuditAction::ReviewItemClaimed,
        AuditAction::ReviewItemReleased,
        AuditAction::ReviewItemResolved,
        // Template suggestions.
        AuditAction::TemplateSuggestionAccepted,
        AuditAction::TemplateSuggestionDismissed,
    ];

    /// The name stored and shown in `/v1/audit-logs`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Signup => "signup",
            AuditAction::Login => "login",
            AuditAction::LoginFailed => "login_failed",
            AuditAction::Lockout => "lockout",
            AuditAction::Logout => "logout",
            AuditAction::TokenRefreshed => "token_refreshed",
            AuditAction::PasswordChanged => "password_changed",
            AuditAction::TenantCreated => "tenant_created",
            AuditAction::UserCreated => "user_created",
            AuditAction::ApiKeyCreated => "api_key_created",
            AuditAction::ApiKeyRotated => "api_key_rotated",
            AuditAction::ApiKeyRevoked => "api_key_revoked",
            AuditAction::TemplateCreated => "template_created",
            AuditAction::TemplateCreatedFromEvaluation => "template_created_from_evaluation",
            AuditAction::TemplateUpdated => "template_updated",
            AuditAction::TemplateExemplarAdded => "template_exemplar_added",
            AuditAction::TemplateStatusChanged => "template_status_changed",
            AuditAction::TemplateDeprecated => "template_deprecated",
            AuditAction::AlertRuleCreated => "alert_rule_created",
            AuditAction::AlertRuleUpdated => "alert_rule_updated",
            AuditAction::AlertRuleDeleted => "alert_rule_deleted",
            AuditAction::AlertAcknowledged => "alert_acknowledged",
            AuditAction::AlertResolved => "alert_resolved",
            AuditAction::WebhookCreated => "webhook_created",
            AuditAction::WebhookUpdated => "webhook_updated",
            AuditAction::WebhookDeleted => "webhook_deleted",
            AuditAction::WebhookSecretRotated => "webhook_secret_rotated",
            AuditAction::WebhookRedelivered => "webhook_redelivered",
            AuditAction::PlanChanged => "plan_changed",
            AuditAction::ReviewItemClaimed => "review_item_claimed",
            AuditAction::ReviewItemReleased => "review_item_released",
            AuditAction::ReviewItemResolved => "review_item_resolved",
            // Template suggestions.
            AuditAction::TemplateSuggestionAccepted => "template_suggestion_accepted",
            AuditAction::TemplateSuggestionDismissed => "template_suggestion_dismissed",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Starts an event for an authenticated principal.
pub fn by(principal: &Principal, action: AuditAction) -> NewAuditEvent {
    NewAuditEvent {
        ip: Some(principal.client_ip.to_string()),
        ..event(principal.tenant_id, principal.audit_actor(), action)
    }
}

/// Starts an event for an actor named explicitly (anonymous, operator CLI, a user at login).
pub fn event(
    tenant_id: Option<Uuid>,
    actor: impl Into<String>,
    action: AuditAction,
) -> NewAuditEvent {
    NewAuditEvent {
        tenant_id,
        occurred_at: Utc::now(),
        actor: actor.into(),
        action: action.as_str().to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_are_distinct_snake_case() {
        let names: std::collections::BTreeSet<&str> =
            AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(names.len(), AuditAction::ALL.len());
        assert!(names
            .iter()
            .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    }
}
