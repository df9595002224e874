"""Data-parallel helpers without a GPU: which device a rank uses, and rank 0's answers."""
from __future__ import annotations

import argparse

import pytest
import torch

from lightlens import cli
from lightlens.corpus import distributed


@pytest.fixture
def four_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "3")


def test_a_rank_gets_its_own_gpu(four_gpus):
    assert distributed.local_device() == "cuda:3"
    assert distributed.local_device("cuda") == "cuda:3"  # torchrun ... --device cuda
    assert distributed.local_device("cuda:1") == "cuda:1"  # an explicit GPU is kept
    assert distributed.local_device("cpu") == "cpu"


def test_the_cli_passes_the_rank_device(four_gpus, monkeypatch):
    seen = {}
    monkeypatch.setattr("lightlens.models.scorer.get_model", lambda model, **kw: seen.update(kw) or "lm")
    args = argparse.Namespace(model="org/model", device="cuda", dtype=None, retries=None, timeout=None)
    assert cli._model(args) == "lm" and seen == {"device": "cuda:3", "dtype": None}


def test_without_a_launcher_rank0_work_is_just_a_call(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.from_rank0(lambda: [1, 2]) == [1, 2]
    with pytest.raises(KeyError):
        distributed.from_rank0(lambda: {}["missing"])
