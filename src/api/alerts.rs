//! Alerts and their rules.
//!
//! - `GET /v1/alerts?symbol=..&limit=..`: the most recent alerts, newest first.
//! - `GET /v1/alerts/rules`: the rules in force.
//! - `POST /v1/alerts/rules`: adds a rule (JSON body, the same shape as a TOML `[[alerts]]`
//!   table); 201 with the rule as stored (its id generated if absent); 400 naming the bad field;
//!   409 if the id is taken.
//! - `DELETE /v1/alerts/rules/{id}`: removes a rule; 404 if there is none.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState};
use crate::alerts::rules::BookError;
use crate::alerts::sink::RECENT_ALERTS;
use crate::alerts::{Alert, RuleSpec};

/// Alerts returned when no `limit` is given.
pub const DEFAULT_ALERT_LIMIT: usize = 100;

/// Query of `GET /v1/alerts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    /// Only this symbol's alerts.
    pub symbol: Option<String>,
    /// Most alerts returned.
    pub limit: Option<i64>,
}

/// The body of `GET /v1/alerts`.
#[derive(Debug, Serialize)]
pub struct AlertList {
    /// Alerts returned.
    pub count: usize,
    /// Newest first.
    pub alerts: Vec<Arc<Alert>>,
}

/// `GET /v1/alerts`.
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
#[derive(Debug, Serialize)]
pub struct RuleList {
    /// Rules in force.
    pub count: usize,
    /// In the order they were added.
    pub rules: Vec<RuleSpec>,
}

/// `GET /v1/alerts/rules`.
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
pub async fn add_rule(
    _: RuleEditor,
    State(state): State<AppState>,
    ApiJson(spec): ApiJson<RuleSpec>,
) -> Result<(StatusCode, Json<RuleSpec>), ApiError> {
    let rule = state.rules.add(spec).map_err(book_error)?;
    tracing::info!(rule = %rule.id, kind = rule.kind(), "alert rule added");
    Ok((StatusCode::CREATED, Json(rule.spec.clone())))
}

/// `DELETE /v1/alerts/rules/{id}`.
pub async fn remove_rule(
    _: RuleEditor,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RuleSpec>, ApiError> {
    let rule = state.rules.remove(&id).map_err(book_error)?;
    tracing::info!(rule = %rule.id, "alert rule removed");
    Ok(Json(rule.spec.clone()))
}
