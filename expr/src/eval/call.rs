//! Runtime of the built-in functions. Functions that compute a value give null when
//! an argument is null or of the wrong kind; predicates (`contains`, `starts_with`,
//! `sent`, `responded`) give false, as comparisons do.

use std::borrow::Cow;

use chrono::{Datelike, Timelike};
use persona_event::Value;

use super::{Node, Scope, member_of};
use crate::func::Func;

pub(crate) fn call<'a>(f: Func, args: &'a [Node], s: &'a dyn Scope) -> Cow<'a, Value> {
    let arg = |i: usize| args.get(i).map_or(Cow::Owned(Value::Null), |n| n.eval(s));
    let value = match f {
        Func::Coalesce => {
            return args
                .iter()
                .map(|n| n.eval(s))
                .find(|v| !v.is_null())
                .unwrap_or(Cow::Owned(Value::Null));
        }
        Func::DayOfMonth => match arg(0).as_time() {
            Some(t) => Value::Int(i64::from(t.with_timezone(&s.timezone()).day())),
            None => Value::Null,
        },
        Func::Hour => match arg(0).as_time() {
            Some(t) => Value::Int(i64::from(t.with_timezone(&s.timezone()).hour())),
            None => Value::Null,
        },
        Func::DaysSince => match (s.now(), arg(0).as_time()) {
            // Whole elapsed days, rounded down, so "1 day" means at least 24 hours.
            (Some(now), Some(t)) => Value::Int(now.signed_duration_since(t).num_seconds().div_euclid(86_400)),
            _ => Value::Null,
        },
        Func::Sent => match (&*arg(0), &*arg(1)) {
            (Value::Str(offer), Value::Duration(within)) => Value::Bool(s.sent(offer, *within)),
            _ => Value::Bool(false),
        },
        Func::Responded => match (&*arg(0), &*arg(1), &*arg(2)) {
            (Value::Str(offer), Value::Str(outcome), Value::Duration(within)) => {
                Value::Bool(s.responded(offer, outcome, *within))
            }
            _ => Value::Bool(false),
        },
        Func::Min => extreme(args, s, std::cmp::Ordering::Less),
        Func::Max => extreme(args, s, std::cmp::Ordering::Greater),
        Func::Abs => match *arg(0) {
            Value::Int(i) => i.checked_abs().map_or(Value::Null, Value::Int),
            Value::Float(x) => Value::Float(x.abs()),
            Value::Duration(d) => Value::Duration(d.abs()),
            _ => Value::Null,
        },
        Func::Contains => {
            let (hay, needle) = (arg(0), arg(1));
            Value::Bool(match (&*hay, &*needle) {
                (Value::Str(h), Value::Str(n)) => h.contains(n.as_str()),
                (Value::List(_) | Value::Map(_), n) => member_of(n, &hay),
                _ => false,
            })
        }
        Func::StartsWith => match (&*arg(0), &*arg(1)) {
            (Value::Str(h), Value::Str(p)) => Value::Bool(h.starts_with(p.as_str())),
            _ => Value::Bool(false),
        },
        Func::Len => match &*arg(0) {
            Value::Str(x) => Value::Int(x.chars().count() as i64),
            Value::List(l) => Value::Int(l.len() as i64),
            Value::Map(m) => Value::Int(m.len() as i64),
            _ => Value::Null,
        },
    };
    Cow::Owned(value)
}

/// The least (`want` = Less) or greatest number among the arguments, lists among
/// them flattened one level; nulls and non-numbers are skipped; null if none is left.
fn extreme(args: &[Node], s: &dyn Scope, want: std::cmp::Ordering) -> Value {
    let mut best: Option<Value> = None;
    let mut offer = |v: &Value| {
        if v.as_f64().is_some_and(|x| !x.is_nan()) && best.as_ref().is_none_or(|b| v.compare(b) == Some(want)) {
            best = Some(v.clone());
        }
    };
    for node in args {
        match &*node.eval(s) {
            Value::List(items) => items.iter().for_each(&mut offer),
            v => offer(v),
        }
    }
    best.unwrap_or(Value::Null)
}
