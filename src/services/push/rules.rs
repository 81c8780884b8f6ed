//! `/pushrules`: reading and changing a user's rules with ruma's `Ruleset`.

use ruma::api::client::push::PushRule;
use ruma::push::{Action, NewConditionalPushRule, NewPatternedPushRule, NewPushRule, NewSimplePushRule, PushCondition};
use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde::Deserialize;

use super::Push;
use crate::error::{ApiResult, MatrixError};

pub use ruma::push::RuleKind;

/// The body of `PUT /pushrules/global/{kind}/{ruleId}`.
#[derive(Debug, Deserialize)]
pub struct RuleUpdate {
    pub actions: Vec<Action>,
    #[serde(default)]
    pub conditions: Option<Vec<PushCondition>>,
    #[serde(default)]
    pub pattern: Option<String>,
}

fn kind_of(kind: &str) -> ApiResult<RuleKind> {
    match kind {
        "override" | "underride" | "sender" | "room" | "content" => Ok(RuleKind::from(kind)),
        _ => Err(MatrixError::invalid_param(format!("Unknown rule kind {kind}"))),
    }
}

fn not_found() -> MatrixError {
    MatrixError::not_found("Unknown push rule")
}

impl Push {
    /// `GET /pushrules/global/{kind}/{ruleId}`.
    pub async fn rule(&self, user_id: &UserId, kind: &str, rule_id: &str) -> ApiResult<PushRule> {
        let ruleset = self.ruleset(user_id).await?;
        Ok(ruleset.get(kind_of(kind)?, rule_id).ok_or_else(not_found)?.into())
    }

    /// `PUT /pushrules/global/{kind}/{ruleId}?before=…&after=…`: a user rule (server
    /// rules, whose ids start with `.`, cannot be replaced).
    pub async fn put_rule(
        &self,
        user_id: &UserId,
        (kind, rule_id): (&str, &str),
        update: RuleUpdate,
        (before, after): (Option<&str>, Option<&str>),
    ) -> ApiResult<()> {
        if rule_id.starts_with('.') || rule_id.is_empty() || rule_id.contains(['/', '\\']) {
            return Err(MatrixError::invalid_param("Invalid rule id: it may not start with '.' or hold '/' or '\\'"));
        }
        let rule = new_rule(kind_of(kind)?, rule_id, update)?;
        let mut ruleset = self.ruleset(user_id).await?;
        ruleset.insert(rule, after, before).map_err(|e| MatrixError::invalid_param(e.to_string()))?;
        self.save(user_id, &ruleset).await
    }

    /// `DELETE /pushrules/global/{kind}/{ruleId}`.
    pub async fn delete_rule(&self, user_id: &UserId, kind: &str, rule_id: &str) -> ApiResult<()> {
        let mut ruleset = self.ruleset(user_id).await?;
        let kind = kind_of(kind)?;
        if ruleset.get(kind.clone(), rule_id).is_none() {
            return Err(not_found());
        }
        ruleset.remove(kind, rule_id).map_err(|e| MatrixError::invalid_param(e.to_string()))?;
        self.save(user_id, &ruleset).await
    }

    /// `GET …/enabled`.
    pub async fn rule_enabled(&self, user_id: &UserId, kind: &str, rule_id: &str) -> ApiResult<bool> {
        let ruleset = self.ruleset(user_id).await?;
        Ok(ruleset.get(kind_of(kind)?, rule_id).ok_or_else(not_found)?.enabled())
    }

    /// `PUT …/enabled`.
    pub async fn set_rule_enabled(&self, user_id: &UserId, kind: &str, rule_id: &str, enabled: bool) -> ApiResult<()> {
        let mut ruleset = self.ruleset(user_id).await?;
        ruleset.set_enabled(kind_of(kind)?, rule_id, enabled).map_err(|_| not_found())?;
        self.save(user_id, &ruleset).await
    }

    /// `GET …/actions`.
    pub async fn rule_actions(&self, user_id: &UserId, kind: &str, rule_id: &str) -> ApiResult<Vec<Action>> {
        let ruleset = self.ruleset(user_id).await?;
        Ok(ruleset.get(kind_of(kind)?, rule_id).ok_or_else(not_found)?.actions().to_vec())
    }

    /// `PUT …/actions`.
    pub async fn set_rule_actions(
        &self,
        user_id: &UserId,
        kind: &str,
        rule_id: &str,
        actions: Vec<Action>,
    ) -> ApiResult<()> {
        let mut ruleset = self.ruleset(user_id).await?;
        ruleset.set_actions(kind_of(kind)?, rule_id, actions).map_err(|_| not_found())?;
        self.save(user_id, &ruleset).await
    }
}

/// A new user rule of `kind`, with what the kind needs: conditions for override and
/// underride, a pattern for content; room and sender rules are named after their room
/// or user.
fn new_rule(kind: RuleKind, rule_id: &str, update: RuleUpdate) -> ApiResult<NewPushRule> {
    let RuleUpdate { actions, conditions, pattern } = update;
    Ok(match kind {
        RuleKind::Override => NewPushRule::Override(NewConditionalPushRule::new(
            rule_id.to_owned(),
            conditions.unwrap_or_default(),
            actions,
        )),
        RuleKind::Underride => NewPushRule::Underride(NewConditionalPushRule::new(
            rule_id.to_owned(),
            conditions.unwrap_or_default(),
            actions,
        )),
        RuleKind::Content => {
            let pattern =
                pattern.ok_or_else(|| MatrixError::missing_param("pattern is required for a content rule"))?;
            NewPushRule::Content(NewPatternedPushRule::new(rule_id.to_owned(), pattern, actions))
        }
        RuleKind::Room => {
            let room = OwnedRoomId::try_from(rule_id)
                .map_err(|_| MatrixError::invalid_param("A room rule's id is a room ID"))?;
            NewPushRule::Room(NewSimplePushRule::new(room, actions))
        }
        RuleKind::Sender => {
            let user = OwnedUserId::try_from(rule_id)
                .map_err(|_| MatrixError::invalid_param("A sender rule's id is a user ID"))?;
            NewPushRule::Sender(NewSimplePushRule::new(user, actions))
        }
        _ => return Err(MatrixError::invalid_param("Unknown rule kind")),
    })
}
