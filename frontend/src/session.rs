//! Who is signed in, shared by every component through Leptos context.
//!
//! The session itself is an HttpOnly cookie the code never sees; what the app keeps is the
//! account the server reported (`GET /api/auth/me`) and the CSRF token that state-changing
//! requests send back.

use kokushi_shared::api::Me;
use leptos::prelude::*;

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
}
