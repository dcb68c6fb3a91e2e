"""The checkers of the coding exercises (vaelib.exercises), and the exercises in the chapters.

For every exercise: the reference solution passes, the unfilled stub is "not done yet", and typical
wrong answers are rejected with the hint that names the mistake. The notebooks' exercise cells are
parsed so that the names they check, the stubs they show and the solutions they print cannot drift
from the library.
"""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import vaelib
from vaelib import exercises
from vaelib.exercises import EXERCISES, check, diagnose

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("0*.ipynb"))
CHECK_CALL = re.compile(r"""vaelib\.exercises\.check\(\s*["']([a-z0-9_]+)["']\s*,\s*(\w+)\s*\)""")


def _stub(*args):
    raise NotImplementedError


# --- every exercise: the reference passes, the stub is "not done yet" -----------------------------

@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_the_reference_solution_is_correct(name):
    verdict = diagnose(name, EXERCISES[name].reference)
    assert verdict.status == "correct", verdict.message
    assert verdict.message.startswith("correct: ")


@pytest.mark.parametrize("name", sorted(EXERCISES))
@pytest.mark.parametrize("stub", [_stub, lambda *args: None, None], ids=["raises", "returns-none", "none"])
def test_an_unfilled_stub_is_not_done_yet(name, stub):
    verdict = diagnose(name, stub)
    assert verdict.status == "todo", verdict.message
    assert verdict.message.startswith("not done yet: fill in the TODO in "
                                      f"`{EXERCISES[name].function}`")


def test_check_prints_one_line_and_never_raises_for_an_answer(capsys):
    check("ch5_kl", _stub)
    check("ch5_kl", lambda mu, logvar: 1 / 0)   # an answer that crashes
    check("ch5_kl", 42)                         # not a function at all
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("not done yet")
    assert lines[1] == "not yet right: your function raised ZeroDivisionError: division by zero"
    assert lines[2].startswith("not yet right: pass the function itself")


def test_an_unknown_exercise_name_is_an_error_that_lists_the_names():
    with pytest.raises(ValueError, match="no exercise named 'ch9_nothing'.*ch5_kl"):
        check("ch9_nothing", _stub)


def test_the_checker_leaves_the_learners_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    diagnose("ch3_reparameterize", EXERCISES["ch3_reparameterize"].reference)
    assert torch.equal(torch.rand(3), expected)


def test_a_verdict_does_not_change_from_run_to_run():
    def noisy(mu, logvar):
        return mu + torch.exp(logvar) * torch.randn_like(mu)
    assert diagnose("ch3_reparameterize", noisy) == diagnose("ch3_reparameterize", noisy)


# --- other correct answers pass too --------------------------------------------------------------
# Each is written another way than the reference it is checked against.

def _kl_from_torch(mu, logvar):
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    return torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)


OTHER_CORRECT = {
    "ch1_recon_nll": lambda logits, x: -(x * F.logsigmoid(logits)
                                         + (1 - x) * F.logsigmoid(-logits)).sum((1, 2, 3)),
    "ch1_nll_floor": lambda x: vaelib.bernoulli_nll(torch.logit(x.clamp(1e-6, 1 - 1e-6)), x),
    "ch2_gap_share": lambda s, tr, te, q=0.99: float(
        (torch.cdist(s, tr).min(1).values ** 2 > (torch.cdist(te, tr).min(1).values ** 2).quantile(q))
        .sum() / len(s)),
    "ch3_reparameterize": lambda mu, logvar: torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).rsample(),
    "ch3_split": lambda h: (h[:, :h.shape[1] // 2], torch.exp(h[:, h.shape[1] // 2:]).sqrt()),
    # torch.distributions, not vaelib's own functions (which the references call)
    "ch5_kl": lambda mu, logvar: _kl_from_torch(mu, logvar),
    "ch5_beta_loss": lambda logits, x, mu, logvar, beta: -torch.distributions.Bernoulli(
        logits=logits, validate_args=False).log_prob(x).flatten(1).sum(1) + beta * _kl_from_torch(mu, logvar),
    # a baseline changes the estimate a little, but it still agrees with the exact gradient
    "ch6_score_function": lambda f, mu, sigma, eps: (
        (f(mu + sigma * eps) - f(mu + sigma * eps).mean()) * eps / sigma).mean(),
    "ch6_reparam_gradient": lambda f, mu, sigma, eps: torch.autograd.grad(
        f(mu + sigma * eps).mean(), [mu, sigma]),
    # the log of the mean weight, shifted by the largest by hand rather than by logsumexp
    "ch7_iw_bound": lambda log_w: log_w.max(0).values + (log_w - log_w.max(0).values).exp().mean(0).log(),
    # the definition: minus the base-2 logarithm of the likelihood per dimension
    "ch7_bits_per_dim": lambda loglik, n_dims: -math.log2(math.exp(loglik / n_dims)),
}


@pytest.mark.parametrize("name", sorted(OTHER_CORRECT))
def test_another_correct_answer_passes(name):
    verdict = diagnose(name, OTHER_CORRECT[name])
    assert verdict.status == "correct", verdict.message


# --- typical mistakes are named -----------------------------------------------------------------

def _bce(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none")


def _sum_px(t):
    return t.flatten(1).sum(1)


def _entropy(x):
    return -(torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x))


def _kl_terms(mu, logvar):
    return 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)


def _recon(logits, x):
    return _sum_px(_bce(logits, x))


def _nearest(a, b):
    return torch.cdist(a, b).min(1).values


MISTAKES = [
    # chapter 1: reconstruction NLL from logits
    ("ch1_recon_nll", lambda l, x: _bce(l, x).flatten(1).mean(1), "averaged over the 784 pixels"),
    ("ch1_recon_nll", lambda l, x: _recon(l, x) / math.log(2), "in bits"),
    ("ch1_recon_nll", lambda l, x: -_recon(l, x), "log p(x | z)"),
    ("ch1_recon_nll", lambda l, x: _recon(torch.sigmoid(l), x), "you passed probabilities"),
    ("ch1_recon_nll", lambda l, x: _sum_px(F.binary_cross_entropy(l, x, reduction="none")),
     "expects probabilities, but the decoder gives logits"),
    ("ch1_recon_nll", lambda l, x: _bce(l, x).sum(), "summed over the examples too"),
    ("ch1_recon_nll", lambda l, x: _bce(l, x).mean(), "averaged"),
    ("ch1_recon_nll", lambda l, x: _bce(l, x), "one value per pixel"),
    ("ch1_recon_nll", lambda l, x: -_sum_px(x * F.logsigmoid(l)), "(1 - x) log(1 - p)"),
    ("ch1_recon_nll", lambda l, x: -_sum_px(x * torch.log(torch.sigmoid(l))
                                          + (1 - x) * torch.log(1 - torch.sigmoid(l))),
     "sigmoid(40) is exactly 1"),
    ("ch1_recon_nll", lambda l, x: _sum_px(F.binary_cross_entropy(torch.sigmoid(l), x, reduction="none")),
     "clamps its logarithms"),
    # chapter 1: the floor of the NLL
    ("ch1_nll_floor", lambda x: -_sum_px(x * torch.log(x) + (1 - x) * torch.log(1 - x)), "0 * log 0"),
    ("ch1_nll_floor", lambda x: _entropy(x).flatten(1).mean(1), "averaged over the 784 pixels"),
    ("ch1_nll_floor", lambda x: _sum_px(_entropy(x)) / math.log(2), "bits"),
    ("ch1_nll_floor", lambda x: -_sum_px(torch.xlogy(x, x)), "(1 - x) log(1 - x)"),
    # chapter 2: a Gaussian fitted to the codes
    ("ch2_fitted_gaussian", lambda c, n, g: c.mean(0) + c.var(0) * torch.randn(n, c.shape[1], generator=g),
     "variance"),
    ("ch2_fitted_gaussian", lambda c, n, g: c.mean() + c.std() * torch.randn(n, c.shape[1], generator=g),
     "codes.mean() averages all the numbers"),
    ("ch2_fitted_gaussian", lambda c, n, g: c.mean(0) + c.std() * torch.randn(n, c.shape[1], generator=g),
     "codes.std() is one spread"),
    ("ch2_fitted_gaussian", lambda c, n, g: torch.randn(n, c.shape[1], generator=g), "N(0, I)"),
    ("ch2_fitted_gaussian", lambda c, n, g: c.mean(0) + torch.randn(n, c.shape[1], generator=g),
     "multiply the noise by codes.std(0)"),
    ("ch2_fitted_gaussian", lambda c, n, g: c.std(0) * torch.randn(n, c.shape[1], generator=g),
     "add codes.mean(0)"),
    ("ch2_fitted_gaussian", lambda c, n, g: c.mean(0) + c.std(0) * torch.rand(n, c.shape[1], generator=g),
     "torch.rand"),
    ("ch2_fitted_gaussian", lambda c, n, g: c.mean(0) + c.std(0) * math.sqrt(12)
     * (torch.rand(n, c.shape[1], generator=g) - 0.5), "torch.randn (normal), not torch.rand"),
    ("ch2_fitted_gaussian", lambda c, n, g: c.mean(0) + c.std(0) * torch.randn(n, c.shape[1]),
     "ignores its generator"),
    ("ch2_fitted_gaussian", lambda c, n, g: (c.mean(0) + c.std(0) * torch.randn(n, c.shape[1],
                                                                                generator=g)).T,
     "one row per code"),
    # chapter 2: the share of samples in gaps
    ("ch2_gap_share", lambda s, tr, te, q=0.99: (_nearest(s, tr) > _nearest(tr, tr).quantile(q))
     .float().mean(), "nearest training code is itself"),
    ("ch2_gap_share", lambda s, tr, te, q=0.99: (_nearest(s, tr) > _nearest(s, tr).quantile(q))
     .float().mean(), "samples' own distances"),
    ("ch2_gap_share", lambda s, tr, te, q=0.99: (_nearest(s, tr) < _nearest(te, tr).quantile(q))
     .float().mean(), "near the data"),
    ("ch2_gap_share", lambda s, tr, te, q=0.99: 100 * (_nearest(s, tr) > _nearest(te, tr).quantile(q))
     .float().mean(), "not a percentage"),
    ("ch2_gap_share", lambda s, tr, te, q=0.99: _nearest(s, tr) > _nearest(te, tr).quantile(q),
     "one number, the share"),
    ("ch2_gap_share", lambda s, tr, te, q=0.99: (_nearest(s, tr) > _nearest(te, tr).quantile(0.99))
     .float().mean(), "use the quantile argument"),
    ("ch2_gap_share", lambda s, tr, te, q=0.99: (_nearest(s, te) > _nearest(te, tr).quantile(q))
     .float().mean(), "*training* code"),
    # chapter 3: the reparameterized sample
    ("ch3_reparameterize", lambda mu, lv: mu + torch.exp(lv) * torch.randn_like(mu),
     "its spread is exp(logvar) instead of exp(logvar / 2)"),
    ("ch3_reparameterize", lambda mu, lv: mu + lv * torch.randn_like(mu), "logvar itself"),
    ("ch3_reparameterize", lambda mu, lv: mu + torch.randn_like(mu), "multiply the noise by sigma"),
    ("ch3_reparameterize", lambda mu, lv: mu, "the noise is missing"),
    ("ch3_reparameterize", lambda mu, lv: mu + torch.exp(0.5 * lv), "no randomness"),
    ("ch3_reparameterize", lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.rand_like(mu), "torch.randn_like"),
    ("ch3_reparameterize", lambda mu, lv: torch.normal(mu, torch.exp(0.5 * lv)), "torch.normal"),
    ("ch3_reparameterize", lambda mu, lv: (mu + torch.exp(0.5 * lv) * torch.randn_like(mu)).detach(),
     "no gradient flows"),
    ("ch3_reparameterize", lambda mu, lv: torch.exp(0.5 * lv) * torch.randn_like(mu), "add mu"),
    # chapter 3: the encoder's output
    ("ch3_split", lambda h: (h[:, ::2], torch.exp(0.5 * h[:, 1::2])), "every other column"),
    ("ch3_split", lambda h: (h.chunk(2, dim=1)[1], torch.exp(0.5 * h.chunk(2, dim=1)[0])), "swapped"),
    ("ch3_split", lambda h: (h.chunk(2, dim=0)[0], torch.exp(0.5 * h.chunk(2, dim=0)[1])), "along the batch"),
    ("ch3_split", lambda h: (h.chunk(2, dim=1)[0], torch.exp(h.chunk(2, dim=1)[1])), "the variance"),
    ("ch3_split", lambda h: h.chunk(2, dim=1), "sigma is the log-variance itself"),
    ("ch3_split", lambda h: torch.exp(h), "return two tensors"),
    # chapter 4: mean sigma, and noise against spread
    ("ch4_mean_sigma", lambda lv: torch.exp(lv).mean(1), "the variances"),
    ("ch4_mean_sigma", lambda lv: torch.exp(0.5 * lv.mean(1)), "geometric mean"),
    ("ch4_mean_sigma", lambda lv: torch.exp(lv).mean(1).sqrt(), "square root of the mean variance"),
    ("ch4_mean_sigma", lambda lv: torch.exp(0.5 * lv).mean(0), "over the examples (dim 0)"),
    ("ch4_mean_sigma", lambda lv: torch.exp(0.5 * lv).mean(), "batch average"),
    ("ch4_noise_to_spread", lambda mu, lv: torch.exp(0.5 * lv).mean(0) / mu.std(0), "median"),
    ("ch4_noise_to_spread", lambda mu, lv: torch.exp(0.5 * lv).median(0).values / mu.var(0),
     "standard deviation, mu.std(0)"),
    ("ch4_noise_to_spread", lambda mu, lv: torch.exp(0.5 * lv).median() / mu.std(0), "per dimension"),
    ("ch4_noise_to_spread", lambda mu, lv: torch.exp(0.5 * lv).median(0) / mu.std(0), ".median(0).values"),
    ("ch4_noise_to_spread", lambda mu, lv: torch.exp(lv).median(0).values / mu.std(0), "variance"),
    ("ch4_noise_to_spread", lambda mu, lv: mu.std(0) / torch.exp(0.5 * lv).median(0).values, "upside down"),
    ("ch4_noise_to_spread", lambda mu, lv: torch.exp(0.5 * lv).median(1).values / mu.std(1), "per image"),
    # chapter 5: the closed-form KL, and the beta-weighted loss
    ("ch5_kl", lambda mu, lv: (mu ** 2 + lv.exp() - 1 - lv).sum(1), "factor 1/2"),
    ("ch5_kl", lambda mu, lv: _kl_terms(mu, lv).mean(1), "averaged over the latent dimensions"),
    ("ch5_kl", lambda mu, lv: -_kl_terms(mu, lv).sum(1), "never below 0"),
    ("ch5_kl", lambda mu, lv: 0.5 * (mu ** 2 + (0.5 * lv).exp() - 1 - lv).sum(1), "you used sigma"),
    ("ch5_kl", lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - lv).sum(1), "the -1 is missing"),
    ("ch5_kl", lambda mu, lv: 0.5 * (lv.exp() - 1 - lv).sum(1), "mu^2 term is missing"),
    ("ch5_kl", lambda mu, lv: _kl_terms(mu, lv), "one value per latent dimension"),
    ("ch5_kl", lambda mu, lv: _kl_terms(mu, lv).sum(), "summed over the examples too"),
    ("ch5_beta_loss", lambda l, x, mu, lv, b: b * _recon(l, x) + _kl_terms(mu, lv).sum(1),
     "beta weights the KL term"),
    ("ch5_beta_loss", lambda l, x, mu, lv, b: _recon(l, x) + _kl_terms(mu, lv).sum(1), "ignores beta"),
    ("ch5_beta_loss", lambda l, x, mu, lv, b: -(_recon(l, x) + b * _kl_terms(mu, lv).sum(1)), "ELBO"),
    ("ch5_beta_loss", lambda l, x, mu, lv, b: (_recon(l, x) + b * _kl_terms(mu, lv).sum(1)).mean(),
     "one loss per image"),
    # chapter 6: the score-function and the reparameterization gradient
    ("ch6_score_function", lambda f, mu, s, eps: (f(mu + s * eps) * eps).mean(), "divide by sigma"),
    ("ch6_score_function", lambda f, mu, s, eps: (f(mu + s * eps) * s * eps).mean(), "(z - mu) / sigma^2"),
    ("ch6_score_function", lambda f, mu, s, eps: ((mu + s * eps) * 0 + 2 * (mu + s * eps)).mean()
     if f(torch.tensor(2.0)) == 4 else torch.cos(mu + s * eps).mean(), "reparameterization estimate"),
    ("ch6_score_function", lambda f, mu, s, eps: (eps / s).mean(), "score alone"),
    ("ch6_score_function", lambda f, mu, s, eps: -(f(mu + s * eps) * eps / s).mean(), "sign"),
    ("ch6_score_function", lambda f, mu, s, eps: (f(mu + s * eps) * eps / s).sum(), "summed"),
    ("ch6_score_function", lambda f, mu, s, eps: torch.autograd.grad(f(mu + s * eps).mean(), mu)[0],
     "needs no autograd"),
    ("ch6_reparam_gradient", lambda f, mu, s, eps: torch.autograd.grad(f(mu + s * eps).sum(), [mu, s]),
     "you summed"),
    ("ch6_reparam_gradient", lambda f, mu, s, eps: torch.autograd.grad(
        f(mu + s * eps.detach()).mean().detach(), [mu, s]), "no gradient reached"),
    ("ch6_reparam_gradient", lambda f, mu, s, eps: torch.autograd.grad(f(mu + 0 * eps).mean(), [mu, s]),
     "not used"),
    ("ch6_reparam_gradient", lambda f, mu, s, eps: torch.autograd.grad(f(mu), [mu, s], allow_unused=True)[0],
     "return two numbers"),
    ("ch6_reparam_gradient", lambda f, mu, s, eps: torch.autograd.grad(f(mu + s * eps).mean(), [mu])[0],
     "return two numbers"),
    # chapter 7: the importance-weighted bound and bits per dimension
    ("ch7_iw_bound", lambda lw: torch.log(torch.exp(lw).mean(0)), "underflows"),
    ("ch7_iw_bound", lambda lw: torch.logsumexp(lw, 0), "subtract log K"),
    ("ch7_iw_bound", lambda lw: lw.mean(0), "the ELBO estimate"),
    ("ch7_iw_bound", lambda lw: lw.max(0).values, "largest log-weight"),
    ("ch7_iw_bound", lambda lw: torch.logsumexp(lw, 1) - math.log(lw.shape[1]), "dim 0"),
    ("ch7_bits_per_dim", lambda ll, n: ll / (n * math.log(2)), "cost"),
    ("ch7_bits_per_dim", lambda ll, n: -ll / n, "nats per dimension"),
    ("ch7_bits_per_dim", lambda ll, n: -ll / math.log(2), "bits per image"),
    ("ch7_bits_per_dim", lambda ll, n: -ll / (784 * math.log(2)), "n_dims argument"),
]


@pytest.mark.parametrize("name, answer, hint", MISTAKES,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(MISTAKES)])
def test_a_typical_mistake_is_named(name, answer, hint):
    verdict = diagnose(name, answer)
    assert verdict.status == "wrong", verdict.message
    assert verdict.message.startswith("not yet right: ")
    assert hint in verdict.message, verdict.message


def test_every_exercise_has_a_named_mistake():
    assert {m[0] for m in MISTAKES} == set(EXERCISES)


# --- the chapters and the library cannot drift apart ------------------------------------------------

def _cells(notebook: Path) -> list[dict]:
    return json.loads(notebook.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _checks(notebook: Path) -> list[tuple[str, str]]:
    return [m for c in _cells(notebook) if c["cell_type"] == "code" for m in CHECK_CALL.findall(_source(c))]


def test_every_name_checked_in_a_chapter_exists_and_every_exercise_is_used():
    used = {name: (nb.stem, fn) for nb in CHAPTERS for name, fn in _checks(nb)}
    unknown = set(used) - set(EXERCISES)
    assert not unknown, f"the chapters check exercises that vaelib.exercises does not have: {unknown}"
    unused = set(EXERCISES) - set(used)
    assert not unused, f"exercises that no chapter uses: {unused}"
    for name, (stem, fn) in used.items():
        assert fn == EXERCISES[name].function, (stem, name, fn)
        assert stem[:2] == f"{int(name[2]):02d}", f"{name} is used in {stem}"


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_every_story_chapter_has_two_checked_exercises_after_its_stubs(notebook):
    cells = _cells(notebook)
    sources = [_source(c) for c in cells]
    checks = _checks(notebook)
    assert len(checks) >= 2, f"{notebook.name} has {len(checks)} checked exercises"
    exercises_at = next(i for i, s in enumerate(sources) if "## Exercises" in s)
    for name, fn in checks:
        at = next(i for i, s in enumerate(sources) if f'check("{name}"' in s)
        assert at > exercises_at, f"{name} is checked before the Exercises section"
        stub = sources[at - 1]
        assert cells[at - 1]["cell_type"] == "code" and f"def {fn}(" in stub and "TODO" in stub, \
            f"{notebook.name}: the cell before check({name!r}) is not the stub of {fn}"
        assert "raise NotImplementedError" in stub, stub
        task = sources[at - 2]
        assert cells[at - 2]["cell_type"] == "markdown" and f"`{fn}" in task, \
            f"{notebook.name}: no task in Markdown above the stub of {fn}"
        solution = sources[at + 1]
        assert cells[at + 1]["cell_type"] == "markdown" and "{admonition} Solution" in solution \
            and ":class: dropdown" in solution, f"{notebook.name}: no collapsed solution after {name}"


def _definitions(code: str) -> str:
    """Only the imports and function definitions of a piece of code (no cell magics, no top-level work)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:  # a cell with IPython magics
        return ""
    keep = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef))]
    return "\n".join(ast.unparse(n) for n in keep)


def _solution_code(text: str) -> str:
    blocks = re.findall(r"^(`{3,}|~{3,})python\n(.*?)^\1\s*$", text, re.S | re.M)
    assert blocks, text
    return "\n".join(_definitions(code) for _, code in blocks)


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_the_solution_printed_in_the_chapter_passes_its_checker(notebook):
    cells = _cells(notebook)
    sources = [_source(c) for c in cells]
    # The chapter's own helper functions (a solution may call them), as a reader's kernel has them.
    chapter = "\n".join(_definitions(s) for c, s in zip(cells, sources) if c["cell_type"] == "code")
    for name, fn in _checks(notebook):
        at = next(i for i, s in enumerate(sources) if f'check("{name}"' in s)
        namespace = {"torch": torch, "math": math, "F": F, "vaelib": vaelib}
        exec(chapter, namespace)
        exec(_solution_code(sources[at + 1]), namespace)
        verdict = diagnose(name, namespace[fn])
        assert verdict.status == "correct", (notebook.name, name, verdict.message)
        exec(sources[at - 1], namespace)
        assert diagnose(name, namespace[fn]).status == "todo", (notebook.name, name)


# --- the checker holds whatever the answer does --------------------------------------------------------

def _kl_via_distributions(mu, logvar):
    """A finished answer built on torch.distributions, with a step PyTorch does not implement."""
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    return q.cdf(mu) * 0 + q.entropy() * 0 + torch.distributions.Bernoulli(logits=mu).rsample()


def test_a_not_implemented_error_from_inside_pytorch_is_not_a_stub():
    verdict = diagnose("ch5_kl", _kl_via_distributions)
    assert verdict.status == "wrong", verdict.message
    assert "PyTorch raised NotImplementedError" in verdict.message


def test_an_answer_built_on_torch_distributions_is_checked_like_any_other():
    def kl(mu, logvar):
        q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
        p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
        return torch.distributions.kl_divergence(q, p).sum(1)

    assert diagnose("ch5_kl", kl).status == "correct"


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_an_answer_that_changes_its_inputs_afterwards_keeps_its_verdict(name):
    reference = EXERCISES[name].reference

    def vandal(*args):
        out = reference(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args])
        with torch.no_grad():
            for a in args:
                if isinstance(a, torch.Tensor) and a.is_floating_point():
                    a.mul_(2)  # after the answer was computed: it is still right
        return out

    verdict = diagnose(name, vandal)
    assert verdict.status == "correct", verdict.message


def test_an_answer_that_never_returns_is_stopped(monkeypatch):
    monkeypatch.setattr(exercises.checking, "TIME_LIMIT_S", 0.5)

    def forever(mu, logvar):
        while True:
            try:
                pass
            except Exception:  # an answer's own handler cannot swallow the time limit
                pass

    verdict = diagnose("ch5_kl", forever)
    assert verdict.status == "wrong" and "did not finish within 0.5 seconds" in verdict.message


@pytest.mark.parametrize("stop", [lambda: __import__("sys").exit(0), lambda: exit(3)], ids=["sys.exit", "exit"])
def test_an_answer_that_exits_is_a_wrong_answer_not_the_end(stop):
    def answer(mu, logvar):
        stop()

    verdict = diagnose("ch5_kl", answer)
    assert verdict.status == "wrong" and "sys.exit()" in verdict.message
