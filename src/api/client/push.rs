//! Push rules, pushers and notifications.

use axum::extract::State;
use ruma::api::client::push::{
    delete_pushrule, get_notifications, get_pushers, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
    get_pushrules_all, get_pushrules_global_scope, set_pushrule_actions, set_pushrule_enabled,
};
use serde_json::Value;

use crate::api::extract::{AppState, Requester, Ruma, RumaJson, RumaResponse};
use crate::endpoints::client::{set_pusher, set_pushrule};
use crate::error::{ApiResult, MatrixError};
use crate::services::push::RuleUpdate;

/// Any push rule path under a scope other than `global`, the only one there is (ruma's
/// paths name `global` itself).
pub async fn other_scope(Requester(_): Requester) -> MatrixError {
    MatrixError::invalid_param("The only push rule scope is global")
}

/// `GET /pushrules/`.
pub async fn all_rules(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(_): Ruma<get_pushrules_all::v3::Request>,
) -> ApiResult<RumaResponse<get_pushrules_all::v3::Response>> {
    Ok(get_pushrules_all::v3::Response::new(state.push.ruleset(&owner.user_id).await?).into())
}

/// `GET /pushrules/global/`.
pub async fn scope_rules(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(_): Ruma<get_pushrules_global_scope::v3::Request>,
) -> ApiResult<RumaResponse<get_pushrules_global_scope::v3::Response>> {
    Ok(get_pushrules_global_scope::v3::Response::new(state.push.ruleset(&owner.user_id).await?).into())
}

pub async fn get_rule(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_pushrule::v3::Request>,
) -> ApiResult<RumaResponse<get_pushrule::v3::Response>> {
    let rule = state.push.rule(&owner.user_id, request.kind.as_str(), &request.rule_id).await?;
    Ok(get_pushrule::v3::Response::new(rule).into())
}

pub async fn put_rule(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): RumaJson<set_pushrule::Request>,
) -> ApiResult<RumaResponse<set_pushrule::Response>> {
    let set_pushrule::Request { kind, rule_id, before, after, actions, conditions, pattern } = request;
    let update = RuleUpdate { actions, conditions, pattern };
    let at = (before.as_deref(), after.as_deref());
    state.push.put_rule(&owner.user_id, (&kind, &rule_id), update, at).await?;
    Ok(set_pushrule::Response {}.into())
}

pub async fn delete_rule(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<delete_pushrule::v3::Request>,
) -> ApiResult<RumaResponse<delete_pushrule::v3::Response>> {
    state.push.delete_rule(&owner.user_id, request.kind.as_str(), &request.rule_id).await?;
    Ok(delete_pushrule::v3::Response::new().into())
}

pub async fn get_enabled(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_pushrule_enabled::v3::Request>,
) -> ApiResult<RumaResponse<get_pushrule_enabled::v3::Response>> {
    let enabled = state.push.rule_enabled(&owner.user_id, request.kind.as_str(), &request.rule_id).await?;
    Ok(get_pushrule_enabled::v3::Response::new(enabled).into())
}

pub async fn set_enabled(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): RumaJson<set_pushrule_enabled::v3::Request>,
) -> ApiResult<RumaResponse<set_pushrule_enabled::v3::Response>> {
    let kind = request.kind.as_str();
    state.push.set_rule_enabled(&owner.user_id, kind, &request.rule_id, request.enabled).await?;
    Ok(set_pushrule_enabled::v3::Response::new().into())
}

pub async fn get_actions(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_pushrule_actions::v3::Request>,
) -> ApiResult<RumaResponse<get_pushrule_actions::v3::Response>> {
    let actions = state.push.rule_actions(&owner.user_id, request.kind.as_str(), &request.rule_id).await?;
    Ok(get_pushrule_actions::v3::Response::new(actions).into())
}

pub async fn set_actions(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): RumaJson<set_pushrule_actions::v3::Request>,
) -> ApiResult<RumaResponse<set_pushrule_actions::v3::Response>> {
    let kind = request.kind.as_str();
    state.push.set_rule_actions(&owner.user_id, kind, &request.rule_id, request.actions).await?;
    Ok(set_pushrule_actions::v3::Response::new().into())
}

pub async fn pushers(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(_): Ruma<get_pushers::v3::Request>,
) -> ApiResult<RumaResponse<get_pushers::v3::Response>> {
    Ok(get_pushers::v3::Response::new(state.push.pushers(&owner.user_id).await?).into())
}

pub async fn set_pusher(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): RumaJson<set_pusher::Request>,
) -> ApiResult<RumaResponse<set_pusher::Response>> {
    state.push.set_pusher(&owner.user_id, Value::Object(request.pusher)).await?;
    Ok(set_pusher::Response {}.into())
}

/// `GET /notifications`; a negative limit is refused with `M_INVALID_PARAM` (ruma's
/// type), as Synapse refuses it.
pub async fn notifications(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_notifications::v3::Request>,
) -> ApiResult<RumaResponse<get_notifications::v3::Response>> {
    let limit = request.limit.map(|limit| i64::try_from(u64::from(limit)).unwrap_or(i64::MAX));
    let highlights = request.only.as_deref() == Some("highlight");
    let (notifications, next_token) =
        state.push.notifications(&owner.user_id, request.from.as_deref(), limit, highlights).await?;
    let mut answer = get_notifications::v3::Response::new(notifications);
    answer.next_token = next_token;
    Ok(answer.into())
}
