//! A run's lineage: the hashes and settings its score depends on, to cite it or redo it.

use kokushi_shared::api::RunLineage;
use leptos::prelude::*;

use crate::format;
use crate::i18n::{self, t, tf};

fn hash(value: Option<String>) -> AnyView {
    match value {
        Some(h) => view! { <code class="hash">{h}</code> }.into_any(),
        None => view! { <span class="hint">{t(i18n::LINEAGE_NOT_IN_STORE)}</span> }.into_any(),
    }
}

/// The settings the answers depend on besides the prompt format and decoding, in words.
fn settings_text(l: &RunLineage) -> String {
    let s = &l.settings;
    let mut parts = Vec::new();
    if s.shots == 0 {
        parts.push(t(i18n::LINEAGE_ZERO_SHOT).to_owned());
    } else {
        let pool = l.shot_pool.as_ref().map_or_else(
            || t(i18n::LINEAGE_SHOT_POOL_OWN).to_owned(),
            |p| format!("{} v{}", p.name, p.version),
        );
        parts.push(tf(
            i18n::LINEAGE_SHOTS_VALUE,
            &[("shots", &s.shots), ("seed", &s.shot_seed), ("pool", &pool)],
        ));
    }
    if s.chat_template {
        parts.push(t(i18n::LINEAGE_CHAT_TEMPLATE).to_owned());
    }
    parts.push(
        t(if s.keep_quantization {
            i18n::LINEAGE_QUANTIZATION_KEPT
        } else {
            i18n::LINEAGE_QUANTIZATION_REQUANTIZED
        })
        .to_owned(),
    );
    parts.join(" · ")
}

#[component]
pub fn LineageCard(lineage: RunLineage) -> impl IntoView {
    let l = lineage;
    let tuning = l.tuning.clone().map(|tuning| {
        let lr = tuning
            .last_loss
            .map_or_else(|| format::NONE.to_owned(), |v| format!("{v:.4}"));
        view! {
            <dt>{t(i18n::LINEAGE_TUNING)}</dt>
            <dd>
                <a href=crate::paths::tuning_path(tuning.id)>{format!("#{} ", tuning.id)}</a>
                {tf(
                    i18n::LINEAGE_TUNING_VALUE,
                    &[
                        ("adapter", &tuning.adapter),
                        ("data", &tuning.data_exam_set),
                        ("preset", &tuning.preset),
                        ("steps", &tuning.steps),
                        ("format", &tuning.prompt_format),
                        ("loss", &lr),
                    ],
                )}
            </dd>
        }
    });
    let adapter = l.adapter.clone().map(|a| {
        view! {
            <dt>{t(i18n::LINEAGE_ADAPTER)}</dt>
            <dd>{a} " " {hash(l.adapter_sha256.clone())}</dd>
        }
    });
    let settings = settings_text(&l);
    view! {
        <section class="lineage" id="lineage">
            <h2>{t(i18n::LINEAGE_TITLE)}</h2>
            <dl class="summary">
                <dt>{t(i18n::LINEAGE_EXAM_SET)}</dt>
                <dd>
                    {format!("{} v{} · ", l.exam_set.name, l.exam_set.version)}
                    <code class="hash">{l.exam_set.content_hash.clone()}</code>
                </dd>
                <dt>{t(i18n::LINEAGE_PROMPT_TEMPLATE)}</dt>
                <dd>
                    <code>{l.prompt_format.clone()}</code>
                    " "
                    <code class="hash">{l.prompt_template_sha256.clone()}</code>
                </dd>
                <dt>{t(i18n::LINEAGE_PROMPT_ID)}</dt>
                <dd><code id="lineage-prompt-id">{l.prompt_id.clone()}</code></dd>
                <dt>{t(i18n::LINEAGE_SETTINGS)}</dt>
                <dd id="lineage-settings">{settings}</dd>
                <dt>{t(i18n::LINEAGE_MODEL)}</dt>
                <dd>{l.model.clone()} " " {hash(l.model_sha256.clone())}</dd>
                <dt>{t(i18n::LINEAGE_LOADED_AS)}</dt>
                <dd>{l.model_info.clone().unwrap_or_else(|| format::NONE.to_owned())}</dd>
                {adapter}
                {tuning}
                <dt>{t(i18n::LINEAGE_DECODING)}</dt>
                <dd>
                    {tf(
                        i18n::LINEAGE_DECODING_VALUE,
                        &[
                            ("decoding", &l.decoding),
                            ("max", &l.max_new_tokens),
                            (
                                "seed",
                                &l.seed.map_or_else(|| t(i18n::LINEAGE_NO_SEED).to_owned(), |s| s.to_string()),
                            ),
                        ],
                    )}
                </dd>
                <dt>{t(i18n::LINEAGE_EXTRACTION_RULES)}</dt>
                <dd>
                    <code>{l.rules_version.clone().unwrap_or_else(|| format::NONE.to_owned())}</code>
                </dd>
                <dt>{t(i18n::LINEAGE_SOFTWARE)}</dt>
                <dd>
                    {tf(
                        i18n::LINEAGE_SOFTWARE_VALUE,
                        &[
                            ("version", &l.kokushi_version),
                            ("worker", &l.worker.clone().unwrap_or_else(|| format::NONE.to_owned())),
                        ],
                    )}
                </dd>
                <dt>{t(i18n::LINEAGE_LEAKAGE_GATE)}</dt>
                <dd>{l.leakage.clone()}</dd>
            </dl>
        </section>
    }
}
