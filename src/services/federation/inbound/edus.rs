//! EDUs of a transaction, parsed into ruma's types (or kith's, for the profile EDUs of
//! MSC4259, which ruma does not have) and dispatched by type. Typing and read receipts go
//! to the ephemeral service, profile updates to the remote-profile cache, device-list and
//! signing-key updates to the keys service, to-device messages to the devices' inboxes;
//! presence and unknown types are accepted and ignored. A malformed EDU is dropped on
//! its own.

use ruma::ServerName;
use ruma::api::federation::transactions::edu::Edu;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::Inbound;
use crate::services::remote_profiles::edus::{EDU_TYPES as PROFILE_EDU_TYPES, ProfileUpdate};

/// What an EDU is, before its content is trusted to fit its type.
#[derive(Deserialize)]
struct Envelope<'a> {
    edu_type: &'a str,
}

/// An EDU as this server understands it.
#[derive(Debug)]
pub enum InboundEdu {
    Known(Edu),
    Profile(ProfileUpdate),
    /// A type kith does not handle; kept by name for the log.
    Unknown(String),
}

impl InboundEdu {
    /// Parses one EDU; an error names what was wrong with it.
    pub fn parse(value: &Value) -> Result<Self, String> {
        let raw = serde_json::value::to_raw_value(value).map_err(|e| e.to_string())?;
        let envelope: Envelope<'_> = serde_json::from_str(raw.get()).map_err(|e| format!("not an EDU: {e}"))?;
        match envelope.edu_type {
            "m.typing"
            | "m.receipt"
            | "m.presence"
            | "m.device_list_update"
            | "m.direct_to_device"
            | "m.signing_key_update" => parse_known(&raw).map(Self::Known),
            kind if PROFILE_EDU_TYPES.contains(&kind) => {
                let update = serde_json::from_value(value["content"].clone());
                update.map(Self::Profile).map_err(|e| format!("invalid profile EDU: {e}"))
            }
            other => Ok(Self::Unknown(other.to_owned())),
        }
    }
}

fn parse_known(raw: &RawValue) -> Result<Edu, String> {
    serde_json::from_str(raw.get()).map_err(|e| format!("invalid EDU content: {e}"))
}

impl Inbound {
    pub(super) async fn receive_edu(&self, origin: &ServerName, value: &Value) {
        let edu = match InboundEdu::parse(value) {
            Ok(edu) => edu,
            Err(err) => return tracing::debug!(%origin, %err, "ignoring EDU"),
        };
        let result = match edu {
            InboundEdu::Known(Edu::Typing(typing)) => self.ephemeral.receive_remote_typing(origin, typing).await,
            InboundEdu::Known(Edu::Receipt(receipts)) => self.ephemeral.receive_remote_receipts(origin, receipts).await,
            // Checked once, by the profile cache; the directory follows what it accepts.
            InboundEdu::Profile(update) => {
                let accepted = self.remote_profiles.receive_edu(origin, update.clone()).await;
                if accepted.is_ok() {
                    self.federated_directory.receive_profile_edu(origin, &update).await;
                }
                accepted
            }
            InboundEdu::Known(Edu::DeviceListUpdate(update)) => {
                self.device_keys.receive_remote_change(origin, &update.user_id, Some(update.device_id.as_str())).await
            }
            InboundEdu::Known(Edu::SigningKeyUpdate(update)) => {
                self.device_keys.receive_remote_change(origin, &update.user_id, None).await
            }
            InboundEdu::Known(Edu::DirectToDevice(_)) => self.to_device.receive_remote(origin, &value["content"]).await,
            InboundEdu::Known(_) => Ok(()),
            InboundEdu::Unknown(edu_type) => {
                tracing::trace!(%origin, edu_type, "ignoring EDU of an unknown type");
                Ok(())
            }
        };
        if let Err(err) = result {
            tracing::debug!(%origin, %err, "ignoring EDU");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn edus_parse_into_types_and_unknown_ones_are_named() {
        let typing =
            json!({ "edu_type": "m.typing", "content": { "room_id": "!r:x", "user_id": "@a:x", "typing": true } });
        assert!(matches!(InboundEdu::parse(&typing), Ok(InboundEdu::Known(Edu::Typing(t))) if t.typing));
        let custom = json!({ "edu_type": "org.example.thing", "content": {} });
        assert!(matches!(InboundEdu::parse(&custom), Ok(InboundEdu::Unknown(t)) if t == "org.example.thing"));
        let profile = json!({ "edu_type": "uk.tcpip.msc4259.profile", "content": { "user_id": "@a:x", "fields": { "displayname": "A" } } });
        assert!(matches!(InboundEdu::parse(&profile), Ok(InboundEdu::Profile(p)) if p.fields["displayname"] == "A"));
        let hostile = json!({ "edu_type": "m.profile", "content": { "user_id": "@a:x", "fields": [1] } });
        assert!(InboundEdu::parse(&hostile).is_err());
        let bad = json!({ "edu_type": "m.typing", "content": { "room_id": 5 } });
        assert!(InboundEdu::parse(&bad).is_err());
        assert!(InboundEdu::parse(&json!([1])).is_err());
    }
}
