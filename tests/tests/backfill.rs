//! Streaming equals batch through the whole pipeline: the features the actors of
//! `persona demo` computed (events applied one by one, checkpointed, snapshotted) are
//! the features `persona backfill` computes from the same files in batch, and the
//! features `persona bench features` computes from the canonical events backfill wrote
//! (events in memory, and `--from-file`).

use persona_tests::{Demo, close, jsonl, persona};
use serde_json::Value;

#[test]
fn backfill_equals_the_actors_features() {
    let demo = Demo::run(300, 60);
    let out = demo.out();
    let backfilled = demo.dir.path().join("backfill");
    persona(&[
        "backfill",
        "--specs",
        out.join("specs").to_str().unwrap(),
        "--sources",
        out.join("sources").to_str().unwrap(),
        "--data",
        out.join("data").to_str().unwrap(),
        "--out",
        backfilled.to_str().unwrap(),
        "--events-out",
        backfilled.join("events.jsonl").to_str().unwrap(),
    ]);
    let events_file = backfilled.join("events.jsonl");
    let featureset = out.join("specs/featureset.yaml");
    // `persona bench features` over the canonical events, writing the features to `to`.
    let bench = |extra: &[&str], to: &std::path::Path| -> Value {
        let mut args = vec![
            "bench",
            "features",
            "--events",
            events_file.to_str().unwrap(),
            "--featureset",
            featureset.to_str().unwrap(),
            "--runs",
            "1",
            "--json",
            "--features-out",
            to.to_str().unwrap(),
        ];
        args.extend(extra);
        serde_json::from_str(&String::from_utf8_lossy(&persona(&args).stdout)).unwrap()
    };
    let benched = backfilled.join("bench-features.jsonl");
    let report = bench(&[], &benched);
    let events = jsonl(&events_file);
    assert_eq!(report["params"]["events"], events.len());
    assert_eq!(report["params"]["customers"], 300);
    assert!(report["ops_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(report["params"]["timed"], "apply");
    // The same from the file, on two threads each parsing its share of the customers.
    let from_file = backfilled.join("bench-from-file.jsonl");
    let report = bench(&["--threads", "2", "--from-file"], &from_file);
    assert_eq!(report["params"]["timed"], "from-file");
    assert_eq!(report["cores_used"], 2);
    let streamed = jsonl(&out.join("features.jsonl"));
    let batched = jsonl(&backfilled.join("features.jsonl"));
    for benched in [jsonl(&benched), jsonl(&from_file)] {
        assert_eq!(benched.len(), batched.len());
        for (s, b) in benched.iter().zip(&batched) {
            assert_eq!((&s["token"], &s["as_of"]), (&b["token"], &b["as_of"]));
            assert!(close(&s["features"], &b["features"]), "bench {s} batch {b}");
        }
    }
    assert_eq!(streamed.len(), 300);
    assert_eq!(streamed.len(), batched.len());
    for (s, b) in streamed.iter().zip(&batched) {
        assert_eq!(s["token"], b["token"]);
        assert_eq!(s["as_of"], b["as_of"]);
        let (sf, bf) = (s["features"].as_object().unwrap(), b["features"].as_object().unwrap());
        assert!(sf.len() >= 50);
        for (name, v) in sf {
            assert!(
                close(v, &bf[name]),
                "{} {name}: streaming {v} batch {}",
                s["token"],
                bf[name]
            );
        }
    }
}
