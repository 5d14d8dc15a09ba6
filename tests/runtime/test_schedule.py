"""Compute-matched schedules: data order and randomness as functions of (seed, step), warmup + cosine, AdamW groups."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optidel.runtime.schedule import StepSampler, param_groups, warmup_cosine


def test_every_epoch_visits_each_image_once_and_batches_cross_epochs():
    s = StepSampler(n_images=10, batch_size=4, seed=1)
    stream = np.concatenate([s.indices(t) for t in range(5)])  # 20 items = 2 epochs
    assert sorted(stream[:10]) == list(range(10))
    assert sorted(stream[10:]) == list(range(10))
    assert not np.array_equal(stream[:10], stream[10:])  # a new permutation each epoch
    assert s.epoch_of(5) == pytest.approx(2.0)


def test_pool_smaller_than_batch_repeats_within_the_batch():
    s = StepSampler(n_images=3, batch_size=8, seed=0)
    idx = s.indices(0)
    assert len(idx) == 8 and set(idx) == {0, 1, 2}


def test_order_and_generators_depend_only_on_seed_and_step():
    a, b = StepSampler(50, 8, seed=7), StepSampler(50, 8, seed=7)
    for t in (0, 3, 17):  # queried out of order on purpose: no hidden state
        assert np.array_equal(a.indices(t), b.indices(t))
        assert torch.equal(torch.rand(5, generator=a.generator(t)), torch.rand(5, generator=b.generator(t)))
    assert not torch.equal(torch.rand(5, generator=a.generator(1)), torch.rand(5, generator=a.generator(2)))
    assert not np.array_equal(StepSampler(50, 8, seed=8).indices(0), a.indices(0))


def test_warmup_then_cosine():
    total, warm = 100, 10
    lrs = [warmup_cosine(s, total, warm) for s in range(total)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(x < y for x, y in zip(lrs[:10], lrs[1:10], strict=False))  # rising during warmup
    assert all(x >= y for x, y in zip(lrs[10:], lrs[11:], strict=False))  # then never rising
    assert 0 < lrs[-1] < 0.01  # close to 0 but the last step still learns
    assert warmup_cosine(99, total, warm, min_ratio=0.5) > 0.5
    assert warmup_cosine(0, 5, 0) == pytest.approx(1.0)  # no warmup: starts at the peak


def test_param_groups_skip_decay_on_biases_norms_and_tokens():
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    m.register_parameter("pos_embed", torch.nn.Parameter(torch.zeros(1, 3, 4)))
    frozen = torch.nn.Parameter(torch.zeros(2, 2), requires_grad=False)
    m.register_parameter("frozen", frozen)
    decay, no_decay = param_groups(m.named_parameters(), 0.05)
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 4])]
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert len(no_decay["params"]) == 4  # linear bias, norm weight + bias, pos_embed (frozen left out)


def test_warmup_cosine_decays_to_zero_as_the_finetune_schedule():
    """Fine-tuning uses this schedule with min_ratio 0 (it replaced a copy in downstream/finetune.py)."""
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0)
