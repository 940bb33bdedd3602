#!/usr/bin/env python3
"""Offline checks of warren's rendered Kubernetes manifests, run by scripts/check-deploy.

Runs inside the project's .venv (deploy/tools/requirements.txt):

  check_manifests.py schemas  --k8s-version V ... --keda-schemas DIR RENDERED.yaml ...
      Every object strictly against the Kubernetes schemas (kubernetes-validate
      --strict), KEDA objects against KEDA's CRDs with unknown fields rejected,
      Prometheus Operator objects against its CRDs' models, strictly.
  check_manifests.py policy   --overlay NAME RENDERED.yaml
      Security, credentials, probes, resources, NetworkPolicy reachability, the
      one HPA file and the KEDA equivalent of it, the worker's pod-deletion-cost
      RBAC and egress.
  check_manifests.py prometheus-files RENDERED.yaml OUTDIR
      Writes each ConfigMap holding a prometheus.yml into OUTDIR/<name>/.
  check_manifests.py self-test --k8s-version V ... --keda-schemas DIR RENDERED.yaml ...
      Proves the schema checks reject an unknown field and a wrong type (they
      would otherwise pass silently on a typo).
  check_manifests.py prometheus-rule
      Writes the kube-prometheus-stack overlay's PrometheusRule from rules.yml.

Each failure is printed as "FAIL ..."; the exit status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import jsonschema
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
ADAPTER_QUERY = 'sum(rabbitmq_detailed_queue_messages_ready{queue="Orders"}) by (queue)'
# The capacity overlays scale on the recording rule warren_workers_needed
# (base/prometheus/rules.yml); KEDA's prometheus trigger runs CAPACITY_KEDA_QUERY.
CAPACITY_ADAPTER_QUERY = 'max(warren_workers_needed{queue="Orders"}) by (queue)'
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


# --- schemas -----------------------------------------------------------------


def k8s_validate(objs: list[dict], versions: list[str], label: str) -> bool:
    """kubernetes-validate --strict, once per version. A missing schema is a failure too."""
    if not objs:
        return True
    exe = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as tmp:
        yaml.safe_dump_all(objs, tmp, sort_keys=False)
        path = tmp.name
    try:
        cmd = [exe, "--strict", "--quiet"]
        for v in versions:
            cmd += ["-k", v]
        proc = subprocess.run(cmd + [path], capture_output=True, text=True)
    finally:
        os.unlink(path)
    out = (proc.stdout + proc.stderr).replace(path, label)
    bad = [line for line in out.splitlines() if line.strip()]
    if proc.returncode != 0 or bad:
        for line in bad or [f"kubernetes-validate exited {proc.returncode}"]:
            fail(f"{label}: {line}")
        return False
    return True


class CrdSchemas:
    """KEDA's CRD schemas, applied as the API server does: OpenAPI v3 validation
    plus structural pruning, where a field the schema does not declare is unknown
    (pruned silently, or rejected with strict field validation, as kubectl does
    by default). Unknown fields are errors here."""

    def __init__(self, directory: str, object_meta_validator):
        self.schemas: dict[tuple[str, str], dict] = {}
        self.object_meta_validator = object_meta_validator
        files = sorted(glob.glob(os.path.join(directory, "*.yaml")))
        if not files:
            raise SystemExit(f"no CRD files in {directory}")
        for path in files:
            for crd in load_docs(path):
                if crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for version in spec["versions"]:
                    if not version.get("served", True):
                        continue
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    self.schemas[key] = version["schema"]["openAPIV3Schema"]

    @staticmethod
    def _to_jsonschema(node):
        """OpenAPI v3 (as in CRDs) to JSON Schema draft 4: nullable, drop x- keys."""
        if isinstance(node, list):
            return [CrdSchemas._to_jsonschema(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for key, value in node.items():
            if key.startswith("x-kubernetes-") or key in ("nullable", "example", "externalDocs"):
                continue
            if key in ("properties", "definitions", "patternProperties"):
                out[key] = {k: CrdSchemas._to_jsonschema(v) for k, v in value.items()}
            else:
                out[key] = CrdSchemas._to_jsonschema(value)
        if node.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        return out

    def _unknown(self, value, schema: dict, path: str, errors: list[str]) -> None:
        if not isinstance(schema, dict):
            return
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
        if isinstance(value, dict):
            props = schema.get("properties") or {}
            addl = schema.get("additionalProperties")
            embedded = schema.get("x-kubernetes-embedded-resource") is True
            for key, sub in value.items():
                where = f"{path}.{key}"
                if key in props:
                    self._unknown(sub, props[key], where, errors)
                elif isinstance(addl, dict):
                    self._unknown(sub, addl, where, errors)
                elif addl is True or preserve:
                    continue
                elif embedded and key in ("apiVersion", "kind", "metadata"):
                    continue
                else:
                    known = ", ".join(sorted(props)) or "none"
                    errors.append(f"{where}: unknown field (known here: {known})")
        elif isinstance(value, list):
            items = schema.get("items")
            if isinstance(items, dict):
                for i, sub in enumerate(value):
                    self._unknown(sub, items, f"{path}[{i}]", errors)

    def validate(self, obj: dict) -> list[str]:
        key = (obj.get("apiVersion"), obj.get("kind"))
        schema = self.schemas.get(key)
        if schema is None:
            return [f"no CRD schema for apiVersion {key[0]} kind {key[1]}"]
        errors = []
        body = {k: v for k, v in obj.items() if k != "metadata"}
        top = self._to_jsonschema(schema)
        top.get("properties", {}).pop("metadata", None)
        for err in jsonschema.Draft4Validator(top).iter_errors(body):
            where = ".".join(str(p) for p in err.absolute_path) or "(root)"
            errors.append(f"{where}: {err.message}")
        for err in self.object_meta_validator.iter_errors(obj.get("metadata", {})):
            where = ".".join(str(p) for p in err.absolute_path)
            errors.append(f"metadata.{where}: {err.message}")
        for k in ("apiVersion", "kind", "metadata", "spec"):
            if k not in obj:
                errors.append(f"{k}: missing")
        schema_wo_meta = dict(schema)
        schema_wo_meta["properties"] = {k: v for k, v in schema.get("properties", {}).items() if k != "metadata"}
        self._unknown(body, schema_wo_meta, "", errors)
        return errors


class OperatorModels:
    """The Prometheus Operator's CRDs as the pydantic models of PyPI's
    cloudcoil-models-prometheus-operator (generated from those CRDs), applied
    strictly: a field the CRD does not declare is an error, as with kubectl's
    strict field validation (extra="forbid"), and a value of the wrong type is
    not coerced ("100" for an integer is an error, strict=True)."""

    def validate(self, obj: dict) -> list[str]:
        import pydantic
        from cloudcoil.models.prometheus_operator import v1, v1alpha1
        from cloudcoil.resources import Resource

        api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        module = {"monitoring.coreos.com/v1": v1, "monitoring.coreos.com/v1alpha1": v1alpha1}.get(api_version)
        model = getattr(module, kind, None) if module else None
        if not (isinstance(model, type) and issubclass(model, Resource)):
            return [f"no Prometheus Operator model for apiVersion {api_version} kind {kind}"]
        try:
            model.model_validate(obj, strict=True, extra="forbid")
        except pydantic.ValidationError as e:
            return [self._describe(model, err) for err in e.errors()]
        return []

    @staticmethod
    def _describe(model, err: dict) -> str:
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        if err["type"] != "extra_forbidden":
            got = "" if isinstance(err["input"], (dict, list)) else f" (got {err['input']!r})"
            return f"{where}: {err['msg']}{got}"
        known = OperatorModels._fields_at(model, err["loc"][:-1])
        near = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        hint = f"did you mean {near[0]}?" if near else f"known here: {', '.join(sorted(known)) or 'none'}"
        return f"{where}: unknown field ({hint})"

    @staticmethod
    def _fields_at(model, loc) -> list[str]:
        """The field names (as written in YAML) of the model that `loc` leads to."""
        import types
        import typing

        import pydantic

        def bare(node):
            # Optional[X] and Annotated[X, ...] stand for X here.
            while typing.get_origin(node) in (typing.Union, types.UnionType, typing.Annotated):
                node = next(a for a in typing.get_args(node) if a is not type(None))
            return node

        def is_model(node) -> bool:
            return isinstance(node, type) and issubclass(node, pydantic.BaseModel)

        node = model
        for step in loc:
            node = bare(node)
            if is_model(node):
                fields = {f.alias or n: f for n, f in node.model_fields.items()}
                if step not in fields:
                    return []
                node = fields[step].annotation
            elif typing.get_origin(node) in (list, dict):
                node = typing.get_args(node)[-1]
            else:
                return []
        node = bare(node)
        return [f.alias or n for n, f in node.model_fields.items()] if is_model(node) else []


def object_meta_validator(version: str):
    """Strict ObjectMeta schema from kubernetes-validate's own schema files."""
    import kubernetes_validate.utils as kv

    version = [v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(version)][-1]
    defs = kv.schema_contents(f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version)
    schema = {"$defs": defs["$defs"], "$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    return jsonschema.Draft202012Validator(schema)


def cmd_schemas(args) -> None:
    crds = CrdSchemas(args.keda_schemas, object_meta_validator(args.k8s_version[-1]))
    operator = OperatorModels()
    for path in args.rendered:
        label = os.path.basename(path)
        objs = load_docs(path)
        k8s = [o for o in objs if not is_keda(o) and not is_operator(o)]
        keda = [o for o in objs if is_keda(o)]
        monitoring = [o for o in objs if is_operator(o)]
        if k8s_validate(k8s, args.k8s_version, label):
            ok(f"{label}: {len(k8s)} objects valid (kubernetes-validate --strict, Kubernetes {', '.join(args.k8s_version)})")
        bad = 0
        for obj in keda:
            errors = crds.validate(obj)
            for e in errors:
                fail(f"{label}: {ref(obj)}: {e}")
            bad += bool(errors)
        if keda and not bad:
            ok(f"{label}: {len(keda)} KEDA objects valid against the CRD schemas "
               f"({', '.join(sorted({ref(o) for o in keda}))}; unknown fields rejected)")
        bad = 0
        for obj in monitoring:
            errors = operator.validate(obj)
            for e in errors:
                fail(f"{label}: {ref(obj)}: {e}")
            bad += bool(errors)
        if monitoring and not bad:
            ok(f"{label}: {len(monitoring)} Prometheus Operator objects valid against its CRDs' models "
               f"({', '.join(sorted({ref(o) for o in monitoring}))}; unknown fields and wrong types rejected)")


def cmd_self_test(args) -> None:
    """Mutations that must be rejected: shows the validators are not vacuous."""
    objs = [o for path in args.rendered for o in load_docs(path)]
    crds = CrdSchemas(args.keda_schemas, object_meta_validator(args.k8s_version[-1]))
    deploy = next(o for o in objs if o["kind"] == "Deployment")
    cases = []
    d = copy.deepcopy(deploy)
    d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    cases.append(("Deployment with a misspelt securityContext field", d, "k8s"))
    d = copy.deepcopy(deploy)
    d["spec"]["replicas"] = "two"
    cases.append(("Deployment with replicas: \"two\"", d, "k8s"))
    d = {"apiVersion": "example.com/v1", "kind": "Unknown", "metadata": {"name": "x"}}
    cases.append(("object of an unknown kind", d, "k8s"))
    for obj in [o for o in objs if is_keda(o)]:
        if obj["kind"] == "ScaledObject":
            d = copy.deepcopy(obj)
            d["spec"]["triggers"][0]["authRef"] = {"name": "x"}
            cases.append(("ScaledObject trigger with unknown field authRef", d, "keda"))
            d = copy.deepcopy(obj)
            d["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]["stabilisationWindowSeconds"] = 0
            cases.append(("ScaledObject behavior with a misspelt field", d, "keda"))
            d = copy.deepcopy(obj)
            d["spec"]["maxReplicaCount"] = "10"
            cases.append(("ScaledObject with maxReplicaCount as a string", d, "keda"))
            d = copy.deepcopy(obj)
            d["metadata"]["lables"] = {"a": "b"}
            cases.append(("ScaledObject with a misspelt metadata field", d, "keda"))
        if obj["kind"] == "TriggerAuthentication":
            d = copy.deepcopy(obj)
            d["spec"]["secretTargetRef"][0]["secret"] = "x"
            cases.append(("TriggerAuthentication with unknown field secret", d, "keda"))
    operator_kinds = {o["kind"]: o for o in reversed([o for o in objs if is_operator(o)])}  # first of each kind
    for obj in operator_kinds.values():
        if obj["kind"] == "ServiceMonitor":
            d = copy.deepcopy(obj)
            d["kind"] = "ServiceMonitr"
            cases.append(("object of an unknown Prometheus Operator kind", d, "operator"))
            d = copy.deepcopy(obj)
            d["spec"]["endpoints"][0]["scrapeTimout"] = "10s"
            cases.append(("ServiceMonitor endpoint with a misspelt field", d, "operator"))
            d = copy.deepcopy(obj)
            d["spec"]["sampleLimit"] = "100"
            cases.append(("ServiceMonitor with sampleLimit as a string", d, "operator"))
            d = copy.deepcopy(obj)
            d["spec"]["endpoints"][0]["relabelings"][0]["action"] = "replase"
            cases.append(("ServiceMonitor relabeling with an unknown action", d, "operator"))
            d = copy.deepcopy(obj)
            d["metadata"]["lables"] = {"a": "b"}
            cases.append(("ServiceMonitor with a misspelt metadata field", d, "operator"))
        if obj["kind"] == "PodMonitor":
            d = copy.deepcopy(obj)
            d["spec"]["podMetricsEndpoints"][0]["metricsPath"] = "/metrics"
            cases.append(("PodMonitor endpoint with Prometheus' metricsPath for the operator's path", d, "operator"))
            d = copy.deepcopy(obj)
            d["spec"]["podMetricsEndpoints"][0]["params"] = {"family": "queue_coarse_metrics"}
            cases.append(("PodMonitor params as a string, not a list", d, "operator"))
        if obj["kind"] == "PrometheusRule":
            d = copy.deepcopy(obj)
            d["spec"]["groups"][0]["rules"][0]["fro"] = d["spec"]["groups"][0]["rules"][0].pop("for")
            cases.append(("PrometheusRule rule with a misspelt field", d, "operator"))
    if not any(c[2] == "keda" for c in cases):
        fail("self-test: no KEDA objects in the rendered file")
    if not any(c[2] == "operator" for c in cases):
        fail("self-test: no Prometheus Operator objects in the rendered files")
    for title, obj, kind in cases:
        if kind == "k8s":
            global failures
            saved = failures
            failures = []
            with open(os.devnull, "w") as devnull:
                old = sys.stdout
                sys.stdout = devnull
                try:
                    k8s_validate([obj], args.k8s_version, "self-test")
                finally:
                    sys.stdout = old
            errors = [f.split(": ", 1)[-1] for f in failures]
            failures = saved
        elif kind == "operator":
            errors = OperatorModels().validate(obj)
        else:
            errors = crds.validate(obj)
        if errors:
            ok(f"self-test: rejected {title}: {errors[0]}")
        else:
            fail(f"self-test: {title} was accepted")


# --- policy ------------------------------------------------------------------

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


def check_credentials(objs: list[dict], label: str) -> None:
    secrets = [o for o in objs if o.get("kind") == "Secret"]
    for s in secrets:
        fail(f"{label}: {ref(s)} is rendered from git; broker credentials must be created with "
             f"deploy/kubernetes/create-secret, never committed")
    text = yaml.safe_dump_all(objs)
    guest = bool(re.search(r"\bguest\b", text, re.I))
    if guest:
        fail(f"{label}: the word 'guest' appears in the rendered manifests (no default RabbitMQ user)")
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                refs.add((node["secretKeyRef"]["name"], node["secretKeyRef"]["key"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(objs)
    for o in objs:
        if o.get("kind") == "TriggerAuthentication":
            for t in o["spec"].get("secretTargetRef", []):
                refs.add((t["name"], t["key"]))
    with open(CREATE_SECRET, encoding="utf-8") as f:
        script = f.read()
    for name, key in sorted(refs):
        if name != SECRET_NAME or key not in SECRET_KEYS:
            fail(f"{label}: reference to Secret {name} key {key}: only {SECRET_NAME} keys {sorted(SECRET_KEYS)} exist")
        elif f"--from-literal={key}=" not in script and f"--from-literal=\"{key}=" not in script:
            fail(f"{label}: Secret key {key} is used but deploy/kubernetes/create-secret does not create it")
    if not secrets and refs and not guest:
        ok(f"{label}: no Secret in git; credentials only via Secret {SECRET_NAME} "
           f"(keys {', '.join(sorted({k for _, k in refs}))}), no guest user")


def check_warren_apps(objs: list[dict], label: str) -> None:
    deps = {o["metadata"]["name"]: o for o in objs if o.get("kind") == "Deployment"}
    # What each container runs: the image's entrypoint (`warren`) with a subcommand, or the
    # worker's own binary (`warren-worker`, the worker alone: less memory per replica).
    expect = {
        "warren-web": ({"args": ["web"]}, "warren web", "http", 3000),
        "warren-worker": ({"command": ["/usr/local/bin/warren-worker"]}, "warren-worker", "metrics", 9100),
    }
    for name, (invocation, program, port_name, port) in expect.items():
        d = deps.get(name)
        if not d:
            fail(f"{label}: Deployment {name} missing")
            continue
        spec = pod_spec(d)
        c = spec["containers"][0]
        if {k: c[k] for k in ("command", "args") if k in c} != invocation:
            fail(f"{label}: {name} does not run `{program}` ({invocation})")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        if ports.get(port_name) != port:
            fail(f"{label}: {name} port {port_name} is not {port}")
        lp = c.get("livenessProbe", {}).get("httpGet", {})
        rp = c.get("readinessProbe", {}).get("httpGet", {})
        if lp.get("path") != "/healthz" or rp.get("path") != "/readyz":
            fail(f"{label}: {name} probes must be /healthz (liveness) and /readyz (readiness)")
        env = env_map(c)
        for var in ("RABBIT_USERNAME", "RABBIT_PASSWORD"):
            if "secretKeyRef" not in env.get(var, {}).get("valueFrom", {}):
                fail(f"{label}: {name} env {var} is not from the Secret")
    w = deps.get("warren-worker")
    if w:
        spec = pod_spec(w)
        env = env_map(spec["containers"][0])
        grace_ms = int(env.get("GRACE_MS", {}).get("value", "30000"))
        work_ms = int(env.get("WORK_MS", {}).get("value", "5000"))
        tgps = spec.get("terminationGracePeriodSeconds", 30)
        if tgps * 1000 <= grace_ms or grace_ms < work_ms:
            fail(f"{label}: worker terminationGracePeriodSeconds {tgps}s must exceed GRACE_MS {grace_ms} ms, "
                 f"itself at least WORK_MS {work_ms} ms")
        else:
            ok(f"{label}: worker drain fits: WORK_MS {work_ms} ms <= GRACE_MS {grace_ms} ms < "
               f"terminationGracePeriodSeconds {tgps}s")
        if "replicas" in w["spec"]:
            fail(f"{label}: warren-worker sets spec.replicas; the autoscaler owns it")


# NetworkPolicy reachability ---------------------------------------------------


def selector_matches(sel: dict | None, labels: dict) -> bool:
    if sel is None:
        return False
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and labels.get(k) in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


class Source:
    def __init__(self, name: str, namespace: str | None, labels: dict, ns_labels: dict):
        self.name = name
        self.namespace = namespace  # None: outside the cluster
        self.labels = labels
        self.ns_labels = ns_labels


def peer_allows(peer: dict, src: Source, policy_ns: str) -> bool:
    if "ipBlock" in peer:
        # An ipBlock names addresses; treat it as admitting traffic from outside
        # the pod network (nodes, the API server), not other pods.
        return src.namespace is None
    if src.namespace is None:
        return False
    ns_sel = peer.get("namespaceSelector")
    pod_sel = peer.get("podSelector")
    if ns_sel is None:
        ns_ok = src.namespace == policy_ns
    else:
        ns_ok = selector_matches(ns_sel, src.ns_labels)
    pod_ok = True if pod_sel is None else selector_matches(pod_sel, src.labels)
    return ns_ok and pod_ok


def port_matches(rule_ports, port: int, named: dict) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != "TCP":
            continue
        value = p.get("port")
        if value is None:
            return True
        if isinstance(value, str):
            value = named.get(value)
        end = p.get("endPort", value)
        if value is not None and value <= port <= end:
            return True
    return False


def allowed(policies: list[dict], target_ns: str, target_labels: dict, port: int, named: dict, src: Source) -> bool:
    selecting = [
        p for p in policies
        if p["metadata"].get("namespace") == target_ns
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and (p["spec"].get("podSelector") == {} or selector_matches(p["spec"].get("podSelector"), target_labels))
    ]
    if not selecting:
        return True
    for p in selecting:
        for rule in p["spec"].get("ingress", []) or []:
            if not port_matches(rule.get("ports"), port, named):
                continue
            peers = rule.get("from")
            if not peers:
                return True
            if any(peer_allows(peer, src, target_ns) for peer in peers):
                return True
    return False


def check_network(objs: list[dict], label: str, overlay: str) -> None:
    policies = [o for o in objs if o.get("kind") == "NetworkPolicy"]
    workloads = {}
    for o in objs:
        if pod_spec(o) is not None:
            named = {}
            for c in pod_spec(o)["containers"]:
                for p in c.get("ports", []):
                    if p.get("name"):
                        named[p["name"]] = p["containerPort"]
            workloads[o["metadata"]["name"]] = (o["metadata"].get("namespace"), pod_labels(o), named)
    ns_labels = {NAMESPACE: {"kubernetes.io/metadata.name": NAMESPACE}}
    sources = [Source(n, ns, lab, ns_labels[ns]) for n, (ns, lab, _) in workloads.items()]
    sources.append(Source("pod in namespace keda", "keda", {"app": "keda-operator"},
                          {"kubernetes.io/metadata.name": "keda"}))
    sources.append(Source("pod in namespace default", "default", {"app": "anything"},
                          {"kubernetes.io/metadata.name": "default"}))
    # kube-prometheus-stack's Prometheus, as the operator labels it, and its
    # Grafana beside it.
    monitoring_ns = {"kubernetes.io/metadata.name": OPERATOR_NAMESPACE}
    sources.append(Source(OPERATOR_PROMETHEUS, OPERATOR_NAMESPACE,
                          {"app.kubernetes.io/name": "prometheus", "prometheus": "kube-prometheus-stack-prometheus",
                           "app.kubernetes.io/managed-by": "prometheus-operator"}, monitoring_ns))
    sources.append(Source(f"grafana in namespace {OPERATOR_NAMESPACE}", OPERATOR_NAMESPACE,
                          {"app.kubernetes.io/name": "grafana"}, monitoring_ns))
    sources.append(Source("outside the pod network", None, {}, {}))

    def who(target: str, port: int) -> set[str]:
        ns, labels, named = workloads[target]
        return {s.name for s in sources if s.name != target and allowed(policies, ns, labels, port, named, s)}

    uncovered = [n for n, (ns, lab, _) in workloads.items()
                 if not any(p["spec"].get("podSelector") == {} or selector_matches(p["spec"].get("podSelector"), lab)
                            for p in policies if p["metadata"].get("namespace") == ns)]
    for n in uncovered:
        fail(f"{label}: no NetworkPolicy selects {n}; ingress to it is open")

    # The keda overlays that read the broker need AMQP; keda-capacity reads Prometheus.
    keda = overlay.startswith("keda") and overlay != "keda-capacity"
    operator = overlay == OPERATOR_OVERLAY
    scraper = OPERATOR_PROMETHEUS if operator else "prometheus"
    amqp_allowed = {"warren-web", "warren-worker"} | ({"pod in namespace keda"} if keda else set())
    expectations = [
        ("rabbitmq", 5672, amqp_allowed, amqp_allowed, "AMQP"),
        ("rabbitmq", 15692, {scraper}, {scraper}, "broker metrics"),
        ("rabbitmq", 15672, set(), set(), "management UI (use kubectl port-forward)"),
        ("warren-worker", 9100, {scraper}, {scraper}, "worker metrics"),
    ]
    if operator:
        # Prometheus and kube-state-metrics are the chart's, in its namespace.
        for gone in ("prometheus", "kube-state-metrics"):
            if gone in workloads:
                fail(f"{label}: {gone} is rendered; kube-prometheus-stack brings its own")
    else:
        expectations.append(("kube-state-metrics", 8080, {"prometheus"}, {"prometheus"}, "kube-state-metrics"))
    if operator:
        expectations.append(("prometheus-adapter", 6443, None, {"outside the pod network"},
                             "aggregated API (called by the API server)"))
    elif "prometheus-adapter" in workloads:
        expectations.append(("prometheus", 9090, {"prometheus-adapter"}, {"prometheus-adapter"}, "Prometheus API"))
        expectations.append(("prometheus-adapter", 6443, None, {"outside the pod network"},
                             "aggregated API (called by the API server)"))
    elif overlay == "keda-capacity":
        expectations.append(("prometheus", 9090, {"pod in namespace keda"}, {"pod in namespace keda"},
                             "Prometheus API (KEDA's prometheus trigger)"))
    else:
        expectations.append(("prometheus", 9090, {"prometheus-adapter"}, set(), "Prometheus API"))
    expectations.append(("warren-web", 3000, None, {scraper, "outside the pod network"}, "web (/generate, /metrics)"))
    # The broker's nodes talk to each other (epmd, inter-node links), and to nobody else.
    if "rabbitmq" in workloads:
        ns, labels, named = workloads["rabbitmq"]
        peer = Source("rabbitmq", ns, labels, ns_labels[ns])
        for port, what in ((4369, "epmd"), (25672, "inter-node links")):
            others = who("rabbitmq", port)
            if not allowed(policies, ns, labels, port, named, peer):
                fail(f"{label}: {what} rabbitmq:{port} is not reachable from the other broker nodes")
            elif others:
                fail(f"{label}: {what} rabbitmq:{port} is reachable from {sorted(others)}")
            else:
                ok(f"{label}: {what} rabbitmq:{port} reachable from the broker's nodes only")
    for target, port, at_most, at_least, what in expectations:
        if target not in workloads:
            fail(f"{label}: workload {target} missing")
            continue
        got = who(target, port)
        if at_most is not None and not got <= at_most:
            fail(f"{label}: {what} {target}:{port} is reachable from {sorted(got - at_most)}")
        elif not at_least <= got:
            fail(f"{label}: {what} {target}:{port} is not reachable from {sorted(at_least - got)}")
        else:
            ok(f"{label}: {what} {target}:{port} reachable from {sorted(got) or 'nobody'}")


# The broker cluster -----------------------------------------------------------

BROKER_NODES = 3


def check_broker_cluster(objs: list[dict], label: str) -> None:
    """Three nodes that survive losing one: replicas, quorum size, disruption budget,
    spreading, peer discovery with its RBAC, the shared cookie."""
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o.get("kind"), {})[o["metadata"]["name"]] = o
    sts = by_kind.get("StatefulSet", {}).get("rabbitmq")
    if sts is None:
        fail(f"{label}: StatefulSet rabbitmq missing")
        return
    problems = []
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    if spec.get("replicas") != BROKER_NODES:
        problems.append(f"replicas is {spec.get('replicas')}, not {BROKER_NODES}")
    if spec.get("podManagementPolicy") != "Parallel":
        problems.append("podManagementPolicy is not Parallel (a full restart could wait forever)")
    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    terms = [t.get("podAffinityTerm", t) for t in
             anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])
             + anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])]
    if not any(t.get("topologyKey") == "kubernetes.io/hostname"
               and selector_matches(t.get("labelSelector"), pod_labels(sts)) for t in terms):
        problems.append("no pod anti-affinity on kubernetes.io/hostname for its own pods")
    pdbs = [p for p in by_kind.get("PodDisruptionBudget", {}).values()
            if selector_matches(p["spec"].get("selector"), pod_labels(sts))]
    if len(pdbs) != 1 or pdbs[0]["spec"].get("maxUnavailable") != 1:
        problems.append("not exactly one PodDisruptionBudget with maxUnavailable: 1")
    headless = by_kind.get("Service", {}).get(spec.get("serviceName"), {}).get("spec", {})
    if headless.get("clusterIP") != "None" or not headless.get("publishNotReadyAddresses"):
        problems.append(f"serviceName {spec.get('serviceName')} is not a headless Service publishing not-ready pods")
    env = {}
    for c in pod["containers"]:
        env.update(env_map(c))
    if env.get("RABBITMQ_USE_LONGNAME", {}).get("value") != "true" or \
            spec.get("serviceName", "?") not in env.get("RABBITMQ_NODENAME", {}).get("value", ""):
        problems.append("node names are not long names under the headless Service")
    sa = pod.get("serviceAccountName")
    if sa not in by_kind.get("ServiceAccount", {}):
        problems.append(f"serviceAccountName {sa!r} is not rendered")
    bound = [rb for rb in by_kind.get("RoleBinding", {}).values()
             if any(s.get("kind") == "ServiceAccount" and s.get("name") == sa for s in rb.get("subjects", []))]
    roles = [by_kind.get("Role", {}).get(rb["roleRef"]["name"]) for rb in bound if rb["roleRef"]["kind"] == "Role"]
    rules = [r for role in roles if role for r in role.get("rules", [])]
    if not any("endpoints" in r.get("resources", []) and "get" in r.get("verbs", []) for r in rules):
        problems.append("its ServiceAccount may not get endpoints (peer discovery)")
    for r in rules:
        extra = set(r.get("verbs", [])) - {"get"}
        if extra or set(r.get("resources", [])) - {"endpoints"}:
            problems.append(f"its Role grants more than get on endpoints: {r}")
    conf_maps = [o for o in by_kind.get("ConfigMap", {}).values() if o["metadata"]["name"].startswith("rabbitmq-config")]
    data = conf_maps[0].get("data", {}) if conf_maps else {}
    if "cluster_formation.peer_discovery_backend = k8s" not in data.get("rabbitmq.conf", ""):
        problems.append("rabbitmq.conf does not use the k8s peer discovery backend")
    if "rabbitmq_peer_discovery_k8s" not in data.get("enabled_plugins", ""):
        problems.append("enabled_plugins lacks rabbitmq_peer_discovery_k8s")
    cookie = [v for v in pod.get("volumes", []) if v.get("secret", {}).get("secretName") == SECRET_NAME
              and any(i.get("key") == "erlang-cookie" for i in v["secret"].get("items", []))]
    if not cookie:
        problems.append("no shared Erlang cookie from Secret " + SECRET_NAME)
    for name in ("warren-web", "warren-worker"):
        d = by_kind.get("Deployment", {}).get(name)
        if d is None:
            continue
        size = {}
        for c in d["spec"]["template"]["spec"]["containers"]:
            size.update(env_map(c))
        value = size.get("QUORUM_GROUP_SIZE", {}).get("value")
        if value != str(BROKER_NODES):
            problems.append(f"{name} sets QUORUM_GROUP_SIZE {value!r}, not {BROKER_NODES}")
    for p in problems:
        fail(f"{label}: broker cluster: {p}")
    if not problems:
        ok(f"{label}: broker cluster of {BROKER_NODES} (Parallel), quorum size {BROKER_NODES}, PDB maxUnavailable 1, "
           f"anti-affinity, k8s peer discovery with get on endpoints only, shared cookie")


# HPA and its KEDA equivalent ------------------------------------------------


def check_hpa(objs: list[dict], label: str, overlay: str) -> None:
    capacity = overlay in CAPACITY_OVERLAYS
    hpa_file = CAPACITY_HPA_FILE if capacity else HPA_FILE
    with open(hpa_file, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    if len(docs) != 1:
        fail(f"{hpa_file}: must hold exactly one YAML document, has {len(docs)}")
        return
    hpa = docs[0]
    spec = hpa.get("spec", {})
    metrics = spec.get("metrics", [])
    want = [
        (hpa.get("apiVersion") == "autoscaling/v2", "apiVersion autoscaling/v2"),
        (hpa.get("kind") == "HorizontalPodAutoscaler", "kind HorizontalPodAutoscaler"),
        (hpa["metadata"].get("name") == "warren-worker", "name warren-worker"),
        (spec.get("scaleTargetRef") == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "warren-worker"},
         "scaleTargetRef Deployment warren-worker"),
        (spec.get("minReplicas") == 1 and spec.get("maxReplicas") == 10, "minReplicas 1, maxReplicas 10"),
        (len(metrics) == 1 and metrics[0].get("type") == "External", "one External metric"),
        ("behavior" in spec and "scaleUp" in spec["behavior"] and "scaleDown" in spec["behavior"],
         "explicit behavior for scaleUp and scaleDown"),
    ]
    if len(metrics) == 1 and metrics[0].get("type") == "External":
        ext = metrics[0]["external"]
        metric, target = ("warren_workers_needed", "1") if capacity else ("rabbitmq_queue_messages_ready", "5")
        want += [
            (ext["metric"].get("name") == metric, f"metric {metric}"),
            (ext["metric"].get("selector") == {"matchLabels": {"queue": "Orders"}}, "selector {queue: Orders}"),
            (ext["target"] == {"type": "AverageValue", "averageValue": target}, f"target AverageValue \"{target}\""),
        ]
    if capacity:
        # The capacity HPA differs from the queue-length one in its metric and in its
        # scale-down rate: the same window, then to the recommendation at once (its metric
        # falls with the arrivals; docs/scaling.md, "After the load stops").
        with open(HPA_FILE, encoding="utf-8") as f:
            queue_hpa = yaml.safe_load(f)
        rel = os.path.relpath(HPA_FILE, REPO)
        for key in ("scaleTargetRef", "minReplicas", "maxReplicas"):
            want.append((spec.get(key) == queue_hpa["spec"].get(key), f"{key} as in {rel}"))
        behavior, queue_behavior = spec.get("behavior", {}), queue_hpa["spec"].get("behavior", {})
        down = behavior.get("scaleDown", {})
        want += [
            (behavior.get("scaleUp") == queue_behavior.get("scaleUp"), f"behavior.scaleUp as in {rel}"),
            (down.get("stabilizationWindowSeconds") == queue_behavior.get("scaleDown", {}).get("stabilizationWindowSeconds"),
             f"behavior.scaleDown.stabilizationWindowSeconds as in {rel}"),
            (down.get("policies") == [{"type": "Percent", "value": 100, "periodSeconds": 15}],
             "behavior.scaleDown.policies: 100 % per 15 s"),
        ]
    for good, what in want:
        if not good:
            fail(f"{os.path.relpath(hpa_file, REPO)}: expected {what}")

    rendered_hpas = [o for o in objs if o.get("kind") == "HorizontalPodAutoscaler"]
    if overlay in ("prometheus-adapter", "prometheus-adapter-capacity", OPERATOR_OVERLAY):
        if rendered_hpas != [hpa]:
            fail(f"{label}: the rendered HPA differs from {os.path.relpath(hpa_file, REPO)} "
                 "(no kustomize transformation may touch it)")
        else:
            ok(f"{label}: the one HPA is {os.path.relpath(hpa_file, REPO)} exactly as `warren autoscale --hpa` reads it")
        if capacity:
            check_capacity_adapter(objs, label, hpa)
        else:
            check_adapter(hpa)
        return
    if rendered_hpas:
        fail(f"{label}: {overlay} must not render an HPA of its own")
    if overlay == "keda-capacity":
        check_keda_capacity(objs, label, hpa)
    elif overlay.startswith("keda"):
        check_keda_equivalence(objs, label, overlay, hpa)


def render_adapter_rule(path: str, hpa: dict) -> str | None:
    """The query prometheus-adapter sends for the HPA's External metric, from the rule in path."""
    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]["name"]
    rules = [r for r in cfg.get("externalRules", []) if r.get("name", {}).get("as") == metric]
    if len(rules) != 1:
        fail(f"{os.path.relpath(path, REPO)}: expected one externalRules entry exposing {metric}, found {len(rules)}")
        return None
    rule = rules[0]
    if rule.get("resources", {}).get("namespaced") is not False:
        fail(f"{os.path.relpath(path, REPO)}: the rule must set resources.namespaced: false (no namespace matcher)")
    series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"]).group(0)
    matchers = ",".join(f'{k}="{v}"' for k, v in sorted(hpa["spec"]["metrics"][0]["external"]["metric"]["selector"]["matchLabels"].items()))
    return rule["metricsQuery"].replace("<<.Series>>", series).replace("<<.LabelMatchers>>", matchers)


def recorded_rules() -> dict[str, dict]:
    with open(RULES_FILE, encoding="utf-8") as f:
        groups = yaml.safe_load(f)["groups"]
    return {r["record"]: r for g in groups for r in g["rules"] if "record" in r}


def check_capacity_rule() -> bool:
    """warren_workers_needed is recorded per {vhost, queue} for every queue (the generic group
    `warren rules` prints; tests/rules.rs checks rules.yml is its output), so the selector
    {queue: Orders} finds Orders' series."""
    rule = recorded_rules().get("warren_workers_needed")
    if rule is None:
        fail(f"{os.path.relpath(RULES_FILE, REPO)}: no recording rule warren_workers_needed")
        return False
    backlog = recorded_rules().get("warren_capacity_backlog", {}).get("expr", "")
    if rule.get("labels") or "by (vhost, queue)" not in backlog:
        fail(f"{os.path.relpath(RULES_FILE, REPO)}: warren_workers_needed must be recorded for every queue "
             f"(by (vhost, queue), no fixed labels): print it with `warren rules`")
        return False
    return True


def check_capacity_adapter(objs: list[dict], label: str, hpa: dict) -> None:
    rendered = render_adapter_rule(CAPACITY_ADAPTER_CONFIG, hpa)
    if rendered is None:
        return
    if rendered != CAPACITY_ADAPTER_QUERY:
        fail(f"prometheus-adapter-capacity/adapter-config.yaml: renders {rendered!r}, expected {CAPACITY_ADAPTER_QUERY!r}")
        return
    configs = [o for o in objs if o.get("kind") == "ConfigMap" and o["metadata"]["name"].startswith("prometheus-adapter-config")]
    if len(configs) != 1 or yaml.safe_load(configs[0]["data"]["config.yaml"]) != yaml.safe_load(open(CAPACITY_ADAPTER_CONFIG, encoding="utf-8")):
        fail(f"{label}: the adapter's ConfigMap is not prometheus-adapter-capacity/adapter-config.yaml")
        return
    for path in (CAPACITY_ADAPTER_CONFIG, QUERIES_MD, CAPACITY_HPA_FILE):
        with open(path, encoding="utf-8") as f:
            if CAPACITY_ADAPTER_QUERY not in f.read():
                fail(f"{os.path.relpath(path, REPO)} does not state the rendered query {CAPACITY_ADAPTER_QUERY}")
                return
    if check_capacity_rule():
        ok(f"{label}: adapter serves the recording rule as {CAPACITY_ADAPTER_QUERY} (same in queries.md, comments)")


def check_keda_capacity(objs: list[dict], label: str, hpa: dict) -> None:
    """The ScaledObject scales like prometheus-adapter-capacity/hpa.yaml, on the same rule."""
    sos = [o for o in objs if o.get("kind") == "ScaledObject"]
    deps = {o["metadata"]["name"] for o in objs if o.get("kind") == "Deployment"}
    services = {o["metadata"]["name"] for o in objs if o.get("kind") == "Service"}
    if len(sos) != 1:
        fail(f"{label}: expected one ScaledObject, found {len(sos)}")
        return
    so = sos[0]["spec"]
    h = hpa["spec"]
    checks = [
        (so["scaleTargetRef"]["name"] == h["scaleTargetRef"]["name"] and so["scaleTargetRef"]["name"] in deps,
         "scaleTargetRef is the HPA's Deployment"),
        (so.get("maxReplicaCount") == h["maxReplicas"], "maxReplicaCount equals maxReplicas"),
        (so.get("minReplicaCount") == h["minReplicas"], "minReplicaCount equals minReplicas"),
        (so.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("name") == hpa["metadata"]["name"],
         "KEDA's HPA is named like hpa.yaml"),
        (so.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior") == h["behavior"],
         "behavior identical to hpa.yaml"),
        (len(so.get("triggers", [])) == 1, "one trigger"),
        (not any(o.get("kind") == "TriggerAuthentication" for o in objs), "no TriggerAuthentication (no credentials)"),
    ]
    if len(so.get("triggers", [])) == 1:
        t = so["triggers"][0]
        md = t.get("metadata", {})
        host = re.match(r"http://([a-z0-9-]+)\.warren\.svc:9090$", md.get("serverAddress", ""))
        checks += [
            (t.get("type") == "prometheus", "trigger type prometheus"),
            (host is not None and host.group(1) in services, "serverAddress is the base's Prometheus Service"),
            (md.get("query") == CAPACITY_KEDA_QUERY, f"query {CAPACITY_KEDA_QUERY}"),
            (md.get("threshold") == h["metrics"][0]["external"]["target"]["averageValue"],
             "threshold equals the HPA's averageValue"),
            (t.get("metricType", "AverageValue") == h["metrics"][0]["external"]["target"]["type"], "metricType AverageValue"),
            (md.get("ignoreNullValues") == "false", "ignoreNullValues \"false\" (no answer holds, not 0)"),
        ]
    for good, what in checks:
        if not good:
            fail(f"{label}: ScaledObject: {what}")
    for path in (QUERIES_MD, os.path.join(DEPLOY, "kubernetes", "overlays", "keda-capacity", "scaledobject.yaml")):
        with open(path, encoding="utf-8") as f:
            if CAPACITY_KEDA_QUERY not in f.read():
                fail(f"{os.path.relpath(path, REPO)} does not state KEDA's query {CAPACITY_KEDA_QUERY}")
    if all(g for g, _ in checks) and check_capacity_rule():
        ok(f"{label}: ScaledObject equivalent to prometheus-adapter-capacity/hpa.yaml (prometheus trigger on "
           f"warren_workers_needed, threshold 1, same min, max and behavior)")


def check_adapter(hpa: dict) -> None:
    with open(ADAPTER_CONFIG, encoding="utf-8") as f:
        text = f.read()
    cfg = yaml.safe_load(text)
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]["name"]
    rules = [r for r in cfg.get("externalRules", []) if r.get("name", {}).get("as") == metric]
    if len(rules) != 1:
        fail(f"adapter-config.yaml: expected one externalRules entry exposing {metric}, found {len(rules)}")
        return
    rule = rules[0]
    if rule.get("resources", {}).get("namespaced") is not False:
        fail("adapter-config.yaml: the rule must set resources.namespaced: false (no namespace matcher)")
    series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"]).group(0)
    matchers = ",".join(f'{k}="{v}"' for k, v in sorted(hpa["spec"]["metrics"][0]["external"]["metric"]["selector"]["matchLabels"].items()))
    rendered = rule["metricsQuery"].replace("<<.Series>>", series).replace("<<.LabelMatchers>>", matchers)
    if rendered != ADAPTER_QUERY:
        fail(f"adapter-config.yaml: renders {rendered!r}, expected {ADAPTER_QUERY!r}")
        return
    # the stdlib-only extraction used against a live Prometheus must agree
    proc = subprocess.run([sys.executable, os.path.join(DEPLOY, "check-queries.py"), "--list"],
                          capture_output=True, text=True)
    listed = json.loads(proc.stdout)[0]["expr"] if proc.returncode == 0 else None
    if listed != ADAPTER_QUERY:
        fail(f"check-queries.py --list renders the adapter query as {listed!r}")
    for path, what in ((ADAPTER_CONFIG, "adapter-config.yaml comments"), (QUERIES_MD, "deploy/queries.md"),
                       (HPA_FILE, "hpa.yaml comments")):
        with open(path, encoding="utf-8") as f:
            if ADAPTER_QUERY not in f.read():
                fail(f"{what} do not state the rendered query {ADAPTER_QUERY}")
    ok(f"adapter rule renders {ADAPTER_QUERY} (same in check-queries.py, queries.md, comments)")


def check_keda_equivalence(objs: list[dict], label: str, overlay: str, hpa: dict) -> None:
    sos = [o for o in objs if o.get("kind") == "ScaledObject"]
    tas = {o["metadata"]["name"] for o in objs if o.get("kind") == "TriggerAuthentication"}
    deps = {o["metadata"]["name"] for o in objs if o.get("kind") == "Deployment"}
    if len(sos) != 1:
        fail(f"{label}: expected one ScaledObject, found {len(sos)}")
        return
    so = sos[0]["spec"]
    h = hpa["spec"]
    ext = h["metrics"][0]["external"]
    checks = [
        (so["scaleTargetRef"]["name"] == h["scaleTargetRef"]["name"] and so["scaleTargetRef"]["name"] in deps,
         "scaleTargetRef is the HPA's Deployment"),
        (so.get("maxReplicaCount") == h["maxReplicas"], "maxReplicaCount equals maxReplicas"),
        (so.get("minReplicaCount") == (0 if overlay.endswith("scale-to-zero") else h["minReplicas"]),
         "minReplicaCount equals minReplicas (0 with scale to zero)"),
        (so.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("name") == hpa["metadata"]["name"],
         "KEDA's HPA is named like hpa.yaml"),
        (so.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior") == h["behavior"],
         "behavior identical to hpa.yaml"),
        (len(so.get("triggers", [])) == 1, "one trigger"),
    ]
    if len(so.get("triggers", [])) == 1:
        t = so["triggers"][0]
        md = t.get("metadata", {})
        checks += [
            (t.get("type") == "rabbitmq", "trigger type rabbitmq"),
            (md.get("mode") == "QueueLength" and md.get("protocol") == "amqp",
             "mode QueueLength over amqp (ready messages)"),
            (md.get("queueName") == ext["metric"]["selector"]["matchLabels"]["queue"], "queueName is the HPA's queue"),
            (md.get("value") == ext["target"]["averageValue"], "value equals the HPA's averageValue"),
            (t.get("metricType", "AverageValue") == ext["target"]["type"], "metricType AverageValue"),
            (t.get("authenticationRef", {}).get("name") in tas, "authenticationRef names a rendered TriggerAuthentication"),
        ]
    for good, what in checks:
        if not good:
            fail(f"{label}: ScaledObject: {what}")
    if all(g for g, _ in checks):
        ok(f"{label}: ScaledObject equivalent to hpa.yaml (min {so.get('minReplicaCount')}, max "
           f"{so.get('maxReplicaCount')}, {so['triggers'][0]['metadata']['value']} ready messages per worker, same behavior)")


# The kube-prometheus-stack overlay ------------------------------------------

OPERATOR_OVERLAY = "kube-prometheus-stack"
OPERATOR_NAMESPACE = "monitoring"
OPERATOR_PROMETHEUS = f"the operator's Prometheus in namespace {OPERATOR_NAMESPACE}"
PROMETHEUS_YML = os.path.join(DEPLOY, "kubernetes", "base", "prometheus", "prometheus.yml")


def check_operator(objs: list[dict], label: str) -> None:
    """The monitors scrape what base/prometheus/prometheus.yml scrapes, the
    PrometheusRule holds rules.yml's groups, and the three settings (release
    label, Prometheus URL, namespace) agree with one another."""
    with open(PROMETHEUS_YML, encoding="utf-8") as f:
        jobs = {j["job_name"]: j for j in yaml.safe_load(f)["scrape_configs"]}
    with open(RULES_FILE, encoding="utf-8") as f:
        rule_groups = yaml.safe_load(f)["groups"]
    monitors = [o for o in objs if is_operator(o)]
    bad = len(failures)

    def endpoint_port_exists(mon: dict, port: str) -> bool:
        sel = mon["spec"]["selector"]
        if mon["kind"] == "ServiceMonitor":
            matched = [o for o in objs if o["kind"] == "Service" and o["metadata"].get("namespace") == NAMESPACE
                       and selector_matches(sel, o["metadata"].get("labels", {}))]
            if len(matched) != 1:
                fail(f"{label}: {ref(mon)} selects {len(matched)} Services ({[ref(o) for o in matched]}); "
                     f"one, or every target is scraped twice")
            return all(port in {p.get("name") for p in o["spec"]["ports"]} for o in matched) and bool(matched)
        matched = [o for o in objs if pod_spec(o) is not None and o["metadata"].get("namespace") == NAMESPACE
                   and selector_matches(sel, pod_labels(o))]
        if not matched:
            fail(f"{label}: {ref(mon)} selects no pods")
        return bool(matched) and all(port in {p.get("name") for c in pod_spec(o)["containers"]
                                              for p in c.get("ports", [])} for o in matched)

    scraped = set()
    for mon in monitors:
        if mon["kind"] not in ("ServiceMonitor", "PodMonitor"):
            continue
        endpoints = mon["spec"].get("endpoints") or mon["spec"].get("podMetricsEndpoints") or []
        for ep in endpoints:
            job = next((r.get("replacement") for r in ep.get("relabelings", [])
                        if r.get("targetLabel") == "job" and r.get("action", "replace").lower() == "replace"), None)
            base = jobs.get(job)
            if base is None:
                fail(f"{label}: {ref(mon)} sets job {job!r}, not a job of prometheus.yml ({sorted(jobs)})")
                continue
            scraped.add(job)
            interval = base.get("scrape_interval", "15s")
            for what, got, want in (("path", ep.get("path", "/metrics"), base.get("metrics_path", "/metrics")),
                                    ("params", ep.get("params"), base.get("params")),
                                    ("interval", ep.get("interval"), interval)):
                if got != want:
                    fail(f"{label}: {ref(mon)} {what} {got!r}, but prometheus.yml's job {job} has {want!r}")
            if not endpoint_port_exists(mon, ep.get("port")):
                fail(f"{label}: {ref(mon)} port {ep.get('port')!r} is not a named port of what it selects")
    # kube-state-metrics is the chart's own (its job name differs); the rest must be covered.
    missing = set(jobs) - scraped - {"kube-state-metrics"}
    if missing:
        fail(f"{label}: no monitor for prometheus.yml's jobs {sorted(missing)}")

    rules = [o for o in monitors if o["kind"] == "PrometheusRule"]
    if len(rules) != 1 or rules[0]["spec"].get("groups") != rule_groups:
        fail(f"{label}: the PrometheusRule's groups differ from base/prometheus/rules.yml; run "
             f"`.venv/bin/python deploy/tools/check_manifests.py prometheus-rule`")

    releases = {o["metadata"].get("labels", {}).get("release") for o in monitors}
    if len(releases) != 1 or None in releases:
        fail(f"{label}: every monitor and rule needs the same `release` label, found {sorted(map(str, releases))}")

    adapter = next((o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "prometheus-adapter"), None)
    urls = [a.split("=", 1)[1] for a in (pod_spec(adapter)["containers"][0]["args"] if adapter else [])
            if a.startswith("--prometheus-url=")]
    m = re.fullmatch(r"https?://([a-z0-9-]+)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?:(\d+)/?", urls[0] if urls else "")
    if not m:
        fail(f"{label}: the adapter's --prometheus-url {urls} is not a Service in another namespace")
    elif m.group(2) != OPERATOR_NAMESPACE:
        fail(f"{label}: the adapter queries namespace {m.group(2)}, the NetworkPolicies admit {OPERATOR_NAMESPACE}")
    if len(failures) == bad:
        ok(f"{label}: monitors scrape prometheus.yml's jobs {sorted(scraped)} (paths, params, intervals, job "
           f"labels); PrometheusRule = rules.yml; release={releases.pop()}; adapter queries {urls[0]}")


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "APIService", "CustomResourceDefinition",
                  "PriorityClass", "StorageClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}
# The one object outside namespace warren: the adapter reads the API server's
# authentication configuration through this RoleBinding.
ELSEWHERE = {("RoleBinding", "kube-system", "warren-prometheus-adapter-auth-reader")}


def check_namespaces(objs: list[dict], label: str) -> None:
    """Overlays without a namespace transformer must state namespaces themselves;
    an object without one would land in whatever namespace kubectl defaults to."""
    bad = 0
    elsewhere = []
    for o in objs:
        ns = o["metadata"].get("namespace")
        if (o["kind"], ns, o["metadata"]["name"]) in ELSEWHERE:
            elsewhere.append(ref(o))
        if o["kind"] in CLUSTER_SCOPED:
            if ns:
                fail(f"{label}: cluster-scoped {ref(o)} has a namespace")
                bad += 1
        elif ns != NAMESPACE and (o["kind"], ns, o["metadata"]["name"]) not in ELSEWHERE:
            fail(f"{label}: {ref(o)} is not in namespace {NAMESPACE}")
            bad += 1
    if not bad:
        extra = f" (and {', '.join(elsewhere)}, on purpose)" if elsewhere else ""
        ok(f"{label}: every namespaced object is in namespace {NAMESPACE}{extra}")


# Idle workers go first: the worker's pod-deletion-cost RBAC, env and egress ----

COST_ROLE_RULES = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}]


def egress_allowed(policies: list[dict], src_ns: str, src_labels: dict, dest: Source, port: int,
                   protocol: str = "TCP") -> bool:
    """Whether a pod may open `port` to `dest` under the Egress policies that select it."""
    selecting = [
        p for p in policies
        if p["metadata"].get("namespace") == src_ns
        and "Egress" in p["spec"].get("policyTypes", [])
        and (p["spec"].get("podSelector") == {} or selector_matches(p["spec"].get("podSelector"), src_labels))
    ]
    if not selecting:
        return True
    for p in selecting:
        for rule in p["spec"].get("egress", []) or []:
            ports = rule.get("ports")
            if ports and not any(r.get("protocol", "TCP") == protocol and
                                 (r.get("port") is None or r["port"] <= port <= r.get("endPort", r["port"]))
                                 for r in ports):
                continue
            peers = rule.get("to")
            if not peers or any(peer_allows(peer, dest, src_ns) for peer in peers):
                return True
    return False


def check_deletion_cost(objs: list[dict], label: str) -> None:
    """The worker patches its own pod's deletion cost: the Downward API gives it its name and
    namespace, its own ServiceAccount's token is mounted, that account may `patch` pods in the
    namespace and do nothing else, and its egress reaches DNS, the broker and the API server only."""
    deps = {o["metadata"]["name"]: o for o in objs if o.get("kind") == "Deployment"}
    worker = deps.get("warren-worker")
    if not worker:
        return
    spec = pod_spec(worker)
    env = env_map(spec["containers"][0])
    problems = []
    if env.get("POD_DELETION_COST", {}).get("value") != "true":
        problems.append("worker env POD_DELETION_COST is not \"true\"")
    for var, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        got = env.get(var, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if got != field:
            problems.append(f"worker env {var} is not from the Downward API ({field})")
    sa = spec.get("serviceAccountName")
    if not sa or sa == "default":
        problems.append("worker has no ServiceAccount of its own")
    elif not any(o.get("kind") == "ServiceAccount" and o["metadata"]["name"] == sa for o in objs):
        problems.append(f"worker's ServiceAccount {sa} is not rendered")
    if spec.get("automountServiceAccountToken") is not True:
        problems.append("worker does not mount its ServiceAccount token")
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
             for o in objs if o.get("kind") in ("Role", "ClusterRole")}
    bound = []
    for b in (o for o in objs if o.get("kind") in ("RoleBinding", "ClusterRoleBinding")):
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa
                   and s.get("namespace", b["metadata"].get("namespace")) == NAMESPACE
                   for s in b.get("subjects", [])):
            continue
        rr = b["roleRef"]
        key = (rr["kind"], b["metadata"].get("namespace") if rr["kind"] == "Role" else None, rr["name"])
        if b["kind"] != "RoleBinding" or rr["kind"] != "Role" or b["metadata"].get("namespace") != NAMESPACE:
            problems.append(f"{ref(b)} grants the worker more than its namespace")
        elif key not in roles:
            problems.append(f"{ref(b)} refers to {rr['kind']} {rr['name']}, which is not rendered")
        elif roles[key].get("rules") != COST_ROLE_RULES:
            problems.append(f"{ref(roles[key])} bound to the worker allows {roles[key].get('rules')}, "
                            f"not only {COST_ROLE_RULES}")
        else:
            bound.append(ref(roles[key]))
    if not bound:
        problems.append("no Role lets the worker patch pods")
    for p in problems:
        fail(f"{label}: pod-deletion-cost: {p}")

    policies = [o for o in objs if o.get("kind") == "NetworkPolicy"]
    labels = pod_labels(worker)
    ns_labels = {"kubernetes.io/metadata.name": NAMESPACE}
    workload_labels = {o["metadata"]["name"]: pod_labels(o) for o in objs if pod_spec(o) is not None}
    api_server = Source("the API server (outside the pod network)", None, {}, {})
    kube_dns = Source("kube-dns", "kube-system", {"k8s-app": "kube-dns"},
                      {"kubernetes.io/metadata.name": "kube-system"})
    expect = [
        (kube_dns, 53, "UDP", True, "DNS"),
        (kube_dns, 53, "TCP", True, "DNS over TCP"),
        (api_server, 443, "TCP", True, "API server"),
        (api_server, 6443, "TCP", True, "API server"),
        (api_server, 80, "TCP", False, "plain HTTP outside"),
    ]
    if "rabbitmq" in workload_labels:
        rabbit = Source("rabbitmq", NAMESPACE, workload_labels["rabbitmq"], ns_labels)
        expect += [(rabbit, 5672, "TCP", True, "AMQP"), (rabbit, 15672, "TCP", False, "management UI")]
    # Not prometheus-adapter:6443: whether an ipBlock also admits pod addresses is up to the
    # network plugin, and the API server rule is an ipBlock on that port.
    for other, port in (("warren-web", 3000), ("prometheus", 9090)):
        if other in workload_labels:
            expect.append((Source(other, NAMESPACE, workload_labels[other], ns_labels), port, "TCP", False, other))
    bad = 0
    for dest, port, proto, want, what in expect:
        got = egress_allowed(policies, NAMESPACE, labels, dest, port, proto)
        if got != want:
            bad += 1
            fail(f"{label}: worker egress to {dest.name}:{port}/{proto} ({what}) is "
                 f"{'allowed' if got else 'denied'}, must be {'allowed' if want else 'denied'}")
    if not problems and not bad:
        allowed_to = sorted({f"{d.name}:{port}/{proto}" for d, port, proto, want, _ in expect if want})
        ok(f"{label}: pod-deletion-cost on: POD_NAME/POD_NAMESPACE from the Downward API, ServiceAccount {sa} "
           f"may only {', '.join(bound)} (patch pods), worker egress only to {', '.join(allowed_to)}")


def cmd_policy(args) -> None:
    for path in args.rendered:
        label = os.path.basename(path)
        objs = load_docs(path)
        for obj in objs:
            if pod_spec(obj) is not None:
                check_pod_security(obj)
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


RULES_FILE = os.path.join(DEPLOY, "kubernetes", "base", "prometheus", "rules.yml")
PROMETHEUS_RULE = os.path.join(DEPLOY, "kubernetes", "overlays", "kube-prometheus-stack", "prometheusrule.yaml")
PROMETHEUS_RULE_HEADER = """\
# Generated from base/prometheus/rules.yml, the one definition of warren's rules,
# by `.venv/bin/python deploy/tools/check_manifests.py prometheus-rule`: edit
# rules.yml and run that. scripts/check-deploy fails while the groups here differ.
"""


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("schemas", "self-test"):
        s = sub.add_parser(name)
        s.add_argument("--k8s-version", action="append", required=True)
        s.add_argument("--keda-schemas", required=True)
        s.add_argument("rendered", nargs="+")
    s = sub.add_parser("policy")
    s.add_argument("--overlay", required=True)
    s.add_argument("rendered", nargs="+")
    sub.add_parser("prometheus-rule")
    s = sub.add_parser("prometheus-files")
    s.add_argument("rendered")
    s.add_argument("outdir")
    args = p.parse_args()
    {"schemas": cmd_schemas, "self-test": cmd_self_test, "policy": cmd_policy,
     "prometheus-files": cmd_prometheus_files, "prometheus-rule": cmd_prometheus_rule}[args.cmd](args)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
