//! The app's own URL paths (not the API's, which [`crate::api`] owns).

/// The leaderboard.
pub const HOME: &str = "/";

/// The sign-in page.
pub const LOGIN: &str = "/login";

/// The page of run `id`.
pub fn run_path(id: i64) -> String {
    format!("/runs/{id}")
}

/// Exam sets: upload and browse.
pub const EXAM_SETS: &str = "/exam-sets";

/// Jobs: launch evaluations and tunings, and watch the queue.
pub const JOBS: &str = "/jobs";

/// The worker registry (admins).
pub const WORKERS: &str = "/workers";

/// Project settings: members, roles, API tokens (docs/projects.md).
pub const PROJECTS: &str = "/projects";

/// Question `problem_id` of run `run`.
pub fn question_path(run: i64, problem_id: &str) -> String {
    format!("/runs/{run}/questions/{}", crate::api::encode(problem_id))
}

/// Two runs compared.
pub fn compare_path(first: i64, second: i64) -> String {
    format!("/compare?first={first}&second={second}")
}

/// The page of tuning `id`, with its loss curves.
pub fn tuning_path(id: i64) -> String {
    format!("/tunings/{id}")
}

/// The grading app: a bundle of its own, so a link between it and the main app must be a full
/// page load (`rel="external"`), or the router of the page it starts on would handle it.
pub const GRADING: &str = "/grading";

/// Leaves the app for `path` with a full page load (the other bundle's pages, or the sign-in
/// page from the grading app).
pub fn open_page(path: &str) {
    if let Some(window) = web_sys::window() {
        let _ = window.location().set_href(path);
    }
}

/// Where the header notes the project chosen in its switch for project settings to act on.
const SWITCH_TO: &str = "kokushi-switch-to";

/// The header's project switch: notes the project (in this tab's session storage, which no
/// other site can write) and opens project settings, whose bundle makes the switch
/// ([`take_switch`]) and comes back to the leaderboard. Every bundle carries the header, so it
/// carries only this.
pub fn switch_project(project_id: &str) {
    if let Some(s) = session_storage() {
        let _ = s.set_item(SWITCH_TO, project_id);
    }
    open_page(PROJECTS);
}

/// The project the header asked to switch to, once.
pub fn take_switch() -> Option<i64> {
    let s = session_storage()?;
    let id = s.get_item(SWITCH_TO).ok().flatten()?;
    let _ = s.remove_item(SWITCH_TO);
    id.parse().ok()
}

/// Where [`load_once`] notes the path it loaded.
const RELOADED: &str = "kokushi-reloaded";

fn session_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok().flatten()
}

/// Loads `url` (whose path is `path`) from the server with a full page load: another bundle's
/// page, reached by a link or a navigation the router took (it never shows such a page in the
/// address bar, so this is a new history entry). Once per path: a second time means the server
/// answered it with this bundle again, and the caller shows its not-found page instead of
/// loading it for ever. `false` when no load was started.
pub fn load_once(path: &str, url: &str) -> bool {
    // Only a path of this origin: `//host/…` would leave it.
    if !url.starts_with('/') || url.starts_with("//") || url.starts_with("/\\") {
        return false;
    }
    if let Some(s) = session_storage() {
        if s.get_item(RELOADED).ok().flatten().as_deref() == Some(path) {
            let _ = s.remove_item(RELOADED);
            return false;
        }
        let _ = s.set_item(RELOADED, path);
    }
    web_sys::window().is_some_and(|w| w.location().assign(url).is_ok())
}

/// Called as `bundle` starts: when the address is one of its own pages, a load that brought the
/// browser here succeeded, and the next may start afresh.
pub fn arrived(bundle: kokushi_shared::bundle::Bundle) {
    let path = web_sys::window()
        .and_then(|w| w.location().pathname().ok())
        .unwrap_or_default();
    if kokushi_shared::bundle::Bundle::of(&path) == bundle
        && let Some(s) = session_storage()
    {
        let _ = s.remove_item(RELOADED);
    }
}

/// The grading screen of task `task`.
pub fn grading_do_path(task: i64) -> String {
    format!("/grading/do/{task}")
}

/// The grading screen of task `task` at assignment `assignment`.
pub fn grading_do_at(task: i64, assignment: i64) -> String {
    format!("/grading/do/{task}?at={assignment}")
}

/// A grading task's page for its researchers.
pub fn grading_task_path(id: i64) -> String {
    format!("/grading/tasks/{id}")
}

/// A grading item's page, where a reviewer adjudicates.
pub fn grading_item_path(id: i64) -> String {
    format!("/grading/items/{id}")
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
        assert_eq!(question_path(42, "116A1"), "/runs/42/questions/116A1");
        assert_eq!(compare_path(1, 2), "/compare?first=1&second=2");
        assert_eq!(tuning_path(3), "/tunings/3");
        assert_eq!(parse_run_id("42"), Some(42));
        assert_eq!(grading_do_path(3), "/grading/do/3");
        assert_eq!(grading_do_at(3, 17), "/grading/do/3?at=17");
        assert_eq!(grading_task_path(3), "/grading/tasks/3");
        assert_eq!(grading_item_path(9), "/grading/items/9");
    }

    #[test]
    fn segments_that_are_not_run_ids_are_rejected() {
        for segment in ["", "0", "-3", "abc", "4.5", " 7", "99999999999999999999"] {
            assert_eq!(parse_run_id(segment), None, "{segment:?}");
        }
    }
}
