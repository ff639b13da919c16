//! The app's own URL paths (not the API's, which [`crate::api`] owns).

/// The leaderboard.
pub const HOME: &str = "/";

/// The sign-in page.
pub const LOGIN: &str = "/login";

/// The page of run `id`.
pub fn run_path(id: i64) -> String {
    format!("/runs/{id}")
}

/// The run id in a `/runs/:id` path segment; `None` for anything that is not a positive integer.
pub fn parse_run_id(segment: &str) -> Option<i64> {
    segment.parse::<i64>().ok().filter(|id| *id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_path_round_trips_through_its_id() {
        assert_eq!(run_path(42), "/runs/42");
        assert_eq!(parse_run_id("42"), Some(42));
    }

    #[test]
    fn segments_that_are_not_run_ids_are_rejected() {
        for segment in ["", "0", "-3", "abc", "4.5", " 7", "99999999999999999999"] {
            assert_eq!(parse_run_id(segment), None, "{segment:?}");
        }
    }
}
