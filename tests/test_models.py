import pytest
import torch

from mixviz import models


@pytest.mark.parametrize("name,shape,classes", [
    ("mlp", (2,), 2), ("smallcnn", (3, 32, 32), 10), ("smallcnn", (1, 24, 40), 7),
    ("preact_resnet18", (3, 32, 32), 100), ("resnet18", (3, 64, 64), 5), ("resnet18", (1, 32, 32), 3),
])
def test_build_output_shape(name, shape, classes):
    model = models.build(name, classes, shape)
    out = model(torch.rand(3, *shape))
    assert out.shape == (3, classes)
    assert torch.isfinite(out).all()


def test_preact_resnet18_size_matches_the_papers_network():
    # The CIFAR PreAct-ResNet-18 of the mixup papers has about 11.2 M parameters at 100 classes.
    n = sum(p.numel() for p in models.build("preact_resnet18", 100, (3, 32, 32)).parameters())
    assert 11.1e6 < n < 11.3e6


def test_normalize_layer_standardises_per_channel():
    model = models.build("smallcnn", 4, (3, 8, 8), mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    norm = model[0]
    x = torch.rand(2, 3, 8, 8)
    want = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(norm(x), want)


def test_last_conv_is_exposed_for_gradcam():
    for name in ("smallcnn", "preact_resnet18", "resnet18"):
        model = models.build(name, 3, (3, 32, 32))
        assert isinstance(model.last_conv, torch.nn.Module)


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="vgg", num_classes=3, in_shape=(3, 8, 8)), "name"),
    (dict(name="smallcnn", num_classes=0, in_shape=(3, 8, 8)), "num_classes"),
    (dict(name="smallcnn", num_classes=3, in_shape=(2,)), "in_shape"),
    (dict(name="mlp", num_classes=3, in_shape=(3, 8, 8)), "in_shape"),
    (dict(name="smallcnn", num_classes=3, in_shape=(3, 8, 8), mean=(0.5,)), "mean"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        models.build(**kwargs)
