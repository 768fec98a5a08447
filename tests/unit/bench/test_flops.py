"""Operation counts against hand arithmetic, and the peak-rate measurement that bounds FP32 speed-ups."""

from __future__ import annotations

import pytest
import torch

from gflv2_deploy.bench.backends import comparison_rows
from gflv2_deploy.bench.flops import count_gflop, measure_conv_peak, peak_layer_gflop
from gflv2_deploy.model.build import build_model


class _Small(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.grouped = torch.nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.grouped(torch.relu(self.conv(x)))
        return self.fc(y.mean(dim=(2, 3)))


def test_counts_conv_grouped_conv_and_linear_by_hand() -> None:
    # 2 x MACs: conv 8 x 16 x 20 outputs x (3*3*3); grouped 8 x 16 x 20 x (2*3*3); linear 5 x 8
    expected = 2 * (8 * 16 * 20 * 27 + 8 * 16 * 20 * 18 + 5 * 8)
    assert count_gflop(_Small(), (32, 40)) * 1e9 == pytest.approx(expected)
    assert count_gflop(_Small(), (32, 40), batch=3) * 1e9 == pytest.approx(3 * expected)


def test_gfl_head_tower_dominates_r50_and_the_network_is_untouched() -> None:
    net = build_model("gflv2_r50_fpn").eval()
    first = next(net.parameters())
    total = count_gflop(net, (640, 640))
    # head towers alone: 2 branches x 4 convs, 3x3, 256 -> 256, on 80^2+40^2+20^2+10^2+5^2 locations
    towers = 2 * 4 * 2 * 256 * 256 * 9 * (80**2 + 40**2 + 20**2 + 10**2 + 5**2) / 1e9
    assert towers < total < 2.5 * towers
    assert count_gflop(net, (1280, 1280)) == pytest.approx(4 * total, rel=0.01)  # work grows with the pixels
    assert next(net.parameters()) is first and first.device.type == "cpu"  # counted on a meta copy


@pytest.mark.usefixtures("one_torch_thread")
def test_peak_measurement_gives_a_rate_per_backend() -> None:
    rates = measure_conv_peak(["torch", "onnxruntime", "tensorrt"], threads=1, iterations=2, warmup=1)
    assert set(rates) == {"torch", "onnxruntime"}  # only backends it can run on the CPU
    assert all(1.0 < r < 1e5 for r in rates.values())
    assert peak_layer_gflop() == pytest.approx(2 * 256 * 256 * 9 * 80 * 80 / 1e9)


def test_conv_peak_of_openvino() -> None:
    pytest.importorskip("openvino")
    rates = measure_conv_peak(["openvino"], threads=1, iterations=2, warmup=1)
    assert set(rates) == {"openvino"} and 1.0 < rates["openvino"] < 1e5


def test_fraction_of_peak_and_speedup_ceiling() -> None:
    stats = lambda p50: {"p50_ms": p50}  # noqa: E731
    results = [{"backend": "torch", "model": "m", "shape": "64x64", "batch": 1, "infer": stats(100.0), "e2e": None, "infer_gflop_s": 50.0},
               {"backend": "onnxruntime", "model": "m", "shape": "64x64", "batch": 1, "infer": stats(50.0), "e2e": None,
                "infer_gflop_s": 100.0}]
    rows = {r["backend"]: r for r in comparison_rows(results, peak_gflop_s=200.0)}
    assert rows["onnxruntime"]["infer_speedup_vs_torch"] == 2.0 and rows["onnxruntime"]["fraction_of_peak"] == 0.5
    assert rows["torch"]["fraction_of_peak"] == 0.25 and rows["onnxruntime"]["speedup_ceiling_vs_torch"] == 4.0
    assert all(r["fraction_of_peak"] is None for r in comparison_rows(results))
