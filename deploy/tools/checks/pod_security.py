"""Pod security of every workload: checkov's Kubernetes checks (PyPI checkov, in the .venv) for
what Pod Security 'restricted' and good practice ask of a pod, and the few rules checkov has no
check for."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .common import SENSITIVE_ENV, fail, ok, pod_spec, ref

# The checkov checks every workload must pass, and what each asks.
CHECKOV_CHECKS = {
    "CKV_K8S_8": "a liveness probe",
    "CKV_K8S_9": "a readiness probe",
    "CKV_K8S_10": "a CPU request",
    "CKV_K8S_11": "a CPU limit",
    "CKV_K8S_12": "a memory request",
    "CKV_K8S_13": "a memory limit",
    "CKV_K8S_14": "a pinned image tag",
    "CKV_K8S_16": "not privileged",
    "CKV_K8S_17": "no host PID namespace",
    "CKV_K8S_18": "no host IPC namespace",
    "CKV_K8S_19": "no host network",
    "CKV_K8S_20": "no privilege escalation",
    "CKV_K8S_21": "not in the default namespace",
    "CKV_K8S_22": "a read-only root filesystem",
    "CKV_K8S_23": "not root",
    "CKV_K8S_25": "no added capabilities",
    "CKV_K8S_26": "no hostPort",
    "CKV_K8S_27": "no docker socket",
    "CKV_K8S_28": "no NET_RAW",
    "CKV_K8S_31": "seccomp RuntimeDefault",
    "CKV_K8S_37": "capabilities.drop ALL",
}


def checkov(paths: list[str]) -> list[dict] | None:
    """checkov's failed checks among CHECKOV_CHECKS for the rendered files, or None (after a
    FAIL line) when checkov did not run."""
    exe = os.path.join(os.path.dirname(sys.executable), "checkov")
    cmd = [exe, "--framework", "kubernetes", "--quiet", "--compact", "--output", "json",
           "--skip-download", "--check", ",".join(CHECKOV_CHECKS)]
    for path in paths:
        cmd += ["--file", path]
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    try:
        report = json.loads(done.stdout) if done.stdout.strip() else {}
    except json.JSONDecodeError:
        fail(f"checkov printed no JSON (exit {done.returncode}): {done.stderr.strip()[-500:]}")
        return None
    reports = report if isinstance(report, list) else [report]
    # checkov prints only a summary when nothing failed.
    return [c for r in reports for c in r.get("results", {}).get("failed_checks", [])]


def check_pod_security(paths: list[str], objs_by_path: dict[str, list[dict]]) -> None:
    failed = checkov(paths)
    if failed is None:
        return
    for c in failed:
        fail(f"{os.path.basename(c.get('file_path', '?'))}: {c.get('resource')}: "
             f"{c['check_id']} {c.get('check_name')} (needs {CHECKOV_CHECKS.get(c['check_id'], '?')})")
    bad = len(failed)
    for path in paths:
        for obj in objs_by_path[path]:
            if pod_spec(obj) is not None:
                bad += check_pod_identity(obj, os.path.basename(path))
    if not bad:
        ok(f"{len(paths)} files: every workload passes checkov's {', '.join(CHECKOV_CHECKS)} "
           f"({', '.join(CHECKOV_CHECKS.values())}); no hostPath, an explicit non-root uid, no secret in env")


def check_pod_identity(obj: dict, label: str) -> int:
    """What checkov has no check for: no hostPath volume, an explicit non-zero runAsUser (a
    named USER in an image cannot be verified by runAsNonRoot), and no literal value for an
    env variable named like a secret. The number of problems."""
    spec = pod_spec(obj)
    psc = spec.get("securityContext", {})
    problems = [f"volume {v['name']} is a hostPath" for v in spec.get("volumes", []) if "hostPath" in v]
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        uid = c.get("securityContext", {}).get("runAsUser", psc.get("runAsUser"))
        if not uid:
            problems.append(f"container {c['name']}: no explicit non-zero runAsUser (pod or container)")
        for e in c.get("env", []):
            if SENSITIVE_ENV.search(e["name"]) and "value" in e:
                problems.append(f"container {c['name']}: env {e['name']} has a literal value; it must come from a Secret")
    for p in problems:
        fail(f"{label}: {ref(obj)}: {p}")
    return len(problems)
