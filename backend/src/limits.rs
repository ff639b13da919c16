//! Limits on what a run may ask of a model, shared by the handlers that check requests
//! (`handlers::runs`, `handlers::tunings`) and the SQL that fills in defaults (`db::tunings`).

/// The new tokens a run may generate when it does not say.
pub(crate) const DEFAULT_MAX_NEW_TOKENS: u32 = 32;
/// The most new tokens a run may ask for.
pub(crate) const MAX_MAX_NEW_TOKENS: u32 = 1024;
/// The most worked examples a run may put before each question.
pub use kokushi_shared::job::MAX_SHOTS;
