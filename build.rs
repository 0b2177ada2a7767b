//! Embeds the dashboard's built assets (`dashboard/dist`, made by `make
//! dashboard`) into the binary. Without them the binary still builds and
//! serves a page that says how to build them.

use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dist = root.join("dashboard").join("dist");
    // Without dist/ yet, watch dashboard/ so that a later `npm run build`
    // (which creates dist/ there) is picked up.
    let watched = if dist.is_dir() {
        dist.clone()
    } else {
        root.join("dashboard")
    };
    println!("cargo:rerun-if-changed={}", watched.display());
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    let mut out = String::from(
        "/// Built dashboard assets: path under dist/, bytes.\npub static ASSETS: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in files {
        out.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    out.push_str("];\n");
    let generated =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("dashboard_assets.rs");
    std::fs::write(generated, out).expect("OUT_DIR is writable");
}

fn collect(base: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(base, &path, files);
        } else if let Ok(relative) = path.strip_prefix(base) {
            let name = relative.to_string_lossy().replace('\\', "/");
            files.push((name, path));
        }
    }
}
