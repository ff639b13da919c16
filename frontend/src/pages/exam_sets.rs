//! `/exam-sets`: upload an exam set (IgakuQA JSON lines or the CSV format) and see every
//! problem the server found, with file, line and field; below, every stored version.

use kokushi_shared::api::{ExamSetSummary, ImportReport};
use leptos::prelude::*;
use wasm_bindgen::JsCast;

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
    let file_input = NodeRef::<leptos::html::Input>::new();

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(input) = file_input.get_untracked() else {
            return;
        };
        let input: web_sys::HtmlInputElement = input.unchecked_into();
        let Some(file) = input.files().and_then(|files| files.get(0)) else {
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
        let file_name = file.name();
        let set_name = {
            let typed = name.get_untracked();
            if typed.trim().is_empty() {
                file_name
                    .rsplit_once('.')
                    .map_or(file_name.clone(), |(stem, _)| stem.to_owned())
            } else {
                typed.trim().to_owned()
            }
        };
        let csrf = session.csrf();
        busy.set(true);
        leptos::task::spawn_local(async move {
            let result = crate::api::upload_exam_set(&set_name, &file_name, file, &csrf).await;
            let stored = result.is_ok();
            outcome.set(Some(result));
            busy.set(false);
            if stored {
                poll(sets, crate::api::exam_sets, |_| false);
            }
        });
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
                    <div id="upload-errors">
                        <ErrorBanner error />
                        {(count > 0).then(|| view! {
                            <p class="hint">
                                {tf(i18n::EXAM_SETS_PROBLEMS, &[("count", &count)])}
                            </p>
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
                        })}
                    </div>
                }
                .into_any()
            }
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
                    {t(i18n::EXAM_SETS_FILE)}
                    <input id="upload-file" type="file" accept=".jsonl,.json,.csv" node_ref=file_input />
                </label>
                <button type="submit" class="primary" id="upload-submit" disabled=move || busy.get()>
                    {move || if busy.get() { t(i18n::EXAM_SETS_UPLOADING) } else { t(i18n::EXAM_SETS_UPLOAD) }}
                </button>
                {result}
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
                    </tr>
                </thead>
                <tbody>
                    <For
                        each=rows
                        key=|s| s.id
                        children=|s| {
                            view! {
                                <tr class="exam-set-row" data-exam-set-id=s.id>
                                    <td>{s.name}</td>
                                    <td class="num">{s.version}</td>
                                    <td class="num">{s.question_count}</td>
                                    <td class="num">{s.text_only_count}</td>
                                    <td><code title=s.content_hash.clone()>{s.content_hash.chars().take(12).collect::<String>()}</code></td>
                                    <td>{s.created_at.get(..16).unwrap_or(&s.created_at).replace('T', " ")}</td>
                                    <td class="import-notes">{import_notes(&s.import_notes)}</td>
                                </tr>
                            }
                        }
                    />
                </tbody>
            </table>
        </section>
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
