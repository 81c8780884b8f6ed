//! EDUs as services hand them to the sender: ruma's types, and the profile update of
//! MSC4259 that ruma lacks. The sender queues and keeps them as the JSON a
//! transaction carries (queued profile updates for one user merge field by field).

use ruma::api::federation::transactions::edu::Edu;
use serde::Serialize;
use serde_json::Value;

use crate::endpoints::profile_edu::ProfileEdu;
use crate::error::MatrixError;

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum OutgoingEdu {
    Spec(Edu),
    Profile(ProfileEdu),
}

impl From<Edu> for OutgoingEdu {
    fn from(edu: Edu) -> Self {
        Self::Spec(edu)
    }
}

impl From<ProfileEdu> for OutgoingEdu {
    fn from(edu: ProfileEdu) -> Self {
        Self::Profile(edu)
    }
}

impl OutgoingEdu {
    /// The EDU as a transaction carries it.
    pub(super) fn to_json(&self) -> Result<Value, MatrixError> {
        serde_json::to_value(self).map_err(|err| MatrixError::internal("serializing an EDU", err))
    }
}
