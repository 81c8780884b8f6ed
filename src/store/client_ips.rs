//! Client connections: where and with which user agent each access token was last used.

use sqlx::Row;

use super::Store;

/// One access token's use from one address, as recorded.
#[derive(Debug, Clone)]
pub struct ClientIpRow {
    pub token_hash: String,
    pub ip: String,
    pub user_agent: String,
    /// Milliseconds since the epoch.
    pub last_seen: i64,
}

/// One connection of a user, as whois lists it.
#[derive(Debug, Clone)]
pub struct ConnectionRow {
    pub device_id: String,
    pub ip: String,
    pub user_agent: String,
    pub last_seen: i64,
}

/// A device with its newest connection, as device lists show it.
#[derive(Debug, Clone)]
pub struct SeenDeviceRow {
    pub device_id: String,
    pub display_name: Option<String>,
    /// The newest connection's time, else when the device's token was issued.
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
    pub last_seen_user_agent: Option<String>,
}

impl Store {
    /// Writes a batch in one transaction. A token logged out since it was used is
    /// skipped (its device's rows are gone and must stay gone), and an older time never
    /// replaces a newer one (two batches may be written concurrently).
    pub async fn record_client_ips(&self, batch: &[ClientIpRow]) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        for row in batch {
            sqlx::query(
                "INSERT INTO client_ips (token_hash, ip, user_id, device_id, user_agent, last_seen) \
                 SELECT t.token_hash, $2, t.user_id, t.device_id, $3, $4 FROM access_tokens t \
                 WHERE t.token_hash = $1 \
                 ON CONFLICT (token_hash, ip) DO UPDATE SET user_agent = excluded.user_agent, \
                 last_seen = excluded.last_seen WHERE client_ips.last_seen <= excluded.last_seen",
            )
            .bind(&row.token_hash)
            .bind(&row.ip)
            .bind(&row.user_agent)
            .bind(row.last_seen)
            .execute(&mut *txn.tx)
            .await?;
        }
        txn.commit().await
    }

    /// A user's connections, newest first within each device, at most `per_device` each.
    pub async fn client_connections(&self, user_id: &str, per_device: i64) -> Result<Vec<ConnectionRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT device_id, ip, user_agent, last_seen FROM ( \
                SELECT device_id, ip, user_agent, last_seen, \
                ROW_NUMBER() OVER (PARTITION BY device_id ORDER BY last_seen DESC, ip) AS n \
                FROM client_ips WHERE user_id = $1) ranked \
             WHERE n <= $2 ORDER BY device_id, last_seen DESC, ip",
        )
        .bind(user_id)
        .bind(per_device)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ConnectionRow {
                    device_id: row.try_get(0)?,
                    ip: row.try_get(1)?,
                    user_agent: row.try_get(2)?,
                    last_seen: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// A user's devices, each with its newest connection.
    pub async fn devices_seen(&self, user_id: &str) -> Result<Vec<SeenDeviceRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT d.device_id, d.display_name, c.last_seen, c.ip, c.user_agent, \
             (SELECT MAX(t.created_ts) FROM access_tokens t WHERE t.user_id = d.user_id AND t.device_id = d.device_id) \
             FROM devices d LEFT JOIN client_ips c ON c.user_id = d.user_id AND c.device_id = d.device_id \
             AND c.last_seen = (SELECT MAX(n.last_seen) FROM client_ips n \
                 WHERE n.user_id = d.user_id AND n.device_id = d.device_id) \
             WHERE d.user_id = $1 ORDER BY d.device_id, c.ip",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        let mut devices: Vec<SeenDeviceRow> = Vec::with_capacity(rows.len());
        for row in &rows {
            let device_id: String = row.try_get(0)?;
            // Two addresses used in the same millisecond: the first is enough.
            if devices.last().is_some_and(|last| last.device_id == device_id) {
                continue;
            }
            let seen: Option<i64> = row.try_get(2)?;
            let issued: Option<i64> = row.try_get(5)?;
            devices.push(SeenDeviceRow {
                device_id,
                display_name: row.try_get(1)?,
                last_seen_ts: seen.or(issued),
                last_seen_ip: row.try_get(3)?,
                last_seen_user_agent: row.try_get(4)?,
            });
        }
        Ok(devices)
    }

    /// Keeps at most `per_user` connections for each user (the newest, and any tied
    /// with the oldest kept), looking at up to `users` users over the limit. Returns how
    /// many users were over it.
    pub async fn prune_client_ips(&self, per_user: i64, users: i64) -> Result<usize, sqlx::Error> {
        let rows = sqlx::query("SELECT user_id FROM client_ips GROUP BY user_id HAVING COUNT(*) > $1 LIMIT $2")
            .bind(per_user)
            .bind(users)
            .fetch_all(self.pool())
            .await?;
        for row in &rows {
            let user_id: String = row.try_get(0)?;
            let mut txn = self.begin_write().await?;
            sqlx::query(
                "DELETE FROM client_ips WHERE user_id = $1 AND last_seen < (SELECT last_seen FROM client_ips \
                 WHERE user_id = $1 ORDER BY last_seen DESC LIMIT 1 OFFSET $2)",
            )
            .bind(&user_id)
            .bind(per_user - 1)
            .execute(&mut *txn.tx)
            .await?;
            txn.commit().await?;
        }
        Ok(rows.len())
    }
}
