//! Query strings read into typed structs the way Synapse reads them: a value that does
//! not parse is `400 M_INVALID_PARAM` naming the parameter, a repeated parameter counts
//! once (its last value), and parameters an endpoint does not know are ignored.

use std::collections::BTreeMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::Uri;
use axum::http::request::Parts;
use serde::de::value::{Error as ValueError, MapDeserializer, StringDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer};

use crate::error::{ApiResult, MatrixError};
use crate::services::admin::Page;

/// Lists answer at most this many entries a page.
const MAX_PAGE: i64 = 1000;
/// A page's size when the request names none, as in Synapse.
const DEFAULT_PAGE: i64 = 100;

/// The query string as `T`.
pub struct AdminQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for AdminQuery<T> {
    type Rejection = MatrixError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        from_uri(&parts.uri).map(Self)
    }
}

fn from_uri<T: DeserializeOwned>(uri: &Uri) -> ApiResult<T> {
    let Query(params) = Query::<BTreeMap<String, String>>::try_from_uri(uri)
        .map_err(|_| MatrixError::invalid_param("Invalid query string"))?;
    let params = MapDeserializer::<_, ValueError>::new(params.into_iter().map(|(name, text)| (name, Text(text))));
    serde_path_to_error::deserialize(params).map_err(|err| {
        let (name, message) = (err.path().to_string(), err.inner().to_string());
        let message = match message.contains(NAME) {
            true => message.replace(NAME, &name),
            false => format!("Query parameter \"{name}\": {message}"),
        };
        MatrixError::invalid_param(message)
    })
}

/// Stands for the parameter's name in the messages below, which are Synapse's.
const NAME: &str = "{name}";

/// A parameter's text: present for an `Option`, the text for anything else.
struct Text(String);

impl<'de> Deserializer<'de> for Text {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_string(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let text: StringDeserializer<ValueError> = self.0.into_deserializer();
        visitor.visit_enum(text)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct newtype_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

impl IntoDeserializer<'_, ValueError> for Text {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// `true` or `false` (`deserialize_with` for an `Option<bool>` with `default`).
pub fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    match String::deserialize(deserializer)?.as_str() {
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        _ => Err(de::Error::custom("Boolean query parameter \"{name}\" must be one of ['true', 'false']")),
    }
}

/// A non-negative integer (`deserialize_with` for an `Option<i64>` with `default`).
pub fn count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let value: i64 = String::deserialize(deserializer)?
        .parse()
        .map_err(|_| de::Error::custom("Query parameter \"{name}\" must be an integer"))?;
    if value < 0 {
        return Err(de::Error::custom("Query parameter {name} must be a string representing a positive integer."));
    }
    Ok(Some(value))
}

/// `dir`: `f` (forwards) or `b` (backwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forwards,
    Backwards,
}

impl<'de> Deserialize<'de> for Direction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match String::deserialize(deserializer)?.as_str() {
            "f" => Ok(Self::Forwards),
            "b" => Ok(Self::Backwards),
            _ => Err(de::Error::custom("Query parameter \"{name}\" must be one of ['b', 'f']")),
        }
    }
}

/// Whether a list runs backwards: `dir`, or `default` when absent (some lists are newest
/// first unless asked).
pub fn backwards(dir: Option<Direction>, default: bool) -> bool {
    dir.map_or(default, |dir| dir == Direction::Backwards)
}

/// `from` and `limit` (100 by default, at most [`MAX_PAGE`]).
pub fn page(from: Option<i64>, limit: Option<i64>) -> Page {
    Page { from: from.unwrap_or(0), limit: limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE) }
}

/// An `order_by` value `parse` knows (`deserialize_with` helper for `Option<T>`).
pub fn order<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).map(Some).ok_or_else(|| de::Error::custom(format!("Unknown value for {NAME}: {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: DeserializeOwned>(query: &str) -> ApiResult<T> {
        from_uri(&format!("/x?{query}").parse().unwrap())
    }

    #[derive(Deserialize)]
    struct Example {
        #[serde(default, deserialize_with = "flag")]
        valid: Option<bool>,
        #[serde(default, deserialize_with = "count")]
        from: Option<i64>,
        #[serde(default)]
        dir: Option<Direction>,
        #[serde(default)]
        name: Option<String>,
        #[serde(default, deserialize_with = "by_size")]
        order_by: Option<u8>,
    }

    fn by_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u8>, D::Error> {
        order(deserializer, |text| (text == "size").then_some(1))
    }

    #[test]
    fn parameters_are_typed_and_checked() {
        let example: Example = parse("valid=false&from=3&dir=b&name=a+b&access_token=x&order_by=size").unwrap();
        assert_eq!(example.order_by, Some(1));
        assert_eq!(example.valid, Some(false));
        assert_eq!(example.from, Some(3));
        assert_eq!(example.dir, Some(Direction::Backwards));
        assert_eq!(example.name.as_deref(), Some("a b"));
        let example: Example = parse("from=1&from=2").unwrap();
        assert_eq!((example.from, example.valid, example.dir), (Some(2), None, None));
        for (query, message) in [
            ("valid=yes", "Boolean query parameter \"valid\" must be one of ['true', 'false']"),
            ("from=-1", "Query parameter from must be a string representing a positive integer."),
            ("from=", "Query parameter \"from\" must be an integer"),
            ("dir=up", "Query parameter \"dir\" must be one of ['b', 'f']"),
            ("order_by=name", "Unknown value for order_by: name"),
        ] {
            let err = parse::<Example>(query).err().unwrap();
            assert_eq!((err.errcode, err.message.as_str()), ("M_INVALID_PARAM", message), "{query}");
        }
    }
}
