"""Plain Kubernetes manifests for a repository written by ``gflv2-deploy triton``: ``--k8s K8S_DIR``.

Written (YAML, one object per file, plus a ``kustomization.yaml`` that lists them and a ``Dockerfile`` for
the image the python models need)::

    deployment.yaml     Triton with GPU resources, /dev/shm as a memory emptyDir sized from the contract
                        (serve/shm.py), probes on /v2/health/*, a preStop drain (serve/drain.py) with a
                        matching terminationGracePeriodSeconds, Prometheus annotations for port 8002, the
                        model repository from a read-only volume or an object-store path, a non-root user,
                        a read-only root filesystem, and the model-repository, model-config and
                        shared-memory APIs restricted to a key read from a Secret
    service.yaml        ClusterIP: http 8000, grpc 8001, metrics 8002
    hpa.yaml            autoscaling/v2 on CPU utilisation (the python pre/post models are the CPU load)
    networkpolicy.yaml  ingress to 8000/8001 only from the namespaces named, 8002 only from the metrics one

Nothing here talks to a cluster: ``validate_manifests`` checks the files offline against the Kubernetes
schemas bundled with ``kubernetes-validate`` (the dev extra). The Secret itself is not written (no key
should sit in a file): the Deployment names it and docs/triton.md shows the ``kubectl create secret`` line.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gflv2_deploy import __version__
from gflv2_deploy.errors import MissingDependencyError, UserError
from gflv2_deploy.serve.drain import KEY_ENV, KEY_HEADER
from gflv2_deploy.serve.shm import MIB, ShmBudget
from gflv2_deploy.serve.triton_repo import RepositoryPlan
from gflv2_deploy.serve.triton_server import RESTRICTED_APIS

# The NGC container of the Triton release the local server is (2.51.0 = 24.10); a TensorRT plan must be built
# with the TensorRT of the container that serves it (docs/triton.md).
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
USER_ID = 1000  # the NGC image's triton-server user
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
OBJECT_STORES = ("s3://", "gs://", "as://")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
KUBERNETES_VERSION = "1.30.0"  # the API the manifests are checked against (older clusters: same fields)


@dataclass(frozen=True)
class K8sOptions:
    """Deployment settings. model_store: ``pvc:NAME`` (default ``pvc:<app>-models``) or an s3://, gs://, as:// path."""

    image: str = f"gflv2-triton:{__version__}"
    namespace: str = "default"
    allow_namespaces: tuple[str, ...] = ()  # default: the deployment's own namespace
    metrics_namespace: str = "monitoring"
    model_store: str | None = None
    replicas: int = 1
    max_replicas: int = 4
    drain_timeout_s: int = 60
    exit_timeout_s: int = 30
    gpus: int | None = None  # None: 1 when the network runs on a GPU
    extra_args: tuple[str, ...] = field(default_factory=tuple)  # e.g. the plugin --backend-config


def app_name(model_name: str) -> str:
    """The Kubernetes name of the deployment of repository model ``model_name`` (``--name``)."""
    return f"{model_name}-triton".lower().replace("_", "-")


def check_k8s_options(options: K8sOptions, name: str) -> None:
    """UserError for a name Kubernetes refuses or a number out of bounds."""
    for label, value in (("--namespace", options.namespace), ("Kubernetes name", name),
                         *(("--allow-namespace", n) for n in options.allow_namespaces),
                         ("--metrics-namespace", options.metrics_namespace)):
        if not _DNS_LABEL.match(value):
            raise UserError(f"{label} '{value}' is not a valid Kubernetes name (lowercase letters, digits, '-', at most 63)")
    if not 1 <= options.replicas <= options.max_replicas <= 100:
        raise UserError(f"replicas must satisfy 1 <= replicas ({options.replicas}) <= max replicas "
                        f"({options.max_replicas}) <= 100")
    if not 1 <= options.drain_timeout_s <= 3600:
        raise UserError(f"the drain timeout must be 1..3600 s, got {options.drain_timeout_s}")
    store = options.model_store
    if store is not None and not (store.startswith(OBJECT_STORES) or
                                  (store.startswith("pvc:") and _DNS_LABEL.match(store[4:]))):
        raise UserError(f"--model-store must be pvc:CLAIM or an object-store path ({', '.join(OBJECT_STORES)}), got '{store}'")


def manifests(plan: RepositoryPlan, budget: ShmBudget, options: K8sOptions) -> dict[str, dict[str, Any]]:
    """{file name: Kubernetes object} for ``plan`` served with the /dev/shm ``budget``."""
    name = app_name(plan.options.name if plan.options else "gflv2")
    check_k8s_options(options, name)
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "inference",
              "app.kubernetes.io/part-of": "gflv2-deploy"}
    meta = {"name": name, "namespace": options.namespace, "labels": labels}
    secret = f"{name}-admin-key"
    store = options.model_store or f"pvc:{name}-models"
    repository = store if store.startswith(OBJECT_STORES) else "/models"
    entry = plan.options.name if plan.options and plan.options.ensemble else plan.network
    gpus = options.gpus if options.gpus is not None else (1 if plan.device == "gpu" else 0)
    rule = f"{','.join(RESTRICTED_APIS)}:{KEY_HEADER}=$({KEY_ENV})"
    args = ["tritonserver", f"--model-repository={repository}", "--model-control-mode=explicit", "--load-model=*",
            "--strict-readiness=true", f"--exit-timeout-secs={options.exit_timeout_s}",
            f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}", *options.extra_args]
    env = [{"name": KEY_ENV, "valueFrom": {"secretKeyRef": {"name": secret, "key": "key"}}},
           {"name": "HOME", "value": "/tmp"}]
    env_from = []
    if store.startswith(OBJECT_STORES):  # credentials of the store, e.g. AWS_ACCESS_KEY_ID, from a Secret
        env_from.append({"secretRef": {"name": f"{name}-model-store", "optional": True}})
    probe = lambda path, period, failures: {  # noqa: E731
        "httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "failureThreshold": failures,
        "timeoutSeconds": 2}
    resources: dict[str, Any] = {"requests": {"cpu": "2", "memory": f"{budget.total_bytes // MIB + 4096}Mi"},
                                 "limits": {"memory": f"{budget.total_bytes // MIB + 4096}Mi"}}
    if gpus:
        resources["limits"]["nvidia.com/gpu"] = gpus
    drain = ["python3", "-m", "gflv2_deploy.serve.drain", "--url", f"127.0.0.1:{PORTS['http']}", "--models", entry,
             "--timeout", str(options.drain_timeout_s), "--key-env", KEY_ENV]
    container = {
        "name": "triton", "image": options.image, "imagePullPolicy": "IfNotPresent", "args": args, "env": env,
        "ports": [{"name": port, "containerPort": number} for port, number in PORTS.items()],
        "resources": resources,
        "startupProbe": probe("/v2/health/ready", 5, 120),  # model loading and warm-up: up to 10 minutes
        "readinessProbe": probe("/v2/health/ready", 5, 1),  # not ready as soon as a drain unloads a model
        "livenessProbe": probe("/v2/health/live", 10, 3),
        "lifecycle": {"preStop": {"exec": {"command": drain}}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    if env_from:
        container["envFrom"] = env_from
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": budget.kubernetes_quantity}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if not store.startswith(OBJECT_STORES):
        container["volumeMounts"].insert(0, {"name": "models", "mountPath": "/models", "readOnly": True})
        volumes.insert(0, {"name": "models", "persistentVolumeClaim": {"claimName": store[4:], "readOnly": True}})
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {
            "replicas": options.replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels, "annotations": {
                    "prometheus.io/scrape": "true", "prometheus.io/port": str(PORTS["metrics"]),
                    "prometheus.io/path": "/metrics"}},
                "spec": {
                    # preStop drain, then Triton's own exit timeout, then a margin before SIGKILL
                    "terminationGracePeriodSeconds": options.drain_timeout_s + options.exit_timeout_s + 10,
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": USER_ID, "runAsGroup": USER_ID,
                                        "fsGroup": USER_ID, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": meta,
               "spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": name},
                        "ports": [{"name": port, "port": number, "targetPort": port} for port, number in PORTS.items()]}}
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta,
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": options.replicas, "maxReplicas": options.max_replicas,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                        "type": "Utilization", "averageUtilization": 70}}}],
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}}}
    allowed = options.allow_namespaces or (options.namespace,)
    namespaces = lambda names: {"namespaceSelector": {"matchExpressions": [  # noqa: E731
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": list(names)}]}}
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta,
              "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}, "policyTypes": ["Ingress"],
                       "ingress": [
                           {"from": [namespaces(allowed)],
                            "ports": [{"protocol": "TCP", "port": PORTS["http"]}, {"protocol": "TCP", "port": PORTS["grpc"]}]},
                           {"from": [namespaces([options.metrics_namespace])],
                            "ports": [{"protocol": "TCP", "port": PORTS["metrics"]}]}]}}
    return {"deployment.yaml": deployment, "service.yaml": service, "hpa.yaml": hpa, "networkpolicy.yaml": policy}


def dockerfile(options: K8sOptions) -> str:
    """The image the Deployment runs: the NGC Triton container with gflv2-deploy from its wheel, as a non-root user."""
    return (f"# The Triton image of the generated Deployment. Build it with the folder holding the gflv2-deploy wheel\n"
            f"# (python -m build writes it to dist/) as the context: docker build -t {options.image} -f Dockerfile dist/\n"
            f"FROM {TRITON_IMAGE}\n"
            "COPY gflv2_deploy-*.whl /tmp/wheels/\n"
            "# numpy<2 and OpenCV for the python models; torch stays out (the package's core needs neither)\n"
            "RUN pip install --no-cache-dir 'numpy<2' 'opencv-python-headless<5' /tmp/wheels/gflv2_deploy-*.whl \\\n"
            "    && rm -rf /tmp/wheels\n"
            f"USER {USER_ID}\n")


def to_yaml(value: Any, indent: int = 0) -> str:
    """YAML block text of plain data (dicts, lists, str, int, float, bool, None); strings plain when YAML reads them
    back unchanged (names, paths), else double-quoted (JSON rules)."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{_scalar(key)}:\n{to_yaml(item, indent + 2)}")
            else:
                lines.append(f"{pad}{_scalar(key)}: {to_yaml(item) if isinstance(item, (dict, list)) else _scalar(item)}")
        return "\n".join(lines)
    if isinstance(value, list):
        if not value:
            return "[]"
        lines = []
        for item in value:
            if isinstance(item, (dict, list)) and item:
                text = to_yaml(item, indent + 2)
                lines.append(f"{pad}- {text[indent + 2:]}")
            else:
                lines.append(f"{pad}- {to_yaml(item) if isinstance(item, (dict, list)) else _scalar(item)}")
        return "\n".join(lines)
    return _scalar(value)


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text  # a plain scalar YAML reads back as this very string
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def write_manifests(plan: RepositoryPlan, budget: ShmBudget, k8s_dir: str | os.PathLike[str],
                    options: K8sOptions) -> list[Path]:
    """Write the manifests, kustomization.yaml and Dockerfile into ``k8s_dir`` (created; files replaced one by one
    through temporary names). Returns the paths written."""
    from gflv2_deploy.atomic import atomic_path

    objects = manifests(plan, budget, options)
    texts = {name: f"# generated by gflv2-deploy {__version__} (gflv2-deploy triton --k8s)\n{to_yaml(obj)}\n"
             for name, obj in objects.items()}
    texts["kustomization.yaml"] = to_yaml({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                                           "namespace": options.namespace, "resources": list(objects)}) + "\n"
    texts["Dockerfile"] = dockerfile(options)
    folder = Path(k8s_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in texts.items():
        with atomic_path(folder / name) as tmp:
            tmp.write_text(text)
        written.append(folder / name)
    return written


def validate_manifests(paths: list[Path], kubernetes_version: str = KUBERNETES_VERSION) -> list[str]:
    """Problems of the manifest files against the Kubernetes schemas (empty when valid), strict: unknown fields too.

    Offline: kubernetes-validate bundles the schemas. The kustomization and Dockerfile are not Kubernetes objects.
    """
    try:
        import kubernetes_validate
        import yaml
    except ImportError:
        raise MissingDependencyError("kubernetes-validate", "dev", "validating Kubernetes manifests") from None
    problems = []
    for path in paths:
        if path.suffix != ".yaml" or path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            try:
                kubernetes_validate.validate(document, kubernetes_version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"{path.name}: {'.'.join(map(str, exc.path))}: {exc.message}")
    return problems
