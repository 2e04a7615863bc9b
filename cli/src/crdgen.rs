//! `persona crdgen`: the CustomResourceDefinitions of every persona kind, one YAML
//! file per kind, generated from the Rust types (the cloud kinds of
//! persona-operator).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Directory to write `<kind>.yaml` files into; created when missing.
    #[arg(long, default_value = "crds")]
    pub(crate) out: PathBuf,
}

/// The generated files: (file name, YAML), in a fixed order.
pub(crate) fn files() -> Result<Vec<(String, String)>> {
    let crds = persona_operator::crd::cloud_crds();
    persona_operator::crd::files(&crds).context("rendering the CRDs as YAML")
}

pub(crate) fn run(args: &Args) -> Result<ExitCode> {
    write(&args.out)?;
    Ok(ExitCode::SUCCESS)
}

fn write(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, yaml) in files()? {
        let path = out.join(&name);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The committed crds/ are what `persona crdgen` writes, file for file.
    #[test]
    fn committed_crds_do_not_drift() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
        let committed: BTreeMap<String, String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
        let generated: BTreeMap<String, String> = files().unwrap().into_iter().collect();
        assert_eq!(
            committed.keys().collect::<Vec<_>>(),
            generated.keys().collect::<Vec<_>>(),
            "crds/ holds other files than `persona crdgen` writes: run scripts/crdgen"
        );
        for (name, yaml) in &generated {
            assert!(
                committed[name] == *yaml,
                "crds/{name} drifted from the Rust types: run scripts/crdgen"
            );
        }
    }
}
