//! Redactions: who may redact, and stripping the redacted event as its room version says.

use ruma::canonical_json::CanonicalJsonObject;
use serde_json::{Value, json};

use super::{NewEvent, Rooms};
use crate::error::{ApiResult, MatrixError};

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
        let mut content = json!({ "redacts": target_id });
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
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
        let version = self.room_version(room_id).await?;
        let rules = Self::version_rules(&version)?;
        let object: CanonicalJsonObject =
            serde_json::from_value(target.json.clone()).map_err(|err| MatrixError::internal("stored event", err))?;
        let redacted = ruma::canonical_json::redact(object, &rules.redaction, None)
            .map_err(|err| MatrixError::internal("redaction", err))?;
        let mut redacted = serde_json::to_value(redacted).map_err(|err| MatrixError::internal("redaction", err))?;
        redacted["unsigned"] = json!({ "redacted_because": { "event_id": redaction_id, "sender": sender } });
        self.store.redact_event(target_id, &redacted, &redaction_id).await?;
        Ok(redaction_id)
    }
}

/// A user's power level from `m.room.power_levels` content.
pub fn user_power(levels: &Value, user_id: &str) -> i64 {
    levels["users"][user_id].as_i64().or_else(|| levels["users_default"].as_i64()).unwrap_or(0)
}
