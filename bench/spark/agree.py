#!/usr/bin/env python3
"""Compares two features.jsonl files (persona's and Spark's) customer by customer,
feature by feature, and prints the summary of bench/spark/compare.

Values agree when: both null; numbers (integer or decimal alike) within relative
1e-9 or absolute 1e-6; booleans, strings and instants exactly; family maps key by
key. A customer agrees when the two files hold the same features for her and all
of them agree. Exit status 1 when anything disagrees.
"""

import argparse
import json
import math
import statistics
import sys

REL, ABS = 1e-9, 1e-6


def is_num(v):
    return type(v) in (int, float)


def same(a, b):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_num(a) and is_num(b):
        if a == b:
            return True
        x, y = float(a), float(b)
        if math.isnan(x) or math.isnan(y):
            return False
        return abs(x - y) <= max(ABS, REL * max(abs(x), abs(y)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return False


def first_difference(a, b):
    """For a family, the first key that differs, to keep messages short."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b or not same(a[k], b[k]):
                return f'["{k}"]', a.get(k, "<missing>"), b.get(k, "<missing>")
    return "", a, b


def load(path):
    out = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if row["token"] in out:
                sys.exit(f"{path}:{n}: token {row['token']} twice")
            out[row["token"]] = row
    return out


def compare(left, right, names=("persona", "spark")):
    """(agreeing customers, all customers, disagreements as (token, feature, a, b))."""
    a, b = load(left), load(right)
    tokens = sorted(set(a) | set(b))
    diffs, agree = [], 0
    for t in tokens:
        if t not in a or t not in b:
            diffs.append((t, "<customer>", "present" if t in a else "missing", "present" if t in b else "missing"))
            continue
        ok = True
        if a[t].get("as_of") != b[t].get("as_of"):
            diffs.append((t, "<as_of>", a[t].get("as_of"), b[t].get("as_of")))
            ok = False
        fa, fb = a[t]["features"], b[t]["features"]
        for name in sorted(set(fa) | set(fb)):
            if name not in fa or name not in fb:
                diffs.append((t, name, fa.get(name, "<missing>"), fb.get(name, "<missing>")))
                ok = False
            elif not same(fa[name], fb[name]):
                key, x, y = first_difference(fa[name], fb[name])
                diffs.append((t, name + key, x, y))
                ok = False
        agree += ok
    return agree, len(tokens), diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("persona", help="persona's features.jsonl")
    ap.add_argument("spark", help="Spark's features.jsonl")
    ap.add_argument("--persona-bench", help="persona bench features --json output")
    ap.add_argument("--persona-warmup", type=int, default=0,
                    help="leading runs of --persona-bench that are warm-up: the median is over the rest")
    ap.add_argument("--spark-bench", help="features.py --json output")
    ap.add_argument("--batch", help="persona backfill's features.jsonl, a cross-check")
    ap.add_argument("--persona-from-file", help="persona's features.jsonl of the --from-file runs")
    ap.add_argument("--spark-from-file", help="Spark's features.jsonl of the --from-file runs")
    ap.add_argument("--persona-from-file-bench", help="persona bench features --from-file --json output")
    ap.add_argument("--spark-from-file-bench", help="features.py --from-file --json output")
    ap.add_argument("--show", type=int, default=5, help="disagreements to print")
    args = ap.parse_args()

    _, total, diffs = compare(args.persona, args.spark)
    # The runs from the file must compute the same values: a difference there counts
    # against the customer too.
    for mine in (args.persona_from_file, args.spark_from_file):
        if mine:
            diffs += compare(mine, args.spark)[2]
    agree = total - len({t for t, *_ in diffs})
    pb = json.load(open(args.persona_bench)) if args.persona_bench else None
    sb = json.load(open(args.spark_bench)) if args.spark_bench else None
    persona_rate = None
    if pb:
        runs = pb["runs_ops_per_sec"]
        timed = runs[args.persona_warmup:] if len(runs) > args.persona_warmup else runs
        persona_rate = statistics.median(timed)
    if pb and sb:
        p, s = pb["params"], sb
        print(f"events: {p['events']} (persona) / {s['events']} (spark); customers: {p['customers']} / {s['customers']}; "
              f"features per customer: {p['features']}")
        warm = len(runs) - len(timed)
        print(f"persona: {persona_rate:,.0f} events/s on {pb['cores_used']} cores "
              f"(median of {len(timed)} runs after {warm} warm-up: {', '.join(f'{r:,.0f}' for r in timed)}"
              + (f"; warm-up {', '.join(f'{r:,.0f}' for r in runs[:warm])}" if warm else "") + ")")
        print(f"spark:   {sb['ops_per_sec']:,.0f} events/s on {sb['cores_used']} cores, local[*] "
              f"(pyspark {sb['pyspark']}; median of {len(sb['seconds_runs'])} runs after {sb.get('warmup_runs', 1)} warm-up: "
              f"{', '.join(f'{x:.2f}' for x in sb['seconds_runs'])} s, of which {sb.get('post_seconds_median', 0):.2f} s "
              f"Python after the collect; untimed load and cache {sb['load_seconds']:.1f} s)")
        print(f"note: persona used {pb['cores_used']} threads, Spark {sb['cores_used']} cores")
    if args.batch:
        ba, bt, _ = compare(args.batch, args.spark)
        print(f"cross-check, persona backfill (batch) vs spark: values agree {ba}/{bt}")
    for t, name, x, y in diffs[: args.show]:
        print(f"DISAGREE {t} {name}: persona={json.dumps(x)} spark={json.dumps(y)}")
    if len(diffs) > args.show:
        print(f"... {len(diffs) - args.show} more disagreements")
    pf = json.load(open(args.persona_from_file_bench)) if args.persona_from_file_bench else None
    sf = json.load(open(args.spark_from_file_bench)) if args.spark_from_file_bench else None
    if pf and sf:
        runs = pf["runs_ops_per_sec"]
        timed = runs[args.persona_warmup:] if len(runs) > args.persona_warmup else runs
        file_rate = statistics.median(timed)
        print(f"from the file (read, parse, compute, every customer's features; each engine per run): "
              f"persona {file_rate:,.0f} events/s ({', '.join(f'{r:,.0f}' for r in timed)}), "
              f"spark {sf['ops_per_sec']:,.0f} events/s ({', '.join(f'{x:.2f}' for x in sf['seconds_runs'])} s), "
              f"ratio {file_rate / sf['ops_per_sec']:.1f}")
    if pb and sb:
        print(f"persona/spark throughput ratio {persona_rate / sb['ops_per_sec']:.1f}, values agree {agree}/{total}")
    else:
        print(f"values agree {agree}/{total}")
    return 0 if agree == total and not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
