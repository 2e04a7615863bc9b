//! `persona offer explain | simulate | report` over the state a real run left.

use std::collections::HashSet;

use persona_tests::{Demo, files_under, jsonl, persona, persona_unchecked, run_files};

#[test]
fn offer_tools_read_what_the_run_left() {
    let demo = Demo::run(150, 60);
    let out = demo.out();
    let tmp = demo.dir.path();
    let specs = tmp.join("specs");
    for file in files_under(&out.join("specs")) {
        let text = std::fs::read_to_string(&file).unwrap();
        // A holdout on the fuel card: 30 % of its audience is a control group.
        let text = text.replace(
            "metadata: {name: fuel-card}\nspec:\n",
            "metadata: {name: fuel-card}\nspec:\n  control: 30%\n",
        );
        std::fs::create_dir_all(&specs).unwrap();
        std::fs::write(specs.join(file.file_name().unwrap()), text).unwrap();
    }
    assert!(
        std::fs::read_to_string(specs.join("offers.yaml"))
            .unwrap()
            .contains("control: 30%")
    );
    // The demo's vault, so the tokens are the demo run's: its fuel-card audience is
    // the same customers, now split into treated and control.
    let data = demo.data_with_its_vault("data");
    run_files(&specs, &out.join("sources"), &data, &tmp.join("o"), &[]);
    let matches = jsonl(&tmp.join("o").join("matches.jsonl"));
    let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let state = ["--specs".to_owned(), s(&specs), "--data".to_owned(), s(&data)];
    let with = |cmd: &[&str]| -> Vec<String> {
        cmd.iter()
            .map(|a| (*a).to_owned())
            .chain(state.iter().cloned())
            .collect()
    };
    let call = |cmd: &[&str]| {
        let args = with(cmd);
        persona(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let call_unchecked = |cmd: &[&str]| {
        let args = with(cmd);
        persona_unchecked(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Report: the treated are exactly the customers the fuel card went out to.
    let o = call(&["offer", "report", "--json"]);
    let lines: Vec<serde_json::Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fuel = lines
        .iter()
        .find(|l| l["offer"] == "fuel-card")
        .expect("fuel-card in the report");
    let sent_to: HashSet<_> = matches
        .iter()
        .filter(|m| m["offer"] == "fuel-card")
        .map(|m| m["token"].clone())
        .collect();
    assert_eq!(fuel["treated"].as_u64().unwrap() as usize, sent_to.len());
    let audience: HashSet<_> = jsonl(&out.join("matches.jsonl"))
        .iter()
        .filter(|m| m["offer"] == "fuel-card")
        .map(|m| m["token"].clone())
        .collect();
    let control = fuel["control"].as_u64().unwrap() as usize;
    assert_eq!(control + sent_to.len(), audience.len(), "{fuel}");
    assert!(sent_to.is_subset(&audience));
    // 30 % of a few dozen: both groups are there (the share itself is a unit test's).
    assert!(control > 0 && !sent_to.is_empty(), "{fuel}");

    // Explain: a customer who got the car loan, clause by clause.
    let token = matches.iter().find(|m| m["offer"] == "car-loan").unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = call(&["offer", "explain", "--token", &token, "--offer", "car-loan"]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains(&format!("offer `car-loan` for {token}")), "{text}");
    assert!(text.contains("features.car_intent"), "{text}");
    let unknown = call_unchecked(&[
        "offer",
        "explain",
        "--token",
        "tk_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "--offer",
        "car-loan",
    ]);
    assert_eq!(unknown.status.code(), Some(1));

    // Simulate a draft: the funnel only narrows, and it covers every customer.
    let draft = tmp.join("draft.yaml");
    std::fs::write(
        &draft,
        "kind: Offer\nmetadata: {name: draft}\nspec:\n  title: Draft\n  trigger: {on: [transaction]}\n  when: features.debit_spend_30d > 1000 and features.active_days_30d >= 3 and profile.credit_band in [\"A\"]\n  channels: [email, sms]\n  variants: [{name: a, message: m}]\n",
    )
    .unwrap();
    let o = call(&["offer", "simulate", "--offer", draft.to_str().unwrap(), "--json"]);
    let sim: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let features = jsonl(&tmp.join("o").join("features.jsonl"));
    assert_eq!(sim["customers"].as_u64().unwrap() as usize, features.len());
    let funnel: Vec<u64> = sim["funnel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[1].as_u64().unwrap())
        .collect();
    assert_eq!(funnel.len(), 3);
    assert!(funnel.windows(2).all(|w| w[0] >= w[1]), "{funnel:?}");
    assert!(funnel[0] > 0);
    let by_variant: u64 = sim["by_variant"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_variant, sim["matches"].as_u64().unwrap());
    assert!(sim["matches"].as_u64().unwrap() <= funnel[2]);
    // A broken draft gets its diagnostic and exit 1.
    std::fs::write(
        &draft,
        std::fs::read_to_string(&draft)
            .unwrap()
            .replace("debit_spend_30d", "debit_spend_3d"),
    )
    .unwrap();
    let o = call_unchecked(&["offer", "simulate", "--offer", draft.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("debit_spend_3d"));
}
