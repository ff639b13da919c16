//! The page's language: every text a page shows comes from the locale files
//! (`frontend/locales/<lang>/<area>.txt`), never from a literal in a component.
//!
//! `build.rs` turns the files into one constant per message (`LEADERBOARD_TITLE` for `title` in
//! `leaderboard.txt`), a [`Msg`] holding the text in every language, and refuses to build when
//! the languages disagree, so a missing translation is a build error, not a blank on the page.
//! Each message is its own constant so that a bundle links only the texts it uses (the main
//! app and the grading app share the locale files).
//!
//! The language is chosen once when the app starts — the one saved by the switch in the
//! header, else the browser's — and switching saves the choice and reloads the page, so no
//! component has to re-render its texts. Japanese medical text is shown as the server sends it
//! whichever language the interface speaks.

use std::fmt::{self, Display};
use std::sync::atomic::{AtomicU8, Ordering};

/// One message of the locale files, in every language; the constants below name them all.
///
/// The texts are one string, in the order of [`Locale::ALL`], separated by U+001F (the unit
/// separator, which no text contains): a message is then a single piece of data that the
/// linker keeps only where the message is used, with nothing between one message's text and
/// the next (which keeps the WebAssembly small once compressed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg(&'static str);

impl Msg {
    /// The text in `locale`.
    fn text(self, locale: Locale) -> &'static str {
        let (english, japanese) = self.0.split_once('\u{1f}').unwrap_or((self.0, self.0));
        match locale {
            Locale::En => english,
            Locale::Ja => japanese,
        }
    }
}

include!(concat!(env!("OUT_DIR"), "/messages.rs"));

/// A language of the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    En,
    Ja,
}

impl Locale {
    pub const ALL: [Locale; 2] = [Locale::En, Locale::Ja];

    /// The BCP 47 code, as in `<html lang>`.
    pub fn code(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Ja => "ja",
        }
    }

    /// The locale of a language tag (`ja`, `ja-JP`, `en-GB`); `None` for a language the app
    /// does not speak.
    pub fn from_tag(tag: &str) -> Option<Self> {
        let primary = tag.split(['-', '_']).next()?.trim().to_ascii_lowercase();
        Locale::ALL.into_iter().find(|l| l.code() == primary)
    }

    /// The language's own name (`English`, `日本語`), for the switch.
    pub fn name(self) -> &'static str {
        COMMON_LANGUAGE.text(self)
    }

    /// The first language of `tags` (the browser's preference order) the app speaks, else
    /// English.
    pub fn preferred<'a>(tags: impl IntoIterator<Item = &'a str>) -> Self {
        tags.into_iter()
            .find_map(Locale::from_tag)
            .unwrap_or(Locale::En)
    }
}

static CURRENT: AtomicU8 = AtomicU8::new(0);

/// The language the interface speaks now.
pub fn locale() -> Locale {
    match CURRENT.load(Ordering::Relaxed) {
        1 => Locale::Ja,
        _ => Locale::En,
    }
}

pub fn set_locale(locale: Locale) {
    CURRENT.store(
        match locale {
            Locale::En => 0,
            Locale::Ja => 1,
        },
        Ordering::Relaxed,
    );
}

/// The text of `msg` in the current language.
///
/// Never inlined: the app calls it at several hundred places, and one call is smaller than the
/// locale test it would otherwise copy into each.
#[inline(never)]
pub fn t(msg: Msg) -> &'static str {
    msg.text(locale())
}

/// The text of `msg` with its `{name}` placeholders filled from `args`; a placeholder without
/// an argument is left as written, so a mistake shows on the page instead of vanishing.
pub fn tf(msg: Msg, args: &[(&str, &dyn Display)]) -> String {
    fill(t(msg), args)
}

fn fill(text: &str, args: &[(&str, &dyn Display)]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            rest = &rest[open..];
            break;
        };
        let name = &after[..close];
        match args.iter().find(|(n, _)| *n == name) {
            Some((_, value)) => {
                let _ = write!(out, "{value}");
            }
            None => out.push_str(&rest[open..open + close + 2]),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Where the switch keeps the chosen language.
const STORAGE_KEY: &str = "kokushi.locale";

/// Chooses the language when the app starts: the saved choice, else the browser's preference;
/// marks `<html lang>` so the browser picks Japanese or Latin glyphs right.
pub fn init() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let saved = window
        .local_storage()
        .ok()
        .flatten()
        .and_then(|storage| storage.get_item(STORAGE_KEY).ok().flatten())
        .and_then(|tag| Locale::from_tag(&tag));
    let chosen = saved.unwrap_or_else(|| {
        let languages: Vec<String> = window
            .navigator()
            .languages()
            .iter()
            .filter_map(|v| v.as_string())
            .collect();
        Locale::preferred(languages.iter().map(String::as_str))
    });
    set_locale(chosen);
    if let Some(root) = window.document().and_then(|d| d.document_element()) {
        let _ = root.set_attribute("lang", chosen.code());
    }
}

/// Saves `locale` as the choice and reloads the page in it.
pub fn switch(locale: Locale) {
    let Some(window) = web_sys::window() else {
        return;
    };
    if let Ok(Some(storage)) = window.local_storage() {
        let _ = storage.set_item(STORAGE_KEY, locale.code());
    }
    let _ = window.location().reload();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_has_a_text_in_every_language() {
        assert!(ALL_MESSAGES.len() > 100);
        for locale in Locale::ALL {
            for msg in ALL_MESSAGES {
                let text = msg.text(locale);
                assert!(!text.trim().is_empty(), "{locale:?} {msg:?} is blank");
            }
        }
    }

    #[test]
    fn a_message_holds_exactly_one_text_per_language() {
        let msg = Msg("Sign in\u{1f}サインイン");
        assert_eq!(msg.text(Locale::En), "Sign in");
        assert_eq!(msg.text(Locale::Ja), "サインイン");
        for msg in ALL_MESSAGES {
            assert_eq!(msg.0.matches('\u{1f}').count(), 1, "{msg:?}");
        }
        assert_eq!(COMMON_SIGN_IN.text(Locale::Ja), "サインイン");
    }

    #[test]
    fn language_tags_choose_a_locale_and_unknown_ones_fall_back_to_english() {
        assert_eq!(Locale::from_tag("ja-JP"), Some(Locale::Ja));
        assert_eq!(Locale::from_tag("JA"), Some(Locale::Ja));
        assert_eq!(Locale::from_tag("en_GB"), Some(Locale::En));
        assert_eq!(Locale::from_tag("fr"), None);
        assert_eq!(Locale::preferred(["fr-FR", "ja", "en"]), Locale::Ja);
        assert_eq!(Locale::preferred(["de"]), Locale::En);
        assert_eq!(Locale::preferred([]), Locale::En);
    }

    #[test]
    fn placeholders_are_filled_by_name_and_a_missing_one_stays_visible() {
        let n = 3;
        assert_eq!(
            fill(
                "{done} of {total} answered",
                &[("total", &20), ("done", &n)]
            ),
            "3 of 20 answered"
        );
        assert_eq!(fill("{done} of {total}", &[("done", &1)]), "1 of {total}");
        assert_eq!(fill("no placeholder {", &[]), "no placeholder {");
        assert_eq!(fill("問題{id}", &[("id", &"116A1")]), "問題116A1");
    }

    #[test]
    fn the_languages_name_themselves() {
        assert_eq!(Locale::En.name(), "English");
        assert_eq!(Locale::Ja.name(), "日本語");
    }
}
