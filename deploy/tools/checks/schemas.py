"""Schema checks: Kubernetes objects through kubernetes-validate --strict, KEDA objects against
KEDA's vendored CRDs (unknown fields rejected, as strict field validation does), Prometheus
Operator objects against PyPI's generated models; the self-test shows each rejects a typo."""

from __future__ import annotations

import copy
import difflib
import glob
import json
import os
import subprocess
import sys
import tempfile
import jsonschema
import yaml

from .common import fail, failures, is_keda, is_operator, load_docs, ok, ref


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
            mark = len(failures)
            with open(os.devnull, "w") as devnull:
                old = sys.stdout
                sys.stdout = devnull
                try:
                    k8s_validate([obj], args.k8s_version, "self-test")
                finally:
                    sys.stdout = old
            errors = [f.split(": ", 1)[-1] for f in failures[mark:]]
            del failures[mark:]
        elif kind == "operator":
            errors = OperatorModels().validate(obj)
        else:
            errors = crds.validate(obj)
        if errors:
            ok(f"self-test: rejected {title}: {errors[0]}")
        else:
            fail(f"self-test: {title} was accepted")
