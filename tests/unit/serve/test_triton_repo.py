"""Repository generation: every config parses with tritonclient's model_config_pb2, semantic checks, atomic writing."""

from __future__ import annotations

from pathlib import Path

import pytest

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2  # the 'triton' extra: CI installs it, so a missing client fails

from gflv2_deploy.errors import UserError
from gflv2_deploy.serve import triton_config as tc
from gflv2_deploy.serve.triton_repo import RepositoryOptions, write_triton_repository


def _configs(repo: Path) -> dict[str, model_config_pb2.ModelConfig]:
    return {p.parent.name: text_format.Parse(p.read_text(), model_config_pb2.ModelConfig())
            for p in repo.glob("*/config.pbtxt")}


def test_onnx_variant_uses_the_onnxruntime_backend(serve_onnx, tmp_path) -> None:
    write_triton_repository(serve_onnx["e2e"], tmp_path / "repo", RepositoryOptions(max_batch=4, instances=2))
    cfg = _configs(tmp_path / "repo")["gflv2"]
    assert cfg.backend == "onnxruntime" and cfg.max_batch_size == 4
    assert [i.name for i in cfg.input] == ["images", "img_shape"]
    assert list(cfg.input[0].dims) == [3, 384, 384] and list(cfg.input[1].dims) == [2]
    assert [o.name for o in cfg.output] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
    assert cfg.output[3].data_type == model_config_pb2.TYPE_INT32 and list(cfg.output[1].dims) == [100, 4]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [2, 4]
    assert cfg.instance_group[0].count == 2 and cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert (tmp_path / "repo" / "gflv2" / "1" / "model.onnx").read_bytes() == serve_onnx["e2e"].read_bytes()
    assert "gflv2_deploy.contract" in cfg.parameters


def test_python_ensemble_variant(serve_onnx, tmp_path) -> None:
    repo = tmp_path / "repo"
    plan = write_triton_repository(serve_onnx["prenms"], repo, RepositoryOptions(platform="python", ensemble=True))
    configs = _configs(repo)
    assert set(configs) == {"gflv2", "gflv2_network", "gflv2_preprocess", "gflv2_postprocess"} == set(plan.models)
    assert configs["gflv2_network"].backend == "python"
    assert list(configs["gflv2_network"].input[0].dims) == [3, -1, -1]  # dynamic height and width
    assert configs["gflv2"].platform == "ensemble" and (repo / "gflv2" / "1").is_dir()
    assert configs["gflv2"].input[0].data_type == model_config_pb2.TYPE_STRING
    for name in ("gflv2_network", "gflv2_preprocess", "gflv2_postprocess"):
        assert (repo / name / "1" / "model.py").is_file() and (repo / name / "1" / "gflv2_triton_env.py").is_file()
    assert (repo / "gflv2_network" / "1" / "model.onnx").is_file()
    steps = [s.model_name for s in configs["gflv2"].ensemble_scheduling.step]
    assert steps == ["gflv2_preprocess", "gflv2_network", "gflv2_postprocess"]


def test_engine_variant_names_its_plugin(fake_engine, tmp_path) -> None:
    repo = tmp_path / "repo"
    write_triton_repository(fake_engine, repo, RepositoryOptions(max_batch=16))
    cfg = _configs(repo)["gflv2"]
    assert list(cfg.input[0].dims) == [3, 384, 384]
    assert cfg.platform == "tensorrt_plan" and not cfg.backend
    assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert (repo / "gflv2" / "1" / "model.plan").read_bytes() == fake_engine.read_bytes()
    assert (repo / "gflv2" / "plugins" / "libgflv2_nms.so").read_bytes() == b"not a real library"
    readme = (repo / "gflv2" / "README.md").read_text()
    assert '--backend-config=tensorrt,plugins="/models/gflv2/plugins/libgflv2_nms.so"' in readme
    with pytest.raises(UserError, match="optimisation profile"):
        write_triton_repository(fake_engine, tmp_path / "r2", RepositoryOptions(max_batch=32))
    with pytest.raises(UserError, match="--platform tensorrt"):
        write_triton_repository(fake_engine, tmp_path / "r3", RepositoryOptions(platform="python"))


@pytest.mark.parametrize("options, message", [
    (RepositoryOptions(platform="tensorrt"), "build an engine"),
    (RepositoryOptions(platform="nope"), "unknown --platform"),
    (RepositoryOptions(instances=0), "--instances"),
    (RepositoryOptions(max_batch=0), "--max-batch"),
])
def test_bad_options_write_nothing(serve_onnx, tmp_path, options, message) -> None:
    with pytest.raises(UserError, match=message):
        write_triton_repository(serve_onnx["e2e"], tmp_path / "repo", options)
    assert list(tmp_path.iterdir()) == []


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
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no staging or backup folder left


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
