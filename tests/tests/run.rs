//! `persona run` against the demo's files: replay gives the same matches, bad input
//! is dead-lettered and the run goes on, re-delivery changes nothing; and the admin
//! tools `vault resolve` and `offer check`.

use std::collections::BTreeSet;
use std::path::Path;

use persona_tests::{Demo, copy_dir, csv_rows, jsonl, persona, persona_unchecked, run_files};

fn run(specs: &Path, sources: &Path, data: &Path, out: &Path) -> std::process::Output {
    run_files(specs, sources, data, out, &[])
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn run_replays_the_demo_and_redelivery_changes_nothing() {
    let demo = Demo::run(250, 60);
    let out = demo.out();
    let tmp = demo.dir.path();

    // Same vault (same tokens and event ids), fresh cloud state: identical outputs.
    let data = demo.data_with_its_vault("replay-data");
    let replay = tmp.join("replay");
    run(&out.join("specs"), &out.join("sources"), &data, &replay);
    for file in [
        "matches.jsonl",
        "features.jsonl",
        "deliveries.jsonl",
        "dead_letter.jsonl",
    ] {
        assert_eq!(read(&replay.join(file)), read(&out.join(file)), "{file} differs");
    }

    // The same files again into the same state: every event is recognised, nothing
    // is matched twice.
    let again = tmp.join("again");
    run(&out.join("specs"), &out.join("sources"), &data, &again);
    assert_eq!(read(&again.join("matches.jsonl")), "");
    let summary: serde_json::Value = serde_json::from_str(&read(&again.join("summary.json"))).unwrap();
    assert_eq!(summary["events_applied"], 0);
    assert_eq!(summary["events_duplicate"], summary["events"]);
    assert_eq!(summary["tokens_issued"], 0);
    assert_eq!(read(&again.join("features.jsonl")), read(&out.join("features.jsonl")));

    // A bank with a fresh vault: other tokens, the same customers reached by the same offers.
    let fresh = tmp.join("fresh");
    run(
        &out.join("specs"),
        &out.join("sources"),
        &tmp.join("fresh-data"),
        &fresh,
    );
    let who = |dir: &Path| -> BTreeSet<(String, String, String)> {
        jsonl(&dir.join("deliveries.jsonl"))
            .iter()
            .map(|d| {
                (
                    d["customer_key"].to_string(),
                    d["offer"].to_string(),
                    d["channel"].to_string(),
                )
            })
            .collect()
    };
    assert_eq!(who(&fresh), who(&out));
    assert_ne!(
        read(&fresh.join("matches.jsonl")),
        read(&out.join("matches.jsonl")),
        "tokens are random per vault"
    );
}

#[test]
fn malformed_lines_are_dead_lettered_and_the_run_goes_on() {
    let demo = Demo::run(120, 30);
    let out = demo.out();
    let tmp = demo.dir.path();
    let sources = tmp.join("sources");
    copy_dir(&out.join("sources"), &sources);

    let swipes = sources.join("card_swipes.jsonl");
    let mut text = read(&swipes);
    text.push_str("{\"swipe_id\": \"SWX1\", \"customer_ref\": \"C00000001\", \"cardholder\": \"VICTIM PERSON\"\n");
    std::fs::write(&swipes, &text).unwrap();
    let broken_swipe_line = text.lines().count() as u64;

    let customers = sources.join("customers.csv");
    let mut text = read(&customers);
    text.push_str("C09999999,Victim Person,01-01-1990,victim.person@example.com\n");
    std::fs::write(&customers, &text).unwrap();
    let broken_customer_line = text.lines().count() as u64;

    let result = tmp.join("result");
    let output = run(&out.join("specs"), &sources, &tmp.join("data"), &result);
    let dead = jsonl(&result.join("dead_letter.jsonl"));
    let find = |source: &str, file: &str, line: u64| {
        dead.iter()
            .find(|d| d["source"] == source && d["file"] == file && d["line"] == line)
            .cloned()
    };
    let swipe = find("card-swipes", "card_swipes.jsonl", broken_swipe_line).expect("broken JSON dead-lettered");
    assert!(!swipe["reason"].as_str().unwrap().is_empty());
    let customer = find("crm-customers", "customers.csv", broken_customer_line).expect("short CSV row dead-lettered");
    assert!(!customer["reason"].as_str().unwrap().is_empty());

    // The rest of the run completed: the other customers were still matched.
    let summary: serde_json::Value = serde_json::from_str(&read(&result.join("summary.json"))).unwrap();
    assert_eq!(summary["dead_lettered"].as_u64().unwrap(), dead.len() as u64);
    assert!(summary["events"].as_u64().unwrap() > 1_000);
    assert!(!read(&result.join("matches.jsonl")).is_empty());
    // Refused values are named by field, never shown.
    let logs = String::from_utf8_lossy(&output.stderr).to_lowercase();
    let dead_text = read(&result.join("dead_letter.jsonl")).to_lowercase();
    for value in ["victim", "c09999999", "01-01-1990"] {
        assert!(!dead_text.contains(value) && !logs.contains(value), "{value} leaked");
    }
}

#[test]
fn vault_resolve_answers_tokens_and_audits() {
    let demo = Demo::run(60, 30);
    let out = demo.out();
    let delivery = jsonl(&out.join("deliveries.jsonl"))
        .into_iter()
        .next()
        .expect("a delivery");
    let matched = jsonl(&out.join("matches.jsonl"));
    let token = matched
        .iter()
        .find(|m| m["match_id"] == delivery["match_id"])
        .and_then(|m| m["token"].as_str())
        .unwrap()
        .to_owned();
    let unknown = "tk_aaaaaaaaaaaaaaaaaaaaaaaaaa";
    let data = out.join("data");
    let o = persona(&[
        "vault",
        "resolve",
        "--data",
        data.to_str().unwrap(),
        &token,
        unknown,
        "not-a-token",
    ]);
    let stdout = String::from_utf8(o.stdout).unwrap();
    let key = delivery["customer_key"].as_str().unwrap();
    assert_eq!(stdout, format!("{token}\t{key}\n{unknown}\t-\nnot-a-token\t-\n"));
    let audit = read(&data.join("trusted").join("audit").join("admin.jsonl"));
    assert_eq!(audit.lines().count(), 3);
    assert!(!audit.contains(key), "the audit trail names tokens, not keys");
}

#[test]
fn offer_check_reports_diagnostics_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let features = dir.path().join("features.yaml");
    std::fs::write(
        &features,
        "kind: FeatureSet\nmetadata: {name: f}\nspec:\n  features:\n    - {name: min_balance_90d, on: balance, value: event.balance, agg: min, window: 90d}\n",
    )
    .unwrap();
    let offers = dir.path().join("offers.yaml");
    let good = "kind: Offer\nmetadata: {name: ok}\nspec:\n  title: t\n  trigger: {on: [balance]}\n  when: features.min_balance_90d >= 1\n  channels: [email]\n  variants: [{name: a, message: m}]\n";
    std::fs::write(
        &offers,
        format!(
            "{good}---\n{}",
            good.replace("name: ok", "name: bad")
                .replace("min_balance_90d >= 1", "min_balanse_90d >= 1")
        ),
    )
    .unwrap();
    let o = persona_unchecked(&[
        "offer",
        "check",
        offers.to_str().unwrap(),
        "--features",
        features.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("did you mean `min_balance_90d`?"), "{err}");
    assert!(
        err.contains(&format!("{}:15:", offers.display())),
        "the position is in the file: {err}"
    );
    assert!(err.contains("[E003] Error: unknown feature `min_balanse_90d`"), "{err}");
    assert!(err.contains("────┬────"), "the span is marked: {err}");

    std::fs::write(&offers, good).unwrap();
    let o = persona_unchecked(&[
        "offer",
        "check",
        offers.to_str().unwrap(),
        "--features",
        features.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_demo_replaces_only_what_it_made() {
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("precious.txt");
    std::fs::write(&precious, "keep me").unwrap();
    for flag in ["--out", "--data"] {
        let other = dir.path().join("elsewhere");
        let (out, data) = if flag == "--out" {
            (dir.path(), other.as_path())
        } else {
            (other.as_path(), dir.path())
        };
        let o = persona_unchecked(&[
            "demo",
            "--customers",
            "10",
            "--days",
            "30",
            "--out",
            out.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{flag}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("choose another {flag}")));
        assert_eq!(read(&precious), "keep me");
    }
}

#[test]
fn featureset_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let features = dir.path().join("features.yaml");
    std::fs::write(
        &features,
        "kind: FeatureSet\nmetadata: {name: f}\nspec:\n  features:\n    - name: spend\n      on: transaction\n      value: event.amount\n      agg: sum\n      window: 30x\n    - {name: n, on: transaction, agg: cont}\n",
    )
    .unwrap();
    let o = persona_unchecked(&["offer", "check", features.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8(o.stderr).unwrap();
    let file = features.display();
    assert!(
        err.contains(&format!(
            "{file}:9:7: FeatureSet `f`: spec.features[0].window: invalid window `30x`"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:10:34: FeatureSet `f`: spec.features[1].agg: unknown aggregation `cont`"
        )),
        "{err}"
    );
}

#[test]
fn offer_check_without_a_featureset_still_checks_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let offers = dir.path().join("offers.yaml");
    let good = "kind: Offer\nmetadata: {name: ok}\nspec:\n  title: t\n  trigger: {on: [balance]}\n  when: features.anything >= 1 and features.family[\"k\"] > 0\n  channels: [email]\n  variants: [{name: a, message: m}]\n";
    std::fs::write(&offers, good).unwrap();
    let o = persona_unchecked(&["offer", "check", offers.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("feature names and types are not checked"));
    std::fs::write(&offers, good.replace(">= 1 and", ">= and")).unwrap();
    let o = persona_unchecked(&["offer", "check", offers.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_duplicate_offer_is_refused_and_a_broken_contact_policy_stops_the_run() {
    let demo = Demo::run(40, 30);
    let out = demo.out();
    let tmp = demo.dir.path();
    let specs = demo.specs_copy("specs");
    let offers = read(&specs.join("offers.yaml"));
    let first = offers.split("---").next().unwrap().to_owned();
    std::fs::write(specs.join("again.yaml"), first).unwrap();
    let o = run(&specs, &out.join("sources"), &tmp.join("d1"), &tmp.join("o1"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Offer `car-loan` is defined twice"));

    std::fs::write(
        specs.join("policy.yaml"),
        "kind: ContactPolicy\nmetadata: {name: default}\nspec:\n  maxPerDay: 1\n  quietHours: {from: \"25:00\", to: \"09:00\"}\n",
    )
    .unwrap();
    let o = persona_unchecked(&[
        "run",
        "--specs",
        specs.to_str().unwrap(),
        "--sources",
        out.join("sources").to_str().unwrap(),
        "--data",
        tmp.join("d2").to_str().unwrap(),
        "--out",
        tmp.join("o2").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("ContactPolicy `default` is invalid"), "{stderr}");
    assert!(stderr.contains("policy.yaml:5"), "the line of the bad field: {stderr}");
    assert!(
        !tmp.join("o2").join("matches.jsonl").exists(),
        "nothing was sent without the policy"
    );
}

/// Under a contact policy no customer gets more than `maxPerDay` offers a local day,
/// none in quiet hours; matches that fell in quiet hours go out when they end.
#[test]
fn a_contact_policy_caps_and_defers_matches() {
    use chrono::Timelike;
    let demo = Demo::run(150, 60);
    let out = demo.out();
    let tmp = demo.dir.path();
    let tz: chrono_tz::Tz = "Asia/Kolkata".parse().unwrap();
    let local = |m: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(m["ts"].as_str().unwrap())
            .unwrap()
            .with_timezone(&tz)
    };
    let quiet = |t: &chrono::DateTime<chrono_tz::Tz>| t.hour() >= 20 || t.hour() < 10;
    let per_day = |matches: &[serde_json::Value]| {
        let mut days = std::collections::HashMap::new();
        for m in matches {
            *days.entry((m["token"].to_string(), local(m).date_naive())).or_insert(0) += 1;
        }
        days.into_values().max().unwrap_or(0)
    };
    // Without a policy the demo contacts some customers in the evening or twice a day.
    let free = jsonl(&out.join("matches.jsonl"));
    assert!(
        free.iter().any(|m| quiet(&local(m))) || per_day(&free) > 1,
        "the demo would not show the policy at work"
    );

    let specs = demo.specs_copy("specs");
    std::fs::write(
        specs.join("policy.yaml"),
        "kind: ContactPolicy\nmetadata: {name: default}\nspec: {maxPerDay: 1, quietHours: {from: \"20:00\", to: \"10:00\"}, timezone: Asia/Kolkata}\n",
    )
    .unwrap();
    let data = demo.data_with_its_vault("policy-data");
    run(&specs, &out.join("sources"), &data, &tmp.join("o"));
    let held = jsonl(&tmp.join("o").join("matches.jsonl"));
    assert!(!held.is_empty());
    assert!(held.iter().all(|m| !quiet(&local(m))), "a match in quiet hours");
    assert_eq!(per_day(&held), 1);
    // Deferred ones went out as quiet hours ended, under their own match ids.
    let deferred: Vec<_> = held
        .iter()
        .filter(|m| local(m).hour() == 10 && local(m).minute() == 0)
        .collect();
    assert!(
        free.iter().all(|m| !quiet(&local(m))) || !deferred.is_empty(),
        "quiet-hour matches were dropped, not deferred"
    );
    let free_ids: std::collections::HashSet<_> = free.iter().map(|m| m["match_id"].clone()).collect();
    assert!(deferred.iter().all(|m| free_ids.contains(&m["match_id"])));
    let deliveries = jsonl(&tmp.join("o").join("deliveries.jsonl"));
    assert_eq!(deliveries.len(), held.len());
}

/// A feature added to the FeatureSet starts empty; `--backfill` recomputes it from the
/// run's events, as if it had always been there, and changes nothing else.
#[test]
fn an_added_feature_is_backfilled_on_request() {
    let demo = Demo::run(80, 45);
    let out = demo.out();
    let tmp = demo.dir.path();
    let full = demo.specs_copy("full");
    let narrow = tmp.join("narrow");
    copy_dir(&full, &narrow);
    let added = ["txn_count_lifetime", "categories_30d", "mall_spend_30d"];
    let set = read(&full.join("featureset.yaml"));
    let without: Vec<&str> = set
        .lines()
        .filter(|l| !added.iter().any(|a| l.contains(&format!("name: {a},"))))
        .collect();
    assert_eq!(without.len() + added.len(), set.lines().count());
    std::fs::write(narrow.join("featureset.yaml"), without.join("\n")).unwrap();
    let sources = out.join("sources");
    let data = |name: &str| demo.data_with_its_vault(name);
    let features = |o: &str| -> Vec<serde_json::Value> { jsonl(&tmp.join(o).join("features.jsonl")) };

    let live = data("live");
    run(&narrow, &sources, &live, &tmp.join("o1"));
    let before = tmp.join("before-backfill");
    copy_dir(&live, &before);
    run_files(
        &full,
        &sources,
        &live,
        &tmp.join("o2"),
        &["--backfill", &added.join(",")],
    );
    run(&full, &sources, &data("fresh"), &tmp.join("o3"));
    assert_eq!(features("o2"), features("o3"), "backfilled == computed from the start");
    assert!(
        jsonl(&tmp.join("o2").join("matches.jsonl")).is_empty(),
        "a backfill decides nothing again"
    );
    // Without --backfill the added features count only new events: none here.
    run(&full, &sources, &before, &tmp.join("o4"));
    assert!(
        features("o4")
            .iter()
            .all(|f| f["features"]["txn_count_lifetime"] == serde_json::json!(0))
    );
    let o = persona_unchecked(&[
        "run",
        "--specs",
        full.to_str().unwrap(),
        "--sources",
        sources.to_str().unwrap(),
        "--data",
        data("bad").to_str().unwrap(),
        "--out",
        tmp.join("o5").to_str().unwrap(),
        "--backfill",
        "car_intent",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("derived feature"));
}

/// A scheduled offer sweeps every customer at its times, as of each time, with no
/// triggering event; a second run over the same files sweeps nothing again.
#[test]
fn a_scheduled_offer_sweeps_every_customer_at_its_times() {
    use chrono::{Datelike, Timelike};
    let demo = Demo::run(120, 45);
    let out = demo.out();
    let tmp = demo.dir.path();
    let specs = demo.specs_copy("specs");
    std::fs::write(
        specs.join("weekly.yaml"),
        "kind: Offer\nmetadata: {name: weekly-saver}\nspec:\n  title: Your weekly savings tip\n  priority: 1\n  trigger: {schedule: \"0 10 * * MON\"}\n  when: features.min_balance_90d >= 100000\n  channels: [email, sms]\n  variants: [{name: tip, message: \"Move idle money to a fixed deposit\"}]\n",
    )
    .unwrap();
    let data = demo.data_with_its_vault("data");
    run(&specs, &out.join("sources"), &data, &tmp.join("o1"));
    let matches = jsonl(&tmp.join("o1").join("matches.jsonl"));
    let weekly: Vec<_> = matches.iter().filter(|m| m["offer"] == "weekly-saver").collect();
    assert!(!weekly.is_empty());
    let tz: chrono_tz::Tz = "Asia/Kolkata".parse().unwrap();
    let mut mondays = std::collections::BTreeSet::new();
    for m in &weekly {
        assert!(m["event_id"].is_null(), "{m}");
        let t = chrono::DateTime::parse_from_rfc3339(m["ts"].as_str().unwrap())
            .unwrap()
            .with_timezone(&tz);
        assert_eq!(
            (t.weekday(), t.hour(), t.minute()),
            (chrono::Weekday::Mon, 10, 0),
            "{m}"
        );
        mondays.insert(t.date_naive());
    }
    // 45 days hold six or seven Mondays; the first ones may find no one above the bar.
    assert!((2..=7).contains(&mondays.len()), "{mondays:?}");
    // The same files again: every sweep already ran.
    run(&specs, &out.join("sources"), &data, &tmp.join("o2"));
    let again = jsonl(&tmp.join("o2").join("matches.jsonl"));
    assert!(again.iter().all(|m| m["offer"] != "weekly-saver"), "{again:?}");
}

/// A `context` source has no customer key: each of its records reaches every actor,
/// and an offer's condition says whom it concerns (here, customers in the alert's
/// city). Read again, it decides nothing again.
#[test]
fn a_context_event_reaches_every_actor_it_concerns() {
    let demo = Demo::run(150, 30);
    let out = demo.out();
    let tmp = demo.dir.path();
    let specs = demo.specs_copy("specs");
    std::fs::write(
        specs.join("alerts.yaml"),
        "kind: Source\nmetadata: {name: weather-alerts}\nspec:\n  files: \"alerts.jsonl\"\n  format: jsonl\n  event: context\n  id: [alert_id]\n  time: {field: ts}\n  fields:\n    alert_id: drop\n    ts: drop\n    region: {attr: city}\n    level: {attr: level}\n---\nkind: Offer\nmetadata: {name: monsoon-cover}\nspec:\n  title: Monsoon cover for your car\n  priority: 90\n  trigger: {on: [context]}\n  when: event.level == \"red\" and event.city == profile.city\n  channels: [sms, email]\n  variants: [{name: a, message: \"Heavy rain ahead: add monsoon cover\"}]\n",
    )
    .unwrap();
    let sources = tmp.join("sources");
    copy_dir(&out.join("sources"), &sources);
    std::fs::write(
        sources.join("alerts.jsonl"),
        "{\"alert_id\":\"A1\",\"ts\":\"2026-10-20T06:00:00+05:30\",\"region\":\"Mumbai\",\"level\":\"red\"}\n{\"alert_id\":\"A2\",\"ts\":\"2026-10-21T06:00:00+05:30\",\"region\":\"Delhi\",\"level\":\"amber\"}\n",
    )
    .unwrap();
    let data = demo.data_with_its_vault("data");
    run(&specs, &sources, &data, &tmp.join("o1"));
    let cover: Vec<String> = jsonl(&tmp.join("o1").join("matches.jsonl"))
        .iter()
        .filter(|m| m["offer"] == "monsoon-cover")
        .map(|m| m["token"].as_str().unwrap().to_owned())
        .collect();
    assert!(!cover.is_empty());
    // Every one of them lives in Mumbai, and every reachable Mumbai customer got it.
    let mut args = vec!["vault", "resolve", "--data", data.to_str().unwrap()];
    args.extend(cover.iter().map(String::as_str));
    let resolved = String::from_utf8(persona(&args).stdout).unwrap();
    let city: std::collections::HashMap<String, String> = csv_rows(&sources.join("customers.csv"))
        .into_iter()
        .map(|r| (r["CUST_ID"].clone(), r["CITY"].clone()))
        .collect();
    for line in resolved.lines() {
        let (_, key) = line.split_once('\t').unwrap();
        assert_eq!(city[key], "Mumbai", "{line}");
    }
    let mumbai = city.values().filter(|c| *c == "Mumbai").count();
    assert!(
        cover.len() * 10 >= mumbai * 9,
        "{} of {mumbai} Mumbai customers",
        cover.len()
    );
    // The same files again: the alert was applied once per customer.
    run(&specs, &sources, &data, &tmp.join("o2"));
    let again = jsonl(&tmp.join("o2").join("matches.jsonl"));
    assert!(again.iter().all(|m| m["offer"] != "monsoon-cover"));
}

/// A run that may keep only 20 customers in memory (the rest passivated to the store
/// and reactivated on their next event) gives the demo's outputs byte for byte.
#[test]
fn a_memory_bound_changes_no_output() {
    let demo = Demo::run(200, 30);
    let out = demo.out();
    let data = demo.data_with_its_vault("bounded-data");
    let bounded = demo.dir.path().join("bounded");
    run_files(
        &out.join("specs"),
        &out.join("sources"),
        &data,
        &bounded,
        &["--max-hot", "20"],
    );
    for file in ["matches.jsonl", "features.jsonl", "deliveries.jsonl"] {
        assert_eq!(read(&bounded.join(file)), read(&out.join(file)), "{file} differs");
    }
    let summary: serde_json::Value = serde_json::from_str(&read(&bounded.join("summary.json"))).unwrap();
    let passivated = summary["customers_passivated"].as_u64().expect("customers_passivated");
    assert!(passivated >= 180, "{summary}");
}
