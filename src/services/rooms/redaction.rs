//! Redactions: who may redact, and stripping the redacted event as its room version says.

use ruma::canonical_json::CanonicalJsonObject;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{NewEvent, Rooms, format};
use crate::error::{ApiResult, MatrixError};

/// An `m.room.redaction`'s content. Local: ruma's `RoomRedactionEventContent` takes the
/// target as a parsed event id, which this path holds as text.
#[derive(Serialize)]
struct RedactionContent<'a> {
    redacts: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

impl Rooms {
    /// Sends an `m.room.redaction` for `target_id` and strips the target's content.
    pub async fn redact(
        &self,
        room_id: &str,
        sender: &str,
        device: &str,
        target_id: &str,
        txn_id: &str,
        reason: Option<&str>,
    ) -> ApiResult<String> {
        let target = self.store.get_event(target_id).await?.filter(|e| e.room_id == room_id);
        let target = target.ok_or_else(|| MatrixError::not_found("Event not found."))?;
        let target_sender = target.json["sender"].as_str().unwrap_or_default();
        // The auth rules let any event from the sender's server through; redacting someone
        // else's event also needs the redact power level.
        if target_sender != sender {
            let levels = self.store.current_state_event(room_id, "m.room.power_levels", "").await?;
            let levels = levels.map(|e| e.json["content"].clone()).unwrap_or(Value::Null);
            let required = levels["redact"].as_i64().unwrap_or(50);
            if user_power(&levels, sender) < required {
                return Err(MatrixError::forbidden("You don't have permission to redact this event"));
            }
        }
        let content = RedactionContent { redacts: target_id, reason };
        let content = serde_json::to_value(content).map_err(|err| MatrixError::internal("redaction", err))?;
        let redaction_id = self
            .send(NewEvent {
                room_id,
                sender,
                event_type: "m.room.redaction",
                state_key: None,
                content,
                txn: Some((device, txn_id)),
            })
            .await?;
        self.apply_redaction(&redaction_id).await?;
        Ok(redaction_id)
    }

    /// Strips the target of an accepted `m.room.redaction` (local or from another
    /// server), when the redaction may take effect: the target is in the same room and
    /// was sent from the redacter's server, or the redacter has the `redact` power.
    pub(super) async fn apply_redaction(&self, redaction_id: &str) -> ApiResult<()> {
        let Some(redaction) = self.store.get_event(redaction_id).await? else { return Ok(()) };
        let json = &redaction.json;
        let target_id = json["content"]["redacts"].as_str().or_else(|| json["redacts"].as_str()).unwrap_or_default();
        let target = self.store.get_event(target_id).await?;
        let Some(target) =
            target.filter(|t| t.room_id == redaction.room_id && t.json["unsigned"]["redacted_because"].is_null())
        else {
            return Ok(());
        };
        let sender = json["sender"].as_str().unwrap_or_default();
        let target_sender = target.json["sender"].as_str().unwrap_or_default();
        if server_of(sender) != server_of(target_sender) {
            let levels = self.store.current_state_event(&redaction.room_id, "m.room.power_levels", "").await?;
            let levels = levels.map(|e| e.json["content"].clone()).unwrap_or(Value::Null);
            if user_power(&levels, sender) < levels["redact"].as_i64().unwrap_or(50) {
                return Ok(());
            }
        }
        let version = self.room_version(&redaction.room_id).await?;
        let rules = Self::version_rules(&version)?;
        let object: CanonicalJsonObject =
            serde_json::from_value(target.json.clone()).map_err(|err| MatrixError::internal("stored event", err))?;
        let redacted = ruma::canonical_json::redact(object, &rules.redaction, None)
            .map_err(|err| MatrixError::internal("redaction", err))?;
        let mut redacted = serde_json::to_value(redacted).map_err(|err| MatrixError::internal("redaction", err))?;
        let mut because = format::client_event(&redaction);
        if let Some(object) = because.as_object_mut() {
            object.remove("unsigned");
        }
        redacted["unsigned"] = Value::Object(Map::from_iter([("redacted_because".to_owned(), because)]));
        self.store.redact_event(target_id, &redacted, redaction_id).await?;
        self.pdu_cache.forget(target_id);
        Ok(())
    }
}

impl Rooms {
    /// Whether a joined member's power level lets them send a state event of this type
    /// (what guards publishing, upgrading and other room-admin actions).
    pub async fn may_send_state(&self, room_id: &str, user_id: &str, event_type: &str) -> ApiResult<bool> {
        let joined = self.store.membership(room_id, user_id).await?.is_some_and(|m| m.membership == "join");
        if !joined {
            return Ok(false);
        }
        let levels = self.store.current_state_event(room_id, "m.room.power_levels", "").await?;
        let levels = levels.map(|e| e.json["content"].clone()).unwrap_or(Value::Null);
        let required = levels["events"][event_type].as_i64().or_else(|| levels["state_default"].as_i64()).unwrap_or(50);
        Ok(user_power(&levels, user_id) >= required)
    }
}

fn server_of(user_id: &str) -> &str {
    user_id.split_once(':').map(|(_, server)| server).unwrap_or_default()
}

/// A user's power level from `m.room.power_levels` content.
pub fn user_power(levels: &Value, user_id: &str) -> i64 {
    levels["users"][user_id].as_i64().or_else(|| levels["users_default"].as_i64()).unwrap_or(0)
}
