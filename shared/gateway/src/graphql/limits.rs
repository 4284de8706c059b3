//! Abuse limits for GraphQL documents, enforced before async-graphql parses, validates or runs
//! anything: document size, tokens, then (on the one parse) depth, cost, aliases, root fields,
//! fields after fragment expansion, directives per field, and introspection.
//!
//! Fragment spreads are what make a small document expensive: a fragment that spreads the next
//! one twice, 26 levels deep, expands to 2^26 fields. Each fragment's figures are computed once
//! and reused at every spread (memoised), so the analysis is linear in the document, whatever it
//! would expand to; an explosive document is refused from its figures without being expanded.
//! Every operation and every fragment definition is checked, not just the one that would run,
//! because async-graphql's validation walks them all.

use std::collections::HashMap;

use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet, Type, TypeKind,
    TypeSystemDefinition,
};
use async_graphql::{Name, Value, Variables};
use serde::Deserialize;

use crate::ErrorCode;
use crate::GatewayError;
use crate::config::{Problems, Validate};

/// Largest document (the `query` string), in bytes.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 16 * 1024;
/// Most lexical tokens in a document: a screen's query is a few hundred.
pub const DEFAULT_MAX_TOKENS: usize = 2_000;
/// Deepest selection, counting the root field as 1.
pub const DEFAULT_MAX_DEPTH: u32 = 10;
/// Highest cost (see [`CostModel`]).
pub const DEFAULT_MAX_COST: u64 = 1_000;
/// Most aliases in an operation after fragment expansion.
pub const DEFAULT_MAX_ALIASES: u64 = 30;
/// Most fields at the root of an operation after fragment expansion.
pub const DEFAULT_MAX_ROOT_FIELDS: u64 = 20;
/// Most fields in an operation (or fragment) after fragment expansion.
pub const DEFAULT_MAX_FIELDS: u64 = 500;
/// Most directives on one field, fragment spread or inline fragment.
pub const DEFAULT_MAX_DIRECTIVES_PER_FIELD: usize = 4;
/// Most operations in one batched request (a JSON array of requests).
pub const DEFAULT_MAX_BATCH: usize = 10;
/// Most errors one response carries; the rest are summed up in one last error.
pub const DEFAULT_MAX_ERRORS: usize = 20;
/// A list field with no page-size argument is assumed to hold this many items.
pub const DEFAULT_LIST_SIZE: u64 = 10;
/// The arguments that size a list field, in the order they are looked for.
const PAGE_SIZE_ARGUMENTS: [&str; 3] = ["first", "last", "limit"];

/// The limits one GraphQL BFF enforces, `[graphql.limits]` in its config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryLimits {
    pub max_document_bytes: usize,
    pub max_tokens: usize,
    pub max_depth: u32,
    pub max_cost: u64,
    pub max_aliases: u64,
    pub max_root_fields: u64,
    pub max_fields: u64,
    pub max_directives_per_field: usize,
    pub max_batch: usize,
    pub max_errors: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            max_tokens: DEFAULT_MAX_TOKENS,
            max_depth: DEFAULT_MAX_DEPTH,
            max_cost: DEFAULT_MAX_COST,
            max_aliases: DEFAULT_MAX_ALIASES,
            max_root_fields: DEFAULT_MAX_ROOT_FIELDS,
            max_fields: DEFAULT_MAX_FIELDS,
            max_directives_per_field: DEFAULT_MAX_DIRECTIVES_PER_FIELD,
            max_batch: DEFAULT_MAX_BATCH,
            max_errors: DEFAULT_MAX_ERRORS,
        }
    }
}

/// Past these, a limit protects nothing: the analysis itself stays cheap, but execution would not.
const CEILING_DOCUMENT_BYTES: usize = 1024 * 1024;
const CEILING_TOKENS: usize = 100_000;
const CEILING_FIELDS: u64 = 100_000;

impl Validate for QueryLimits {
    fn validate(&self, path: &str, problems: &mut Problems) {
        let within = |value: u64, max: u64| (1..=max).contains(&value);
        problems.check(
            path,
            "max_document_bytes",
            within(self.max_document_bytes as u64, CEILING_DOCUMENT_BYTES as u64),
            "must be between 1 and 1048576",
        );
        problems.check(
            path,
            "max_tokens",
            within(self.max_tokens as u64, CEILING_TOKENS as u64),
            "must be between 1 and 100000",
        );
        problems.check(path, "max_depth", within(self.max_depth.into(), 64), "must be between 1 and 64");
        problems.check(path, "max_cost", self.max_cost >= 1, "must be at least 1");
        for (field, value) in [
            ("max_aliases", self.max_aliases),
            ("max_root_fields", self.max_root_fields),
            ("max_fields", self.max_fields),
        ] {
            problems.check(path, field, within(value, CEILING_FIELDS), "must be between 1 and 100000");
        }
        problems.check(
            path,
            "max_directives_per_field",
            within(self.max_directives_per_field as u64, 32),
            "must be between 1 and 32",
        );
        problems.check(path, "max_batch", within(self.max_batch as u64, 100), "must be between 1 and 100");
        problems.check(path, "max_errors", within(self.max_errors as u64, 1000), "must be between 1 and 1000");
    }
}

/// What a document costs, before it runs: each field of an object type costs 1, a leaf 0, a
/// backend-backed field its declared weight on top. A field with a page-size argument (`first`,
/// `last` or `limit`: its value, else its default in the schema) multiplies the cost of what it
/// selects by that size, and so does an unpaged list by the size declared for it (else
/// [`DEFAULT_LIST_SIZE`]); each item costs at least 1. A connection's `edges` list is sized by
/// its connection's `first`, so it is declared with a list size of 1.
///
/// The figures come from the schema's SDL, so the model cannot drift from the schema; a BFF only
/// adds what the SDL cannot say (which fields call a backend, how long unpaged lists are).
#[derive(Debug, Clone)]
pub struct CostModel {
    /// Type -> field -> what the field costs.
    fields: HashMap<String, HashMap<String, FieldCost>>,
    roots: [String; 3],
}

#[derive(Debug, Clone)]
struct FieldCost {
    /// The named type the field returns, lists and non-null unwrapped.
    returns: String,
    leaf: bool,
    list: bool,
    /// The page-size argument and its default in the schema.
    page_size: Option<(&'static str, Option<u64>)>,
    weight: u64,
    list_size: u64,
}

impl CostModel {
    /// The model of the schema `sdl` (as `Schema::sdl()` prints it).
    pub fn from_sdl(sdl: &str) -> Result<Self, GatewayError> {
        let document = async_graphql::parser::parse_schema(sdl)
            .map_err(|e| GatewayError::Internal(format!("the schema's SDL does not parse: {e}")))?;
        let mut leaves: Vec<String> = ["Int", "Float", "String", "Boolean", "ID"].map(str::to_owned).to_vec();
        let mut roots = ["Query", "Mutation", "Subscription"].map(str::to_owned);
        for definition in &document.definitions {
            match definition {
                TypeSystemDefinition::Type(ty) if matches!(ty.node.kind, TypeKind::Scalar | TypeKind::Enum(_)) => {
                    leaves.push(ty.node.name.node.to_string());
                }
                TypeSystemDefinition::Schema(schema) => {
                    let names = [&schema.node.query, &schema.node.mutation, &schema.node.subscription];
                    for (root, name) in roots.iter_mut().zip(names) {
                        if let Some(name) = name {
                            *root = name.node.to_string();
                        }
                    }
                }
                _ => {}
            }
        }
        let mut fields: HashMap<String, HashMap<String, FieldCost>> = HashMap::new();
        for definition in &document.definitions {
            let TypeSystemDefinition::Type(ty) = definition else { continue };
            let definitions = match &ty.node.kind {
                TypeKind::Object(object) => &object.fields,
                TypeKind::Interface(interface) => &interface.fields,
                _ => continue,
            };
            for field in definitions {
                let field = &field.node;
                let (returns, list) = named_type(&field.ty.node);
                let page_size = PAGE_SIZE_ARGUMENTS.iter().find_map(|&name| {
                    let argument = field.arguments.iter().find(|a| a.node.name.node == name)?;
                    let default = argument.node.default_value.as_ref().and_then(|v| count(&v.node));
                    Some((name, default))
                });
                let cost = FieldCost {
                    leaf: leaves.iter().any(|leaf| leaf == returns),
                    returns: returns.to_owned(),
                    list,
                    page_size,
                    weight: 0,
                    list_size: DEFAULT_LIST_SIZE,
                };
                fields.entry(ty.node.name.node.to_string()).or_default().insert(field.name.node.to_string(), cost);
            }
        }
        Ok(Self { fields, roots })
    }

    /// Declares that `Type.field` calls a backend, at `weight` on top of its base cost.
    ///
    /// # Panics
    /// When the schema has no such field: a typo here would silently make a field cheap.
    #[must_use]
    pub fn backend_field(mut self, field: &str, weight: u64) -> Self {
        self.field_mut(field).weight = weight;
        self
    }

    /// Declares how many items the unpaged list `Type.field` holds at most.
    ///
    /// # Panics
    /// When the schema has no such field.
    #[must_use]
    pub fn list_size(mut self, field: &str, size: u64) -> Self {
        self.field_mut(field).list_size = size;
        self
    }

    fn field_mut(&mut self, field: &str) -> &mut FieldCost {
        let (ty, name) = field.split_once('.').unwrap_or_else(|| panic!("`{field}` is not `Type.field`"));
        self.fields
            .get_mut(ty)
            .and_then(|fields| fields.get_mut(name))
            .unwrap_or_else(|| panic!("the schema has no field `{field}`"))
    }

    fn field(&self, ty: &str, name: &str) -> Option<&FieldCost> {
        self.fields.get(ty)?.get(name)
    }
}

/// The named type under any list and non-null wrappers, and whether there was a list.
fn named_type(ty: &Type) -> (&str, bool) {
    match &ty.base {
        BaseType::Named(name) => (name.as_str(), false),
        BaseType::List(inner) => (named_type(inner).0, true),
    }
}

/// A non-negative integer value as a count; anything else is not a size.
fn count(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| n.as_i64().map(|n| n.max(0).unsigned_abs())),
        _ => None,
    }
}

/// What a refused document is told: a stable code and the limit it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    fn over(
        code: ErrorCode,
        what: &str,
        value: impl std::fmt::Display,
        key: &str,
        limit: impl std::fmt::Display,
    ) -> Self {
        Self { code, message: format!("{what} {value} exceeds the limit of {limit} (graphql.limits.{key})") }
    }
}

/// Counts the lexical tokens of `document`, stopping at `limit + 1`. Linear, allocation-free,
/// and run before the parser, whose cost per token is far higher. Anything it does not
/// recognise counts as a token and is left for the parser to refuse.
pub fn count_tokens(document: &str, limit: usize) -> usize {
    let bytes = document.as_bytes();
    let (mut i, mut tokens) = (0, 0);
    while i < bytes.len() && tokens <= limit {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            0xEF if bytes[i..].starts_with("\u{feff}".as_bytes()) => i += 3,
            b'#' => {
                while i < bytes.len() && !matches!(bytes[i], b'\n' | b'\r') {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                tokens += 1;
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") { 4 } else { 1 };
                }
                i += 3;
            }
            b'"' => {
                tokens += 1;
                i += 1;
                while i < bytes.len() && !matches!(bytes[i], b'"' | b'\n' | b'\r') {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => {
                tokens += 1;
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => {
                tokens += 1;
                i += 1;
                // Names and numbers (with fraction and exponent) run on until a separator.
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.' | b'+' | b'-'))
                    && !bytes[i..].starts_with(b"...")
                {
                    i += 1;
                }
            }
            _ => {
                tokens += 1;
                i += 1;
            }
        }
    }
    tokens
}

/// The figures of one selection set with its fragments expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    /// Fields after expansion, at every level.
    fields: u64,
    /// Fields after expansion at this level only (root fields, for an operation).
    width: u64,
    depth: u32,
    aliases: u64,
    cost: u64,
    introspection: bool,
}

impl Figures {
    fn add(&mut self, other: Figures) {
        self.fields = self.fields.saturating_add(other.fields);
        self.width = self.width.saturating_add(other.width);
        self.depth = self.depth.max(other.depth);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.cost = self.cost.saturating_add(other.cost);
        self.introspection |= other.introspection;
    }
}

enum Memo {
    InProgress,
    Done(Figures),
}

/// Checks a parsed document against `limits` under `model`; `introspection` says whether
/// `__schema` and `__type` may be asked for. Returns the cost of the operation named
/// `operation_name` (or the only one); 0 when none matches (async-graphql names that problem).
pub fn analyze(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
    model: &CostModel,
    limits: &QueryLimits,
    introspection: bool,
) -> Result<u64, Refusal> {
    let mut walk = Walk { document, model, limits, variables: HashMap::new(), memo: HashMap::new() };
    // Every fragment first, used or not, with no operation's variables (they are not in scope).
    for (name, fragment) in &document.fragments {
        let figures = walk.fragment(name, &fragment.node.type_condition.node.on.node)?;
        walk.check_size(&figures, introspection)?;
    }
    let mut chosen = None;
    for (name, operation) in document.operations.iter() {
        let root = &model.roots[match operation.node.ty {
            OperationType::Query => 0,
            OperationType::Mutation => 1,
            OperationType::Subscription => 2,
        }];
        // The numeric variables as this operation sees them (what was sent, else the declared
        // defaults): only numbers can be page sizes.
        let mut scope = HashMap::new();
        for definition in &operation.node.variable_definitions {
            let name = &definition.node.name.node;
            let value = variables.get(name).or_else(|| definition.node.default_value());
            if let Some(value @ Value::Number(_)) = value {
                scope.insert(name.clone(), value.clone());
            }
        }
        // Fragments were costed with no variables; an operation that has some costs its
        // fragments afresh, so a page size passed as a variable cannot hide in a fragment.
        let fragments_costed_without_variables =
            if scope.is_empty() { None } else { Some(std::mem::take(&mut walk.memo)) };
        walk.variables = scope;
        let figures = walk.selection_set(&operation.node.selection_set.node, root, 1)?;
        if let Some(memo) = fragments_costed_without_variables {
            walk.memo = memo;
        }
        walk.check_size(&figures, introspection)?;
        for (code, what, value, key, limit) in [
            (
                ErrorCode::TooManyRootFields,
                "the operation's root field count",
                figures.width,
                "max_root_fields",
                limits.max_root_fields,
            ),
            (
                ErrorCode::TooManyAliases,
                "the operation's alias count",
                figures.aliases,
                "max_aliases",
                limits.max_aliases,
            ),
            (ErrorCode::QueryTooCostly, "the query's cost", figures.cost, "max_cost", limits.max_cost),
        ] {
            if value > limit {
                return Err(Refusal::over(code, what, value, key, limit));
            }
        }
        let selected = match (&document.operations, operation_name, name) {
            (DocumentOperations::Single(_), _, _) => true,
            (DocumentOperations::Multiple(_), Some(wanted), Some(name)) => wanted == name.as_str(),
            (DocumentOperations::Multiple(operations), None, _) => operations.len() == 1,
            _ => false,
        };
        if selected {
            chosen = Some(figures.cost);
        }
    }
    Ok(chosen.unwrap_or(0))
}

struct Walk<'a> {
    document: &'a ExecutableDocument,
    model: &'a CostModel,
    limits: &'a QueryLimits,
    variables: HashMap<Name, Value>,
    memo: HashMap<&'a str, Memo>,
}

impl<'a> Walk<'a> {
    /// Limits that hold for every operation and every fragment alike.
    fn check_size(&self, figures: &Figures, introspection: bool) -> Result<(), Refusal> {
        let limits = self.limits;
        if figures.introspection && !introspection {
            return Err(Refusal {
                code: ErrorCode::IntrospectionDisabled,
                message: "introspection is disabled on this endpoint (graphql.introspection)".into(),
            });
        }
        for (code, what, value, key, limit) in [
            (
                ErrorCode::TooManyFields,
                "the field count after fragment expansion",
                figures.fields,
                "max_fields",
                limits.max_fields,
            ),
            (ErrorCode::QueryTooDeep, "the query's depth", figures.depth.into(), "max_depth", limits.max_depth.into()),
        ] {
            if value > limit {
                return Err(Refusal::over(code, what, value, key, limit));
            }
        }
        Ok(())
    }

    /// A fragment's figures, computed once per variable scope.
    fn fragment(&mut self, name: &'a str, on: &'a str) -> Result<Figures, Refusal> {
        match self.memo.get(name) {
            Some(Memo::Done(figures)) => return Ok(*figures),
            Some(Memo::InProgress) => {
                return Err(Refusal {
                    code: ErrorCode::GraphQlValidationFailed,
                    message: format!("fragment `{name}` spreads itself"),
                });
            }
            None => {}
        }
        let Some(fragment) = self.document.fragments.get(name) else {
            // Unknown fragment: validation reports it; it expands to nothing.
            return Ok(Figures::default());
        };
        self.memo.insert(name, Memo::InProgress);
        let figures = self.selection_set(&fragment.node.selection_set.node, on, 1)?;
        self.memo.insert(name, Memo::Done(figures));
        Ok(figures)
    }

    /// The figures of `set`, selected on type `on`, as if its fields sat at depth 1.
    fn selection_set(&mut self, set: &'a SelectionSet, on: &'a str, guard: u32) -> Result<Figures, Refusal> {
        // The parser bounds nesting (async-graphql's recursion limit); this only stops a loop.
        if guard > 256 {
            return Err(Refusal::over(
                ErrorCode::QueryTooDeep,
                "the query's nesting",
                guard,
                "max_depth",
                self.limits.max_depth,
            ));
        }
        let mut total = Figures::default();
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    self.directives(field.directives.len(), &field.name.node)?;
                    let name = field.name.node.as_str();
                    let mut figures = Figures { fields: 1, width: 1, depth: 1, ..Figures::default() };
                    figures.aliases = u64::from(field.alias.is_some());
                    if name == "__typename" {
                        total.add(figures);
                        continue;
                    }
                    figures.introspection = matches!(name, "__schema" | "__type");
                    let cost = self.model.field(on, name);
                    let child_type = cost.map_or("", |c| c.returns.as_str());
                    let child = self.selection_set(&field.selection_set.node, child_type, guard + 1)?;
                    let base = cost.map_or(1, |c| u64::from(!c.leaf) + c.weight);
                    let selected = match cost.and_then(|cost| self.page_size(cost, field)) {
                        // Every item of a page costs at least 1, even a list of scalars.
                        Some(size) => size.saturating_mul(child.cost.max(1)),
                        None => child.cost,
                    };
                    figures.fields = figures.fields.saturating_add(child.fields);
                    figures.depth = child.depth.saturating_add(1);
                    figures.aliases = figures.aliases.saturating_add(child.aliases);
                    figures.cost = base.saturating_add(selected);
                    figures.introspection |= child.introspection;
                    total.add(figures);
                }
                Selection::FragmentSpread(spread) => {
                    self.directives(spread.node.directives.len(), &spread.node.fragment_name.node)?;
                    let name = spread.node.fragment_name.node.as_str();
                    let on =
                        self.document.fragments.get(name).map_or("", |f| f.node.type_condition.node.on.node.as_str());
                    total.add(self.fragment(name, on)?);
                }
                Selection::InlineFragment(inline) => {
                    self.directives(inline.node.directives.len(), "inline fragment")?;
                    let on = inline.node.type_condition.as_ref().map_or(on, |c| c.node.on.node.as_str());
                    total.add(self.selection_set(&inline.node.selection_set.node, on, guard + 1)?);
                }
            }
        }
        Ok(total)
    }

    fn directives(&self, count: usize, on: &str) -> Result<(), Refusal> {
        let limit = self.limits.max_directives_per_field;
        if count > limit {
            return Err(Refusal::over(
                ErrorCode::TooManyDirectives,
                &format!("the directive count on `{}`", truncate(on)),
                count,
                "max_directives_per_field",
                limit,
            ));
        }
        Ok(())
    }

    /// How many items `field` returns, when it returns several: the page-size argument's value
    /// (a literal or a variable), else its default in the schema, else the declared list size.
    /// A paged field that is not itself a list (a connection) multiplies what it selects too.
    fn page_size(&self, cost: &FieldCost, field: &async_graphql::parser::types::Field) -> Option<u64> {
        let Some((argument, default)) = cost.page_size else { return cost.list.then_some(cost.list_size) };
        let given = field
            .arguments
            .iter()
            .find(|(name, _)| name.node == argument)
            .and_then(|(_, value)| {
                value.node.clone().into_const_with(|variable| self.variables.get(&variable).cloned().ok_or(())).ok()
            })
            .and_then(|value| count(&value));
        Some(given.or(default).unwrap_or(cost.list_size))
    }
}

/// A client-chosen name, cut short for a message.
fn truncate(name: &str) -> &str {
    name.get(..name.len().min(64)).unwrap_or("?")
}
