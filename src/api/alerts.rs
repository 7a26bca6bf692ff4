//! Alerts and their rules.
//!
//! - `GET /v1/alerts?symbol=..&limit=..`: the most recent alerts, newest first.
//! - `GET /v1/alerts/rules`: the rules in force.
//! - `POST /v1/alerts/rules`: adds a rule (JSON body, the same shape as a TOML `[[alerts]]`
//!   table); 201 with the rule as stored (its id generated if absent); 400 naming the bad field;
//!   409 if the id is taken.
//! - `DELETE /v1/alerts/rules/{id}`: removes a rule; 404 if there is none.
//!
//! On an analytics node of a cluster the edits are the cluster's: written to its shared rules
//! (`crate::cluster::rules`) and in force on every node.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState};
use crate::alerts::book::BookError;
use crate::alerts::sink::RECENT_ALERTS;
use crate::alerts::{Alert, RuleSpec};
use crate::cluster::rules::{RulesError, SharedRules};

/// Alerts returned when no `limit` is given.
pub const DEFAULT_ALERT_LIMIT: usize = 100;

/// Query of `GET /v1/alerts`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// Only this symbol's alerts.
    pub symbol: Option<String>,
    /// Most alerts returned, 1 to 10000 (default 100).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
}

/// The body of `GET /v1/alerts`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertList {
    /// Alerts returned.
    pub count: usize,
    /// Newest first.
    #[schema(value_type = Vec<Alert>)]
    pub alerts: Vec<Arc<Alert>>,
}

/// `GET /v1/alerts`.
#[utoipa::path(
    get,
    path = "/v1/alerts",
    tag = "alerts",
    summary = "The most recent alerts, newest first",
    params(AlertsQuery),
    responses((status = 200, description = "The alerts kept (the last 10,000).", body = AlertList)),
)]
pub async fn alerts(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AlertsQuery>,
) -> Result<Json<AlertList>, ApiError> {
    let limit = match query.limit {
        None => DEFAULT_ALERT_LIMIT,
        Some(limit) => usize::try_from(limit)
            .ok()
            .filter(|l| (1..=RECENT_ALERTS).contains(l))
            .ok_or_else(|| {
                ApiError::BadParameter(format!("limit {limit} is out of range 1..={RECENT_ALERTS}"))
            })?,
    };
    let alerts = state.alerts.recent(query.symbol.as_deref(), limit);
    Ok(Json(AlertList {
        count: alerts.len(),
        alerts,
    }))
}

/// The body of `GET /v1/alerts/rules`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleList {
    /// Rules in force.
    pub count: usize,
    /// In the order they were added.
    pub rules: Vec<RuleSpec>,
}

/// `GET /v1/alerts/rules`.
#[utoipa::path(
    get,
    path = "/v1/alerts/rules",
    tag = "alerts",
    summary = "The alert rules in force",
    responses((status = 200, description = "The rules, in the order they were added.", body = RuleList)),
)]
pub async fn rules(State(state): State<AppState>) -> Json<RuleList> {
    let rules: Vec<RuleSpec> = state
        .rules
        .load()
        .rules
        .iter()
        .map(|r| r.spec.clone())
        .collect();
    Json(RuleList {
        count: rules.len(),
        rules,
    })
}

fn book_error(error: BookError) -> ApiError {
    match error {
        BookError::Invalid(invalid) => ApiError::InvalidRule(invalid.to_string()),
        BookError::Duplicate(_) | BookError::Full => ApiError::Conflict(error.to_string()),
        BookError::NotFound(_) => ApiError::UnknownRule(error.to_string()),
        BookError::Persist { .. } => ApiError::Internal(error.to_string()),
    }
}

/// The cluster's rules, which an analytics node's edits go to (`None` on a single process, whose
/// book is edited in place); a node that has not read them yet cannot edit them.
fn shared_rules(state: &AppState) -> Result<Option<&Arc<SharedRules>>, ApiError> {
    match &state.cluster {
        None => Ok(None),
        Some(cluster) => cluster.rules.get().map(Some).ok_or_else(|| {
            ApiError::Unavailable(
                "this node has not joined the cluster yet: the cluster's alert rules are edited \
                 once it has"
                    .to_string(),
            )
        }),
    }
}

fn rules_error(error: RulesError) -> ApiError {
    match error {
        RulesError::Book(error) => book_error(error),
        other => ApiError::Unavailable(other.to_string()),
    }
}

/// Proof that a request may change state: it carries the configured API token as
/// `Authorization: Bearer <token>` (compared in constant time), or no token is configured.
#[derive(Debug)]
pub struct RuleEditor;

impl FromRequestParts<AppState> for RuleEditor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(token) = &state.api_token else {
            return Ok(RuleEditor);
        };
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, credentials)| credentials.trim());
        if bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) {
            Ok(RuleEditor)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// `POST /v1/alerts/rules`.
#[utoipa::path(
    post,
    path = "/v1/alerts/rules",
    tag = "alerts",
    summary = "Add an alert rule (bearer token required when one is configured)",
    request_body(content = RuleSpec, description = "The rule; `id` is generated when absent."),
    security((), ("bearer" = [])),
    responses(
        (status = 201, description = "The rule as stored, with its id.", body = RuleSpec),
        (status = 400, description = "`invalid_rule` naming the field (a missing or wrong-typed field, an unknown one, a value out of range), or `bad_parameter` for a body that is not JSON.", body = ErrorBody),
        (status = 401, description = "`unauthorized`: the API token is configured and missing or wrong.", body = ErrorBody),
        (status = 409, description = "`conflict`: the id is taken, or the rule book is full.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: bodies are limited to 64 KiB.", body = ErrorBody),
        (status = 500, description = "`internal`: the rules file could not be written; the rule was not added.", body = ErrorBody),
        (status = 503, description = "`unavailable`: an analytics node of a cluster that cannot reach the cluster's rules (not joined yet, NATS unreachable); the rule was not added.", body = ErrorBody),
    ),
)]
pub async fn add_rule(
    _: RuleEditor,
    State(state): State<AppState>,
    ApiJson(spec): ApiJson<RuleSpec>,
) -> Result<(StatusCode, Json<RuleSpec>), ApiError> {
    let rule = match shared_rules(&state)? {
        Some(shared) => shared.add(spec).await.map_err(rules_error)?,
        None => state.rules.add(spec).map_err(book_error)?,
    };
    tracing::info!(rule = %rule.id, kind = rule.kind(), "alert rule added");
    Ok((StatusCode::CREATED, Json(rule.spec.clone())))
}

/// `DELETE /v1/alerts/rules/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/alerts/rules/{id}",
    tag = "alerts",
    summary = "Remove an alert rule (bearer token required when one is configured)",
    params(("id" = String, Path, description = "The rule's id.")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The rule removed.", body = RuleSpec),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 404, description = "`unknown_rule`.", body = ErrorBody),
        (status = 500, description = "`internal`: the rules file could not be written; the rule was not removed.", body = ErrorBody),
        (status = 503, description = "`unavailable`: an analytics node of a cluster that cannot reach the cluster's rules; the rule was not removed.", body = ErrorBody),
    ),
)]
pub async fn remove_rule(
    _: RuleEditor,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RuleSpec>, ApiError> {
    let rule = match shared_rules(&state)? {
        Some(shared) => shared.remove(&id).await.map_err(rules_error)?,
        None => state.rules.remove(&id).map_err(book_error)?,
    };
    tracing::info!(rule = %rule.id, "alert rule removed");
    Ok(Json(rule.spec.clone()))
}
