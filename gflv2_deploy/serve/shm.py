"""How much ``/dev/shm`` a repository's python-backend models need: one number for ``docker --shm-size`` and for the
Kubernetes ``emptyDir`` (``medium: Memory``) that replaces it.

Triton's python backend gives every model instance (one stub process each) a shared-memory region, created at
``shm-default-byte-size`` (1 MiB) and grown in ``shm-growth-byte-size`` steps (1 MiB); every input and output
tensor of an execution lives there while the stub works on it. An execution holds at most ``max_batch``
requests, so an instance peaks at about ``max_batch`` x (its inputs + outputs per picture). The budget is

    sum over python model instances of (1 MiB + max_batch x tensor bytes per picture), x 2 (margin: region
    growth in steps, requests queued in the ensemble while others run), + 64 MiB for everything else
    (Docker's own default), rounded up to a MiB.

Tensor bytes per picture come from the serving contract: the network input (N x 3 x H x W float32, or
N x H x W x 3 uint8 for a ``--input uint8`` graph: a quarter), the network outputs, and an encoded picture
counted at the raw size of the served picture (H x W x 3 bytes: a JPEG is smaller, a PNG at most that).
With a dynamic serving size the test scale's padded size stands in for the largest picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from gflv2_deploy import spec
from gflv2_deploy.contract import GraphContract, TensorInfo

MIB = 1 << 20
REGION_DEFAULT_BYTES = MIB  # python backend shm-default-byte-size
BASE_BYTES = 64 * MIB  # what Docker gives without --shm-size: the rest of the container's use
MARGIN = 2.0
_ITEMSIZE = {"float32": 4, "float16": 2, "int32": 4, "int64": 8, "uint8": 1, "int8": 1, "bool": 1}


@dataclass(frozen=True)
class ShmBudget:
    """The budget and its parts (bytes)."""

    total_bytes: int
    per_model: dict[str, int]  # peak bytes of one instance of each python model (region default included)
    picture_bytes: int  # the network's ``images`` input per picture

    @property
    def docker_option(self) -> str:
        return f"--shm-size={self.total_bytes // MIB}m"

    @property
    def kubernetes_quantity(self) -> str:
        return f"{self.total_bytes // MIB}Mi"


def served_hw(contract: GraphContract) -> tuple[int, int]:
    """The (H, W) pictures are served at: the fixed input size, else the test scale padded to the divisor."""
    pre = contract.preprocessing
    if pre.input_hw is not None:
        return int(pre.input_hw[0]), int(pre.input_hw[1])
    up = lambda v: -(-int(v) // pre.pad_divisor) * pre.pad_divisor  # noqa: E731
    return up(min(pre.test_scale)), up(max(pre.test_scale))


def tensor_bytes_per_picture(tensor: TensorInfo, contract: GraphContract) -> int:
    """Bytes of one picture's slice of ``tensor`` (batch axis dropped; dynamic axes at the served size)."""
    h, w = served_hw(contract)
    dims: list[int] = []
    for axis, d in enumerate(tensor.shape[1:], start=1):
        if isinstance(d, int):
            dims.append(d)
        elif tensor.name == spec.INPUT_IMAGES:
            h_axis, _ = contract.preprocessing.hw_axes
            dims.append(h if axis == h_axis else w)
        else:  # the point axis of a dynamic-size pre-NMS graph without nms_pre
            dims.append(spec.num_points(h, w))
    return prod(dims) * _ITEMSIZE.get(tensor.dtype, 4)


def shm_budget(contract: GraphContract, *, max_batch: int, instances: dict[str, int], python_network: bool,
               ensemble: bool) -> ShmBudget:
    """The ``/dev/shm`` budget of a repository served with ``contract`` (see the module docstring).

    instances: instance count per role ("network", "preprocess", "postprocess"); python_network: the network is
    a python-backend model (``--platform python``); ensemble: the pre/post python models are there.
    """
    h, w = served_hw(contract)
    inputs = sum(tensor_bytes_per_picture(t, contract) for t in contract.inputs)
    outputs = sum(tensor_bytes_per_picture(t, contract) for t in contract.outputs)
    picture = tensor_bytes_per_picture(contract.tensor(spec.INPUT_IMAGES), contract)
    geometry = 2 * 4 + 4 * 4  # img_shape, scale_factor
    detections = 4 + contract.postprocessing.max_per_img * (4 * 4 + 4 + 4)
    per_picture: dict[str, int] = {}
    if ensemble:
        per_picture["preprocess"] = h * w * 3 + picture + geometry
        per_picture["postprocess"] = outputs + geometry + detections
    if python_network:
        per_picture["network"] = inputs + outputs
    per_model = {role: REGION_DEFAULT_BYTES + max_batch * size for role, size in per_picture.items()}
    peak = sum(per_model[role] * int(instances.get(role, 1)) for role in per_model)
    total = BASE_BYTES + int(MARGIN * peak)
    return ShmBudget(total_bytes=-(-total // MIB) * MIB, per_model=per_model, picture_bytes=picture)

