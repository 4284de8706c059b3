//! The route table: every route a BFF serves (REST routes, or GraphQL root fields) with how it is
//! authenticated, the scope it needs, the limits that apply and the backends it calls, so a 404,
//! 403 or 429 can be explained from a shell (`<bff> routes --config PATH`) or from the admin
//! listener (`GET /routes`). Each BFF says what its table holds ([`Bff::route_table`]); a test
//! per BFF pins the printed table, so a change to it shows in review.
//!
//! [`Bff::route_table`]: crate::config::Bff::route_table

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// `GET /v2/products/{id}`, or a GraphQL root field: `query home`.
    pub route: String,
    /// How callers prove who they are.
    pub auth: String,
    /// The scope the caller's credential needs (`-` for none).
    pub scope: String,
    /// The limits that apply, as configured.
    pub limits: String,
    /// The backends it calls, with their cache policy where one is set.
    pub backends: String,
}

/// The table as aligned text, a row a route.
pub fn render(entries: &[RouteEntry]) -> String {
    let header = ["route", "auth", "scope", "limits", "backends"];
    let rows: Vec<[&str; 5]> = entries
        .iter()
        .map(|e| [e.route.as_str(), e.auth.as_str(), e.scope.as_str(), e.limits.as_str(), e.backends.as_str()])
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    std::iter::once(line(header)).chain(rows.into_iter().map(line)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let entry = |route: &str| RouteEntry {
            route: route.to_owned(),
            auth: "api key".to_owned(),
            scope: "a".to_owned(),
            limits: "-".to_owned(),
            backends: "catalog".to_owned(),
        };
        let table = render(&[entry("GET /a"), entry("GET /longer/path")]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "route             auth     scope  limits  backends");
        assert_eq!(lines[1], "GET /a            api key  a      -       catalog");
        assert_eq!(lines[2], "GET /longer/path  api key  a      -       catalog");
    }
}

/// The root fields of a GraphQL schema, from its SDL: `query home`, `mutation placeOrder`,
/// `subscription orderStatusChanged`, in the SDL's order.
pub fn graphql_root_fields(sdl: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut root: Option<&str> = None;
    let mut in_description = false;
    for line in sdl.lines() {
        let trimmed = line.trim();
        if let Some(kind) =
            ["Query", "Mutation", "Subscription"].into_iter().find(|kind| trimmed == format!("type {kind} {{"))
        {
            root = Some(kind);
            continue;
        }
        let Some(kind) = root else { continue };
        if trimmed == "}" {
            root = None;
            continue;
        }
        // Descriptions: `"""` on a line of its own opens or closes one; `"""text"""` is whole.
        if trimmed.starts_with("\"\"\"") {
            let whole = trimmed.len() > 6 && trimmed.ends_with("\"\"\"");
            if !whole {
                in_description = !in_description;
            }
            continue;
        }
        if in_description || trimmed.is_empty() || trimmed.starts_with('"') {
            continue;
        }
        let name: String = trimmed.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            fields.push(format!("{} {name}", kind.to_ascii_lowercase()));
        }
    }
    fields
}

/// The table of a GraphQL BFF: each root field of `sdl`, authenticated by bearer JWTs for
/// `audience`, with the scope and backends `root_fields` (field, scope, backends) gives it, and
/// the request and cost limits of `limits`.
pub fn graphql(
    sdl: &str,
    audience: &str,
    root_fields: &[(&str, &str, &str)],
    limits: &crate::limits::LimitsConfig,
) -> Vec<RouteEntry> {
    let limits: Vec<String> = [("cost", limits.cost), ("per principal", limits.per_principal)]
        .into_iter()
        .filter_map(|(name, quota)| quota.map(|q| format!("{name} {q}")))
        .collect();
    let limits = if limits.is_empty() { "-".to_owned() } else { limits.join("; ") };
    graphql_root_fields(sdl)
        .into_iter()
        .map(|field| {
            let (scope, backends) = root_fields
                .iter()
                .find(|(name, _, _)| *name == field)
                .map_or(("?", "?"), |(_, scope, backends)| (*scope, *backends));
            RouteEntry {
                route: field,
                auth: format!("bearer JWT (audience {audience})"),
                scope: scope.to_owned(),
                limits: limits.clone(),
                backends: backends.to_owned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod root_field_tests {
    use super::*;

    #[test]
    fn root_fields_are_read_past_their_descriptions() {
        let sdl = "type Query {\n\t\"\"\"\n\tThe home screen. such product.\n\t\"\"\"\n\thome: Home!\n\t\"\"\"One line.\"\"\"\n\tproduct(id: ID!): Product\n}\n\ntype Mutation {\n\tplaceOrder(input: X!): Order!\n}\n";
        assert_eq!(graphql_root_fields(sdl), ["query home", "query product", "mutation placeOrder"]);
    }
}
