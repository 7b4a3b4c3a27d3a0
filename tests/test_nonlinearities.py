"""NormNonlinearity's thresholding init and GatedNonlinearity's separate gates:
values, shapes, gradients, module == functional, state_dict."""

import pytest
import torch

from equilayers import functional as EF
from equilayers import nn as enn


def _x(gen, shape=(2, 3, 5, 6, 6)):
    return torch.randn(shape, generator=gen, dtype=torch.float64)


# --- NormNonlinearity: thresholds at init -------------------------------------------------

def test_norm_relu_thresholds_at_init(gen):
    m = enn.NormNonlinearity(3, 2, dtype=torch.float64)
    assert (m.bias[:, 1:] == -1).all() and (m.bias[:, 0] == 0).all()
    assert (enn.NormNonlinearity(3, 2, order0="norm").bias == -1).all()
    assert (enn.NormNonlinearity(3, 2, threshold=0.25).bias[:, 1:] == -0.25).all()
    x = _x(gen)
    y = m(x)
    mag = x[:, :, 1:].unflatten(2, (2, 2)).pow(2).sum(3).add(1e-6).sqrt()
    want = x[:, :, 1:].unflatten(2, (2, 2)) * (torch.relu(mag - 1) / mag).unsqueeze(3)
    torch.testing.assert_close(y[:, :, 1:], want.flatten(2, 3))
    torch.testing.assert_close(y[:, :, 0], torch.relu(x[:, :, 0]))
    cut = (mag < 1).unsqueeze(3).expand(-1, -1, -1, 2, -1, -1).flatten(2, 3)
    assert cut.any() and (y[:, :, 1:][cut] == 0).all()  # weak fields are cut from the start
    assert "threshold" not in repr(m) and "threshold=0.25" in repr(
        enn.NormNonlinearity(3, 2, threshold=0.25))


def test_norm_relu_zero_threshold_is_the_former_identity_on_orders(gen):
    m = enn.NormNonlinearity(3, 2, dtype=torch.float64, threshold=0.0)
    x = _x(gen)
    torch.testing.assert_close(m(x)[:, :, 1:], x[:, :, 1:], rtol=1e-5, atol=1e-6)


def test_norm_relu_old_checkpoint_keeps_its_meaning(gen):
    """The bias is still added (``function(|v| + b)``): a state_dict saved with the former
    zero init loads into the new module and gives the former output."""
    old_state = {"bias": torch.zeros(3, 3, dtype=torch.float64)}
    m = enn.NormNonlinearity(3, 2, dtype=torch.float64)
    m.load_state_dict(old_state)
    x = _x(gen)
    torch.testing.assert_close(m(x), EF.norm_nonlinearity(x, torch.zeros(3, 3,
                                                                          dtype=torch.float64), 2))
    with pytest.raises(RuntimeError, match="log_bias"):  # an e2cnn-style key fails clearly
        m.load_state_dict({"log_bias": torch.zeros(3, 3)})


# --- GatedNonlinearity with separate gates ---------------------------------------------------

def test_gated_first_half_formula_and_shapes(gen):
    x = _x(gen, (2, 6, 5, 4, 4))
    y = enn.GatedNonlinearity(2, gates="first_half")(x)
    assert y.shape == (2, 3, 5, 4, 4)
    gate, gated = x[:, :3, :1], x[:, 3:]
    torch.testing.assert_close(y[:, :, 0], torch.relu(gated[:, :, 0]))
    torch.testing.assert_close(y[:, :, 1:], torch.sigmoid(gate) * gated[:, :, 1:])
    # the gate fields' higher orders are never read
    x2 = x.clone()
    x2[:, :3, 1:] = 123.0
    torch.testing.assert_close(enn.GatedNonlinearity(2, gates="first_half")(x2), y)
    torch.testing.assert_close(EF.gated_nonlinearity(x, 2, gates="first_half"), y)
    assert enn.GatedNonlinearity(0, gates="first_half")(x[:, :, :1]).shape == (2, 3, 1, 4, 4)
    assert "gates='first_half'" in repr(enn.GatedNonlinearity(2, gates="first_half"))
    # the default is unchanged: each field's own a_0
    z = enn.GatedNonlinearity(2)(x)
    torch.testing.assert_close(z[:, :, 1:], torch.sigmoid(x[:, :, :1]) * x[:, :, 1:])


def test_gated_bad_input(gen):
    with pytest.raises(ValueError, match=r"even number of fields.*C=3"):
        EF.gated_nonlinearity(_x(gen, (1, 3, 5, 2, 2)), 2, gates="first_half")
    with pytest.raises(ValueError, match="gates must be"):
        EF.gated_nonlinearity(_x(gen), 2, gates="second_half")
