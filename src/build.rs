//! Build script of the worker crate: writes the base OpenAPI document (`makeit3d_core::openapi`,
//! the document of no particular deployment) to `$OUT_DIR/openapi.json`. The worker serves it from
//! that text, fitted to its configuration once per isolate (`api::openapi`), instead of carrying
//! the code that builds it (about 20 KiB of the gzipped bundle).

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=src/build.rs");
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        panic!("cargo sets OUT_DIR for build scripts");
    };
    let doc = makeit3d_core::openapi::document_for(None, None);
    let path = Path::new(&out_dir).join("openapi.json");
    if let Err(e) = std::fs::write(&path, doc.to_string()) {
        panic!("writing {}: {e}", path.display());
    }
}
