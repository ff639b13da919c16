//! A run's lineage: the hashes and settings its score depends on, to cite it or redo it.

use kokushi_shared::api::RunLineage;
use leptos::prelude::*;

use crate::format;

fn hash(value: Option<String>) -> AnyView {
    match value {
        Some(h) => view! { <code class="hash">{h}</code> }.into_any(),
        None => view! { <span class="hint">"not in the model store any more"</span> }.into_any(),
    }
}

#[component]
pub fn LineageCard(lineage: RunLineage) -> impl IntoView {
    let l = lineage;
    let tuning = l.tuning.clone().map(|t| {
        let lr = t
            .last_loss
            .map_or_else(|| format::NONE.to_owned(), |v| format!("{v:.4}"));
        view! {
            <dt>"Tuning"</dt>
            <dd>
                <a href=crate::paths::tuning_path(t.id)>{format!("#{} ", t.id)}</a>
                {format!(
                    "{} on {} · preset {} · {} steps · {} · last loss {lr}",
                    t.adapter, t.data_exam_set, t.preset, t.steps, t.prompt_format,
                )}
            </dd>
        }
    });
    let adapter = l.adapter.clone().map(|a| {
        view! {
            <dt>"Adapter"</dt>
            <dd>{a} " " {hash(l.adapter_sha256.clone())}</dd>
        }
    });
    view! {
        <section class="lineage" id="lineage">
            <h2>"Lineage"</h2>
            <dl class="summary">
                <dt>"Exam set"</dt>
                <dd>
                    {format!("{} v{} · ", l.exam_set.name, l.exam_set.version)}
                    <code class="hash">{l.exam_set.content_hash.clone()}</code>
                </dd>
                <dt>"Prompt template"</dt>
                <dd>
                    <code>{l.prompt_format.clone()}</code>
                    " "
                    <code class="hash">{l.prompt_template_sha256.clone()}</code>
                </dd>
                <dt>"Model"</dt>
                <dd>{l.model.clone()} " " {hash(l.model_sha256.clone())}</dd>
                <dt>"Loaded as"</dt>
                <dd>{l.model_info.clone().unwrap_or_else(|| format::NONE.to_owned())}</dd>
                {adapter}
                {tuning}
                <dt>"Decoding"</dt>
                <dd>
                    {format!(
                        "{} · at most {} new tokens · seed {}",
                        l.decoding,
                        l.max_new_tokens,
                        l.seed.map_or_else(|| "none (nothing is drawn at random)".to_owned(), |s| s.to_string()),
                    )}
                </dd>
                <dt>"Extraction rules"</dt>
                <dd>
                    <code>{l.rules_version.clone().unwrap_or_else(|| format::NONE.to_owned())}</code>
                </dd>
                <dt>"Software"</dt>
                <dd>
                    {format!(
                        "Kokushi {} · worker {}",
                        l.kokushi_version,
                        l.worker.clone().unwrap_or_else(|| format::NONE.to_owned()),
                    )}
                </dd>
                <dt>"Leakage gate"</dt>
                <dd>{l.leakage.clone()}</dd>
            </dl>
        </section>
    }
}
