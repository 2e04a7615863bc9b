//! Runtime arithmetic and comparison, with the null rules: arithmetic on null (or
//! on values it does not apply to) is null, and a comparison with null is false.

use std::cmp::Ordering;

use chrono::TimeDelta;
use persona_event::Value;

use super::{ArithOp, CmpOp};

/// A comparison. Values of different kinds, and null, are neither equal nor unequal:
/// both `==` and `!=` are false for them.
pub(crate) fn compare(op: CmpOp, a: &Value, b: &Value) -> bool {
    match op {
        CmpOp::Eq => a.loose_eq(b) == Some(true),
        CmpOp::Ne => a.loose_eq(b) == Some(false),
        CmpOp::Lt => a.compare(b) == Some(Ordering::Less),
        CmpOp::Le => matches!(a.compare(b), Some(Ordering::Less | Ordering::Equal)),
        CmpOp::Gt => a.compare(b) == Some(Ordering::Greater),
        CmpOp::Ge => matches!(a.compare(b), Some(Ordering::Greater | Ordering::Equal)),
    }
}

pub(crate) fn neg(v: &Value) -> Value {
    match *v {
        Value::Int(i) => i.checked_neg().map_or(Value::Null, Value::Int),
        Value::Float(x) => Value::Float(-x),
        Value::Duration(d) => Value::Duration(-d),
        _ => Value::Null,
    }
}

/// `a op b`. Integers stay integers except under `/`; overflow, division by zero and
/// non-finite results are null. A string that reads as an RFC 3339 time counts as a
/// time next to a duration or a time.
pub(crate) fn arith(op: ArithOp, a: &Value, b: &Value) -> Value {
    use ArithOp::*;
    use Value::*;
    match (op, a, b) {
        (_, Null, _) | (_, _, Null) => Null,
        (Add, Int(x), Int(y)) => x.checked_add(*y).map_or(Null, Int),
        (Sub, Int(x), Int(y)) => x.checked_sub(*y).map_or(Null, Int),
        (Mul, Int(x), Int(y)) => x.checked_mul(*y).map_or(Null, Int),
        (_, Int(_) | Float(_), Int(_) | Float(_)) => {
            let (x, y) = (a.as_f64().unwrap_or(f64::NAN), b.as_f64().unwrap_or(f64::NAN));
            finite(match op {
                Add => x + y,
                Sub => x - y,
                Mul => x * y,
                Div if y == 0.0 => f64::NAN,
                Div => x / y,
            })
        }
        (Add, Str(x), Str(y)) => Str(format!("{x}{y}")),
        (Add, Duration(x), Duration(y)) => x.checked_add(y).map_or(Null, Duration),
        (Sub, Duration(x), Duration(y)) => x.checked_sub(y).map_or(Null, Duration),
        (Add, t, Duration(d)) | (Add, Duration(d), t) => match t.as_time() {
            Some(t) => t.checked_add_signed(*d).map_or(Null, Time),
            None => Null,
        },
        (Sub, t, Duration(d)) => match t.as_time() {
            Some(t) => t.checked_sub_signed(*d).map_or(Null, Time),
            None => Null,
        },
        (Sub, x, y) => match (x.as_time(), y.as_time()) {
            (Some(x), Some(y)) => Duration(x.signed_duration_since(y)),
            _ => Null,
        },
        (Mul, Duration(d), n @ (Int(_) | Float(_))) | (Mul, n @ (Int(_) | Float(_)), Duration(d)) => {
            scale(*d, n.as_f64().unwrap_or(f64::NAN))
        }
        (Div, Duration(d), n @ (Int(_) | Float(_))) => match n.as_f64() {
            Some(n) if n != 0.0 => scale(*d, 1.0 / n),
            _ => Null,
        },
        (Div, Duration(x), Duration(y)) if !y.is_zero() => finite(x.as_seconds_f64() / y.as_seconds_f64()),
        _ => Null,
    }
}

fn finite(x: f64) -> Value {
    if x.is_finite() { Value::Float(x) } else { Value::Null }
}

/// A duration times a factor, to the millisecond.
fn scale(d: TimeDelta, factor: f64) -> Value {
    let ms = d.num_milliseconds() as f64 * factor;
    if !ms.is_finite() || ms.abs() >= i64::MAX as f64 {
        return Value::Null;
    }
    TimeDelta::try_milliseconds(ms.round() as i64).map_or(Value::Null, Value::Duration)
}
