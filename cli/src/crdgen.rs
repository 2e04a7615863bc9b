//! `persona crdgen`: the CustomResourceDefinitions of every persona kind, one YAML
//! file per kind, generated from the Rust types (the cloud kinds of
//! persona-operator, the trusted zone's Source of persona-privacy).

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
    let mut crds = persona_operator::crd::cloud_crds();
    crds.push(<persona_privacy::crd::Source as kube::CustomResourceExt>::crd());
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
        // The trusted zone's chart installs the Source kind.
        let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/persona-onprem/crds/source.yaml");
        assert!(
            std::fs::read_to_string(&chart).is_ok_and(|c| c == generated["source.yaml"]),
            "charts/persona-onprem/crds/source.yaml drifted: run scripts/crdgen"
        );
    }

    /// Every Source of the demo bank and of the kaveri fixture bank goes through the
    /// custom resource (as kubectl would store it) and back to the same spec, which
    /// compiles.
    #[test]
    fn sources_round_trip_through_the_custom_resource() {
        use persona_privacy::SourceSpec;
        use persona_privacy::crd::{Source, SourceResource};
        use serde::Deserialize as _;

        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut seen = 0;
        for file in [
            root.join("cli/src/demo/specs/sources.yaml"),
            root.join("tests/fixtures/kaveri/specs/sources.yaml"),
        ] {
            let text = std::fs::read_to_string(&file).unwrap();
            for document in serde_yaml::Deserializer::from_str(&text) {
                let value = serde_yaml::Value::deserialize(document).unwrap();
                if value["kind"] != "Source" {
                    continue;
                }
                let spec: SourceSpec = serde_yaml::from_value(value).unwrap();
                let mut object = Source::new(&spec.metadata.name, SourceResource(spec.spec.clone()));
                object.metadata.namespace = Some("trusted".to_owned());
                let stored = serde_json::to_value(&object).unwrap();
                let back: Source = serde_json::from_value(stored).unwrap();
                assert_eq!(back.to_spec().spec, spec.spec, "{}", spec.metadata.name);
                persona_privacy::Source::compile(back.to_spec())
                    .unwrap_or_else(|e| panic!("{}: {e:?}", spec.metadata.name));
                seen += 1;
            }
        }
        assert!(seen >= 6, "{seen} sources");
    }
}
