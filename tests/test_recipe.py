"""One recipe: TrainConfig's fields are the defaults, and every other recipe is a named override of it."""

from __future__ import annotations

import ast
import math
import dataclasses
import re
from pathlib import Path

import pytest
import torch

import vaelib
from vaelib import bench, book, cli
from vaelib.recipe import TrainConfig

PACKAGE = Path(vaelib.__file__).parent
# The fields whose defaults make the recipe, and the words a name for each would contain.
RECIPE_FIELDS = {"epochs": ("epoch",), "batch_size": ("batch",), "lr": ("lr", "learning_rate", "rate"),
                 "schedule": ("schedule",)}
# Where the same numbers may stand on purpose, and why: the benchmark's baseline is pytorch/examples' script,
# with that script's own recipe, whatever vaelib's becomes (test_the_benchmark_compares_like_for_like).
ALLOWED = {("bench.py", "EXAMPLES_BATCH_SIZE"), ("bench.py", "EXAMPLES_LR")}


def _overridden(recipe: TrainConfig) -> set[str]:
    base = TrainConfig()
    return {f.name for f in dataclasses.fields(TrainConfig) if getattr(recipe, f.name) != getattr(base, f.name)}


def test_the_books_recipes_are_named_overrides_of_train_config():
    assert _overridden(book.READER) == {"lr", "schedule"}
    assert _overridden(book.QUICK) == {"epochs", "n_train"}
    assert _overridden(book.SUBSET) == {"epochs"}
    assert (book.BOOK_LR, book.BOOK_BATCH_SIZE) == (book.READER.lr, TrainConfig().batch_size)


def test_the_command_line_trains_the_books_recipe_and_its_help_says_so(monkeypatch):
    monkeypatch.delenv("VAELIB_DATASET", raising=False)
    args = cli.build_parser().parse_args(["train"])
    assert cli._new_config(args) == dataclasses.replace(book.READER, dataset="mnist")
    train = next(a for a in cli.build_parser()._actions if a.dest == "command").choices["train"]
    helps = {a.dest: a.help for a in train._actions}
    expected = {"model": "vae", "arch": "mlp", "latent_dim": "20", "hidden": "400", "beta": "1", "epochs": "10",
                "lr": "0.005", "schedule": "cosine", "batch_size": "128", "seed": "0"}
    stated = {dest: m[1] for dest, text in helps.items() if text and (m := re.search(r"default: ([\w.]+)", text))}
    assert {k: stated[k] for k in expected} == expected
    # ... and they are the recipe's own: a recipe with other values gives other help.
    monkeypatch.setattr(cli, "RECIPE", dataclasses.replace(book.READER, lr=0.25, epochs=7))
    train = next(a for a in cli.build_parser()._actions if a.dest == "command").choices["train"]
    helps = {a.dest: a.help for a in train._actions}
    assert "default: 0.25" in helps["lr"] and "default: 7" in helps["epochs"]


def test_the_benchmark_compares_like_for_like():
    """vaelib's side of the benchmark trains TrainConfig(); the baseline, pytorch/examples' script, its own
    recipe. They must be the same recipe for the comparison to mean anything."""
    assert (bench.EXAMPLES_BATCH_SIZE, bench.EXAMPLES_LR) == (TrainConfig().batch_size, TrainConfig().lr)
    assert TrainConfig().schedule == "constant"  # pytorch/examples has no schedule


def duplicates(source: str, filename: str = "<source>") -> list[str]:
    """Where ``source`` writes one of TrainConfig's recipe defaults again, next to a name for that setting: a
    keyword argument (``lr=1e-3``), a parameter's default (``batch_size: int = 128``), an assignment
    (``BATCH, LR = 128, 1e-3``), a dict entry (``{"lr": 1e-3}``) or a fallback (``args.epochs or 10``)."""
    defaults = {name: getattr(TrainConfig(), name) for name in RECIPE_FIELDS}

    def same(name: str, node: ast.AST | None) -> bool:
        return isinstance(node, ast.Constant) and type(node.value) is type(defaults[name]) and \
            node.value == defaults[name]

    def setting(name: str) -> str | None:
        low = name.lower()
        return next((f for f, words in RECIPE_FIELDS.items() if f == low or any(w in low for w in words)), None)

    found = []
    for node in ast.walk(ast.parse(source)):
        pairs: list[tuple[str, ast.AST]] = []
        if isinstance(node, ast.keyword) and node.arg:
            pairs.append((node.arg, node.value))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args
            pairs += [(a.arg, d) for a, d in zip(args[len(args) - len(node.args.defaults):], node.args.defaults)]
            pairs += [(a.arg, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None]
        elif isinstance(node, ast.Dict):
            pairs += [(k.value, v) for k, v in zip(node.keys, node.values)
                      if isinstance(k, ast.Constant) and isinstance(k.value, str)]
        elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):  # args.epochs or 10
            first = node.values[0]
            name = first.attr if isinstance(first, ast.Attribute) else getattr(first, "id", "")
            pairs += [(name, v) for v in node.values[1:]]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs += [(t.id, v) for t, v in zip(target.elts, node.value.elts) if isinstance(t, ast.Name)]
                elif isinstance(target, ast.Name):
                    pairs.append((target.id, node.value))
        for name, value in pairs:
            field = setting(name)
            if field and same(field, value) and (filename, name) not in ALLOWED:
                found.append(f"{filename}:{value.lineno} {name} = {value.value!r}")
    return found


def test_no_module_writes_a_recipe_default_a_second_time():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) if path.name != "recipe.py"
             for hit in duplicates(path.read_text(encoding="utf-8"), path.name)]
    assert found == [], "a recipe default written again; take it from vaelib.recipe.TrainConfig: " + "; ".join(found)


@pytest.mark.parametrize("source, hit", [
    ("BATCH, LR = 128, 1e-3", "BATCH = 128"),
    ("fit(model, data, lr=0.001)", "lr = 0.001"),
    ("def config(epochs: int = 10): pass", "epochs = 10"),
    ("QUICK_SCHEDULE = 'constant'", "QUICK_SCHEDULE = 'constant'"),
    ("def f(*, batch_size=128): pass", "batch_size = 128"),
    ("epochs = args.epochs or 10", "epochs = 10"),
    ("NEW_RUN = {'lr': 1e-3, 'seed': 0}", "lr = 0.001"),
])
def test_the_search_finds_a_second_default(source, hit):
    assert any(hit in found for found in duplicates(source)), duplicates(source)
    assert duplicates(source.replace("128", "64").replace("1e-3", "2e-3").replace("0.001", "0.002")
                      .replace("10", "3").replace("'constant'", "'cosine'")) == []


def test_free_bits_and_kl_warmup_change_the_training_loss_as_described():
    from vaelib.errors import ConfigError
    from vaelib.losses import objective
    from vaelib.recipe import TrainConfig, kl_weight
    from vaelib.training import training_loss

    # KL warm-up: the weight rises linearly to beta over that share of the steps, then stays there.
    warm = TrainConfig(beta=2.0, kl_warmup=0.5, epochs=1)
    assert [kl_weight(warm, 10, s) for s in range(10)] == pytest.approx([0.4, 0.8, 1.2, 1.6, 2, 2, 2, 2, 2, 2])
    assert [kl_weight(TrainConfig(beta=2.0), 10, s) for s in (0, 9)] == [2.0, 2.0]
    # Free bits: each dimension's KL, averaged over the batch, is charged as at least free_bits nats.
    kl_per_dim = torch.tensor([[0.1, 2.0], [0.3, 4.0]], requires_grad=True)
    terms = objective(torch.tensor([10.0, 20.0]), kl_per_dim, torch.ones(2), beta=1.0)
    loss = training_loss(terms, TrainConfig(beta=1.0, free_bits=0.5, epochs=1), 1, 0)
    assert loss.item() == pytest.approx(15 + 0.5 + 3.0)
    (grad,) = torch.autograd.grad(loss, kl_per_dim)
    assert grad[:, 0].abs().sum() == 0 and grad[:, 1].tolist() == [0.5, 0.5]  # below the floor: no push
    # Without either, the loss is the beta-weighted one, as before.
    plain = objective(torch.tensor([10.0, 20.0]), kl_per_dim.detach(), torch.ones(2), beta=3.0)
    assert training_loss(plain, TrainConfig(beta=3.0), 1, 0).item() == pytest.approx(15 + 3 * 3.2)
    # The records of earlier recipes stay as they were; set, the fields travel with the recipe.
    assert "free_bits" not in TrainConfig().to_dict() and "kl_warmup" not in TrainConfig().to_dict()
    set_ = TrainConfig(free_bits=0.5, kl_warmup=0.25)
    assert TrainConfig.from_dict(set_.to_dict()) == set_
    for bad in ({"free_bits": -0.1}, {"free_bits": math.inf}, {"kl_warmup": 1.5}, {"kl_warmup": -0.1}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)


def test_plain_sgd_steps_by_the_learning_rate_times_the_gradient():
    from vaelib.data import batches
    from vaelib.errors import ConfigError, TrainingDiverged
    from vaelib.models import VAE
    from vaelib.recipe import TrainConfig
    from vaelib.training import epoch_generators, fit, seed_everything

    seed_everything(0)
    model = VAE(latent_dim=2, hidden=(8,))
    before = [p.detach().clone() for p in model.parameters()]
    images = torch.rand(16, 1, 28, 28)
    # One full batch, one step, with the loss fit computes: each weight moves by -lr * its gradient.
    config = TrainConfig(model=model.config, optimizer="sgd", lr=0.01, epochs=1, batch_size=16, seed=3)
    fit(model, images, config, progress=False)
    replay = VAE(latent_dim=2, hidden=(8,))
    replay.load_state_dict({k: v for k, v in zip(replay.state_dict(), before)})
    order, noise = epoch_generators(3, 1)
    (x,) = list(batches(images, 16, generator=order, noise=noise))
    replay.loss_terms(x, 1.0, generator=noise).loss.mean().backward()
    for p, old, q in zip(model.parameters(), before, replay.parameters()):
        assert torch.allclose(p.detach(), old - 0.01 * q.grad, atol=1e-6)
    # The default stays Adam, and an unused optimizer field leaves the records of earlier recipes as they were.
    assert "optimizer" not in TrainConfig().to_dict()
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="optimizer must be one of adam, sgd"):
        TrainConfig(optimizer="rmsprop")
    # Without a fused kernel, a NaN loss still stops training before it touches a weight.
    seed_everything(0)
    model = VAE(latent_dim=2, hidden=(8,))
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("nan")
    kept = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(TrainingDiverged, match="before the weights were touched"):
        fit(model, images, optimizer="sgd", lr=0.01, epochs=1, batch_size=8, progress=False)
    assert all(torch.allclose(p, k, equal_nan=True) for p, k in zip(model.parameters(), kept))
