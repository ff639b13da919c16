//! `kokushi migrate`: connects to the database, which applies every migration it lacks
//! (`migrations/sqlite` or `migrations/postgres`), then exits.

use kokushi_backend::db::Db;

use super::flags::DbArgs;

pub async fn migrate(args: &DbArgs) -> anyhow::Result<()> {
    Db::connect(&args.database_url).await?;
    println!("database is up to date");
    Ok(())
}
