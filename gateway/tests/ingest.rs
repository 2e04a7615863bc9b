//! Ingest over real files and a real vault: events, dead letters with their file and
//! line, counts, re-runs, and that no protected value reaches the events, the dead
//! letters or the logs.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use persona_event::{ContactKind, Event, Value};
use persona_gateway::{DeadLetter, Gateway, IngestReport};
use persona_privacy::{LocalKms, Source, Vault};

const CUSTOMERS: &str = r#"
kind: Source
metadata: {name: customers}
spec:
  format: csv
  event: profile
  id: [CUST_ID, UPDATED]
  time: {field: UPDATED, format: "%Y-%m-%d", tz: Asia/Kolkata}
  fields:
    CUST_ID: key
    NAME: drop
    DOB: {generalize: age, bands: [18, 25, 35, 45, 60], attr: age_band}
    PAN: {mask: {keepLast: 4}}
    EMAIL: {vault: email}
    MOBILE: {vault: phone}
    CITY: {attr: city}
    SCORE: {attr: credit_score, type: int}
"#;

const CUSTOMERS_CSV: &str = "\
CUST_ID,NAME,DOB,PAN,EMAIL,MOBILE,CITY,SCORE,UPDATED,NOTES
C1001,Saanvi Sarkar,1998-07-14,4111222233331234,saanvi.sarkar@example.com,+919812345678,Mumbai,780,2026-01-05,prefers Saanvi at home
C1002,Arjun Mehta,1985-02-01,5500111122223333,arjun.mehta@example.com,+919876543210,Pune,640,2026-01-05,
C1003,Broken Row,1990-01-01,4000
C1004,Kavya Iyer,14/07/1998,4111000011112222,kavya.iyer@example.com,+919800011122,Delhi,700,2026-01-05,
C1005,Rohan Das,1979-11-30,4111999988887777,rohan.das@example.com,+919811122233,Kolkata,seven hundred,2026-01-05,
C1006,\"Meera, Nair\",1992-05-05,4111555566667777,meera.nair@example.com,,Chennai,720,2026-01-06,
";

const APP: &str = r#"
kind: Source
metadata: {name: app}
spec:
  files: "app/events-*.jsonl"
  format: jsonl
  event: app_event
  time: {field: ts}
  fields:
    customer: key
    screen: {attr: screen}
    email: {vault: email}
    device: {vault: device}
    duration: {attr: duration_s, type: int}
    merchant.mall: {attr: mall}
"#;

const APP_JSONL: &str = r#"{"customer": "C1001", "ts": "2026-01-05T10:00:00+05:30", "screen": "loans", "email": "saanvi.sarkar@example.com", "device": "fcm:abc123secret", "merchant.mall": "Phoenix"}
{"customer": "C1002", "ts": "2026-01-05T11:00:00Z", "screen": "cards"
{"customer": "C1003", "ts": "yesterday", "screen": "home"}
{"customer": "C1002", "ts": "2026-01-05T12:00:00Z", "screen": "home", "duration": "long"}
{"customer": "C1002", "ts": "2026-01-05T12:30:00Z", "screen": "home", "duration": 12}
"#;

/// Every value a rule protects (and values of refused fields), which must never leave.
const PROTECTED: &[&str] = &[
    "C1001",
    "C1002",
    "C1003",
    "C1004",
    "C1005",
    "C1006",
    "Saanvi",
    "Sarkar",
    "Arjun",
    "Mehta",
    "Broken Row",
    "Kavya",
    "Rohan",
    "Meera",
    "saanvi.sarkar@example.com",
    "arjun.mehta@example.com",
    "example.com",
    "+919812345678",
    "9812345678",
    "9876543210",
    "4111222233331234",
    "5500111122223333",
    "1998-07-14",
    "1985-02-01",
    "14/07/1998",
    "seven hundred",
    "yesterday",
    "long",
    "fcm:abc123secret",
    "prefers",
];

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Log output of every test in this binary. A global subscriber, because tracing
/// caches per-callsite interest across threads and a scoped one can miss events.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer({
                let logs = logs.clone();
                move || logs.clone()
            })
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
}

fn fixture(dir: &Path) {
    logs();
    std::fs::write(dir.join("customers.csv"), CUSTOMERS_CSV).unwrap();
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(dir.join("app/events-2026-01.jsonl"), APP_JSONL).unwrap();
}

fn gateway(data: &Path) -> Gateway {
    let kms = LocalKms::open(&data.join("kms")).unwrap();
    let vault = Vault::open(&data.join("vault"), Arc::new(kms)).unwrap();
    let sources = vec![Source::from_yaml(CUSTOMERS).unwrap(), Source::from_yaml(APP).unwrap()];
    Gateway::new(sources, Arc::new(vault))
}

fn ingest(gw: &Gateway, dir: &Path) -> (IngestReport, Vec<Event>) {
    let mut events = Vec::new();
    let report = gw.ingest_dir(dir, &mut |e| events.push(e)).unwrap();
    (report, events)
}

fn letter(source: &str, file: &str, line: u64, field: Option<&str>) -> (String, String, u64, Option<String>) {
    (source.to_owned(), file.to_owned(), line, field.map(str::to_owned))
}

#[test]
fn no_protected_value_leaves_and_bad_lines_become_dead_letters() {
    let sources = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    fixture(sources.path());
    let gw = gateway(data.path());
    let (report, events) = ingest(&gw, sources.path());

    let events_json: Vec<String> = events.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
    let dead_json: Vec<String> = report
        .dead_letters
        .iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .collect();
    let report_json = serde_json::to_string(&report).unwrap();
    let logs = String::from_utf8(logs().0.lock().unwrap().clone()).unwrap();
    for secret in PROTECTED {
        for (what, text) in [
            ("events", events_json.join("\n")),
            ("dead letters", dead_json.join("\n")),
            ("report", report_json.clone()),
            ("logs", logs.clone()),
        ] {
            assert!(!text.contains(secret), "`{secret}` leaked into {what}:\n{text}");
        }
    }
    assert!(
        logs.contains("columns named by no rule were dropped") && logs.contains("NOTES"),
        "{logs}"
    );
    assert!(logs.contains("file ingested"), "{logs}");
    assert!(logs.contains("LOCAL KMS IN USE"), "{logs}");

    let got: Vec<_> = report
        .dead_letters
        .iter()
        .map(|d| (d.source.clone(), d.file.clone(), d.line, d.field.clone()))
        .collect();
    assert_eq!(
        got,
        [
            letter("customers", "customers.csv", 4, None),
            letter("customers", "customers.csv", 5, Some("DOB")),
            letter("customers", "customers.csv", 6, Some("SCORE")),
            letter("app", "app/events-2026-01.jsonl", 2, None),
            letter("app", "app/events-2026-01.jsonl", 3, Some("ts")),
            letter("app", "app/events-2026-01.jsonl", 4, Some("duration")),
        ]
    );
    assert_eq!(
        dead_json[0],
        r#"{"source":"customers","file":"customers.csv","line":4,"reason":"record has 4 fields, the header has 10"}"#
    );
    assert_eq!(
        report.dead_letters[5],
        DeadLetter {
            source: "app".to_owned(),
            file: "app/events-2026-01.jsonl".to_owned(),
            line: 4,
            reason: "value is not a valid int".to_owned(),
            field: Some("duration".to_owned()),
        }
    );

    // The rest of each file went on. The app record that vaults a device also
    // announces the customer's contact kinds in a profile event of its own.
    assert_eq!(events.len(), 6);
    assert_eq!((report.records_read, report.events), (11, 6));
    assert_eq!(report.tokens_issued, 3);
    assert_eq!(report.per_source["customers"].events, 3);
    assert_eq!(report.per_source["app"].dead_lettered, 3);
    assert_eq!(report.fields_dropped, 3);
    assert_eq!(report.fields_generalized, 3);
    assert_eq!(report.fields_masked, 3);
    assert_eq!(report.fields_vaulted, 5 + 2);
    assert_eq!(report.fields_unnamed, 3);

    let saanvi = &events[0];
    assert_eq!(saanvi.kind, "profile");
    assert_eq!(persona_event::time::format_ts(&saanvi.ts), "2026-01-04T18:30:00Z");
    assert_eq!(saanvi.attr("age_band"), &Value::from("25-35"));
    assert_eq!(saanvi.attr("pan"), &Value::from("XXXXXXXXXXXX1234"));
    assert_eq!(saanvi.attr("credit_score"), &Value::Int(780));
    assert_eq!(
        saanvi.attr("contacts"),
        &Value::List(vec!["email".into(), "phone".into()])
    );
    assert_eq!(events[2].attr("contacts"), &Value::List(vec!["email".into()]));
    // The app record vaulted a device: its profile event says so, before the record's event.
    assert_eq!(events[3].kind, "profile");
    assert_eq!(events[3].token, saanvi.token);
    assert_eq!(
        events[3].attr("contacts"),
        &Value::List(vec!["email".into(), "phone".into(), "device".into()])
    );
    assert_eq!(events[3].attrs.len(), 1);
    assert_eq!(events[4].kind, "app_event");
    assert_eq!(events[4].token, saanvi.token);
    assert_eq!(events[4].attr("mall"), &Value::from("Phoenix"));
    assert!(events[4].attr("contacts").is_null());
    assert_eq!(events[5].attr("duration_s"), &Value::Int(12));

    // The trusted zone can still go back, and holds the contacts it vaulted.
    let vault = gw.vault();
    assert_eq!(vault.resolve(&saanvi.token).unwrap().unwrap().expose_secret(), "C1001");
    assert_eq!(
        vault
            .contact(&saanvi.token, ContactKind::Device)
            .unwrap()
            .unwrap()
            .expose(),
        "fcm:abc123secret"
    );
}

#[test]
fn a_second_run_gives_the_same_events_and_issues_no_token() {
    let sources = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    fixture(sources.path());
    let (first, events) = ingest(&gateway(data.path()), sources.path());
    let (second, again) = ingest(&gateway(data.path()), sources.path());
    assert_eq!(first.tokens_issued, 3);
    assert_eq!(second.tokens_issued, 0);
    // Same ids, tokens and times; the profile now also lists the device vaulted by
    // the app source in the first run.
    let key = |e: &Event| (e.id.clone(), e.token.clone(), e.ts, e.kind.clone());
    assert_eq!(
        events.iter().map(key).collect::<Vec<_>>(),
        again.iter().map(key).collect::<Vec<_>>()
    );
    assert_eq!(
        again[0].attr("contacts"),
        &Value::List(vec!["email".into(), "phone".into(), "device".into()])
    );
    let ids: std::collections::HashSet<_> = events.iter().map(|e| &e.id).collect();
    assert_eq!(ids.len(), events.len());
}

#[test]
fn a_source_without_files_is_not_an_error() {
    logs();
    let sources = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (report, events) = ingest(&gateway(data.path()), sources.path());
    assert!(events.is_empty());
    assert_eq!(report.records_read, 0);
    assert_eq!(report.per_source["customers"].files, 0);
}

#[test]
fn contacts_vaulted_by_a_non_profile_source_reach_the_cloud_as_a_profile_event() {
    let crm = "kind: Source\nmetadata: {name: crm}\nspec:\n  format: csv\n  event: profile\n  id: [ID]\n  time: {value: \"2026-01-01T00:00:00Z\"}\n  fields:\n    ID: key\n    CITY: {attr: city}\n";
    let contacts = "kind: Source\nmetadata: {name: contacts}\nspec:\n  format: csv\n  event: contact_update\n  id: [ID, AT]\n  time: {field: AT}\n  fields:\n    ID: key\n    EMAIL: {vault: email}\n";
    let dir = tempfile::tempdir().unwrap();
    let (src, data) = (dir.path().join("src"), dir.path().join("data"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("crm.csv"), "ID,CITY\nK1,Pune\n").unwrap();
    std::fs::write(
        src.join("contacts.csv"),
        "ID,EMAIL,AT\nK1,k1@example.com,2026-02-01T00:00:00Z\n",
    )
    .unwrap();
    let kms = LocalKms::open(&data.join("kms")).unwrap();
    let vault = Arc::new(Vault::open(&data.join("vault"), Arc::new(kms)).unwrap());
    let sources = vec![Source::from_yaml(crm).unwrap(), Source::from_yaml(contacts).unwrap()];
    let gw = Gateway::new(sources, vault);
    let (report, events) = ingest(&gw, &src);
    let profiles: Vec<&Event> = events.iter().filter(|e| e.kind == "profile").collect();
    assert_eq!(profiles.len(), 2, "{events:?}");
    assert_eq!(profiles[0].attrs["contacts"], Value::List(vec![]));
    assert_eq!(
        profiles[1].attrs["contacts"],
        Value::List(vec![Value::from(ContactKind::Email.as_str())])
    );
    assert_eq!(
        profiles[1].ts,
        persona_event::time::parse_ts("2026-02-01T00:00:00Z").unwrap()
    );
    assert_eq!(report.events, 3);
    // A second read of the same files gives the same events, ids included.
    let (_, again) = ingest(&gw, &src);
    let ids = |evs: &[Event]| evs.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&events));
}
