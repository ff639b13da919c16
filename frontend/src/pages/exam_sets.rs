//! `/exam-sets`: upload an exam set (IgakuQA JSON lines, the CSV format, or several files that
//! go together such as IgakuQA119's question files and answers file) and see every problem the
//! server found, with file, line and field. The preview checks the files and stores nothing: it
//! lists each refused record with the repairs proposed for it, for the user to accept one by
//! one or all, or to leave the record out with a reason; the upload then asks for exactly
//! those. Below, every stored version, with what its import mended.

use std::collections::BTreeMap;

use kokushi_shared::api::{ExamSetSummary, ImportReport, UploadPreview};
use kokushi_shared::repair::Repair;
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::api::{Mends, RulesListing as ExamSetRules, RulesVersion as StoredRulePack};
use crate::components::error_banner::ErrorBanner;
use crate::error::ApiError;
use crate::i18n::{self, t, tf};
use crate::poll::poll;
use crate::refresh::Loaded;
use crate::session::Session;

#[component]
pub fn ExamSetsPage() -> impl IntoView {
    let session = Session::get();
    let sets = RwSignal::new(Loaded::<Vec<ExamSetSummary>>::default());
    poll(sets, crate::api::exam_sets, |_| false);
    let name = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let outcome = RwSignal::new(None::<Result<ImportReport, ApiError>>);
    // The latest preview, and the mends it was checked with.
    let preview = RwSignal::new(None::<Result<(UploadPreview, Mends), ApiError>>);
    let mends = RwSignal::new(Mends::default());
    let file_input = NodeRef::<leptos::html::Input>::new();
    // The set whose rule packs are open below the list: (id, name).
    let open_rules = RwSignal::new(None::<(i64, String)>);

    // Sends the chosen files with the mends asked: as a preview (nothing stored) or an upload.
    let send = move |as_preview: bool| {
        let Some(input) = file_input.get_untracked() else {
            return;
        };
        let input: web_sys::HtmlInputElement = input.unchecked_into();
        let files = chosen_files(&input);
        let Some(first) = files.first() else {
            outcome.set(Some(Err(ApiError::Status {
                status: 400,
                body: Some(kokushi_shared::api::ApiErrorBody {
                    code: kokushi_shared::api::ErrorCode::BadRequest,
                    message: t(i18n::EXAM_SETS_NO_FILE).to_owned(),
                    details: Vec::new(),
                }),
            })));
            return;
        };
        let set_name = {
            let typed = name.get_untracked();
            if typed.trim().is_empty() {
                let file_name = first.name();
                file_name
                    .rsplit_once('.')
                    .map_or(file_name.clone(), |(stem, _)| stem.to_owned())
            } else {
                typed.trim().to_owned()
            }
        };
        let csrf = session.csrf();
        let asked = mends.get_untracked();
        busy.set(true);
        leptos::task::spawn_local(async move {
            if as_preview {
                let result = crate::api::upload_exam_set::<UploadPreview>(
                    &set_name, &files, &asked, true, &csrf,
                )
                .await;
                outcome.set(None);
                preview.set(Some(result.map(|p| (p, asked))));
            } else {
                let result = crate::api::upload_exam_set::<ImportReport>(
                    &set_name, &files, &asked, false, &csrf,
                )
                .await;
                let stored = result.is_ok();
                outcome.set(Some(result));
                if stored {
                    preview.set(None);
                    mends.set(Mends::default());
                    poll(sets, crate::api::exam_sets, |_| false);
                }
            }
            busy.set(false);
        });
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        send(false);
    };

    let result = move || {
        outcome.get().map(|result| match result {
            Ok(report) => {
                let what = if report.created {
                    tf(
                        i18n::EXAM_SETS_STORED,
                        &[
                            ("name", &report.exam_set.name),
                            ("version", &report.exam_set.version),
                            ("count", &report.exam_set.question_count),
                            ("text_only", &report.exam_set.text_only_count),
                        ],
                    )
                } else {
                    tf(
                        i18n::EXAM_SETS_UNCHANGED,
                        &[
                            ("name", &report.exam_set.name),
                            ("version", &report.exam_set.version),
                        ],
                    )
                };
                view! { <p class="ok-banner" id="upload-result" role="status">{what}</p> }
                    .into_any()
            }
            Err(error) => {
                let details = match &error {
                    ApiError::Status {
                        body: Some(body), ..
                    } => body.details.clone(),
                    _ => Vec::new(),
                };
                let count = details.len();
                view! {
                    <div id="upload-errors">
                        <ErrorBanner error />
                        {(count > 0).then(|| view! {
                            <p class="hint">
                                {tf(i18n::EXAM_SETS_PROBLEMS, &[("count", &count)])}
                            </p>
                            {problem_table(details)}
                        })}
                    </div>
                }
                .into_any()
            }
        })
    };
    let mend_panel = move || {
        preview.get().map(|result| match result {
            Ok((found, checked_with)) => mend_panel(found, checked_with, mends).into_any(),
            Err(error) => view! { <div id="mend-panel"><ErrorBanner error /></div> }.into_any(),
        })
    };
    let list_error =
        move || sets.with(|s| s.error.clone().map(|error| view! { <ErrorBanner error /> }));
    let rows = move || sets.with(|s| s.latest.clone().unwrap_or_default());

    view! {
        <section class="exam-sets">
            <h1>{t(i18n::COMMON_NAV_EXAM_SETS)}</h1>
            <form class="panel upload" id="upload-form" on:submit=submit>
                <h2>{t(i18n::EXAM_SETS_UPLOAD)}</h2>
                <p class="hint">
                    {t(i18n::EXAM_SETS_FORMAT_HINT)}
                </p>
                <label>
                    {t(i18n::EXAM_SETS_NAME)}
                    <input
                        id="upload-name"
                        type="text"
                        placeholder=t(i18n::EXAM_SETS_NAME_PLACEHOLDER)
                        prop:value=move || name.get()
                        on:input=move |ev| name.set(event_target_value(&ev))
                    />
                </label>
                <label>
                    {t(i18n::EXAM_SETS_FILES)}
                    <input
                        id="upload-file"
                        type="file"
                        multiple
                        accept=".jsonl,.json,.csv"
                        node_ref=file_input
                        on:change=move |_| {
                            // Other files: the mends asked for the last ones no longer apply.
                            preview.set(None);
                            outcome.set(None);
                            mends.set(Mends::default());
                        }
                    />
                </label>
                <div class="actions">
                    <button
                        type="button"
                        id="upload-preview"
                        title=t(i18n::EXAM_SETS_PREVIEW_HINT)
                        disabled=move || busy.get()
                        on:click=move |_| send(true)
                    >
                        {move || if preview.with(Option::is_some) { t(i18n::EXAM_SETS_CHECK_AGAIN) } else { t(i18n::EXAM_SETS_PREVIEW) }}
                    </button>
                    <button type="submit" class="primary" id="upload-submit" disabled=move || busy.get()>
                        {move || if busy.get() { t(i18n::EXAM_SETS_UPLOADING) } else { t(i18n::EXAM_SETS_UPLOAD) }}
                    </button>
                </div>
                {result}
                {mend_panel}
            </form>
            {list_error}
            <table id="exam-sets">
                <thead>
                    <tr>
                        <th>{t(i18n::EXAM_SETS_NAME)}</th>
                        <th class="num">{t(i18n::EXAM_SETS_VERSION)}</th>
                        <th class="num">{t(i18n::EXAM_SETS_QUESTIONS)}</th>
                        <th class="num">{t(i18n::EXAM_SETS_TEXT_ONLY)}</th>
                        <th>{t(i18n::EXAM_SETS_CONTENT_HASH)}</th>
                        <th>{t(i18n::EXAM_SETS_UPLOADED)}</th>
                        <th>{t(i18n::EXAM_SETS_IMPORT_NOTES)}</th>
                        <th>{t(i18n::EXAM_SETS_RULES)}</th>
                    </tr>
                </thead>
                <tbody>
                    <For
                        each=rows
                        key=|s| s.id
                        children=move |s| {
                            let opened = (s.id, s.name.clone());
                            view! {
                                <tr class="exam-set-row" data-exam-set-id=s.id>
                                    <td>{s.name}</td>
                                    <td class="num">{s.version}</td>
                                    <td class="num">{s.question_count}</td>
                                    <td class="num">{s.text_only_count}</td>
                                    <td><code title=s.content_hash.clone()>{s.content_hash.chars().take(12).collect::<String>()}</code></td>
                                    <td>{s.created_at.get(..16).unwrap_or(&s.created_at).replace('T', " ")}</td>
                                    <td class="import-notes">{import_notes(&s.import_notes)}</td>
                                    <td>
                                        <button type="button" class="rules-button"
                                            on:click=move |_| open_rules.set(Some(opened.clone()))>
                                            {t(i18n::EXAM_SETS_RULES_OPEN)}
                                        </button>
                                    </td>
                                </tr>
                            }
                        }
                    />
                </tbody>
            </table>
            {move || open_rules.get().map(|(id, name)| view! { <RulesPanel id name /> })}
        </section>
    }
}

/// An exam set's rule packs: the one in effect for each exam, the versions uploaded, and a
/// form for the next version.
#[component]
fn RulesPanel(id: i64, name: String) -> impl IntoView {
    let session = Session::get();
    let rules = RwSignal::new(None::<Result<ExamSetRules, ApiError>>);
    let load = move || {
        leptos::task::spawn_local(async move {
            rules.set(Some(crate::api::exam_set_rules(id).await));
        });
    };
    load();
    let outcome = RwSignal::new(None::<Result<StoredRulePack, ApiError>>);
    let busy = RwSignal::new(false);
    let file_input = NodeRef::<leptos::html::Input>::new();
    let upload = move |_| {
        let Some(input) = file_input.get_untracked() else {
            return;
        };
        let input: web_sys::HtmlInputElement = input.unchecked_into();
        let Some(file) = chosen_files(&input).into_iter().next() else {
            return;
        };
        let csrf = session.csrf();
        busy.set(true);
        leptos::task::spawn_local(async move {
            let result = crate::api::add_exam_set_rules(id, file, &csrf).await;
            if result.is_ok() {
                load();
            }
            outcome.set(Some(result));
            busy.set(false);
        });
    };
    let listing = move || {
        rules.get().map(|result| match result {
            Err(error) => view! { <ErrorBanner error /> }.into_any(),
            Ok(rules) => {
                let in_effect = rules
                    .in_effect
                    .into_iter()
                    .map(|p| {
                        let exam = p.exam.clone();
                        view! {
                            <tr class="rules-row" data-exam=exam>
                                <td>{p.exam}</td>
                                <td class="num">{p.version}</td>
                                <td>{p.title}</td>
                                <td>{if p.built_in { t(i18n::EXAM_SETS_RULES_BUILT_IN) } else { t(i18n::EXAM_SETS_RULES_UPLOADED) }}</td>
                            </tr>
                        }
                    })
                    .collect_view();
                let versions = if rules.versions.is_empty() {
                    view! { <li>{t(i18n::EXAM_SETS_RULES_NONE)}</li> }.into_any()
                } else {
                    rules
                        .versions
                        .into_iter()
                        .map(|v| {
                            let at = v.created_at.get(..16).unwrap_or(&v.created_at).replace('T', " ");
                            view! {
                                <li>
                                    {tf(
                                        i18n::EXAM_SETS_RULES_BY,
                                        &[("exam", &v.exam), ("version", &v.version), ("by", &v.created_by), ("at", &at)],
                                    )}
                                </li>
                            }
                        })
                        .collect_view()
                        .into_any()
                };
                view! {
                    <table id="rules-in-effect">
                        <thead>
                            <tr>
                                <th>{t(i18n::EXAM_SETS_RULES_EXAM)}</th>
                                <th class="num">{t(i18n::EXAM_SETS_RULES_VERSION)}</th>
                                <th>{t(i18n::EXAM_SETS_RULES_TITLE)}</th>
                                <th>{t(i18n::EXAM_SETS_RULES_SOURCE)}</th>
                            </tr>
                        </thead>
                        <tbody>{in_effect}</tbody>
                    </table>
                    <h3>{t(i18n::EXAM_SETS_RULES_VERSIONS)}</h3>
                    <ul id="rules-versions">{versions}</ul>
                }
                .into_any()
            }
        })
    };
    let result = move || {
        outcome.get().map(|result| match result {
            Ok(stored) => view! {
                <p class="ok-banner" id="rules-result" role="status">
                    {tf(i18n::EXAM_SETS_RULES_STORED, &[("version", &stored.version), ("exam", &stored.exam)])}
                </p>
            }
            .into_any(),
            Err(error) => view! { <div id="rules-errors"><ErrorBanner error /></div> }.into_any(),
        })
    };
    view! {
        <section class="panel rules-panel" id="rules-panel" data-exam-set-id=id>
            <h2>{tf(i18n::EXAM_SETS_RULES_HEADING, &[("name", &name)])}</h2>
            <p class="hint">{t(i18n::EXAM_SETS_RULES_HINT)}</p>
            {listing}
            <label>
                {t(i18n::EXAM_SETS_RULES_FILE)}
                <input id="rules-file" type="file" accept=".json" node_ref=file_input />
            </label>
            <button type="button" id="rules-upload" disabled=move || busy.get() on:click=upload>
                {t(i18n::EXAM_SETS_RULES_UPLOAD)}
            </button>
            {result}
        </section>
    }
}

/// The files chosen in `input`, in the order chosen.
fn chosen_files(input: &web_sys::HtmlInputElement) -> Vec<web_sys::File> {
    let Some(list) = input.files() else {
        return Vec::new();
    };
    (0..list.length()).filter_map(|i| list.get(i)).collect()
}

/// Problems as a table: file, line, field, what is wrong.
fn problem_table(details: Vec<kokushi_shared::igakuqa::FormatError>) -> impl IntoView {
    let rows = details
        .into_iter()
        .map(|d| {
            view! {
                <tr>
                    <td>{d.file}</td>
                    <td class="num">{d.line}</td>
                    <td><code>{d.field}</code></td>
                    <td>{d.message}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="upload-errors">
            <thead>
                <tr>
                    <th>{t(i18n::EXAM_SETS_FILE)}</th>
                    <th class="num">{t(i18n::EXAM_SETS_LINE)}</th>
                    <th>{t(i18n::EXAM_SETS_FIELD)}</th>
                    <th>{t(i18n::EXAM_SETS_PROBLEM)}</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

/// One record the preview has something to say about: refused, a repair proposed or applied,
/// or left out.
struct MendRow {
    problem_id: String,
    file: String,
    line: usize,
    problems: Vec<String>,
    repairs: Vec<Repair>,
    /// The reason it was left out with, at this preview.
    left_out: Option<String>,
}

/// The records of `found`, in the order the files hold them, and the problems that belong to
/// no single record.
fn mend_rows(found: &UploadPreview) -> (Vec<MendRow>, Vec<kokushi_shared::igakuqa::FormatError>) {
    let mut rows: Vec<MendRow> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut row_of = |rows: &mut Vec<MendRow>, id: &str, file: &str, line: usize| -> usize {
        *index.entry(id.to_owned()).or_insert_with(|| {
            rows.push(MendRow {
                problem_id: id.to_owned(),
                file: file.to_owned(),
                line,
                problems: Vec::new(),
                repairs: Vec::new(),
                left_out: None,
            });
            rows.len() - 1
        })
    };
    for r in &found.refused {
        row_of(&mut rows, &r.problem_id, &r.file, r.line);
    }
    for r in found.proposed.iter().chain(&found.applied) {
        let at = row_of(&mut rows, &r.problem_id, &r.file, r.line);
        rows[at].repairs.push(r.clone());
    }
    for e in &found.excluded {
        let at = row_of(&mut rows, &e.problem_id, &e.file, e.line);
        rows[at].left_out = Some(e.reason.clone());
    }
    let mut loose = Vec::new();
    for error in &found.errors {
        match rows
            .iter_mut()
            .find(|r| r.file == error.file && r.line == error.line)
        {
            Some(row) => row
                .problems
                .push(format!("{}: {}", error.field, error.message)),
            None => loose.push(error.clone()),
        }
    }
    rows.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    (rows, loose)
}

/// A reason to leave a record out, from its first problem: one line, bounded.
fn default_reason(row: &MendRow) -> String {
    let first = row
        .problems
        .first()
        .map_or(t(i18n::EXAM_SETS_DEFAULT_REASON), String::as_str);
    first
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

/// The preview: what would be stored, each record with its problems, the repairs proposed (to
/// accept one by one or all) and a way to leave it out with a reason.
fn mend_panel(found: UploadPreview, checked_with: Mends, mends: RwSignal<Mends>) -> impl IntoView {
    let (rows, loose) = mend_rows(&found);
    let records = rows.iter().filter(|r| !r.problems.is_empty()).count();
    let summary = if found.errors.is_empty() {
        tf(
            i18n::EXAM_SETS_PREVIEW_READY,
            &[
                ("questions", &found.questions),
                ("repaired", &found.applied.len()),
                ("excluded", &found.excluded.len()),
            ],
        )
    } else {
        tf(
            i18n::EXAM_SETS_PREVIEW_SUMMARY,
            &[
                ("questions", &found.questions),
                ("problems", &found.errors.len()),
                ("records", &records),
            ],
        )
    };
    let every_repair: Vec<(String, kokushi_shared::repair::RepairKind)> = rows
        .iter()
        .flat_map(|r| r.repairs.iter().map(|p| (p.problem_id.clone(), p.kind)))
        .collect();
    let any_repair = !every_repair.is_empty();
    let accept_all = move |_| {
        mends.update(|m| m.repairs.extend(every_repair.iter().cloned()));
    };
    let stale = move || mends.with(|m| *m != checked_with);
    let ready = found.errors.is_empty();
    let body = rows
        .into_iter()
        .map(|row| mend_row(row, mends))
        .collect_view();
    view! {
        <div id="mend-panel" class="mend-panel">
            <p id="mend-summary" class=if ready { "ok-banner" } else { "hint" } role="status">{summary}</p>
            <p class="hint">{t(i18n::EXAM_SETS_PREVIEW_HINT)}</p>
            <Show when=stale>
                <p class="hint" id="mend-stale">{t(i18n::EXAM_SETS_PREVIEW_STALE)}</p>
            </Show>
            {any_repair.then(|| view! {
                <button type="button" id="accept-all-repairs" on:click=accept_all>
                    {t(i18n::EXAM_SETS_ACCEPT_ALL)}
                </button>
            })}
            <table id="mend-records" class="upload-errors">
                <thead>
                    <tr>
                        <th>{t(i18n::EXAM_SETS_RECORD)}</th>
                        <th>{t(i18n::EXAM_SETS_PROBLEM)}</th>
                        <th>{t(i18n::EXAM_SETS_REPAIR)}</th>
                        <th>{t(i18n::EXAM_SETS_LEAVE_OUT)}</th>
                    </tr>
                </thead>
                <tbody>{body}</tbody>
            </table>
            {(!loose.is_empty()).then(|| view! {
                <p class="hint">{t(i18n::EXAM_SETS_LOOSE_PROBLEMS)}</p>
                {problem_table(loose)}
            })}
        </div>
    }
}

/// One record's row of the preview.
fn mend_row(row: MendRow, mends: RwSignal<Mends>) -> impl IntoView {
    let id = row.problem_id.clone();
    let reason = RwSignal::new(row.left_out.clone().unwrap_or_else(|| default_reason(&row)));
    let problems = row
        .problems
        .iter()
        .map(|p| view! { <li>{p.clone()}</li> })
        .collect_view();
    let repairs = row
        .repairs
        .into_iter()
        .map(|r| {
            let key = (r.problem_id.clone(), r.kind);
            let checked = key.clone();
            view! {
                <label class="repair">
                    <input
                        type="checkbox"
                        class="accept-repair"
                        data-kind=r.kind.id()
                        prop:checked=move || mends.with(|m| m.repairs.contains(&checked))
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            let key = key.clone();
                            mends.update(|m| {
                                if on {
                                    m.repairs.insert(key);
                                } else {
                                    m.repairs.remove(&key);
                                }
                            });
                        }
                    />
                    " " {t(i18n::EXAM_SETS_ACCEPT)} " " <code>{r.kind.id()}</code>
                    <span class="repair-change">
                        <del>{r.before}</del> " → " <ins>{r.after}</ins>
                    </span>
                </label>
            }
        })
        .collect_view();
    let (on_id, check_id, reason_id) = (id.clone(), id.clone(), id.clone());
    view! {
        <tr class="mend-record" data-problem-id=id.clone()>
            <td>
                <strong>{id.clone()}</strong>
                <br />
                <small>{format!("{}:{}", row.file, row.line)}</small>
            </td>
            <td><ul class="mend-problems">{problems}</ul></td>
            <td>{repairs}</td>
            <td>
                <label>
                    <input
                        type="checkbox"
                        class="leave-out"
                        prop:checked=move || mends.with(|m| m.exclude.contains_key(&check_id))
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            let id = on_id.clone();
                            let why = Some(reason.get_untracked())
                                .filter(|w| !w.trim().is_empty())
                                .unwrap_or_else(|| t(i18n::EXAM_SETS_DEFAULT_REASON).to_owned());
                            mends.update(|m| {
                                if on {
                                    m.exclude.insert(id, why);
                                } else {
                                    m.exclude.remove(&id);
                                }
                            });
                        }
                    />
                    " " {t(i18n::EXAM_SETS_LEAVE_OUT)}
                </label>
                <input
                    type="text"
                    class="leave-out-reason"
                    maxlength="200"
                    placeholder=t(i18n::EXAM_SETS_REASON)
                    prop:value=move || reason.get()
                    on:input=move |ev| {
                        let why: String = event_target_value(&ev)
                            .chars()
                            .map(|c| if c.is_control() { ' ' } else { c })
                            .collect();
                        reason.set(why.clone());
                        if why.trim().is_empty() {
                            return;
                        }
                        let id = reason_id.clone();
                        mends.update(|m| {
                            if let Some(kept) = m.exclude.get_mut(&id) {
                                *kept = why;
                            }
                        });
                    }
                />
            </td>
        </tr>
    }
}

/// What an import repaired and left out: counts, with every repair and exclusion in the title.
fn import_notes(notes: &kokushi_shared::igakuqa::ImportNotes) -> Option<AnyView> {
    if notes.is_empty() {
        return None;
    }
    let mut detail: Vec<String> = notes
        .repairs
        .iter()
        .map(|r| {
            format!(
                "{} {}: {} → {}",
                r.problem_id,
                r.kind.id(),
                r.before,
                r.after
            )
        })
        .collect();
    detail.extend(
        notes
            .excluded
            .iter()
            .map(|e| format!("{}: {}", e.problem_id, e.reason)),
    );
    let summary = tf(
        i18n::EXAM_SETS_IMPORT_NOTES_SUMMARY,
        &[
            ("repaired", &notes.repairs.len()),
            ("excluded", &notes.excluded.len()),
        ],
    );
    Some(view! { <span title=detail.join("\n")>{summary}</span> }.into_any())
}
