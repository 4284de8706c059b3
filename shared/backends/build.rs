//! Generates the gRPC clients and servers from `proto/` with protox, a pure-Rust protobuf
//! compiler, so a fresh machine needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let files = [
        format!("{proto_root}/shop/orders/v1/orders.proto"),
        format!("{proto_root}/shop/inventory/v1/inventory.proto"),
    ];
    let descriptors = protox::compile(&files, [proto_root])?;
    tonic_prost_build::configure()
        // The demo servers are built from the same contract, so generate both sides.
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    Ok(())
}
