"""Runtime detection and the TensorRT-RTX facts the rest of the engine layer relies on."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from gflv2_deploy.engine import trt_api
from gflv2_deploy.engine.trt_api import RuntimeInfo, load_runtime
from gflv2_deploy.errors import MissingDependencyError, UserError

ENGINE_DIR = Path(trt_api.__file__).resolve().parent
BACKENDS = ("tensorrt", "tensorrt_rtx", "cuda", "onnx", "torch")


def test_rtx_runtime_info(rtx: RuntimeInfo) -> None:
    import tensorrt_rtx

    assert rtx.flavour == "tensorrt-rtx"
    assert rtx.module is tensorrt_rtx
    assert rtx.version == tensorrt_rtx.__version__
    assert rtx.major == int(rtx.version.split(".")[0])
    assert rtx.strongly_typed_only and not rtx.has_precision_flags
    assert rtx.builds_ahead_of_time and not rtx.supports_timing_cache
    assert rtx.label == f"TensorRT-RTX {rtx.version}"
    assert trt_api.plan_typing(rtx, "fp32", "fp32") == trt_api.TypingPlan(True, (), ())
    assert trt_api.network_flag_bits(rtx, ()) == 0 and trt_api.builder_flags(rtx, ()) == []


def _facts(flavour: str, version: str) -> RuntimeInfo:
    """The version facts load_runtime derives, for runtimes that cannot be installed here (no module)."""
    major = int(version.split(".")[0])
    rtx = flavour == "tensorrt-rtx"
    return RuntimeInfo(flavour=flavour, module=None, version=version, major=major,  # type: ignore[arg-type]
                       strongly_typed_only=rtx or major >= 11, has_precision_flags=not rtx and major == 10)


@pytest.mark.parametrize(("onnx_precision", "precision", "strongly", "network", "builder"), [
    ("fp32", "fp32", False, (), ()),  # no EXPLICIT_BATCH: ignored since 10.0, removed in 11
    ("fp32", "fp16", False, (), ("FP16",)),  # TensorRT picks fp16 layer by layer
    ("fp16", "fp16", True, ("STRONGLY_TYPED",), ()),  # the converted graph's own types
    ("int8", "int8", True, ("STRONGLY_TYPED",), ()),  # Q/DQ: rest stays fp32, as validated
])
def test_tensorrt10_typing(onnx_precision: str, precision: str, strongly: bool, network: tuple, builder: tuple) -> None:
    plan = trt_api.plan_typing(_facts("tensorrt", "10.13.3"), onnx_precision, precision)
    assert (plan.strongly_typed, plan.network_flags, plan.builder_flags) == (strongly, network, builder)
    assert plan.to_dict() == {"strongly_typed": strongly, "network_flags": list(network), "builder_flags": list(builder)}


@pytest.mark.parametrize("runtime", [_facts("tensorrt", "11.0.0"), _facts("tensorrt-rtx", "1.7.1")])
@pytest.mark.parametrize("onnx_precision", ["fp32", "fp16", "int8"])
def test_strongly_typed_runtimes_set_no_flags(runtime: RuntimeInfo, onnx_precision: str) -> None:
    assert trt_api.plan_typing(runtime, onnx_precision, onnx_precision) == trt_api.TypingPlan(True, (), ())
    with pytest.raises(UserError, match="unknown precision"):
        trt_api.plan_typing(runtime, onnx_precision, "int4")


def test_flag_names_map_onto_the_real_enums(rtx: RuntimeInfo) -> None:
    # names resolve on the module itself (RTX has STRONGLY_TYPED but no FP16 flag: TensorRT 10 has both)
    flag_enum = rtx.module.NetworkDefinitionCreationFlag
    assert trt_api.network_flag_bits(rtx, ("STRONGLY_TYPED",)) == 1 << int(flag_enum.STRONGLY_TYPED)
    assert trt_api.builder_flags(rtx, ("TF32", "REFIT")) == [rtx.module.BuilderFlag.TF32, rtx.module.BuilderFlag.REFIT]


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_missing_tensorrt_names_the_extra() -> None:
    with pytest.raises(MissingDependencyError, match=r"pip install 'gflv2-deploy\[tensorrt\]'") as info:
        load_runtime("tensorrt")
    assert info.value.extra == "tensorrt" and info.value.module == "tensorrt"


def test_unknown_runtime() -> None:
    with pytest.raises(UserError, match="choose one of tensorrt, tensorrt-rtx"):
        load_runtime("tensorrt-llm")


def test_rtx_targets(rtx: RuntimeInfo) -> None:
    available = trt_api.rtx_available_targets(rtx)
    assert {"7.5", "8.6", "8.9", "12.0"} <= set(available)
    assert "9.0" not in available  # no Hopper (H100/H200) target in TensorRT-RTX
    assert trt_api.rtx_default_targets(rtx) == [cc for cc in available if cc != "7.5"]

    logger, _ = trt_api.shared_logger(rtx)
    config = rtx.module.Builder(logger).create_builder_config()
    assert trt_api.set_rtx_targets(rtx, config, ["8.6", "12.0"]) == ["8.6", "12.0"]
    assert config.num_compute_capabilities == 2
    with pytest.raises(UserError, match="cannot build for compute capability '9.0'"):
        trt_api.set_rtx_targets(rtx, config, ["9.0"])


def test_rtx_plugin_registry_has_no_nms(rtx: RuntimeInfo) -> None:
    """Recorded finding (plugins/README.md): init_libnvinfer_plugins exists in TensorRT-RTX but
    registers no NMS plugin. If this fails, a newer RTX ships one: update the README."""
    logger, _ = trt_api.shared_logger(rtx)
    assert trt_api.init_standard_plugins(rtx, logger) is True
    names = {name for name, _, _ in trt_api.plugin_creators(rtx)}
    assert not trt_api.has_plugin(rtx, "EfficientNMS_TRT", "1", "")
    assert not {"EfficientNMS_TRT", "BatchedNMS_TRT", "BatchedNMSDynamic_TRT"} & names


def test_one_logger_per_process(rtx: RuntimeInfo) -> None:
    """TensorRT keeps one logger per process: every builder and runner gets the same object."""
    logger, log = trt_api.shared_logger(rtx)
    assert trt_api.shared_logger(rtx) == (logger, log)
    mark = log.mark()
    log.errors.append("later error")
    assert log.since(mark) == ["later error"]


def test_refused_optimisation_profile_raises(rtx: RuntimeInfo) -> None:
    logger, log = trt_api.shared_logger(rtx)
    builder = rtx.module.Builder(logger)
    config = builder.create_builder_config()
    good = builder.create_optimization_profile()
    good.set_shape("x", (1, 3), (2, 3), (4, 3))
    assert trt_api.add_optimization_profile(config, good, {"x": ((1, 3), (2, 3), (4, 3))}, log) == 0
    bad = builder.create_optimization_profile()
    bad.set_shape("x", (2, 3), (1, 3), (4, 3))  # min > opt: TensorRT answers -1
    with pytest.raises(UserError, match=r"refused the optimisation profile \(min, opt, max: x \[\[2, 3\], \[1, 3\], \[4, 3\]\]\) "
                                        r"\(.*MIN<=OPT<=MAX"):
        trt_api.add_optimization_profile(config, bad, {"x": ((2, 3), (1, 3), (4, 3))}, log)


class _FakeBuilderConfig:
    """IBuilderConfig's timing-cache calls: set_timing_cache answers False for a cache of another GPU."""

    def __init__(self, accept: bool) -> None:
        self.accept, self.attached = accept, None

    def create_timing_cache(self, data: bytes) -> object:
        return ("cache", data)

    def set_timing_cache(self, cache: object, ignore_mismatch: bool) -> bool:
        assert ignore_mismatch is False
        self.attached = cache if self.accept else None
        return self.accept


def test_timing_cache_status() -> None:
    trt10 = _facts("tensorrt", "10.16.0")
    assert trt_api.load_timing_cache(trt10, _FakeBuilderConfig(True), b"") == "created"
    assert trt_api.load_timing_cache(trt10, _FakeBuilderConfig(True), b"old") == "loaded"
    assert trt_api.load_timing_cache(trt10, _FakeBuilderConfig(False), b"other gpu") == "rejected"
    assert trt_api.load_timing_cache(_facts("tensorrt-rtx", "1.7.1"), _FakeBuilderConfig(True), b"") == "unsupported"


def test_dtype_names(rtx: RuntimeInfo) -> None:
    dt = rtx.module.DataType
    assert [trt_api.dtype_name(d) for d in (dt.FLOAT, dt.HALF, dt.INT32, dt.INT8, dt.BOOL)] == [
        "float32", "float16", "int32", "int8", "bool",
    ]


def test_query_device_without_gpu_or_cuda_python() -> None:
    """No GPU on CI: query_device answers None, or names the extra when cuda-python is absent."""
    try:
        assert trt_api.query_device() is None
    except MissingDependencyError as exc:
        assert exc.extra == "tensorrt"


def test_engine_package_imports_without_backends() -> None:
    """``import gflv2_deploy.engine`` loads no backend (checked in a fresh interpreter)."""
    code = (
        "import sys, gflv2_deploy.engine\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {BACKENDS!r})\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_engine_modules_never_import_torch_and_import_backends_lazily() -> None:
    for path in sorted(ENGINE_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            assert "torch" not in roots, f"{path.name}:{node.lineno} imports torch"
        for node in tree.body:  # module level: no backend imports at all
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in BACKENDS for n in names), f"{path.name}:{node.lineno}"
