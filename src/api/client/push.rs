//! Push rules, pushers and notifications.

use axum::extract::{Path, Query, State};
use ruma::api::client::push::{
    delete_pushrule, get_notifications, get_pushers, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
    get_pushrules_all, get_pushrules_global_scope, set_pusher, set_pushrule, set_pushrule_actions,
    set_pushrule_enabled,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api::extract::{AppState, MatrixJson, Requester, RumaResponse};
use crate::error::{ApiResult, MatrixError};
use crate::services::push::RuleUpdate;

/// Only the `global` scope exists.
fn global(scope: &str) -> ApiResult<()> {
    if scope != "global" {
        return Err(MatrixError::invalid_param("The only push rule scope is global"));
    }
    Ok(())
}

/// `GET /pushrules/`.
pub async fn all_rules(
    State(state): State<AppState>,
    Requester(owner): Requester,
) -> ApiResult<RumaResponse<get_pushrules_all::v3::Response>> {
    Ok(get_pushrules_all::v3::Response::new(state.push.ruleset(&owner.user_id).await?).into())
}

/// `GET /pushrules/global/`.
pub async fn scope_rules(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(scope): Path<String>,
) -> ApiResult<RumaResponse<get_pushrules_global_scope::v3::Response>> {
    global(&scope)?;
    Ok(get_pushrules_global_scope::v3::Response::new(state.push.ruleset(&owner.user_id).await?).into())
}

pub async fn get_rule(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
) -> ApiResult<RumaResponse<get_pushrule::v3::Response>> {
    global(&scope)?;
    Ok(get_pushrule::v3::Response::new(state.push.rule(&owner.user_id, &kind, &rule_id).await?).into())
}

#[derive(Deserialize)]
pub struct Position {
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

pub async fn put_rule(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
    Query(position): Query<Position>,
    MatrixJson(update): MatrixJson<RuleUpdate>,
) -> ApiResult<RumaResponse<set_pushrule::v3::Response>> {
    global(&scope)?;
    let at = (position.before.as_deref(), position.after.as_deref());
    state.push.put_rule(&owner.user_id, (&kind, &rule_id), update, at).await?;
    Ok(set_pushrule::v3::Response::new().into())
}

pub async fn delete_rule(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
) -> ApiResult<RumaResponse<delete_pushrule::v3::Response>> {
    global(&scope)?;
    state.push.delete_rule(&owner.user_id, &kind, &rule_id).await?;
    Ok(delete_pushrule::v3::Response::new().into())
}

pub async fn get_enabled(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
) -> ApiResult<RumaResponse<get_pushrule_enabled::v3::Response>> {
    global(&scope)?;
    Ok(get_pushrule_enabled::v3::Response::new(state.push.rule_enabled(&owner.user_id, &kind, &rule_id).await?).into())
}

#[derive(Deserialize)]
pub struct Enabled {
    enabled: bool,
}

pub async fn set_enabled(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
    MatrixJson(body): MatrixJson<Enabled>,
) -> ApiResult<RumaResponse<set_pushrule_enabled::v3::Response>> {
    global(&scope)?;
    state.push.set_rule_enabled(&owner.user_id, &kind, &rule_id, body.enabled).await?;
    Ok(set_pushrule_enabled::v3::Response::new().into())
}

pub async fn get_actions(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
) -> ApiResult<RumaResponse<get_pushrule_actions::v3::Response>> {
    global(&scope)?;
    Ok(get_pushrule_actions::v3::Response::new(state.push.rule_actions(&owner.user_id, &kind, &rule_id).await?).into())
}

#[derive(Deserialize)]
pub struct Actions {
    actions: Vec<ruma::push::Action>,
}

pub async fn set_actions(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
    MatrixJson(body): MatrixJson<Actions>,
) -> ApiResult<RumaResponse<set_pushrule_actions::v3::Response>> {
    global(&scope)?;
    state.push.set_rule_actions(&owner.user_id, &kind, &rule_id, body.actions).await?;
    Ok(set_pushrule_actions::v3::Response::new().into())
}

pub async fn pushers(
    State(state): State<AppState>,
    Requester(owner): Requester,
) -> ApiResult<RumaResponse<get_pushers::v3::Response>> {
    Ok(get_pushers::v3::Response::new(state.push.pushers(&owner.user_id).await?).into())
}

pub async fn set_pusher(
    State(state): State<AppState>,
    Requester(owner): Requester,
    MatrixJson(pusher): MatrixJson<Map<String, Value>>,
) -> ApiResult<RumaResponse<set_pusher::v3::Response>> {
    state.push.set_pusher(&owner.user_id, Value::Object(pusher)).await?;
    Ok(set_pusher::v3::Response::new().into())
}

#[derive(Deserialize)]
pub struct NotificationsQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    only: Option<String>,
}

pub async fn notifications(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Query(query): Query<NotificationsQuery>,
) -> ApiResult<RumaResponse<get_notifications::v3::Response>> {
    let limit = query.limit.as_deref().map(str::parse::<i64>).transpose();
    let limit = limit.map_err(|_| MatrixError::invalid_param("limit must be an integer"))?;
    let highlights = query.only.as_deref() == Some("highlight");
    let (notifications, next_token) =
        state.push.notifications(&owner.user_id, query.from.as_deref(), limit, highlights).await?;
    let mut answer = get_notifications::v3::Response::new(notifications);
    answer.next_token = next_token;
    Ok(answer.into())
}
