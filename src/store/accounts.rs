//! Users, devices and access tokens.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{ProfileChangeKind, Store, now_ms, profiles};

#[derive(Debug, Clone)]
pub struct UserRow {
    pub user_id: String,
    pub password_hash: Option<String>,
    pub admin: bool,
    pub is_guest: bool,
    pub user_type: Option<String>,
    pub deactivated: bool,
    pub locked: bool,
}

pub struct NewUser<'a> {
    pub user_id: &'a str,
    pub password_hash: Option<&'a str>,
    pub admin: bool,
    pub user_type: Option<&'a str>,
    pub displayname: Option<&'a str>,
}

/// Who an access token belongs to.
#[derive(Debug, Clone)]
pub struct TokenOwner {
    pub user_id: String,
    pub device_id: String,
    pub admin: bool,
    pub is_guest: bool,
    pub locked: bool,
}

fn user_from_row(row: &AnyRow) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        user_id: row.try_get("user_id")?,
        password_hash: row.try_get("password_hash")?,
        admin: row.try_get::<i64, _>("admin")? != 0,
        is_guest: row.try_get::<i64, _>("is_guest")? != 0,
        user_type: row.try_get("user_type")?,
        deactivated: row.try_get::<i64, _>("deactivated")? != 0,
        locked: row.try_get::<i64, _>("locked")? != 0,
    })
}

impl Store {
    /// Creates a user (and its initial display name, recorded on the profile stream).
    /// Returns false when the user id is taken.
    pub async fn create_user(&self, user: NewUser<'_>) -> Result<bool, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (user_id, password_hash, admin, user_type, created_ts) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user.user_id)
        .bind(user.password_hash)
        .bind(i64::from(user.admin))
        .bind(user.user_type)
        .bind(now_ms())
        .execute(&mut *txn.tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        if let Some(name) = user.displayname {
            let value = serde_json::Value::String(name.to_owned());
            profiles::write_field(&mut txn, user.user_id, "displayname", Some(&value)).await?;
            profiles::record_change(&mut txn, user.user_id, ProfileChangeKind::Update, &["displayname"]).await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    pub async fn get_user(&self, user_id: &str) -> Result<Option<UserRow>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT user_id, password_hash, admin, is_guest, user_type, deactivated, locked FROM users WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Records a device (if new) and a fresh access token for it.
    pub async fn add_session(
        &self,
        user_id: &str,
        device_id: &str,
        device_display_name: Option<&str>,
        token_hash: &str,
    ) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, device_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(device_display_name)
        .bind(now_ms())
        .execute(&mut *txn.tx)
        .await?;
        // Logging in again with an existing device id replaces that device's tokens.
        txn.forgets.tokens = true;
        sqlx::query("DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2")
            .bind(user_id)
            .bind(device_id)
            .execute(&mut *txn.tx)
            .await?;
        sqlx::query("INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts) VALUES ($1, $2, $3, $4)")
            .bind(token_hash)
            .bind(user_id)
            .bind(device_id)
            .bind(now_ms())
            .execute(&mut *txn.tx)
            .await?;
        txn.commit().await
    }

    pub(super) async fn read_token_owner(&self, token_hash: &str) -> Result<Option<TokenOwner>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT t.user_id, t.device_id, u.admin, u.is_guest, u.locked FROM access_tokens t \
             JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = $1 AND u.deactivated = 0",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(TokenOwner {
                user_id: row.try_get("user_id")?,
                device_id: row.try_get("device_id")?,
                admin: row.try_get::<i64, _>("admin")? != 0,
                is_guest: row.try_get::<i64, _>("is_guest")? != 0,
                locked: row.try_get::<i64, _>("locked")? != 0,
            })
        })
        .transpose()
    }

    /// Logs out one device: its token and the device record.
    pub async fn remove_device(&self, user_id: &str, device_id: &str) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        remove_devices_in(&mut txn, user_id, &[device_id.to_owned()]).await?;
        txn.commit().await
    }

    pub async fn remove_all_devices(&self, user_id: &str) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        remove_all_devices_in(&mut txn, user_id).await?;
        txn.commit().await
    }

    /// Deactivates an account: no more logins, every session ended, the key backup gone,
    /// and with `erase` the profile removed. Recorded on the profile stream so the
    /// directory drops the user.
    pub async fn deactivate_user(&self, user_id: &str, erase: bool) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query("UPDATE users SET deactivated = 1, password_hash = NULL, erased = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(i64::from(erase))
            .execute(&mut *txn.tx)
            .await?;
        remove_all_devices_in(&mut txn, user_id).await?;
        super::key_backup::delete_all_in(&mut txn, user_id).await?;
        let mut removed = Vec::new();
        if erase {
            removed = profiles::delete_all_fields(&mut txn, user_id).await?;
        }
        let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
        profiles::record_change(&mut txn, user_id, ProfileChangeKind::Deactivated, &removed).await?;
        txn.commit().await
    }
}

async fn remove_all_devices_in(txn: &mut super::WriteTxn<'_>, user_id: &str) -> Result<(), sqlx::Error> {
    txn.forgets.tokens = true;
    let devices = device_ids_in(txn, user_id, None).await?;
    remove_devices_in(txn, user_id, &devices).await?;
    for sql in ["DELETE FROM access_tokens WHERE user_id = $1", "DELETE FROM client_ips WHERE user_id = $1"] {
        sqlx::query(sql).bind(user_id).execute(&mut *txn.tx).await?;
    }
    Ok(())
}

/// A user's device ids (but `except`), read inside the caller's transaction.
async fn device_ids_in(
    txn: &mut super::WriteTxn<'_>,
    user_id: &str,
    except: Option<&str>,
) -> Result<Vec<String>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT device_id FROM devices WHERE user_id = $1").bind(user_id).fetch_all(&mut *txn.tx).await?;
    let ids: Vec<String> = rows.iter().map(|row| row.try_get(0)).collect::<Result<_, _>>()?;
    Ok(ids.into_iter().filter(|id| Some(id.as_str()) != except).collect())
}

/// Ends devices' sessions: their tokens, records, connections, and encryption keys and
/// inboxes (the change goes on the device-list stream, so other users stop encrypting
/// to them).
async fn remove_devices_in(
    txn: &mut super::WriteTxn<'_>,
    user_id: &str,
    device_ids: &[String],
) -> Result<(), sqlx::Error> {
    txn.forgets.tokens = true;
    for device_id in device_ids {
        for sql in [
            "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2",
            "DELETE FROM devices WHERE user_id = $1 AND device_id = $2",
            "DELETE FROM client_ips WHERE user_id = $1 AND device_id = $2",
        ] {
            sqlx::query(sql).bind(user_id).bind(device_id).execute(&mut *txn.tx).await?;
        }
        super::keys::remove_device_keys(txn, user_id, device_id).await?;
    }
    Ok(())
}

/// One of a user's devices, as `/devices` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceRow {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<i64>,
}

impl Store {
    pub async fn devices(&self, user_id: &str) -> Result<Vec<DeviceRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT d.device_id, d.display_name, MAX(t.created_ts) FROM devices d \
             LEFT JOIN access_tokens t ON t.user_id = d.user_id AND t.device_id = d.device_id \
             WHERE d.user_id = $1 GROUP BY d.device_id, d.display_name ORDER BY d.device_id",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeviceRow {
                    device_id: row.try_get(0)?,
                    display_name: row.try_get(1)?,
                    last_seen_ts: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// Renames a device; false if the user has no such device.
    pub async fn rename_device(&self, user_id: &str, device_id: &str, name: Option<&str>) -> Result<bool, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let changed = sqlx::query("UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2")
            .bind(user_id)
            .bind(device_id)
            .bind(name)
            .execute(&mut *txn.tx)
            .await?
            .rows_affected();
        txn.commit().await?;
        Ok(changed > 0)
    }

    /// Logs out several devices at once (unknown ids are ignored, as in Synapse).
    pub async fn remove_devices(&self, user_id: &str, device_ids: &[String]) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        remove_devices_in(&mut txn, user_id, device_ids).await?;
        txn.commit().await
    }

    /// Sets a new password and, given `logout_except`, logs out every other device.
    pub async fn set_password_hash(
        &self,
        user_id: &str,
        hash: &str,
        logout_except: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query("UPDATE users SET password_hash = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(hash)
            .execute(&mut *txn.tx)
            .await?;
        if let Some(kept) = logout_except {
            let others = device_ids_in(&mut txn, user_id, Some(kept)).await?;
            remove_devices_in(&mut txn, user_id, &others).await?;
        }
        txn.commit().await
    }
}
