//! MSC4259's profile-update EDU, which ruma has no type for.

use std::collections::BTreeMap;

use ruma::OwnedUserId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The unstable type kith sends; the stable `m.profile` is accepted too.
pub const UNSTABLE_EDU_TYPE: &str = "uk.tcpip.msc4259.profile";
pub const EDU_TYPES: &[&str] = &[UNSTABLE_EDU_TYPE, "m.profile"];

/// The content of a profile EDU: the changed fields' values, null when removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileUpdate {
    pub user_id: OwnedUserId,
    pub fields: BTreeMap<String, Value>,
}

/// A profile EDU as kith sends it, under the unstable type.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileEdu {
    edu_type: &'static str,
    content: ProfileUpdate,
}

impl ProfileEdu {
    pub fn new(content: ProfileUpdate) -> Self {
        Self { edu_type: UNSTABLE_EDU_TYPE, content }
    }
}
