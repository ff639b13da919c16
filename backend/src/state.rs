//! What every handler shares: [`AppState`], built once by `startup` and handed to each handler
//! as `web::Data<AppState>`, and the pieces of it that belong to no one handler: the
//! leaderboard's [`ResponseCache`] (cleared by ingestion and by every write that changes a
//! score) and the live streams' [`StreamCounts`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::web;
use kokushi_queue::JobQueue;

use crate::auth::{LoginLimiter, PrincipalCache};
use crate::db::Db;

/// What every handler shares.
pub struct AppState {
    pub db: Db,
    pub queue: Arc<dyn JobQueue>,
    pub limiter: LoginLimiter,
    pub principals: PrincipalCache,
    /// The leaderboard's last JSON body.
    pub leaderboard: Arc<ResponseCache>,
    /// Request counts and durations for `/metrics`.
    pub metrics: crate::metrics::HttpMetrics,
    /// Mark the session cookie `Secure` even when the request did not arrive over TLS (a TLS
    /// proxy that does not say so).
    pub secure_cookies: bool,
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: usize,
    /// Jobs (runs and tunings) one account may have waiting in the queue at once.
    pub max_queued_per_user: i64,
    /// The folder models and adapters are listed from (`GET /api/models`).
    pub model_store: std::path::PathBuf,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: crate::auth::TrustedProxies,
    /// How long a browser session may go unused before it ends.
    pub session_idle: std::time::Duration,
    /// Live-progress streams open, per account.
    pub streams: StreamCounts,
    /// Base URLs of the OpenAI-compatible servers runs may name.
    pub remote_model_allow: Vec<String>,
    /// Runs scored again at once for a filtered leaderboard (those whose stored cells are
    /// stale).
    pub rescoring: tokio::sync::Semaphore,
    /// What a page of a run's questions is filtered by, per exam set.
    pub question_facts: QuestionFacts,
    /// What a run's page is summed and its questions chosen from, per run.
    pub run_outcomes: OutcomeCache,
}

/// Per exam set, what a page of a run's questions is filtered by (`db::runs::QuestionFact`):
/// read once from the questions' bodies, kept while the server runs (an exam set never changes
/// once stored), for at most [`QuestionFacts::MAX_SETS`] sets at once.
#[derive(Debug, Default)]
pub struct QuestionFacts {
    sets: std::sync::Mutex<HashMap<i64, Arc<HashMap<String, crate::db::runs::QuestionFact>>>>,
}

impl QuestionFacts {
    const MAX_SETS: usize = 32;

    /// Exam set `exam_set_id`'s facts, read from `db` the first time.
    pub async fn of(
        &self,
        db: &crate::db::Db,
        exam_set_id: i64,
    ) -> Result<Arc<HashMap<String, crate::db::runs::QuestionFact>>, crate::db::DbError> {
        let lock = || self.sets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(facts) = lock().get(&exam_set_id) {
            return Ok(facts.clone());
        }
        let facts = Arc::new(db.question_facts(exam_set_id).await?);
        let mut sets = lock();
        if sets.len() >= Self::MAX_SETS {
            sets.clear();
        }
        sets.insert(exam_set_id, facts.clone());
        Ok(facts)
    }
}

/// Per run, its questions' outcomes in order and the rules version of its last answer
/// ([`crate::db::runs::RunOutcomes`]): what its page and every page of its questions are read
/// from, 2,000 rows for a whole exam year. Used only while the run's row counts as many answers
/// as they hold (`tally_answered`, raised in the transaction that adds each answer; a run's
/// questions never change, and an answer is never changed or removed), so a run still
/// answering is read again once per new answer, a finished one once. Bounded by the questions
/// held ([`OutcomeCache::MAX_QUESTIONS`], each a problem id and its outcome): a run larger than a quarter of that
/// (an uploaded set can hold far more than an exam year) is read per request, as before, and
/// not kept.
#[derive(Debug, Default)]
pub struct OutcomeCache {
    runs: std::sync::Mutex<KeptOutcomes>,
}

#[derive(Debug, Default)]
struct KeptOutcomes {
    /// Per run, its outcomes and how many of them are answered (counted once, when kept).
    runs: HashMap<i64, (Arc<crate::db::runs::RunOutcomes>, usize)>,
    /// Questions held, over all runs.
    questions: usize,
}

impl KeptOutcomes {
    /// Keeps `outcomes` as run `run_id`'s (in place of what was kept of it), after dropping
    /// everything else if the bound would be passed; a run of more than a quarter of the bound
    /// is not kept (false).
    fn keep(&mut self, run_id: i64, outcomes: Arc<crate::db::runs::RunOutcomes>) -> bool {
        let size = outcomes.questions.len();
        if let Some((old, _)) = self.runs.remove(&run_id) {
            self.questions -= old.questions.len();
        }
        if size > OutcomeCache::MAX_QUESTIONS / 4 {
            return false;
        }
        if self.questions + size > OutcomeCache::MAX_QUESTIONS {
            self.runs.clear();
            self.questions = 0;
        }
        self.questions += size;
        let answered = outcomes.answered();
        self.runs.insert(run_id, (outcomes, answered));
        true
    }
}

impl OutcomeCache {
    /// 64 whole exam years; about 13 MB with exam-year problem ids.
    pub const MAX_QUESTIONS: usize = 256_000;

    /// Run `run_id`'s outcomes, current for `answered` answers (its row's count, just read).
    pub async fn of(
        &self,
        db: &crate::db::Db,
        run_id: i64,
        answered: u32,
    ) -> Result<Arc<crate::db::runs::RunOutcomes>, crate::db::DbError> {
        let lock = || self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((kept, held)) = lock().runs.get(&run_id)
            && u32::try_from(*held).ok() == Some(answered)
        {
            return Ok(kept.clone());
        }
        // Kept with what it holds, which may be more than `answered` if answers arrived
        // meanwhile: a later request, whose count is at least that, finds it current.
        let outcomes = Arc::new(db.run_outcomes(run_id).await?);
        lock().keep(run_id, outcomes.clone());
        Ok(outcomes)
    }
}

/// Response bodies kept for a moment, one per leaderboard filter, with the board's row count:
/// the leaderboard is read by every open page every few seconds and changes only when an
/// answer arrives. Ingested events on this node expire the bodies ([`ResponseCache::expire`]:
/// the next request rebuilds and reads the new body),
/// writes that change who may see what (publishing, grading) drop them
/// ([`ResponseCache::clear`]); other API nodes' writes show within [`ResponseCache::TTL`].
///
/// A body past its time is rebuilt once, in the background, while every request is served it
/// as it was (for at most [`ResponseCache::STALE`]): under load the board is built at most
/// once a second and no request waits for it.
#[derive(Debug, Default)]
pub struct ResponseCache {
    bodies: std::sync::Mutex<std::collections::HashMap<String, Cached>>,
}

#[derive(Debug)]
struct Cached {
    made: std::time::Instant,
    body: web::Bytes,
    total: u64,
    /// A request is building the next body.
    rebuilding: bool,
    /// A write on this node changed what it shows ([`ResponseCache::expire`]).
    invalidated: bool,
}

/// What [`ResponseCache::lookup`] found.
#[derive(Debug)]
pub enum Lookup {
    /// A body to serve, and the board's row count.
    Hit(web::Bytes, u64),
    /// An expired body to serve, and the turn to rebuild it (in the background: no request
    /// waits for it); dropping the turn without `put` lets the next request try.
    Stale(web::Bytes, u64, RebuildTurn),
    /// A write on this node changed the body: build it now (and `put` it) with the turn, so
    /// that the caller reads what was written; requests meanwhile are served the old one.
    Rebuild(RebuildTurn),
    /// None to serve: build it (and `put` it).
    Build,
}

/// The one rebuild of an expired body.
#[derive(Debug)]
pub struct RebuildTurn {
    cache: Arc<ResponseCache>,
    key: String,
}

impl Drop for RebuildTurn {
    fn drop(&mut self) {
        let mut bodies = self.cache.lock();
        if let Some(c) = bodies.get_mut(&self.key) {
            c.rebuilding = false;
        }
    }
}

impl ResponseCache {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(1);
    /// The longest an expired body is served while one request rebuilds it.
    pub const STALE: std::time::Duration = std::time::Duration::from_secs(30);
    /// Distinct filters kept at once; past it the cache starts afresh.
    const MAX_KEYS: usize = 64;

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Cached>> {
        self.bodies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The body kept under `key`, or whether to build it.
    pub(crate) fn lookup(self: &Arc<Self>, key: &str) -> Lookup {
        let mut bodies = self.lock();
        let Some(c) = bodies.get_mut(key) else {
            return Lookup::Build;
        };
        let age = c.made.elapsed();
        if c.rebuilding && age < Self::STALE {
            return Lookup::Hit(c.body.clone(), c.total);
        }
        if c.invalidated {
            c.rebuilding = true;
            return Lookup::Rebuild(RebuildTurn {
                cache: self.clone(),
                key: key.to_owned(),
            });
        }
        if age < Self::TTL {
            return Lookup::Hit(c.body.clone(), c.total);
        }
        if age < Self::STALE {
            c.rebuilding = true;
            return Lookup::Stale(
                c.body.clone(),
                c.total,
                RebuildTurn {
                    cache: self.clone(),
                    key: key.to_owned(),
                },
            );
        }
        Lookup::Build
    }

    pub(crate) fn put(&self, key: String, body: web::Bytes, total: u64) {
        let mut bodies = self.lock();
        if bodies.len() >= Self::MAX_KEYS && !bodies.contains_key(&key) {
            bodies.clear();
        }
        bodies.insert(
            key,
            Cached {
                made: std::time::Instant::now(),
                body,
                total,
                rebuilding: false,
                invalidated: false,
            },
        );
    }

    /// Every body is out of date (a write on this node): the next request for each rebuilds
    /// it and reads the new one, while requests meanwhile are served the body as it was.
    pub fn expire(&self) {
        for c in self.lock().values_mut() {
            c.invalidated = true;
        }
    }

    /// Every body is dropped: no request is served one made before.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

/// Streams open per account on this API node, each held by a [`StreamSlot`].
#[derive(Debug)]
pub struct StreamCounts {
    open: Arc<Mutex<HashMap<i64, usize>>>,
    per_user: usize,
}

impl StreamCounts {
    pub fn new(per_user: usize) -> Self {
        Self {
            open: Arc::default(),
            per_user: per_user.max(1),
        }
    }

    /// The most streams one account may hold at once.
    pub fn per_user(&self) -> usize {
        self.per_user
    }

    /// A slot for one more stream of `user`, or `None` when they hold as many as allowed.
    pub(crate) fn take(&self, user: i64) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(user).or_default();
        if *n >= self.per_user {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            open: self.open.clone(),
            user,
        })
    }
}

/// One open stream; given back when the stream ends or its client goes away (dropped).
pub(crate) struct StreamSlot {
    open: Arc<Mutex<HashMap<i64, usize>>>,
    user: i64,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_body_is_rebuilt_once_while_every_request_is_served_it() {
        let cache = Arc::new(ResponseCache::default());
        assert!(matches!(cache.lookup("k"), Lookup::Build));
        cache.put("k".to_owned(), web::Bytes::from_static(b"old"), 3);
        assert!(matches!(cache.lookup("k"), Lookup::Hit(ref b, 3) if b.as_ref() == b"old"));
        // Expired by a write here: the next request rebuilds it and waits for it; the others
        // meanwhile are served the old body.
        cache.expire();
        let turn = match cache.lookup("k") {
            Lookup::Rebuild(turn) => turn,
            other => panic!("the first request after a write rebuilds: {other:?}"),
        };
        assert!(matches!(cache.lookup("k"), Lookup::Hit(ref b, 3) if b.as_ref() == b"old"));
        cache.put("k".to_owned(), web::Bytes::from_static(b"mid"), 3);
        drop(turn);
        assert!(matches!(cache.lookup("k"), Lookup::Hit(ref b, 3) if b.as_ref() == b"mid"));
        // Past its time (another node's writes): served as it was, rebuilt once meanwhile.
        if let Some(c) = cache.lock().get_mut("k") {
            c.made -= ResponseCache::TTL;
        }
        let turn = match cache.lookup("k") {
            Lookup::Stale(b, 3, turn) if b.as_ref() == b"mid" => turn,
            other => panic!("the first request after its time rebuilds: {other:?}"),
        };
        // Meanwhile: the old body, and no second rebuild.
        assert!(matches!(cache.lookup("k"), Lookup::Hit(ref b, 3) if b.as_ref() == b"mid"));
        // A rebuild that fails (dropped without a body) hands the turn to the next request.
        drop(turn);
        let turn = match cache.lookup("k") {
            Lookup::Stale(_, _, turn) => turn,
            other => panic!("the next request rebuilds: {other:?}"),
        };
        cache.put("k".to_owned(), web::Bytes::from_static(b"new"), 4);
        drop(turn);
        assert!(matches!(cache.lookup("k"), Lookup::Hit(ref b, 4) if b.as_ref() == b"new"));
        // Cleared: nothing is served.
        cache.clear();
        assert!(matches!(cache.lookup("k"), Lookup::Build));
    }
}

#[cfg(test)]
mod outcome_tests {
    use super::*;
    use crate::db::runs::{IndexedQuestion, RunOutcomes};

    fn outcomes(questions: usize) -> Arc<RunOutcomes> {
        Arc::new(RunOutcomes {
            questions: (0..questions)
                .map(|i| IndexedQuestion {
                    problem_id: format!("q{i}"),
                    answer: None,
                })
                .collect(),
            rules_version: None,
        })
    }

    /// What is kept of runs' outcomes stays within its bound of questions, however many runs
    /// and however large.
    #[test]
    fn kept_outcomes_stay_within_their_bound() {
        let quarter = OutcomeCache::MAX_QUESTIONS / 4;
        let mut kept = KeptOutcomes::default();
        for run in 1..=4 {
            assert!(kept.keep(run, outcomes(quarter)));
        }
        assert_eq!(
            (kept.runs.len(), kept.questions),
            (4, OutcomeCache::MAX_QUESTIONS)
        );
        // The same run again replaces itself, nothing else.
        assert!(kept.keep(4, outcomes(10)));
        assert_eq!((kept.runs.len(), kept.questions), (4, 3 * quarter + 10));
        // A fifth that does not fit drops the others.
        assert!(kept.keep(5, outcomes(quarter)));
        assert_eq!((kept.runs.len(), kept.questions), (1, quarter));
        // Larger than a quarter: never kept, and what was kept of it goes.
        assert!(!kept.keep(5, outcomes(quarter + 1)));
        assert_eq!((kept.runs.len(), kept.questions), (0, 0));
        for run in 0..1_000 {
            kept.keep(run, outcomes(1_000));
            assert!(kept.questions <= OutcomeCache::MAX_QUESTIONS);
            assert_eq!(
                kept.questions,
                kept.runs
                    .values()
                    .map(|(o, _)| o.questions.len())
                    .sum::<usize>()
            );
        }
    }
}
