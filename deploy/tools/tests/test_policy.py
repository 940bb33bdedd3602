"""`check_manifests.py policy` and `pod-security` on a rendered overlay: they pass as rendered,
and each broken copy (a privileged container, a hostPath, a missing NetworkPolicy, a Secret in git, a two-node broker, a worker
Role that reads Secrets, an HPA changed by a transformation) fails with a line naming the fault.
Needs kubectl (to render, as scripts/check-deploy does) and warren (WARREN_BIN, for the adapter's
query)."""

import copy
import os
import subprocess
import sys
import tempfile
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
CLI = os.path.join(os.path.dirname(HERE), "check_manifests.py")
OVERLAY = "prometheus-adapter"


def render(overlay: str = OVERLAY) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", os.path.join(REPO, "deploy", "kubernetes", "overlays", overlay)],
                         check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(objs: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


class PolicyTest(unittest.TestCase):
    overlay = OVERLAY

    @classmethod
    def setUpClass(cls):
        cls.objs = render(cls.overlay)
        cls.dir = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def policy(self, objs: list[dict], command: str = "policy") -> subprocess.CompletedProcess:
        path = os.path.join(self.dir.name, f"{self.overlay}.yaml")
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump_all(objs, f, sort_keys=False)
        args = ["policy", "--overlay", self.overlay] if command == "policy" else [command]
        return subprocess.run([sys.executable, CLI, *args, path], capture_output=True, text=True)

    def assert_fails_with(self, objs: list[dict], words: str | list[str], command: str = "policy") -> None:
        done = self.policy(objs, command)
        fails = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        for w in [words] if isinstance(words, str) else words:
            self.assertTrue(any(w in line for line in fails), f"no FAIL line with {w!r}:\n" + "\n".join(fails))

    def test_the_rendered_overlay_passes(self):
        done = self.policy(self.objs)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertNotIn("FAIL", done.stdout)

    def test_the_rendered_overlay_passes_pod_security(self):
        done = self.policy(self.objs, "pod-security")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("every workload passes checkov's", done.stdout)

    def test_a_privileged_writable_container_fails_checkov(self):
        objs = copy.deepcopy(self.objs)
        c = find(objs, "Deployment", "warren-web")["spec"]["template"]["spec"]["containers"][0]
        c["securityContext"]["privileged"] = True
        c["securityContext"]["readOnlyRootFilesystem"] = False
        del c["resources"]["limits"]["memory"]
        self.assert_fails_with(objs, [f"Deployment.warren.warren-web: {check}"
                                      for check in ("CKV_K8S_16", "CKV_K8S_22", "CKV_K8S_13")], "pod-security")

    def test_a_host_path_and_a_literal_password_fail(self):
        objs = copy.deepcopy(self.objs)
        pod = find(objs, "Deployment", "warren-worker")["spec"]["template"]["spec"]
        pod.setdefault("volumes", []).append({"name": "host", "hostPath": {"path": "/"}})
        pod["containers"][0]["env"].append({"name": "RABBIT_PASSWORD2", "value": "hunter2"})
        self.assert_fails_with(objs, ["volume host is a hostPath", "env RABBIT_PASSWORD2 has a literal value"],
                               "pod-security")

    def test_a_missing_network_policy_opens_the_broker(self):
        objs = [o for o in copy.deepcopy(self.objs)
                if not (o["kind"] == "NetworkPolicy" and "rabbitmq" in yaml.safe_dump(o["spec"].get("podSelector")))]
        self.assertLess(len(objs), len(self.objs))
        self.assert_fails_with(objs, "rabbitmq")

    def test_a_secret_in_git_fails(self):
        objs = copy.deepcopy(self.objs)
        objs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "warren-rabbitmq", "namespace": "warren"},
                     "stringData": {"password": "x"}})
        self.assert_fails_with(objs, "is rendered from git")

    def test_a_two_node_broker_fails(self):
        objs = copy.deepcopy(self.objs)
        find(objs, "StatefulSet", "rabbitmq")["spec"]["replicas"] = 2
        self.assert_fails_with(objs, "replicas is 2")

    def test_a_worker_role_that_reads_secrets_fails(self):
        objs = copy.deepcopy(self.objs)
        roles = [o for o in objs if o["kind"] == "Role" and o.get("rules") ==
                 [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}]]
        self.assertEqual(len(roles), 1)
        roles[0]["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
        self.assert_fails_with(objs, "pod-deletion-cost")

    def test_an_hpa_changed_by_a_transformation_fails(self):
        objs = copy.deepcopy(self.objs)
        find(objs, "HorizontalPodAutoscaler", "warren-worker")["spec"]["maxReplicas"] = 20
        self.assert_fails_with(objs, "the rendered HPA differs")


class KedaTest(PolicyTest):
    """The keda overlay: its ScaledObject must scale as the HPA file does."""
    overlay = "keda"

    # The prometheus-adapter overlay's cases, run once there.
    test_the_rendered_overlay_passes_pod_security = None
    test_a_privileged_writable_container_fails_checkov = None
    test_a_host_path_and_a_literal_password_fail = None
    test_an_hpa_changed_by_a_transformation_fails = None

    def test_a_scaled_object_that_scales_further_than_the_hpa_fails(self):
        objs = copy.deepcopy(self.objs)
        find(objs, "ScaledObject", "warren-worker")["spec"]["maxReplicaCount"] = 20
        self.assert_fails_with(objs, "ScaledObject: maxReplicaCount equals maxReplicas")

    def test_a_trigger_on_another_queue_fails(self):
        objs = copy.deepcopy(self.objs)
        find(objs, "ScaledObject", "warren-worker")["spec"]["triggers"][0]["metadata"]["queueName"] = "Other"
        self.assert_fails_with(objs, "queueName is the HPA's queue")


if __name__ == "__main__":
    unittest.main()
