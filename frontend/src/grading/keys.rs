//! The grading screen's keyboard: which key does what. Pure, tested on the host; the screen
//! turns a `keydown` into a [`Press`] and acts on the [`Action`].
//!
//! Numbers pick the verdict (`1`–`4`, in rubric order), `Shift` + a number the rationale score
//! (read from `KeyboardEvent.code`, `Digit1`…`Digit5`, so the layout's shifted symbols do not
//! matter), letters toggle flags and move. Inside the letters and comment fields only `Enter`
//! (save) and `Escape` (leave the field) are shortcuts: everything else is typing, and
//! `Shift+Enter` a line break.

use kokushi_shared::grading::{Flag, Verdict};

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Verdict(Verdict),
    /// Rationale score 1–5.
    Rationale(u8),
    ToggleFlag(Flag),
    FocusComment,
    /// Save, then go to the next item.
    Save,
    Next,
    Previous,
    ToggleHelp,
    /// Leave the field being typed in, or close the help.
    Escape,
}

/// One key press, as much of it as the mapping needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Press<'a> {
    /// `KeyboardEvent.key`: the character typed (`"1"`, `"f"`, `"?"`) or the key's name.
    pub key: &'a str,
    /// `KeyboardEvent.code`: the physical key (`"Digit1"`).
    pub code: &'a str,
    pub shift: bool,
    /// Ctrl, Alt or Meta held: the browser's or the system's shortcut, never ours.
    pub modifier: bool,
    /// The focus is in a text field.
    pub typing: bool,
}

/// The action of a key press, if it has one.
pub fn action(press: Press<'_>) -> Option<Action> {
    if press.modifier {
        return None;
    }
    match press.key {
        // In the comment, Shift+Enter is a line break.
        "Enter" if press.typing && press.shift => return None,
        "Enter" => return Some(Action::Save),
        "Escape" => return Some(Action::Escape),
        _ if press.typing => return None,
        "?" => return Some(Action::ToggleHelp),
        _ => {}
    }
    if press.shift {
        let digit = press.code.strip_prefix("Digit")?;
        return match digit.parse::<u8>() {
            Ok(n @ 1..=5) => Some(Action::Rationale(n)),
            _ => None,
        };
    }
    let action = match press.key.to_ascii_lowercase().as_str() {
        "1" => Action::Verdict(Verdict::Correct),
        "2" => Action::Verdict(Verdict::Partial),
        "3" => Action::Verdict(Verdict::Incorrect),
        "4" => Action::Verdict(Verdict::Unparseable),
        "f" => Action::ToggleFlag(Flag::GoldWrong),
        "a" => Action::ToggleFlag(Flag::Ambiguous),
        "u" => Action::ToggleFlag(Flag::Unsafe),
        "c" => Action::FocusComment,
        "j" => Action::Next,
        "k" => Action::Previous,
        _ => return None,
    };
    Some(action)
}

/// Whether an element with this tag name (`INPUT`, `TEXTAREA`, as the DOM spells it) takes
/// typed text, so that keys pressed in it are typing, not shortcuts.
pub fn is_text_field(tag_name: &str) -> bool {
    matches!(
        tag_name.to_ascii_uppercase().as_str(),
        "INPUT" | "TEXTAREA" | "SELECT"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(key: &str) -> Press<'_> {
        Press {
            key,
            code: "",
            ..Press::default()
        }
    }

    fn check(press: Press<'_>, expected: Option<Action>) {
        assert_eq!(action(press), expected, "{press:?}");
    }

    #[test]
    fn numbers_pick_the_verdict_in_rubric_order() {
        for (n, verdict) in ["1", "2", "3", "4"].into_iter().zip(Verdict::ALL) {
            check(key(n), Some(Action::Verdict(verdict)));
        }
        check(key("5"), None);
        check(key("0"), None);
    }

    #[test]
    fn shifted_digits_score_the_rationale_whatever_the_layout_types() {
        // US layout: Shift+1 types "!"; Japanese: Shift+2 types "\""; the physical key decides.
        let cases = [
            ("!", "Digit1", Some(Action::Rationale(1))),
            ("\"", "Digit2", Some(Action::Rationale(2))),
            ("#", "Digit3", Some(Action::Rationale(3))),
            ("$", "Digit4", Some(Action::Rationale(4))),
            ("%", "Digit5", Some(Action::Rationale(5))),
            ("&", "Digit6", None),
            ("F", "KeyF", None),
        ];
        for (k, code, expected) in cases {
            check(
                Press {
                    key: k,
                    code,
                    shift: true,
                    ..Press::default()
                },
                expected,
            );
        }
    }

    #[test]
    fn letters_toggle_flags_focus_the_comment_and_move() {
        let cases = [
            ("f", Action::ToggleFlag(Flag::GoldWrong)),
            ("a", Action::ToggleFlag(Flag::Ambiguous)),
            ("u", Action::ToggleFlag(Flag::Unsafe)),
            ("c", Action::FocusComment),
            ("j", Action::Next),
            ("k", Action::Previous),
            // Caps Lock on: the same keys.
            ("F", Action::ToggleFlag(Flag::GoldWrong)),
            ("J", Action::Next),
        ];
        for (k, expected) in cases {
            check(key(k), Some(expected));
        }
        check(key("x"), None);
    }

    #[test]
    fn enter_saves_question_mark_helps_and_escape_leaves() {
        check(key("Enter"), Some(Action::Save));
        check(
            Press {
                key: "?",
                code: "Slash",
                shift: true,
                ..Press::default()
            },
            Some(Action::ToggleHelp),
        );
        check(key("Escape"), Some(Action::Escape));
    }

    #[test]
    fn typing_in_a_field_is_typing_except_enter_and_escape() {
        let typing = |k: &'static str| Press {
            key: k,
            code: "",
            typing: true,
            ..Press::default()
        };
        for k in ["1", "4", "f", "a", "c", "j", "k", "?", "b"] {
            check(typing(k), None);
        }
        check(
            Press {
                code: "Digit1",
                shift: true,
                ..typing("!")
            },
            None,
        );
        check(typing("Enter"), Some(Action::Save));
        check(
            Press {
                shift: true,
                ..typing("Enter")
            },
            None,
        );
        check(typing("Escape"), Some(Action::Escape));
    }

    #[test]
    fn browser_shortcuts_are_left_alone() {
        for k in ["1", "f", "Enter", "j"] {
            check(
                Press {
                    modifier: true,
                    ..key(k)
                },
                None,
            );
        }
    }

    #[test]
    fn inputs_and_text_areas_take_typing_buttons_do_not() {
        assert!(is_text_field("INPUT"));
        assert!(is_text_field("textarea"));
        assert!(is_text_field("SELECT"));
        assert!(!is_text_field("BUTTON"));
        assert!(!is_text_field("BODY"));
    }
}
