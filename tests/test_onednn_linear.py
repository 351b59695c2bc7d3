import pytest
import torch
import torch.nn as nn

from mae_core.onednn_linear import OneDnnLinear, available, use_onednn_linears
from tests.conftest import tiny_mae

pytestmark = pytest.mark.skipif(not available(), reason="this torch has no oneDNN linear op")


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(7, 33), (2, 5, 33)])
def test_matches_f_linear_values_and_gradients(bias, shape):
    ref = nn.Linear(33, 19, bias=bias)
    fast = OneDnnLinear(33, 19, bias=bias)
    fast.load_state_dict(ref.state_dict())
    x1 = torch.randn(*shape, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1, y2 = ref(x1), fast(x2)
    assert torch.allclose(y1, y2, atol=1e-5)
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-5)
    assert torch.allclose(ref.weight.grad, fast.weight.grad, atol=1e-4)
    if bias:
        assert torch.allclose(ref.bias.grad, fast.bias.grad, atol=1e-5)


def test_swapped_model_keeps_state_dict_and_gradients():
    ref = tiny_mae(img_size=32)
    fast = tiny_mae(img_size=32)
    fast.load_state_dict(ref.state_dict())
    use_onednn_linears(fast)
    assert any(type(m) is OneDnnLinear for m in fast.modules())
    assert list(fast.state_dict()) == list(ref.state_dict())
    x, noise = torch.randn(2, 3, 32, 32), torch.rand(2, 4)
    l1, l2 = ref(x, noise=noise)[0], fast(x, noise=noise)[0]
    assert torch.allclose(l1, l2, atol=1e-5)
    l1.backward()
    l2.backward()
    for (name, p), q in zip(ref.named_parameters(), fast.parameters()):
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-5, rtol=1e-4), name
