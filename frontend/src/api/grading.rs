//! The human-grading endpoints (`/api/grading/…`), typed with `kokushi_shared::grading`.
//!
//! An annotator's calls (`mine`, `assignment`, `save_grade`) answer for any signed-in account;
//! the rest are for researchers and admins, and the server refuses them to anyone else.

use kokushi_shared::grading::{
    BlindItem, CreateGradingTask, GoldFlag, Grade, GradeInput, Grader, GradingItemDetail,
    GradingTaskDetail, GradingTaskSummary, MyQueue, MyTask,
};

use super::{get_json, post_json};
use crate::error::ApiError;

/// `GET /api/grading/mine`: the tasks assigned to me, with my progress.
pub async fn mine() -> Result<Vec<MyTask>, ApiError> {
    get_json("/api/grading/mine").await
}

/// `GET /api/grading/mine/{task_id}`: my items of a task, in my own order.
pub async fn my_queue(task_id: i64) -> Result<MyQueue, ApiError> {
    get_json(&format!("/api/grading/mine/{task_id}")).await
}

/// `GET /api/grading/assignments/{id}`: one item, blind.
pub async fn assignment(id: i64) -> Result<BlindItem, ApiError> {
    get_json(&format!("/api/grading/assignments/{id}")).await
}

/// `POST /api/grading/assignments/{id}/grade`: a new version of my grade (409 when the grade
/// changed since `expected_version`).
pub async fn save_grade(id: i64, body: &GradeInput, csrf: &str) -> Result<Grade, ApiError> {
    post_json(
        &format!("/api/grading/assignments/{id}/grade"),
        Some(body),
        csrf,
    )
    .await
}

/// `GET /api/grading/annotators`: who may be asked to grade.
pub async fn annotators() -> Result<Vec<Grader>, ApiError> {
    get_json("/api/grading/annotators").await
}

/// `GET /api/grading/tasks`.
pub async fn tasks() -> Result<Vec<GradingTaskSummary>, ApiError> {
    get_json("/api/grading/tasks").await
}

/// `POST /api/grading/tasks`.
pub async fn create_task(
    body: &CreateGradingTask,
    csrf: &str,
) -> Result<GradingTaskSummary, ApiError> {
    post_json("/api/grading/tasks", Some(body), csrf).await
}

/// `GET /api/grading/tasks/{id}`: progress, agreement and every item.
pub async fn task(id: i64) -> Result<GradingTaskDetail, ApiError> {
    get_json(&format!("/api/grading/tasks/{id}")).await
}

/// `GET /api/grading/tasks/{id}/judges`: the task's judge runs with their agreement and gate.
pub async fn judges(id: i64) -> Result<Vec<kokushi_shared::judge::JudgeRunDetail>, ApiError> {
    get_json(&format!("/api/grading/tasks/{id}/judges")).await
}

/// `GET /api/judge-prompts`: the built-in judge prompt and the project's versions.
pub async fn judge_prompts() -> Result<Vec<kokushi_shared::judge::JudgePrompt>, ApiError> {
    get_json("/api/judge-prompts").await
}

/// `POST /api/grading/tasks/{id}/judges`: queues a judge on the task.
pub async fn create_judge(
    id: i64,
    body: &kokushi_shared::judge::CreateJudgeRun,
    csrf: &str,
) -> Result<kokushi_shared::judge::JudgeRunDetail, ApiError> {
    post_json(&format!("/api/grading/tasks/{id}/judges"), Some(body), csrf).await
}

/// `POST /api/grading/tasks/{id}/judges/estimate`: what a judge run would cost.
pub async fn estimate_judge(
    id: i64,
    body: &kokushi_shared::judge::CreateJudgeRun,
    csrf: &str,
) -> Result<kokushi_shared::cost::Estimate, ApiError> {
    post_json(
        &format!("/api/grading/tasks/{id}/judges/estimate"),
        Some(body),
        csrf,
    )
    .await
}

/// `GET /api/grading/items/{id}`: one item with its grades and history.
pub async fn item(id: i64) -> Result<GradingItemDetail, ApiError> {
    get_json(&format!("/api/grading/items/{id}")).await
}

/// `POST /api/grading/items/{id}/adjudicate`: a reviewer's verdict (409 when another
/// adjudication was saved since `expected_version`).
pub async fn adjudicate(id: i64, body: &GradeInput, csrf: &str) -> Result<Grade, ApiError> {
    post_json(
        &format!("/api/grading/items/{id}/adjudicate"),
        Some(body),
        csrf,
    )
    .await
}

/// `GET /api/grading/gold-flags`: items annotators say have a wrong published answer.
pub async fn gold_flags() -> Result<Vec<GoldFlag>, ApiError> {
    get_json("/api/grading/gold-flags").await
}

/// A task's grades as a download (`csv` or `jsonl`).
pub fn export_path(task_id: i64, format: &str) -> String {
    format!("/api/grading/tasks/{task_id}/export?format={format}")
}

/// A task's audit log as a download (`csv` or `jsonl`).
pub fn audit_path(task_id: i64, format: &str) -> String {
    format!("/api/grading/audit?task={task_id}&format={format}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_paths_name_the_task_and_the_format() {
        assert_eq!(
            export_path(7, "csv"),
            "/api/grading/tasks/7/export?format=csv"
        );
        assert_eq!(
            audit_path(7, "jsonl"),
            "/api/grading/audit?task=7&format=jsonl"
        );
    }
}
