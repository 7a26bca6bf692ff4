//! The dashboard: a page at `/` that watches the service live, served from the binary itself.
//!
//! Its files are embedded at build time (`include_str!`): no CDN, no npm step, nothing read
//! from disk at run time. `index.html`, `app.css` and `app.js` are the page's own, plain
//! JavaScript over the public API (`/v1/info`, `/v1/stats`, `/v1/stream`, candles, indicators,
//! feeds, alerts and rules). The charts are drawn by TradingView's Lightweight Charts™, vendored
//! as its built file with its license and version (`vendor/README.md` says why and how to
//! update it). Each file has a strong ETag (a hash of its bytes), so a browser revalidates
//! (`Cache-Control: no-cache`) and gets 304 until the binary changes; the page is sent with a
//! Content-Security-Policy that allows only this origin.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{ApiError, AppState};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The page's files, by the name they are served under (`/assets/{name}`; the page at `/`).
const ASSETS: [Asset; 5] = [
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("app.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("favicon.svg"),
    },
    Asset {
        name: "lightweight-charts.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("vendor/lightweight-charts-5.2.1.standalone.production.js"),
    },
];

/// What the page may load and connect to: this origin only (the chart library sets inline
/// styles on its canvas elements; its attribution logo is an inline SVG).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    frame-ancestors 'none'; form-action 'self'";

/// Each asset's ETag: a hash of its bytes, computed once.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    use std::hash::{BuildHasher, Hasher};
    ASSETS
        .iter()
        .map(|asset| {
            let mut hasher = foldhash::quality::FixedState::with_seed(0x7469_636b).build_hasher();
            hasher.write(asset.body.as_bytes());
            format!("\"{:016x}-{}\"", hasher.finish(), asset.body.len())
        })
        .collect()
});

/// The dashboard's routes: the page and its assets (not part of the JSON API's description).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/index.html", get(page))
        .route("/assets/{name}", get(asset))
}

/// `GET /`: the page.
async fn page(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

/// `GET /assets/{name}`: one of the page's files.
async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let index = ASSETS
        .iter()
        .position(|a| a.name == name && name != "index.html")
        .ok_or_else(|| ApiError::NotFound(format!("GET /assets/{name}")))?;
    Ok(serve(index, &headers))
}

fn serve(index: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    let etag = &ETAGS[index];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let out = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(etag) {
        out.insert(header::ETAG, etag);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if index == 0 {
        out.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        out.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_names_is_embedded() {
        let page = ASSETS[0].body;
        for asset in &ASSETS[1..] {
            assert!(
                page.contains(&format!("/assets/{}", asset.name)),
                "{} is embedded but the page does not load it",
                asset.name
            );
        }
        assert!(ASSETS[4].body.contains("Lightweight Charts"));
        assert_eq!(ETAGS.len(), ASSETS.len());
    }
}
