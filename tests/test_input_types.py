"""Every policy and loss takes the same input types (issue 24): uint8 /
float16 / bfloat16 / float32 images, uint8 / int32 / int64 labels, odd
batch sizes, channels-last; labels outside the classes are a ValueError.

uint8 images come back as float32 scaled to [0, 1] (divided by 255, as
torchvision's ToDtype(scale=True)); float images keep their dtype.  CPU float16 convolutions run here (torch >= 2.1),
so float16 is tested on every policy."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixviz import losses, mixing, models
from mixviz._validation import autocast_like

POLICIES = sorted(mixing.available())
IMAGE_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32)
LABEL_DTYPES = (torch.uint8, torch.int32, torch.int64)
SIZE, CLASSES = 8, 5


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return models.build("smallcnn", CLASSES, (3, SIZE, SIZE), width=8)


def _model(policy, net):
    if policy == "automix":
        return mixing.build_state("automix", net)
    return net


def _options(policy):
    return {"block_num": 2} if policy.startswith("puzzlemix") else {}


def _images(dtype, b, seed):
    gen = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, (b, 3, SIZE, SIZE), generator=gen, dtype=torch.uint8)
    return torch.rand(b, 3, SIZE, SIZE, generator=gen).to(dtype)


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(image_dtype=st.sampled_from(IMAGE_DTYPES), label_dtype=st.sampled_from(LABEL_DTYPES),
       b=st.sampled_from([1, 3, 5]), channels_last=st.booleans(), seed=st.integers(0, 2**16))
def test_every_policy_takes_every_input_type(net, policy, image_dtype, label_dtype, b, channels_last, seed):
    x = _images(image_dtype, b, seed)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, CLASSES, (b,), generator=torch.Generator().manual_seed(seed)).to(label_dtype)
    batch = mixing.mix(policy, x, y, generator=torch.Generator().manual_seed(seed), model=_model(policy, net),
                       num_classes=CLASSES, **_options(policy))
    want = torch.float32 if image_dtype == torch.uint8 else image_dtype
    assert batch.inputs.dtype == want and batch.inputs.shape == x.shape
    assert batch.y_a.dtype == batch.y_b.dtype == torch.int64
    assert torch.equal(batch.y_a, y.long())
    assert bool(((batch.lam >= 0) & (batch.lam <= 1)).all())
    assert bool(torch.isfinite(batch.inputs.float()).all())
    if image_dtype == torch.uint8:  # scaled to [0, 1], as mixviz's models and saliency expect
        assert float(batch.inputs.max()) <= 1.0
    if policy == "none" or batch.inputs.dtype != torch.float32:
        pass
    elif channels_last:  # the memory format changes nothing but the layout
        again = mixing.mix(policy, x.contiguous(), y, generator=torch.Generator().manual_seed(seed),
                           model=_model(policy, net), num_classes=CLASSES, **_options(policy))
        if policy != "automix":  # automix's fresh state has its own random mixer
            torch.testing.assert_close(batch.inputs.contiguous(), again.inputs, atol=1e-4, rtol=1e-4)
    if batch.layer is not None:  # a float16 batch in a float32 model: the user's autocast, as in training
        with autocast_like(batch.inputs):
            logits = mixing.forward(net, batch)
    else:
        logits = torch.randn(b, CLASSES)
    for name in ("mixup_ce", "dm"):
        assert torch.isfinite(losses.build(name, CLASSES)(logits, batch))


@pytest.mark.parametrize("policy", POLICIES)
def test_a_label_outside_the_classes_is_a_value_error_in_every_policy(net, policy):
    x, y = torch.rand(4, 3, SIZE, SIZE), torch.tensor([0, 1, 2, CLASSES])
    with pytest.raises(ValueError, match=r"y must lie in \[0, 5\)"):
        mixing.mix(policy, x, y, model=_model(policy, net), num_classes=CLASSES, **_options(policy))
    with pytest.raises(ValueError, match=r"lie in \[0, 5\)"):
        mixing.Mix(policy, num_classes=CLASSES, model=_model(policy, net), **_options(policy))(x, y) \
            if policy != "manifold" else mixing.mix(policy, x, y, num_classes=CLASSES)


@pytest.mark.parametrize("policy", ["saliencymix", "puzzlemix", "puzzlemix_lite", "automix"])
def test_dynamic_policies_check_labels_against_the_models_width(net, policy):
    """No num_classes given: the model's output width is the class count (SaliencyMix looks at the model
    only with the gradient saliency; its model-free default has no width to check against)."""
    x, y = torch.rand(4, 3, SIZE, SIZE), torch.tensor([0, 1, 2, CLASSES])
    mixer = _model(policy, net)
    if policy == "automix":
        mixer.train()
    extra = {"saliency": "gradient"} if policy == "saliencymix" else {}
    with pytest.raises(ValueError, match=r"y must lie in \[0, 5\)"):
        mixing.mix(policy, x, y, model=mixer, **_options(policy), **extra)


def test_uint8_cutmix_and_int32_puzzlemix(net):
    x = torch.randint(0, 256, (4, 3, SIZE, SIZE), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 3])
    cut = mixing.mix("cutmix", x, y, generator=torch.Generator().manual_seed(0))
    assert cut.inputs.dtype == torch.float32
    mask = cut.mask
    xf = x.float() / 255
    torch.testing.assert_close(cut.inputs, mask * xf + (1 - mask) * xf[cut.index])
    puzzle = mixing.mix("puzzlemix", x.float() / 255, y.int(), model=net, block_num=2,
                        generator=torch.Generator().manual_seed(0))
    assert puzzle.y_a.dtype == torch.int64
    with pytest.raises(TypeError, match="mixing.mix"):
        mixing.cutmix(x, y)  # a direct call says where uint8 is converted


def test_losses_take_labels_of_any_integer_dtype():
    logits, y = torch.randn(4, CLASSES), torch.tensor([0, 1, 2, 3])
    for name in ("ce", "mixup_ce", "dm"):
        want = losses.build(name, CLASSES)(logits, y)
        for dtype in (torch.uint8, torch.int32):
            torch.testing.assert_close(losses.build(name, CLASSES)(logits, y.to(dtype)), want)
