//! Driving the app in the browser: waiting for elements and texts, clicking, typing and saving
//! screenshots. Every wait gives up after [`WAIT`] with the selector in the panic message.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};

/// How long a page may take to show what a test waits for.
pub const WAIT: Duration = Duration::from_secs(60);

/// Waits for `css` to match an element.
pub async fn element(browser: &Client, css: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
}

/// Waits for `css` to match an element and returns its text.
pub async fn text_of(browser: &Client, css: &str) -> String {
    element(browser, css).await.text().await.expect("text")
}

/// Waits until `css` matches an element whose text satisfies `ok`.
pub async fn wait_text(browser: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        if let Ok(element) = browser.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
            && ok(&text)
        {
            return text;
        }
        assert!(
            started.elapsed() < WAIT,
            "{css} never showed the expected text"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn click(browser: &Client, css: &str) {
    element(browser, css)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

pub async fn type_into(browser: &Client, css: &str, text: &str) {
    let input = element(browser, css).await;
    input.clear().await.expect("clear");
    input.send_keys(text).await.expect("type");
}

/// Chooses `path` in the file input `css`.
pub async fn choose_file(browser: &Client, css: &str, path: &std::path::Path) {
    choose_files(browser, css, &[path]).await;
}

/// Chooses `paths` in the file input `css` (one with `multiple`), instead of whatever it held:
/// a file input keeps what was chosen before, and one with `multiple` adds to it.
pub async fn choose_files(browser: &Client, css: &str, paths: &[&std::path::Path]) {
    let input = element(browser, css).await;
    browser
        .execute(
            "document.querySelector(arguments[0]).value = '';",
            vec![serde_json::json!(css)],
        )
        .await
        .unwrap_or_else(|e| panic!("emptying {css}: {e}"));
    // Chromedriver takes only canonical paths (no `..`).
    let list = paths
        .iter()
        .map(|p| {
            std::fs::canonicalize(p)
                .unwrap_or_else(|_| p.to_path_buf())
                .display()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    input
        .send_keys(&list)
        .await
        .unwrap_or_else(|e| panic!("choosing {list} in {css}: {e}"));
}

/// Signs in through the form and waits for the leaderboard.
pub async fn sign_in(browser: &Client, base: &str, user: &str, password: &str) {
    browser.goto(base).await.expect("open");
    type_into(browser, "#login-username", user).await;
    type_into(browser, "#login-password", password).await;
    click(browser, "#login-submit").await;
    text_of(browser, "#leaderboard").await;
}

/// Signs `user` in through the form after forgetting whoever was signed in (the session
/// cookie); does not wait for where the app then goes.
pub async fn switch_user(browser: &Client, base: &str, user: &str, password: &str) {
    browser.goto(&format!("{base}/login")).await.expect("open");
    browser.delete_all_cookies().await.expect("sign out");
    browser.goto(&format!("{base}/login")).await.expect("open");
    type_into(browser, "#login-username", user).await;
    type_into(browser, "#login-password", password).await;
    click(browser, "#login-submit").await;
}

/// Saves the page as `NAME.png` into `KOKUSHI_SCREENSHOTS_DIR` when screenshots are asked for.
pub async fn shoot(browser: &Client, name: &str) {
    // Optional, so not `service` (which insists in CI).
    let Some(dir) = std::env::var_os("KOKUSHI_SCREENSHOTS_DIR").filter(|d| !d.is_empty()) else {
        return;
    };
    // Let transitions and late images settle.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let png = browser.screenshot().await.expect("screenshot");
    let path = PathBuf::from(dir).join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Presses each key of `keys` in turn on whatever has the focus, as a person typing would
/// (key down, key up); `fantoccini::key::Key` values (e.g. `Key::Enter.into()`) for the others.
pub async fn press(browser: &Client, keys: &[char]) {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    let mut actions = KeyActions::new("keyboard".to_owned());
    for &key in keys {
        actions = actions
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
    }
    browser
        .perform_actions(actions)
        .await
        .unwrap_or_else(|e| panic!("pressing {keys:?}: {e}"));
}

/// What is wrong with the layout of the page on screen: the page wider than the window (with
/// the element that sticks out furthest), two of the elements `separate` matches overlapping
/// (their boxes compared), an input or list sticking out of its `.panel`. Empty when none.
pub async fn layout_faults(browser: &Client, separate: &str) -> Vec<String> {
    const SCRIPT: &str = r#"
        const faults = [];
        const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
            (typeof e.className === 'string' && e.className ? '.' + e.className.trim().split(/\s+/).join('.') : '');
        const width = window.innerWidth;
        const page = document.documentElement.scrollWidth;
        if (page > width) {
            let worst = null, right = width;
            for (const e of document.querySelectorAll('body *')) {
                const r = e.getBoundingClientRect();
                if (r.width > 0 && r.right > right) { right = r.right; worst = e; }
            }
            faults.push(`the page is ${page}px wide in a ${width}px window` +
                (worst ? `; ${name(worst)} ends at ${Math.round(right)}px` : ''));
        }
        const boxes = [...document.querySelectorAll(arguments[0])]
            .map((e) => [e, e.getBoundingClientRect()])
            .filter(([, r]) => r.width > 0 && r.height > 0);
        for (let i = 0; i < boxes.length; i++) {
            for (let j = i + 1; j < boxes.length; j++) {
                const [a, p] = boxes[i], [b, q] = boxes[j];
                if (a.contains(b) || b.contains(a)) continue;
                if (p.left < q.right - 0.5 && q.left < p.right - 0.5 &&
                    p.top < q.bottom - 0.5 && q.top < p.bottom - 0.5) {
                    faults.push(`${name(a)} "${a.textContent.trim().slice(0, 40)}" overlaps ` +
                        `${name(b)} "${b.textContent.trim().slice(0, 40)}"`);
                }
            }
        }
        for (const e of document.querySelectorAll('.panel input, .panel select, .panel textarea')) {
            const p = e.closest('.panel').getBoundingClientRect(), r = e.getBoundingClientRect();
            if (r.width > 0 && (r.right > p.right + 0.5 || r.left < p.left - 0.5)) {
                faults.push(`${name(e)} sticks out of its panel (${Math.round(r.left)}–` +
                    `${Math.round(r.right)}px in ${Math.round(p.left)}–${Math.round(p.right)}px)`);
            }
        }
        return faults;
    "#;
    let value = browser
        .execute(SCRIPT, vec![separate.into()])
        .await
        .expect("measuring the layout");
    serde_json::from_value(value).expect("a list of faults")
}

/// The WebAssembly files the page on screen loaded since it was opened: each one's path and the
/// bytes its body took on the wire (`encodedBodySize`: compressed, as the server sent it).
pub async fn loaded_wasm(browser: &Client) -> Vec<(String, u64)> {
    const SCRIPT: &str = r#"
        return performance.getEntriesByType('resource')
            .filter((e) => new URL(e.name).pathname.endsWith('.wasm'))
            .map((e) => [new URL(e.name).pathname, e.encodedBodySize]);
    "#;
    let value = browser
        .execute(SCRIPT, vec![])
        .await
        .expect("listing the page's resources");
    serde_json::from_value(value).expect("a list of files and sizes")
}

/// Sets the browser window's inner size (the viewport) to `width`×`height`.
pub async fn set_viewport(browser: &Client, width: u32, height: u32) {
    // The window's frame is the difference between its outer and inner sizes.
    let inner: Vec<u32> = serde_json::from_value(
        browser
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await
            .expect("viewport"),
    )
    .expect("two numbers");
    let (_, _, outer_w, outer_h) = browser.get_window_rect().await.expect("window");
    let frame = (outer_w as u32 - inner[0], outer_h as u32 - inner[1]);
    browser
        .set_window_size(width + frame.0, height + frame.1)
        .await
        .expect("window size");
}
