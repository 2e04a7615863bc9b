//! Golden files for rendered diagnostics: each `golden/NAME.expr` is compiled and
//! its diagnostics, rendered as if the expression were an Offer's `when:` block
//! scalar starting on line 14 of `NAME.yaml`, must equal `golden/NAME.out` exactly.
//! Files named `where_*` are checked as a feature's `where` (only `event`).
//! `UPDATE_GOLDEN=1 cargo test -p persona-expr --test golden` rewrites the `.out` files.

use std::fs;
use std::path::Path;

use persona_expr::{Root, Schema, Type, compile};

const LINE_BASE: usize = 14;

fn offer_schema() -> Schema {
    Schema::new()
        .allow_root(Root::Event)
        .allow_root(Root::Features)
        .allow_root(Root::Profile)
        .allow_root(Root::Prefs)
        .feature("avg_balance_90d", Type::Number, false)
        .feature("min_balance_90d", Type::Number, false)
        .feature("fuel_spend_30d", Type::Number, false)
        .feature("early_salary_months_6m", Type::Number, false)
        .feature("spend_30d", Type::Number, true)
        .feature("last_mall", Type::String, false)
        .feature("car_intent", Type::Bool, false)
}

fn where_schema() -> Schema {
    Schema::new().allow_root(Root::Event)
}

#[test]
fn rendered_diagnostics_match_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut inputs: Vec<_> = fs::read_dir(&dir)
        .expect("golden dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "expr"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 8, "expected the golden cases in {}", dir.display());
    let mut mismatches = Vec::new();
    for input in &inputs {
        let name = input.file_stem().and_then(|s| s.to_str()).expect("utf-8 name");
        let src = fs::read_to_string(input).expect("read .expr");
        let schema = if name.starts_with("where_") {
            where_schema()
        } else {
            offer_schema()
        };
        let diags = match compile(&src, &schema) {
            Ok(_) => panic!("{name}.expr compiled; golden inputs must be broken"),
            Err(d) => d,
        };
        let got = diags.render(&src, &format!("{name}.yaml"), LINE_BASE);
        let out = input.with_extension("out");
        if update {
            fs::write(&out, &got).expect("write .out");
            continue;
        }
        let want = fs::read_to_string(&out).unwrap_or_default();
        if got != want {
            mismatches.push(format!("--- {name}.out (expected)\n{want}--- got\n{got}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden mismatch (UPDATE_GOLDEN=1 to accept):\n{}",
        mismatches.join("\n")
    );
}
