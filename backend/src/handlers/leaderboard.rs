//! The leaderboard, whole or under a filter.
//!
//! Unfiltered, every row is read as stored (the run's tally, kept up to date as answers
//! arrive, and the verdicts and text metrics written when it succeeded). Under a filter —
//! exam years, blocks, section, specialty, text-only — each row adds up the run's stored cells
//! (`db::cells`: its results by question facet, computed by `shared::score` under the run's
//! rule packs) that the filter keeps, so the numbers are those `kokushi score` would give for
//! that subset without scoring any run again per request. Pass/fail stays only for a filter
//! on years alone: the exam's criteria judge whole years, not a block or a specialty.

use std::collections::BTreeSet;

use actix_web::{HttpRequest, HttpResponse, web};
#[cfg(test)]
use kokushi_shared::Question;
use kokushi_shared::api::{LeaderboardQuery, RunSummary};
use kokushi_shared::exam::Section;

use crate::db::Facets;
use crate::db::cells::{CellCounts, CellFilter};
use crate::db::runs::Board;
use crate::error::ApiError;
use crate::page::{Page, PageQuery};
use crate::state::{AppState, Lookup};

/// Which questions a filtered leaderboard scores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub years: Vec<u16>,
    pub blocks: Vec<String>,
    pub section: Option<Section>,
    pub specialty: Option<String>,
    pub text_only: bool,
}

impl Filter {
    /// The filter a query asks for; `None` when it asks for none. A value that cannot be read
    /// is refused with the parameter and the value named.
    pub fn parse(query: &LeaderboardQuery) -> Result<Option<Self>, String> {
        let list = |value: &Option<String>| -> Vec<String> {
            value
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let mut years = list(&query.years)
            .iter()
            .map(|y| {
                y.parse::<u16>()
                    .ok()
                    .filter(|y| (1900..=2999).contains(y))
                    .ok_or_else(|| format!("years: {y:?} is not a year such as 2022"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        years.sort_unstable();
        years.dedup();
        let mut blocks = list(&query.blocks)
            .into_iter()
            .map(|b| {
                let upper = b.to_uppercase();
                if upper.chars().count() == 1 && upper.chars().all(|c| c.is_ascii_uppercase()) {
                    Ok(upper)
                } else {
                    Err(format!("blocks: {b:?} is not a block letter such as A"))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        blocks.sort_unstable();
        blocks.dedup();
        let section = match query.section.as_deref().map(str::trim) {
            None | Some("") => None,
            Some("required") => Some(Section::Required),
            Some("general") => Some(Section::General),
            Some(other) => {
                return Err(format!(
                    "section: {other:?} is neither `required` nor `general`"
                ));
            }
        };
        let specialty = query
            .specialty
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let filter = Filter {
            years,
            blocks,
            section,
            specialty,
            text_only: query.text_only.unwrap_or(false),
        };
        Ok((filter != Filter::default()).then_some(filter))
    }

    /// Whether the filter keeps `q`: the tests' reference for the SQL the request path filters
    /// stored cells with ([`CellFilter::conditions`]).
    #[cfg(test)]
    fn matches(&self, q: &Question) -> bool {
        (self.years.is_empty() || q.meta.year.is_some_and(|y| self.years.contains(&y)))
            && (self.blocks.is_empty()
                || q.meta
                    .block
                    .as_ref()
                    .is_some_and(|b| self.blocks.contains(b)))
            && self.section.is_none_or(|s| q.meta.section == Some(s))
            && self
                .specialty
                .as_ref()
                .is_none_or(|s| q.meta.specialty.as_ref() == Some(s))
            && (!self.text_only || q.text_only)
    }

    /// Whether only years are chosen (so each kept year is whole and its verdict holds).
    fn years_only(&self) -> bool {
        self.blocks.is_empty()
            && self.section.is_none()
            && self.specialty.is_none()
            && !self.text_only
    }

    /// One string per distinct filter, for the response cache.
    fn key(&self) -> String {
        format!("{self:?}")
    }

    /// The same filter over stored cells.
    pub fn cells(&self) -> CellFilter<'_> {
        CellFilter {
            years: &self.years,
            blocks: &self.blocks,
            section: self.section,
            specialty: self.specialty.as_deref(),
            text_only: self.text_only,
        }
    }
}

/// `run`'s row under `filter`, from the sums of the cells the filter keeps.
pub fn filtered_row(mut run: RunSummary, kept: CellCounts, filter: &Filter) -> RunSummary {
    run.total = kept.questions;
    run.accuracy_interval = kokushi_shared::stats::wilson_interval(
        u64::from(kept.tally.correct),
        u64::from(kept.tally.answered),
        0.95,
    );
    run.tally = kept.tally;
    run.metrics = (kept.metrics.questions > 0).then_some(kept.metrics);
    if filter.years_only() {
        run.years
            .retain(|v| v.year.is_some_and(|y| filter.years.contains(&y)));
    } else {
        run.years.clear();
    }
    run
}

/// One page of runs, newest first, each scored on the questions `filter` keeps: the sums of
/// its stored cells. A run whose cells are stale (it is still answering, or its rule packs
/// changed and the background refresh has not reached it) is scored again first.
pub async fn filtered(
    state: &AppState,
    board: Board,
    filter: &Filter,
    page: Page,
) -> Result<Vec<RunSummary>, ApiError> {
    let runs = state.db.leaderboard(board, Some(page)).await?;
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let stale: Vec<i64> = state
        .db
        .cell_stamps(Some(&ids))
        .await?
        .into_iter()
        .filter_map(|(id, fresh)| (!fresh).then_some(id))
        .collect();
    if !stale.is_empty() {
        // Scoring runs again is the costliest thing the API does: a few at a time.
        let _turn = state
            .rescoring
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(format!("the scoring queue closed: {e}")))?;
        for id in stale {
            crate::ingest::store_cells(&state.db, id)
                .await
                .map_err(|e| ApiError::Internal(format!("scoring run {id} again: {e}")))?;
        }
    }
    let sums = state.db.filtered_cells(&ids, &filter.cells()).await?;
    let mut rows: Vec<RunSummary> = runs
        .into_iter()
        .map(|run| {
            let kept = sums.get(&run.id).copied().unwrap_or_default();
            filtered_row(run, kept, filter)
        })
        .collect();
    crate::grading::attach_human(&state.db, &mut rows, Some(&filter.cells())).await?;
    Ok(rows)
}

/// One page of the leaderboard's rows: as stored, or scored again under `filter`.
async fn rows(
    state: &AppState,
    board: Board,
    filter: Option<&Filter>,
    page: Page,
) -> Result<Vec<RunSummary>, ApiError> {
    match filter {
        None => {
            let mut runs = state.db.leaderboard(board, Some(page)).await?;
            crate::grading::attach_human(&state.db, &mut runs, None).await?;
            Ok(runs)
        }
        Some(filter) => filtered(state, board, filter, page).await,
    }
}

/// The board a query's `scope` names: the caller's project's (default), or the portal's
/// published runs.
fn board_of(caller: &crate::auth::Principal, scope: Option<&str>) -> Result<Board, ApiError> {
    match scope.unwrap_or("project") {
        "project" => Ok(Board::Project(caller.scope()?.project)),
        "portal" => Ok(Board::Portal),
        other => Err(ApiError::BadRequest(format!(
            "unknown scope {other:?}; known: project, portal"
        ))),
    }
}

/// The cache key of a board's first page under a filter.
fn cache_key(board: Board, filter: Option<&Filter>) -> String {
    let board = match board {
        Board::Project(p) => format!("project {p}"),
        Board::Portal => "portal".to_owned(),
        Board::All => "all".to_owned(),
    };
    format!("{board}|{}", filter.map(Filter::key).unwrap_or_default())
}

/// `GET /api/leaderboard[?scope=project|portal][&years=…&blocks=…&section=…&specialty=…
/// &text_only=true][&limit=N&offset=M]`: one page of runs, newest first (`crate::page`): the
/// project's runs, or (`scope=portal`) the runs every project has published. A filter may name
/// only years, blocks and specialties that the board's exam sets hold (400 otherwise, with
/// what they hold): each new filter scores every run of the page again, so a made-up value
/// must not cost that.
pub async fn leaderboard(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<LeaderboardQuery>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page.page(crate::page::LEADERBOARD)?;
    let board = board_of(&caller, query.scope.as_deref())?;
    let filter = checked_filter(&state, board, &query).await?;
    // Only first pages are kept (what every open page polls); a caller paging through cannot
    // push them out.
    let key = (page.offset == 0 && page.limit == crate::page::LEADERBOARD.default)
        .then(|| cache_key(board, filter.as_ref()));
    let (body, total) = match key.as_deref().map(|k| state.leaderboard.lookup(k)) {
        Some(Lookup::Hit(body, total)) => (body, total),
        Some(Lookup::Stale(body, total, turn)) => {
            // Served as it was; rebuilt once, off this request.
            let (state, filter) = (state.clone(), filter.clone());
            actix_web::rt::spawn(async move {
                match body_of(&state, board, filter.as_ref(), page).await {
                    Ok((body, total)) => {
                        if let Some(key) = key {
                            state.leaderboard.put(key, body, total);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "rebuilding the leaderboard failed"),
                }
                drop(turn);
            });
            (body, total)
        }
        building => {
            // `Rebuild`'s turn is held until the new body is stored.
            let _turn = building;
            let (body, total) = body_of(&state, board, filter.as_ref(), page).await?;
            if let Some(key) = key {
                state.leaderboard.put(key, body.clone(), total);
            }
            (body, total)
        }
    };
    Ok(page.annotate(
        HttpResponse::Ok()
            .content_type(actix_web::http::header::ContentType::json())
            .body(body),
        &req,
        total,
    ))
}

/// A page of the board as JSON, and how many rows the board has.
async fn body_of(
    state: &AppState,
    board: Board,
    filter: Option<&Filter>,
    page: Page,
) -> Result<(web::Bytes, u64), ApiError> {
    let total = state.db.run_count(board).await?;
    let rows = rows(state, board, filter, page).await?;
    let body = serde_json::to_vec(&rows)
        .map_err(|e| ApiError::Internal(format!("encoding the leaderboard: {e}")))?;
    Ok((web::Bytes::from(body), total))
}

/// The filter a query asks for, refused (400) when it names a value no exam set holds.
async fn checked_filter(
    state: &AppState,
    board: Board,
    query: &LeaderboardQuery,
) -> Result<Option<Filter>, ApiError> {
    let filter = Filter::parse(query).map_err(ApiError::BadRequest)?;
    if let Some(filter) = &filter {
        check_present(&state.db.facets(board).await?, filter)?;
    }
    Ok(filter)
}

/// `GET /api/leaderboard/export`'s query: the format and the leaderboard's filter (written out,
/// not `#[serde(flatten)]`: flattened, a query string's `text_only=true` is text, not a bool).
#[derive(Debug, serde::Deserialize)]
pub struct ExportQuery {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    years: Option<String>,
    #[serde(default)]
    blocks: Option<String>,
    #[serde(default)]
    section: Option<String>,
    #[serde(default)]
    specialty: Option<String>,
    #[serde(default)]
    text_only: Option<bool>,
    #[serde(default)]
    scope: Option<String>,
}

/// `GET /api/leaderboard/export?format=csv[&years=…][&limit=N&offset=M]`: the rows the
/// leaderboard shows for the same filter and page, as CSV.
pub async fn export(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<ExportQuery>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page.page(crate::page::LEADERBOARD)?;
    let query = query.into_inner();
    if let Some(other) = query.format.as_deref().filter(|f| *f != "csv") {
        return Err(ApiError::BadRequest(format!(
            "unknown format {other:?}; known: csv"
        )));
    }
    let board = board_of(&caller, query.scope.as_deref())?;
    let filter = checked_filter(
        &state,
        board,
        &LeaderboardQuery {
            years: query.years,
            blocks: query.blocks,
            section: query.section,
            specialty: query.specialty,
            text_only: query.text_only,
            scope: None,
        },
    )
    .await?;
    let total = state.db.run_count(board).await?;
    let rows = rows(&state, board, filter.as_ref(), page).await?;
    Ok(page.annotate(
        super::download(
            crate::export::leaderboard_csv(&rows),
            "text/csv; charset=utf-8",
            "kokushi-leaderboard.csv",
        ),
        &req,
        total,
    ))
}

/// Refuses (400) a filter naming a year, block or specialty no exam set holds, listing those
/// they do hold.
pub fn check_present(facets: &Facets, filter: &Filter) -> Result<(), ApiError> {
    fn listed<T: ToString>(values: &BTreeSet<T>) -> String {
        let mut text = values
            .iter()
            .take(50)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if values.len() > 50 {
            text.push_str(", …");
        }
        if text.is_empty() {
            "none".to_owned()
        } else {
            text
        }
    }
    if let Some(y) = filter.years.iter().find(|y| !facets.years.contains(y)) {
        return Err(ApiError::BadRequest(format!(
            "years: no exam set holds {y}; they hold {}",
            listed(&facets.years)
        )));
    }
    if let Some(b) = filter.blocks.iter().find(|b| !facets.blocks.contains(*b)) {
        return Err(ApiError::BadRequest(format!(
            "blocks: no exam set holds block {b}; they hold {}",
            listed(&facets.blocks)
        )));
    }
    if let Some(s) = filter
        .specialty
        .as_ref()
        .filter(|s| !facets.specialties.contains(*s))
    {
        return Err(ApiError::BadRequest(format!(
            "specialty: no exam set holds {}; they hold {}",
            crate::auth::for_log(s),
            listed(&facets.specialties)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> LeaderboardQuery {
        let mut q = LeaderboardQuery::default();
        for (k, v) in pairs {
            let text = Some((*v).to_owned());
            match *k {
                "years" => q.years = text,
                "blocks" => q.blocks = text,
                "section" => q.section = text,
                "specialty" => q.specialty = text,
                "text_only" => q.text_only = Some(*v == "true"),
                _ => unreachable!(),
            }
        }
        q
    }

    #[test]
    fn an_empty_query_is_no_filter_and_lists_are_normalised() {
        assert_eq!(Filter::parse(&LeaderboardQuery::default()), Ok(None));
        assert_eq!(Filter::parse(&query(&[("years", " , ")])), Ok(None));
        let f = Filter::parse(&query(&[("years", "2022, 2021,2022"), ("blocks", "d,A")]))
            .expect("valid")
            .expect("a filter");
        assert_eq!(f.years, [2021, 2022]);
        assert_eq!(f.blocks, ["A", "D"]);
    }

    #[test]
    fn a_bad_value_names_its_parameter_and_value() {
        let e = Filter::parse(&query(&[("years", "2022,twenty")])).expect_err("bad year");
        assert!(e.starts_with("years:") && e.contains("\"twenty\""), "{e}");
        let e = Filter::parse(&query(&[("blocks", "AB")])).expect_err("bad block");
        assert!(e.starts_with("blocks:") && e.contains("\"AB\""), "{e}");
        let e = Filter::parse(&query(&[("section", "clinical")])).expect_err("bad section");
        assert!(e.starts_with("section:") && e.contains("clinical"), "{e}");
    }

    /// The reference a filtered row must equal: the run scored again with `shared::score` on
    /// the questions the filter keeps (what the leaderboard computed per request before cells).
    fn rescored(
        run: RunSummary,
        questions: &[Question],
        predictions: &std::collections::BTreeMap<String, kokushi_shared::score::Reply>,
        filter: &Filter,
        packs: &[kokushi_shared::rules::RulePack],
    ) -> RunSummary {
        let kept: Vec<Question> = questions
            .iter()
            .filter(|q| filter.matches(q))
            .cloned()
            .collect();
        let options = kokushi_shared::score::ScoreOptions {
            resamples: 0,
            examinees: false,
            ..Default::default()
        };
        let report = kokushi_shared::score::score_with(&kept, predictions, &options, packs);
        let (tally, metrics) =
            crate::scoring::tally_and_metrics(&report.questions, &report.unscorable);
        let counts = CellCounts {
            questions: u32::try_from(kept.len()).unwrap_or(u32::MAX),
            tally,
            metrics,
        };
        filtered_row(run, counts, filter)
    }

    /// Whether `filter` keeps the cell `key` (what `Db::filtered_cells` asks in SQL).
    fn keeps(filter: &Filter, key: &crate::db::cells::CellKey) -> bool {
        (filter.years.is_empty() || key.year.is_some_and(|y| filter.years.contains(&y)))
            && (filter.blocks.is_empty()
                || key
                    .block
                    .as_ref()
                    .is_some_and(|b| filter.blocks.contains(b)))
            && filter.section.is_none_or(|s| key.section == Some(s))
            && filter
                .specialty
                .as_ref()
                .is_none_or(|s| key.specialty.as_ref() == Some(s))
            && (!filter.text_only || key.text_only)
    }

    #[test]
    fn summed_cells_equal_scoring_the_kept_questions_again() {
        use kokushi_shared::exam::{Gold, QuestionMeta};
        // Two real exams whose built-in packs exclude questions and accept other answers, so
        // that the packs change what is counted; numeric, unpublished and unanswered questions.
        let packs = kokushi_shared::rules::built_in().to_vec();
        let mut questions = Vec::new();
        for pack in packs.iter().filter(|p| p.exam == "116" || p.exam == "117") {
            let mut ids: Vec<String> = pack
                .excluded
                .iter()
                .map(|e| e.problem_id.clone())
                .chain(pack.rulings.iter().map(|r| r.problem_id.clone()))
                .collect();
            for block in ["A", "B", "C", "D", "E", "F"] {
                for n in 1..=12 {
                    ids.push(format!("{}{block}{n}", pack.exam));
                }
            }
            ids.sort();
            ids.dedup();
            for (i, id) in ids.into_iter().enumerate() {
                let block = id[pack.exam.len()..pack.exam.len() + 1].to_owned();
                let gold = match i % 9 {
                    7 => Gold::Numeric {
                        value: "26".to_owned(),
                    },
                    8 => Gold::Unpublished,
                    _ => Gold::Letters {
                        letters: vec![['a', 'b', 'c'][i % 3]],
                    },
                };
                let choices = if matches!(gold, Gold::Numeric { .. }) {
                    Vec::new()
                } else {
                    ["心筋梗塞", "肺塞栓症", "大動脈解離", "気胸", "心膜炎"]
                        .map(str::to_owned)
                        .to_vec()
                };
                questions.push(Question {
                    problem_id: id,
                    text: "どれか。".to_owned(),
                    choices,
                    gold,
                    points: 1 + u32::try_from(i % 3).unwrap_or(0),
                    text_only: i % 4 != 0,
                    meta: QuestionMeta {
                        exam: Some(pack.exam.clone()),
                        year: Some(pack.year),
                        section: Some(if block == "B" || block == "E" {
                            Section::Required
                        } else {
                            Section::General
                        }),
                        block: Some(block),
                        specialty: (i % 5 != 0).then(|| ["循環器", "腎臓"][i % 2].to_owned()),
                        ..QuestionMeta::default()
                    },
                });
            }
        }
        assert!(questions.len() > 100, "{} questions", questions.len());
        // Replies: right, wrong, unreadable, the choice's text, a number, none.
        let predictions: std::collections::BTreeMap<String, kokushi_shared::score::Reply> =
            questions
                .iter()
                .enumerate()
                .filter_map(|(i, q)| {
                    let reply = match i % 6 {
                        0 => "a".to_owned(),
                        1 => "b".to_owned(),
                        2 => "わかりません".to_owned(),
                        3 => q
                            .choices
                            .first()
                            .cloned()
                            .unwrap_or_else(|| "26".to_owned()),
                        4 => "26".to_owned(),
                        _ => return None,
                    };
                    Some((q.problem_id.clone(), reply.into()))
                })
                .collect();
        let cells = crate::scoring::cells(&questions, &predictions, &packs);
        let run = RunSummary {
            years: vec![kokushi_shared::api::YearVerdict {
                exam: Some("116".to_owned()),
                year: Some(2022),
                questions: 1,
                accuracy: 0.0,
                points: 0,
                points_max: 0,
                pass: None,
                provisional: false,
                rules_version: None,
            }],
            ..serde_json::from_value(serde_json::json!({
                "id": 1, "exam_set": "s", "model": "m", "prompt_format": "chatml_ja",
                "status": "succeeded", "total": 0, "tally": {"answered": 0, "correct": 0,
                "parse_failures": 0, "points": 0, "points_possible": 0},
                "created_at": "", "error": null
            }))
            .expect("a run summary")
        };
        let filters = [
            query(&[("years", "2022")]),
            query(&[("years", "2022,2023")]),
            query(&[("blocks", "A")]),
            query(&[("blocks", "b,E")]),
            query(&[("section", "required")]),
            query(&[("section", "general"), ("text_only", "true")]),
            query(&[("specialty", "循環器")]),
            query(&[("specialty", "腎臓"), ("blocks", "C,D"), ("years", "2023")]),
            query(&[("text_only", "true")]),
            query(&[("years", "2031")]),
        ];
        let mut differed = 0;
        for q in &filters {
            let filter = Filter::parse(q).expect("valid").expect("a filter");
            let kept = crate::db::cells::total(
                cells
                    .iter()
                    .filter(|(key, _)| keeps(&filter, key))
                    .map(|(_, c)| *c),
            );
            let from_cells = filtered_row(run.clone(), kept, &filter);
            let again = rescored(run.clone(), &questions, &predictions, &filter, &packs);
            assert_eq!(
                serde_json::to_value(&from_cells).expect("json"),
                serde_json::to_value(&again).expect("json"),
                "{filter:?}"
            );
            differed += usize::from(from_cells.tally != run.tally);
        }
        assert!(differed >= 8, "the filters keep different questions");
        // The packs matter: scored without them, the whole set gives another tally.
        let all = crate::db::cells::total(cells.values().copied());
        let bare = crate::db::cells::total(
            crate::scoring::cells(&questions, &predictions, &[])
                .values()
                .copied(),
        );
        assert_ne!(all.tally, bare.tally, "the built-in packs change the count");
    }
}
