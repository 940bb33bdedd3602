"""The one HPA file per family, the adapter rules held to `warren autoscale --print-queries`,
and the KEDA ScaledObjects equivalent to the HPAs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import yaml

from .common import ADAPTER_CONFIG, CAPACITY_ADAPTER_CONFIG, CAPACITY_HPA_FILE, CAPACITY_KEDA_QUERY, CAPACITY_OVERLAYS, DEPLOY, HPA_FILE, OPERATOR_OVERLAY, QUERIES_MD, REPO, RULES_FILE, fail, ok


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


def warren_query(hpa_path: str) -> str | None:
    """The query `warren autoscale --print-queries --hpa FILE` prints for the HPA's one metric:
    what warren runs against Prometheus, which the adapter's rule must render to."""
    warren = os.environ.get("WARREN_BIN") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target"), "debug", "warren")
    try:
        done = subprocess.run([warren, "autoscale", "--print-queries", "--hpa", hpa_path],
                              capture_output=True, text=True, timeout=60)
    except OSError as e:
        fail(f"cannot run {warren} for the adapter's query (cargo build -p warren, or set WARREN_BIN): {e}")
        return None
    if done.returncode != 0:
        fail(f"warren autoscale --print-queries --hpa {os.path.relpath(hpa_path, REPO)}: {done.stderr.strip()}")
        return None
    queries = json.loads(done.stdout)
    if len(queries) != 1:
        fail(f"{os.path.relpath(hpa_path, REPO)}: expected one metric, warren prints {len(queries)}")
        return None
    return queries[0]["query"]


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
    expected = warren_query(CAPACITY_HPA_FILE)
    if rendered is None or expected is None:
        return
    if rendered != expected:
        fail(f"prometheus-adapter-capacity/adapter-config.yaml: renders {rendered!r}, "
             f"`warren autoscale --print-queries` runs {expected!r}")
        return
    configs = [o for o in objs if o.get("kind") == "ConfigMap" and o["metadata"]["name"].startswith("prometheus-adapter-config")]
    if len(configs) != 1 or yaml.safe_load(configs[0]["data"]["config.yaml"]) != yaml.safe_load(open(CAPACITY_ADAPTER_CONFIG, encoding="utf-8")):
        fail(f"{label}: the adapter's ConfigMap is not prometheus-adapter-capacity/adapter-config.yaml")
        return
    for path in (CAPACITY_ADAPTER_CONFIG, QUERIES_MD, CAPACITY_HPA_FILE):
        with open(path, encoding="utf-8") as f:
            if expected not in f.read():
                fail(f"{os.path.relpath(path, REPO)} does not state the rendered query {expected}")
                return
    if check_capacity_rule():
        ok(f"{label}: adapter serves the recording rule as {expected}, as warren runs it (same in queries.md, comments)")


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
    rendered = render_adapter_rule(ADAPTER_CONFIG, hpa)
    expected = warren_query(HPA_FILE)
    if rendered is None or expected is None:
        return
    if rendered != expected:
        fail(f"adapter-config.yaml: renders {rendered!r}, `warren autoscale --print-queries` runs {expected!r}")
        return
    for path, what in ((ADAPTER_CONFIG, "adapter-config.yaml comments"), (QUERIES_MD, "deploy/queries.md"),
                       (HPA_FILE, "hpa.yaml comments")):
        with open(path, encoding="utf-8") as f:
            if expected not in f.read():
                fail(f"{what} do not state the rendered query {expected}")
    ok(f"adapter rule renders {expected}, as warren runs it (same in queries.md, comments)")


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
