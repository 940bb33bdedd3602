"""The NetworkPolicy evaluator of checks/netpol.py on small policies whose answer Kubernetes'
NetworkPolicy semantics fix."""

import unittest

from checks.netpol import Source, allowed, egress_allowed, peer_allows, port_matches, selector_matches

NS = "shop"
NS_LABELS = {"kubernetes.io/metadata.name": NS}


def policy(spec: dict, namespace: str = NS) -> dict:
    return {"kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": namespace}, "spec": spec}


def pod(name: str, labels: dict, namespace: str = NS) -> Source:
    return Source(name, namespace, labels, {"kubernetes.io/metadata.name": namespace})


OUTSIDE = Source("outside", None, {}, {})
WEB = pod("web", {"app": "web"})
DB = {"app": "db"}


class SelectorTest(unittest.TestCase):
    def test_match_labels_need_every_label(self):
        self.assertTrue(selector_matches({"matchLabels": {"app": "db"}}, {"app": "db", "tier": "x"}))
        self.assertFalse(selector_matches({"matchLabels": {"app": "db", "tier": "y"}}, {"app": "db"}))

    def test_the_empty_selector_matches_everything_and_none_nothing(self):
        self.assertTrue(selector_matches({}, {"app": "db"}))
        self.assertFalse(selector_matches(None, {"app": "db"}))

    def test_match_expressions(self):
        labels = {"app": "db"}
        cases = [
            ({"key": "app", "operator": "In", "values": ["db", "cache"]}, True),
            ({"key": "app", "operator": "In", "values": ["web"]}, False),
            ({"key": "app", "operator": "NotIn", "values": ["web"]}, True),
            ({"key": "tier", "operator": "NotIn", "values": ["web"]}, True),  # absent label: not in
            ({"key": "app", "operator": "Exists"}, True),
            ({"key": "tier", "operator": "Exists"}, False),
            ({"key": "tier", "operator": "DoesNotExist"}, True),
            ({"key": "app", "operator": "DoesNotExist"}, False),
        ]
        for expr, want in cases:
            with self.subTest(expr=expr):
                self.assertEqual(selector_matches({"matchExpressions": [expr]}, labels), want)


class PortTest(unittest.TestCase):
    def test_no_ports_means_every_port(self):
        self.assertTrue(port_matches(None, 5672, {}))
        self.assertTrue(port_matches([], 5672, {}))

    def test_number_range_and_named_port(self):
        self.assertTrue(port_matches([{"port": 5672}], 5672, {}))
        self.assertFalse(port_matches([{"port": 5672}], 15672, {}))
        self.assertTrue(port_matches([{"port": 4000, "endPort": 5000}], 4369, {}))
        self.assertFalse(port_matches([{"port": 4000, "endPort": 4368}], 4369, {}))
        self.assertTrue(port_matches([{"port": "amqp"}], 5672, {"amqp": 5672}))
        self.assertFalse(port_matches([{"port": "amqp"}], 5672, {}))

    def test_a_udp_rule_does_not_open_the_tcp_port(self):
        self.assertFalse(port_matches([{"port": 53, "protocol": "UDP"}], 53, {}))
        self.assertTrue(port_matches([{"port": 53, "protocol": "UDP"}], 53, {}, "UDP"))


class PeerTest(unittest.TestCase):
    def test_a_pod_selector_alone_means_the_policys_namespace(self):
        peer = {"podSelector": {"matchLabels": {"app": "web"}}}
        self.assertTrue(peer_allows(peer, WEB, NS))
        self.assertFalse(peer_allows(peer, pod("web elsewhere", {"app": "web"}, "other"), NS))

    def test_namespace_and_pod_selector_in_one_peer_both_must_match(self):
        peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}},
                "podSelector": {"matchLabels": {"app": "keda-operator"}}}
        self.assertTrue(peer_allows(peer, pod("keda", {"app": "keda-operator"}, "keda"), NS))
        self.assertFalse(peer_allows(peer, pod("other", {"app": "x"}, "keda"), NS))
        self.assertFalse(peer_allows(peer, pod("keda-like", {"app": "keda-operator"}, NS), NS))

    def test_an_ip_block_admits_outside_the_pod_network_only(self):
        peer = {"ipBlock": {"cidr": "0.0.0.0/0"}}
        self.assertTrue(peer_allows(peer, OUTSIDE, NS))
        self.assertFalse(peer_allows(peer, WEB, NS))


class IngressTest(unittest.TestCase):
    def test_a_pod_no_policy_selects_is_open(self):
        other = policy({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": []})
        self.assertTrue(allowed([other], NS, DB, 5432, {}, OUTSIDE))

    def test_a_selected_pod_with_no_rules_is_closed(self):
        deny = policy({"podSelector": {}, "policyTypes": ["Ingress"]})
        self.assertFalse(allowed([deny], NS, DB, 5432, {}, WEB))

    def test_rules_add_up_across_policies(self):
        deny = policy({"podSelector": {}, "policyTypes": ["Ingress"]})
        web_to_db = policy({"podSelector": {"matchLabels": DB},
                            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                                         "ports": [{"port": 5432}]}]})
        self.assertTrue(allowed([deny, web_to_db], NS, DB, 5432, {}, WEB))
        self.assertFalse(allowed([deny, web_to_db], NS, DB, 9187, {}, WEB))
        self.assertFalse(allowed([deny, web_to_db], NS, DB, 5432, {}, pod("job", {"app": "job"})))

    def test_a_rule_without_from_admits_every_source(self):
        open_port = policy({"podSelector": {}, "ingress": [{"ports": [{"port": 3000}]}]})
        self.assertTrue(allowed([open_port], NS, {"app": "web"}, 3000, {}, OUTSIDE))
        self.assertFalse(allowed([open_port], NS, {"app": "web"}, 3001, {}, OUTSIDE))

    def test_an_egress_only_policy_leaves_ingress_open(self):
        egress = policy({"podSelector": {}, "policyTypes": ["Egress"], "egress": []})
        self.assertTrue(allowed([egress], NS, DB, 5432, {}, WEB))

    def test_policies_of_another_namespace_do_not_apply(self):
        deny = policy({"podSelector": {}, "policyTypes": ["Ingress"]}, namespace="other")
        self.assertTrue(allowed([deny], NS, DB, 5432, {}, WEB))


class EgressTest(unittest.TestCase):
    DNS = Source("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, {"kubernetes.io/metadata.name": "kube-system"})

    def test_dns_over_udp_and_tcp_but_nothing_else(self):
        only_dns = policy({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
            "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]})
        self.assertTrue(egress_allowed([only_dns], NS, DB, self.DNS, 53, "UDP"))
        self.assertTrue(egress_allowed([only_dns], NS, DB, self.DNS, 53, "TCP"))
        self.assertFalse(egress_allowed([only_dns], NS, DB, self.DNS, 80, "TCP"))
        self.assertFalse(egress_allowed([only_dns], NS, DB, WEB, 53, "UDP"))

    def test_egress_rules_without_policy_types_still_restrict(self):
        # policyTypes left out: Kubernetes counts Egress in when the policy has egress rules.
        implicit = policy({"podSelector": {}, "egress": [{"ports": [{"port": 443}]}]})
        self.assertTrue(egress_allowed([implicit], NS, DB, OUTSIDE, 443))
        self.assertFalse(egress_allowed([implicit], NS, DB, OUTSIDE, 80))

    def test_a_named_destination_port_is_not_taken_for_a_number(self):
        named = policy({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "amqp"}]}]})
        self.assertFalse(egress_allowed([named], NS, DB, WEB, 5672))

    def test_an_ingress_only_policy_leaves_egress_open(self):
        ingress = policy({"podSelector": {}, "policyTypes": ["Ingress"]})
        self.assertTrue(egress_allowed([ingress], NS, DB, OUTSIDE, 80))


if __name__ == "__main__":
    unittest.main()
