//! Who is signed in, shared by every component through Leptos context.
//!
//! The session itself is an HttpOnly cookie the code never sees; what the app keeps is the
//! account the server reported (`GET /api/auth/me`) and the CSRF token that state-changing
//! requests send back.

use kokushi_shared::api::{Me, Role};
use leptos::prelude::*;

/// Whether grading is all the account may do (its only role is annotator): such an account
/// belongs in the grading app, not on the leaderboard.
pub fn grading_only(me: &Me) -> bool {
    !me.roles.is_empty() && me.roles.iter().all(|r| *r == Role::Annotator)
}

/// What the app knows of the session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionState {
    /// Not asked yet.
    Unknown,
    SignedOut,
    SignedIn(Me),
}

/// The app-wide session signal, provided by [`crate::app::App`].
#[derive(Debug, Clone, Copy)]
pub struct Session(pub RwSignal<SessionState>);

impl Session {
    pub fn get() -> Self {
        expect_context::<Session>()
    }

    /// The session's CSRF token, for state-changing requests (empty when signed out: the
    /// server then answers 401, which the page shows).
    pub fn csrf(self) -> String {
        match self.0.get_untracked() {
            SessionState::SignedIn(me) => me.csrf_token.unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// Whether the signed-in account holds `role` (an admin holds every researcher right).
    pub fn has(self, role: Role) -> bool {
        self.0.with(|s| match s {
            SessionState::SignedIn(me) => {
                me.roles.contains(&role)
                    || (role == Role::Researcher && me.roles.contains(&Role::Admin))
            }
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(roles: &[Role]) -> Me {
        Me {
            id: 1,
            username: "annie".into(),
            roles: roles.to_vec(),
            csrf_token: None,
            project: None,
            projects: Vec::new(),
            read_only: false,
        }
    }

    #[test]
    fn only_an_annotator_and_nothing_else_is_sent_to_grading() {
        assert!(grading_only(&me(&[Role::Annotator])));
        assert!(!grading_only(&me(&[Role::Annotator, Role::Researcher])));
        assert!(!grading_only(&me(&[Role::Admin])));
        assert!(!grading_only(&me(&[])));
    }
}
