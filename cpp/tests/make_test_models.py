"""Write the ONNX models the C++ tests run: the detecting tiny model (tests/conftest.py), exported three ways.

    python cpp/tests/make_test_models.py OUT_DIR

OUT_DIR/tiny_prenms.onnx  pre-NMS outputs, dynamic batch and size (host NMS in C++)
OUT_DIR/tiny_e2e.onnx     end-to-end (ONNX NonMaxSuppression), dynamic batch and size
OUT_DIR/tiny_static.onnx  pre-NMS, fixed 256 x 384 input (the letterbox rule)
OUT_DIR/tiny_newer_contract.onnx, tiny_no_contract.onnx  the pre-NMS graph with contract version 3 / without metadata

Each carries the graph contract under ``gflv2_deploy.contract``. Until the exporter writes the contract
itself, it is derived here from the older ``gflv2_deploy.spec`` metadata (same facts, new layout).
Idempotent: existing files are kept.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def _contract_from_spec(spec: dict) -> dict:
    from gflv2_deploy.contract import CONTRACT_FORMAT, CONTRACT_VERSION

    pre = spec["preprocessing"]
    nms = spec["nms"]
    test = spec.get("test", {})
    padding = nms.get("padding") or {"box": 0.0, "score": 0.0, "class": -1}
    input_hw = None if spec["dynamic_axes"]["height_width"] else list(spec["input_hw"])
    return {
        "format": CONTRACT_FORMAT, "format_version": CONTRACT_VERSION,
        "producer": {"tool_version": spec["tool"]["version"], "exporter": spec["exporter"]["name"],
                     "torch_version": spec["exporter"].get("torch_version"), "opset": spec["opset"]},
        "model": {"config_name": spec["config_name"], "class_names": spec["class_names"],
                  "num_classes": spec["num_classes"], "strides": spec["strides"], "reg_max": spec["reg_max"],
                  "reg_topk": spec["reg_topk"], "checkpoint": None, "checkpoint_sha256": None},
        "inputs": [{"name": t["name"], "dtype": t["dtype"], "shape": t["shape"]} for t in spec["inputs"]],
        "outputs": [{"name": t["name"], "dtype": t["dtype"], "shape": t["shape"]} for t in spec["outputs"]],
        "preprocessing": {"test_scale": list(pre["test_scale"]), "mean": pre["mean"], "std": pre["std"],
                          "pad_divisor": pre["pad_divisor"], "input_hw": input_hw, "color": "RGB",
                          "resize": "keep_ratio_bilinear", "pad_value": float(pre.get("pad_value", 0.0))},
        "postprocessing": {"nms": nms["form"], "nms_pre": int(test.get("nms_pre", 1000)), "nms_pre_in_graph": True,
                           "score_thr": float(nms["score_threshold"]), "iou_thr": float(nms["iou_threshold"]),
                           "max_per_img": int(nms["max_dets"]), "clamped": bool(spec["clamp"]),
                           "pad_box": float(padding["box"]), "pad_score": float(padding["score"]),
                           "pad_class": int(padding["class"])},
        "precision": {"compute": "fp32", "recipe": None},
    }


def ensure_contract(path: Path) -> None:
    """Add the ``gflv2_deploy.contract`` metadata to ``path`` when the exporter did not write it."""
    import onnx

    from gflv2_deploy.contract import CONTRACT_METADATA_KEY

    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    if CONTRACT_METADATA_KEY in props:
        return
    contract = _contract_from_spec(json.loads(props["gflv2_deploy.spec"]))
    entry = model.metadata_props.add()
    entry.key, entry.value = CONTRACT_METADATA_KEY, json.dumps(contract)
    onnx.save(model, str(path))


def main(out_dir: str) -> None:
    from conftest import _detecting_tiny

    from gflv2_deploy.export.onnx import export_onnx

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = None
    for name, kwargs in (("tiny_prenms.onnx", dict(nms="none", dynamic_hw=True)),
                         ("tiny_e2e.onnx", dict(nms="onnx", dynamic_hw=True)),
                         ("tiny_static.onnx", dict(nms="none", dynamic_hw=False, input_hw=(256, 384)))):
        path = out / name
        if not path.is_file():
            model = model or _detecting_tiny(0)
            tmp = path.with_suffix(".tmp.onnx")
            export_onnx(model, tmp, **kwargs)
            ensure_contract(tmp)
            tmp.rename(path)
        print(path)
    _write_variants(out / "tiny_prenms.onnx", out)


def _write_variants(source: Path, out: Path) -> None:
    import onnx

    from gflv2_deploy.contract import CONTRACT_METADATA_KEY

    for name, version in (("tiny_newer_contract.onnx", 3), ("tiny_no_contract.onnx", None)):
        path = out / name
        if path.is_file():
            continue
        model = onnx.load(str(source))
        props = {p.key: p.value for p in model.metadata_props}
        del model.metadata_props[:]
        if version is not None:
            contract = json.loads(props[CONTRACT_METADATA_KEY])
            contract["format_version"] = version
            entry = model.metadata_props.add()
            entry.key, entry.value = CONTRACT_METADATA_KEY, json.dumps(contract)
        onnx.save(model, str(path))
        print(path)


if __name__ == "__main__":
    main(sys.argv[1])
