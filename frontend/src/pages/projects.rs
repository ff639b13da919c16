//! `/projects`: the project the session acts in — its members and their roles (an owner or
//! admin adds, changes and removes them) — the caller's other projects to switch to, their API
//! tokens (made in this project, read-only if asked; the value shown once), and for admins a
//! new project. The server decides who may do what; this page hides what would be refused.

use kokushi_shared::api::{
    CreateProject, CreateToken, ProjectDetail, ProjectRole, ProjectSummary, Role, SetMember,
    TokenSummary,
};
use leptos::prelude::*;

use crate::api;
use crate::api::projects as calls;
use crate::components::error_banner::ErrorBanner;
use crate::error::ApiError;
use crate::i18n::{self, t, tf};
use crate::session::{Session, SessionState};

fn role_text(role: ProjectRole) -> &'static str {
    match role {
        ProjectRole::Owner => t(i18n::PROJECTS_ROLE_OWNER),
        ProjectRole::Researcher => t(i18n::PROJECTS_ROLE_RESEARCHER),
        ProjectRole::Annotator => t(i18n::PROJECTS_ROLE_ANNOTATOR),
    }
}

#[component]
pub fn ProjectsPage() -> impl IntoView {
    let session = Session::get();
    let current = move || {
        session.0.with(|s| match s {
            SessionState::SignedIn(me) => me.project.clone(),
            _ => None,
        })
    };
    let detail = RwSignal::new(None::<ProjectDetail>);
    let mine = RwSignal::new(Vec::<ProjectSummary>::new());
    let tokens = RwSignal::new(Vec::<TokenSummary>::new());
    let error = RwSignal::new(None::<ApiError>);
    let shown_token = RwSignal::new(None::<String>);
    let record = move |result: Result<(), ApiError>| error.set(result.err());
    let reload = move || {
        let Some(project) = current() else {
            return;
        };
        leptos::task::spawn_local(async move {
            match calls::project(project.id).await {
                Ok(d) => detail.set(Some(d)),
                Err(e) => error.set(Some(e)),
            }
            if let Ok(list) = api::projects().await {
                mine.set(list);
            }
            if let Ok(list) = calls::tokens().await {
                tokens.set(list);
            }
        });
    };
    // A switch the header asked for: made once the session (and its CSRF token) is known, then
    // back to the leaderboard.
    let asked = crate::paths::take_switch();
    Effect::new(move |done: Option<bool>| {
        let signed_in = session.0.with(|s| matches!(s, SessionState::SignedIn(_)));
        if let (Some(id), true, false) = (asked, signed_in, done == Some(true)) {
            let csrf = session.csrf();
            leptos::task::spawn_local(async move {
                match api::switch_project(id, &csrf).await {
                    Ok(_) => crate::paths::open_page(crate::paths::HOME),
                    Err(e) => error.set(Some(e)),
                }
            });
            return true;
        }
        done == Some(true)
    });
    // Once the session is known (and again after each change).
    Effect::new(move |done: Option<bool>| {
        let known = current().is_some();
        if known && done != Some(true) {
            reload();
        }
        known || done == Some(true)
    });
    let manages =
        move || session.has(Role::Admin) || current().is_some_and(|p| p.role == ProjectRole::Owner);

    // Members.
    let member_name = RwSignal::new(String::new());
    let member_role = RwSignal::new(ProjectRole::Researcher);
    let add_member = move |_| {
        let (Some(project), csrf) = (current(), session.csrf()) else {
            return;
        };
        let body = SetMember {
            username: member_name.get_untracked().trim().to_owned(),
            role: member_role.get_untracked(),
        };
        leptos::task::spawn_local(async move {
            match calls::set_member(project.id, &body, &csrf).await {
                Ok(d) => {
                    detail.set(Some(d));
                    member_name.set(String::new());
                    error.set(None);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let remove = move |user: i64| {
        let (Some(project), csrf) = (current(), session.csrf()) else {
            return;
        };
        leptos::task::spawn_local(async move {
            record(calls::remove_member(project.id, user, &csrf).await);
            reload();
        });
    };
    let members = move || {
        let d = detail.get()?;
        let managing = manages();
        Some(view! {
            <table id="members">
                <thead>
                    <tr>
                        <th>{t(i18n::PROJECTS_COLUMN_MEMBER)}</th>
                        <th>{t(i18n::PROJECTS_COLUMN_ROLE)}</th>
                        <th>{t(i18n::PROJECTS_COLUMN_SINCE)}</th>
                        <th></th>
                    </tr>
                </thead>
                <tbody>
                    {d.members
                        .into_iter()
                        .map(|m| {
                            let user = m.user_id;
                            let name = m.username.clone();
                            view! {
                                <tr class="member-row" data-username=name>
                                    <td>{m.username}</td>
                                    <td class="member-role">{role_text(m.role)}</td>
                                    <td>{m.added_at}</td>
                                    <td>
                                        {managing.then(|| view! {
                                            <button type="button" class="remove-member"
                                                on:click=move |_| remove(user)>
                                                {t(i18n::PROJECTS_REMOVE)}
                                            </button>
                                        })}
                                    </td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        })
    };
    let member_form = move || {
        manages().then(|| {
            view! {
                <form class="inline-form" on:submit=move |ev| {
                    ev.prevent_default();
                    add_member(());
                }>
                    <input id="member-username" type="text" required
                        placeholder=t(i18n::PROJECTS_USERNAME)
                        prop:value=move || member_name.get()
                        on:input=move |ev| member_name.set(event_target_value(&ev)) />
                    <select id="member-role" on:change=move |ev| {
                        if let Some(role) = ProjectRole::from_id(&event_target_value(&ev)) {
                            member_role.set(role);
                        }
                    }>
                        {ProjectRole::ALL
                            .into_iter()
                            .map(|r| view! {
                                <option value=r.id() selected=move || member_role.get() == r>
                                    {role_text(r)}
                                </option>
                            })
                            .collect_view()}
                    </select>
                    <button id="add-member" type="submit" class="primary">
                        {t(i18n::PROJECTS_ADD_MEMBER)}
                    </button>
                </form>
            }
        })
    };

    // The caller's projects, to switch to.
    let switch = move |id: i64| {
        let csrf = session.csrf();
        leptos::task::spawn_local(async move {
            match api::switch_project(id, &csrf).await {
                Ok(_) => {
                    if let Some(window) = web_sys::window() {
                        let _ = window.location().reload();
                    }
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let projects = move || {
        let here = current().map(|p| p.id);
        view! {
            <ul id="my-projects" class="plain-list">
                {mine
                    .get()
                    .into_iter()
                    .map(|p| {
                        let id = p.id;
                        let role = p.role.map(role_text).unwrap_or_default();
                        view! {
                            <li class="project-row" data-slug=p.slug.clone()>
                                <strong>{p.name}</strong>
                                " "
                                <span class="hint">{format!("{} · {role} · ", p.slug)}
                                    {tf(i18n::PROJECTS_MEMBERS, &[("count", &p.member_count)])}
                                </span>
                                " "
                                {(Some(id) != here).then(|| view! {
                                    <button type="button" class="switch-project"
                                        on:click=move |_| switch(id)>
                                        {t(i18n::PROJECTS_SWITCH)}
                                    </button>
                                })}
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        }
    };

    // API tokens.
    let token_name = RwSignal::new(String::new());
    let token_read_only = RwSignal::new(true);
    let create_token = move |_| {
        let csrf = session.csrf();
        let body = CreateToken {
            name: token_name.get_untracked().trim().to_owned(),
            read_only: token_read_only.get_untracked(),
            expires_in_days: None,
        };
        leptos::task::spawn_local(async move {
            match calls::create_token(&body, &csrf).await {
                Ok(made) => {
                    shown_token.set(Some(made.token));
                    token_name.set(String::new());
                    error.set(None);
                    reload();
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let revoke = move |id: i64| {
        let csrf = session.csrf();
        leptos::task::spawn_local(async move {
            record(calls::revoke_token(id, &csrf).await.map(|_| ()));
            reload();
        });
    };
    let token_rows = move || {
        tokens
            .get()
            .into_iter()
            .map(|tok| {
                let id = tok.id;
                let live = tok.revoked_at.is_none();
                let name = tok.name.clone();
                view! {
                    <tr class="token-row" data-name=name>
                        <td>{tok.name}</td>
                        <td>{tok.project.unwrap_or_default()}</td>
                        <td>{if tok.read_only { t(i18n::PROJECTS_READ_ONLY) } else { t(i18n::PROJECTS_READ_WRITE) }}</td>
                        <td>{tok.last_used_at.unwrap_or_default()}</td>
                        <td>
                            {if live {
                                view! {
                                    <button type="button" class="revoke-token" on:click=move |_| revoke(id)>
                                        {t(i18n::PROJECTS_REVOKE)}
                                    </button>
                                }
                                .into_any()
                            } else {
                                t(i18n::PROJECTS_REVOKED).into_any()
                            }}
                        </td>
                    </tr>
                }
            })
            .collect_view()
    };

    // A new project (admins).
    let new_slug = RwSignal::new(String::new());
    let new_name = RwSignal::new(String::new());
    let new_owners = RwSignal::new(String::new());
    let create_project = move |_| {
        let csrf = session.csrf();
        let body = CreateProject {
            slug: new_slug.get_untracked().trim().to_owned(),
            name: new_name.get_untracked().trim().to_owned(),
            owners: new_owners
                .get_untracked()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        leptos::task::spawn_local(async move {
            match calls::create(&body, &csrf).await {
                Ok(_) => {
                    new_slug.set(String::new());
                    new_name.set(String::new());
                    new_owners.set(String::new());
                    error.set(None);
                    reload();
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let admin_form = move || {
        session.has(Role::Admin).then(|| view! {
            <h2>{t(i18n::PROJECTS_NEW)}</h2>
            <form class="inline-form" on:submit=move |ev| {
                ev.prevent_default();
                create_project(());
            }>
                <input id="project-slug" type="text" required placeholder="cardiology-2026"
                    prop:value=move || new_slug.get()
                    on:input=move |ev| new_slug.set(event_target_value(&ev)) />
                <input id="project-title" type="text" required placeholder=t(i18n::PROJECTS_NAME)
                    prop:value=move || new_name.get()
                    on:input=move |ev| new_name.set(event_target_value(&ev)) />
                <input id="project-owners" type="text" placeholder=t(i18n::PROJECTS_OWNERS)
                    prop:value=move || new_owners.get()
                    on:input=move |ev| new_owners.set(event_target_value(&ev)) />
                <button id="create-project" type="submit" class="primary">
                    {t(i18n::PROJECTS_CREATE)}
                </button>
            </form>
        })
    };

    view! {
        <section class="projects">
            <h1 id="project-title-heading">
                {move || current().map(|p| p.name).unwrap_or_else(|| t(i18n::PROJECTS_NONE).to_owned())}
            </h1>
            <p class="hint">
                {move || current().map(|p| tf(i18n::PROJECTS_YOUR_ROLE, &[("slug", &p.slug), ("role", &role_text(p.role))]))}
            </p>
            {move || error.get().map(|error| view! { <ErrorBanner error /> })}
            <h2>{t(i18n::PROJECTS_MEMBERS_HEADING)}</h2>
            {members}
            {member_form}
            <JudgingSettings />
            <h2>{t(i18n::PROJECTS_MINE)}</h2>
            {projects}
            <h2>{t(i18n::PROJECTS_TOKENS)}</h2>
            <p class="note">{t(i18n::PROJECTS_TOKENS_NOTE)}</p>
            {move || shown_token.get().map(|token| view! {
                <p class="note" role="status">
                    {t(i18n::PROJECTS_TOKEN_SHOWN_ONCE)} " " <code id="new-token">{token}</code>
                </p>
            })}
            <form class="inline-form" on:submit=move |ev| {
                ev.prevent_default();
                create_token(());
            }>
                <input id="token-name" type="text" required placeholder=t(i18n::PROJECTS_TOKEN_NAME)
                    prop:value=move || token_name.get()
                    on:input=move |ev| token_name.set(event_target_value(&ev)) />
                <label class="check">
                    <input id="token-read-only" type="checkbox"
                        prop:checked=move || token_read_only.get()
                        on:change=move |ev| token_read_only.set(event_target_checked(&ev)) />
                    {t(i18n::PROJECTS_READ_ONLY)}
                </label>
                <button id="create-token" type="submit">{t(i18n::PROJECTS_CREATE_TOKEN)}</button>
            </form>
            <table id="tokens">
                <thead>
                    <tr>
                        <th>{t(i18n::PROJECTS_TOKEN_NAME)}</th>
                        <th>{t(i18n::COMMON_NAV_PROJECT)}</th>
                        <th>{t(i18n::PROJECTS_ACCESS)}</th>
                        <th>{t(i18n::PROJECTS_LAST_USED)}</th>
                        <th></th>
                    </tr>
                </thead>
                <tbody>{token_rows}</tbody>
            </table>
            {admin_form}
        </section>
    }
}

/// The project's judging settings: the threshold and its calibration tasks (docs/judges.md).
/// Shown to those who may list grading tasks; saved by the project's owners.
#[component]
fn JudgingSettings() -> impl IntoView {
    let session = Session::get();
    let settings = RwSignal::new(None::<kokushi_shared::judge::JudgingSettings>);
    let tasks = RwSignal::new(Vec::<(i64, String)>::new());
    let threshold = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let saved = RwSignal::new(false);
    leptos::task::spawn_local(async move {
        if let (Ok(s), Ok(list)) = (calls::judging().await, calls::task_names().await) {
            threshold.set(format!("{:.2}", s.threshold));
            tasks.set(list.into_iter().map(|t| (t.id, t.name)).collect());
            settings.set(Some(s));
        }
    });
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(mut next) = settings.get_untracked() else {
            return;
        };
        next.threshold = threshold.get_untracked().trim().parse().unwrap_or(f64::NAN);
        let csrf = session.csrf();
        leptos::task::spawn_local(async move {
            match calls::set_judging(&next, &csrf).await {
                Ok(s) => {
                    error.set(None);
                    saved.set(true);
                    settings.set(Some(s));
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    move || {
        settings.with(Option::is_some).then(|| {
            let boxes = tasks
                .get()
                .into_iter()
                .map(|(id, name)| {
                    let on = settings.with(|s| s.as_ref().is_some_and(|s| s.calibration_tasks.contains(&id)));
                    view! {
                        <label class="check">
                            <input type="checkbox" class="calibration-task" data-task-id=id prop:checked=on
                                on:change=move |ev| {
                                    let checked = event_target_checked(&ev);
                                    saved.set(false);
                                    settings.update(|s| if let Some(s) = s {
                                        s.calibration_tasks.retain(|t| *t != id);
                                        if checked {
                                            s.calibration_tasks.push(id);
                                        }
                                    });
                                } />
                            {format!("#{id} {name}")}
                        </label>
                    }
                })
                .collect_view();
            view! {
                <h2>{t(i18n::PROJECTS_JUDGING)}</h2>
                <p class="note">{t(i18n::PROJECTS_JUDGING_NOTE)}</p>
                <form id="judging-form" class="inline-form" on:submit=save>
                    <label>
                        <span>{t(i18n::PROJECTS_JUDGING_THRESHOLD)}</span>
                        <input id="judging-threshold" type="text" prop:value=move || threshold.get()
                            on:input=move |ev| threshold.set(event_target_value(&ev)) />
                    </label>
                    {boxes}
                    <button id="judging-save" type="submit" class="primary">{t(i18n::PROJECTS_JUDGING_SAVE)}</button>
                    {move || saved.get().then(|| view! { <span id="judging-saved" role="status">{t(i18n::PROJECTS_JUDGING_SAVED)}</span> })}
                    {move || error.get().map(|error| view! { <ErrorBanner error /> })}
                </form>
            }
        })
    }
}
