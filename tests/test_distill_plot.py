"""`distill eval --plot`: a PNG with one panel per model, topic colors shared by the panels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from distill.plot import sample_rows, topics
from synthgen.errors import UserError
from tests.test_distill_evaluate import write_beir


def test_eval_plot_draws_before_and_after(tmp_path, tiny_bert_path, minilm_path):
    from distill.cli import app

    folder = write_beir(tmp_path / "beir", [f"q{i}\td{i}\t1" for i in range(8)])
    run = CliRunner().invoke(app, ["eval", str(minilm_path), "--data", str(folder), "--baseline", str(tiny_bert_path),
                                   "--dims", "32", "--out", str(tmp_path / "m.json"), "--plot", str(tmp_path / "space.png"), "--quiet"])
    assert run.exit_code == 0, run.output
    import matplotlib.image

    image = matplotlib.image.imread(tmp_path / "space.png")
    assert image.shape[1] > 1.8 * image.shape[0]  # two panels side by side
    assert image[..., :3].std() > 0.05  # something was drawn
    alone = CliRunner().invoke(app, ["eval", str(minilm_path), "--data", str(folder), "--out", str(tmp_path / "m2.json"),
                                     "--plot", str(tmp_path / "one.png"), "--quiet"])
    assert alone.exit_code == 0, alone.output
    single = matplotlib.image.imread(tmp_path / "one.png")
    assert single.shape[1] < 1.5 * single.shape[0]
    with pytest.raises(UserError, match="--plot: no such folder"):
        CliRunner().invoke(app, ["eval", str(minilm_path), "--data", str(folder), "--plot", str(tmp_path / "no" / "x.png")],
                           catch_exceptions=False, standalone_mode=False)


def test_the_sample_keeps_every_relevant_passage():
    ids = [f"d{i}" for i in range(50)]
    qrels = {"q0": {"d40": 1, "d41": 0}, "q1": {"d7": 2}}
    queries, passages = sample_rows(ids, qrels, ["q0", "q1"], size=10, seed=0)
    assert queries == [0, 1] and len(passages) == 10 and {40, 7} <= set(passages) and 41 not in passages[:2]
    assert sample_rows(ids, qrels, ["q0", "q1"], size=10, seed=0) == (queries, passages)


def test_topics_separate_two_clouds():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 0.1, (20, 4)) + 5, rng.normal(0, 0.1, (20, 4)) - 5])
    labels = topics(points, 2, seed=0)
    assert len(set(labels[:20])) == 1 and len(set(labels[20:])) == 1 and labels[0] != labels[-1]
    assert torch.is_tensor(torch.from_numpy(labels))


def test_without_scikit_learn_topics_and_projection_fall_back_to_torch(monkeypatch):
    from distill.plot import project

    for name in ("sklearn.cluster", "sklearn.manifold"):
        monkeypatch.setitem(__import__("sys").modules, name, None)  # importing it now raises ImportError
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.normal(0, 0.1, (15, 4)) + 3, rng.normal(0, 0.1, (15, 4)) - 3])
    labels = topics(points, 2, seed=0)
    assert len(set(labels[:15])) == 1 and len(set(labels[15:])) == 1 and labels[0] != labels[-1]
    xy = project(points, seed=0)
    assert xy.shape == (30, 2) and abs(xy[:15, 0].mean() - xy[15:, 0].mean()) > 4  # the first component splits them
