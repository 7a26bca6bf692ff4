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
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

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

/// `POST /v1/alerts/rules`.
pub async fn add_rule(
    State(state): State<AppState>,
    ApiJson(spec): ApiJson<RuleSpec>,
) -> Result<(StatusCode, Json<RuleSpec>), ApiError> {
    let rule = state.rules.add(spec).map_err(book_error)?;
    tracing::info!(rule = %rule.id, kind = rule.kind(), "alert rule added");
    Ok((StatusCode::CREATED, Json(rule.spec.clone())))
}

/// `DELETE /v1/alerts/rules/{id}`.
pub async fn remove_rule(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RuleSpec>, ApiError> {
    let rule = state.rules.remove(&id).map_err(book_error)?;
    tracing::info!(rule = %rule.id, "alert rule removed");
    Ok(Json(rule.spec.clone()))
}
