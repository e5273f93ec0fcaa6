//! Static assets (CSS, the page script, the icon), embedded in the binary at build time.
//!
//! Pages link to `/static/NAME?v=HASH`; a request with the current hash is cached for a year
//! (`immutable`), any other gets `no-cache` with an `ETag`, so a new release is picked up at
//! once and an unchanged file costs a 304.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::AppError;

#[derive(Embed)]
#[folder = "assets/"]
struct Assets;

struct Asset {
    url: &'static str,
    etag: String,
    hash: String,
}

fn table() -> &'static HashMap<String, Asset> {
    static TABLE: OnceLock<HashMap<String, Asset>> = OnceLock::new();
    TABLE.get_or_init(|| {
        Assets::iter()
            .filter_map(|name| {
                let file = Assets::get(&name)?;
                let digest = Sha256::digest(&file.data);
                let hash: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
                let url: &'static str = Box::leak(format!("/static/{name}?v={hash}").into_boxed_str());
                Some((name.to_string(), Asset { url, etag: format!("\"{hash}\""), hash }))
            })
            .collect()
    })
}

/// The versioned URL of an embedded asset (`/static/NAME?v=HASH`).
pub fn url(name: &str) -> &'static str {
    table().get(name).map_or("/static/missing", |a| a.url)
}

#[derive(Deserialize)]
pub struct Version {
    v: Option<String>,
}

pub async fn serve(Path(name): Path<String>, Query(version): Query<Version>, headers: HeaderMap) -> Response {
    let (Some(file), Some(meta)) = (Assets::get(&name), table().get(&name)) else {
        return AppError::NotFound.into_response();
    };
    let cache = if version.v.as_deref() == Some(meta.hash.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let etag = HeaderValue::from_str(&meta.etag).unwrap_or(HeaderValue::from_static("\"0\""));
    let mime = mime_guess::from_path(&name).first_or_octet_stream();
    let content_type = match mime.type_() {
        mime_guess::mime::TEXT | mime_guess::mime::APPLICATION if mime.subtype() != "octet-stream" => {
            format!("{mime}; charset=utf-8")
        }
        _ => mime.to_string(),
    };
    let mut out = HeaderMap::new();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    out.insert(header::ETAG, etag.clone());
    if headers.get(header::IF_NONE_MATCH) == Some(&etag) {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    if let Ok(ct) = HeaderValue::from_str(&content_type) {
        out.insert(header::CONTENT_TYPE, ct);
    }
    (out, file.data.into_owned()).into_response()
}
