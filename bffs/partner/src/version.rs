//! What a version of the partner API is: a representation of the resources in [`crate::model`].
//! Handlers are written once, generic over [`Version`]; each version says how a resource is
//! written (member names, money, lists), how an order is read from a request body, and the
//! sparse-fieldset names it accepts. The OpenAPI document of a version is generated from the
//! same types ([`crate::openapi`]), and request bodies are validated against it.

use bff_gateway::graphql::FieldMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::model;

pub trait Version: Send + Sync + 'static {
    /// `v1`: the path prefix and what plans name.
    const NAME: &'static str;
    /// `application/vnd.shop.v1+json`: selects this version on the unversioned paths.
    const MEDIA_TYPE: &'static str;
    /// Headers on every response of this version (a deprecated one announces its end).
    const HEADERS: &'static [(&'static str, &'static str)];

    type Product: Serialize + ToSchema + From<model::Product>;
    type Stock: Serialize + ToSchema + From<model::Stock>;
    type Order: Serialize + ToSchema + From<model::Order>;
    /// A page of orders, each already written as [`Version::Order`] and trimmed to the fieldset.
    type OrderList: Serialize + ToSchema + From<model::Page<serde_json::Value>>;
    type NewOrder: DeserializeOwned + ToSchema + Into<model::NewOrder>;

    /// Each product member this version writes, with the catalog fields it needs. The member
    /// that embeds stock ([`Version::PRODUCT_STOCK`]) needs no catalog field: inventory serves it.
    const PRODUCT_FIELDS: FieldMap;
    const PRODUCT_STOCK: Option<&'static str>;
    /// Each order member this version writes, with the orders service's fields it needs.
    const ORDER_FIELDS: FieldMap;
}
