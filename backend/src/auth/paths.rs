//! Which endpoint a request is for, looked up on the path **as the router matches it**:
//! actix-web percent-decodes a request's path before routing (all but `%25`, `%2F` and `%2B`),
//! so `/api/%75sers` reaches the handler of `/api/users`. Looking the endpoint up on the raw
//! path instead let such spellings past the access check; here both sides read one path.
//!
//! A request whose path lies in the API's space (`/api`, `/metrics`, under any spelling: case,
//! percent-encoding, doubled slashes, dot segments) but names no endpoint is refused before any
//! handler runs: the check fails closed.

use std::sync::LazyLock;

use actix_web::dev::ResourceDef;

use crate::routes::{ENDPOINTS, Endpoint};

/// What a request's method and path name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// An endpoint of [`ENDPOINTS`].
    Endpoint(&'static Endpoint),
    /// A path of some endpoints, with a method none of them takes (their methods, upper case).
    WrongMethod(Vec<String>),
    /// Some other spelling in the API's space: no endpoint.
    NoEndpoint,
    /// Outside the API (the web UI's files).
    Outside,
}

/// Each endpoint's pattern as the router compiles it.
static PATTERNS: LazyLock<Vec<(ResourceDef, &'static Endpoint)>> = LazyLock::new(|| {
    ENDPOINTS
        .iter()
        .map(|e| (ResourceDef::new(e.path), e))
        .collect()
});

/// Looks `method` and `router_path` up. `router_path` is the path the router matches
/// (`ServiceRequest::match_info().as_str()`), `raw_path` the path as sent.
pub fn lookup(method: &str, router_path: &str, raw_path: &str) -> Lookup {
    let mut methods = Vec::new();
    for (pattern, endpoint) in PATTERNS.iter() {
        if pattern.is_match(router_path) {
            let upper = endpoint.method.to_ascii_uppercase();
            // Methods are case-sensitive: `get` is not GET (and the router agrees).
            if method == upper {
                return Lookup::Endpoint(endpoint);
            }
            methods.push(upper);
        }
    }
    if !methods.is_empty() {
        methods.sort();
        methods.dedup();
        return Lookup::WrongMethod(methods);
    }
    if in_api_space(router_path) || in_api_space(raw_path) {
        Lookup::NoEndpoint
    } else {
        Lookup::Outside
    }
}

/// The segment of `router_path` that stands where `pattern` has its first `{…}` (the id of
/// the object the endpoint acts on), if the two have the same segments.
pub fn object_segment<'a>(pattern: &str, router_path: &'a str) -> Option<&'a str> {
    let position = pattern.split('/').position(|s| s.starts_with('{'))?;
    let pattern_len = pattern.split('/').count();
    let segments: Vec<&str> = router_path.split('/').collect();
    (segments.len() == pattern_len)
        .then(|| segments.get(position).copied())
        .flatten()
}

/// Whether a path, decoded and normalised the most generous way (every escape decoded,
/// repeatedly; `\` read as `/`; empty and `.` segments dropped, `..` applied; case folded),
/// starts with the `api` or `metrics` segment.
pub fn in_api_space(path: &str) -> bool {
    let mut decoded = path.to_owned();
    // Double encoding (`%2575`) unwraps one level per round.
    for _ in 0..4 {
        let next = percent_decode(&decoded);
        if next == decoded {
            break;
        }
        decoded = next;
    }
    let lower = decoded.to_lowercase().replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in lower.split('/') {
        match segment.trim() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    segments.first().is_some_and(|first| {
        let first = first.split([';', '?', '#']).next().unwrap_or_default();
        first == "api" || first == "metrics"
    })
}

/// Decodes every `%XX` escape (invalid UTF-8 is replaced); a `%` not followed by two hex digits
/// stays as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16)),
                bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16)),
            )
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_segment_is_the_first_placeholder() {
        assert_eq!(object_segment("/api/runs/{id}", "/api/runs/17"), Some("17"));
        assert_eq!(
            object_segment(
                "/api/runs/{id}/questions/{problem_id}",
                "/api/runs/3/questions/x"
            ),
            Some("3")
        );
        assert_eq!(object_segment("/api/runs", "/api/runs"), None);
        assert_eq!(object_segment("/api/runs/{id}", "/api/runs/1/extra"), None);
    }

    #[test]
    fn endpoints_are_found_on_the_routers_path() {
        let found = |method, path| match lookup(method, path, path) {
            Lookup::Endpoint(e) => Some((e.method, e.path)),
            _ => None,
        };
        assert_eq!(found("GET", "/api/users"), Some(("get", "/api/users")));
        assert_eq!(
            found("POST", "/api/runs/7/cancel"),
            Some(("post", "/api/runs/{id}/cancel"))
        );
        assert_eq!(found("GET", "/metrics"), Some(("get", "/metrics")));
        assert_eq!(
            found("get", "/api/users"),
            None,
            "methods are case-sensitive"
        );
        assert_eq!(
            lookup("DELETE", "/api/users", "/api/users"),
            Lookup::WrongMethod(vec!["GET".to_owned(), "POST".to_owned()])
        );
    }

    #[test]
    fn every_spelling_of_the_api_is_in_its_space() {
        for path in [
            "/api",
            "/api/",
            "/API/users",
            "//api/users",
            "/./api/users",
            "/x/../api/users",
            "/%61pi/users",
            "/%2561pi/users",
            "/api%2Fusers",
            "/metrics",
            "/METRICS/",
            "/m%65trics",
            "\\api\\users",
            "/api;jsessionid=1/users",
        ] {
            assert!(in_api_space(path), "{path}");
            assert_ne!(lookup("GET", path, path), Lookup::Outside, "{path}");
        }
        for path in [
            "/",
            "/index.html",
            "/runs/3",
            "/apiary.css",
            "/grading/tasks",
            "/metricsx",
        ] {
            assert!(!in_api_space(path), "{path}");
        }
    }
}
