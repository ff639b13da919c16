//! Upgrading an installation made by the release before projects (every migration up to
//! 20261206000003), on SQLite and on PostgreSQL: a database holding accounts with each role,
//! an API token, an exam set with a rule pack, a finished run with its answers, a tuning with its
//! loss curve, and a grading task with a grade, an adjudication and its audit log is migrated by
//! the server's start; afterwards every row is still there, everything belongs to the project
//! `default` whose members are the accounts with a role, and the API shows each object to the
//! accounts that saw it before (the old token included) — and nothing to an account with no role.

use std::path::Path;

use kokushi_backend::Settings;
use kokushi_backend::auth::{digest, hash_password};
use kokushi_shared::api::{
    ExamSetRules, ExamSetSummary, Me, ProjectRole, RunDetail, RunSummary, TuningDetail,
    TuningSummary,
};
use kokushi_shared::grading::{GradingTaskDetail, MyTask};
use kokushi_shared::job::EvalSettings;
use kokushi_shared::prompt::PromptFormat;
use kokushi_tests::{TestApp, fixture_model_store, on_both_databases};
use sqlx::AnyPool;

/// The last migration of the release before projects.
const PREVIOUS_RELEASE: &str = "20261206000003";

/// Every table of the previous release whose rows are data (sessions are not: an idle one is
/// purged at start).
const TABLES: [&str; 18] = [
    "users",
    "user_roles",
    "api_tokens",
    "exam_sets",
    "questions",
    "exam_set_rule_packs",
    "runs",
    "run_questions",
    "jobs",
    "answers",
    "tunings",
    "tuning_points",
    "grading_tasks",
    "grading_task_runs",
    "grading_items",
    "grading_assignments",
    "grades",
    "adjudications",
];

/// Makes the previous release's schema: its migrations, copied aside and run as that release
/// ran them.
async fn previous_release(url: &str) -> AnyPool {
    let kind = if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    let all = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(kind);
    let aside = kokushi_tests::tempfile::tempdir().expect("tempdir");
    let mut copied = 0;
    for entry in std::fs::read_dir(&all).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        if name.as_str() <= format!("{PREVIOUS_RELEASE}_~").as_str() {
            std::fs::copy(&path, aside.path().join(&name)).expect("copy");
            copied += 1;
        }
    }
    assert!(copied >= 16, "{copied} migrations of the previous release");
    sqlx::any::install_default_drivers();
    let connect = if kind == "sqlite" {
        format!("{url}?mode=rwc")
    } else {
        url.to_owned()
    };
    let pool = AnyPool::connect(&connect).await.expect("connect");
    sqlx::migrate::Migrator::new(aside.path().to_path_buf())
        .await
        .expect("migrator")
        .run(&pool)
        .await
        .expect("the previous release's migrations");
    pool
}

async fn exec(pool: &AnyPool, sql: &str, binds: &[Bind]) {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = match b {
            Bind::I(v) => q.bind(*v),
            Bind::T(v) => q.bind(v.clone()),
            Bind::N => q.bind(None::<String>),
        };
    }
    q.execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

enum Bind {
    I(i64),
    T(String),
    N,
}
use Bind::{I, N, T};

fn t(s: &str) -> Bind {
    T(s.to_owned())
}

const AT: &str = "2026-12-01T09:00:00Z";
const RITA_TOKEN: &str = "kks_previous-release-token-of-rita-0123456789";

/// Fills the old schema as the previous release wrote it.
async fn fill(pool: &AnyPool, postgres: bool) -> usize {
    for (id, name, roles) in [
        (1, "admin", vec!["admin"]),
        (2, "rita", vec!["researcher"]),
        (3, "annie", vec!["annotator"]),
        (4, "nobody", vec![]),
    ] {
        let hash = hash_password(&format!("{name}-password")).expect("hash");
        exec(
            pool,
            "INSERT INTO users (id, username, password_hash, disabled, created_at) \
             VALUES ($1, $2, $3, 0, $4)",
            &[I(id), t(name), T(hash), t(AT)],
        )
        .await;
        for role in roles {
            exec(
                pool,
                "INSERT INTO user_roles (user_id, role) VALUES ($1, $2)",
                &[I(id), t(role)],
            )
            .await;
        }
    }
    exec(
        pool,
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at, \
         last_seen_at) VALUES ($1, 2, 'csrf', $2, '2099-01-01T00:00:00Z', $2)",
        &[T(digest("old-session")), t(AT)],
    )
    .await;
    exec(
        pool,
        "INSERT INTO api_tokens (id, user_id, name, token_hash, created_at) \
         VALUES (1, 2, 'notebook', $1, $2)",
        &[T(digest(RITA_TOKEN)), t(AT)],
    )
    .await;
    let questions = kokushi_backend::import::read_exam_set(&[kokushi_tests::mini_exam_path()])
        .expect("fixture exam");
    exec(
        pool,
        "INSERT INTO exam_sets (id, name, content_hash, created_at, uploaded_by) \
         VALUES (1, 'mini before projects', 'hash-1', $1, 2)",
        &[t(AT)],
    )
    .await;
    for (i, q) in questions.iter().enumerate() {
        exec(
            pool,
            "INSERT INTO questions (exam_set_id, position, problem_id, text_only, points, body) \
             VALUES (1, $1, $2, $3, $4, $5)",
            &[
                I(i as i64),
                T(q.problem_id.clone()),
                I(i64::from(q.text_only)),
                I(i64::from(q.points)),
                T(serde_json::to_string(q).expect("json")),
            ],
        )
        .await;
    }
    let pack = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rules/medical-116.json"),
    )
    .expect("a built-in pack");
    exec(
        pool,
        "INSERT INTO exam_set_rule_packs (id, exam_set_id, exam, version, body, created_by, \
         created_at) VALUES (1, 1, 'medical-116', 2, $1, 2, $2)",
        &[T(pack), t(AT)],
    )
    .await;
    let asked: Vec<_> = questions.iter().filter(|q| q.text_only).take(4).collect();
    let settings = EvalSettings::new(PromptFormat::ChatmlJa, 8);
    exec(
        pool,
        "INSERT INTO runs (id, exam_set_id, model, prompt_format, question_limit, \
         max_new_tokens, status, total, created_at, finished_at, priority, created_by, scoring, \
         eval_settings, tally_answered, tally_correct, tally_unparsed, tally_points, \
         tally_points_possible) \
         VALUES (1, 1, 'tiny.gguf', 'chatml_ja', 4, 8, 'succeeded', $1, $2, $2, 'normal', 2, \
                 'generation', $3, $1, 0, 0, 0, $4)",
        &[
            I(asked.len() as i64),
            t(AT),
            T(serde_json::to_string(&settings).expect("json")),
            I(asked.iter().map(|q| i64::from(q.points)).sum()),
        ],
    )
    .await;
    for (i, q) in asked.iter().enumerate() {
        exec(
            pool,
            "INSERT INTO run_questions (run_id, position, problem_id) VALUES (1, $1, $2)",
            &[I(i as i64), T(q.problem_id.clone())],
        )
        .await;
        let extracted = kokushi_shared::extract::extract("z", &q.choices);
        exec(
            pool,
            "INSERT INTO answers (run_id, problem_id, raw_output, extracted, rules_version, \
             correct, unparsed, points, prompt_tokens, generated_tokens, latency_ms, created_at, \
             generated) VALUES (1, $1, 'z', $2, 'letters-v1', 0, $3, $4, 10, 1, 5, $5, 1)",
            &[
                T(q.problem_id.clone()),
                T(serde_json::to_string(&extracted).expect("json")),
                I(i64::from(extracted.is_unparsed())),
                I(i64::from(q.points)),
                t(AT),
            ],
        )
        .await;
    }
    exec(
        pool,
        "INSERT INTO jobs (id, run_id, kind, status, created_at, updated_at, attempt) \
         VALUES (1, 1, 'eval', 'succeeded', $1, $1, 1)",
        &[t(AT)],
    )
    .await;
    exec(
        pool,
        "INSERT INTO tunings (id, adapter, base_model, data_exam_set_id, prompt_format, preset, \
         plan, steps, status, priority, created_by, created_at, finished_at, \
         final_validation_loss, train_examples, validation_examples) \
         VALUES (1, 'mini-lora', 'tiny.gguf', 1, 'chatml_ja', 'small', '{}', 2, 'succeeded', \
                 'normal', 2, $1, $1, 1.5, 8, 1)",
        &[t(AT)],
    )
    .await;
    for step in [1_i64, 2] {
        exec(
            pool,
            "INSERT INTO tuning_points (tuning_id, step, validation, loss) \
             VALUES (1, $1, 0, 2.5)",
            &[I(step)],
        )
        .await;
    }
    exec(
        pool,
        "INSERT INTO jobs (id, tuning_id, kind, status, created_at, updated_at, attempt) \
         VALUES (2, 1, 'tune', 'succeeded', $1, $1, 1)",
        &[t(AT)],
    )
    .await;
    let graded = asked[0].problem_id.clone();
    exec(
        pool,
        "INSERT INTO grading_tasks (id, name, exam_set_id, selection, sample_size, seed, overlap, \
         created_by, created_at) VALUES (1, 'second opinion', 1, 'all', NULL, 7, 1, 2, $1)",
        &[t(AT)],
    )
    .await;
    exec(
        pool,
        "INSERT INTO grading_task_runs (task_id, run_id) VALUES (1, 1)",
        &[],
    )
    .await;
    exec(
        pool,
        "INSERT INTO grading_items (id, task_id, run_id, problem_id) VALUES (1, 1, 1, $1)",
        &[T(graded)],
    )
    .await;
    exec(
        pool,
        "INSERT INTO grading_assignments (id, task_id, item_id, annotator_id, position, handle) \
         VALUES (1, 1, 1, 3, 0, 424242)",
        &[],
    )
    .await;
    exec(
        pool,
        "INSERT INTO grades (assignment_id, version, verdict, letters, rationale, flags, comment, \
         created_by, created_at) VALUES (1, 1, 'correct', '', NULL, '', 'looks right', 3, $1)",
        &[t(AT)],
    )
    .await;
    exec(
        pool,
        "INSERT INTO adjudications (item_id, version, verdict, letters, rationale, flags, \
         comment, created_by, created_at) \
         VALUES (1, 1, 'incorrect', '', NULL, '', 'the gold says otherwise', 2, $1)",
        &[t(AT)],
    )
    .await;
    exec(
        pool,
        "INSERT INTO audit_log (id, at, actor_id, action, task_id, item_id, before_value, \
         after_value) VALUES (1, $1, 2, 'task_created', 1, NULL, NULL, $2)",
        &[t(AT), N],
    )
    .await;
    // Explicit ids leave PostgreSQL's sequences behind: the previous release's own inserts
    // never did, so move them on as its data would have.
    if postgres {
        for table in [
            "users",
            "api_tokens",
            "exam_sets",
            "exam_set_rule_packs",
            "runs",
            "jobs",
            "tunings",
            "grading_tasks",
            "grading_items",
            "grading_assignments",
            "audit_log",
        ] {
            exec(
                pool,
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                     (SELECT MAX(id) FROM {table}))"
                ),
                &[],
            )
            .await;
        }
    }
    asked.len()
}

async fn counts(pool: &AnyPool) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for table in TABLES.into_iter().chain(["audit_log"]) {
        let n: i64 = sqlx::Row::get(
            &sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
                .fetch_one(pool)
                .await
                .expect("count"),
            "n",
        );
        out.push((table, n));
    }
    out
}

async fn upgrade_keeps_everything(database_url: String) {
    // Arrange: the previous release's database, with its data.
    let old = previous_release(&database_url).await;
    let answered = fill(&old, database_url.starts_with("postgres")).await;
    let before = counts(&old).await;
    assert!(before.iter().all(|(_, n)| *n > 0), "{before:?}");
    old.close().await;

    // Act: the server starts on it (and migrates it).
    let store = fixture_model_store().expect("fixture model");
    let mut settings = Settings::embedded(database_url.clone(), store.path());
    settings.embedded_worker = false;
    let app = TestApp::spawn(settings).await.expect("server starts");

    // Assert: every row is still there; the project columns are filled.
    sqlx::any::install_default_drivers();
    let url = if database_url.starts_with("sqlite") {
        format!("{database_url}?mode=rw")
    } else {
        database_url.clone()
    };
    let pool = AnyPool::connect(&url).await.expect("connect");
    let after = counts(&pool).await;
    for ((table, was), (_, now)) in before.iter().zip(&after) {
        // The test server adds its own API token for the admin.
        let added = i64::from(*table == "api_tokens");
        assert_eq!(*now, was + added, "rows of {table}");
    }
    for table in ["exam_sets", "runs", "tunings", "grading_tasks"] {
        let unassigned: i64 = sqlx::Row::get(
            &sqlx::query(&format!(
                "SELECT COUNT(*) AS n FROM {table} WHERE project_id IS NULL OR project_id <> \
                 (SELECT id FROM projects WHERE slug = 'default')"
            ))
            .fetch_one(&pool)
            .await
            .expect("count"),
            "n",
        );
        assert_eq!(unassigned, 0, "{table} rows outside the default project");
    }
    pool.close().await;

    // Each object, through the API, as the admin (who owns the default project).
    let sets: Vec<ExamSetSummary> = app.get_json("/api/exam-sets").await.expect("sets");
    assert!(
        sets.iter()
            .any(|s| s.id == 1 && s.name == "mini before projects" && s.version == 1),
        "{sets:?}"
    );
    let board: Vec<RunSummary> = app.get_json("/api/leaderboard").await.expect("board");
    let run = board.iter().find(|r| r.id == 1).expect("the old run");
    assert_eq!(run.tally.answered as usize, answered);
    assert_eq!(run.project, "Default project");
    // Its adjudicated answer (wrong by both, automatic and human), from the decisions computed
    // for it after the upgrade (the migration marks runs graded before as stale).
    let human = run.human.expect("the old run's human-adjusted accuracy");
    assert_eq!((human.resolved, human.changed, human.correct), (1, 0, 0));
    let detail: RunDetail = app.get_json("/api/runs/1").await.expect("run");
    assert_eq!(
        detail
            .questions
            .iter()
            .filter(|q| q.answer.is_some())
            .count(),
        answered
    );
    // Under a filter, from the facet cells computed for the old run on the first read (it
    // had none), in SQL on this database.
    let filtered: Vec<RunSummary> = app
        .get_json("/api/leaderboard?blocks=A")
        .await
        .expect("filtered board");
    let run = filtered.iter().find(|r| r.id == 1).expect("the old run");
    let in_a = detail
        .questions
        .iter()
        .filter(|q| q.problem_id.starts_with("901A"))
        .collect::<Vec<_>>();
    assert_eq!(run.total as usize, in_a.len());
    assert_eq!(
        run.tally.answered as usize,
        in_a.iter().filter(|q| q.answer.is_some()).count()
    );
    // A page of its questions: the first two, of how many there are.
    let page = app
        .client
        .get(app.url("/api/runs/1/questions?limit=2"))
        .send()
        .await
        .expect("questions");
    let total = page
        .headers()
        .get("x-total-count")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let first_two: Vec<kokushi_shared::api::QuestionResult> =
        page.json().await.expect("questions body");
    assert_eq!(total, Some(detail.questions.len().to_string()));
    assert_eq!(first_two, detail.questions[..2]);
    let tunings: Vec<TuningSummary> = app.get_json("/api/tunings").await.expect("tunings");
    assert!(
        tunings
            .iter()
            .any(|t| t.id == 1 && t.adapter == "mini-lora")
    );
    let tuning: TuningDetail = app.get_json("/api/tunings/1").await.expect("tuning");
    assert_eq!(tuning.points.len(), 2);
    let task: GradingTaskDetail = app
        .get_json("/api/grading/tasks/1")
        .await
        .expect("grading task");
    let item = task.items.iter().find(|i| i.item_id == 1).expect("item");
    assert_eq!(item.grades.len(), 1, "{item:?}");
    assert!(item.adjudication.is_some(), "{item:?}");
    let audit = app
        .client
        .get(app.url("/api/grading/audit?task=1&format=jsonl"))
        .send()
        .await
        .expect("audit")
        .text()
        .await
        .expect("body");
    assert!(audit.contains("task_created"), "{audit}");
    let rules: ExamSetRules = app.get_json("/api/exam-sets/1/rules").await.expect("rules");
    assert!(
        rules.versions.iter().any(|v| v.version == 2),
        "{:?}",
        rules.versions
    );

    // The old token still works, in the default project, with the role its account had.
    let me: Me = app
        .anonymous
        .get(app.url("/api/auth/me"))
        .bearer_auth(RITA_TOKEN)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("me body");
    let project = me.project.expect("rita's token acts in a project");
    assert_eq!(
        (project.slug.as_str(), project.role),
        ("default", ProjectRole::Researcher)
    );
    let rita_board: Vec<RunSummary> = app
        .anonymous
        .get(app.url("/api/leaderboard"))
        .bearer_auth(RITA_TOKEN)
        .send()
        .await
        .expect("board")
        .json()
        .await
        .expect("board body");
    assert!(rita_board.iter().any(|r| r.id == 1));

    // The annotator still finds her assignment; the account with no role sees no project.
    let (_, annie) = app
        .sign_in("annie", "annie-password")
        .await
        .expect("sign-in");
    let annie = annie.expect("annie signs in");
    let mine: Vec<MyTask> = app
        .anonymous
        .get(app.url("/api/grading/mine"))
        .header("Cookie", &annie.cookie)
        .send()
        .await
        .expect("mine")
        .json()
        .await
        .expect("mine body");
    assert_eq!(mine.len(), 1, "{mine:?}");
    let (_, nobody) = app
        .sign_in("nobody", "nobody-password")
        .await
        .expect("sign-in");
    let nobody = nobody.expect("nobody signs in");
    let me: Me = app
        .anonymous
        .get(app.url("/api/auth/me"))
        .header("Cookie", &nobody.cookie)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("me body");
    assert!(me.project.is_none(), "{me:?}");
    app.stop().await.expect("clean stop");
}

on_both_databases!(upgrade_keeps_everything => upgrade_from_the_previous_release_sqlite,
    upgrade_from_the_previous_release_postgres);
