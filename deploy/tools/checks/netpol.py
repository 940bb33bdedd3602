"""A NetworkPolicy evaluator: whether a source pod (or a peer outside the pod network) may
reach a pod on a port under the Ingress policies, and a pod reach a destination under the
Egress policies; TCP and UDP, named ports, port ranges, pod and namespace selectors. Its own
tests: deploy/tools/tests/test_netpol.py."""

from __future__ import annotations


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


def port_matches(rule_ports, port: int, named: dict, protocol: str = "TCP") -> bool:
    """Whether a rule's `ports` admit `port`/`protocol`; `named` maps the target pod's port
    names to numbers (a name it lacks matches nothing)."""
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != protocol:
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


def policy_types(policy: dict) -> list[str]:
    """The policy's types; left out, Ingress always, and Egress when it has egress rules."""
    spec = policy["spec"]
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))


def selects(policy: dict, namespace: str, labels: dict, direction: str) -> bool:
    return (policy["metadata"].get("namespace") == namespace
            and direction in policy_types(policy)
            and (policy["spec"].get("podSelector") == {}
                 or selector_matches(policy["spec"].get("podSelector"), labels)))


def allowed(policies: list[dict], target_ns: str, target_labels: dict, port: int, named: dict, src: Source) -> bool:
    """Whether `src` may open `port` (TCP) to a pod with `target_labels` under the Ingress policies."""
    selecting = [p for p in policies if selects(p, target_ns, target_labels, "Ingress")]
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


def egress_allowed(policies: list[dict], src_ns: str, src_labels: dict, dest: Source, port: int,
                   protocol: str = "TCP") -> bool:
    """Whether a pod may open `port` to `dest` under the Egress policies that select it. A rule's
    named port is the destination's, which is not known here: it admits nothing."""
    selecting = [p for p in policies if selects(p, src_ns, src_labels, "Egress")]
    if not selecting:
        return True
    for p in selecting:
        for rule in p["spec"].get("egress", []) or []:
            if not port_matches(rule.get("ports"), port, {}, protocol):
                continue
            peers = rule.get("to")
            if not peers or any(peer_allows(peer, dest, src_ns) for peer in peers):
                return True
    return False
