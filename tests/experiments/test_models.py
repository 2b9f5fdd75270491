"""Tests of the experiments' model zoo: shapes, the slot convention, LocallyConnected2d, init."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dynamic_dropconnect.experiments.models import (
    MODELS,
    LocallyConnected2d,
    SlotModel,
    build_model,
    xavier_init,
)
from dynamic_dropconnect.experiments.models.vit import Attention

# (name, num_classes, in_channels, image_size): each model on its typical input.
CASES = [
    ("simplecnn1", 10, 1, 28),  # MNIST
    ("simplecnn1", 10, 3, 32),  # CIFAR-10
    ("simplecnn2", 10, 3, 32),  # CIFAR-10
    ("simplecnn2", 5, 2, 32),  # small NORB
    ("alexnet", 10, 3, 224),  # CIFAR-10 upsampled
    ("alexnet-norb", 6, 2, 133),  # the authors' NORB input
    ("alexnet-norb", 5, 2, 96),  # small NORB at full size
    ("vgg13bn", 10, 3, 32),
    ("vgg13bn", 100, 3, 32),
    ("vgg13bn", 5, 2, 32),
    ("mlp", 10, 1, 8),  # scikit-learn digits
    ("mlp", 10, 1, 28),  # MNIST
    ("resnet18", 10, 3, 32),
    ("vit", 10, 3, 32),
]
IDS = [f"{n}-{c}x{s}px-{k}cls" for n, k, c, s in CASES]
# The paper-sized convnets, ResNet and ViT take seconds per check: slow (make test-fast skips).
BIG = {"alexnet", "alexnet-norb", "vgg13bn", "resnet18", "vit"}


def params(cases: list[tuple[str, int, int, int]], ids: list[str]) -> list[object]:
    """``cases`` as pytest params with their ids, the big models marked slow."""
    return [
        pytest.param(case, id=name, marks=[pytest.mark.slow] if case[0] in BIG else [])
        for case, name in zip(cases, ids, strict=True)
    ]


def make(case: tuple[str, int, int, int], **kwargs: object) -> SlotModel:
    name, num_classes, in_channels, image_size = case
    torch.manual_seed(0)
    return build_model(
        name, num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs
    )


def batch(case: tuple[str, int, int, int], n: int = 2) -> torch.Tensor:
    _, _, in_channels, image_size = case
    return torch.randn(
        n, in_channels, image_size, image_size, generator=torch.Generator().manual_seed(1)
    )


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def test_registry_names() -> None:
    assert set(MODELS) == {
        "simplecnn1",
        "simplecnn2",
        "alexnet",
        "alexnet-norb",
        "vgg13bn",
        "mlp",
        "resnet18",
        "vit",
        "char-lstm",
        "char-transformer",
    }


@pytest.mark.parametrize("case", params(CASES, IDS))
def test_output_shape(case: tuple[str, int, int, int]) -> None:
    model = make(case).eval()
    with torch.no_grad():
        out = model(batch(case))
    assert out.shape == (2, case[1])
    assert torch.isfinite(out).all()


@pytest.mark.slow
def test_flatten_sizes_of_the_spec() -> None:
    assert make(("simplecnn1", 10, 1, 28)).linear1.in_features == 256
    assert make(("simplecnn1", 10, 3, 32)).linear1.in_features == 576
    model = make(("simplecnn2", 10, 3, 32))
    assert (model.linear1.in_features, model.linear1.out_features) == (1568, 128)
    assert make(("mlp", 10, 1, 8)).linear1.in_features == 64
    assert make(("mlp", 10, 1, 28)).linear1.in_features == 784
    assert make(("vgg13bn", 10, 3, 32)).linear1.in_features == 512
    assert make(("resnet18", 10, 3, 32)).linear1.in_features == 512
    assert make(("alexnet-norb", 6, 2, 133)).linear1.in_features == 2304
    assert make(("alexnet-norb", 5, 2, 96)).linear1.in_features == 256


@pytest.mark.slow
def test_known_parameter_counts() -> None:
    # SimpleCNN1 on MNIST, counted by hand; AlexNet equals torchvision's alexnet(num_classes=10).
    assert sum(p.numel() for p in make(("simplecnn1", 10, 1, 28)).parameters()) == 94_826
    assert sum(p.numel() for p in make(("alexnet", 10, 3, 224)).parameters()) == 57_044_810
    # The authors' models, as SPEC section 4 counts them (0.99 M, 29.98 M, 9.94 M).
    assert sum(p.numel() for p in make(("simplecnn2", 10, 3, 32)).parameters()) == 989_178
    assert sum(p.numel() for p in make(("alexnet-norb", 6, 2, 133)).parameters()) == 29_982_758
    assert sum(p.numel() for p in make(("vgg13bn", 10, 3, 32)).parameters()) == 9_941_322
    wide = make(("simplecnn2", 10, 3, 32), variant="wide")
    assert sum(p.numel() for p in wide.parameters()) == 3_023_658


def _layer_types(sequential: nn.Sequential) -> list[str]:
    return [type(m).__name__ for m in sequential]


def test_simplecnn1_relus_follow_the_authors_code() -> None:
    # SimpleCNN1_mnist.py: the duplicated "relu1" key leaves one ReLU, after conv2.
    mnist = make(("simplecnn1", 10, 1, 28))
    assert mnist.variant == "mnist"
    assert _layer_types(mnist.features) == [
        "Conv2d", "MaxPool2d", "Conv2d", "ReLU", "AvgPool2d", "Conv2d", "AvgPool2d", "Flatten"
    ]  # fmt: skip
    # SimpleCNN1_cifar10.py: ReLUs after conv2 and conv3, none after conv1.
    cifar = make(("simplecnn1", 10, 3, 32))
    assert cifar.variant == "cifar10"
    assert _layer_types(cifar.features) == [
        "Conv2d", "MaxPool2d", "Conv2d", "ReLU", "AvgPool2d", "Conv2d", "ReLU", "AvgPool2d",
        "Flatten",
    ]  # fmt: skip
    relu = make(("simplecnn1", 10, 1, 28), variant="relu")
    assert _layer_types(relu.features).count("ReLU") == 3
    assert "variant='mnist'" in repr(mnist)
    with pytest.raises(ValueError, match=r"variant 'x'.*auto, mnist, cifar10, relu"):
        make(("simplecnn1", 10, 1, 28), variant="x")


def test_simplecnn2_follows_the_authors_code() -> None:
    model = make(("simplecnn2", 10, 3, 32))
    assert _layer_types(model.features) == [
        "Conv2d", "ReLU", "MaxPool2d", "LocalResponseNorm", "Conv2d", "ReLU",
        "LocalResponseNorm", "MaxPool2d", "LocallyConnected2d", "ReLU", "LocallyConnected2d",
        "ReLU", "Flatten",
    ]  # fmt: skip
    lrn = model.features[3]
    assert (lrn.size, lrn.alpha, lrn.beta) == (5, 1e-3, 0.75)
    locals_ = [m for m in model.features if isinstance(m, LocallyConnected2d)]
    assert [(m.in_channels, m.out_channels) for m in locals_] == [(64, 16), (16, 32)]
    # The authors' xavier_uniform_ on (1, C*9, 49, O) weights and (1, O, 7, 7) biases.
    bounds = [m.authors_xavier_bounds() for m in locals_]
    assert bounds[0][0] == pytest.approx(math.sqrt(6 / (576 * 49 * 16 + 49 * 16)))
    assert bounds[1][0] == pytest.approx(math.sqrt(6 / (144 * 49 * 32 + 49 * 32)))
    assert [round(b[0], 4) for b in bounds] == [0.0036, 0.0051]
    assert bounds[0][1] == pytest.approx(math.sqrt(6 / (16 * 49 + 49)))
    with pytest.raises(ValueError, match="variant 'x'"):
        make(("simplecnn2", 10, 3, 32), variant="x")


def test_alexnet_norb_follows_the_authors_code() -> None:
    model = make(("alexnet-norb", 6, 2, 133))
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (2, 96, 11, 4), (96, 256, 5, 1), (256, 384, 3, 1), (384, 384, 3, 1), (384, 256, 3, 1)
    ]  # fmt: skip
    assert convs[0].padding == (0, 0)
    assert (model.linear1.out_features, model.linear2.out_features) == (4096, 4096)
    with pytest.raises(ValueError, match="too small"):
        make(("alexnet-norb", 5, 2, 32))


@pytest.mark.parametrize("case", params(CASES, IDS))
def test_slot_convention(case: tuple[str, int, int, int]) -> None:
    model = make(case).eval()
    assert model.weight_slots == ("linear1",)
    assert isinstance(model.linear1, nn.Linear)
    for act in model.activation_slots:
        assert type(getattr(model, act)) is nn.ReLU
    for drop in model.dropout_slots:
        assert type(getattr(model, drop)) is nn.Identity
    expected_drops = ("drop1", "drop2") if case[0] == "vgg13bn" else ("drop1",)
    assert model.dropout_slots == expected_drops
    # No regularization inside the models.
    assert not any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())

    x = batch(case)
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        model.linear1.register_forward_hook(lambda m, i, o: seen.__setitem__("lin", o)),
        model.act1.register_forward_hook(lambda m, i, o: seen.__setitem__("act_in", i[0])),
        model.drop1.register_forward_hook(lambda m, i, o: seen.__setitem__("drop_in", i[0])),
    ]
    with torch.no_grad():
        reference = model(x)
    for h in hooks:
        h.remove()
    # act1 receives the pre-activation of linear1 (what Standout needs); drop1 gets act1's output.
    assert seen["act_in"] is seen["lin"]
    assert torch.equal(seen["drop_in"], F.relu(seen["lin"]))

    # Replacing a dropout slot by a zeroing module changes the output and cuts the input off.
    for drop in model.dropout_slots:
        original = getattr(model, drop)
        setattr(model, drop, Zero())
        with torch.no_grad():
            out = model(x)
        setattr(model, drop, original)
        assert not torch.allclose(out, reference)
        torch.testing.assert_close(out[0], out[1])


@pytest.mark.parametrize(
    ("stride", "padding", "bias"), [(1, 1, True), (1, 0, False), (2, 1, True), (1, (2, 0), True)]
)
def test_locally_connected_matches_naive_loop(
    stride: int, padding: int | tuple[int, int], bias: bool
) -> None:
    torch.manual_seed(0)
    n, c_in, c_out, (h, w), (kh, kw) = 3, 4, 5, (7, 6), (3, 2)
    layer = LocallyConnected2d(c_in, c_out, (h, w), (kh, kw), padding, bias, stride=stride).double()
    if bias:
        nn.init.normal_(layer.bias)
    x = torch.randn(n, c_in, h, w, dtype=torch.float64)
    out = layer(x)

    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    out_h, out_w = (h + 2 * ph - kh) // stride + 1, (w + 2 * pw - kw) // stride + 1
    assert layer.weight.shape == (out_h * out_w, c_out, c_in * kh * kw)
    assert out.shape == (n, c_out, out_h, out_w)
    xp = F.pad(x, (pw, pw, ph, ph))
    naive = torch.zeros(n, c_out, out_h, out_w, dtype=torch.float64)
    for i in range(out_h):
        for j in range(out_w):
            patch = xp[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            for o in range(c_out):
                filt = layer.weight[i * out_w + j, o].view(c_in, kh, kw)
                naive[:, o, i, j] = (patch * filt).sum(dim=(1, 2, 3))
                if bias:
                    naive[:, o, i, j] += layer.bias[o, i, j]
    torch.testing.assert_close(out, naive)


@pytest.mark.slow
def test_locally_connected_weights_are_unshared_and_check_size() -> None:
    torch.manual_seed(0)
    layer = LocallyConnected2d(2, 3, 5, 3, 1).double()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    # With all filters equal, it is a convolution.
    with torch.no_grad():
        layer.weight.copy_(layer.weight[0:1].expand_as(layer.weight))
        layer.bias.zero_()
    conv = F.conv2d(x, layer.weight[0].view(3, 2, 3, 3), padding=1)
    torch.testing.assert_close(layer(x), conv)
    with pytest.raises(ValueError, match="built for input"):
        layer(torch.randn(1, 2, 6, 6, dtype=torch.float64))


def test_vit_attention_equals_multihead_attention() -> None:
    torch.manual_seed(0)
    attn = Attention(12, 3)
    ref = nn.MultiheadAttention(12, 3, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(attn.qkv.weight)
        ref.in_proj_bias.copy_(attn.qkv.bias)
        ref.out_proj.weight.copy_(attn.proj.weight)
        ref.out_proj.bias.copy_(attn.proj.bias)
    x = torch.randn(2, 5, 12)
    torch.testing.assert_close(attn(x), ref(x, x, x, need_weights=False)[0])


@pytest.mark.parametrize(
    "case",
    params(
        [c for c in CASES if c[0] != "alexnet"] + [("alexnet", 10, 3, 64)],
        [i for i in IDS if not i.startswith("alexnet-3")] + ["alexnet-3x64px-10cls"],
    ),
)
def test_xavier_init(case: tuple[str, int, int, int]) -> None:
    model = xavier_init(make(case))
    checked = 0
    for module in model.modules():
        if isinstance(module, LocallyConnected2d) and module.xavier_fans == "authors":
            weight_bound, bias_bound = module.authors_xavier_bounds()
            assert 0.9 * weight_bound < module.weight.abs().max() <= weight_bound
            assert 0.9 * bias_bound < module.bias.abs().max() <= bias_bound  # not zero
            checked += 1
            continue
        if isinstance(module, LocallyConnected2d):
            fan_in, fan_out = module.fans
        elif isinstance(module, nn.Linear | nn.Conv2d):
            fan_in = module.weight[0].numel()
            fan_out = module.weight.shape[0] * module.weight[0, 0].numel()
        else:
            if isinstance(module, nn.BatchNorm2d | nn.LayerNorm):
                assert torch.equal(module.weight, torch.ones_like(module.weight))
            continue
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        w = module.weight.detach()
        assert w.abs().max() <= bound
        if w.numel() >= 1000:  # really Xavier, not PyTorch's smaller default bound
            assert w.abs().max() > 0.9 * bound
        if module.bias is not None:
            assert torch.equal(module.bias, torch.zeros_like(module.bias))
        checked += 1
    assert checked >= 2


@pytest.mark.slow
@pytest.mark.parametrize("case", params(CASES, IDS))
def test_all_parameters_get_gradients(case: tuple[str, int, int, int]) -> None:
    model = xavier_init(make(case)).train()
    out = model(batch(case))
    F.cross_entropy(out, torch.tensor([0, 1])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_build_model_kwargs_and_errors() -> None:
    model = build_model("MLP", num_classes=3, in_channels=1, image_size=8, hidden=32)
    assert (model.linear1.in_features, model.linear1.out_features) == (64, 32)
    assert model(torch.randn(4, 1, 8, 8)).shape == (4, 3)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("lenet", num_classes=10, in_channels=1, image_size=28)
    with pytest.raises(TypeError):
        build_model("simplecnn1", num_classes=10, in_channels=1, image_size=28, hidden=3)
    with pytest.raises(ValueError):
        build_model("simplecnn1", num_classes=10, in_channels=1, image_size=4)
    with pytest.raises(ValueError):
        build_model("vgg13bn", num_classes=10, in_channels=3, image_size=28)
    with pytest.raises(ValueError):
        build_model("vit", num_classes=10, in_channels=3, image_size=30)


def test_vgg13bn_structure() -> None:
    model = make(("vgg13bn", 10, 3, 32))
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512, 512, 512]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 10
    assert model.linear3.in_features == 512
