"""Whole anti-aliased models against the plain model they come from: speed and what it buys.

Models, written here by hand (torchvision does not import beside the local CPU torch): a
torchvision-style ResNet-18 and MobileNetV2 (depthwise strided 3x3 convs), 1000 classes,
random init (seed 0). Variants of each, all from the same plain weights:

- ``plain``;
- ``blur``: ``antialias(model)``: every strided conv a ``BlurConv2d`` (default ``fold=None``:
  each takes its cheapest exact path), max pools ``MaxBlurPool2d``;
- ``blur composition``: the same with ``fold=False`` on every ``BlurConv2d``: stride-1 convs
  then blur pools, the cost before the exact rewrites (``antialias()`` as it was);
- ``folded``: ``antialias(model, mode="folded")`` (``fold=True``: an exact rewrite everywhere);
- ``polyphase``: ``antialias(model, mode="polyphase")``;
- ResNet-18 only, where installed (``pip install --no-deps antialiased-cnns``, a
  non-commercial licence: a benchmark peer only): antialiased-cnns' ``resnet18(filter_size=3)``
  (its default ``pool_only=True``: the 7x7 stem stays a plain strided conv) and
  ``resnet18(filter_size=3, pool_only=False)`` (its stem at stride 1, then a blur pool, as
  ``antialias()`` does), with their own random init.

Each row: ``fwd`` is inference (eval mode, ``torch.no_grad``); ``fwd+bwd`` a training step
(train mode, forward and backward of the summed logits, no optimizer); both layouts
(``channels_last`` moves the model and the input). Ratios are to the plain model in the same
layout, measured interleaved in one run.

``other``: ``shift_consistency``, the share of top-1 predictions unchanged when a fixed set of
images is circularly shifted by 1..8 px along each axis (16 shifts per image), with the
batch-norm statistics re-estimated on that set first (random-init networks, so this measures
how stable the architecture's decision is under shifts, not accuracy); measured on the
contiguous rows. The images are crops of ``skimage.data`` pictures (smooth random noise when
scikit-image is not installed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._core import BenchCase

FAMILY = "models"
SHIFTS = tuple(range(1, 9))


# --- the models --------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """torchvision's ResNet basic block (a strided 1x1 conv shortcut when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


def resnet18(num_classes: int = 1000) -> nn.Module:
    """torchvision's ``resnet18`` layout: 7x7/2 stem, 3x3/2 max pool, four stages of two basic
    blocks (64, 128, 256, 512 channels; stages 2-4 start at stride 2)."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                               nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    c_in = 64
    for c_out, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        layers += [BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)]
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion, depthwise 3x3 (strided where the stage starts),
    1x1 projection; a residual connection when the shape is kept."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                       nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                   nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


def mobilenet_v2(num_classes: int = 1000) -> nn.Module:
    """MobileNetV2 (Sandler et al. 2018), width 1.0: a 3x3/2 stem, 17 inverted residual
    blocks (four strided depthwise convs), a 1x1 conv to 1280 channels, a linear head."""
    layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32),
                               nn.ReLU6(inplace=True)]
    c_in = 32
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            layers.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
            c_in = c
    layers += [nn.Conv2d(c_in, 1280, 1, bias=False), nn.BatchNorm2d(1280),
               nn.ReLU6(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(1280, num_classes)]
    return nn.Sequential(*layers)


MODELS = {"ResNet-18": resnet18, "MobileNetV2": mobilenet_v2}


def _plain(name: str) -> nn.Module:
    torch.manual_seed(0)
    return MODELS[name]()


def _composition(model: nn.Module) -> nn.Module:
    from equilayers.nn import BlurConv2d

    for m in model.modules():
        if isinstance(m, BlurConv2d):
            m.fold = False
    return model


def _variant(name: str, variant: str) -> nn.Module:
    from equilayers import antialias

    model = _plain(name)
    if variant == "plain":
        return model
    if variant == "blur":
        return antialias(model)
    if variant == "blur composition":
        return _composition(antialias(model))
    if variant in ("folded", "polyphase"):
        return antialias(model, mode=variant)
    import antialiased_cnns  # the peer rows; ImportError marks them skipped

    torch.manual_seed(0)
    return antialiased_cnns.resnet18(pretrained=False, filter_size=3,
                                     pool_only=variant.endswith("filter_size=3)"))


class TrainOrInfer(nn.Module):
    """Runs ``model`` in train mode when autograd records (a training step) and in eval mode
    under ``torch.no_grad`` (inference): one row times both."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.model.train(torch.is_grad_enabled())
        return self.model(x)


# --- shift consistency ---------------------------------------------------------------------------
def images(n: int, size: int) -> torch.Tensor:
    """``n`` fixed RGB crops of ``size x size`` in [0, 1] (seed 0)."""
    gen = torch.Generator().manual_seed(0)
    try:
        from skimage import data, transform
    except ImportError:
        x = torch.rand(n, 3, size // 8, size // 8, generator=gen)
        return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    pictures = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(),
                data.immunohistochemistry(), data.hubble_deep_field(), data.retina(),
                data.camera()]
    out = []
    for i in range(n):
        im = torch.tensor(pictures[i % len(pictures)], dtype=torch.float32) / 255
        im = im[..., None].expand(*im.shape, 3) if im.dim() == 2 else im[..., :3]
        h, w = im.shape[:2]
        side = int(min(h, w) * (0.5 + 0.5 * torch.rand(1, generator=gen).item()))
        top = int(torch.randint(h - side + 1, (1,), generator=gen))
        left = int(torch.randint(w - side + 1, (1,), generator=gen))
        crop = im[top:top + side, left:left + side].numpy()
        out.append(torch.tensor(transform.resize(crop, (size, size), anti_aliasing=True),
                                dtype=torch.float32).permute(2, 0, 1))
    return torch.stack(out)


@torch.no_grad()
def shift_consistency(model: nn.Module, x: torch.Tensor, batch: int) -> float:
    """The share of top-1 predictions of ``model`` unchanged under circular shifts of ``x`` by
    1..8 px along H and along W, after re-estimating its batch-norm statistics on ``x``."""
    from equilayers import recalibrate_batch_norm

    recalibrate_batch_norm(model, x, batch_size=batch)

    def predict(v):
        return torch.cat([model(v[i:i + batch]).argmax(1) for i in range(0, len(v), batch)])

    base = predict(x)
    same = [predict(torch.roll(x, s, dim)) == base for s in SHIFTS for dim in (-2, -1)]
    return torch.stack(same).float().mean().item()


# --- the cases -----------------------------------------------------------------------------------
def _settings(quick: bool) -> tuple[int, int, int]:
    """``(batch, size, consistency images)``."""
    return (2, 64, 4) if quick else (16, 160, 16)


def cases(quick: bool) -> list[BenchCase]:
    batch, size, n_images = _settings(quick)
    variants = ["plain", "blur", "blur composition", "folded", "polyphase"]
    peers = ["antialiased-cnns resnet18(filter_size=3)",
             "antialiased-cnns resnet18(filter_size=3, pool_only=False)"]
    out = []
    for name in MODELS:
        for fmt, layout in [(torch.contiguous_format, "contiguous"),
                            (torch.channels_last, "channels_last")]:
            for variant in variants + (peers if name == "ResNet-18" else []):

                def make(device=None, name=name, variant=variant, fmt=fmt):
                    model = _variant(name, variant).to(device=device, memory_format=fmt)
                    x = torch.randn(batch, 3, size, size, generator=torch.Generator()
                                    .manual_seed(1)).to(device)
                    return TrainOrInfer(model), x.contiguous(memory_format=fmt)

                def metrics(device=None, name=name, variant=variant):
                    model = _variant(name, variant).to(device)
                    x = images(n_images, size).to(device)
                    return {"shift_consistency": shift_consistency(model, x, batch)}

                out.append(BenchCase(
                    f"{name} {variant} {layout} b{batch} {size}x{size}", FAMILY, make,
                    floor=(None if variant == "plain" else
                           f"{name} plain {layout} b{batch} {size}x{size}"),
                    peer="antialiased-cnns" if variant in peers else None,
                    metrics=metrics if layout == "contiguous" else None,
                    params={"model": name, "variant": variant, "layout": layout,
                            "batch": batch, "size": size}))
    return out


def main(argv: list[str] | None = None) -> None:
    """Print each variant's parameter count and shift consistency (no timing)."""
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    batch, size, n_images = _settings(args.quick)
    x = images(n_images, size)
    for case in cases(args.quick):
        if case.metrics is None:
            continue
        model = _variant(case.params["model"], case.params["variant"])
        n = sum(p.numel() for p in model.parameters())
        print(f"{case.name}: {n} parameters, shift consistency "
              f"{shift_consistency(model, x, batch):.3f}")


if __name__ == "__main__":
    main()
