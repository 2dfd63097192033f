"""The op tests run at two threads or more: the kernels split their work across threads
(at::parallel_for), and `make test` runs every other test at one thread (OMP_NUM_THREADS=1 beside
two pytest workers), so a race, or a split that changes a result, must show here."""

import pytest
import torch


@pytest.fixture(autouse=True)
def parallel_kernels():
    before = torch.get_num_threads()
    torch.set_num_threads(max(2, before))
    yield
    torch.set_num_threads(before)
