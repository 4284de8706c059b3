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

#[test]
fn web_schema_matches_the_snapshot() {
    check("web.graphql", web_bff::schema::sdl());
}
