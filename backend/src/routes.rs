//! The API's routes: every endpoint (the JSON API under `/api`, and `/metrics`) is one line of
//! [`ENDPOINTS`]: method, path, who may call it, handler (in `crate::handlers`). The same line
//! registers the route, holds the handler to take its access level's extractor first
//! ([`crate::auth::demand`]), and feeds the access check ([`crate::auth::authorize`]), so an
//! endpoint cannot exist without a stated access, and the role-matrix test walks them all.

use actix_web::{HttpResponse, web};

use crate::auth::Access;
use crate::db::projects::Owned;
use crate::error::ApiError;
use crate::handlers::{
    accounts, compare, exam_sets, grading, judges, leaderboard, lineage, live, metrics, projects,
    rules, runs, system, tunings,
};

/// One endpoint of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Lower case: `get`, `post`, `patch`, `delete`.
    pub method: &'static str,
    /// The full pattern, as actix matches it: `/api/runs/{id}`, `/metrics`.
    pub path: &'static str,
    pub access: Access,
    /// The kind of object the path's first `{…}` names, each belonging to one project: the
    /// access check lets the request through only when the object is the caller's project's
    /// (or, to read, shared with it), and answers 404 otherwise (docs/projects.md).
    pub object: Option<Owned>,
}

/// A handler as the table registers it: above `Public`, held by [`crate::auth::demand`] to
/// take its level's extractor first (or the build fails).
macro_rules! guarded {
    (Public, $handler:path) => {
        $handler
    };
    ($access:ident, $handler:path) => {
        crate::auth::demand::<crate::auth::$access, _, _>($handler)
    };
}

macro_rules! endpoints {
    ($($method:ident $path:literal $access:ident $([$object:ident])? => $handler:path;)*) => {
        /// Every endpoint of the API, with who may call it and what its path names.
        pub const ENDPOINTS: &[Endpoint] = &[$(Endpoint {
            method: stringify!($method),
            path: $path,
            access: Access::$access,
            object: endpoints!(@object $($object)?),
        },)*];

        fn register(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::$method().to(guarded!($access, $handler)));)*
        }
    };
    (@object) => { None };
    (@object $object:ident) => { Some(Owned::$object) };
}

endpoints! {
    get "/api/health" Public => system::health;
    get "/api/openapi.json" Public => system::openapi;
    post "/api/auth/login" Public => accounts::login;
    post "/api/auth/logout" Member => accounts::logout;
    get "/api/auth/me" Member => accounts::me;
    post "/api/auth/password" Member => accounts::change_password;
    get "/api/tokens" Member => accounts::tokens;
    post "/api/tokens" Member => accounts::create_token;
    delete "/api/tokens/{id}" Member => accounts::revoke_token;
    get "/api/users" Admin => accounts::users;
    get "/api/workers" Admin => system::workers;
    get "/metrics" Admin => metrics::metrics;
    post "/api/users" Admin => accounts::add_user;
    patch "/api/users/{id}" Admin => accounts::update_user;
    get "/api/leaderboard" Researcher => leaderboard::leaderboard;
    get "/api/leaderboard/export" Researcher => leaderboard::export;
    get "/api/models" Researcher => system::models;
    get "/api/exam-sets" Researcher => exam_sets::exam_sets;
    get "/api/exam-sets/{id}/rules" Researcher [ExamSet] => rules::exam_set_rules;
    post "/api/exam-sets/{id}/rules" Researcher [ExamSet] => rules::add_exam_set_rules;
    get "/api/runs/{id}/rescore" Researcher [Run] => rules::rescore_preview;
    post "/api/runs/{id}/rescore" Researcher [Run] => rules::rescore_run;
    post "/api/exam-sets" Researcher => exam_sets::upload_exam_set;
    post "/api/runs" Researcher => runs::create_run;
    post "/api/runs/estimate" Researcher => runs::estimate_run;
    get "/api/runs/{id}" Researcher [Run] => runs::run_detail;
    get "/api/runs/{id}/questions" Researcher [Run] => runs::run_questions;
    post "/api/runs/{id}/cancel" Researcher [Run] => runs::cancel_run;
    post "/api/runs/{id}/retry" Researcher [Run] => runs::retry_run;
    get "/api/runs/{id}/score" Researcher [Run] => runs::run_score;
    get "/api/runs/{id}/export" Researcher [Run] => runs::run_export;
    get "/api/runs/{id}/events" Researcher [Run] => live::run_events;
    get "/api/runs/{id}/questions/{problem_id}" Researcher [Run] => compare::question;
    get "/api/compare" Researcher => compare::compare;
    get "/api/runs/{id}/lineage" Researcher [Run] => lineage::lineage;
    get "/api/runs/{id}/cost" Researcher [Run] => runs::run_cost;
    get "/api/tunings" Researcher => tunings::tunings;
    post "/api/tunings" Researcher => tunings::create_tuning;
    get "/api/tunings/{id}" Researcher [Tuning] => tunings::tuning_detail;
    post "/api/tunings/{id}/cancel" Researcher [Tuning] => tunings::cancel_tuning;
    post "/api/tunings/{id}/retry" Researcher [Tuning] => tunings::retry_tuning;
    get "/api/grading/annotators" Researcher => grading::annotators;
    get "/api/grading/tasks" Researcher => grading::tasks;
    post "/api/grading/tasks" Researcher => grading::create_task;
    get "/api/grading/tasks/{id}" Researcher [GradingTask] => grading::task_detail;
    get "/api/grading/tasks/{id}/export" Researcher [GradingTask] => grading::export_grades;
    get "/api/grading/items/{id}" Researcher [GradingItem] => grading::item_detail;
    post "/api/grading/items/{id}/adjudicate" Researcher [GradingItem] => grading::adjudicate;
    get "/api/grading/audit" Researcher => grading::audit;
    get "/api/grading/gold-flags" Researcher => grading::gold_flags;
    get "/api/grading/mine" Member => grading::my_tasks;
    get "/api/grading/mine/{task_id}" Member [GradingTask] => grading::my_queue;
    get "/api/grading/assignments/{id}" Member [Assignment] => grading::assignment;
    post "/api/grading/assignments/{id}/grade" Member [Assignment] => grading::grade;
    get "/api/projects" Member => projects::projects;
    post "/api/projects" Admin => projects::create_project;
    get "/api/projects/{id}" Member [Project] => projects::project_detail;
    post "/api/projects/{id}/members" Member [Project] => projects::set_member;
    delete "/api/projects/{id}/members/{user_id}" Member [Project] => projects::remove_member;
    post "/api/auth/project" Member => projects::switch_project;
    post "/api/runs/{id}/publish" Researcher [Run] => projects::publish_run;
    post "/api/runs/{id}/unpublish" Researcher [Run] => projects::unpublish_run;
    post "/api/exam-sets/{id}/shares" Researcher [ExamSet] => projects::share_exam_set;
    delete "/api/exam-sets/{id}/shares/{project}" Researcher [ExamSet] => projects::unshare_exam_set;
    get "/api/judge-prompts" Researcher => judges::judge_prompts;
    post "/api/judge-prompts" Researcher => judges::add_judge_prompt;
    get "/api/grading/tasks/{id}/judges" Researcher [GradingTask] => judges::judge_runs;
    post "/api/grading/tasks/{id}/judges" Researcher [GradingTask] => judges::create_judge_run;
    post "/api/grading/tasks/{id}/judges/estimate" Researcher [GradingTask] => judges::estimate_judge_run;
    post "/api/grading/tasks/{id}/judges/{judge_id}/cancel" Researcher [GradingTask] => judges::cancel_judge_run;
    post "/api/grading/tasks/{id}/judges/{judge_id}/retry" Researcher [GradingTask] => judges::retry_judge_run;
    get "/api/judging" Researcher => judges::judging_settings;
    post "/api/judging" Researcher => judges::set_judging_settings;
}

/// Registers every endpoint, then a JSON 404 for any other `/api` path. The access check
/// ([`crate::auth::authorize`]) and the request metrics wrap the whole app (`startup`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    register(cfg);
    cfg.service(web::scope("/api").default_service(web::to(|| async {
        Err::<HttpResponse, _>(ApiError::NotFound("no such API endpoint".to_owned()))
    })));
}

#[cfg(test)]
mod tests {
    use actix_web::dev::Service;
    use actix_web::{App, HttpMessage, test};
    use kokushi_shared::api::{Role, UserSummary};

    use super::*;
    use crate::auth::{Credential, Principal};

    fn principal(roles: &[Role]) -> Principal {
        Principal {
            user: UserSummary {
                id: 7,
                username: "someone".to_owned(),
                roles: roles.to_vec(),
                disabled: false,
                created_at: String::new(),
            },
            credential: Credential::Token {
                token_hash: String::new(),
            },
            project: kokushi_shared::api::ProjectRole::of_roles(roles).map(|role| {
                kokushi_shared::api::ProjectRef {
                    id: 1,
                    slug: "default".to_owned(),
                    name: "Default project".to_owned(),
                    role,
                }
            }),
            read_only: false,
        }
    }

    /// Every path that names an object by id says which kind, so that the access check keeps
    /// other projects' objects out; only account-level ids (the caller's own tokens, accounts
    /// for admins) are not a project's.
    #[actix_web::test]
    async fn every_object_path_names_its_kind() {
        for e in ENDPOINTS {
            let account_level =
                e.path.starts_with("/api/tokens/") || e.path.starts_with("/api/users/");
            if e.path.contains('{') && !account_level {
                assert!(
                    e.object.is_some(),
                    "{} {} names no object kind",
                    e.method,
                    e.path
                );
            } else {
                assert!(e.object.is_none(), "{} {}", e.method, e.path);
            }
        }
    }

    /// The handlers alone, without the access middleware: each refuses, by its own first
    /// argument, every caller below its table line's level — so the table and the signatures
    /// agree, and a handler stays shut even if the middleware were bypassed.
    #[actix_web::test]
    async fn every_handler_refuses_a_caller_below_its_level() {
        let callers: [(&str, Option<Principal>, Access); 3] = [
            ("anonymous", None, Access::Member),
            (
                "an annotator",
                Some(principal(&[Role::Annotator])),
                Access::Researcher,
            ),
            (
                "a researcher",
                Some(principal(&[Role::Researcher])),
                Access::Admin,
            ),
        ];
        let mut checked = 0;
        for (who, caller, needs_at_least) in callers {
            let app = test::init_service(
                App::new()
                    .wrap_fn(move |req, srv| {
                        if let Some(p) = caller.clone() {
                            req.extensions_mut().insert(p);
                        }
                        srv.call(req)
                    })
                    .configure(configure),
            )
            .await;
            let level = |a: Access| match a {
                Access::Public => 0,
                Access::Member => 1,
                Access::Researcher => 2,
                Access::Admin => 3,
            };
            for e in ENDPOINTS
                .iter()
                .filter(|e| level(e.access) >= level(needs_at_least))
            {
                let path = e
                    .path
                    .split('/')
                    .map(|s| if s.starts_with('{') { "1" } else { s })
                    .collect::<Vec<_>>()
                    .join("/");
                let method =
                    actix_web::http::Method::from_bytes(e.method.to_uppercase().as_bytes())
                        .expect("a method");
                let req = test::TestRequest::default()
                    .method(method)
                    .uri(&path)
                    .insert_header(("Content-Type", "application/json"))
                    .set_payload("{}")
                    .to_request();
                let status = test::call_service(&app, req).await.status().as_u16();
                let want = if who == "anonymous" { 401 } else { 403 };
                assert_eq!(
                    status, want,
                    "{} {} ({:?}) as {who} reached its handler",
                    e.method, e.path, e.access
                );
                checked += 1;
            }
        }
        assert!(checked > ENDPOINTS.len(), "{checked}");
    }
}
