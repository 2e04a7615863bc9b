//! Status conditions: the upstream `Condition`, one per `type`, whose
//! `lastTransitionTime` moves only when its status does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// `True` or `False`, as conditions spell it.
pub fn status_word(status: bool) -> String {
    if status { "True" } else { "False" }.to_owned()
}

/// A condition of `type_` at `now`.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status_word(status),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// Merges `new` into `conditions` by type: a condition whose status is unchanged
/// keeps its `lastTransitionTime`; the rest of it is replaced. Order is kept, new
/// types go last.
pub fn merge(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

/// The condition of `type_`, if any.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn an_unchanged_status_keeps_its_transition_time() {
        let mut list = vec![condition("Ready", false, "Starting", "0/2 ready", Some(1), &at(10))];
        merge(
            &mut list,
            condition("Ready", false, "Starting", "1/2 ready", Some(1), &at(20)),
        );
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].last_transition_time, at(10));
        assert_eq!(list[0].message, "1/2 ready");
        merge(
            &mut list,
            condition("Ready", true, "ShardsReady", "2/2 ready", Some(2), &at(30)),
        );
        assert_eq!(list[0].last_transition_time, at(30));
        assert_eq!(list[0].observed_generation, Some(2));
        assert!(is_true(&list, "Ready"));
    }

    #[test]
    fn conditions_are_merged_by_type() {
        let mut list = Vec::new();
        merge(&mut list, condition("Ready", true, "A", "", None, &at(1)));
        merge(&mut list, condition("Degraded", false, "B", "", None, &at(1)));
        merge(&mut list, condition("Ready", false, "C", "", None, &at(2)));
        let types: Vec<_> = list.iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
        assert_eq!(types, [("Ready", "False"), ("Degraded", "False")]);
        assert!(!is_true(&list, "Missing"));
    }
}
