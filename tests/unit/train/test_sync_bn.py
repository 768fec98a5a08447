"""BatchNorm conversion for multi-process training (the cross-process statistics are tested under torchrun)."""

from __future__ import annotations

import torch
from torch import nn

from gflv2_deploy.model.backbone import ResNet
from gflv2_deploy.train.sync_bn import AllReduceBatchNorm2d, synchronise_batchnorm


def test_conversion_keeps_names_values_flags_and_outputs() -> None:
    torch.manual_seed(0)
    plain = ResNet(depth=18, base_width=8, frozen_stages=1, norm_eval=False)
    for m in plain.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    converted = ResNet(depth=18, base_width=8, frozen_stages=1, norm_eval=False)
    converted.load_state_dict(plain.state_dict())
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert synchronise_batchnorm(converted, torch.device("cpu")) == n_bn
    assert all(type(m) is AllReduceBatchNorm2d for m in converted.modules() if isinstance(m, nn.BatchNorm2d))
    assert list(converted.state_dict()) == list(plain.state_dict())
    for (name, a), b in zip(plain.state_dict().items(), converted.state_dict().values()):
        assert torch.equal(a, b), name
    assert [p.requires_grad for p in converted.parameters()] == [p.requires_grad for p in plain.parameters()]
    plain.train()
    converted.train()
    assert not converted.bn1.training and converted.layer2[0].bn1.training  # frozen stem stays in eval mode
    x = torch.randn(2, 3, 64, 64)
    for mode in ("train", "eval"):  # without a process group the converted layers are plain BatchNorm
        getattr(plain, mode)()
        getattr(converted, mode)()
        for a, b in zip(plain(x), converted(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(plain.state_dict().values(), converted.state_dict().values()):
        assert torch.equal(a, b)  # running statistics moved identically
