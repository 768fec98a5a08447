"""GPU check of the torch reference's math: TorchRunner on the CPU vs CUDA, in FP32 (the default) and with tf32=True.

    python3 scripts/tf32_parity.py [CHECKPOINT]     (run from the repository root; JSON on stdout)

CHECKPOINT: a trained gflv2 checkpoint (default: tests/conftest.py's detecting tiny model, random weights).
Pictures: 20 COCO photos of tests/data, decoded by torchvision (or OpenCV), resized to the tiny test scale.
Reported per CUDA mode: detections matched to the CPU's (IoU >= 0.99, |d score| <= 1e-4), max pre-NMS score and
box differences, and whether the process's TF32 settings are the same after the runs as before. Needs only torch
and numpy besides the package (OpenCV and pycocotools may be absent: a GPU machine without a registry).
Expected with FP32 (seen on an H200 before TF32 was switched off: 96.2 % matched with TF32, 100 % without).
"""
import json, os, sys, time, types, importlib.util
from pathlib import Path
out = {"started": time.time()}
sys.path.insert(0, os.getcwd())
try:
    import cv2  # noqa
    out["cv2"] = cv2.__version__
except Exception as exc:
    out["cv2"] = f"missing ({exc}); stubbed"
    sys.modules["cv2"] = types.ModuleType("cv2")
import numpy as np, torch
out["torch"] = torch.__version__; out["cuda"] = torch.cuda.is_available()
out["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
from gflv2_deploy.runtime.torch_runner import TorchRunner, _precision_settings
from gflv2_deploy.model.load import load_torch_model
from gflv2_deploy.data.preprocess import ImageMeta
from gflv2_deploy.config import TestConfig
out["api"] = [f"{type(o).__name__}.{a}" for o, a in _precision_settings()]
before = [str(getattr(o, a)) for o, a in _precision_settings()]
def decode(path):
    try:
        from torchvision.io import decode_image, read_file
        return decode_image(read_file(str(path))).float()
    except ImportError:
        import cv2
        return torch.from_numpy(cv2.imread(str(path))[:, :, ::-1].copy()).permute(2, 0, 1).float()
photos = sorted(Path("tests/data/coco_val2017_tiny50/val2017").glob("*.jpg"))[:20]
mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1); std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
batches = []
for p in photos:
    img = decode(p)  # 3 x H x W RGB
    h, w = img.shape[1:]
    s = min(384 / max(h, w), 256 / min(h, w)); nh, nw = int(h * s + 0.5), int(w * s + 0.5)
    img = torch.nn.functional.interpolate(img[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
    x = torch.zeros(3, (nh + 31) // 32 * 32, (nw + 31) // 32 * 32); x[:, :nh, :nw] = (img - mean) / std
    meta = ImageMeta(ori_shape=(h, w), img_shape=(nh, nw), scale_factor=np.array([nw / w, nh / h] * 2, np.float32), pad_shape=tuple(x.shape[1:]))
    batches.append((x[None].numpy().astype(np.float32), [meta]))
if len(sys.argv) > 1:
    model = load_torch_model(Path(sys.argv[1]), None)
else:
    spec = importlib.util.spec_from_file_location("gflv2_tests_conftest", "tests/conftest.py")
    conftest = importlib.util.module_from_spec(spec); spec.loader.exec_module(conftest)
    model = conftest._detecting_tiny(0)
out["checkpoint"] = sys.argv[1] if len(sys.argv) > 1 else "tests/conftest.py detecting tiny (random weights)"
cfg = model.config.test
def run(device, tf32=False):
    r = TorchRunner(model, device, tf32=tf32)
    tens, dets = [], []
    for x, metas in batches:
        tens.append(r.infer(x, np.array([m.img_shape for m in metas], np.float32)))
        dets.append(r.reference_detections(x, metas, cfg)[0])
    return tens, dets
def iou(a, b):
    lt = np.maximum(a[:, None, :2], b[None, :, :2]); rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None); inter = wh[..., 0] * wh[..., 1]
    ar = lambda z: (z[:, 2] - z[:, 0]).clip(0) * (z[:, 3] - z[:, 1]).clip(0)
    return inter / np.maximum(ar(a)[:, None] + ar(b)[None] - inter, 1e-9)
def agree(ref, test):
    total = matched = 0; worst = 0.0
    for r, t in zip(ref, test):
        total += len(r)
        if not len(r) or not len(t): continue
        m = iou(r.boxes, t.boxes); used = set()
        for i in np.argsort(-r.scores):
            cand = [(m[i, j], j) for j in range(len(t)) if j not in used and t.labels[j] == r.labels[i]]
            if cand:
                best, j = max(cand)
                if best >= 0.99 and abs(float(t.scores[j] - r.scores[i])) <= 1e-4:
                    used.add(j); matched += 1; worst = max(worst, abs(float(t.scores[j] - r.scores[i])))
    return {"ref": total, "matched": matched, "fraction": matched / max(total, 1)}
cpu_t, cpu_d = run("cpu")
res = {}
for name, kw in (("cuda_fp32_default", {}), ("cuda_tf32", {"tf32": True})):
    t0 = time.time(); tens, dets = run("cuda", **kw)
    res[name] = {"seconds": time.time() - t0, "detections_vs_cpu_iou0.99_dscore1e-4": agree(cpu_d, dets),
                 "max_abs_dscore_pre_nms": float(max(np.abs(a["scores"] - b["scores"]).max() for a, b in zip(cpu_t, tens))),
                 "max_abs_dbox_px_pre_nms": float(max(np.abs(a["boxes"] - b["boxes"]).max() for a, b in zip(cpu_t, tens)))}
out["results"] = res
out["settings_before"] = before; out["settings_after"] = [str(getattr(o, a)) for o, a in _precision_settings()]
out["restored"] = out["settings_before"] == out["settings_after"]
out["seconds"] = time.time() - out.pop("started")
print(json.dumps(out, indent=1))
