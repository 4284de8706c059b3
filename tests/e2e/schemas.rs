//! The GraphQL schemas in `schemas/` are what the code serves. On drift the test rewrites the
//! file and fails, so the change shows up in review: regenerate with
//! `cargo nextest run -E 'test(schemas)'` and commit the files.

use std::path::Path;

fn check(name: &str, sdl: String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(name);
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    if on_disk != sdl {
        std::fs::write(&path, &sdl).unwrap();
        panic!("{} drifted from the code and has been rewritten: review and commit it", path.display());
    }
}

#[test]
fn mobile_schema_matches_the_snapshot() {
    check("mobile.graphql", mobile_bff::schema::sdl());
}

/// The mobile app's operations (`bffs/mobile/operations/*.graphql`) as the persisted query
/// manifest the safelist reads, in Apollo's manifest format.
#[test]
fn mobile_persisted_query_manifest_matches_the_operations() {
    check("mobile.persisted.json", mobile_manifest());
}

pub fn mobile_manifest() -> String {
    use sha2::Digest as _;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bffs/mobile/operations");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let operations: Vec<serde_json::Value> = files
        .iter()
        .map(|path| {
            let body = std::fs::read_to_string(path).unwrap();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let kind = if body.trim_start().starts_with("mutation") { "mutation" } else { "query" };
            serde_json::json!({
                "id": hex::encode(sha2::Sha256::digest(body.as_bytes())),
                "name": name,
                "type": kind,
                "body": body,
            })
        })
        .collect();
    let manifest = serde_json::json!({
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": operations,
    });
    serde_json::to_string_pretty(&manifest).unwrap() + "\n"
}

#[test]
fn web_schema_matches_the_snapshot() {
    check("web.graphql", web_bff::schema::sdl());
}

/// Each BFF's route table (`<bff> routes`, the admin listener's `/routes`) under its shipped
/// config: a change to a route's scope, limits or backends shows in review.
#[test]
fn route_tables_match_their_snapshots() {
    use bff_gateway::config::{Bff, from_toml};
    use bff_gateway::telemetry::route_table::render;

    fn table<B: Bff>(file: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let config = from_toml::<B>(&text, &path, std::iter::empty()).unwrap();
        render(&B::route_table(&config))
    }
    // The hand-kept lists of root fields (with their scopes and backends) are exactly the schemas'.
    for (fields, sdl) in
        [(mobile_bff::ROOT_FIELDS, mobile_bff::schema::sdl()), (web_bff::ROOT_FIELDS, web_bff::schema::sdl())]
    {
        let mut listed: Vec<&str> = fields.iter().map(|(field, _, _)| *field).collect();
        let mut root = bff_gateway::telemetry::route_table::graphql_root_fields(&sdl);
        listed.sort_unstable();
        root.sort_unstable();
        assert_eq!(listed, root);
    }
    check("mobile.routes.txt", table::<mobile_bff::Mobile>("bffs/mobile/config.example.toml"));
    check("web.routes.txt", table::<web_bff::Web>("bffs/web/config.example.toml"));
    check("partner.routes.txt", table::<partner_bff::Partner>("bffs/partner/config.example.toml"));
}
