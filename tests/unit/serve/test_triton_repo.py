"""Repository generation: every config parses with tritonclient's model_config_pb2, what an expert's config has,
the refusals of what Triton cannot load, atomic writing, versions and the writer's lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2  # the 'triton' extra: CI installs it, so a missing client fails

from gflv2_deploy.errors import UserError
from gflv2_deploy.serve import triton_config as tc
from gflv2_deploy.serve.triton_options import SERVE_DYNAMIC, RepositoryOptions, parse_instances, parse_serve_size
from gflv2_deploy.serve.triton_write import add_version, repository_lock, write_triton_repository

GPU = model_config_pb2.ModelInstanceGroup.KIND_GPU
CPU = model_config_pb2.ModelInstanceGroup.KIND_CPU


def _configs(repo: Path) -> dict[str, model_config_pb2.ModelConfig]:
    return {p.parent.name: text_format.Parse(p.read_text(), model_config_pb2.ModelConfig())
            for p in repo.glob("*/config.pbtxt")}


def test_onnx_variant_on_the_gpu_by_default(serve_onnx, tmp_path) -> None:
    write_triton_repository(serve_onnx["e2e"], tmp_path / "repo", RepositoryOptions(max_batch=4, instances=2))
    cfg = _configs(tmp_path / "repo")["gflv2"]
    assert cfg.backend == "onnxruntime" and cfg.max_batch_size == 4
    assert [i.name for i in cfg.input] == ["images", "img_shape"]
    assert list(cfg.input[0].dims) == [3, 384, 384] and list(cfg.input[1].dims) == [2]
    assert [o.name for o in cfg.output] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
    assert cfg.output[3].data_type == model_config_pb2.TYPE_INT32 and list(cfg.output[1].dims) == [100, 4]
    assert list(cfg.dynamic_batching.preferred_batch_size) == []  # only multi-profile TensorRT models gain from it
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 1000
    assert cfg.instance_group[0].count == 2 and cfg.instance_group[0].kind == GPU
    assert cfg.optimization.input_pinned_memory.enable and cfg.optimization.output_pinned_memory.enable
    assert cfg.version_policy.latest.num_versions == 1
    assert [(w.batch_size, list(w.inputs["images"].dims), w.inputs["images"].zero_data) for w in cfg.model_warmup] == [
        (1, [3, 384, 384], True), (4, [3, 384, 384], True)]
    assert (tmp_path / "repo" / "gflv2" / "1" / "model.onnx").read_bytes() == serve_onnx["e2e"].read_bytes()
    assert "gflv2_deploy.contract" in cfg.parameters


def test_onnx_on_the_cpu_and_the_tensorrt_accelerator(serve_onnx, tmp_path) -> None:
    write_triton_repository(serve_onnx["e2e"], tmp_path / "cpu", RepositoryOptions(device="cpu", warmup=False))
    cfg = _configs(tmp_path / "cpu")["gflv2"]
    assert cfg.instance_group[0].kind == CPU and not cfg.HasField("optimization") and len(cfg.model_warmup) == 0
    write_triton_repository(serve_onnx["e2e"], tmp_path / "trt", RepositoryOptions(
        accelerator="tensorrt", accelerator_fp16=True, engine_cache="/cache/trt"))
    accelerator = _configs(tmp_path / "trt")["gflv2"].optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt"
    assert dict(accelerator.parameters) == {"precision_mode": "FP16", "trt_engine_cache_enable": "1",
                                            "trt_engine_cache_path": "/cache/trt"}


def test_python_ensemble_variant_letterboxes_a_dynamic_graph_by_default(serve_onnx, tmp_path) -> None:
    repo = tmp_path / "repo"
    plan = write_triton_repository(serve_onnx["prenms"], repo, RepositoryOptions(
        platform="python", ensemble=True, instances=parse_instances("network=2,preprocess=3")))
    configs = _configs(repo)
    assert set(configs) == {"gflv2", "gflv2_network", "gflv2_preprocess", "gflv2_postprocess"} == set(plan.models)
    assert configs["gflv2_network"].backend == "python"
    assert list(configs["gflv2_network"].input[0].dims) == [3, 256, 384]  # the test scale (384, 256), padded
    assert plan.contract.preprocessing.input_hw == (256, 384) and "letterboxed into 256x384" in plan.notes[0]
    assert [configs[m].instance_group[0].count for m in ("gflv2_network", "gflv2_preprocess", "gflv2_postprocess")] == [2, 3, 1]
    for python_model in ("gflv2_preprocess", "gflv2_postprocess"):
        batching = configs[python_model].dynamic_batching
        assert list(batching.preferred_batch_size) == [] and batching.max_queue_delay_microseconds == 0
        assert configs[python_model].instance_group[0].kind == CPU
    assert configs["gflv2"].platform == "ensemble" and (repo / "gflv2" / "1").is_dir()
    assert configs["gflv2"].input[0].data_type == model_config_pb2.TYPE_STRING
    for name in ("gflv2_network", "gflv2_preprocess", "gflv2_postprocess"):
        assert (repo / name / "1" / "model.py").is_file() and (repo / name / "1" / "gflv2_triton_env.py").is_file()
    steps = [s.model_name for s in configs["gflv2"].ensemble_scheduling.step]
    assert steps == ["gflv2_preprocess", "gflv2_network", "gflv2_postprocess"]


def test_dynamic_serving_says_batching_is_defeated(serve_onnx, tmp_path) -> None:
    plan = write_triton_repository(serve_onnx["prenms"], tmp_path / "repo", RepositoryOptions(
        platform="python", serve_size=SERVE_DYNAMIC))
    assert list(_configs(tmp_path / "repo")["gflv2"].input[0].dims) == [3, -1, -1]
    assert "requests are rarely batched" in plan.notes[0]
    chosen = write_triton_repository(serve_onnx["prenms"], tmp_path / "r2", RepositoryOptions(
        platform="python", serve_size=parse_serve_size("320x448")))
    assert chosen.contract.preprocessing.input_hw == (320, 448)
    with pytest.raises(UserError, match="--serve-size can only choose"):
        write_triton_repository(serve_onnx["e2e"], tmp_path / "r3", RepositoryOptions(serve_size=(320, 448)))


def test_uint8_graph_moves_a_quarter_of_the_bytes(serve_onnx, tmp_path) -> None:
    from gflv2_deploy.serve.shm import shm_budget

    plans = {}
    for kind in ("e2e", "u8"):
        plans[kind] = write_triton_repository(serve_onnx[kind], tmp_path / kind, RepositoryOptions(
            platform="python", ensemble=True))
    configs = _configs(tmp_path / "u8")
    images = next(o for o in configs["gflv2_preprocess"].output if o.name == "images")
    assert images.data_type == model_config_pb2.TYPE_UINT8 and list(images.dims) == [384, 384, 3]
    assert configs["gflv2_network"].input[0].data_type == model_config_pb2.TYPE_UINT8
    budgets = {kind: shm_budget(plan.contract, max_batch=8, instances={}, python_network=True, ensemble=True)
               for kind, plan in plans.items()}
    assert budgets["u8"].picture_bytes * 4 == budgets["e2e"].picture_bytes == 3 * 384 * 384 * 4
    assert budgets["u8"].total_bytes < budgets["e2e"].total_bytes
    more = shm_budget(plans["u8"].contract, max_batch=8, instances={"network": 4}, python_network=True, ensemble=True)
    assert more.total_bytes > budgets["u8"].total_bytes and more.docker_option.startswith("--shm-size=")


def test_engine_variant_names_its_plugin_and_captures_cuda_graphs(fake_engine, tmp_path) -> None:
    repo = tmp_path / "repo"
    write_triton_repository(fake_engine, repo, RepositoryOptions(max_batch=16))
    cfg = _configs(repo)["gflv2"]
    assert list(cfg.input[0].dims) == [3, 384, 384]
    assert cfg.platform == "tensorrt_plan" and not cfg.backend
    assert cfg.instance_group[0].kind == GPU
    graphs = cfg.optimization.cuda
    assert graphs.graphs and [s.batch_size for s in graphs.graph_spec] == [1, 2, 3, 4, 6, 8, 12, 16]
    # each graph also serves the batches above the previous size (5 runs on the graph of 6)
    assert [s.graph_lower_bound.batch_size for s in graphs.graph_spec] == [0, 0, 0, 0, 5, 7, 9, 13]
    assert (repo / "gflv2" / "1" / "model.plan").read_bytes() == fake_engine.read_bytes()
    assert (repo / "gflv2" / "1" / "engine_manifest.json").is_file()
    assert (repo / "gflv2" / "plugins" / "libgflv2_nms.so").read_bytes() == b"not a real library"
    readme = (repo / "gflv2" / "README.md").read_text()
    assert '--backend-config=tensorrt,plugins="/models/gflv2/plugins/libgflv2_nms.so"' in readme
    with pytest.raises(UserError, match="optimisation profile"):
        write_triton_repository(fake_engine, tmp_path / "r2", RepositoryOptions(max_batch=32))
    with pytest.raises(UserError, match="--platform tensorrt"):
        write_triton_repository(fake_engine, tmp_path / "r3", RepositoryOptions(platform="python"))


@pytest.mark.parametrize("kind, options, message", [
    ("trt", RepositoryOptions(), "EfficientNMS_TRT, a TensorRT plugin that onnxruntime cannot run"),
    ("trt", RepositoryOptions(platform="python"), "EfficientNMS_TRT"),
    ("rtx", RepositoryOptions(), "built by TensorRT-RTX"),
    ("e2e", RepositoryOptions(platform="tensorrt"), "build an engine"),
    ("e2e", RepositoryOptions(platform="nope"), "unknown --platform"),
    ("e2e", RepositoryOptions(onnxruntime_threads=-2), r"--threads must be an integer in 0..256, got -2"),
    ("e2e", RepositoryOptions(instances=0), "--instances"),
    ("e2e", RepositoryOptions(instances={"network": 65}), r"--instances must be an integer in 1..64"),
    ("e2e", RepositoryOptions(max_batch=0), "--max-batch"),
    ("e2e", RepositoryOptions(max_batch=100000), r"1..256"),
    ("e2e", RepositoryOptions(queue_delay_us=-1), "--queue-delay-us"),
    ("e2e", RepositoryOptions(versions_served=0), "--versions-served"),
    ("e2e", RepositoryOptions(version=0), "--version"),
    ("e2e", RepositoryOptions(device="tpu"), "unknown --device"),
    ("e2e", RepositoryOptions(platform="python", device="gpu"), "python platform runs onnxruntime on the CPU"),
    ("e2e", RepositoryOptions(device="cpu", accelerator="tensorrt"), "needs --platform onnxruntime --device gpu"),
    ("e2e", RepositoryOptions(accelerator_fp16=True), "add --accelerator tensorrt"),
    ("e2e", RepositoryOptions(accelerator="tensorrt", engine_cache="cache"), "absolute path"),
    ("engine", RepositoryOptions(device="cpu"), "runs on a GPU only"),
    ("engine", RepositoryOptions(onnxruntime_threads=2), "a TensorRT plan has none"),
])
def test_refusals_write_nothing(serve_onnx, fake_engine, rtx_engine, tmp_path, kind, options, message) -> None:
    model = {"rtx": rtx_engine, "engine": fake_engine}.get(kind) or serve_onnx[kind]
    with pytest.raises(UserError, match=message):
        write_triton_repository(model, tmp_path / "repo", options)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text, message", [("network=2,gpu=1", "ROLE=COUNT"), ("network=x", "ROLE=COUNT"),
                                           ("network=1,network=2", "twice")])
def test_instances_text(text, message) -> None:
    assert parse_instances("3") == {"network": 3, "preprocess": 3, "postprocess": 3}
    assert parse_instances("network=2,preprocess=4") == {"network": 2, "preprocess": 4}
    with pytest.raises(UserError, match=message):
        parse_instances(text)


def test_fixed_batch_graph_is_refused(serve_onnx, tmp_path) -> None:
    with pytest.raises(UserError, match="fixed batch of 2"):
        write_triton_repository(serve_onnx["static"], tmp_path / "repo")


def test_existing_repository_needs_overwrite(serve_onnx, tmp_path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        write_triton_repository(serve_onnx["e2e"], repo)
    assert [p.name for p in repo.iterdir()] == ["keep.txt"]
    write_triton_repository(serve_onnx["e2e"], repo, overwrite=True)
    assert sorted(p.name for p in repo.iterdir()) == ["gflv2"]
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no staging, backup or lock file left


def test_a_second_writer_fails_while_the_first_holds_the_lock(serve_onnx, tmp_path) -> None:
    repo = tmp_path / "repo"
    with repository_lock(repo):
        with pytest.raises(UserError, match=r"another gflv2-deploy \(pid \d+\) is writing"):
            write_triton_repository(serve_onnx["e2e"], repo)
        with pytest.raises(UserError, match="another gflv2-deploy"):
            add_version(serve_onnx["e2e"], repo, RepositoryOptions(version=2))
    assert not repo.exists()
    write_triton_repository(serve_onnx["e2e"], repo)  # released: the next writer proceeds


def test_add_version_leaves_everything_else_alone(serve_onnx, tmp_path) -> None:
    repo = tmp_path / "repo"
    options = RepositoryOptions(platform="python", ensemble=True, versions_served=2)
    write_triton_repository(serve_onnx["e2e"], repo, options)
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    plan = add_version(serve_onnx["e2e"], repo, RepositoryOptions(platform="python", ensemble=True, versions_served=2,
                                                                   version=2))
    assert plan.network == "gflv2_network"
    added = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file() and p not in before)
    assert added == ["gflv2_network/2/gflv2_triton_env.py", "gflv2_network/2/model.onnx", "gflv2_network/2/model.py"]
    assert all(p.read_bytes() == data for p, data in before.items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    with pytest.raises(UserError, match="version 2 of 'gflv2_network' is already there"):
        add_version(serve_onnx["e2e"], repo, RepositoryOptions(platform="python", ensemble=True, versions_served=2, version=2))
    with pytest.raises(UserError, match=r"differs in: .*max_batch_size"):
        add_version(serve_onnx["e2e"], repo, RepositoryOptions(platform="python", ensemble=True, versions_served=2,
                                                               version=3, max_batch=4))
    with pytest.raises(UserError, match="contract.inputs"):  # another input format is another serving contract
        add_version(serve_onnx["u8"], repo, RepositoryOptions(platform="python", ensemble=True, versions_served=2, version=3))
    with pytest.raises(UserError, match="has no model 'other_network'"):
        add_version(serve_onnx["e2e"], repo, RepositoryOptions(platform="python", ensemble=True, name="other", version=3))
    assert not (repo / "gflv2_network" / "3").exists()


def test_semantic_checks() -> None:
    base = {"name": "m", "backend": "python", "max_batch_size": 4,
            "input": [tc.tensor_entry("x", "float32", [2])], "output": [tc.tensor_entry("y", "float32", [2])]}
    assert tc.check_model(tc.parse_config(base)) == []
    too_big = tc.parse_config({**base, "dynamic_batching": {"preferred_batch_size": [8]}})
    assert any("preferred batch size 8" in p for p in tc.check_model(too_big))
    no_batch = tc.parse_config({**base, "max_batch_size": 0, "dynamic_batching": {}})
    assert any("needs max_batch_size > 0" in p for p in tc.check_model(no_batch))
    twice = tc.parse_config({**base, "input": base["input"] * 2})
    assert any("listed twice" in p for p in tc.check_model(twice))
    with pytest.raises(UserError, match="invalid Triton config"):
        tc.parse_config({**base, "max_batch": 4})  # unknown field
    ensemble = tc.parse_config({
        "name": "e", "platform": "ensemble", "max_batch_size": 8,
        "input": [tc.tensor_entry("a", "float32", [2])], "output": [tc.tensor_entry("b", "float32", [2])],
        "ensemble_scheduling": {"step": [{"model_name": "m", "model_version": -1, "input_map": {"x": "a"},
                                          "output_map": {"y": "b"}}]}})
    problems = tc.check_ensemble(ensemble, {"m": tc.parse_config(base)})
    assert any("exceeds that of 'm'" in p for p in problems)
    with pytest.raises(UserError, match="not in the repository"):
        tc.check_repository([ensemble])


def test_fixed_input_of_a_dynamic_graph_fixes_the_config_dims(serve_onnx) -> None:
    """An engine built at a fixed size from a dynamic-size ONNX: its contract's input_hw becomes the dims."""
    import dataclasses

    from gflv2_deploy.serve.model_contract import model_contract

    contract = model_contract(serve_onnx["prenms"])
    images = contract.tensor("images")
    assert tc.contract_dims(images, contract) == [3, -1, -1]
    fixed = dataclasses.replace(contract, preprocessing=dataclasses.replace(contract.preprocessing, input_hw=(320, 448)))
    assert tc.contract_dims(images, fixed) == [3, 320, 448]


def test_a_refused_write_leaves_no_new_parent_folder(serve_onnx, tmp_path) -> None:
    with pytest.raises(UserError, match="--max-batch"):
        write_triton_repository(serve_onnx["e2e"], tmp_path / "a" / "b" / "repo", RepositoryOptions(max_batch=0))
    assert list(tmp_path.iterdir()) == []
    write_triton_repository(serve_onnx["e2e"], tmp_path / "a" / "b" / "repo")
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["repo"]
