"""warren's own deployment rules: credentials, its apps' commands and probes, who reaches whom
(netpol), the broker cluster, namespaces, the kube-prometheus-stack overlay's monitors, and the
worker's pod-deletion-cost RBAC and egress."""

from __future__ import annotations

import re
import yaml

from .common import CREATE_SECRET, NAMESPACE, OPERATOR_NAMESPACE, OPERATOR_OVERLAY, OPERATOR_PROMETHEUS, PROMETHEUS_YML, RULES_FILE, SECRET_KEYS, SECRET_NAME, env_map, fail, failures, is_operator, ok, pod_labels, pod_spec, ref
from .netpol import Source, allowed, egress_allowed, selector_matches


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


COST_ROLE_RULES = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}]


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
