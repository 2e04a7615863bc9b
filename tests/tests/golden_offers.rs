//! Golden diagnostics of broken offers: `persona offer check NAME.yaml --features
//! _featureset.yaml`, run in `tests/golden/offers/`, must print exactly `NAME.out`
//! (stdout, then stderr) and exit 1. Each case breaks one thing: syntax, unknown
//! names, types, durations, dates, variants, channels, fields, schedules.
//! `UPDATE_GOLDEN=1 cargo test -p persona-tests --test golden_offers` rewrites them.

use std::path::Path;

use persona_tests::persona_command;

#[test]
fn broken_offers_get_exactly_their_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/offers");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml") && !n.starts_with('_'))
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "at least 20 broken offers: {}", cases.len());
    let mut mismatches = Vec::new();
    for case in &cases {
        let o = persona_command(&["offer", "check", case, "--features", "_featureset.yaml"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{case} must be refused");
        let got = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let out = dir.join(case.replace(".yaml", ".out"));
        if update {
            std::fs::write(&out, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&out).unwrap_or_default();
        if got != want {
            mismatches.push(format!("--- {case} (expected)\n{want}--- got\n{got}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden mismatch (UPDATE_GOLDEN=1 to accept):\n{}",
        mismatches.join("\n")
    );
}
