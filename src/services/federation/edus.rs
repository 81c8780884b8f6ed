//! EDUs of a transaction (`services::inbound` receives them), dispatched by type through
//! one registry: each service that
//! handles an EDU type registers exactly one handler for it at startup (typing and read
//! receipts: the ephemeral service; profile updates: the remote-profile cache;
//! device-list and signing-key updates: the keys service; to-device messages: the
//! devices' inboxes). The registry parses the content into the handler's type, so a
//! malformed EDU is dropped on its own; presence and unknown types are ignored.

use std::collections::HashMap;
use std::future::Future;

use futures_util::future::BoxFuture;
use ruma::{OwnedRoomId, OwnedServerName, OwnedUserId, ServerName};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::MatrixError;

/// Why an EDU was dropped. EDUs get no answer: this is only logged.
#[derive(Debug, thiserror::Error)]
pub enum EduRefused {
    #[error("not an EDU: {0}")]
    Malformed(serde_json::Error),
    #[error("invalid {edu_type} content: {error}")]
    InvalidContent { edu_type: String, error: serde_json::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("{origin} cannot speak for {user_id}")]
    NotItsUser { origin: OwnedServerName, user_id: OwnedUserId },
    #[error("{user_id} is not joined to {room_id}")]
    NotJoined { user_id: OwnedUserId, room_id: OwnedRoomId },
    #[error(transparent)]
    Failed(#[from] MatrixError),
}

impl From<sqlx::Error> for EduRefused {
    fn from(err: sqlx::Error) -> Self {
        Self::Failed(err.into())
    }
}

impl EduRefused {
    /// Unless `user_id` belongs to `origin`: a server speaks only for its own users.
    pub fn unless_own_user(origin: &ServerName, user_id: &ruma::UserId) -> Result<(), Self> {
        if user_id.server_name() == origin {
            return Ok(());
        }
        Err(Self::NotItsUser { origin: origin.to_owned(), user_id: user_id.to_owned() })
    }
}

pub type EduResult = Result<(), EduRefused>;

type Handler =
    Box<dyn Fn(OwnedServerName, &RawValue) -> Result<BoxFuture<'static, EduResult>, EduRefused> + Send + Sync>;

/// What an EDU is, before its content is trusted to fit its type.
#[derive(Deserialize)]
struct Envelope<'a> {
    edu_type: &'a str,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

/// The handlers of incoming EDUs, one per type.
#[derive(Default)]
pub struct EduHandlers {
    handlers: HashMap<&'static str, Handler>,
}

impl EduHandlers {
    /// Registers the one handler of `edu_type`, which takes the EDU's content as `C`.
    /// Two handlers for one type are a wiring mistake, caught when the server starts.
    pub fn register<C, F, Fut>(&mut self, edu_type: &'static str, handler: F)
    where
        C: DeserializeOwned,
        F: Fn(OwnedServerName, C) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = EduResult> + Send + 'static,
    {
        let parse_and_handle = move |origin: OwnedServerName, content: &RawValue| {
            let content = serde_json::from_str::<C>(content.get())
                .map_err(|error| EduRefused::InvalidContent { edu_type: edu_type.to_owned(), error })?;
            Ok(Box::pin(handler(origin, content)) as BoxFuture<'static, EduResult>)
        };
        let previous = self.handlers.insert(edu_type, Box::new(parse_and_handle));
        assert!(previous.is_none(), "two handlers registered for {edu_type}");
    }

    /// The handler's work for one EDU (none for a type nothing handles), or why it is
    /// refused before any.
    pub fn handle(
        &self,
        origin: &ServerName,
        edu: &Value,
    ) -> Result<Option<BoxFuture<'static, EduResult>>, EduRefused> {
        let raw = serde_json::value::to_raw_value(edu).map_err(EduRefused::Malformed)?;
        let envelope: Envelope<'_> = serde_json::from_str(raw.get()).map_err(EduRefused::Malformed)?;
        let Some(handler) = self.handlers.get(envelope.edu_type) else {
            tracing::trace!(%origin, edu_type = envelope.edu_type, "ignoring EDU of a type nothing handles");
            return Ok(None);
        };
        let empty = RawValue::from_string("{}".to_owned()).map_err(EduRefused::Malformed)?;
        handler(origin.to_owned(), envelope.content.unwrap_or(&empty)).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use ruma::api::federation::transactions::edu::{Edu, TypingContent};
    use ruma::{owned_room_id, owned_user_id};

    #[tokio::test]
    async fn each_type_reaches_its_handler_typed_and_bad_content_is_refused() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut handlers = EduHandlers::default();
        let record = seen.clone();
        handlers.register("m.typing", move |origin, typing: TypingContent| {
            record.lock().unwrap().push((origin.to_string(), typing.typing));
            async { Ok(()) }
        });
        let origin: OwnedServerName = "x".try_into().unwrap();
        let typing = Edu::Typing(TypingContent::new(owned_room_id!("!r:x"), owned_user_id!("@a:x"), true));
        let typing = serde_json::to_value(typing).unwrap();
        handlers.handle(&origin, &typing).unwrap().unwrap().await.unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![("x".to_owned(), true)]);

        // Shapes no type has, as JSON text.
        let parse = |text: &str| -> Value { serde_json::from_str(text).unwrap() };
        let custom = parse(r#"{ "edu_type": "org.example.thing", "content": {} }"#);
        assert!(handlers.handle(&origin, &custom).unwrap().is_none());
        let bad = parse(r#"{ "edu_type": "m.typing", "content": { "room_id": 5 } }"#);
        assert!(matches!(handlers.handle(&origin, &bad), Err(EduRefused::InvalidContent { .. })));
        assert!(matches!(handlers.handle(&origin, &parse("[1]")), Err(EduRefused::Malformed(_))));
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[test]
    #[should_panic(expected = "two handlers")]
    fn a_type_has_one_handler() {
        let mut handlers = EduHandlers::default();
        handlers.register("m.typing", |_, _: Value| async { Ok(()) });
        handlers.register("m.typing", |_, _: Value| async { Ok(()) });
    }
}
