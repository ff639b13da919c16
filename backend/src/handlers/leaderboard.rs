//! The leaderboard, whole or under a filter.
//!
//! Unfiltered, every row is read as stored (the run's tally, kept up to date as answers
//! arrive, and the verdicts and text metrics written when it succeeded). Under a filter —
//! exam years, blocks, section, specialty, text-only — every run is scored again with
//! `shared::score` on the questions the filter keeps, so the numbers are those `kokushi score`
//! would give for that subset. Pass/fail stays only for a filter on years alone: the exam's
//! criteria judge whole years, not a block or a specialty.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use actix_web::{HttpRequest, HttpResponse, web};
use kokushi_shared::Question;
use kokushi_shared::api::{LeaderboardQuery, RunSummary};
use kokushi_shared::exam::Section;
use kokushi_shared::score::{Reply, ScoreOptions};

use crate::db::Facets;
use crate::db::runs::Board;
use crate::error::ApiError;
use crate::page::{Page, PageQuery};
use crate::state::AppState;

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

    pub fn matches(&self, q: &Question) -> bool {
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
}

/// `run` scored again on the questions of `questions` that `filter` keeps.
pub fn rescore(
    mut run: RunSummary,
    questions: &[Question],
    predictions: &BTreeMap<String, Reply>,
    filter: &Filter,
    packs: &[kokushi_shared::rules::RulePack],
) -> RunSummary {
    let kept: Vec<Question> = questions
        .iter()
        .filter(|q| filter.matches(q))
        .cloned()
        .collect();
    let options = ScoreOptions {
        resamples: 0,
        examinees: false,
        ..ScoreOptions::default()
    };
    let report = kokushi_shared::score::score_with(&kept, predictions, &options, packs);
    let (tally, metrics) = crate::scoring::tally_and_metrics(&report.questions, &report.unscorable);
    run.total = u32::try_from(kept.len()).unwrap_or(u32::MAX);
    run.accuracy_interval = kokushi_shared::stats::wilson_interval(
        u64::from(tally.correct),
        u64::from(tally.answered),
        0.95,
    );
    run.tally = tally;
    run.metrics = (metrics.questions > 0).then_some(metrics);
    if filter.years_only() {
        run.years
            .retain(|v| v.year.is_some_and(|y| filter.years.contains(&y)));
    } else {
        run.years.clear();
    }
    run
}

/// One page of runs, newest first, each scored on the questions `filter` keeps.
pub async fn filtered(
    state: &AppState,
    board: Board,
    filter: &Filter,
    page: Page,
) -> Result<Vec<RunSummary>, ApiError> {
    // Scoring a page of runs again is the costliest thing the API does: a few at a time.
    let _turn = state
        .rescoring
        .acquire()
        .await
        .map_err(|e| ApiError::Internal(format!("the scoring queue closed: {e}")))?;
    let runs = state.db.leaderboard(board, Some(page)).await?;
    let mut rows = Vec::with_capacity(runs.len());
    // The questions each run keeps, for its human-adjusted accuracy on the same questions.
    let mut kept: HashMap<i64, HashSet<String>> = HashMap::new();
    // One run at a time: a run's questions and replies are the big part, so only one set is
    // held at once.
    for run in runs {
        let Some(crate::db::rule_packs::RunScoring {
            questions,
            predictions,
            rules,
        }) = state.db.run_scoring(run.id).await?
        else {
            continue; // deleted meanwhile
        };
        kept.insert(
            run.id,
            questions
                .iter()
                .filter(|q| filter.matches(q))
                .map(|q| q.problem_id.clone())
                .collect(),
        );
        let filter = filter.clone();
        let row = web::block(move || rescore(run, &questions, &predictions, &filter, &rules.packs))
            .await
            .map_err(|e| ApiError::Internal(format!("scoring the leaderboard: {e}")))?;
        rows.push(row);
    }
    crate::grading::attach_human(&state.db, &mut rows, Some(&kept)).await?;
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
    let total = state.db.run_count(board).await?;
    // Only first pages are kept (what every open page polls); a caller paging through cannot
    // push them out.
    let key = (page.offset == 0 && page.limit == crate::page::LEADERBOARD.default)
        .then(|| cache_key(board, filter.as_ref()));
    let body = match key.as_deref().and_then(|k| state.leaderboard.get(k)) {
        Some(body) => body,
        None => {
            let rows = rows(&state, board, filter.as_ref(), page).await?;
            let body = web::Bytes::from(
                serde_json::to_vec(&rows)
                    .map_err(|e| ApiError::Internal(format!("encoding the leaderboard: {e}")))?,
            );
            if let Some(key) = key {
                state.leaderboard.put(key, body.clone());
            }
            body
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
}
