//! Projects (docs/projects.md): research teams on one portal, each seeing only its own exam
//! sets, runs, tunings and grading tasks. Isolation is decided here, in two ways that together
//! cover every request:
//! - an object a request names in its **path** is checked by [`Db::visibility`] before any
//!   handler runs (`crate::auth` reads the object's kind off the endpoint's line in
//!   `crate::routes`): an object of another project answers 404 exactly as a missing id does;
//! - every **list**, every id a request names in its body or query, and every insert take the
//!   caller's [`Scope`] and filter or stamp on `project_id` in their SQL.

use kokushi_shared::api::{ProjectDetail, ProjectMember, ProjectRef, ProjectRole, ProjectSummary};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError, corrupt, to_u32};
use crate::clock::now_rfc3339;

/// The project a request acts in, and who makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub project: i64,
    pub user: i64,
}

/// The kinds of object a path may name by id, each belonging to one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    ExamSet,
    Run,
    Tuning,
    GradingTask,
    GradingItem,
    /// A grading assignment, named by its handle.
    Assignment,
    /// A project itself: visible to its members and to admins.
    Project,
}

impl Owned {
    /// How a message names one: `run 7 does not exist`.
    pub fn noun(self) -> &'static str {
        match self {
            Owned::ExamSet => "exam set",
            Owned::Run => "run",
            Owned::Tuning => "tuning",
            Owned::GradingTask => "grading task",
            Owned::GradingItem => "grading item",
            Owned::Assignment => "assignment",
            Owned::Project => "project",
        }
    }
}

/// What a project may do with an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Nothing: it is another project's, or does not exist (the caller cannot tell which).
    Hidden,
    /// Read it: an exam set another project shares with this one.
    Shared,
    /// Everything its role allows: the project's own.
    Own,
}

/// Whether a slug is well formed: lower-case letters, digits and `-`, 2 to 40 characters,
/// starting with a letter.
pub fn check_slug(slug: &str) -> Result<(), String> {
    let ok = (2..=40).contains(&slug.len())
        && slug.starts_with(|c: char| c.is_ascii_lowercase())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "project slug {slug:?} must be 2 to 40 lower-case letters, digits and '-', \
             starting with a letter"
        ))
    }
}

/// The most characters a project's name may have.
pub const MAX_PROJECT_NAME_CHARS: usize = 120;

fn role_of(row: &AnyRow, column: &str) -> Result<ProjectRole, DbError> {
    let id: String = row.try_get(column)?;
    ProjectRole::from_id(&id)
        .ok_or_else(|| corrupt("project_members", "role", format!("unknown role {id:?}")))
}

impl Db {
    /// The project existing data moved into, and accounts made without one join.
    pub async fn default_project(&self) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT id FROM projects WHERE slug = 'default'")
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| corrupt("projects", "slug", "the default project is missing"))?;
        Ok(row.try_get("id")?)
    }

    /// A project's id by slug.
    pub async fn project_by_slug(&self, slug: &str) -> Result<Option<i64>, DbError> {
        sqlx::query("SELECT id FROM projects WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Ok(r.try_get("id")?))
            .transpose()
    }

    /// The project an account acts in: `wanted` if it is a member there (an admin acts in any
    /// project, as its owner), else (`fall_back`) its first project, the default one first.
    /// `None`: an account in no project (or a token whose project it left).
    pub async fn project_access(
        &self,
        user: i64,
        admin: bool,
        wanted: Option<i64>,
        fall_back: bool,
    ) -> Result<Option<ProjectRef>, DbError> {
        let query = "SELECT p.id, p.slug, p.name, m.role FROM projects p \
             LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = $1 \
             WHERE ($2 = -1 OR p.id = $2) AND (m.role IS NOT NULL OR $3 = 1) \
             ORDER BY CASE WHEN m.role IS NULL THEN 1 ELSE 0 END, \
                      CASE WHEN p.slug = 'default' THEN 0 ELSE 1 END, p.id LIMIT 1";
        let mut row = sqlx::query(query)
            .bind(user)
            .bind(wanted.unwrap_or(-1))
            .bind(i64::from(admin))
            .fetch_optional(&self.pool)
            .await?;
        if row.is_none() && wanted.is_some() && fall_back {
            row = sqlx::query(query)
                .bind(user)
                .bind(-1_i64)
                .bind(i64::from(admin))
                .fetch_optional(&self.pool)
                .await?;
        }
        let Some(row) = row else {
            return Ok(None);
        };
        let role = match row.try_get::<Option<String>, _>("role")? {
            Some(_) => role_of(&row, "role")?,
            None => ProjectRole::Owner,
        };
        Ok(Some(ProjectRef {
            id: row.try_get("id")?,
            slug: row.try_get("slug")?,
            name: row.try_get("name")?,
            role,
        }))
    }

    /// What `scope`'s project may do with the object of `kind` a path names (`key`: its id, or
    /// an assignment's handle). The one check every path id passes (`crate::auth`).
    pub async fn visibility(
        &self,
        scope: &Scope,
        kind: Owned,
        key: i64,
    ) -> Result<Visibility, DbError> {
        let own = match kind {
            Owned::ExamSet => "SELECT project_id FROM exam_sets WHERE id = $1",
            Owned::Run => "SELECT project_id FROM runs WHERE id = $1",
            Owned::Tuning => "SELECT project_id FROM tunings WHERE id = $1",
            Owned::GradingTask => "SELECT project_id FROM grading_tasks WHERE id = $1",
            Owned::GradingItem => {
                "SELECT t.project_id FROM grading_items i \
                 JOIN grading_tasks t ON t.id = i.task_id WHERE i.id = $1"
            }
            Owned::Assignment => {
                "SELECT t.project_id FROM grading_assignments x \
                 JOIN grading_tasks t ON t.id = x.task_id WHERE x.handle = $1"
            }
            Owned::Project => {
                "SELECT project_id FROM project_members WHERE project_id = $1 AND user_id = $2"
            }
        };
        let mut query = sqlx::query(own).bind(key);
        if kind == Owned::Project {
            query = query.bind(scope.user);
        }
        let row = query.fetch_optional(&self.pool).await?;
        let owner: Option<i64> = row
            .map(|r| r.try_get::<Option<i64>, _>("project_id"))
            .transpose()?
            .flatten();
        if kind == Owned::Project {
            return Ok(if owner.is_some() {
                Visibility::Own
            } else {
                Visibility::Hidden
            });
        }
        if owner == Some(scope.project) {
            return Ok(Visibility::Own);
        }
        if kind == Owned::ExamSet && owner.is_some() && self.shared_with(key, scope.project).await?
        {
            return Ok(Visibility::Shared);
        }
        Ok(Visibility::Hidden)
    }

    /// Whether an exam set is shared with a project.
    async fn shared_with(&self, exam_set: i64, project: i64) -> Result<bool, DbError> {
        Ok(sqlx::query(
            "SELECT 1 AS one FROM exam_set_shares WHERE exam_set_id = $1 AND project_id = $2",
        )
        .bind(exam_set)
        .bind(project)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// Whether `scope`'s project may read an exam set (its own, or one shared with it): for
    /// sets a request names in its body.
    pub async fn exam_set_readable(&self, scope: &Scope, id: i64) -> Result<bool, DbError> {
        Ok(self.visibility(scope, Owned::ExamSet, id).await? != Visibility::Hidden)
    }

    /// The projects an account is a member of (an admin: every project), by name.
    pub async fn projects_of(
        &self,
        user: i64,
        admin: bool,
    ) -> Result<Vec<ProjectSummary>, DbError> {
        let rows = sqlx::query(
            "SELECT p.id, p.slug, p.name, p.created_at, m.role, \
                    (SELECT COUNT(*) FROM project_members n WHERE n.project_id = p.id) AS members \
             FROM projects p \
             LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = $1 \
             WHERE m.role IS NOT NULL OR $2 = 1 ORDER BY p.name, p.id",
        )
        .bind(user)
        .bind(i64::from(admin))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(project_from_row).collect()
    }

    /// One project with its members; `user`'s role in it.
    pub async fn project(&self, id: i64, user: i64) -> Result<Option<ProjectDetail>, DbError> {
        let Some(row) = sqlx::query(
            "SELECT p.id, p.slug, p.name, p.created_at, m.role, \
                    (SELECT COUNT(*) FROM project_members n WHERE n.project_id = p.id) AS members \
             FROM projects p \
             LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = $2 \
             WHERE p.id = $1",
        )
        .bind(id)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let members = sqlx::query(
            "SELECT m.user_id, u.username, m.role, m.added_at FROM project_members m \
             JOIN users u ON u.id = m.user_id WHERE m.project_id = $1 ORDER BY u.username",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(ProjectMember {
                user_id: r.try_get("user_id")?,
                username: r.try_get("username")?,
                role: role_of(r, "role")?,
                added_at: r.try_get("added_at")?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
        Ok(Some(ProjectDetail {
            project: project_from_row(&row)?,
            members,
        }))
    }

    /// A new project with its first owners, in one transaction; `None` when the slug is taken.
    pub async fn create_project(
        &self,
        slug: &str,
        name: &str,
        owners: &[i64],
        by: i64,
    ) -> Result<Option<ProjectDetail>, DbError> {
        let mut tx = self.begin_write().await?;
        let taken = sqlx::query("SELECT id FROM projects WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            tx.rollback().await?;
            return Ok(None);
        }
        let now = now_rfc3339();
        let id: i64 = sqlx::query(
            "INSERT INTO projects (slug, name, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(slug)
        .bind(name)
        .bind(&now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        for owner in owners {
            Self::insert_member(&mut tx, id, *owner, ProjectRole::Owner).await?;
        }
        tx.commit().await?;
        self.project(id, by).await
    }

    /// Adds an account to a project, or changes its role there. Refused when it would leave the
    /// project without an owner.
    pub async fn set_member(
        &self,
        project: i64,
        user: i64,
        role: ProjectRole,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        match Self::member_role(&mut tx, project, user).await? {
            Some(was) => {
                if was == ProjectRole::Owner && role != ProjectRole::Owner {
                    Self::keep_an_owner(&mut tx, project, user).await?;
                }
                sqlx::query(
                    "UPDATE project_members SET role = $1 WHERE project_id = $2 AND user_id = $3",
                )
                .bind(role.id())
                .bind(project)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            }
            None => Self::insert_member(&mut tx, project, user, role).await?,
        }
        tx.commit().await?;
        Ok(())
    }

    /// Takes an account out of a project; `false` when it was not a member. Refused for the
    /// project's last owner.
    pub async fn remove_member(&self, project: i64, user: i64) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let Some(role) = Self::member_role(&mut tx, project, user).await? else {
            tx.rollback().await?;
            return Ok(false);
        };
        if role == ProjectRole::Owner {
            Self::keep_an_owner(&mut tx, project, user).await?;
        }
        sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
            .bind(project)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        // A session that was acting in the project falls back to the account's first.
        sqlx::query("UPDATE sessions SET project_id = NULL WHERE user_id = $1 AND project_id = $2")
            .bind(user)
            .bind(project)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn keep_an_owner(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        project: i64,
        leaving: i64,
    ) -> Result<(), DbError> {
        let others: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM project_members \
             WHERE project_id = $1 AND role = 'owner' AND user_id <> $2",
        )
        .bind(project)
        .bind(leaving)
        .fetch_one(&mut **tx)
        .await?
        .try_get("n")?;
        if others == 0 {
            return Err(DbError::Refused(
                "a project keeps at least one owner: make someone else owner first".to_owned(),
            ));
        }
        Ok(())
    }

    /// The project a browser session acts in from now on.
    pub async fn set_session_project(&self, token_hash: &str, project: i64) -> Result<(), DbError> {
        sqlx::query("UPDATE sessions SET project_id = $1 WHERE token_hash = $2")
            .bind(project)
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Keeps an account's role in the default project in step with its portal roles (the users
    /// page's roles: docs/projects.md), inside the caller's transaction.
    pub(crate) async fn sync_default_membership(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        user: i64,
        role: Option<ProjectRole>,
    ) -> Result<(), DbError> {
        let project: i64 = sqlx::query("SELECT id FROM projects WHERE slug = 'default'")
            .fetch_one(&mut **tx)
            .await?
            .try_get("id")?;
        sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
            .bind(project)
            .bind(user)
            .execute(&mut **tx)
            .await?;
        if let Some(role) = role {
            Self::insert_member(tx, project, user, role).await?;
        }
        Ok(())
    }

    /// An account's role in a project, inside the caller's transaction; `None`: not a member.
    async fn member_role(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        project: i64,
        user: i64,
    ) -> Result<Option<ProjectRole>, DbError> {
        sqlx::query("SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2")
            .bind(project)
            .bind(user)
            .fetch_optional(&mut **tx)
            .await?
            .map(|row| role_of(&row, "role"))
            .transpose()
    }

    /// Makes an account a member of a project, inside the caller's transaction.
    async fn insert_member(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        project: i64,
        user: i64,
        role: ProjectRole,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO project_members (project_id, user_id, role, added_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(project)
        .bind(user)
        .bind(role.id())
        .bind(now_rfc3339())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Puts one of the project's runs on the portal-wide leaderboard (`true`), or takes it off.
    /// `false` when the run is not the project's.
    pub async fn set_published(
        &self,
        scope: &Scope,
        run: i64,
        published: bool,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let own = sqlx::query("SELECT id FROM runs WHERE id = $1 AND project_id = $2")
            .bind(run)
            .bind(scope.project)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !own {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("DELETE FROM published_runs WHERE run_id = $1")
            .bind(run)
            .execute(&mut *tx)
            .await?;
        if published {
            sqlx::query(
                "INSERT INTO published_runs (run_id, published_by, published_at) \
                 VALUES ($1, $2, $3)",
            )
            .bind(run)
            .bind(scope.user)
            .bind(now_rfc3339())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Shares one of the project's exam sets read-only with another project (by slug), or
    /// stops sharing it. `Refused` when there is no such project.
    pub async fn set_shared(
        &self,
        scope: &Scope,
        exam_set: i64,
        with: &str,
        shared: bool,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        let target: Option<i64> = sqlx::query("SELECT id FROM projects WHERE slug = $1")
            .bind(with)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("id"))
            .transpose()?;
        let Some(target) = target.filter(|t| *t != scope.project) else {
            tx.rollback().await?;
            return Err(DbError::Refused(format!(
                "there is no other project {with:?} to share with"
            )));
        };
        sqlx::query("DELETE FROM exam_set_shares WHERE exam_set_id = $1 AND project_id = $2")
            .bind(exam_set)
            .bind(target)
            .execute(&mut *tx)
            .await?;
        if shared {
            sqlx::query(
                "INSERT INTO exam_set_shares (exam_set_id, project_id, shared_by, shared_at) \
                 SELECT id, $2, $3, $4 FROM exam_sets WHERE id = $1 AND project_id = $5",
            )
            .bind(exam_set)
            .bind(target)
            .bind(scope.user)
            .bind(now_rfc3339())
            .bind(scope.project)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The projects an exam set is shared with (slugs).
    pub async fn shares_of(&self, exam_set: i64) -> Result<Vec<String>, DbError> {
        sqlx::query(
            "SELECT p.slug FROM exam_set_shares s JOIN projects p ON p.id = s.project_id \
             WHERE s.exam_set_id = $1 ORDER BY p.slug",
        )
        .bind(exam_set)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok(r.try_get("slug")?))
        .collect()
    }
}

fn project_from_row(row: &AnyRow) -> Result<ProjectSummary, DbError> {
    Ok(ProjectSummary {
        id: row.try_get("id")?,
        slug: row.try_get("slug")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        role: match row.try_get::<Option<String>, _>("role")? {
            Some(_) => Some(role_of(row, "role")?),
            None => None,
        },
        member_count: to_u32(row.try_get("members")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_plain() {
        assert!(check_slug("cardiology-2026").is_ok());
        assert!(check_slug("ab").is_ok());
        for bad in [
            "",
            "a",
            "Upper",
            "1st",
            "has space",
            "ü-team",
            &"x".repeat(41),
        ] {
            assert!(check_slug(bad).is_err(), "{bad:?}");
        }
    }
}
