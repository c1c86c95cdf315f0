import pytest
import torch

CUDA = torch.cuda.is_available()

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda,
                                pytest.mark.skipif(not CUDA, reason="no CUDA GPU visible")]),
]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param
