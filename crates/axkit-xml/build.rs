//! Compiles the small C shim in `src/shim.c` against the headers of
//! libxml2, libxslt and libexslt (found with pkg-config, as Debian's
//! `libxml2-dev` and `libxslt1-dev` install them): the variadic error
//! callbacks, which stable Rust cannot define, and the few struct fields
//! read through the libraries' own headers rather than layouts copied into
//! Rust. No bindgen: a fresh machine has no libclang.
//!
//! The libraries themselves are not linked: `src/dl.rs` loads them when a
//! configuration first needs them, so a server without XML maps none of
//! them.

const LIBS: [&str; 3] = ["libexslt", "libxslt", "libxml-2.0"];

fn probe(lib: &str) -> pkg_config::Library {
    pkg_config::Config::new()
        .cargo_metadata(false)
        .probe(lib)
        .unwrap_or_else(|e| {
            panic!(
                "{lib} not found by pkg-config ({e}): install the Debian packages \
                 libxml2-dev and libxslt1-dev"
            )
        })
}

fn main() {
    println!("cargo:rerun-if-changed=src/shim.c");
    let mut build = cc::Build::new();
    build.file("src/shim.c").warnings(true);
    for lib in LIBS {
        for dir in probe(lib).include_paths {
            build.include(dir);
        }
    }
    build.compile("axkit_xml_shim");
}
