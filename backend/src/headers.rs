//! Headers every response carries, answers and refusals alike: a Content-Security-Policy fit
//! for the WebAssembly app (its own scripts and styles only, `wasm-unsafe-eval` for
//! `WebAssembly.instantiate`, no frames, no plugins, requests only to this origin),
//! `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, and `no-store` on API
//! answers (they hold results a shared machine's cache must not keep).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;

/// What the web UI may load and do. The pages load their scripts from files (no inline
/// script), and set styles only through the DOM's style objects, which the policy allows.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; \
     script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; \
     font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

const FIXED: [(&str, &str); 6] = [
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

/// The middleware outside every other but compression: it sees the refusals of the access
/// check too, which answers them as responses rather than errors for that reason. (The request
/// is not kept aside to turn an error into a response here: the router must hold it alone.)
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let api = crate::auth::paths::in_api_space(req.path());
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    for (name, value) in FIXED {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if api && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(res)
}
