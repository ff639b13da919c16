//! Pages of long lists. A list endpoint takes `?limit=N&offset=M`, answers with one page (a
//! JSON array, as before pagination) and says where it stands in headers: `X-Total-Count` (how
//! many there are in all) and, while more follow, a `Link` to the next page (`rel="next"`).
//! Without `limit` a caller gets the endpoint's default page; more than its cap is refused
//! (400), so no request can ask the server to build an unbounded answer.

use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// `?limit=&offset=` as sent.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub offset: Option<u64>,
}

/// One page: at most `limit` rows after skipping `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub offset: u64,
}

/// How long the pages of one list may be.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub default: u32,
    pub max: u32,
}

/// Leaderboard rows (each filtered row is a scoring of a whole run).
pub const LEADERBOARD: Bounds = Bounds {
    default: 500,
    max: 1000,
};
/// A run's questions, each with its text, choices and answer.
pub const QUESTIONS: Bounds = Bounds {
    default: 100,
    max: 1000,
};

/// Exam sets, tunings, accounts.
pub const LISTS: Bounds = Bounds {
    default: 500,
    max: 1000,
};
/// Grading tasks (each with its agreement figures).
pub const TASKS: Bounds = Bounds {
    default: 100,
    max: 500,
};
/// Lines of the audit log in one download.
pub const AUDIT: Bounds = Bounds {
    default: 10_000,
    max: 100_000,
};

impl PageQuery {
    /// The page asked for within `bounds` (400 for a limit of 0 or above the cap).
    pub fn page(&self, bounds: Bounds) -> Result<Page, ApiError> {
        let limit = self.limit.unwrap_or(bounds.default);
        if !(1..=bounds.max).contains(&limit) {
            return Err(ApiError::BadRequest(format!(
                "limit {limit} must be between 1 and {}",
                bounds.max
            )));
        }
        let offset = self.offset.unwrap_or(0);
        if offset > i64::MAX as u64 {
            return Err(ApiError::BadRequest(format!(
                "offset {offset} is too large"
            )));
        }
        Ok(Page { limit, offset })
    }
}

impl Page {
    /// `LIMIT … OFFSET …` for SQL (numbers of ours, never text a caller sent).
    pub fn sql(&self) -> String {
        format!("LIMIT {} OFFSET {}", self.limit, self.offset)
    }

    /// The rows of `all` this page keeps.
    pub fn slice<T>(&self, all: Vec<T>) -> Vec<T> {
        let skip = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let take = usize::try_from(self.limit).unwrap_or(usize::MAX);
        all.into_iter().skip(skip).take(take).collect()
    }

    /// The headers that place this page among `total` rows: `X-Total-Count`, and a `Link` to
    /// the next page of `req`'s path and query while there is one.
    pub fn headers(&self, req: &HttpRequest, total: u64) -> Vec<(&'static str, String)> {
        let mut headers = vec![("X-Total-Count", total.to_string())];
        let next = self.offset + u64::from(self.limit);
        if next < total {
            let kept: Vec<&str> = req
                .query_string()
                .split('&')
                .filter(|p| !p.is_empty() && !p.starts_with("limit=") && !p.starts_with("offset="))
                .collect();
            let mut query = kept.join("&");
            if !query.is_empty() {
                query.push('&');
            }
            headers.push((
                "Link",
                format!(
                    "<{}?{query}limit={}&offset={next}>; rel=\"next\"",
                    req.path(),
                    self.limit
                ),
            ));
        }
        headers
    }

    /// `response` (a download, say) with this page's headers added.
    pub fn annotate(
        &self,
        mut response: HttpResponse,
        req: &HttpRequest,
        total: u64,
    ) -> HttpResponse {
        for (name, value) in self.headers(req, total) {
            if let (Ok(name), Ok(value)) = (
                actix_web::http::header::HeaderName::try_from(name),
                actix_web::http::header::HeaderValue::from_str(&value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }

    /// A JSON answer of one page of rows among `total`.
    pub fn respond<T: Serialize>(&self, req: &HttpRequest, rows: &[T], total: u64) -> HttpResponse {
        self.annotate(HttpResponse::Ok().json(rows), req, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn a_page_is_bounded_and_links_to_the_next() {
        let q = PageQuery::default();
        assert_eq!(
            q.page(LISTS).expect("default"),
            Page {
                limit: 500,
                offset: 0
            }
        );
        for limit in [0, 1001] {
            let q = PageQuery {
                limit: Some(limit),
                offset: None,
            };
            assert!(q.page(LISTS).is_err(), "{limit}");
        }
        let page = Page {
            limit: 10,
            offset: 20,
        };
        assert_eq!(page.slice((0..100).collect()), (20..30).collect::<Vec<_>>());
        let req = TestRequest::get()
            .uri("/api/leaderboard?years=2022&limit=10&offset=20")
            .to_http_request();
        let headers = page.headers(&req, 45);
        assert_eq!(headers[0], ("X-Total-Count", "45".to_owned()));
        assert_eq!(
            headers[1].1,
            "</api/leaderboard?years=2022&limit=10&offset=30>; rel=\"next\""
        );
        assert_eq!(
            page.headers(&req, 30).len(),
            1,
            "no next page after the last"
        );
    }
}
