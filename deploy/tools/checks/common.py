"""What every check shares: the repository's paths and names, failure reporting, reading rendered
manifests, and the pod template of a workload."""

from __future__ import annotations

import os
import re
import yaml



REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DEPLOY = os.path.join(REPO, "deploy")
HPA_FILE = os.path.join(DEPLOY, "kubernetes", "overlays", "prometheus-adapter", "hpa.yaml")
ADAPTER_CONFIG = os.path.join(DEPLOY, "kubernetes", "overlays", "prometheus-adapter", "adapter-config.yaml")
CAPACITY_HPA_FILE = os.path.join(DEPLOY, "kubernetes", "overlays", "prometheus-adapter-capacity", "hpa.yaml")
CAPACITY_ADAPTER_CONFIG = os.path.join(DEPLOY, "kubernetes", "overlays", "prometheus-adapter-capacity",
                                       "adapter-config.yaml")
CREATE_SECRET = os.path.join(DEPLOY, "kubernetes", "create-secret")
QUERIES_MD = os.path.join(DEPLOY, "queries.md")
NAMESPACE = "warren"
SECRET_NAME = "warren-rabbitmq"
SECRET_KEYS = {"username", "password", "amqp-url", "erlang-cookie"}
# The capacity overlays scale on the recording rule warren_workers_needed
# (base/prometheus/rules.yml); KEDA's prometheus trigger runs CAPACITY_KEDA_QUERY. The adapter's
# queries are `warren autoscale --print-queries`'s (scaling.warren_query).
CAPACITY_KEDA_QUERY = 'max(warren_workers_needed{queue="Orders"})'
CAPACITY_OVERLAYS = ("prometheus-adapter-capacity", "keda-capacity")
failures: list[str] = []


def fail(msg: str) -> None:
    failures.append(msg)
    print(f"FAIL {msg}")


def ok(msg: str) -> None:
    print(f"ok   {msg}")


def load_docs(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def ref(obj: dict) -> str:
    md = obj.get("metadata", {})
    ns = md.get("namespace")
    return f"{obj.get('kind')}/{(ns + '/') if ns else ''}{md.get('name')}"


def is_keda(obj: dict) -> bool:
    return str(obj.get("apiVersion", "")).startswith("keda.sh/")


def is_operator(obj: dict) -> bool:
    return str(obj.get("apiVersion", "")).startswith("monitoring.coreos.com/")


WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
SENSITIVE_ENV = re.compile(r"PASS|SECRET|TOKEN|COOKIE|CREDENTIAL|AMQP_URL|PRIVATE|KEY$", re.I)


def pod_spec(obj: dict) -> dict | None:
    if obj.get("kind") in WORKLOAD_KINDS:
        return obj["spec"]["template"]["spec"]
    if obj.get("kind") == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if obj.get("kind") == "Pod":
        return obj["spec"]
    return None


def pod_labels(obj: dict) -> dict:
    if obj.get("kind") == "Pod":
        return obj["metadata"].get("labels", {})
    return obj["spec"]["template"]["metadata"].get("labels", {})


def env_map(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


OPERATOR_OVERLAY = "kube-prometheus-stack"
OPERATOR_NAMESPACE = "monitoring"
OPERATOR_PROMETHEUS = f"the operator's Prometheus in namespace {OPERATOR_NAMESPACE}"
PROMETHEUS_YML = os.path.join(DEPLOY, "kubernetes", "base", "prometheus", "prometheus.yml")
RULES_FILE = os.path.join(DEPLOY, "kubernetes", "base", "prometheus", "rules.yml")
PROMETHEUS_RULE = os.path.join(DEPLOY, "kubernetes", "overlays", "kube-prometheus-stack", "prometheusrule.yaml")
PROMETHEUS_RULE_HEADER = """\
# Generated from base/prometheus/rules.yml, the one definition of warren's rules,
# by `.venv/bin/python deploy/tools/check_manifests.py prometheus-rule`: edit
# rules.yml and run that. scripts/check-deploy fails while the groups here differ.
"""
