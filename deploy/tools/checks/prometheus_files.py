"""Prometheus files out of the rendered manifests (for promtool), and the kube-prometheus-stack
overlay's PrometheusRule generated from rules.yml."""

from __future__ import annotations

import os
import yaml

from .common import NAMESPACE, PROMETHEUS_RULE, PROMETHEUS_RULE_HEADER, REPO, RULES_FILE, fail, load_docs


def cmd_prometheus_files(args) -> None:
    count = 0
    for obj in load_docs(args.rendered):
        data = obj.get("data", {}) if obj.get("kind") == "ConfigMap" else {}
        if "prometheus.yml" in data:
            out = os.path.join(args.outdir, obj["metadata"]["name"])
            os.makedirs(out, exist_ok=True)
            for key, value in data.items():
                with open(os.path.join(out, key), "w", encoding="utf-8") as f:
                    f.write(value)
            print(out)
            count += 1
    if not count:
        fail(f"{args.rendered}: no ConfigMap with a prometheus.yml")


def prometheus_rule() -> str:
    """rules.yml's groups as a PrometheusRule, for the kube-prometheus-stack overlay."""
    with open(RULES_FILE, encoding="utf-8") as f:
        groups = yaml.safe_load(f)["groups"]
    obj = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "warren", "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/name": "warren", "app.kubernetes.io/part-of": "warren"}},
        "spec": {"groups": groups},
    }
    return PROMETHEUS_RULE_HEADER + yaml.safe_dump(obj, sort_keys=False, width=100)


def cmd_prometheus_rule(args) -> None:
    with open(PROMETHEUS_RULE, "w", encoding="utf-8") as f:
        f.write(prometheus_rule())
    print(f"wrote {os.path.relpath(PROMETHEUS_RULE, REPO)} from {os.path.relpath(RULES_FILE, REPO)}")
