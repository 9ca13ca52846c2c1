//! `crdgen [DIR]`: writes every nameplane CRD as YAML into DIR (default `crds/`).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "crds".into()));
    std::fs::create_dir_all(&dir)?;
    for crd in nameplane_operator::crds::all() {
        let path = dir.join(nameplane_operator::crds::file_name(&crd));
        std::fs::write(&path, nameplane_operator::crds::to_yaml(&crd))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
