//! Members of trimmed answers.
//!
//! A BFF asks each backend only for the fields its client selected, so a backend's answer may
//! lack any member but the id. A missing member is [`Member::Absent`], never a default: a
//! resolver that needs a member it did not ask for gets an error (and a failing test), not a
//! silent `""` or `0` in a client's response.

use bff_upstream::UpstreamError;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Default, PartialEq)]
pub enum Member<T> {
    /// Not in the answer: not asked for, or left out by the backend.
    #[default]
    Absent,
    Present(T),
}

impl<T> Member<T> {
    /// The member, or the error that says a trimmed answer lacks what a caller needed.
    pub fn required(&self, service: &'static str, name: &'static str) -> Result<&T, UpstreamError> {
        match self {
            Self::Present(value) => Ok(value),
            Self::Absent => Err(absent(service, name)),
        }
    }

    /// [`Member::required`], by value.
    pub fn into_required(self, service: &'static str, name: &'static str) -> Result<T, UpstreamError> {
        match self {
            Self::Present(value) => Ok(value),
            Self::Absent => Err(absent(service, name)),
        }
    }

    /// The member when present; for callers that show an absent member as absent.
    pub fn into_option(self) -> Option<T> {
        match self {
            Self::Present(value) => Some(value),
            Self::Absent => None,
        }
    }

    /// `value` when the caller asked for it, else absent: for protobuf answers, where a field
    /// outside the read mask decodes as its zero value.
    pub fn masked(asked: bool, value: impl FnOnce() -> T) -> Self {
        if asked { Self::Present(value()) } else { Self::Absent }
    }
}

fn absent(service: &'static str, name: &'static str) -> UpstreamError {
    UpstreamError::BadBody {
        service,
        reason: format!("the answer has no `{name}`: it was not asked for, or the backend left it out"),
    }
}

/// With `#[serde(default)]` on the field, a missing key stays [`Member::Absent`] and a present
/// one (JSON `null` included, for `Member<Option<T>>`) is [`Member::Present`].
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Member<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Self::Present)
    }
}
