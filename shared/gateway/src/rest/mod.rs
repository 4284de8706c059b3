//! What REST BFFs share: extractors whose rejections are gateway errors (problem+json), not
//! axum's plain-text ones; JSON Schema validation of bodies and parameters; and
//! [`idempotency`] for `Idempotency-Key`.

pub mod idempotency;

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use http::StatusCode;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::GatewayError;
use crate::inbound::body_limit::BodyLimit;

/// `axum::Json` with a branded 400.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = GatewayError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = BodyLimit::of(&request);
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(GatewayError::BadRequest("send the body as `Content-Type: application/json`".into()))
            }
            Err(JsonRejection::BytesRejection(rejection)) => Err(body_rejection(rejection, limit)),
            Err(rejection) => Err(GatewayError::BadRequest(rejection.body_text())),
        }
    }
}

/// `axum::extract::Path` with a branded 400.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection: PathRejection| GatewayError::BadRequest(rejection.body_text()))
    }
}

/// `axum::extract::Query` with a branded 400.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| GatewayError::BadRequest(rejection.body_text()))
    }
}

/// A body that could not be read: cut at the stack's limit (413), or broken off (400).
pub(crate) fn body_rejection(rejection: BytesRejection, limit: usize) -> GatewayError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        GatewayError::PayloadTooLarge { limit }
    } else {
        GatewayError::BadRequest(format!("could not read the request body: {}", rejection.body_text()))
    }
}

/// A JSON Schema (2020-12, the dialect of OpenAPI 3.1) that request bodies and parameters are
/// checked against: the schema a REST BFF publishes is the one it enforces, so the document
/// cannot promise what the code does not check. Every violation is reported, each by JSON
/// pointer (bodies) or parameter name, as RFC 9457's `errors` member.
pub struct JsonSchema {
    validator: jsonschema::Validator,
    /// Top-level properties of integer type: query values are text, read as numbers for these.
    integers: Vec<String>,
}

impl std::fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonSchema")
    }
}

/// Most violations one refusal lists; a body can break a schema in unboundedly many places.
const MAX_VIOLATIONS: usize = 20;
/// Longest detail of one violation: a validator's message may quote the offending value, which
/// is the client's and may be as large as the body limit.
const MAX_DETAIL_CHARS: usize = 160;

fn violation(
    pointer: Option<String>,
    parameter: Option<String>,
    error: &jsonschema::ValidationError<'_>,
) -> crate::error::Violation {
    let mut detail = error.to_string();
    if let Some((cut, _)) = detail.char_indices().nth(MAX_DETAIL_CHARS) {
        detail.truncate(cut);
        detail.push('…');
    }
    crate::error::Violation { pointer, parameter, detail }
}

impl JsonSchema {
    /// `schema` with `$ref`s into `#/components/schemas/...` resolved against `components`
    /// (an OpenAPI document's `components`).
    pub fn new(schema: &serde_json::Value, components: &serde_json::Value) -> Result<Self, GatewayError> {
        let mut root = schema.clone();
        if let Some(object) = root.as_object_mut() {
            object.insert("components".into(), components.clone());
        }
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&root)
            .map_err(|e| GatewayError::Internal(format!("schema does not compile: {e}")))?;
        let integers = schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, property)| {
                property["type"] == "integer"
                    || property["type"].as_array().is_some_and(|t| t.contains(&"integer".into()))
            })
            .map(|(name, _)| name.clone())
            .collect();
        Ok(Self { validator, integers })
    }

    /// The body as JSON if it is valid: 400 when it is not JSON at all, 422 naming each
    /// violation when it is JSON but not what the schema allows. A number with no fractional
    /// part comes back as an integer (`2.0` as `2`): JSON Schema counts it as one, so the types
    /// the body is read into must too.
    pub fn body(&self, body: &[u8]) -> Result<serde_json::Value, GatewayError> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| GatewayError::Invalid {
            unprocessable: false,
            message: format!("the body is not JSON: {e}"),
            violations: vec![],
        })?;
        let violations: Vec<crate::error::Violation> = self
            .validator
            .iter_errors(&value)
            .take(MAX_VIOLATIONS)
            .map(|error| violation(Some(error.instance_path.to_string()), None, &error))
            .collect();
        if violations.is_empty() {
            Ok(integral_numbers_as_integers(value))
        } else {
            Err(GatewayError::Invalid {
                unprocessable: true,
                message: "the body does not match the schema; `errors` lists each problem".into(),
                violations,
            })
        }
    }

    /// Query parameters (an object schema of `name -> schema`), each value read as the type its
    /// schema names: 400 naming each bad or unknown parameter.
    pub fn query(&self, query: Option<&str>) -> Result<serde_json::Value, GatewayError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query.unwrap_or_default()).map_err(|e| GatewayError::Invalid {
                unprocessable: false,
                message: format!("malformed query string: {e}"),
                violations: vec![],
            })?;
        let mut object = serde_json::Map::new();
        let mut violations = Vec::new();
        for (name, raw) in pairs {
            // A number where the schema wants one (text that is not a number stays text, for the
            // schema to refuse by name).
            let value = match self.integers.contains(&name) {
                true => raw.parse::<i64>().map(serde_json::Value::from).unwrap_or(serde_json::Value::String(raw)),
                false => serde_json::Value::String(raw),
            };
            if object.insert(name.clone(), value).is_some() {
                violations.push(crate::error::Violation {
                    pointer: None,
                    parameter: Some(name),
                    detail: "given more than once".into(),
                });
            }
        }
        let value = serde_json::Value::Object(object);
        for error in self.validator.iter_errors(&value).take(MAX_VIOLATIONS) {
            let path = error.instance_path.to_string();
            // An unknown parameter is reported at the root, its name in the message.
            let parameter = match path.trim_start_matches('/') {
                "" => None,
                name => Some(name.split('/').next().unwrap_or(name).to_owned()),
            };
            violations.push(violation(None, parameter, &error));
        }
        if violations.is_empty() {
            Ok(value)
        } else {
            Err(GatewayError::Invalid {
                unprocessable: false,
                message: "the query parameters do not match the schema; `errors` lists each problem".into(),
                violations,
            })
        }
    }
}

/// `value` with every number that has no fractional part (`2.0`, `1e2`) written as an integer,
/// where one holds it. JSON Schema's `integer` is any such number, while serde reads only an
/// integer token into an integer type: without this, a body the schema accepts would not read.
fn integral_numbers_as_integers(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            // i64::MAX as f64 is 2^63, just past the largest i64: compare with < (u64 likewise).
            let integer = if float.fract() != 0.0 || !float.is_finite() {
                None
            } else if float >= i64::MIN as f64 && float < i64::MAX as f64 {
                Some(Value::from(float as i64))
            } else if float >= 0.0 && float < u64::MAX as f64 {
                Some(Value::from(float as u64))
            } else {
                None
            };
            integer.unwrap_or(Value::Number(number))
        }
        Value::Array(items) => Value::Array(items.into_iter().map(integral_numbers_as_integers).collect()),
        Value::Object(members) => Value::Object(
            members.into_iter().map(|(name, member)| (name, integral_numbers_as_integers(member))).collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn integral_numbers_read_as_integers() {
        let value: serde_json::Value = serde_json::from_str(
            r#"{"a": [2.0, 1e2, -0.0, 2.5, 3], "b": {"c": 1e300, "d": -9.223372036854775808e18}}"#,
        )
        .unwrap();
        let normalised = integral_numbers_as_integers(value);
        assert_eq!(normalised, json!({ "a": [2, 100, 0, 2.5, 3], "b": { "c": 1e300, "d": i64::MIN } }));
        assert!(normalised["a"][0].is_i64() && normalised["b"]["c"].is_f64());
    }
}
