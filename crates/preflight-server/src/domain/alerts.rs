//! Alerts: what an evaluation tells its caller about its template beyond the decision.
//!
//! Today one kind: a change point the template's drift detector confirmed while committing
//! the evaluation (the detector runs inside the commit, under the template's row lock, so
//! the alert is known only then; see `storage::evaluations`). It is built from the engine's
//! [`ChangePoint`] and travels in the evaluation's answer.

use preflight_engine::{ChangePoint, DriftSeries};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertKind {
    /// A drift series of the template shifted and stayed shifted.
    TemplateChangePoint,
}

/// One alert in an evaluation's `alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    #[serde(rename = "type")]
    pub kind: AlertKind,
    pub template_id: Option<String>,
    pub template_version_id: Option<Uuid>,
    /// `similarity`, `drift` or `extractor_confidence`.
    #[schema(value_type = String)]
    pub series: DriftSeries,
    /// The evaluation (1-based, per template version) where the change began.
    pub observation: u64,
    /// The evaluation at which the detector confirmed it.
    pub detected_at_observation: u64,
    pub baseline_mean: f64,
    pub recent_mean: f64,
    pub message: String,
}

impl Alert {
    /// The alert for a change point confirmed on a template version.
    pub fn change_point(
        template_id: Option<&str>,
        template_version_id: Option<Uuid>,
        cp: &ChangePoint,
    ) -> Alert {
        Alert {
            kind: AlertKind::TemplateChangePoint,
            template_id: template_id.map(str::to_string),
            template_version_id,
            series: cp.series,
            observation: cp.observation,
            detected_at_observation: cp.detected_at,
            baseline_mean: cp.baseline_mean,
            recent_mean: cp.recent_mean,
            message: format!(
                "this template's {} changed around its evaluation {}",
                cp.series.as_str().replace('_', " "),
                cp.observation
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_point_alert_has_the_wire_shape_clients_read() {
        let cp = ChangePoint {
            observation: 41,
            detected_at: 47,
            series: DriftSeries::ExtractorConfidence,
            baseline_mean: 0.91,
            recent_mean: 0.62,
        };
        let tv = Uuid::nil();
        let json =
            serde_json::to_value(Alert::change_point(Some("invoice"), Some(tv), &cp)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "TEMPLATE_CHANGE_POINT",
                "template_id": "invoice",
                "template_version_id": tv,
                "series": "extractor_confidence",
                "observation": 41,
                "detected_at_observation": 47,
                "baseline_mean": 0.91,
                "recent_mean": 0.62,
                "message": "this template's extractor confidence changed around its evaluation 41",
            })
        );
    }
}
