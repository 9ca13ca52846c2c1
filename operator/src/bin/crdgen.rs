//! `crdgen [DIR [VALUES_SCHEMA]]`: writes every nameplane CRD as YAML into DIR (default
//! `crds/`) and regenerates the `dnsServer` part of the chart's values schema (default
//! `charts/nameplane/values.schema.json`, next to DIR's parent) from the DNSServer CRD.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "crds".into()));
    let values_schema = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "charts/nameplane/values.schema.json".into()),
    );
    std::fs::create_dir_all(&dir)?;
    for crd in nameplane_operator::crds::all() {
        let path = dir.join(nameplane_operator::crds::file_name(&crd));
        std::fs::write(&path, nameplane_operator::crds::to_yaml(&crd))?;
        eprintln!("wrote {}", path.display());
    }
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&values_schema)?)
            .map_err(std::io::Error::other)?;
    let regenerated = nameplane_operator::values_schema::with_dns_server_values(committed);
    let mut text = serde_json::to_string_pretty(&regenerated).map_err(std::io::Error::other)?;
    text.push('\n');
    std::fs::write(&values_schema, text)?;
    eprintln!("wrote the dnsServer part of {}", values_schema.display());
    Ok(())
}
