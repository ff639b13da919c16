//! `/grading/tasks/:id`: one grading task for its researchers — who has graded how much, the
//! agreement between annotators (Fleiss' κ for the task, Cohen's κ per pair, with their 95%
//! intervals, and plain percent agreement), every item with disputed ones first, and the
//! downloads.

use kokushi_shared::grading::{GradingTaskDetail, ItemStatus, PairAgreement, Verdict};
use kokushi_shared::judge::JudgeRunDetail;
use leptos::prelude::*;

use super::home::progress;
use super::labels::{
    automatic, kappa, kappa_interval, percent, selection, state, state_id, state_rank, verdict,
};
use super::{fetch_into, id_param, not_an_id};
use crate::api::grading as api;
use crate::components::error_banner::load_status;
use crate::i18n::{self, t, tf};
use crate::paths;
use crate::refresh::Loaded;

#[component]
pub fn TaskPage() -> impl IntoView {
    let id = id_param("id");
    move || match id.get() {
        (Some(id), _) => view! { <TaskView id /> }.into_any(),
        (None, segment) => not_an_id(segment),
    }
}

#[component]
fn TaskView(id: i64) -> impl IntoView {
    let loaded = RwSignal::new(Loaded::<GradingTaskDetail>::default());
    fetch_into(loaded, api::task(id));
    let judges = RwSignal::new(Loaded::<Vec<JudgeRunDetail>>::default());
    poll_judges(judges, id);
    let refresh = move |_| {
        fetch_into(loaded, api::task(id));
        poll_judges(judges, id);
    };
    view! {
        <section class="grading-task">
            <div class="page-head">
                <h1 id="task-title">
                    {move || loaded.with(|s| s.latest.as_ref().map(|d| {
                        tf(i18n::GRADING_TASK_TITLE, &[("name", &d.task.name)])
                    }))}
                </h1>
                <a class="button" href=paths::GRADING>{t(i18n::GRADING_BACK_TO_GRADING)}</a>
                <button type="button" id="task-refresh" on:click=refresh>{t(i18n::GRADING_REFRESH)}</button>
            </div>
            {load_status(loaded)}
            {move || loaded.with(|s| s.latest.clone()).map(detail)}
            <div id="judges">
                <h2>{t(i18n::GRADING_JUDGES)}</h2>
                <JudgeForm id judges />
                {move || judges.with(|s| s.latest.clone()).map(judge_runs)}
            </div>
        </section>
    }
}

fn detail(d: GradingTaskDetail) -> impl IntoView {
    let task = d.task;
    let runs = task
        .run_ids
        .iter()
        .map(|run| {
            // The main app's page: a full page load.
            view! { <a href=paths::run_path(*run) rel="external">{format!("#{run}")}</a>" " }
        })
        .collect_view();
    let what = match task.sample_size {
        Some(n) => format!("{} ({n})", selection(task.selection)),
        None => selection(task.selection).to_owned(),
    };
    let annotators = task
        .annotators
        .into_iter()
        .map(|a| {
            view! {
                <tr class="annotator-row">
                    <td>{a.username}</td>
                    <td class="num">{a.assigned}</td>
                    <td class="num">{a.graded}</td>
                    <td class="progress-cell">{progress(a.graded, a.assigned)}</td>
                </tr>
            }
        })
        .collect_view();
    let agreement = d.agreement;
    let downloads = [
        (api::export_path(task.id, "csv"), i18n::GRADING_EXPORT_GRADES_CSV),
        (api::export_path(task.id, "jsonl"), i18n::GRADING_EXPORT_GRADES_JSONL),
        (api::audit_path(task.id, "csv"), i18n::GRADING_EXPORT_AUDIT_CSV),
        (api::audit_path(task.id, "jsonl"), i18n::GRADING_EXPORT_AUDIT_JSONL),
    ]
    .into_iter()
    .map(|(href, label)| view! { <a class="button" href=href download rel="external">{t(label)}</a> })
    .collect_view();
    view! {
        <dl class="summary" id="task-summary">
            <dt>{t(i18n::GRADING_COL_EXAM_SET)}</dt>
            <dd>{task.exam_set}</dd>
            <dt>{t(i18n::GRADING_TASK_RUNS)}</dt>
            <dd>{runs}</dd>
            <dt>{t(i18n::GRADING_COL_SELECTION)}</dt>
            <dd>{what}</dd>
            <dt>{t(i18n::GRADING_TASK_SEED)}</dt>
            <dd><code>{task.seed}</code></dd>
            <dt>{t(i18n::GRADING_COL_OVERLAP_TITLE)}</dt>
            <dd>{task.overlap}</dd>
            <dt>{t(i18n::GRADING_TASK_ITEMS)}</dt>
            <dd>{task.items}</dd>
            <dt>{t(i18n::GRADING_COL_COMPLETE)}</dt>
            <dd class="progress-cell">{progress(task.complete, task.items)}</dd>
            <dt>{t(i18n::GRADING_COL_DISPUTED)}</dt>
            <dd id="task-disputed">{task.disputed}</dd>
            <dt>{t(i18n::GRADING_STATE_ADJUDICATED)}</dt>
            <dd>{task.adjudicated}</dd>
            <dt>{t(i18n::GRADING_TASK_CREATED)}</dt>
            <dd class="created-at">{task.created_by}" · "{task.created_at}</dd>
        </dl>
        <div class="task-columns">
            <div>
                <h2>{t(i18n::GRADING_ANNOTATORS)}</h2>
                <table id="annotator-progress" class="grading-table">
                    <thead>
                        <tr>
                            <th>{t(i18n::GRADING_COL_ANNOTATOR)}</th>
                            <th class="num">{t(i18n::GRADING_COL_ASSIGNED)}</th>
                            <th class="num">{t(i18n::GRADING_COL_GRADED)}</th>
                            <th>{t(i18n::GRADING_COL_PROGRESS)}</th>
                        </tr>
                    </thead>
                    <tbody>{annotators}</tbody>
                </table>
            </div>
            <div id="agreement">
                <h2>{t(i18n::GRADING_AGREEMENT)}</h2>
                <dl class="summary">
                    <dt>{t(i18n::GRADING_AGREEMENT_ITEMS)}</dt>
                    <dd id="agreement-items">{agreement.items}</dd>
                    <dt>{t(i18n::GRADING_RATERS_PER_ITEM)}</dt>
                    <dd>{agreement.raters_per_item}</dd>
                    <dt>{t(i18n::GRADING_FLEISS)}</dt>
                    <dd>
                        <strong id="fleiss-kappa">{kappa(agreement.fleiss.as_ref())}</strong>
                        " "
                        <span class="ci" id="fleiss-interval">{kappa_interval(agreement.fleiss.as_ref())}</span>
                    </dd>
                    <dt>{t(i18n::GRADING_PERCENT_AGREEMENT)}</dt>
                    <dd id="percent-agreement">{percent(agreement.percent)}</dd>
                </dl>
                <h3>{t(i18n::GRADING_PAIRS)}</h3>
                {pairs(agreement.pairs)}
            </div>
        </div>
        <h2>{t(i18n::GRADING_ITEMS)}</h2>
        {items(d.items)}
        <h2>{t(i18n::GRADING_DOWNLOADS)}</h2>
        <div class="actions" id="task-downloads">{downloads}</div>
    }
}

fn pairs(pairs: Vec<PairAgreement>) -> impl IntoView {
    let empty = pairs.is_empty().then(|| {
        view! { <tr class="empty"><td colspan="4">{t(i18n::GRADING_PAIRS_EMPTY)}</td></tr> }
    });
    let rows = pairs
        .into_iter()
        .map(|p| {
            view! {
                <tr class="pair-row">
                    <td>{p.a}" · "{p.b}</td>
                    <td class="num">{p.items}</td>
                    <td class="num">{percent(p.percent)}</td>
                    <td class="num">
                        {kappa(p.cohen.as_ref())}" "
                        <span class="ci">{kappa_interval(p.cohen.as_ref())}</span>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table id="pairs" class="grading-table">
            <thead>
                <tr>
                    <th>{t(i18n::GRADING_COL_PAIR)}</th>
                    <th class="num">{t(i18n::GRADING_COL_ITEMS)}</th>
                    <th class="num">{t(i18n::GRADING_PERCENT_AGREEMENT)}</th>
                    <th class="num">{t(i18n::GRADING_COL_COHEN)}</th>
                </tr>
            </thead>
            <tbody>{empty}{rows}</tbody>
        </table>
    }
}

fn items(mut items: Vec<ItemStatus>) -> impl IntoView {
    // What needs a reviewer first; the server's order within a state.
    items.sort_by_key(|i| state_rank(i.state));
    let rows = items
        .into_iter()
        .map(|item| {
            let human = item.human.map(|v| {
                let mark = match item.human_correct {
                    Some(true) => " ✓",
                    Some(false) => " ✗",
                    None => "",
                };
                format!("{}{mark}", verdict(v))
            });
            let grades = item
                .grades
                .iter()
                .map(|g| view! { <span class="grade-chip" data-verdict=g.verdict.id()>{g.by.clone()}": "{verdict(g.verdict)}</span> })
                .collect_view();
            view! {
                <tr class="item-row" data-state=state_id(item.state) data-item-id=item.item_id>
                    <td>{item.problem_id}</td>
                    <td class="num">{item.run_id}</td>
                    <td class="mark" class:correct=item.automatic_correct class:wrong=!item.automatic_correct>
                        {automatic(item.automatic_correct, item.parse_failed)}
                    </td>
                    <td class="item-state">{state(item.state)}</td>
                    <td>{human.unwrap_or_else(|| crate::format::NONE.to_owned())}</td>
                    <td>{grades}</td>
                    <td><a class="item-open" href=paths::grading_item_path(item.item_id)>{t(i18n::GRADING_OPEN)}</a></td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table id="items" class="grading-table">
            <thead>
                <tr>
                    <th>{t(i18n::GRADING_COL_PROBLEM)}</th>
                    <th class="num">{t(i18n::GRADING_COL_RUN)}</th>
                    <th>{t(i18n::GRADING_COL_AUTOMATIC)}</th>
                    <th>{t(i18n::GRADING_COL_STATE)}</th>
                    <th>{t(i18n::GRADING_COL_HUMAN)}</th>
                    <th>{t(i18n::GRADING_COL_GRADES)}</th>
                    <th></th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

/// The task's judges (newest first): each with its gate, its agreement with the humans, the
/// confusion matrix and its disagreements (docs/judges.md).
fn judge_runs(runs: Vec<JudgeRunDetail>) -> impl IntoView {
    if runs.is_empty() {
        return view! { <p class="empty">{t(i18n::GRADING_JUDGES_EMPTY)}</p> }.into_any();
    }
    runs.into_iter().map(judge_run).collect_view().into_any()
}

fn judge_verdict(v: Option<Verdict>) -> &'static str {
    v.map_or_else(|| t(i18n::GRADING_JUDGE_NONE), verdict)
}

fn judge_run(d: JudgeRunDetail) -> impl IntoView {
    let r = d.run;
    let a = d.agreement;
    let title = tf(
        i18n::GRADING_JUDGE_TITLE,
        &[
            ("model", &r.model),
            ("prompt", &r.prompt),
            ("version", &r.prompt_version),
            ("scoring", &r.scoring),
            ("status", &r.status.as_str()),
            ("graded", &r.graded),
            ("items", &r.items),
        ],
    );
    let gate = if d.gate.calibrated {
        t(i18n::GRADING_JUDGE_CALIBRATED)
    } else {
        t(i18n::GRADING_JUDGE_UNCALIBRATED)
    };
    let figures = tf(
        i18n::GRADING_JUDGE_FIGURES,
        &[
            ("kappa", &kappa(a.cohen.as_ref())),
            ("interval", &kappa_interval(a.cohen.as_ref())),
            ("percent", &percent(a.percent)),
            ("count", &a.items),
            (
                "annotators",
                &a.annotator_kappa
                    .map_or_else(|| crate::format::NONE.to_owned(), |k| format!("{k:.2}")),
            ),
        ],
    );
    let cost = r.cost.work.map(|work| {
        let estimated = r
            .cost
            .estimate
            .and_then(|e| e.seconds)
            .map_or_else(|| crate::format::NONE.to_owned(), seconds);
        let took = crate::format::latency(work.busy_ms);
        let text = tf(
            i18n::GRADING_JUDGE_COST,
            &[
                ("estimated", &estimated),
                ("took", &took),
                ("tokens", &work.prompt_tokens),
            ],
        );
        view! { <p class="judge-cost">{text}</p> }
    });
    let head = Verdict::ALL
        .into_iter()
        .map(|v| view! { <th class="num">{verdict(v)}</th> })
        .collect_view();
    let rows = a
        .confusion
        .iter()
        .zip(Verdict::ALL)
        .map(|(row, v)| {
            let cells = row
                .iter()
                .map(|n| view! { <td class="num">{*n}</td> })
                .collect_view();
            view! { <tr><th>{verdict(v)}</th>{cells}</tr> }
        })
        .collect_view();
    let disagreements = d
        .grades
        .iter()
        .filter(|g| g.human.is_some() && g.human != g.verdict)
        .take(20)
        .map(|g| {
            let text = tf(
                i18n::GRADING_JUDGE_DISAGREEMENT,
                &[
                    ("problem", &g.problem_id),
                    ("judge", &judge_verdict(g.verdict)),
                    ("human", &judge_verdict(g.human)),
                ],
            );
            view! { <li class="judge-disagreement" data-item-id=g.item_id>{text}</li> }
        })
        .collect_view();
    view! {
        <section class="judge-run" data-judge-run-id=r.id data-calibrated=d.gate.calibrated.to_string()>
            <h3>{title}</h3>
            <p class="judge-gate" title=d.gate.reason.clone()>
                <strong>{gate}</strong>" "{d.gate.reason.clone()}
            </p>
            <p class="judge-figures">{figures}</p>
            {cost}
            <table class="grading-table judge-confusion">
                <caption>{t(i18n::GRADING_JUDGE_CONFUSION)}</caption>
                <thead><tr><th></th>{head}<th class="num">{t(i18n::GRADING_JUDGE_NONE)}</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
            <h4>{t(i18n::GRADING_JUDGE_DISAGREEMENTS)}</h4>
            <ul class="judge-disagreements">{disagreements}</ul>
        </section>
    }
}

/// The task's judge runs, polled while one is unfinished.
fn poll_judges(judges: RwSignal<Loaded<Vec<JudgeRunDetail>>>, id: i64) {
    crate::poll::poll(
        judges,
        move || api::judges(id),
        |runs: &Vec<JudgeRunDetail>| runs.iter().any(|r| !r.run.status.is_finished()),
    );
}

/// Seconds as the page shows them.
fn seconds(s: f64) -> String {
    crate::format::latency((s * 1000.0).round() as u64)
}

/// A model judge queued from the task page, with its cost estimated first if asked.
#[component]
fn JudgeForm(id: i64, judges: RwSignal<Loaded<Vec<JudgeRunDetail>>>) -> impl IntoView {
    let session = crate::session::Session::get();
    let models = RwSignal::new(Vec::<String>::new());
    let prompts = RwSignal::new(Vec::<(String, u32)>::new());
    leptos::task::spawn_local(async move {
        if let Ok(store) = crate::api::models().await {
            models.set(
                store
                    .into_iter()
                    .filter(|e| e.runnable && e.format != "peft-lora")
                    .map(|e| e.name)
                    .collect(),
            );
        }
        if let Ok(list) = api::judge_prompts().await {
            prompts.set(list.into_iter().map(|p| (p.name, p.version)).collect());
        }
    });
    let model = RwSignal::new(String::new());
    let prompt = RwSignal::new(0usize);
    let scoring = RwSignal::new(kokushi_shared::job::Scoring::Loglik);
    let estimate = RwSignal::new(None::<kokushi_shared::cost::Estimate>);
    let failed = RwSignal::new(None::<crate::error::ApiError>);
    let request = move || {
        let chosen = model.get_untracked();
        let model = if chosen.is_empty() {
            models.with_untracked(|m| m.first().cloned().unwrap_or_default())
        } else {
            chosen
        };
        let (prompt, version) = prompts
            .with_untracked(|p| p.get(prompt.get_untracked()).cloned())
            .unzip();
        kokushi_shared::judge::CreateJudgeRun {
            model,
            adapter: None,
            prompt,
            prompt_version: version,
            scoring: scoring.get_untracked(),
            prompt_format: None,
            max_new_tokens: None,
            priority: kokushi_shared::job::Priority::Normal,
        }
    };
    Effect::new(move |_| {
        model.track();
        prompt.track();
        scoring.track();
        estimate.set(None);
    });
    let ask_estimate = move |_| {
        let body = request();
        let csrf = session.csrf();
        leptos::task::spawn_local(async move {
            match api::estimate_judge(id, &body, &csrf).await {
                Ok(e) => {
                    failed.set(None);
                    estimate.set(Some(e));
                }
                Err(e) => failed.set(Some(e)),
            }
        });
    };
    let launch = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = request();
        let csrf = session.csrf();
        leptos::task::spawn_local(async move {
            match api::create_judge(id, &body, &csrf).await {
                Ok(_) => {
                    failed.set(None);
                    poll_judges(judges, id);
                }
                Err(e) => failed.set(Some(e)),
            }
        });
    };
    view! {
        <form id="judge-form" class="panel" on:submit=launch>
            <h3>{t(i18n::GRADING_JUDGE_LAUNCH_TITLE)}</h3>
            <label>
                <span>{t(i18n::GRADING_JUDGE_MODEL)}</span>
                <select id="judge-model" on:change=move |ev| model.set(event_target_value(&ev))>
                    {move || models.get().into_iter().map(|m| { let label = m.clone(); view! { <option value=m>{label}</option> } }).collect_view()}
                </select>
            </label>
            <label>
                <span>{t(i18n::GRADING_JUDGE_PROMPT)}</span>
                <select id="judge-prompt" on:change=move |ev| prompt.set(event_target_value(&ev).parse().unwrap_or(0))>
                    {move || prompts.get().into_iter().enumerate().map(|(i, (name, version))| {
                        view! { <option value=i.to_string()>{format!("{name} v{version}")}</option> }
                    }).collect_view()}
                </select>
            </label>
            <label>
                <span>{t(i18n::GRADING_JUDGE_SCORING)}</span>
                <select id="judge-scoring" on:change=move |ev| {
                    scoring.set(kokushi_shared::job::Scoring::parse(&event_target_value(&ev)).unwrap_or_default());
                }>
                    <option value="loglik">{t(i18n::GRADING_JUDGE_SCORING_LOGLIK)}</option>
                    <option value="generation">{t(i18n::GRADING_JUDGE_SCORING_GENERATION)}</option>
                </select>
            </label>
            <button type="button" id="judge-estimate" on:click=ask_estimate>{t(i18n::GRADING_JUDGE_ESTIMATE)}</button>
            <button type="submit" class="primary" id="judge-launch">{t(i18n::GRADING_JUDGE_LAUNCH)}</button>
            {move || estimate.get().map(|e| {
                let time = e.seconds.map_or_else(|| t(i18n::GRADING_JUDGE_NO_TIME).to_owned(), seconds);
                let text = tf(
                    i18n::GRADING_JUDGE_ESTIMATE_FIGURES,
                    &[("questions", &e.questions), ("prompt", &e.prompt_tokens), ("time", &time)],
                );
                view! { <p id="judge-estimate-figures" title=e.note>{text}</p> }
            })}
            {move || failed.get().map(|error| view! { <crate::components::error_banner::ErrorBanner error /> })}
        </form>
    }
}
