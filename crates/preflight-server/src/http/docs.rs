//! `/openapi.json` generated from the code, and `/docs`, an interactive page whose assets are
//! compiled into the binary (nothing is fetched at build or run time).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "preflight",
        description = "Layout-template governance for document-extraction pipelines: \
                       MATCH / REVIEW / NEW / REJECT from layout metadata only."
    ),
    components(schemas(crate::error::Problem, crate::error::FieldError, crate::auth::Scope)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "operations", description = "Probes, metrics and status"),
        (name = "auth", description = "Tenants, users and sessions"),
        (name = "api-keys", description = "Self-service API keys"),
        (name = "audit", description = "The append-only audit trail"),
        (name = "evaluations", description = "Decide documents, history and feedback"),
        (name = "templates", description = "Versioned layout templates and their drift"),
        (name = "alerts", description = "Alert rules, and the alerts evaluations raise"),
        (name = "webhooks", description = "Signed webhook endpoints and their deliveries"),
        (name = "analytics", description = "Decisions, drift, extractors, templates and calibration over time, from hourly rollups"),
        (name = "usage", description = "The tenant's plan and this month's usage"),
        (name = "review", description = "The review queue: REVIEW, NEW, REJECT and sampled MATCH evaluations as work items, claimed under leases and resolved as feedback"),
        (name = "suggestions", description = "Recurring unregistered layouts among NEW evaluations, accepted as templates or dismissed"),
    )
)]
pub struct ApiDoc;

/// `X-API-Key` for machines, `Authorization: Bearer` for dashboard users.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The whole OpenAPI description, as served.
/// The description: the document-wide parts from [`ApiDoc`], the paths from the routes
/// themselves (`http::routes`), so no route can be served undocumented.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (probes, v1) = super::routes();
    let mut doc = ApiDoc::openapi();
    doc.merge(probes.into_openapi());
    doc.merge(v1.into_openapi());
    doc
}

const DOCS_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, DOCS_CSP),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(|| async { axum::Json(openapi()) }))
        .route(
            "/docs",
            get(|| async {
                asset(
                    "text/html; charset=utf-8",
                    include_bytes!("../../assets/swagger-ui/index.html"),
                )
            }),
        )
        .route(
            "/docs/swagger-ui.css",
            get(|| async {
                asset(
                    "text/css; charset=utf-8",
                    include_bytes!("../../assets/swagger-ui/swagger-ui.css"),
                )
            }),
        )
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|| async {
                asset(
                    "text/javascript; charset=utf-8",
                    include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js"),
                )
            }),
        )
        .route(
            "/docs/init.js",
            get(|| async {
                asset(
                    "text/javascript; charset=utf-8",
                    include_bytes!("../../assets/swagger-ui/init.js"),
                )
            }),
        )
}
