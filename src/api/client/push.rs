//! Push rules, pushers and notifications.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::extract::{AppState, MatrixJson, Requester};
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
pub async fn all_rules(State(state): State<AppState>, Requester(owner): Requester) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "global": state.push.ruleset(&owner.user_id).await? })))
}

/// `GET /pushrules/global/`.
pub async fn scope_rules(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(scope): Path<String>,
) -> ApiResult<Json<Value>> {
    global(&scope)?;
    Ok(Json(json!(state.push.ruleset(&owner.user_id).await?)))
}

pub async fn get_rule(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    global(&scope)?;
    Ok(Json(state.push.rule(&owner.user_id, &kind, &rule_id).await?))
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
) -> ApiResult<Json<Value>> {
    global(&scope)?;
    let at = (position.before.as_deref(), position.after.as_deref());
    state.push.put_rule(&owner.user_id, (&kind, &rule_id), update, at).await?;
    Ok(Json(json!({})))
}

pub async fn delete_rule(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    global(&scope)?;
    state.push.delete_rule(&owner.user_id, &kind, &rule_id).await?;
    Ok(Json(json!({})))
}

pub async fn get_enabled(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    global(&scope)?;
    Ok(Json(state.push.rule_enabled(&owner.user_id, &kind, &rule_id).await?))
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
) -> ApiResult<Json<Value>> {
    global(&scope)?;
    state.push.set_rule_enabled(&owner.user_id, &kind, &rule_id, body.enabled).await?;
    Ok(Json(json!({})))
}

pub async fn get_actions(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    global(&scope)?;
    Ok(Json(state.push.rule_actions(&owner.user_id, &kind, &rule_id).await?))
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
) -> ApiResult<Json<Value>> {
    global(&scope)?;
    state.push.set_rule_actions(&owner.user_id, &kind, &rule_id, body.actions).await?;
    Ok(Json(json!({})))
}

pub async fn pushers(State(state): State<AppState>, Requester(owner): Requester) -> ApiResult<Json<Value>> {
    Ok(Json(state.push.pushers(&owner.user_id).await?))
}

pub async fn set_pusher(
    State(state): State<AppState>,
    Requester(owner): Requester,
    MatrixJson(pusher): MatrixJson<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    state.push.set_pusher(&owner.user_id, Value::Object(pusher)).await?;
    Ok(Json(json!({})))
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
) -> ApiResult<Json<Value>> {
    let limit = query.limit.as_deref().map(str::parse::<i64>).transpose();
    let limit = limit.map_err(|_| MatrixError::invalid_param("limit must be an integer"))?;
    let highlights = query.only.as_deref() == Some("highlight");
    Ok(Json(state.push.notifications(&owner.user_id, query.from.as_deref(), limit, highlights).await?))
}
