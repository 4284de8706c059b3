//! Field trimming: each resolver asks its backend only for the fields the client selected.
//!
//! A BFF declares, per GraphQL type that a backend serves, which backend fields each GraphQL
//! field needs ([`FieldMap`]). A resolver reads its own selection (async-graphql's lookahead,
//! fragments and inline fragments flattened) and gets the union of what those fields need
//! ([`BackendFields`]): REST clients send it as `fields=a,b`, gRPC clients as a
//! `google.protobuf.FieldMask`. A selection that needs nothing from the backend (only the id,
//! say, which the BFF already knows) needs no call at all.
//!
//! The maps are checked against the schema when the endpoint is built ([`FieldMap::check`]):
//! every field of the type must be mapped, even to nothing, so a field added to the schema
//! cannot be silently served from an answer that never asked for it.
//!
//! `[graphql] trim_fields = false` turns trimming off (every call asks for everything): a kill
//! switch for a backend whose field selection misbehaves, and the baseline of the trimming
//! benchmark.

use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
use async_graphql::{Context, SelectionField};

use crate::GatewayError;

/// Whether resolvers trim; put in the schema's data by [`configure`](super::configure).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trimming(pub bool);

/// The backend fields one GraphQL type's fields need, by GraphQL field name.
#[derive(Debug)]
pub struct FieldMap {
    type_name: &'static str,
    fields: &'static [(&'static str, &'static [&'static str])],
}

impl FieldMap {
    /// `fields`: every field of GraphQL type `type_name`, each with the backend fields it reads
    /// (none for fields the BFF computes itself or resolves through another backend).
    pub const fn new(type_name: &'static str, fields: &'static [(&'static str, &'static [&'static str])]) -> Self {
        Self { type_name, fields }
    }

    /// What the sub-selection of `field` (a field returning this type, or a list of it) needs.
    pub fn select(&self, ctx: &Context<'_>, field: SelectionField<'_>) -> BackendFields {
        self.select_at(ctx, field, &[])
    }

    /// Like [`FieldMap::select`] for a type nested below `field` along `path`
    /// (`["edges", "node"]` for the nodes of a connection).
    pub fn select_at(&self, ctx: &Context<'_>, field: SelectionField<'_>, path: &[&str]) -> BackendFields {
        if ctx.data_opt::<Trimming>().is_some_and(|trimming| !trimming.0) {
            return BackendFields::All;
        }
        let mut level = vec![field];
        for step in path {
            level = level.iter().flat_map(|f| f.selection_set()).filter(|f| f.name() == *step).collect();
        }
        let mut needed: Vec<&'static str> = Vec::new();
        for selected in level.iter().flat_map(|f| f.selection_set()) {
            // Unmapped names are `__typename` (the check below guarantees the rest).
            if let Some((_, backend)) = self.fields.iter().find(|(name, _)| *name == selected.name()) {
                needed.extend_from_slice(backend);
            }
        }
        needed.sort_unstable();
        needed.dedup();
        BackendFields::Only(needed)
    }

    /// The names of every field this map covers.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.fields.iter().map(|(name, _)| *name)
    }

    /// What a REST sparse fieldset (`?fields=a,b`, by the names this map's type uses) needs;
    /// an unknown name is the error.
    pub fn select_names<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Result<BackendFields, &'n str> {
        let mut needed: Vec<&'static str> = Vec::new();
        for name in names {
            let (_, backend) = self.fields.iter().find(|(field, _)| *field == name).ok_or(name)?;
            needed.extend_from_slice(backend);
        }
        Ok(BackendFields::Only(needed).with(&[]))
    }

    /// Fails unless the map names exactly the fields `sdl` gives its type.
    pub fn check(&self, sdl: &str) -> Result<(), GatewayError> {
        let fail = |why: String| GatewayError::Internal(format!("field map of `{}`: {why}", self.type_name));
        let document = async_graphql::parser::parse_schema(sdl).map_err(|e| fail(format!("SDL: {e}")))?;
        let fields = document
            .definitions
            .iter()
            .find_map(|definition| match definition {
                TypeSystemDefinition::Type(ty) if ty.node.name.node == self.type_name => match &ty.node.kind {
                    TypeKind::Object(object) => Some(&object.fields),
                    _ => None,
                },
                _ => None,
            })
            .ok_or_else(|| fail("no such object type in the schema".into()))?;
        let in_schema: Vec<&str> = fields.iter().map(|f| f.node.name.node.as_str()).collect();
        if let Some(unmapped) = in_schema.iter().find(|name| !self.fields.iter().any(|(f, _)| f == *name)) {
            return Err(fail(format!("`{unmapped}` is in the schema but not mapped to backend fields")));
        }
        if let Some((stale, _)) = self.fields.iter().find(|(name, _)| !in_schema.contains(name)) {
            return Err(fail(format!("`{stale}` is mapped but not in the schema")));
        }
        Ok(())
    }
}

/// The backend fields a selection needs. Hashable, so a data loader can key by it and a memo
/// can tell two differently trimmed loads apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendFields {
    /// Trimming is off: ask for everything.
    All,
    /// Exactly these, sorted; empty when the selection needs nothing from the backend.
    Only(Vec<&'static str>),
}

/// By the number of fields only: a loader's keys pair it with an id, which tells them apart, and
/// the keys of one batch mostly share one set, so hashing every name (SipHash over each string,
/// on every insert and lookup of every key) was a visible share of a page of 10 orders' CPU.
/// Equal sets have equal lengths, so equal values still hash alike.
impl std::hash::Hash for BackendFields {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            Self::All => state.write_u8(0),
            Self::Only(fields) => state.write_usize(fields.len() + 1),
        }
    }
}

impl BackendFields {
    /// What a typed client takes: the fields, or empty for "everything".
    pub fn as_slice(&self) -> &[&'static str] {
        match self {
            Self::All => &[],
            Self::Only(fields) => fields,
        }
    }

    /// Whether the backend must be called at all.
    pub fn needs_call(&self) -> bool {
        !matches!(self, Self::Only(fields) if fields.is_empty())
    }

    /// These and `extra` (fields the BFF itself needs, such as an id to join on).
    pub fn with(mut self, extra: &[&'static str]) -> Self {
        if let Self::Only(fields) = &mut self {
            fields.extend_from_slice(extra);
            fields.sort_unstable();
            fields.dedup();
        }
        self
    }

    /// The union, for a batch that serves several selections with one call.
    pub fn union<'a>(sets: impl IntoIterator<Item = &'a BackendFields>) -> Self {
        let mut all: Vec<&'static str> = Vec::new();
        for set in sets {
            match set {
                Self::All => return Self::All,
                Self::Only(fields) => all.extend_from_slice(fields),
            }
        }
        Self::Only(all).with(&[])
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::BackendFields;

    #[test]
    fn loader_keys_stay_apart_by_content_and_together_when_equal() {
        let built_apart = BackendFields::Only(vec!["name"]).with(&["id"]);
        let keys: HashSet<(String, BackendFields)> = [
            ("p-1".to_owned(), BackendFields::Only(vec!["id", "name"])),
            ("p-1".to_owned(), built_apart),
            ("p-1".to_owned(), BackendFields::Only(vec!["id", "price"])),
            ("p-1".to_owned(), BackendFields::All),
            ("p-2".to_owned(), BackendFields::Only(vec!["id", "name"])),
        ]
        .into_iter()
        .collect();
        // Same length, other names: a key of its own; the same set however it was built: one.
        assert_eq!(keys.len(), 4);
        assert!(keys.contains(&("p-1".to_owned(), BackendFields::Only(vec!["id", "price"]))));
    }
}
