#!/usr/bin/env python3
"""The persona FeatureSet computed by Apache Spark (PySpark, local mode).

Reads canonical events (JSON Lines, as `persona backfill --events-out` writes them)
and a FeatureSet YAML, translates every feature generically into Spark DataFrame
operations, and writes each customer's features as of one instant (default: the
latest event of all) in the features.jsonl format of DESIGN.md section 6.

Semantics follow persona's batch evaluator (features/src/batch.rs, window.rs,
agg.rs) and expression language (docs/dsl.md). What is outside the supported subset
fails with a message naming the feature.

Timing: the events are read, parsed, partitioned by customer token and cached in
Spark memory first (untimed, like persona's file parsing). Each timed run then
builds the plan, computes every feature of every customer, collects the rows to
the driver and evaluates the derived features. --warmup untimed runs (JIT), then
the median of --runs timed runs.
"""

import argparse
import datetime as dt
import json
import math
import os
import statistics
import sys
import time

import yaml


class Unsupported(Exception):
    """A FeatureSet construct this job does not translate."""


# ---------------------------------------------------------------------------
# Values the expression language has beyond JSON: instants and durations, both in
# microseconds.


class Instant:
    __slots__ = ("us",)

    def __init__(self, us):
        self.us = us

    def __eq__(self, other):
        return isinstance(other, Instant) and other.us == self.us

    def __hash__(self):
        return hash(("instant", self.us))

    def __repr__(self):
        return format_ts(self.us)


class Duration:
    __slots__ = ("us",)

    def __init__(self, us):
        self.us = us

    def __eq__(self, other):
        return isinstance(other, Duration) and other.us == self.us

    def __repr__(self):
        return f"{self.us}us"


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def format_ts(us):
    """RFC 3339 in UTC with `Z`, a fraction only when there is one (chrono AutoSi)."""
    t = EPOCH + dt.timedelta(microseconds=us)
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    frac = us % 1_000_000
    if frac == 0:
        return s + "Z"
    if frac % 1000 == 0:
        return f"{s}.{frac // 1000:03d}Z"
    return f"{s}.{frac:06d}Z"


def parse_ts(s):
    """An RFC 3339 string to microseconds, or None."""
    try:
        t = dt.datetime.fromisoformat(s.strip().replace("z", "Z").replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    if t.tzinfo is None or "T" not in s.upper():
        return None
    d = t - EPOCH
    return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration_secs(text):
    text = str(text).strip()
    i = 0
    while i < len(text) and text[i].isdigit():
        i += 1
    if i == 0 or text[i:] not in DURATION_UNITS:
        raise ValueError(f"invalid duration `{text}`: expected e.g. 30d")
    return int(text[:i]) * DURATION_UNITS[text[i:]]


# ---------------------------------------------------------------------------
# The expression language: lexer and parser (precedence as in docs/dsl.md).

KEYWORDS = {"true", "false", "null", "and", "or", "not", "in"}
PUNCT2 = {"==", "!=", "<=", ">="}
PUNCT1 = set(".,()[]<>+-*/")


def lex(src):
    toks, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if c.isspace():
            i += 1
        elif c.isdigit():
            j = i
            while j < n and src[j].isdigit():
                j += 1
            decimal = j + 1 < n and src[j] == "." and src[j + 1].isdigit()
            if decimal:
                j += 1
                while j < n and src[j].isdigit():
                    j += 1
            k = j
            while k < n and (src[k].isalnum() or src[k] == "_"):
                k += 1
            if k > j:
                if decimal or src[j:k] not in DURATION_UNITS:
                    raise SyntaxError(f"invalid literal `{src[i:k]}`")
                toks.append(("dur", int(src[i:j]) * DURATION_UNITS[src[j:k]] * 1_000_000))
            elif decimal:
                toks.append(("num", float(src[i:j])))
            else:
                v = int(src[i:j])
                if v > I64_MAX:
                    raise SyntaxError(f"number `{src[i:j]}` is too large")
                toks.append(("num", v))
            i = k
        elif c == '"':
            j, out = i + 1, []
            while True:
                if j >= n:
                    raise SyntaxError("unterminated string")
                ch = src[j]
                if ch == '"':
                    break
                if ch == "\\":
                    esc = src[j + 1 : j + 2]
                    if esc not in ('"', "\\", "n", "t"):
                        raise SyntaxError(f"unknown escape `\\{esc}`")
                    out.append({"n": "\n", "t": "\t"}.get(esc, esc))
                    j += 2
                else:
                    out.append(ch)
                    j += 1
            toks.append(("str", "".join(out)))
            i = j + 1
        elif c.isalpha() or c == "_":
            j = i
            while j < n and (src[j].isalnum() or src[j] == "_"):
                j += 1
            w = src[i:j]
            toks.append(("kw", w) if w in KEYWORDS else ("ident", w))
            i = j
        elif src[i : i + 2] in PUNCT2:
            toks.append(("op", src[i : i + 2]))
            i += 2
        elif c in PUNCT1:
            toks.append(("op", c))
            i += 1
        else:
            raise SyntaxError(f"unexpected character `{c}`")
    return toks


CMP_OPS = ("==", "!=", "<", "<=", ">", ">=")
ROOTS = ("event", "features", "profile", "prefs")


class Parser:
    """Recursive descent into tuples:
    ("lit", v) ("list", [n]) ("attr", name) ("feat", name) ("root", r, name)
    ("index", base, n) ("field", base, name) ("not", n) ("neg", n) ("and", [n])
    ("or", [n]) ("cmp", op, a, b) ("in", a, b) ("arith", op, a, b) ("call", f, [n])
    """

    def __init__(self, src):
        self.toks = lex(src)
        self.i = 0

    def peek(self, k=0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else (None, None)

    def take(self):
        t = self.peek()
        self.i += 1
        return t

    def expect(self, kind, val):
        t = self.take()
        if t != (kind, val):
            raise SyntaxError(f"expected `{val}`, found {t[1]!r}")

    def parse(self):
        node = self.or_()
        if self.i != len(self.toks):
            raise SyntaxError(f"unexpected {self.peek()[1]!r}")
        return node

    def or_(self):
        xs = [self.and_()]
        while self.peek() == ("kw", "or"):
            self.take()
            xs.append(self.and_())
        return xs[0] if len(xs) == 1 else ("or", xs)

    def and_(self):
        xs = [self.not_()]
        while self.peek() == ("kw", "and"):
            self.take()
            xs.append(self.not_())
        return xs[0] if len(xs) == 1 else ("and", xs)

    def not_(self):
        if self.peek() == ("kw", "not"):
            self.take()
            return ("not", self.not_())
        return self.cmp()

    def cmp(self):
        a = self.add()
        t = self.peek()
        if (t[0] == "op" and t[1] in CMP_OPS) or t == ("kw", "in"):
            self.take()
            b = self.add()
            n = self.peek()
            if (n[0] == "op" and n[1] in CMP_OPS) or n == ("kw", "in"):
                raise SyntaxError("chained comparison: write `a < b and b < c`")
            return ("in", a, b) if t[1] == "in" else ("cmp", t[1], a, b)
        return a

    def add(self):
        a = self.mul()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.take()[1]
            a = ("arith", op, a, self.mul())
        return a

    def mul(self):
        a = self.unary()
        while self.peek() in (("op", "*"), ("op", "/")):
            op = self.take()[1]
            a = ("arith", op, a, self.unary())
        return a

    def unary(self):
        if self.peek() == ("op", "-"):
            self.take()
            x = self.unary()
            if x[0] == "lit" and type(x[1]) in (int, float):
                return ("lit", -x[1])
            if x[0] == "lit" and isinstance(x[1], Duration):
                return ("lit", Duration(-x[1].us))
            return ("neg", x)
        return self.postfix()

    def postfix(self):
        node = self.primary()
        while True:
            t = self.peek()
            if t == ("op", "."):
                self.take()
                name = self.take()
                if name[0] not in ("ident", "kw"):
                    raise SyntaxError("expected a name after `.`")
                node = self.member(node, name[1])
            elif t == ("op", "["):
                self.take()
                idx = self.or_()
                self.expect("op", "]")
                if node[0] == "rootref":
                    if idx[0] != "lit" or not isinstance(idx[1], str):
                        raise SyntaxError(f"`{node[1]}[...]` takes a string literal")
                    node = self.member(node, idx[1])
                else:
                    node = ("index", node, idx)
            else:
                break
        if node[0] == "rootref":
            raise SyntaxError(f"`{node[1]}` alone is not a value")
        return node

    @staticmethod
    def member(node, name):
        if node[0] == "rootref":
            root = node[1]
            if root == "event":
                return ("attr", name)
            if root == "features":
                return ("feat", name)
            return ("root", root, name)
        return ("field", node, name)

    def primary(self):
        kind, val = self.take()
        if kind == "num":
            return ("lit", val)
        if kind == "str":
            return ("lit", val)
        if kind == "dur":
            return ("lit", Duration(val))
        if kind == "kw" and val in ("true", "false", "null"):
            return ("lit", {"true": True, "false": False, "null": None}[val])
        if (kind, val) == ("op", "("):
            x = self.or_()
            self.expect("op", ")")
            return x
        if (kind, val) == ("op", "["):
            items = []
            while self.peek() != ("op", "]"):
                items.append(self.or_())
                if self.peek() == ("op", ","):
                    self.take()
                elif self.peek() != ("op", "]"):
                    raise SyntaxError("expected `,` or `]` in a list")
            self.take()
            if all(x[0] == "lit" for x in items):
                return ("lit", [x[1] for x in items])
            return ("list", items)
        if kind == "ident":
            if self.peek() == ("op", "("):
                self.take()
                args = []
                while self.peek() != ("op", ")"):
                    args.append(self.or_())
                    if self.peek() == ("op", ","):
                        self.take()
                    elif self.peek() != ("op", ")"):
                        raise SyntaxError("expected `,` or `)` in a call")
                self.take()
                return ("call", val, args)
            if val in ROOTS:
                return ("rootref", val)
            raise SyntaxError(f"unknown name `{val}`")
        raise SyntaxError(f"unexpected {val!r}" if val is not None else "unexpected end")


def parse_expr(src, what):
    try:
        return Parser(str(src)).parse()
    except SyntaxError as e:
        raise Unsupported(f"{what}: cannot parse `{src}`: {e}") from None


def features_used(node, out):
    if not isinstance(node, tuple):
        return out
    if node[0] == "feat":
        out.add(node[1])
    for x in node[1:]:
        if isinstance(x, tuple):
            features_used(x, out)
        elif isinstance(x, list):
            for y in x:
                features_used(y, out)
    return out


# ---------------------------------------------------------------------------
# Python evaluation of expressions (derived features), persona's null rules.


def is_bool(v):
    return isinstance(v, bool)


def is_num(v):
    return type(v) in (int, float)


def compare(a, b):
    """-1, 0, 1, or None when either is null or the kinds differ (Value::compare)."""
    if a is None or b is None:
        return None
    if is_bool(a) or is_bool(b):
        if is_bool(a) and is_bool(b):
            return (a > b) - (a < b)
        return None
    if is_num(a) and is_num(b):
        if type(a) is int and type(b) is int:
            return (a > b) - (a < b)
        x, y = float(a), float(b)
        if math.isnan(x) or math.isnan(y):
            return None
        return (x > y) - (x < y)
    if isinstance(a, str) and isinstance(b, str):
        ab, bb = a.encode(), b.encode()
        return (ab > bb) - (ab < bb)
    if isinstance(a, Instant) or isinstance(b, Instant):
        x = a.us if isinstance(a, Instant) else (parse_ts(a) if isinstance(a, str) else None)
        y = b.us if isinstance(b, Instant) else (parse_ts(b) if isinstance(b, str) else None)
        if x is None or y is None or not (isinstance(a, Instant) or isinstance(b, Instant)):
            return None
        if not ((isinstance(a, Instant) or isinstance(a, str)) and (isinstance(b, Instant) or isinstance(b, str))):
            return None
        return (x > y) - (x < y)
    if isinstance(a, Duration) and isinstance(b, Duration):
        return (a.us > b.us) - (a.us < b.us)
    return None


def strict_eq(a, b):
    """Value's derived PartialEq (used for lists and maps)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_eq(a[k], b[k]) for k in a)
    return a == b


def loose_eq(a, b):
    if a is None or b is None:
        return None
    if isinstance(a, list) and isinstance(b, list):
        return strict_eq(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return strict_eq(a, b)
    c = compare(a, b)
    return None if c is None else c == 0


def rust_float_str(x):
    """f64's Display: shortest round-trip digits, never an exponent."""
    if x == int(x) and abs(x) < 1e16:
        return str(int(x)) if not (x == 0 and math.copysign(1, x) < 0) else "-0"
    r = repr(x)
    if "e" in r or "E" in r:
        from decimal import Decimal

        r = format(Decimal(r), "f")
    return r


def to_key(v):
    """Value::to_key: strings as they are, anything else as displayed."""
    if isinstance(v, str):
        return v
    if is_bool(v):
        return "true" if v else "false"
    if type(v) is int:
        return str(v)
    if type(v) is float:
        return rust_float_str(v)
    if isinstance(v, Instant):
        return format_ts(v.us)
    if v is None:
        return "null"
    raise Unsupported(f"a key of kind {type(v).__name__}")


def finite(x):
    return x if math.isfinite(x) else None


def arith(op, a, b):
    if a is None or b is None:
        return None
    if is_num(a) and is_num(b) and not is_bool(a) and not is_bool(b):
        if type(a) is int and type(b) is int and op != "/":
            r = a + b if op == "+" else a - b if op == "-" else a * b
            return r if I64_MIN <= r <= I64_MAX else None
        x, y = float(a), float(b)
        if op == "/":
            return None if y == 0.0 else finite(x / y)
        try:
            return finite(x + y if op == "+" else x - y if op == "-" else x * y)
        except OverflowError:
            return None
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if isinstance(a, Duration) and isinstance(b, Duration):
        if op == "+":
            return Duration(a.us + b.us)
        if op == "-":
            return Duration(a.us - b.us)
        if op == "/" and b.us != 0:
            return finite(a.us / b.us)
        return None
    ta = a.us if isinstance(a, Instant) else parse_ts(a) if isinstance(a, str) else None
    tb = b.us if isinstance(b, Instant) else parse_ts(b) if isinstance(b, str) else None
    if op == "+" and ta is not None and isinstance(b, Duration):
        return Instant(ta + b.us)
    if op == "+" and tb is not None and isinstance(a, Duration):
        return Instant(tb + a.us)
    if op == "-" and ta is not None and isinstance(b, Duration):
        return Instant(ta - b.us)
    if op == "-" and ta is not None and tb is not None:
        return Duration(ta - tb)
    if op in "*/" and isinstance(a, Duration) and is_num(b) and not is_bool(b):
        if op == "/" and b == 0:
            return None
        f = float(b) if op == "*" else 1.0 / float(b)
        ms = (a.us // 1000) * f
        return Duration(int(round(ms)) * 1000) if math.isfinite(ms) else None
    if op == "*" and isinstance(b, Duration) and is_num(a) and not is_bool(a):
        return arith("*", b, a)
    return None


def member_of(x, s):
    if x is None:
        return False
    if isinstance(s, list):
        return any(loose_eq(x, item) is True for item in s)
    if isinstance(s, dict):
        if isinstance(x, str):
            return x in s
        if type(x) is int:
            return str(x) in s
    return False


class PyScope:
    """What a derived feature reads: the customer's features, the instant, the zone."""

    def __init__(self, features, now_us, tz):
        self.features = features
        self.now_us = now_us
        self.tz = tz


def local_dt(us, tz):
    return (EPOCH + dt.timedelta(microseconds=us)).astimezone(tz)


def as_instant_us(v):
    if isinstance(v, Instant):
        return v.us
    if isinstance(v, str):
        return parse_ts(v)
    return None


def eval_py(node, s):
    k = node[0]
    if k == "lit":
        return node[1]
    if k == "list":
        return [eval_py(x, s) for x in node[1]]
    if k == "feat":
        return s.features.get(node[1])
    if k in ("attr", "root"):
        return None  # derived features read only features
    if k == "index":
        base = eval_py(node[1], s)
        key = eval_py(node[2], s)
        if isinstance(base, list):
            if type(key) is int and 0 <= key < len(base):
                return base[key]
            return None
        if isinstance(base, dict):
            return None if key is None else base.get(to_key(key))
        return None
    if k == "field":
        base = eval_py(node[1], s)
        return base.get(node[2]) if isinstance(base, dict) else None
    if k == "not":
        return not (eval_py(node[1], s) is True)
    if k == "neg":
        v = eval_py(node[1], s)
        if type(v) is int:
            return -v if -v <= I64_MAX else None
        if type(v) is float:
            return -v
        if isinstance(v, Duration):
            return Duration(-v.us)
        return None
    if k == "and":
        return all(eval_py(x, s) is True for x in node[1])
    if k == "or":
        return any(eval_py(x, s) is True for x in node[1])
    if k == "cmp":
        a, b = eval_py(node[2], s), eval_py(node[3], s)
        op = node[1]
        if op == "==":
            return loose_eq(a, b) is True
        if op == "!=":
            return loose_eq(a, b) is False
        c = compare(a, b)
        if c is None:
            return False
        return {"<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0}[op]
    if k == "in":
        return member_of(eval_py(node[1], s), eval_py(node[2], s))
    if k == "arith":
        return arith(node[1], eval_py(node[2], s), eval_py(node[3], s))
    if k == "call":
        return call_py(node[1], node[2], s)
    raise Unsupported(f"expression `{k}`")


def call_py(name, args, s):
    vals = lambda: [eval_py(a, s) for a in args]  # noqa: E731
    if name == "coalesce":
        for a in args:
            v = eval_py(a, s)
            if v is not None:
                return v
        return None
    if name in ("min", "max"):
        best = None
        flat = []
        for v in vals():
            flat.extend(v if isinstance(v, list) else [v])
        for v in flat:
            if is_num(v) and not is_bool(v) and not (type(v) is float and math.isnan(v)):
                c = None if best is None else compare(v, best)
                if best is None or c == (-1 if name == "min" else 1):
                    best = v
        return best
    if name in ("day_of_month", "hour"):
        us = as_instant_us(eval_py(args[0], s))
        if us is None:
            return None
        t = local_dt(us, s.tz)
        return t.day if name == "day_of_month" else t.hour
    if name == "days_since":
        us = as_instant_us(eval_py(args[0], s))
        if us is None or s.now_us is None:
            return None
        secs = int((s.now_us - us) / 1_000_000) if s.now_us >= us else -int((us - s.now_us) // 1_000_000)
        return secs // 86400
    if name == "abs":
        v = eval_py(args[0], s)
        if type(v) in (int, float):
            return abs(v)
        if isinstance(v, Duration):
            return Duration(abs(v.us))
        return None
    if name == "len":
        v = eval_py(args[0], s)
        return len(v) if isinstance(v, (str, list, dict)) else None
    if name == "contains":
        h, n = vals()
        if isinstance(h, str) and isinstance(n, str):
            return n in h
        if isinstance(h, (list, dict)):
            return member_of(n, h)
        return False
    if name == "starts_with":
        h, p = vals()
        return isinstance(h, str) and isinstance(p, str) and h.startswith(p)
    if name in ("sent", "responded"):
        return False  # no offer history in a feature computation
    raise Unsupported(f"function `{name}`")


# ---------------------------------------------------------------------------
# Spark translation of event expressions (`where`, `value`, `by`).
# A translated expression is (column, kind); kind is one of int, float, str, bool,
# time (microseconds since the epoch, a long), dur (microseconds), null.

NUM = ("int", "float")
NOTED = set()


class SparkCompiler:
    def __init__(self, F, T, attrs, feature):
        self.F, self.T = F, T
        self.attr_types, self.attr_cols = attrs
        self.feature = feature

    def fail(self, msg):
        raise Unsupported(f"feature `{self.feature}`: {msg}")

    def lit(self, v):
        F = self.F
        if v is None:
            return F.lit(None), "null"
        if is_bool(v):
            return F.lit(v), "bool"
        if type(v) is int:
            return F.lit(v).cast("long"), "int"
        if type(v) is float:
            return F.lit(v).cast("double"), "float"
        if isinstance(v, str):
            return F.lit(v), "str"
        if isinstance(v, Duration):
            return F.lit(v.us).cast("long"), "dur"
        self.fail(f"literal {v!r} in an event expression")

    def truthy(self, c):
        col, kind = c
        if kind == "bool":
            return self.F.coalesce(col, self.F.lit(False))
        return self.F.lit(False)

    def as_time(self, c):
        """A time value (micros) from a time or an RFC 3339 string; else None."""
        col, kind = c
        if kind == "time":
            return col
        if kind == "str":
            return self.F.unix_micros(col.cast("timestamp"))
        return None

    def ts_of(self, c, node=None):
        """A Spark timestamp (for calendar functions in the session time zone)."""
        col, kind = c
        if node == ("attr", "ts"):
            return self.F.col("ts")  # the event's own time, already a timestamp
        if kind == "time":
            return self.F.timestamp_micros(col)
        if kind == "str":
            return col.cast("timestamp")
        return None

    def compile(self, node):
        F = self.F
        k = node[0]
        if k == "lit":
            if isinstance(node[1], list):
                self.fail("a list outside `in`")
            return self.lit(node[1])
        if k == "attr":
            name = node[1]
            if name == "ts":
                return F.col("ts_us"), "time"
            if name == "type":
                return F.col("type"), "str"
            if name == "id":
                return F.col("id"), "str"
            kind = self.attr_types.get(name)
            if kind is None:
                return F.lit(None), "null"  # no event carries it
            if kind not in ("int", "float", "str", "bool"):
                self.fail(f"attribute `{name}` holds {kind} values, which this job does not translate")
            return F.col(self.attr_cols[name]), kind
        if k in ("feat", "root"):
            self.fail("a feature's expressions read `event` only")
        if k == "not":
            return ~self.truthy(self.compile(node[1])), "bool"
        if k == "and":
            cols = [self.truthy(self.compile(x)) for x in node[1]]
            out = cols[0]
            for c in cols[1:]:
                out = out & c
            return out, "bool"
        if k == "or":
            cols = [self.truthy(self.compile(x)) for x in node[1]]
            out = cols[0]
            for c in cols[1:]:
                out = out | c
            return out, "bool"
        if k == "cmp":
            return self.cmp(node[1], self.compile(node[2]), self.compile(node[3])), "bool"
        if k == "in":
            x = self.compile(node[1])
            if node[2][0] != "lit" or not isinstance(node[2][1], list):
                self.fail("`in` needs a list literal in an event expression")
            opts = []
            for v in node[2][1]:
                if x[1] in NUM and is_num(v) and not is_bool(v):
                    opts.append(v)
                elif x[1] == "str" and isinstance(v, str):
                    opts.append(v)
                elif x[1] == "bool" and is_bool(v):
                    opts.append(v)
            if not opts or x[1] not in NUM + ("str", "bool"):
                return F.lit(False), "bool"
            return F.coalesce(x[0].isin(opts), F.lit(False)), "bool"
        if k == "neg":
            col, kind = self.compile(node[1])
            if kind == "int":
                return F.when(col != F.lit(I64_MIN), -col), "int"
            if kind in ("float", "dur"):
                return -col, kind
            return F.lit(None), "null"
        if k == "arith":
            return self.arith(node[1], self.compile(node[2]), self.compile(node[3]))
        if k == "call":
            return self.call(node[1], node[2])
        if k in ("index", "field", "list"):
            self.fail("nested attributes, lists and maps are outside the translated subset")
        self.fail(f"expression `{k}`")

    def cmp(self, op, a, b):
        F = self.F
        (ca, ka), (cb, kb) = a, b
        if "null" in (ka, kb):
            return F.lit(False)
        if ka in NUM and kb in NUM:
            pass
        elif ka == kb and ka in ("str", "bool", "time", "dur"):
            pass
        elif {ka, kb} == {"time", "str"}:
            ca, cb = self.as_time(a), self.as_time(b)
        else:
            return F.lit(False)  # different kinds: neither equal nor unequal
        r = {
            "==": lambda: ca == cb,
            "!=": lambda: ca != cb,
            "<": lambda: ca < cb,
            "<=": lambda: ca <= cb,
            ">": lambda: ca > cb,
            ">=": lambda: ca >= cb,
        }[op]()
        return F.coalesce(r, F.lit(False))

    def finite(self, col):
        F = self.F
        return F.when(~F.isnan(col) & (F.abs(col) != F.lit(float("inf"))), col)

    def arith(self, op, a, b):
        F = self.F
        (ca, ka), (cb, kb) = a, b
        if "null" in (ka, kb):
            return F.lit(None), "null"
        if ka in NUM and kb in NUM:
            if ka == kb == "int" and op != "/":
                fn = {"+": F.try_add, "-": F.try_subtract, "*": F.try_multiply}[op]
                return fn(ca, cb), "int"
            x, y = ca.cast("double"), cb.cast("double")
            if op == "/":
                return F.when(y != 0.0, self.finite(x / y)), "float"
            r = x + y if op == "+" else x - y if op == "-" else x * y
            return self.finite(r), "float"
        if op == "+" and ka == kb == "str":
            return F.concat(ca, cb), "str"
        if ka == kb == "dur" and op in "+-":
            return (ca + cb if op == "+" else ca - cb), "dur"
        ta, tb = self.as_time(a), self.as_time(b)
        if op == "+" and ta is not None and kb == "dur":
            return ta + cb, "time"
        if op == "+" and tb is not None and ka == "dur":
            return tb + ca, "time"
        if op == "-" and ta is not None and kb == "dur":
            return ta - cb, "time"
        if op == "-" and ta is not None and tb is not None:
            return ta - tb, "dur"
        if ka == "dur" and kb in NUM and op in "*/":
            f = cb.cast("double") if op == "*" else F.when(cb != 0, F.lit(1.0) / cb.cast("double"))
            return (F.round(F.floor(ca / 1000) * f) * 1000).cast("long"), "dur"
        if ka == kb == "dur" and op == "/":
            return F.when(cb != 0, ca / cb), "float"
        return F.lit(None), "null"

    def call(self, name, args):
        F = self.F
        cs = [self.compile(a) for a in args]
        if name == "coalesce":
            kinds = {k for _, k in cs if k != "null"}
            if not kinds:
                return F.lit(None), "null"
            if kinds <= set(NUM):
                kind = "int" if kinds == {"int"} else "float"
                return F.coalesce(*[c.cast("long" if kind == "int" else "double") for c, k in cs if k != "null"]), kind
            if len(kinds) != 1:
                self.fail(f"coalesce over values of different kinds ({', '.join(sorted(kinds))})")
            return F.coalesce(*[c for c, k in cs if k != "null"]), kinds.pop()
        if name in ("day_of_month", "hour"):
            if len(cs) != 1:
                self.fail(f"{name} takes one argument")
            t = self.ts_of(cs[0], args[0])
            if t is None:
                return F.lit(None), "null"
            return (F.dayofmonth(t) if name == "day_of_month" else F.hour(t)).cast("long"), "int"
        if name in ("min", "max"):
            nums = [(c, k) for c, k in cs if k in NUM]
            if not nums:
                return F.lit(None), "null"
            kind = "int" if all(k == "int" for _, k in nums) else "float"
            cols = [c.cast("long" if kind == "int" else "double") for c, _ in nums]
            if len(cols) == 1:
                return cols[0], kind
            return (F.least(*cols) if name == "min" else F.greatest(*cols)), kind
        if name == "abs":
            col, kind = cs[0]
            if kind in ("int", "float", "dur"):
                return F.abs(col), kind
            return F.lit(None), "null"
        if name == "starts_with":
            (h, kh), (p, kp) = cs
            if kh == kp == "str":
                return F.coalesce(h.startswith(p), F.lit(False)), "bool"
            return F.lit(False), "bool"
        if name == "contains":
            (h, kh), (n, kn) = cs
            if kh == kn == "str":
                return F.coalesce(h.contains(n), F.lit(False)), "bool"
            if kh == "str" or kh == "null":
                return F.lit(False), "bool"
            self.fail("contains over a list or map in an event expression")
        if name == "len":
            col, kind = cs[0]
            if kind == "str":
                return F.char_length(col).cast("long"), "int"
            return F.lit(None), "null"
        if name == "days_since":
            t = self.as_time(cs[0])
            if t is None:
                return F.lit(None), "null"
            diff = F.col("ts_us") - t
            secs = F.when(diff >= 0, F.floor(diff / 1_000_000)).otherwise(-F.floor(-diff / 1_000_000))
            return F.floor(secs / 86400).cast("long"), "int"
        if name in ("sent", "responded"):
            return F.lit(False), "bool"
        self.fail(f"function `{name}` in an event expression")


# ---------------------------------------------------------------------------
# The FeatureSet.

AGGS = (
    "count", "sum", "avg", "min", "max", "first", "last",
    "distinct_count", "distinct_days", "distinct_months", "decay",
)
FEATURE_KEYS = {"name", "on", "where", "value", "agg", "window", "decay", "by", "maxKeys"}


class Feature:
    def __init__(self, spec, i):
        unknown = set(spec) - FEATURE_KEYS
        self.name = spec.get("name") or f"spec.features[{i}]"
        if unknown:
            raise Unsupported(f"feature `{self.name}`: unknown field(s) {', '.join(sorted(unknown))}")
        on = spec.get("on")
        on = [on] if isinstance(on, str) else list(on or [])
        self.on = sorted(set(on))
        if not self.on:
            raise Unsupported(f"feature `{self.name}`: `on` names no event type")
        self.where = parse_expr(spec["where"], f"feature `{self.name}` where") if spec.get("where") is not None else None
        self.value = parse_expr(spec["value"], f"feature `{self.name}` value") if spec.get("value") is not None else None
        self.by = parse_expr(spec["by"], f"feature `{self.name}` by") if spec.get("by") is not None else None
        self.max_keys = int(spec.get("maxKeys", 256))
        agg = spec.get("agg")
        if agg not in AGGS:
            raise Unsupported(f"feature `{self.name}`: unknown aggregation `{agg}`")
        decay = spec.get("decay")
        self.half_life = None
        self.of_events = False
        if decay is not None:
            try:
                self.half_life = parse_duration_secs(decay)
            except ValueError as e:
                raise Unsupported(f"feature `{self.name}`: {e}") from None
            if self.half_life <= 0:
                raise Unsupported(f"feature `{self.name}`: `decay` must be positive")
            if agg in ("decay", "sum"):
                agg = "decay"
            elif agg == "count":
                agg, self.of_events = "decay", True
            else:
                raise Unsupported(f"feature `{self.name}`: `decay` applies to sum, count or decay, not {agg}")
        elif agg == "decay":
            raise Unsupported(f"feature `{self.name}`: `agg: decay` needs a half-life")
        self.agg = agg
        if self.needs_value() and self.value is None:
            raise Unsupported(f"feature `{self.name}`: `{agg}` aggregates a value: add `value`")
        w = spec.get("window")
        self.window = None  # lifetime
        if w is not None:
            w = str(w).strip()
            digits = w[:-1]
            if not digits.isdigit() or int(digits) == 0 or w[-1] not in "dh":
                raise Unsupported(f"feature `{self.name}`: invalid window `{w}` (expected e.g. 30d or 12h)")
            self.window = (int(digits), w[-1])

    def needs_value(self):
        return not (self.agg in ("count", "distinct_days", "distinct_months") or (self.agg == "decay" and self.of_events))


class Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 booleans, as persona (serde_yaml) reads them: `on` is a key, not true."""


Yaml12Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    Yaml12Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", __import__("re").compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), [_first]
    )


class FeatureSetDef:
    def __init__(self, path):
        with open(path) as f:
            docs = [d for d in yaml.load_all(f, Loader=Yaml12Loader) if d]
        docs = [d for d in docs if d.get("kind") == "FeatureSet"]
        if len(docs) != 1:
            raise Unsupported(f"{path}: expected one FeatureSet document, found {len(docs)}")
        spec = docs[0].get("spec") or {}
        unknown = set(spec) - {"timezone", "features", "derived"}
        if unknown:
            raise Unsupported(f"FeatureSet spec: unknown field(s) {', '.join(sorted(unknown))}")
        self.tz_name = spec.get("timezone") or "UTC"
        from zoneinfo import ZoneInfo

        self.tz = ZoneInfo(self.tz_name)
        self.features = [Feature(f, i) for i, f in enumerate(spec.get("features") or [])]
        names = [f.name for f in self.features]
        derived = []
        for d in spec.get("derived") or []:
            if set(d) - {"name", "expr"}:
                raise Unsupported(f"derived `{d.get('name')}`: unknown field(s)")
            derived.append((d["name"], parse_expr(d["expr"], f"derived feature `{d['name']}`")))
            names.append(d["name"])
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise Unsupported(f"feature(s) defined twice: {', '.join(sorted(dup))}")
        # Dependency order (a derived feature may read one declared after it).
        known = {f.name for f in self.features}
        derived_names = {n for n, _ in derived}
        ordered, pending = [], list(derived)
        while pending:
            ready = [(n, e) for n, e in pending if (features_used(e, set()) & derived_names) <= {m for m, _ in ordered}]
            if not ready:
                raise Unsupported(
                    "derived feature(s) depend on themselves: " + ", ".join(n for n, _ in pending)
                )
            for n, e in ready:
                unknown = features_used(e, set()) - known - derived_names
                if unknown:
                    raise Unsupported(f"derived feature `{n}` reads unknown feature(s) {', '.join(sorted(unknown))}")
                ordered.append((n, e))
            pending = [p for p in pending if p not in ready]
        self.derived = ordered


# ---------------------------------------------------------------------------
# The Spark job.


def spark_kind(dtype, T):
    if isinstance(dtype, (T.LongType, T.IntegerType, T.ShortType, T.ByteType)):
        return "int"
    if isinstance(dtype, (T.DoubleType, T.FloatType, T.DecimalType)):
        return "float"
    if isinstance(dtype, T.StringType):
        return "str"
    if isinstance(dtype, T.BooleanType):
        return "bool"
    return dtype.simpleString()


class Job:
    def __init__(self, spark, fs, events_path, partitions, schema=None):
        """Reads, parses, partitions, sorts and caches the events. `schema` (the one an
        earlier Job inferred, `raw_schema`) skips the pass that infers it."""
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        self.spark, self.fs, self.F, self.T = spark, fs, F, T
        if schema is None:
            raw = spark.read.option("samplingRatio", 1.0).json(events_path)
        else:
            raw = spark.read.schema(schema).json(events_path)
        self.raw_schema = raw.schema
        if "_corrupt_record" in raw.columns:
            raise SystemExit(f"{events_path}: some lines are not JSON objects")
        attrs_type = raw.schema["attrs"].dataType if "attrs" in raw.columns else None
        fields = attrs_type.fields if isinstance(attrs_type, T.StructType) else []
        # Attributes become typed columns a0, a1, ... (names may hold any character).
        self.attr_types = {f.name: spark_kind(f.dataType, T) for f in fields}
        self.attr_cols = {f.name: f"a{i}" for i, f in enumerate(fields)}
        cols = [F.col("id").cast("string").alias("id"), F.col("token"), F.col("type"), F.col("ts").cast("timestamp").alias("ts")]
        cols += [F.col("attrs").getField(f.name).alias(self.attr_cols[f.name]) for f in fields
                 if self.attr_types[f.name] in ("int", "float", "str", "bool")]
        # Partitioned by customer, like persona's per-customer event lists, and cached.
        # Sorted by (token, ts, id) inside each partition, with each event's ordinal
        # in that order (`seq`): first and last follow (time, id).
        self.events = (
            raw.select(*cols)
            .repartition(partitions, "token")
            .sortWithinPartitions("token", "ts", "id")
            .withColumn("seq", F.monotonically_increasing_id())
            .cache()
        )
        row = self.events.agg(
            F.count(F.lit(1)).alias("n"),
            F.max(F.unix_micros("ts")).alias("max_us"),
            F.sum(F.when(F.col("ts").isNull(), 1).otherwise(0)).alias("bad_ts"),
        ).collect()[0]
        if row["bad_ts"]:
            raise SystemExit(f"{events_path}: {row['bad_ts']} events with an unparseable ts")
        self.count = row["n"]
        self.max_us = row["max_us"]
        self.split = os.environ.get("PERSONA_SPARK_SPLIT", "1") == "1"

    def release(self):
        """Drops the cached events."""
        self.events.unpersist(blocking=True)

    # -- one feature's pieces -------------------------------------------------

    def pieces(self, f, as_of_us):
        """(condition, value column, value kind, key column) of feature f."""
        F = self.F
        comp = SparkCompiler(F, self.T, (self.attr_types, self.attr_cols), f.name)
        cond = F.col("type").isin(f.on) if len(f.on) > 1 else (F.col("type") == f.on[0])
        if f.where is not None:
            cond = cond & comp.truthy(comp.compile(f.where))
        cond = cond & (F.col("ts_us") <= F.lit(as_of_us))
        if f.window is not None:
            n, unit = f.window
            tile = F.col("day_tile") if unit == "d" else F.col("hour_tile")
            end = F.lit(self.end_day if unit == "d" else self.end_hour)
            cond = cond & (tile > end - n)
        value, kind = (F.lit(None), "null") if f.value is None else comp.compile(f.value)
        if f.needs_value():
            if kind == "null":
                cond = F.lit(False)
            else:
                cond = cond & value.isNotNull()
        key = None
        if f.by is not None:
            kcol, kkind = comp.compile(f.by)
            if kkind == "str":
                key = kcol
            elif kkind == "int":
                key = kcol.cast("string")
            elif kkind == "bool":
                key = F.when(kcol, F.lit("true")).otherwise(F.lit("false"))
            elif kkind == "float":
                key = F.when(
                    (F.floor(kcol) == kcol) & (F.abs(kcol) < 1e15), kcol.cast("long").cast("string")
                ).otherwise(kcol.cast("string"))
                if f.name not in NOTED:
                    NOTED.add(f.name)
                    sys.stderr.write(f"note: `{f.name}` keys by a decimal number; non-integral keys print as Java does\n")
            elif kkind == "null":
                key = F.lit(None).cast("string")
            else:
                comp.fail(f"`by` of kind {kkind}")
            cond = cond & key.isNotNull()
        return cond, value, kind, key

    def agg_expr(self, f, cond, value, kind, as_of_us):
        """An aggregate column and how to read its result back."""
        F = self.F
        a = f.agg
        if a == "count":
            return F.count(F.when(cond, F.lit(1))), "count"
        if a in ("sum", "avg", "decay"):
            if kind not in NUM and not (a == "decay" and f.of_events):
                # Only numbers count: strings, times... give the empty result.
                return F.lit(None), {"sum": "sum_int", "avg": "avg", "decay": "decay"}[a]
            if a == "sum":
                return F.sum(F.when(cond, value)), "sum_int" if kind == "int" else "sum_float"
            if a == "avg":
                return F.avg(F.when(cond, value.cast("double"))), "avg"
            age = (F.lit(as_of_us) - F.col("ts_us")).cast("double") / 1e6
            weight = F.lit(1.0) if f.of_events else value.cast("double")
            return F.sum(F.when(cond, weight * F.pow(F.lit(2.0), -age / float(f.half_life)))), "decay"
        if a in ("min", "max"):
            fn = F.min if a == "min" else F.max
            return fn(F.when(cond, value)), "plain:" + kind
        if a in ("first", "last"):
            if kind in ("int", "float", "time", "bool"):
                # Fixed-width: the value of the least / greatest ordinal.
                fn = F.min_by if a == "first" else F.max_by
                return fn(F.when(cond, value), F.when(cond, F.col("seq"))), "plain:" + kind
            s = F.struct(F.col("ts_us").alias("t"), F.col("id").alias("i"), value.alias("v"))
            fn = F.min if a == "first" else F.max
            return fn(F.when(cond, s)), "pick:" + kind
        if a == "distinct_count":
            if kind not in ("int", "float", "str", "bool", "time"):
                return F.lit(0), "count"
            return F.size(F.collect_set(F.when(cond, value))), "distinct"
        if a in ("distinct_days", "distinct_months"):
            days = a == "distinct_days"
            own = F.col("day_tile") if days else F.col("month_tile")
            if f.value is None or kind == "null":
                cal = own
            else:
                comp = SparkCompiler(F, self.T, (self.attr_types, self.attr_cols), f.name)
                t = comp.ts_of((value, kind), f.value)
                if f.value == ("attr", "ts"):
                    cal = own  # the event's own time
                elif t is None:
                    cal = F.when(value.isNull(), own)  # values that are not times count no day
                else:
                    cal = (
                        F.datediff(F.to_date(t), F.lit("1970-01-01"))
                        if days
                        else F.year(t) * 12 + F.month(t) - 1
                    )
                    cal = F.when(value.isNull(), own).otherwise(cal)
            if cal is own and f.window is not None:
                # The event's own days (months) inside a window: a bitmap of offsets
                # from the window's last day (month), fixed-width for Spark.
                n, unit = f.window
                hours = n * 24 if unit == "d" else n
                span = (hours + 23) // 24 + 1 if days else hours // (24 * 28) + 2
                if span <= 1024:
                    off = F.lit(self.end_day if days else self.end_month) - own
                    bit = F.call_function("shiftleft", F.lit(1).cast("long"), (off % 64).cast("int"))
                    counts = [
                        F.coalesce(F.bit_count(F.bit_or(F.when(cond & (F.floor(off / 64) == j), bit))), F.lit(0))
                        for j in range((span + 63) // 64)
                    ]
                    total = counts[0]
                    for c in counts[1:]:
                        total = total + c
                    return total, "bits"
            return F.size(F.collect_set(F.when(cond, cal))), "distinct"
        raise Unsupported(f"feature `{f.name}`: aggregation `{a}`")

    # -- the whole computation -------------------------------------------------

    def compute(self, as_of_us):
        """Every customer's features (derived included) as of as_of_us: {token: {name: value}}."""
        F = self.F
        fs = self.fs
        at = F.lit(as_of_us)
        ends = self.spark.range(1).select(
            F.datediff(F.to_date(F.timestamp_micros(at)), F.lit("1970-01-01")).alias("d"),
            F.hour(F.timestamp_micros(at)).alias("h"),
            (F.year(F.timestamp_micros(at)) * 12 + F.month(F.timestamp_micros(at)) - 1).alias("m"),
        ).collect()[0]
        self.end_month = ends["m"]
        self.end_day = ends["d"]
        self.end_hour = ends["d"] * 24 + ends["h"]
        ev = self.events.withColumn("ts_us", F.unix_micros("ts"))
        day = F.datediff(F.to_date("ts"), F.lit("1970-01-01"))
        ev = ev.withColumn("day_tile", day).withColumn("hour_tile", F.col("day_tile") * 24 + F.hour("ts")).withColumn(
            "month_tile", F.year("ts") * 12 + F.month("ts") - 1
        )
        plain, fams = [], []
        for i, f in enumerate(fs.features):
            cond, value, kind, key = self.pieces(f, as_of_us)
            expr, how = self.agg_expr(f, cond, value, kind, as_of_us)
            if f.by is None:
                plain.append((f, expr.alias(f"f{i}"), how))
            else:
                fams.append((i, f, expr, how, cond, key))
        # Aggregates with fixed-width buffers (numbers, times) run in Spark's generated
        # hash aggregation; the others (strings, first/last, distinct sets) need the
        # sort-based one. Two aggregations over the same cached, token-partitioned and
        # token-sorted events, joined by token, beat one interpreted aggregation.
        fixed = [e for _, e, how in plain if self.split and fixed_width(how)]
        other = [e for _, e, how in plain if not (self.split and fixed_width(how))]
        parts = [ev.groupBy("token").agg(*x) for x in (fixed, other) if x]
        out = parts[0] if parts else ev.select("token").distinct()
        for p in parts[1:]:
            out = out.join(p, "token")
        for i, f, expr, how, cond, key in fams:
            per_key = (
                ev.where(cond)
                .groupBy("token", key.alias("k"))
                .agg(expr.alias("v"))
                .groupBy("token")
                .agg(F.map_from_entries(F.collect_list(F.struct("k", "v"))).alias(f"f{i}"))
            )
            out = out.join(per_key, "token", "left")
        rows = out.collect()
        collected = time.perf_counter()
        hows = {f"f{fs.features.index(f)}": (f, how) for f, _, how in plain}
        for i, f, _, how, _, _ in fams:
            hows[f"f{i}"] = (f, how)
        result = {}
        for r in rows:
            d = r.asDict()
            vals = {}
            for col, (f, how) in hows.items():
                v = d[col]
                if f.by is None:
                    vals[f.name] = finish(v, how)
                else:
                    vals[f.name] = {k: finish(x, how) for k, x in sorted((v or {}).items(), key=lambda kv: kv[0].encode())}
            scope = PyScope(vals, as_of_us, fs.tz)
            for name, e in fs.derived:
                vals[name] = eval_py(e, scope)
            result[d["token"]] = vals
        self.post_secs = time.perf_counter() - collected
        return result


def fixed_width(how):
    """Whether an aggregate's buffer is fixed-width (numbers, times, booleans)."""
    if how in ("count", "sum_int", "sum_float", "avg", "decay", "bits"):
        return True
    return how.startswith("plain:") and how.split(":", 1)[1] in ("int", "float", "time", "bool", "dur", "null")


def scalar(v, kind):
    if v is None:
        return None
    if kind == "time":
        return Instant(int(v))
    if kind == "int":
        return int(v)
    if kind == "float":
        return float(v)
    if kind == "dur":
        return Duration(int(v))
    return v


def finish(v, how):
    """A collected aggregate as persona's value."""
    if how in ("count", "distinct", "bits"):
        return int(v or 0)
    if how == "sum_int":
        return int(v) if v is not None else 0
    if how == "sum_float":
        return float(v) if v is not None else 0  # an empty sum is the integer 0
    if how == "avg":
        return None if v is None else float(v)
    if how == "decay":
        return float(v) if v is not None else 0.0
    kind = how.split(":", 1)[1]
    if how.startswith("plain:"):
        return scalar(v, kind)
    if how.startswith("pick:"):
        return None if v is None else scalar(v["v"], kind)
    raise AssertionError(how)


def to_json(v):
    if isinstance(v, Instant):
        return format_ts(v.us)
    if isinstance(v, Duration):
        secs = v.us // 1_000_000
        for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
            if secs != 0 and secs % size == 0:
                return f"{secs // size}{unit}"
        return f"{secs}s"
    if isinstance(v, dict):
        return {k: to_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_json(x) for x in v]
    if type(v) is float and not math.isfinite(v):
        return None
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", required=True, help="canonical events, JSON Lines")
    ap.add_argument("--featureset", required=True, help="FeatureSet YAML")
    ap.add_argument("--out", help="write features.jsonl here")
    ap.add_argument("--runs", type=int, default=3, help="timed runs (median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs first (JIT warm-up)")
    ap.add_argument("--as-of", help="RFC 3339 instant (default: the latest event)")
    ap.add_argument("--master", default="local[*]")
    ap.add_argument("--partitions", type=int, default=0, help="cached partitions (default 2 x cores)")
    ap.add_argument("--driver-memory", default="4g")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--from-file", action="store_true",
                    help="time the whole job: each run reads, parses, partitions, sorts and caches the file "
                         "(with the schema the untimed first load inferred), then computes")
    args = ap.parse_args()

    try:
        fs = FeatureSetDef(args.featureset)
    except Unsupported as e:
        print(f"features.py: {e}", file=sys.stderr)
        return 2

    from pyspark.sql import SparkSession
    import pyspark

    spark = (
        SparkSession.builder.master(args.master)
        .appName("persona-featureset")
        .config("spark.driver.memory", args.driver_memory)
        .config("spark.sql.session.timeZone", fs.tz_name)
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(args.partitions or 2 * os.cpu_count()))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    cores = spark.sparkContext.defaultParallelism
    partitions = args.partitions or 2 * cores

    t0 = time.perf_counter()
    job = Job(spark, fs, os.path.abspath(args.events), partitions)
    load_secs = time.perf_counter() - t0
    if job.count == 0:
        print("features.py: no events", file=sys.stderr)
        return 2
    as_of_us = job.max_us
    if args.as_of:
        as_of_us = parse_ts(args.as_of)
        if as_of_us is None:
            print(f"features.py: invalid --as-of `{args.as_of}`", file=sys.stderr)
            return 2
        as_of_us = max(as_of_us, 0)

    def run():
        """One timed unit: the computation over the cached events, or with --from-file
        the whole job from reading the file."""
        if not args.from_file:
            return job.compute(as_of_us), job.post_secs
        fresh = Job(spark, fs, os.path.abspath(args.events), partitions, schema=job.raw_schema)
        try:
            return fresh.compute(as_of_us), fresh.post_secs
        finally:
            fresh.release()

    if args.from_file:
        job.release()
    try:
        for _ in range(max(args.warmup, 1)):
            result, _ = run()
    except Unsupported as e:
        print(f"features.py: {e}", file=sys.stderr)
        return 2
    secs, post = [], []
    for _ in range(max(args.runs, 1)):
        t = time.perf_counter()
        result, p = run()
        secs.append(time.perf_counter() - t)
        post.append(p)
    median = statistics.median(secs)

    if args.out:
        with open(args.out, "w") as out:
            for token in sorted(result):
                line = {"token": token, "as_of": format_ts(as_of_us), "features": to_json(result[token])}
                out.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")
    over = [
        (t, f.name)
        for t, vals in result.items()
        for f in fs.features
        if f.by is not None and len(vals[f.name]) > f.max_keys
    ]
    if over:
        print(f"features.py: warning: {len(over)} families exceed maxKeys (streaming would drop keys)", file=sys.stderr)
    report = {
        "scenario": "spark-features",
        "timed": "from-file" if args.from_file else "compute",
        "ops_per_sec": job.count / median,
        "cores_used": cores,
        "events": job.count,
        "customers": len(result),
        "features": len(fs.features) + len(fs.derived),
        "seconds_median": median,
        "seconds_runs": secs,
        "post_seconds_median": statistics.median(post),
        "load_seconds": load_secs,
        "warmup_runs": max(args.warmup, 1),
        "as_of": format_ts(as_of_us),
        "pyspark": pyspark.__version__,
        "master": args.master,
        "partitions": partitions,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"spark features: {report['events']} events, {report['customers']} customers, "
            f"{report['features']} features, {cores} cores: {report['ops_per_sec']:.0f} events/s "
            f"(median of {len(secs)} runs of {', '.join(f'{s:.2f}' for s in secs)} s; load {load_secs:.1f} s)"
        )
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
