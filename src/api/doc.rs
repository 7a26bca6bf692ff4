//! The OpenAPI 3.1 description of the API, generated from the handlers and the types they take
//! and return (utoipa, with utoipa-axum's router: a route is served and described by the same
//! line, so the two cannot drift). Schemas whose shape is fixed are closed
//! (`additionalProperties: false`); maps keyed by configuration (windows by label, indicators by
//! name) are open in their keys only.
//!
//! Every operation also documents the answers of the request limits that guard them all (400 for
//! an unknown query parameter, 408 for a request that took too long, 503 when requests in flight
//! are shed, 413 for an oversized body on `POST`), with the one JSON error body.

use std::sync::OnceLock;

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Description, Ref, RefOr, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{
    AppState, alerts, candles, cluster, history, indicators, stats, stream, stream_ws, system,
};

/// The description's fixed parts; the paths come from [`routes`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tickstream",
        description = "Real-time stock-ticker analytics: rolling statistics, candles, indicators, alerts and feed health over HTTP. Every answer that is not data is a JSON body `{\"error\":{\"code\",\"message\"}}`. Times are epoch milliseconds (`*_ms`); `as_of_ms` is always the stream clock the answer is exact for.",
        license(name = "MIT OR Apache-2.0"),
    ),
    components(schemas(ErrorBody, crate::alerts::Alert, stats::SymbolStats)),
    tags(
        (name = "statistics", description = "Symbols and their rolling-window statistics."),
        (name = "candles", description = "OHLCV bars."),
        (name = "indicators", description = "Indicators over the closed bars, as TA-Lib computes them."),
        (name = "alerts", description = "Alerts fired and the rules that fire them."),
        (name = "stream", description = "The live stream (Server-Sent Events, or a WebSocket)."),
        (name = "history", description = "The recordings, queried with polars: bars over a past range, a window as of a past instant."),
        (name = "feeds", description = "The sources and their health."),
        (name = "system", description = "Health, readiness, metrics and this description."),
    ),
)]
struct ApiDoc;

/// Every route of the API with its description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::metrics))
        .routes(routes!(system::openapi))
        .routes(routes!(system::feeds))
        .routes(routes!(stats::symbols))
        .routes(routes!(stats::symbol_stats))
        .routes(routes!(stats::symbol_quote))
        .routes(routes!(candles::candles))
        .routes(routes!(indicators::all_indicators))
        .routes(routes!(indicators::indicator))
        .routes(routes!(stats::all_stats))
        .routes(routes!(alerts::alerts))
        .routes(routes!(alerts::rules, alerts::add_rule))
        .routes(routes!(alerts::remove_rule))
        .routes(routes!(system::info))
        .routes(routes!(cluster::cluster))
        .routes(routes!(history::history))
        .routes(routes!(history::history_candles))
        .routes(routes!(history::history_stats))
        .routes(routes!(history::history_indicator))
        .routes(routes!(stream::stream))
        .routes(routes!(stream_ws::stream_ws))
}

/// Adds what every operation shares: the limits' answers, the error response, the bearer scheme.
pub fn finish(description: &mut Description) {
    let components = description.components.get_or_insert_with(Default::default);
    components.responses.insert(
        "Error".to_string(),
        RefOr::T(
            ResponseBuilder::new()
                .description("The JSON error body; `code` says which error.")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        ),
    );
    components.security_schemes.insert(
        "bearer".to_string(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The token in TICKSTREAM_API_TOKEN, when the service has one.",
                ))
                .build(),
        ),
    );
    for item in description.paths.paths.values_mut() {
        let operations = [
            (&mut item.get, false),
            (&mut item.post, true),
            (&mut item.delete, false),
        ];
        for (operation, has_body) in operations {
            let Some(operation) = operation else { continue };
            let mut common = vec!["400", "408", "503"];
            if has_body {
                common.push("413");
            }
            for status in common {
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Error")));
            }
        }
    }
}

/// The description as served at `/openapi.json`, built once.
pub fn openapi_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut description = routes().into_openapi();
        finish(&mut description);
        let mut value = match serde_json::to_value(&description) {
            Ok(value) => value,
            Err(error) => return format!("{{\"error\":\"{error}\"}}"),
        };
        close_schemas(&mut value);
        serde_json::to_string_pretty(&value)
            .unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
    })
}

/// Closes every object schema that lists its properties (`additionalProperties: false`), and
/// merges an `allOf` of object schemas (a flattened struct: a ranking row is a window's
/// statistics plus its symbol) into one closed object, since the closed parts of an `allOf`
/// would each refuse the others' properties. Maps (`additionalProperties` given, no properties)
/// stay open in their keys.
fn close_schemas(document: &mut serde_json::Value) {
    let schemas = document
        .pointer("/components/schemas")
        .and_then(serde_json::Value::as_object)
        .cloned()
        .unwrap_or_default();
    close(document, &schemas);
}

fn close(value: &mut serde_json::Value, schemas: &serde_json::Map<String, serde_json::Value>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            if let Some(merged) = map
                .get("allOf")
                .and_then(Value::as_array)
                .and_then(|parts| merge_objects(parts, schemas))
            {
                map.remove("allOf");
                for (key, part) in merged {
                    map.insert(key, part);
                }
            }
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".to_string(), Value::Bool(false));
            }
            for child in map.values_mut() {
                close(child, schemas);
            }
        }
        Value::Array(items) => {
            for item in items {
                close(item, schemas);
            }
        }
        _ => {}
    }
}

/// One object schema with the properties and required fields of every part (each an object
/// schema or a reference to one); `None` if a part is anything else.
fn merge_objects(
    parts: &[serde_json::Value],
    schemas: &serde_json::Map<String, serde_json::Value>,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    use serde_json::Value;
    let mut properties = serde_json::Map::new();
    let mut required: Vec<Value> = Vec::new();
    for part in parts {
        let part = match part.get("$ref").and_then(Value::as_str) {
            Some(reference) => schemas.get(reference.strip_prefix("#/components/schemas/")?)?,
            None => part,
        };
        for (name, property) in part.get("properties")?.as_object()? {
            properties.insert(name.clone(), property.clone());
        }
        for name in part
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !required.contains(name) {
                required.push(name.clone());
            }
        }
    }
    let mut merged = serde_json::Map::new();
    merged.insert("type".to_string(), Value::String("object".to_string()));
    merged.insert("required".to_string(), Value::Array(required));
    merged.insert("properties".to_string(), Value::Object(properties));
    Some(merged)
}
