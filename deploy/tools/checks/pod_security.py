"""Pod security of every workload."""

from __future__ import annotations


from .common import SENSITIVE_ENV, fail, ok, pod_spec, ref


def check_pod_security(obj: dict) -> None:
    spec = pod_spec(obj)
    name = ref(obj)
    psc = spec.get("securityContext", {})
    problems = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            problems.append(f"{key} is set")
    for vol in spec.get("volumes", []):
        if "hostPath" in vol:
            problems.append(f"volume {vol['name']} is a hostPath")
    if psc.get("runAsUser") == 0 or psc.get("runAsGroup") == 0:
        problems.append("pod securityContext runs as uid/gid 0")
    containers = spec.get("initContainers", []) + spec.get("containers", [])
    for c in containers:
        sc = c.get("securityContext", {})
        cn = f"container {c['name']}"
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        uid = sc.get("runAsUser", psc.get("runAsUser"))
        if non_root is not True:
            problems.append(f"{cn}: runAsNonRoot is not true")
        if uid is None or uid == 0:
            problems.append(f"{cn}: no explicit non-zero runAsUser (pod or container)")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cn}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{cn}: readOnlyRootFilesystem is not true")
        if sc.get("privileged"):
            problems.append(f"{cn}: privileged")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{cn}: capabilities.drop lacks ALL")
        if caps.get("add"):
            problems.append(f"{cn}: adds capabilities {caps['add']}")
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        if seccomp != "RuntimeDefault":
            problems.append(f"{cn}: seccompProfile is {seccomp!r}, not RuntimeDefault")
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(kind, {}):
                    problems.append(f"{cn}: no resources.{kind}.{r}")
        if c in spec.get("containers", []):
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    problems.append(f"{cn}: no {probe}")
        image = c.get("image", "")
        if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            problems.append(f"{cn}: image {image!r} has no pinned tag")
        for e in c.get("env", []):
            if SENSITIVE_ENV.search(e["name"]) and "value" in e:
                problems.append(f"{cn}: env {e['name']} has a literal value; it must come from a Secret")
    for p in problems:
        fail(f"{name}: {p}")
    if not problems:
        ok(f"{name}: non-root uid {psc.get('runAsUser')}, read-only root, no privilege escalation, "
           f"capabilities dropped, seccomp RuntimeDefault, probes, requests and limits")
