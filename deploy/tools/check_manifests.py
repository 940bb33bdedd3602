#!/usr/bin/env python3
"""Offline checks of warren's rendered Kubernetes manifests, run by scripts/check-deploy.

Runs inside the project's .venv (deploy/tools/requirements.txt):

  check_manifests.py schemas  --k8s-version V ... --keda-schemas DIR RENDERED.yaml ...
      Every object strictly against the Kubernetes schemas (kubernetes-validate
      --strict), KEDA objects against KEDA's CRDs with unknown fields rejected,
      Prometheus Operator objects against its CRDs' models, strictly.
  check_manifests.py pod-security RENDERED.yaml ...
      Every workload through checkov's Kubernetes checks (non-root, read-only root,
      no privilege escalation, capabilities dropped, seccomp, probes, requests and
      limits, ...), and what checkov does not check (hostPath, an explicit uid).
  check_manifests.py policy   --overlay NAME RENDERED.yaml
      Credentials, warren's apps, NetworkPolicy reachability, the broker cluster,
      the one HPA file and the KEDA equivalent of it, the worker's
      pod-deletion-cost RBAC and egress.
  check_manifests.py prometheus-files RENDERED.yaml OUTDIR
      Writes each ConfigMap holding a prometheus.yml into OUTDIR/<name>/.
  check_manifests.py self-test --k8s-version V ... --keda-schemas DIR RENDERED.yaml ...
      Proves the schema checks reject an unknown field and a wrong type (they
      would otherwise pass silently on a typo).
  check_manifests.py prometheus-rule
      Writes the kube-prometheus-stack overlay's PrometheusRule from rules.yml.

Each failure is printed as "FAIL ..."; the exit status is 1 when any failed. The checks live in
checks/, one module per concern: common (paths, reporting), schemas, pod_security, netpol (the
NetworkPolicy evaluator), cluster (warren's own rules), scaling (HPA, adapter, KEDA),
prometheus_files. Their tests are in tests/ (scripts/check-deploy runs them).
"""

from __future__ import annotations

import argparse
import os
import sys

from checks.cluster import check_broker_cluster, check_credentials, check_deletion_cost, check_namespaces, check_network, check_operator, check_warren_apps
from checks.common import NAMESPACE, OPERATOR_OVERLAY, fail, failures, load_docs
from checks.pod_security import check_pod_security
from checks.prometheus_files import cmd_prometheus_files, cmd_prometheus_rule
from checks.scaling import check_hpa
from checks.schemas import cmd_schemas, cmd_self_test


def cmd_pod_security(args) -> None:
    check_pod_security(args.rendered, {path: load_docs(path) for path in args.rendered})


def cmd_policy(args) -> None:
    for path in args.rendered:
        label = os.path.basename(path)
        objs = load_docs(path)
        ns = [o for o in objs if o.get("kind") == "Namespace" and o["metadata"]["name"] == NAMESPACE]
        if not ns or ns[0]["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") != "restricted":
            fail(f"{label}: Namespace {NAMESPACE} must enforce Pod Security 'restricted'")
        check_namespaces(objs, label)
        check_credentials(objs, label)
        check_warren_apps(objs, label)
        check_network(objs, label, args.overlay)
        check_broker_cluster(objs, label)
        check_hpa(objs, label, args.overlay)
        check_deletion_cost(objs, label)
        if args.overlay == OPERATOR_OVERLAY:
            check_operator(objs, label)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("schemas", "self-test"):
        s = sub.add_parser(name)
        s.add_argument("--k8s-version", action="append", required=True)
        s.add_argument("--keda-schemas", required=True)
        s.add_argument("rendered", nargs="+")
    s = sub.add_parser("pod-security")
    s.add_argument("rendered", nargs="+")
    s = sub.add_parser("policy")
    s.add_argument("--overlay", required=True)
    s.add_argument("rendered", nargs="+")
    sub.add_parser("prometheus-rule")
    s = sub.add_parser("prometheus-files")
    s.add_argument("rendered")
    s.add_argument("outdir")
    args = p.parse_args()
    {"schemas": cmd_schemas, "self-test": cmd_self_test, "policy": cmd_policy, "pod-security": cmd_pod_security,
     "prometheus-files": cmd_prometheus_files, "prometheus-rule": cmd_prometheus_rule}[args.cmd](args)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
