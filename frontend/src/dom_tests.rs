//! DOM behaviour, in a real browser (`wasm-bindgen-test-runner` driving headless Chromium):
//! what a component puts in the page and how it answers a click. Pure logic is tested on the
//! host; these check the parts only a DOM shows.

use kokushi_shared::api::{ApiErrorBody, ErrorCode, LeaderboardQuery};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

use crate::components::error_banner::ErrorBanner;
use crate::components::header::LocaleSwitch;
use crate::components::whisker::AccuracyWhisker;
use crate::error::ApiError;
use crate::pages::leaderboard::QuestionFilter;

wasm_bindgen_test_configure!(run_in_browser);

fn document() -> web_sys::Document {
    web_sys::window()
        .and_then(|w| w.document())
        .expect("a document")
}

/// Mounts `view` into a fresh element of its own and returns that element (the mount lives as
/// long as the test).
fn mount<V: IntoView + 'static>(view: impl FnOnce() -> V + 'static) -> web_sys::HtmlElement {
    let host: web_sys::HtmlElement = document()
        .create_element("div")
        .expect("div")
        .unchecked_into();
    document()
        .body()
        .expect("body")
        .append_child(&host)
        .expect("append");
    std::mem::forget(leptos::mount::mount_to(host.clone(), view));
    host
}

fn find(host: &web_sys::HtmlElement, css: &str) -> web_sys::Element {
    host.query_selector(css)
        .expect("a valid selector")
        .unwrap_or_else(|| panic!("{css} is not in {}", host.inner_html()))
}

/// Lets the reactive system run what a change scheduled.
async fn settle() {
    gloo_timers::future::TimeoutFuture::new(0).await;
}

#[wasm_bindgen_test]
fn an_api_error_shows_its_code_the_servers_message_and_whether_it_retries() {
    let error = ApiError::Status {
        status: 503,
        body: Some(ApiErrorBody {
            code: ErrorCode::Unavailable,
            message: "the queue is not reachable".to_owned(),
            details: Vec::new(),
        }),
    };
    let host = mount(move || view! { <ErrorBanner error /> });
    let banner = find(&host, "p.error[role='alert']");
    let text = banner.text_content().unwrap_or_default();
    assert!(
        text.contains("The server is unavailable right now"),
        "{text}"
    );
    assert!(text.contains("the queue is not reachable"), "{text}");
    assert!(
        text.contains("HTTP 503") && text.contains("Retrying every 2 s"),
        "{text}"
    );

    let refused = ApiError::Status {
        status: 401,
        body: None,
    };
    let host = mount(move || view! { <ErrorBanner error=refused /> });
    let link = find(&host, "p.error a");
    assert_eq!(link.get_attribute("href").as_deref(), Some("/login"));
    assert!(!host.text_content().unwrap_or_default().contains("Retrying"));
}

#[wasm_bindgen_test]
fn the_language_switch_names_the_other_language_in_that_language() {
    let host = mount(|| view! { <LocaleSwitch /> });
    let button = find(&host, "button#locale-switch");
    // The tests run in English, so the switch offers Japanese, marked as Japanese text.
    assert_eq!(button.text_content().as_deref(), Some("日本語"));
    assert_eq!(button.get_attribute("lang").as_deref(), Some("ja"));
}

#[wasm_bindgen_test]
fn the_whisker_draws_the_interval_and_the_point_on_its_axis() {
    let host = mount(|| view! { <AccuracyWhisker point=0.5 interval=(0.25, 0.75) /> });
    let svg = find(&host, "svg.whisker");
    assert_eq!(svg.get_attribute("width").as_deref(), Some("96"));
    let point = find(&host, "circle.estimate");
    assert_eq!(point.get_attribute("cx").as_deref(), Some("48"));
    let ends: Vec<String> = ["x1", "x2"]
        .iter()
        .filter_map(|a| find(&host, "line.ci").get_attribute(a))
        .collect();
    assert_eq!(ends, ["24", "72"]);
    let label = svg.get_attribute("aria-label").unwrap_or_default();
    assert!(
        label.contains("50.0%") && label.contains("25.0%"),
        "{label}"
    );
}

#[wasm_bindgen_test]
async fn ticking_blocks_and_years_edits_the_leaderboard_query() {
    let query = RwSignal::new(LeaderboardQuery::default());
    let known_years = RwSignal::new(vec![2021, 2022]);
    let host = mount(move || view! { <QuestionFilter query known_years /> });
    let click = |css: &str| {
        find(&host, css)
            .unchecked_into::<web_sys::HtmlElement>()
            .click();
    };
    assert_eq!(
        host.query_selector_all("input.filter-year")
            .expect("selector")
            .length(),
        2
    );
    assert!(
        host.query_selector("#filter-clear")
            .expect("selector")
            .is_none()
    );
    click("input.filter-block[value='D']");
    click("input.filter-block[value='A']");
    click("input.filter-year[value='2022']");
    settle().await;
    query.with_untracked(|q| {
        assert_eq!(q.blocks.as_deref(), Some("A,D"));
        assert_eq!(q.years.as_deref(), Some("2022"));
    });
    // Unticking removes the value; "Clear" appears once a filter is set and empties it.
    click("input.filter-block[value='D']");
    settle().await;
    assert_eq!(
        query.with_untracked(|q| q.blocks.clone()).as_deref(),
        Some("A")
    );
    click("#filter-clear");
    settle().await;
    assert_eq!(query.get_untracked(), LeaderboardQuery::default());
    let ticked = host
        .query_selector_all("input:checked")
        .expect("selector")
        .length();
    assert_eq!(ticked, 0, "cleared boxes are unticked");
}

/// Dispatches a `keydown` on the window, as a key press would.
fn key_down(key: &str, code: &str, shift: bool) {
    let init = web_sys::KeyboardEventInit::new();
    init.set_key(key);
    init.set_code(code);
    init.set_shift_key(shift);
    init.set_bubbles(true);
    init.set_cancelable(true);
    let event = web_sys::KeyboardEvent::new_with_keyboard_event_init_dict("keydown", &init)
        .expect("a keyboard event");
    web_sys::window()
        .expect("a window")
        .dispatch_event(&event)
        .expect("dispatched");
}

#[wasm_bindgen_test]
async fn the_grading_help_opens_with_the_question_mark_and_closes_with_escape() {
    use leptos_router::components::{Route, Router, Routes};
    use leptos_router::path;

    use crate::grading::screen::Screen;
    use crate::session::{Session, SessionState};

    // No server answers here: the screen shows its errors, and the keys still work.
    let host = mount(|| {
        provide_context(Session(RwSignal::new(SessionState::SignedOut)));
        view! {
            <Router>
                <Routes fallback=|| view! { <Screen task=1 /> }>
                    <Route path=path!("/never") view=|| () />
                </Routes>
            </Router>
        }
    });
    settle().await;
    find(&host, "#grading-screen");
    assert!(
        host.query_selector("#grade-help")
            .expect("selector")
            .is_none()
    );

    key_down("?", "Slash", true);
    settle().await;
    let help = find(&host, "#grade-help");
    let text = help.text_content().unwrap_or_default();
    assert!(text.contains("Shift+1") && text.contains("Enter"), "{text}");
    assert_eq!(
        find(&host, "#grade-help-toggle")
            .get_attribute("aria-expanded")
            .as_deref(),
        Some("true")
    );

    key_down("Escape", "Escape", false);
    settle().await;
    assert!(
        host.query_selector("#grade-help")
            .expect("selector")
            .is_none()
    );

    // The button does the same for the mouse.
    find(&host, "#grade-help-toggle")
        .unchecked_into::<web_sys::HtmlElement>()
        .click();
    settle().await;
    find(&host, "#grade-help");
    find(&host, "#grade-help-close")
        .unchecked_into::<web_sys::HtmlElement>()
        .click();
    settle().await;
    assert!(
        host.query_selector("#grade-help")
            .expect("selector")
            .is_none()
    );
}

#[wasm_bindgen_test]
async fn verdict_buttons_fill_the_rubric_and_typed_letters_mean_unparseable() {
    use kokushi_shared::grading::Verdict;

    use crate::grading::forms::Draft;
    use crate::grading::rubric::verdict_picker;

    let draft = RwSignal::new(Draft::default());
    let host = mount(move || verdict_picker(draft, NodeRef::new()));
    find(&host, "button[data-verdict='partial']")
        .unchecked_into::<web_sys::HtmlElement>()
        .click();
    settle().await;
    assert_eq!(draft.with_untracked(|d| d.verdict), Some(Verdict::Partial));
    assert_eq!(
        find(&host, "button[data-verdict='partial']")
            .get_attribute("aria-pressed")
            .as_deref(),
        Some("true")
    );
    assert_eq!(
        find(&host, "button[data-verdict='correct']")
            .get_attribute("aria-pressed")
            .as_deref(),
        Some("false")
    );

    let letters: web_sys::HtmlInputElement = find(&host, "#grade-letters").unchecked_into();
    letters.set_value("b,d");
    letters
        .dispatch_event(&web_sys::Event::new("input").expect("an input event"))
        .expect("dispatched");
    settle().await;
    draft.with_untracked(|d| {
        assert_eq!(d.verdict, Some(Verdict::Unparseable));
        assert_eq!(d.letters, "b,d");
    });
}
