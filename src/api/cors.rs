//! Cross-origin requests from browsers (CORS): off unless origins are configured.
//!
//! `--cors-origin ORIGIN` (repeatable) lets a page served from `ORIGIN` call every endpoint,
//! the ones that change state included (with the API token, which a browser sends in the
//! `Authorization` header — a header preflights ask about). `--cors-origin '*'` lets any page
//! *read*: `GET` and `HEAD` only. An endpoint that changes state is never opened to any origin,
//! so a page elsewhere cannot make a visitor's browser edit the rules. Answers name the origin
//! they allow (with `Vary: Origin`), never `*`, so caches keep them apart.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header, request::Parts};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Which origins may call the API from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsPolicy {
    /// Origins allowed everything.
    origins: Vec<HeaderValue>,
    /// Whether any origin may read (`*`).
    any_may_read: bool,
}

/// A configured origin that is not `*` nor `scheme://host[:port]`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{0:?} is not an origin: `*`, or `http://` or `https://` then a host and an optional \
     port, nothing after"
)]
pub struct OriginError(pub String);

impl CorsPolicy {
    /// The policy for `origins` as configured: `*` or `scheme://host[:port]` each.
    pub fn new(origins: &[String]) -> Result<Self, OriginError> {
        let mut policy = CorsPolicy::default();
        for origin in origins {
            let origin = origin.trim();
            if origin == "*" {
                policy.any_may_read = true;
                continue;
            }
            let value = parse_origin(origin).ok_or_else(|| OriginError(origin.to_string()))?;
            if !policy.origins.contains(&value) {
                policy.origins.push(value);
            }
        }
        Ok(policy)
    }

    /// Whether any cross-origin request is allowed.
    pub fn is_enabled(&self) -> bool {
        self.any_may_read || !self.origins.is_empty()
    }

    /// Whether a request (or, for a preflight, the request it announces) from `origin` may go.
    fn allows(&self, origin: &HeaderValue, parts: &Parts) -> bool {
        if self.origins.contains(origin) {
            return true;
        }
        let method = if parts.method == Method::OPTIONS {
            parts
                .headers
                .get(header::ACCESS_CONTROL_REQUEST_METHOD)
                .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        } else {
            Some(parts.method.clone())
        };
        self.any_may_read && matches!(method, Some(Method::GET | Method::HEAD))
    }

    /// The layer answering preflights and adding the headers, if the policy allows anything.
    pub fn layer(&self) -> Option<CorsLayer> {
        if !self.is_enabled() {
            return None;
        }
        let policy = self.clone();
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::predicate(move |origin, parts| {
                    policy.allows(origin, parts)
                }))
                .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("last-event-id"),
                ])
                .max_age(PREFLIGHT_MAX_AGE),
        )
    }
}

/// `scheme://host[:port]` with an `http` or `https` scheme (an IPv6 host in brackets), as a
/// header value; `None` otherwise.
fn parse_origin(text: &str) -> Option<HeaderValue> {
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))?;
    let (host_ok, port) = match rest.strip_prefix('[') {
        Some(bracketed) => {
            let (inside, after) = bracketed.split_once(']')?;
            let ipv6 =
                !inside.is_empty() && inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
            (ipv6, after)
        }
        None => {
            let end = rest.find(':').unwrap_or(rest.len());
            let (name, after) = rest.split_at(end);
            let named = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            (named, after)
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.parse::<u16>().is_ok());
    (host_ok && port_ok)
        .then(|| HeaderValue::from_str(text).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method, requested: Option<&str>) -> Parts {
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri("/v1/symbols");
        if let Some(requested) = requested {
            request = request.header(header::ACCESS_CONTROL_REQUEST_METHOD, requested);
        }
        request.body(()).expect("request").into_parts().0
    }

    #[test]
    fn origins_parse_and_bad_ones_are_named() {
        for good in [
            "https://dash.example",
            "http://127.0.0.1:5173",
            "http://[::1]:3000",
        ] {
            assert!(CorsPolicy::new(&[good.to_string()]).is_ok(), "{good}");
        }
        for bad in [
            "dash.example",
            "ftp://x",
            "https://x/path",
            "https://",
            "http://x:port",
        ] {
            assert_eq!(
                CorsPolicy::new(&[bad.to_string()]),
                Err(OriginError(bad.to_string())),
                "{bad}"
            );
        }
        assert!(!CorsPolicy::new(&[]).expect("none").is_enabled());
    }

    #[test]
    fn any_origin_may_read_but_only_listed_ones_may_write() {
        let policy = CorsPolicy::new(&["*".into(), "https://dash.example".into()]).expect("ok");
        let listed = HeaderValue::from_static("https://dash.example");
        let other = HeaderValue::from_static("https://elsewhere.example");
        assert!(policy.allows(&other, &parts(Method::GET, None)));
        assert!(policy.allows(&other, &parts(Method::OPTIONS, Some("GET"))));
        assert!(!policy.allows(&other, &parts(Method::POST, None)));
        assert!(!policy.allows(&other, &parts(Method::OPTIONS, Some("DELETE"))));
        assert!(policy.allows(&listed, &parts(Method::OPTIONS, Some("DELETE"))));
        assert!(policy.allows(&listed, &parts(Method::POST, None)));
    }
}
