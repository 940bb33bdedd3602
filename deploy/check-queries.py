#!/usr/bin/env python3
"""Run warren's autoscaling query and every Grafana panel query against a live Prometheus.

Each query must return at least one series carrying the labels it is expected
to carry:
  * the prometheus-adapter queries of the queue-length overlay's HPA and the
    capacity overlay's (on the recording rule warren_workers_needed), as
    `warren autoscale --print-queries --hpa FILE` prints them (the query the
    adapter sends; deploy/tools/check_manifests.py holds the adapter rules to
    it): a series with label queue="Orders";
  * every target of deploy/grafana/warren.json, with dashboard variables
    substituted: a series with each label its legend shows ({{label}}).

    deploy/check-queries.py --prometheus http://127.0.0.1:9090 [--wait 120]
    deploy/check-queries.py --list          # print the queries, query nothing

Python 3 standard library only; runs `warren` (--warren, default target/debug/warren). Exit status 0 when every query passed, 1 when
any failed, 2 on a usage or file error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DASHBOARD = os.path.join(HERE, "grafana", "warren.json")
DEFAULT_HPAS = [
    os.path.join(HERE, "kubernetes", "overlays", "prometheus-adapter", "hpa.yaml"),
    os.path.join(HERE, "kubernetes", "overlays", "prometheus-adapter-capacity", "hpa.yaml"),
]


class Query:
    def __init__(self, name: str, expr: str, labels: list[str], label_values: dict[str, str] | None = None):
        self.name = name
        self.expr = expr
        self.labels = labels
        self.label_values = label_values or {}

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "expr": self.expr,
            "labels": self.labels,
            "label_values": self.label_values,
        }


# --- prometheus-adapter rule -------------------------------------------------


def default_warren() -> str:
    """The warren binary: $WARREN_BIN, else the build's own (CARGO_TARGET_DIR or target/)."""
    if os.environ.get("WARREN_BIN"):
        return os.environ["WARREN_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(os.path.dirname(HERE), "target")
    return os.path.join(target, "debug", "warren")


def adapter_queries(warren: str, hpa: str) -> list[Query]:
    """The query of each of the HPA's metrics as `warren autoscale --print-queries` prints it:
    the one definition, which deploy/tools/check_manifests.py holds the adapter rule to."""
    try:
        done = subprocess.run([warren, "autoscale", "--print-queries", "--hpa", hpa],
                              capture_output=True, text=True, timeout=60)
    except OSError as e:
        raise ValueError(f"cannot run {warren} (build it: cargo build -p warren, or pass --warren): {e}")
    if done.returncode != 0:
        raise ValueError(f"{warren} autoscale --print-queries --hpa {hpa}: {done.stderr.strip()}")
    return [
        Query(f"prometheus-adapter: external metric {q['metric']}", q["query"], sorted(q["labels"]), q["labels"])
        for q in json.loads(done.stdout)
    ]


# --- Grafana dashboard -------------------------------------------------------


def dashboard_variables(dashboard: dict, overrides: dict[str, str], rate_interval: str) -> dict[str, str]:
    values = {
        "__rate_interval": rate_interval,
        "__interval": rate_interval,
        "__range": rate_interval,
    }
    for var in dashboard.get("templating", {}).get("list", []):
        name = var.get("name")
        if not name or var.get("type") == "datasource":
            continue
        current = var.get("current", {}).get("value")
        if isinstance(current, list):
            current = current[0] if current else None
        if current in (None, "", "$__all"):
            options = var.get("options") or []
            current = options[0].get("value") if options else None
        if current is not None:
            values[name] = str(current)
    values.update(overrides)
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise KeyError(name)
        return values[name]

    # ${name}, ${name:format}, [[name]], $name
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", repl, expr)


def iter_panels(panels: list) -> list:
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def dashboard_queries(path: str, overrides: dict[str, str], rate_interval: str) -> list[Query]:
    with open(path, encoding="utf-8") as f:
        dashboard = json.load(f)
    values = dashboard_variables(dashboard, overrides, rate_interval)
    queries = []
    for panel in iter_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []) or []:
            expr = target.get("expr")
            if not expr or target.get("hide"):
                continue
            try:
                rendered = substitute(expr, values)
            except KeyError as e:
                raise ValueError(
                    f"panel {panel.get('title')!r} target {target.get('refId')}: "
                    f"no value for dashboard variable ${e.args[0]} (pass --var {e.args[0]}=VALUE)"
                )
            labels = sorted(set(re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", target.get("legendFormat", ""))))
            queries.append(Query(f"panel {panel.get('title')!r} / {target.get('refId', '?')}", rendered, labels))
    if not queries:
        raise ValueError(f"{path}: no panel queries found")
    return queries


# --- running -----------------------------------------------------------------


def instant_query(base: str, expr: str, timeout: float) -> list[dict]:
    url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except ValueError:
            pass
        raise RuntimeError(f"HTTP {e.code}: {detail}") from None
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus said {body.get('errorType')}: {body.get('error')}")
    data = body.get("data", {})
    if data.get("resultType") == "scalar":
        return [{"metric": {}, "value": data.get("result")}]
    return data.get("result", [])


def judge(query: Query, result: list[dict]) -> tuple[bool, str]:
    if not result:
        return False, "no series returned"
    good = []
    for series in result:
        metric = series.get("metric", {})
        if all(label in metric for label in query.labels) and all(
            metric.get(k) == v for k, v in query.label_values.items()
        ):
            good.append(series)
    if not good:
        seen = ", ".join(json.dumps(s.get("metric", {}), sort_keys=True) for s in result[:3])
        want = ", ".join(query.labels + [f"{k}={v}" for k, v in query.label_values.items()])
        return False, f"{len(result)} series, none with labels [{want}]: {seen}"
    values = []
    for s in good:
        try:
            values.append(float(s.get("value", [0, "nan"])[1]))
        except (TypeError, ValueError):
            values.append(math.nan)
    note = ""
    if all(math.isnan(v) for v in values):
        note = " (all NaN: no observations in the rate window yet)"
    first = json.dumps(good[0].get("metric", {}), sort_keys=True)
    return True, f"{len(good)} series, e.g. {first} = {good[0].get('value', [None, None])[1]}{note}"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prometheus", help="base URL of Prometheus, e.g. http://127.0.0.1:9090")
    p.add_argument("--dashboard", default=DEFAULT_DASHBOARD)
    p.add_argument("--hpa", action="append", default=[], metavar="FILE",
                   help="an HPA whose metrics' adapter queries to run (default: the queue-length and "
                        "the capacity overlay's)")
    p.add_argument("--warren", default=default_warren(),
                   help="the warren binary that prints the adapter queries (default: $WARREN_BIN, "
                        "else target/debug/warren)")
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                   help="value of a dashboard variable (default: the variable's current value, queue=Orders)")
    p.add_argument("--rate-interval", default="5m",
                   help="stands for $__rate_interval and $__interval (default 5m)")
    p.add_argument("--wait", type=float, default=0,
                   help="retry failing queries for up to this many seconds (series may not be scraped yet)")
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("--skip", action="append", default=[], metavar="REGEX",
                   help="do not run queries whose name or expression matches, e.g. "
                        "--skip autoscaler_desired when no autoscaler runs (reported as SKIP)")
    p.add_argument("--list", action="store_true", help="print the rendered queries as JSON and exit")
    args = p.parse_args(argv)

    overrides = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep:
            p.error(f"--var {item!r}: expected NAME=VALUE")
        overrides[name] = value

    try:
        queries = [q for hpa in args.hpa or DEFAULT_HPAS for q in adapter_queries(args.warren, hpa)]
        queries += dashboard_queries(args.dashboard, overrides, args.rate_interval)
    except (OSError, ValueError) as e:
        print(f"check-queries: {e}", file=sys.stderr)
        return 2

    if args.list:
        json.dump([q.as_dict() for q in queries], sys.stdout, indent=2)
        print()
        return 0
    if not args.prometheus:
        p.error("--prometheus is required (or --list)")

    skipped = [q for q in queries if any(re.search(rx, q.name) or re.search(rx, q.expr) for rx in args.skip)]
    queries = [q for q in queries if q not in skipped]
    for q in skipped:
        print(f"SKIP  {q.name}\n      {q.expr}")
    print(f"check-queries: {len(queries)} queries against {args.prometheus}")
    deadline = time.monotonic() + args.wait
    pending = list(queries)
    outcome: dict[str, tuple[bool, str]] = {}
    while True:
        still = []
        for q in pending:
            try:
                ok, detail = judge(q, instant_query(args.prometheus, q.expr, args.timeout))
            except (OSError, RuntimeError, ValueError) as e:
                ok, detail = False, f"query failed: {e}"
            outcome[q.name] = (ok, detail)
            if not ok:
                still.append(q)
        pending = still
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))

    failed = 0
    for q in queries:
        ok, detail = outcome[q.name]
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {q.name}")
        print(f"      {q.expr}")
        print(f"      -> {detail}")
    if failed:
        print(f"check-queries: {failed} of {len(queries)} queries returned no series with the expected labels")
        return 1
    print(f"check-queries: all {len(queries)} queries returned series with the expected labels")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
