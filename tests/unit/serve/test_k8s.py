"""``gflv2-deploy triton --k8s``: the manifests validate offline against the Kubernetes schemas (kubernetes-validate,
strict: unknown fields too) and carry the deployment's rules: restricted APIs with a key from a Secret, a non-root
user, a read-only model volume, a NetworkPolicy admitting only the inference ports from the namespaces named, a
/dev/shm sized from the contract, probes, a drain before stopping. No cluster runs here: nothing is applied."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gflv2_deploy.errors import UserError
from gflv2_deploy.serve.drain import KEY_ENV, KEY_HEADER
from gflv2_deploy.serve.k8s import K8sOptions, to_yaml, validate_manifests, write_manifests
from gflv2_deploy.serve.shm import shm_budget
from gflv2_deploy.serve.triton_options import RepositoryOptions
from gflv2_deploy.serve.triton_repo import plan_repository


@pytest.fixture(scope="module")
def ensemble_plan(serve_onnx):
    return plan_repository(serve_onnx["u8"], RepositoryOptions(ensemble=True, instances={"preprocess": 2}))


def _load(folder: Path) -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in folder.glob("*.yaml")}


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
def test_manifests_validate_and_carry_the_restrictions(ensemble_plan, tmp_path, version) -> None:
    budget = shm_budget(ensemble_plan.contract, max_batch=8, instances={"preprocess": 2}, python_network=False,
                        ensemble=True)
    options = K8sOptions(namespace="vision", allow_namespaces=("web", "batch"), drain_timeout_s=45)
    written = write_manifests(ensemble_plan, budget, tmp_path, options)
    assert sorted(p.name for p in written) == ["Dockerfile", "deployment.yaml", "hpa.yaml", "kustomization.yaml",
                                               "networkpolicy.yaml", "service.yaml"]
    assert validate_manifests(written, version) == []
    docs = _load(tmp_path)
    pod = docs["deployment.yaml"]["spec"]["template"]
    container = pod["spec"]["containers"][0]
    args = container["args"]
    rule = f"model-repository,model-config,shared-memory:{KEY_HEADER}=$({KEY_ENV})"
    assert f"--http-restricted-api={rule}" in args and f"--grpc-restricted-protocol={rule}" in args
    assert "--model-control-mode=explicit" in args and "--strict-readiness=true" in args
    key = next(e for e in container["env"] if e["name"] == KEY_ENV)
    assert key["valueFrom"]["secretKeyRef"] == {"name": "gflv2-triton-admin-key", "key": "key"}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] and pod["spec"]["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"]["readOnlyRootFilesystem"] and not container["securityContext"]["allowPrivilegeEscalation"]
    models = next(m for m in container["volumeMounts"] if m["name"] == "models")
    assert models["readOnly"] and models["mountPath"] == "/models"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "gflv2-triton-models", "readOnly": True}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": budget.kubernetes_quantity}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    drain = container["lifecycle"]["preStop"]["exec"]["command"]
    assert drain[:3] == ["python3", "-m", "gflv2_deploy.serve.drain"] and drain[drain.index("--models") + 1] == "gflv2"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 45 + options.exit_timeout_s + 10
    assert pod["metadata"]["annotations"] == {"prometheus.io/scrape": "true", "prometheus.io/port": "8002",
                                              "prometheus.io/path": "/metrics"}
    inference, metrics = docs["networkpolicy.yaml"]["spec"]["ingress"]
    assert [p["port"] for p in inference["ports"]] == [8000, 8001]
    assert inference["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["web", "batch"]
    assert [p["port"] for p in metrics["ports"]] == [8002]
    assert docs["hpa.yaml"]["spec"]["scaleTargetRef"]["name"] == "gflv2-triton"
    assert {p["port"] for p in docs["service.yaml"]["spec"]["ports"]} == {8000, 8001, 8002}
    assert all(d["metadata"]["namespace"] == "vision" for n, d in docs.items() if n != "kustomization.yaml")
    assert "FROM nvcr.io/nvidia/tritonserver:24.10-py3" in (tmp_path / "Dockerfile").read_text()


def test_object_store_repository_has_no_volume(ensemble_plan, tmp_path) -> None:
    budget = shm_budget(ensemble_plan.contract, max_batch=8, instances={}, python_network=False, ensemble=True)
    written = write_manifests(ensemble_plan, budget, tmp_path, K8sOptions(model_store="s3://bucket/models"))
    assert validate_manifests(written) == []
    container = _load(tmp_path)["deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]
    assert "--model-repository=s3://bucket/models" in container["args"]
    assert all(m["name"] != "models" for m in container["volumeMounts"])
    assert container["envFrom"] == [{"secretRef": {"name": "gflv2-triton-model-store", "optional": True}}]


def test_the_validator_catches_a_broken_manifest(tmp_path) -> None:
    """The check can fail: a misspelt field and a wrong type are reported."""
    bad = tmp_path / "deployment.yaml"
    bad.write_text(to_yaml({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                            "spec": {"ports": [{"port": "eighty"}], "selectr": {}}}))
    problems = validate_manifests([bad])
    assert problems and all(p.startswith("deployment.yaml") for p in problems)


@pytest.mark.parametrize("options, message", [
    (K8sOptions(namespace="Bad_Name"), "not a valid Kubernetes name"),
    (K8sOptions(replicas=5, max_replicas=4), "replicas"),
    (K8sOptions(model_store="ftp://x"), "--model-store"),
])
def test_bad_k8s_options(ensemble_plan, tmp_path, options, message) -> None:
    budget = shm_budget(ensemble_plan.contract, max_batch=8, instances={}, python_network=False, ensemble=True)
    with pytest.raises(UserError, match=message):
        write_manifests(ensemble_plan, budget, tmp_path / "k8s", options)
    assert not (tmp_path / "k8s").exists()


def test_yaml_round_trip() -> None:
    data = {"a": [1, {"b": "x: y", "c": [], "d": {}}, [True, None]], "e": "0123", "f": 1.5, "g": "no", "h": "on",
            "i": "app.kubernetes.io/name", "j": "1e3", "k": "-x", "l": "$(KEY)"}
    assert yaml.safe_load(to_yaml(data)) == data
