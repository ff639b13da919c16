//! Projects (docs/projects.md): the caller's projects, one project with its members, a new
//! project (admins), members added, changed and removed (the project's owners and admins), the
//! project a browser session acts in, runs published to the portal-wide leaderboard, and exam
//! sets shared read-only with another project. Which project's objects a request reaches is
//! decided by the access check and the database (`crate::db::projects`), not here.

use actix_web::{HttpResponse, web};
use kokushi_shared::api::{CreateProject, SetMember, ShareExamSet, SwitchProject};

use super::parse_id;
use crate::auth::Credential;
use crate::db::projects::{MAX_PROJECT_NAME_CHARS, check_slug};
use crate::error::ApiError;
use crate::state::AppState;

/// The caller as `GET /api/auth/me` answers: with the projects they may act in.
pub(crate) async fn me_of(
    state: &AppState,
    caller: &crate::auth::Principal,
) -> Result<kokushi_shared::api::Me, ApiError> {
    let mut me = caller.me();
    me.projects = reachable(state, caller)
        .await?
        .into_iter()
        .map(|p| kokushi_shared::api::ProjectRef {
            id: p.id,
            slug: p.slug,
            name: p.name,
            role: p.role.unwrap_or(kokushi_shared::api::ProjectRole::Owner),
        })
        .collect();
    Ok(me)
}

/// The projects a request may reach: a session's, every project its account is a member of
/// (an admin's: every project); an API token's, only the one it acts in.
async fn reachable(
    state: &AppState,
    caller: &crate::auth::Principal,
) -> Result<Vec<kokushi_shared::api::ProjectSummary>, ApiError> {
    let mut list = state
        .db
        .projects_of(caller.user.id, caller.is_admin())
        .await?;
    if matches!(caller.credential, Credential::Token { .. }) {
        let own = caller.project.as_ref().map(|p| p.id);
        list.retain(|p| Some(p.id) == own);
    }
    Ok(list)
}

/// `GET /api/projects`: the caller's projects with their role in each (an admin's: every
/// project; an API token's: its own), by name.
pub async fn projects(
    caller: crate::auth::Member,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(reachable(&state, &caller).await?))
}

/// `POST /api/projects` (admins): a new project with its first owners; 201 with it, 409 when
/// the slug is taken.
pub async fn create_project(
    caller: crate::auth::Admin,
    state: web::Data<AppState>,
    body: web::Json<CreateProject>,
) -> Result<HttpResponse, ApiError> {
    let slug = body.slug.trim();
    check_slug(slug).map_err(ApiError::BadRequest)?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_PROJECT_NAME_CHARS {
        return Err(ApiError::BadRequest(format!(
            "a project's name must be 1 to {MAX_PROJECT_NAME_CHARS} characters"
        )));
    }
    if body.owners.len() > 100 {
        return Err(ApiError::BadRequest(
            "name at most 100 owners; add more members later".to_owned(),
        ));
    }
    let mut owners = Vec::with_capacity(body.owners.len());
    for username in &body.owners {
        owners.push(account_id(&state, username).await?);
    }
    owners.sort_unstable();
    owners.dedup();
    let project = state
        .db
        .create_project(slug, name, &owners, caller.user.id)
        .await?
        .ok_or_else(|| ApiError::Conflict(format!("a project {slug:?} exists already")))?;
    tracing::info!(
        project_id = project.project.id,
        slug,
        by = caller.user.id,
        "project created"
    );
    Ok(HttpResponse::Created().json(project))
}

/// An enabled account's id by name, or 404.
async fn account_id(state: &AppState, username: &str) -> Result<i64, ApiError> {
    let username = username.trim();
    match state.db.user_by_name(username).await? {
        Some(u) if !u.user.disabled => Ok(u.user.id),
        _ => Err(ApiError::NotFound(format!(
            "there is no enabled account {username:?}"
        ))),
    }
}

/// `GET /api/projects/{id}`: the project with its members (members and admins only).
pub async fn project_detail(
    caller: crate::auth::Member,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("project", &path)?;
    let project = state
        .db
        .project(id, caller.user.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("project {id} does not exist")))?;
    Ok(HttpResponse::Ok().json(project))
}

/// The project as the caller sees it, for a change to its members: refused (403) to anyone
/// but its owners and admins.
async fn project_to_change(
    caller: &crate::auth::Principal,
    state: &AppState,
    id: i64,
) -> Result<kokushi_shared::api::ProjectDetail, ApiError> {
    let project = state
        .db
        .project(id, caller.user.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("project {id} does not exist")))?;
    let owner = project.project.role == Some(kokushi_shared::api::ProjectRole::Owner);
    if owner || caller.is_admin() {
        Ok(project)
    } else {
        Err(ApiError::Forbidden(format!(
            "only an owner of project {} or an admin may change its members",
            project.project.slug
        )))
    }
}

/// `POST /api/projects/{id}/members`: adds an account to the project or changes its role (the
/// project's owners and admins); the project with its members as they are now.
pub async fn set_member(
    caller: crate::auth::Member,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<SetMember>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("project", &path)?;
    project_to_change(&caller, &state, id).await?;
    let user = account_id(&state, &body.username).await?;
    state.db.set_member(id, user, body.role).await?;
    state.principals.clear();
    tracing::info!(
        project_id = id,
        user_id = user,
        role = body.role.id(),
        by = caller.user.id,
        "project member set"
    );
    let project = state
        .db
        .project(id, caller.user.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("project {id} vanished")))?;
    Ok(HttpResponse::Ok().json(project))
}

/// `DELETE /api/projects/{id}/members/{user_id}`: takes an account out of the project (the
/// project's owners and admins; never its last owner); 204.
pub async fn remove_member(
    caller: crate::auth::Member,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project_id, user_id) = path.into_inner();
    let id = parse_id("project", &project_id)?;
    let user = parse_id("user", &user_id)?;
    let project = project_to_change(&caller, &state, id).await?;
    if !state.db.remove_member(id, user).await? {
        return Err(ApiError::NotFound(format!(
            "account {user} is not a member of project {}",
            project.project.slug
        )));
    }
    state.principals.clear();
    tracing::info!(
        project_id = id,
        user_id = user,
        by = caller.user.id,
        "project member removed"
    );
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/auth/project`: the project the caller's browser session acts in from now on
/// (one they are a member of; an admin: any); the caller as `GET /api/auth/me` now answers. An
/// API token keeps the project it was made in (400).
pub async fn switch_project(
    caller: crate::auth::Member,
    state: web::Data<AppState>,
    body: web::Json<SwitchProject>,
) -> Result<HttpResponse, ApiError> {
    let Credential::Session { token_hash, .. } = &caller.credential else {
        return Err(ApiError::BadRequest(
            "an API token acts in the project it was made in; make a token in the other project"
                .to_owned(),
        ));
    };
    let project = state
        .db
        .project_access(
            caller.user.id,
            caller.is_admin(),
            Some(body.project_id),
            false,
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("project {} does not exist", body.project_id)))?;
    state.db.set_session_project(token_hash, project.id).await?;
    state.principals.clear();
    let mut principal = caller.0.clone();
    principal.project = Some(project);
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(me_of(&state, &principal).await?))
}

/// `POST /api/runs/{id}/publish`: puts the project's run on the portal-wide leaderboard
/// (`GET /api/leaderboard?scope=portal`); the run's summary.
pub async fn publish_run(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_published(&caller, &state, &path, true).await
}

/// `POST /api/runs/{id}/unpublish`: takes the run off the portal-wide leaderboard.
pub async fn unpublish_run(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_published(&caller, &state, &path, false).await
}

async fn set_published(
    caller: &crate::auth::Principal,
    state: &AppState,
    path: &str,
    published: bool,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("run", path)?;
    let scope = caller.scope()?;
    super::ensure_owner(
        caller,
        "run",
        id,
        state.db.run_owner(id).await?,
        if published { "publish" } else { "unpublish" },
    )?;
    if !state.db.set_published(&scope, id, published).await? {
        return Err(ApiError::NotFound(format!("run {id} does not exist")));
    }
    state.leaderboard.clear();
    tracing::info!(
        run_id = id,
        published,
        by = caller.user.id,
        "run publication set"
    );
    let summary = state
        .db
        .run_summary(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} vanished")))?;
    Ok(HttpResponse::Ok().json(summary))
}

/// Refuses (403) sharing an exam set by anyone but the project's owners and admins: sharing
/// names another project, and reaches into its list.
fn ensure_sharer(caller: &crate::auth::Principal, id: i64) -> Result<(), ApiError> {
    if caller.owns_project() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "only the project's owners or an admin may share exam set {id} with another project"
        )))
    }
}

/// `POST /api/exam-sets/{id}/shares`: shares the project's exam set read-only with another
/// project (by slug); the projects it is shared with now.
pub async fn share_exam_set(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<ShareExamSet>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("exam set", &path)?;
    let scope = caller.scope()?;
    ensure_sharer(&caller, id)?;
    state
        .db
        .set_shared(&scope, id, body.project.trim(), true)
        .await?;
    tracing::info!(exam_set_id = id, with = %body.project.trim(), by = caller.user.id, "exam set shared");
    Ok(HttpResponse::Ok().json(state.db.shares_of(id).await?))
}

/// `DELETE /api/exam-sets/{id}/shares/{project}`: stops sharing the set with a project (by
/// slug); the projects it is shared with now.
pub async fn unshare_exam_set(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (set, project) = path.into_inner();
    let id = parse_id("exam set", &set)?;
    let scope = caller.scope()?;
    ensure_sharer(&caller, id)?;
    state
        .db
        .set_shared(&scope, id, project.trim(), false)
        .await?;
    tracing::info!(exam_set_id = id, with = %project.trim(), by = caller.user.id, "exam set unshared");
    Ok(HttpResponse::Ok().json(state.db.shares_of(id).await?))
}
