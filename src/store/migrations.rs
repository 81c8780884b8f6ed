//! Schema migrations, run at start-up on both backends. The schema is written once in
//! portable SQL; stream positions come from `stream_positions` rather than
//! backend-specific sequences (see `streams.rs`).

use sqlx::Row;

use super::Store;

/// Each entry is applied once, in order, inside a transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("schema/0001_accounts_profiles.sql")),
    (2, include_str!("schema/0002_rooms.sql")),
    (3, include_str!("schema/0003_federation.sql")),
    (4, include_str!("schema/0004_remote_profiles.sql")),
    (5, include_str!("schema/0005_federated_directory.sql")),
    (6, include_str!("schema/0006_push.sql")),
    (7, include_str!("schema/0007_media.sql")),
    (8, include_str!("schema/0008_relations.sql")),
    (9, include_str!("schema/0009_reports.sql")),
    (10, include_str!("schema/0010_partial_state.sql")),
    (11, include_str!("schema/0011_e2e_keys.sql")),
    (12, include_str!("schema/0012_key_backup.sql")),
    (13, include_str!("schema/0013_admin.sql")),
    (14, include_str!("schema/0014_registration_tokens.sql")),
    (15, include_str!("schema/0015_blocked_rooms.sql")),
    (16, include_str!("schema/0016_client_ips.sql")),
    (17, include_str!("schema/0017_to_device_limits.sql")),
    (18, include_str!("schema/0018_member_servers.sql")),
    (19, include_str!("schema/0019_sync_indexes.sql")),
    (20, include_str!("schema/0020_appservices.sql")),
];

/// Splits a migration into statements; `--` comment lines are dropped first so they may
/// contain any punctuation.
fn statements(sql: &str) -> Vec<String> {
    let code: String =
        sql.lines().filter(|line| !line.trim_start().starts_with("--")).map(|line| format!("{line}\n")).collect();
    code.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

pub(super) async fn run(store: &Store) -> anyhow::Result<()> {
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, applied_ts BIGINT NOT NULL)")
        .execute(store.pool())
        .await?;
    for (version, sql) in MIGRATIONS {
        let mut txn = store.begin_write().await?;
        let applied = sqlx::query("SELECT version FROM schema_version WHERE version = $1")
            .bind(*version)
            .fetch_optional(&mut *txn.tx)
            .await?;
        if applied.is_some() {
            continue;
        }
        tracing::info!(version, "applying database migration");
        for statement in statements(sql) {
            sqlx::query(&statement).execute(&mut *txn.tx).await?;
        }
        if *version == 8 {
            let recorded = super::relations::backfill(&mut txn).await?;
            tracing::info!(recorded, "indexed the relations of stored events");
        }
        if *version == 18 {
            let filled = super::rooms::backfill_member_servers(&mut txn).await?;
            tracing::info!(filled, "recorded the server of each room member");
        }
        sqlx::query("INSERT INTO schema_version (version, applied_ts) VALUES ($1, $2)")
            .bind(*version)
            .bind(super::now_ms())
            .execute(&mut *txn.tx)
            .await?;
        txn.commit().await?;
    }
    let latest: i64 =
        sqlx::query("SELECT MAX(version) FROM schema_version").fetch_one(store.pool()).await?.try_get(0)?;
    tracing::debug!(latest, "database schema up to date");
    Ok(())
}
