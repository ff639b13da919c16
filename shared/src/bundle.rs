//! The web UI's bundles: which WebAssembly app serves which page.
//!
//! The UI is several apps, each a bundle of its own so that a browser downloads only the pages
//! of one group (at most 250 KB of gzipped WebAssembly for the first page of any group, checked
//! by `cargo xtask frontend`): the portal (the leaderboard, sign-in), a run, a question of a
//! run, two runs compared, the jobs page, the rest of the workbench (exam sets, tunings, workers),
//! project settings, grading (an annotator's tasks and the grading screen) and the review of grading tasks. The
//! server answers a page's path with its bundle's HTML file ([`Bundle::page`]), and each app
//! sends a path that is not its own to the server with a full page load — one map for both, so
//! they cannot disagree (a disagreement would reload forever).

/// One of the web UI's apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bundle {
    /// The leaderboard and sign-in; and every unknown path (its not-found page).
    Portal,
    /// A run (`/runs/3`).
    Runs,
    /// A question of a run (`/runs/3/questions/116A1`).
    Question,
    /// Two runs compared (`/compare`).
    Compare,
    /// Jobs (`/jobs`): evaluations and tunings launched and followed.
    Jobs,
    /// Exam sets, a tuning, workers.
    Workbench,
    /// Project settings (`/projects`): members, roles, API tokens, new projects.
    Settings,
    /// Human grading: `/grading` (my tasks; a researcher's new-task form) and the grading screen
    /// (`/grading/do/…`), and unknown paths under `/grading`.
    Grading,
    /// A grading task's agreement and its items, for researchers (`/grading/tasks/…`,
    /// `/grading/items/…`).
    Review,
}

impl Bundle {
    pub const ALL: [Bundle; 9] = [
        Bundle::Portal,
        Bundle::Runs,
        Bundle::Question,
        Bundle::Compare,
        Bundle::Jobs,
        Bundle::Workbench,
        Bundle::Settings,
        Bundle::Grading,
        Bundle::Review,
    ];

    /// The bundle's name: its HTML page is [`Bundle::page`], its start script
    /// `start-{name}.js`, its WebAssembly `{name}_bg.wasm` and wasm-bindgen's script `{name}.js`
    /// (the frontend's binary of that name).
    pub const fn name(self) -> &'static str {
        match self {
            Bundle::Portal => "kokushi_frontend",
            Bundle::Runs => "kokushi_runs",
            Bundle::Question => "kokushi_question",
            Bundle::Compare => "kokushi_compare",
            Bundle::Jobs => "kokushi_jobs",
            Bundle::Workbench => "kokushi_workbench",
            Bundle::Settings => "kokushi_settings",
            Bundle::Grading => "kokushi_grading",
            Bundle::Review => "kokushi_review",
        }
    }

    /// The HTML page that starts the bundle.
    pub const fn page(self) -> &'static str {
        match self {
            Bundle::Portal => "index.html",
            Bundle::Runs => "runs.html",
            Bundle::Question => "question.html",
            Bundle::Compare => "compare.html",
            Bundle::Jobs => "jobs.html",
            Bundle::Workbench => "workbench.html",
            Bundle::Settings => "settings.html",
            Bundle::Grading => "grading.html",
            Bundle::Review => "review.html",
        }
    }

    /// The page's title until the app starts (both languages: the app picks one).
    pub const fn title(self) -> &'static str {
        match self {
            Bundle::Portal | Bundle::Runs | Bundle::Question | Bundle::Compare => "Kokushi 国試",
            Bundle::Jobs | Bundle::Workbench => "Kokushi 国試 · 作業台 Workbench",
            Bundle::Settings => "Kokushi 国試 · 設定 Settings",
            Bundle::Grading | Bundle::Review => "Kokushi 国試 · 採点 Grading",
        }
    }

    /// The bundle whose pages include `path` (the path of a URL, without its query).
    pub fn of(path: &str) -> Bundle {
        let mut segments = path.trim_start_matches('/').split('/');
        let first = segments.next().unwrap_or_default();
        match first {
            "runs" => match (segments.next(), segments.next()) {
                (Some(_), Some("questions")) => Bundle::Question,
                _ => Bundle::Runs,
            },
            "compare" => Bundle::Compare,
            "jobs" => Bundle::Jobs,
            "exam-sets" | "tunings" | "workers" => Bundle::Workbench,
            "projects" => Bundle::Settings,
            "grading" => match segments.next() {
                Some("tasks" | "items") => Bundle::Review,
                _ => Bundle::Grading,
            },
            _ => Bundle::Portal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_page_belongs_to_one_bundle() {
        for (path, bundle) in [
            ("/", Bundle::Portal),
            ("/login", Bundle::Portal),
            ("/runs/3", Bundle::Runs),
            ("/runs/3/questions/116A1", Bundle::Question),
            ("/runs/3/questions", Bundle::Question),
            ("/runs/3/nowhere", Bundle::Runs),
            ("/runs", Bundle::Runs),
            ("/compare", Bundle::Compare),
            ("/jobs", Bundle::Jobs),
            ("/jobs/", Bundle::Jobs),
            ("/exam-sets", Bundle::Workbench),
            ("/tunings/4", Bundle::Workbench),
            ("/workers", Bundle::Workbench),
            ("/projects", Bundle::Settings),
            ("/grading", Bundle::Grading),
            ("/grading/", Bundle::Grading),
            ("/grading/do/3", Bundle::Grading),
            ("/grading/nowhere", Bundle::Grading),
            ("/grading/tasks/2", Bundle::Review),
            ("/grading/items/9", Bundle::Review),
            // Unknown paths are the portal's, which says it knows no such page.
            ("/jobsx", Bundle::Portal),
            ("/gradings", Bundle::Portal),
            ("/run/3", Bundle::Portal),
            ("/no/such/page", Bundle::Portal),
            ("", Bundle::Portal),
        ] {
            assert_eq!(Bundle::of(path), bundle, "{path:?}");
        }
    }

    #[test]
    fn bundles_have_their_own_files() {
        let count = Bundle::ALL.len();
        let pages: std::collections::HashSet<_> = Bundle::ALL.iter().map(|b| b.page()).collect();
        let names: std::collections::HashSet<_> = Bundle::ALL.iter().map(|b| b.name()).collect();
        assert_eq!((pages.len(), names.len()), (count, count));
        // Every bundle serves some path.
        for bundle in Bundle::ALL {
            assert!(
                [
                    "/",
                    "/runs/1",
                    "/runs/1/questions/A1",
                    "/compare",
                    "/jobs",
                    "/workers",
                    "/projects",
                    "/grading",
                    "/grading/tasks/1"
                ]
                .iter()
                .any(|p| Bundle::of(p) == bundle),
                "{bundle:?}"
            );
        }
    }
}
