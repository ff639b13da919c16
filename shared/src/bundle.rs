//! The web UI's bundles: which WebAssembly app serves which page.
//!
//! The UI is three apps, each a bundle of its own so that a browser downloads only the pages of
//! one group: the portal (what most visitors read: the leaderboard, runs, questions,
//! comparisons, sign-in), the workbench (what researchers do: jobs, exam sets, tunings,
//! workers) and grading. The server answers a page's path with its bundle's HTML file
//! ([`Bundle::page`]), and each app sends a path that is not its own to the server with a full
//! page load — one map for both, so they cannot disagree (a disagreement would reload forever).

/// One of the web UI's apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bundle {
    /// The leaderboard, a run, a question, two runs compared, sign-in; and every unknown path
    /// (its not-found page).
    Portal,
    /// Jobs, exam sets, tunings, workers.
    Workbench,
    /// Human grading, under `/grading`.
    Grading,
}

impl Bundle {
    pub const ALL: [Bundle; 3] = [Bundle::Portal, Bundle::Workbench, Bundle::Grading];

    /// The HTML page that starts the bundle.
    pub const fn page(self) -> &'static str {
        match self {
            Bundle::Portal => "index.html",
            Bundle::Workbench => "workbench.html",
            Bundle::Grading => "grading.html",
        }
    }

    /// The bundle's name: its WebAssembly file is `{name}_bg.wasm`, its script `{name}.js`.
    pub const fn name(self) -> &'static str {
        match self {
            Bundle::Portal => "kokushi_frontend",
            Bundle::Workbench => "kokushi_workbench",
            Bundle::Grading => "kokushi_grading",
        }
    }

    /// The bundle whose pages include `path` (the path of a URL, without its query).
    pub fn of(path: &str) -> Bundle {
        let first = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        match first {
            "jobs" | "exam-sets" | "tunings" | "workers" => Bundle::Workbench,
            "grading" => Bundle::Grading,
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
            ("/runs/3", Bundle::Portal),
            ("/runs/3/questions/116A1", Bundle::Portal),
            ("/compare", Bundle::Portal),
            ("/jobs", Bundle::Workbench),
            ("/jobs/", Bundle::Workbench),
            ("/exam-sets", Bundle::Workbench),
            ("/tunings/4", Bundle::Workbench),
            ("/workers", Bundle::Workbench),
            ("/grading", Bundle::Grading),
            ("/grading/do/3", Bundle::Grading),
            // Unknown paths are the portal's, which says it knows no such page.
            ("/jobsx", Bundle::Portal),
            ("/gradings", Bundle::Portal),
            ("/no/such/page", Bundle::Portal),
            ("", Bundle::Portal),
        ] {
            assert_eq!(Bundle::of(path), bundle, "{path:?}");
        }
    }

    #[test]
    fn bundles_have_their_own_files() {
        let pages: std::collections::HashSet<_> = Bundle::ALL.iter().map(|b| b.page()).collect();
        let names: std::collections::HashSet<_> = Bundle::ALL.iter().map(|b| b.name()).collect();
        assert_eq!((pages.len(), names.len()), (3, 3));
    }
}
