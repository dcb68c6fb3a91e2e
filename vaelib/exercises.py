"""Checkers for the coding exercises at the end of each chapter.

Each coding exercise gives a function to write, with a stub that says ``TODO``. Running
``vaelib.exercises.check("ch3_reparameterize", reparameterize)`` tests the function on inputs of the
checker's own (drawn with fixed seeds, so a verdict never changes from run to run), compares it with
a reference solution, and prints **one line**:

- ``correct: ...`` when the function agrees with the reference;
- ``not done yet: ...`` while the function still raises ``NotImplementedError`` or returns ``None``,
  as the unfilled stub does;
- ``not yet right: ...`` otherwise. When the answer matches a typical mistake (a mean instead of a
  sum, a variance instead of a standard deviation, a missing ``log K``), the line names it and says
  how to fix it; when it does not, it shows the first place where the answer differs.

``check`` never raises because of the learner's answer, even when the function itself raises: a
chapter runs from top to bottom with its stubs unfilled, which is how the book is built and tested.
It raises ``ValueError`` only for an exercise name it does not know. :func:`diagnose` returns the
verdict as a :class:`Verdict` instead of printing it, and :data:`EXERCISES` lists every exercise with
its reference solution. Each exercise that ``check`` finds correct is remembered in this environment, and
:func:`progress` shows which ones were passed (:mod:`vaelib.progress`).

A learner's function that draws random numbers without a generator gets a fixed seed for the call;
the learner's own random state is saved before and restored after (``torch.random.fork_rng``). It gets
copies of the checker's tensors, so an answer that changes its inputs in place cannot change the
verdict; it has ``TIME_LIMIT_S`` seconds per call (in the main thread), and a ``sys.exit()`` in it is
a wrong answer rather than the end of the notebook.
"""

from __future__ import annotations

import math
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from vaelib.errors import first_line
from vaelib.losses import bernoulli_nll, gaussian_kl
from vaelib.progress import Progress, record_passed, report

LN2 = math.log(2)
TIME_LIMIT_S = 20.0  # per call of a learner's function; the reference solutions take well under a second


class Verdict(NamedTuple):
    """The outcome of a check: ``status`` is ``"correct"``, ``"todo"`` or ``"wrong"``."""

    status: str
    message: str


@dataclass(frozen=True)
class Exercise:
    """One coding exercise: the function the learner writes, its checker and a reference solution."""

    name: str
    function: str
    checker: Callable[[Callable], str]
    reference: Callable


EXERCISES: dict[str, Exercise] = {}


def progress(chapter: int | str | None = None, folder: str | Path | None = None) -> Progress:
    """Which checked exercises of ``chapter`` (``"ch03"``, ``3``; ``None`` for the whole book) the learner has
    passed in this environment, as a table (:func:`vaelib.progress.report`)."""
    return report(EXERCISES, chapter, folder)


class _Todo(Exception):
    """The function is still the stub."""


class _Wrong(Exception):
    """The answer is wrong; the message says how."""


def _exercise(name: str, function: str, reference: Callable):
    def register(checker: Callable[[Callable], str]):
        EXERCISES[name] = Exercise(name, function, checker, reference)
        return checker
    return register


def diagnose(name: str, fn: Callable | None) -> Verdict:
    """Test ``fn`` as the answer to exercise ``name``; return the verdict without printing it."""
    if name not in EXERCISES:
        raise ValueError(f"there is no exercise named {name!r}; the exercises are: "
                         f"{', '.join(sorted(EXERCISES))}")
    exercise = EXERCISES[name]
    todo = Verdict("todo", f"not done yet: fill in the TODO in `{exercise.function}` (and end it with "
                           f"`return ...`), then run this cell again.")
    if fn is None:
        return todo
    if not callable(fn):
        return Verdict("wrong", f"not yet right: pass the function itself, check({name!r}, "
                                f"{exercise.function}), not the result of calling it.")
    try:
        return Verdict("correct", f"correct: {exercise.checker(fn)}")
    except _Todo:
        return todo
    except _Wrong as wrong:
        return Verdict("wrong", f"not yet right: {wrong}")
    except Exception as e:  # an answer of a shape or type the checker did not foresee
        return Verdict("wrong", f"not yet right: your answer could not be checked "
                                f"({type(e).__name__}: {first_line(e)}).")


def check(name: str, fn: Callable | None) -> None:
    """Test ``fn`` as the answer to exercise ``name`` and print the verdict (one line); a correct answer is
    recorded as passed (:func:`progress` shows it)."""
    verdict = diagnose(name, fn)
    if verdict.status == "correct":
        record_passed(name)
    print(verdict.message)


# --- helpers shared by the checkers ----------------------------------------------------------------

def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _TimeUp(BaseException):
    """The learner's function ran past ``TIME_LIMIT_S`` (a BaseException, so that its own
    ``except Exception`` cannot swallow it)."""


@contextmanager
def _time_limit(seconds: float):
    """Interrupt the block after ``seconds`` with a real timer signal (main thread only, where signals
    are delivered; elsewhere there is no limit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise _TimeUp

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


_TORCH = str(Path(torch.__file__).parent)


def _raised_in_torch(e: BaseException) -> bool:
    """Whether ``e`` was raised inside PyTorch (say torch.distributions) rather than by the stub itself."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.startswith(_TORCH)


def _call(fn: Callable, *args, seed: int = 0, hints: dict[str, str] | None = None):
    """Call the learner's function with a fixed global seed; the stub and ``None`` mean "not done".
    ``hints`` maps a fragment of an error message to what the learner should change."""
    args = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
    try:
        with torch.random.fork_rng(devices=[]), _time_limit(TIME_LIMIT_S):
            torch.manual_seed(seed)
            out = fn(*args)
    except _TimeUp:
        raise _Wrong(f"your function did not finish within {TIME_LIMIT_S:g} seconds; look for a loop that "
                     "never ends") from None
    except SystemExit:
        raise _Wrong("your function called sys.exit() or exit(), which would stop the notebook; return "
                     "the result instead") from None
    except NotImplementedError as e:
        if _raised_in_torch(e):
            raise _Wrong(f"PyTorch raised NotImplementedError inside your function ({first_line(e)}); "
                         "that part of PyTorch cannot do this, so compute it another way") from None
        raise _Todo from None
    except Exception as e:
        hint = next((h for fragment, h in (hints or {}).items() if fragment in str(e)), None)
        raise _Wrong(hint or f"your function raised {type(e).__name__}: {first_line(e)}") from None
    if out is None:
        raise _Todo
    return out


def _tensor(out, what: str = "your function") -> torch.Tensor:
    """The answer as a float64 tensor on the CPU, detached; a number becomes a 0-dim tensor."""
    if isinstance(out, (int, float)) and not isinstance(out, bool):
        return torch.tensor(float(out), dtype=torch.float64)
    if not isinstance(out, torch.Tensor):
        raise _Wrong(f"{what} should return a tensor, got {type(out).__name__}.")
    if out.dtype == torch.bool or not (out.is_floating_point() or out.dtype in (torch.int32, torch.int64)):
        raise _Wrong(f"{what} should return numbers, got a tensor of dtype {out.dtype}.")
    return out.detach().cpu().to(torch.float64)


def _number(out, what: str = "your function") -> float:
    """The answer as one Python float."""
    if isinstance(out, torch.Tensor) and out.dtype == torch.bool and out.numel() > 1:
        raise _Wrong(f"{what} returned a true/false value per example; return one number, the share "
                     f"of true values: (...).float().mean().")
    t = _tensor(out, what)
    if t.numel() != 1:
        raise _Wrong(f"{what} should return one number, got a tensor of shape {list(t.shape)}: "
                     f"reduce it to a single value (for a share, (...).float().mean()).")
    return t.item()


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-4) -> bool:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return a.shape == b.shape and bool(torch.isclose(a, b, rtol=rtol, atol=atol).all())


def _first_match(out: torch.Tensor, variants: list[tuple[torch.Tensor, str]], rtol: float = 1e-4,
                 atol: float = 1e-4) -> None:
    """Raise the message of the first typical mistake whose result ``out`` reproduces."""
    for value, message in variants:
        if _close(out, value, rtol, atol):
            raise _Wrong(message)


def _per_example(out, terms: torch.Tensor, unit: str, reduce: str = "sum") -> torch.Tensor:
    """Check that ``out`` has one value per example, where the answer reduces ``terms``
    ``[batch, ...]`` over everything but the batch; name the reduction that went astray."""
    out = _tensor(out)
    batch = terms.shape[0]
    if out.shape == (batch,):
        return out
    per_example = terms.flatten(1).sum(1) if reduce == "sum" else terms.flatten(1).mean(1)
    if out.shape == terms.shape or out.shape == terms.flatten(1).shape:
        raise _Wrong(f"you returned one value per {unit[:-1]}; {reduce} over the {unit} of each "
                     f"example to get one value per example, shape [{batch}].")
    if out.dim() == 0:
        if _close(out, per_example.sum(), 1e-3, 1e-3):
            raise _Wrong(f"you returned one number for the whole batch (summed over the examples "
                         f"too); return one value per example, shape [{batch}]: {reduce} over the "
                         f"{unit} only.")
        if _close(out, per_example.mean(), 1e-3, 1e-3):
            raise _Wrong(f"you returned the batch average; return one value per example, shape "
                         f"[{batch}]: {reduce} over the {unit} only, not over the examples.")
        if _close(out, terms.mean(), 1e-3, 1e-3):
            raise _Wrong(f"you averaged over everything, examples and {unit} (the default "
                         f"reduction='mean' of PyTorch's loss functions). Return one value per example, "
                         f"shape [{batch}]: use reduction='none', then {reduce} over the {unit}.")
        raise _Wrong(f"you returned one number; return one value per example, shape [{batch}].")
    if out.shape == terms.shape[1:] or out.shape == terms.flatten(1).shape[1:]:
        raise _Wrong(f"you reduced over the examples (dim 0) instead of over the {unit}; the "
                     f"answer has one value per example, shape [{batch}].")
    raise _Wrong(f"expected one value per example, shape [{batch}], got shape {list(out.shape)}.")


def _fmt(values: torch.Tensor) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values.tolist()) + "]"


# --- chapter 1: the reconstruction loss ----------------------------------------------------------

def _recon_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return bernoulli_nll(logits, x)


_PROBABILITIES_HINT = {
    "between 0 and 1": "F.binary_cross_entropy expects probabilities, but the decoder gives logits (any "
                       "real number). Use F.binary_cross_entropy_with_logits, which takes the logits directly.",
}


@_exercise("ch1_recon_nll", "recon_nll", _recon_nll)
def _check_recon_nll(fn):
    g = _gen(1)
    logits = (2 * torch.randn(6, 1, 28, 28, generator=g)).clamp(-6, 6)
    x = torch.rand(6, 1, 28, 28, generator=g)
    pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    out = _per_example(_call(fn, logits.clone(), x.clone(), hints=_PROBABILITIES_HINT), pixel, "pixels")
    ref = pixel.flatten(1).sum(1)
    if not _close(out, ref):
        p = torch.sigmoid(logits)
        _first_match(out, [
            (ref / 784, "you averaged over the 784 pixels. The NLL of an image is the sum of its "
                        "pixels' costs, in nats per image: sum over the pixels instead of taking the mean."),
            (ref / LN2, "your values are in bits (logarithm base 2). The book measures in nats, with "
                        "the natural logarithm: torch.log, or F.binary_cross_entropy_with_logits."),
            (-ref, "your values are negative: that is log p(x | z). The NLL is its negative, "
                   "-log p(x | z), which is never below 0."),
            (_recon_nll(p, x), "you passed probabilities, torch.sigmoid(logits), to a function that "
                               "expects logits: binary_cross_entropy_with_logits applies the sigmoid "
                               "itself, so pass the logits unchanged."),
            (-(x * F.logsigmoid(logits)).flatten(1).sum(1),
             "you only counted x log p. A pixel costs -[x log p + (1 - x) log(1 - p)]: add the "
             "(1 - x) log(1 - p) term, which scores the background."),
            (((p - x) ** 2).flatten(1).sum(1), "that is the squared error between sigmoid(logits) and x. "
                                               "The Bernoulli NLL is -[x log p + (1 - x) log(1 - p)], "
                                               "summed over the pixels."),
        ])
        raise _Wrong(f"for the first image you give {out[0]:.2f} nats; its Bernoulli NLL is "
                     f"{ref[0]:.2f}. A pixel costs -[x log p + (1 - x) log(1 - p)] with "
                     f"p = sigmoid(logit), summed over the image's 784 pixels.")
    # A confident decoder: logits of +-40, right on some pixels and wrong on others.
    logits[:, 0, 0, :10], x[:, 0, 0, :10] = 40.0, 1.0
    logits[:, 0, 1, :10], x[:, 0, 1, :10] = -40.0, 0.0
    logits[:, 0, 2, :5], x[:, 0, 2, :5] = 40.0, 0.0
    pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    out = _per_example(_call(fn, logits.clone(), x.clone(), hints=_PROBABILITIES_HINT), pixel, "pixels")
    ref = pixel.flatten(1).sum(1)
    if not torch.isfinite(out).all():
        raise _Wrong("right for ordinary logits, but infinite or nan when the decoder is confident (a "
                     "logit of 40): in float32, sigmoid(40) is exactly 1, so log(1 - p) = log 0. Work "
                     "from the logits: F.binary_cross_entropy_with_logits, or F.logsigmoid(logits) for "
                     "log p and F.logsigmoid(-logits) for log(1 - p).")
    if not _close(out, ref, rtol=1e-3, atol=1e-2):
        raise _Wrong(f"right for ordinary logits, but off for confident ones (a logit of 40): "
                     f"{out[0]:.2f} instead of {ref[0]:.2f} nats for the first image. Clamping p, adding a "
                     f"small number inside the log, or F.binary_cross_entropy on sigmoid(logits) (which "
                     f"clamps its logarithms at -100) distorts the cost of a confident mistake; compute "
                     f"from the logits with F.binary_cross_entropy_with_logits.")
    return "recon_nll gives the Bernoulli NLL in nats per image, also for confident logits."


def _nll_floor(x: torch.Tensor) -> torch.Tensor:
    return -(torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x)).flatten(1).sum(1)


@_exercise("ch1_nll_floor", "nll_floor", _nll_floor)
def _check_nll_floor(fn):
    g = _gen(2)
    x = torch.rand(6, 1, 28, 28, generator=g)
    x[torch.rand(x.shape, generator=g) < 0.5] = 0.0  # like the digits: mostly black background,
    x[torch.rand(x.shape, generator=g) < 0.1] = 1.0  # and some pure white ink
    pixel = -(torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x))
    out = _per_example(_call(fn, x.clone()), pixel, "pixels")
    ref = pixel.flatten(1).sum(1)
    if torch.isnan(out).any():
        raise _Wrong("your floor is nan: pixels that are exactly 0 or 1 give 0 * log 0, which PyTorch "
                     "computes as nan, but which counts as 0 (a pure black or white pixel can be "
                     "predicted at no cost). Use torch.xlogy(x, x), or clamp x away from 0 and 1.")
    if not _close(out, ref, rtol=1e-3, atol=1e-2):
        _first_match(out, [
            (ref / 784, "you averaged over the 784 pixels; the floor of an image's NLL is the sum of "
                        "its pixels' entropies."),
            (ref / LN2, "your values are in bits (logarithm base 2); use the natural logarithm, nats."),
            (-ref, "your values are negative. The binary entropy -[x log x + (1 - x) log(1 - x)] is "
                   "never below 0: check the sign."),
            (-torch.xlogy(x, x).flatten(1).sum(1),
             "you only counted x log x. The best prediction for a pixel is p = x, and its cost is the "
             "binary entropy -[x log x + (1 - x) log(1 - x)]: add the (1 - x) log(1 - x) term."),
        ], rtol=1e-3, atol=1e-2)
        raise _Wrong(f"for the first image you give {out[0]:.2f} nats, the floor is {ref[0]:.2f}. The "
                     f"best prediction for a pixel of value x is p = x, and it costs "
                     f"-[x log x + (1 - x) log(1 - x)] nats; sum that over the pixels.")
    return "nll_floor gives each image's binary entropy, the lowest Bernoulli NLL any model can reach."


# --- chapter 2: sampling codes, and gaps ---------------------------------------------------------

def _fitted_gaussian_codes(codes: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    return codes.mean(0) + codes.std(0) * torch.randn(n, codes.shape[1], generator=generator)


@_exercise("ch2_fitted_gaussian", "fitted_gaussian_codes", _fitted_gaussian_codes)
def _check_fitted_gaussian(fn):
    g = _gen(3)
    centre, spread = torch.tensor([5.0, -3.0, 0.5]), torch.tensor([4.0, 0.5, 2.0])
    codes = centre + spread * math.sqrt(3) * (2 * torch.rand(3000, 3, generator=g) - 1)
    m, s = codes.mean(0).double(), codes.std(0).double()
    n = 20_000
    out = _tensor(_call(fn, codes.clone(), n, _gen(30), seed=1))
    if out.shape == (3, n):
        raise _Wrong(f"your codes have shape [3, {n}]: one row per code is expected, shape [n, d] = "
                     f"[{n}, 3] (draw torch.randn(n, d, ...), not (d, n)).")
    if out.shape != (n, 3):
        raise _Wrong(f"expected n = {n} codes of 3 numbers, shape [{n}, 3], got {list(out.shape)}.")
    om, os = out.mean(0), out.std(0)

    def near(a, b, rel=0.05):
        return bool(((a - b).abs() <= rel * b.abs() + 5 * os / math.sqrt(n) + 1e-6).all())

    mean_ok, std_ok = near(om, m), near(os, s)
    if mean_ok and std_ok:
        inside = (((out - m) / s).abs() < 1).double().mean().item()
        if abs(inside - 0.6827) > 0.03:
            raise _Wrong(f"right mean and spread, but {inside:.0%} of your codes lie within one standard "
                         f"deviation of the mean, where a Gaussian puts 68%: draw the noise with "
                         f"torch.randn (normal), not torch.rand (uniform).")
        again = _tensor(_call(fn, codes.clone(), n, _gen(30), seed=2))
        if not torch.equal(out, again):
            raise _Wrong("right distribution, but the same generator gave different codes: your "
                         "function ignores its generator. Pass generator=generator to torch.randn so "
                         "that a seeded generator gives the same codes every time.")
        return ("your codes have the mean and the standard deviation of the training codes in every "
                "dimension, and are Gaussian.")
    if bool((os < 1e-6).all()):
        raise _Wrong("all your codes are the same: there is no noise. Draw it with "
                     "torch.randn(n, d, generator=generator).")
    if near(om, torch.zeros(3), 0) and near(os, torch.ones(3)):
        raise _Wrong("your codes come from N(0, I), not from a fitted Gaussian: shift them by "
                     "codes.mean(0) and scale them by codes.std(0).")
    global_m, global_s = codes.mean().double().expand(3), codes.std().double().expand(3)
    checks = [
        (near(om, global_m, 0) and near(os, global_s),
         "codes.mean() averages all the numbers together, and codes.std() too; fit each dimension: "
         "codes.mean(0) and codes.std(0)."),
        (mean_ok and near(os, s ** 2), "your spread is the variance of the codes; scale the noise by "
                                       "their standard deviation, codes.std(0)."),
        (mean_ok and near(os, torch.ones(3)), "right centre, but a spread of 1 in every dimension: "
                                              "multiply the noise by codes.std(0)."),
        (mean_ok and near(os, global_s),
         "codes.std() is one spread for all the numbers together; fit each dimension with codes.std(0)."),
        (std_ok and near(om, torch.zeros(3), 0), "right spread, but centred at 0: add codes.mean(0)."),
        (std_ok and near(om, global_m, 0),
         "codes.mean() averages all the numbers together; fit each dimension with codes.mean(0)."),
        (near(om, m + 0.5 * s) and near(os, s / math.sqrt(12)),
         "torch.rand draws uniform numbers in [0, 1); a Gaussian needs torch.randn."),
    ]
    for matched, message in checks:
        if matched:
            raise _Wrong(message)
    raise _Wrong(f"per dimension, your codes have mean {_fmt(om)} and standard deviation {_fmt(os)}; "
                 f"the training codes have mean {_fmt(m)} and standard deviation {_fmt(s)}.")


def _nearest(queries: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    # in chunks of queries, so that 10,000 codes against 60,000 never build one huge distance matrix
    return torch.cat([torch.cdist(q, reference).min(1).values for q in queries.split(256)])


def _share_in_gaps(samples: torch.Tensor, train_codes: torch.Tensor, test_codes: torch.Tensor,
               quantile: float = 0.99) -> float:
    threshold = _nearest(test_codes, train_codes).quantile(quantile)
    return (_nearest(samples, train_codes) > threshold).float().mean().item()


@_exercise("ch2_gap_share", "share_in_gaps", _share_in_gaps)
def _check_share_in_gaps(fn):
    g = _gen(4)
    centres = torch.tensor([[-4.0, 0.0], [3.0, 3.0], [2.0, -4.0]])

    def cloud(n):
        return centres[torch.randint(3, (n,), generator=g)] + 0.6 * torch.randn(n, 2, generator=g)

    train, test = cloud(2000), cloud(500)
    low, high = train.min(0).values, train.max(0).values
    samples = low + (high - low) * torch.rand(2000, 2, generator=g)
    args = samples.clone(), train.clone(), test.clone()
    out = _number(_call(fn, *args, 0.99), "share_in_gaps")
    ref = _share_in_gaps(samples, train, test, 0.99)
    tol = 2.5 / len(samples)
    if abs(out - ref) > tol:
        sample_d, test_d = _nearest(samples, train), _nearest(test, train)
        self_threshold = torch.cdist(train, train).min(1).values.quantile(0.99)
        mean_code = train.mean(0, keepdim=True)
        variants = [
            ((sample_d > self_threshold).float().mean(),
             "a training code's nearest training code is itself, at distance 0, so a threshold taken "
             "from the training codes' own distances is (almost) 0. Take the threshold from the test "
             "codes: their distances to the nearest training code."),
            ((sample_d > sample_d.quantile(0.99)).float().mean(),
             "you took the threshold from the samples' own distances, so about 1% of them lie beyond "
             "it whatever they are. The threshold must come from real codes: the test codes' "
             "distances to their nearest training code."),
            ((sample_d <= test_d.quantile(0.99)).float().mean(),
             "you counted the samples near the data; a gap is where the nearest training code is "
             "farther than the threshold (>)."),
            (torch.tensor(100 * ref), "return a share between 0 and 1, not a percentage."),
            ((sample_d > test_d.max()).float().mean(),
             "you took the largest test distance as the threshold; use the quantile you were given, "
             "test_distances.quantile(quantile)."),
            ((_nearest(samples, test) > test_d.quantile(0.99)).float().mean(),
             "measure each sample's distance to its nearest *training* code, as for the test codes."),
            ((torch.cdist(samples, mean_code)[:, 0] > torch.cdist(test, mean_code)[:, 0].quantile(0.99))
             .float().mean(),
             "you measured the distance to the mean code. A gap is far from the *nearest* training "
             "code: torch.cdist(samples, train_codes).min(1).values."),
        ]
        for value, message in variants:
            if abs(out - value.item()) <= tol:
                raise _Wrong(message)
        raise _Wrong(f"on the checker's data, {ref:.1%} of the samples are in gaps; you give {out:.4g}. "
                     f"A sample is in a gap when its nearest training code is farther away than the "
                     f"given quantile of the test codes' nearest-training-code distances.")
    out = _number(_call(fn, *args, 0.8), "share_in_gaps")
    ref = _share_in_gaps(samples, train, test, 0.8)
    if abs(out - ref) > tol:
        raise _Wrong("right for quantile=0.99, but not for quantile=0.8: use the quantile argument "
                     "rather than a fixed 0.99.")
    return (f"on three clusters of codes, {_share_in_gaps(samples, train, test):.0%} of uniform "
            f"bounding-box samples are in gaps, and share_in_gaps says so.")


# --- chapter 3: the VAE encoder --------------------------------------------------------------------

def _reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


@_exercise("ch3_reparameterize", "reparameterize", _reparameterize)
def _check_reparameterize(fn):
    n = 20_000
    mu_row, sigma_row = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.5, 2.0, 3.0])
    mu = mu_row.repeat(n, 1).requires_grad_()
    logvar = (2 * sigma_row.log()).repeat(n, 1).requires_grad_()
    z = _call(fn, mu, logvar, seed=3)
    values = _tensor(z, "reparameterize")
    if values.shape != (n, 3):
        raise _Wrong(f"z should have the shape of mu, [batch, latent] = [{n}, 3]; got {list(values.shape)}.")
    if not torch.isfinite(values).all():
        raise _Wrong("z contains inf or nan; sigma = exp(logvar / 2) is finite for these inputs.")
    m, s, lv = mu_row.double(), sigma_row.double(), 2 * sigma_row.double().log()
    if torch.equal(values, mu.detach().double()):
        raise _Wrong("z is exactly mu: the noise is missing. Draw eps = torch.randn_like(mu) and "
                     "return mu + sigma * eps.")
    om, os = values.mean(0), values.std(0)
    mean_ok = bool(((om - m).abs() < 6 * os / math.sqrt(n) + 1e-6).all())

    def spread_is(target):
        return bool(((os - target).abs() <= 0.03 * target + 1e-6).all())

    if mean_ok and spread_is(s):
        if not isinstance(z, torch.Tensor) or z.grad_fn is None:
            raise _Wrong("z has the right distribution, but no gradient flows from it back to mu and "
                         "logvar (.sample(), .detach(), .item() or torch.no_grad() cut the path). Build "
                         "z = mu + sigma * eps from the tensors you were given.")
        g_mu, g_lv = torch.autograd.grad(z.sum(), [mu, logvar], allow_unused=True)
        zd = z.detach()
        if g_mu is None or g_lv is None or not _close(g_mu, torch.ones_like(g_mu), 1e-3, 1e-3) \
                or not _close(g_lv, 0.5 * (zd - mu.detach()), 1e-3, 1e-3):
            raise _Wrong("z has the right distribution, but not the gradient of mu + exp(logvar / 2) * "
                         "eps: dz/dmu should be 1 and dz/dlogvar = (z - mu) / 2. A sampler such as "
                         "torch.normal(mu, sigma) does not pass these gradients; write the sum yourself, "
                         "with eps = torch.randn_like(mu).")
        return ("z = mu + exp(logvar / 2) * eps: right mean, right spread, and gradients flow to mu and "
                "logvar.")
    if bool((os < 1e-6).all()):
        raise _Wrong("z has no randomness: the noise eps is missing. Draw eps = torch.randn_like(mu) "
                     "and return mu + sigma * eps.")
    if mean_ok:
        spreads = [
            (s ** 2, "your sample has the right mean, but its spread is exp(logvar) instead of "
                     "exp(logvar / 2): exp(logvar) is the variance, and sigma is its square root."),
            (lv.abs(), "you multiplied the noise by logvar itself. It is the logarithm of the variance: "
                       "sigma = exp(logvar / 2)."),
            (torch.ones(3, dtype=torch.float64), "your spread is 1 in every dimension: multiply the "
                                                 "noise by sigma = exp(logvar / 2)."),
            (1 / s, "your spread is 1 / sigma: you divided by sigma, or used exp(-logvar / 2). "
                    "Multiply by sigma = exp(logvar / 2)."),
            (s ** 4, "your spread is exp(2 logvar); sigma = exp(logvar / 2)."),
        ]
        for target, message in spreads:
            if spread_is(target):
                raise _Wrong(message)
    elif spread_is(s / math.sqrt(12)) and bool(((om - (m + 0.5 * s)).abs() < 0.05 * s).all()):
        raise _Wrong("torch.rand_like draws uniform noise in [0, 1); the trick needs standard normal "
                     "noise, torch.randn_like.")
    elif spread_is(s):
        raise _Wrong(f"right spread, but your samples are centred at {_fmt(om)} instead of mu = "
                     f"{_fmt(m)}: add mu.")
    raise _Wrong(f"per dimension your samples have mean {_fmt(om)} and standard deviation {_fmt(os)}; "
                 f"for mu = {_fmt(m)} and logvar = {_fmt(lv)} they should have mean mu and standard "
                 f"deviation sigma = exp(logvar / 2) = {_fmt(s)}.")


def _split_encoder_output(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu, logvar = h.chunk(2, dim=1)
    return mu, torch.exp(0.5 * logvar)


@_exercise("ch3_split", "split_encoder_output", _split_encoder_output)
def _check_split(fn):
    h = torch.randn(6, 8, generator=_gen(5))
    out = _call(fn, h.clone())
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise _Wrong("return two tensors, mu and sigma: `return mu, sigma`.")
    mu, sigma = _tensor(out[0], "mu"), _tensor(out[1], "sigma")
    hd = h.double()
    first, second = hd[:, :4], hd[:, 4:]
    if mu.shape == (3, 8):
        raise _Wrong("you split along the batch (dim 0), giving half of the images to mu and half to "
                     "sigma. Split each row: h.chunk(2, dim=1).")
    if mu.shape != (6, 4) or sigma.shape != (6, 4):
        raise _Wrong(f"for h of shape [6, 8] (6 images, latent size 4), mu and sigma should each have "
                     f"shape [6, 4]; got {list(mu.shape)} and {list(sigma.shape)}.")
    if _close(mu, hd[:, ::2]) or _close(mu, hd[:, 1::2]):
        raise _Wrong("you took every other column. The encoder's first `latent` outputs are mu and the "
                     "last `latent` are the log-variance: h.chunk(2, dim=1).")
    if _close(mu, second) or _close(sigma, torch.exp(0.5 * first)):
        raise _Wrong("mu and the log-variance are swapped: the first half of each row is mu, the "
                     "second half the log-variance.")
    if not _close(mu, first):
        raise _Wrong("mu should be the first half of each row of h, h[:, :latent].")
    _first_match(sigma, [
        (torch.exp(second), "that is exp(logvar), the variance; sigma is its square root, "
                            "exp(logvar / 2)."),
        (second, "sigma is the log-variance itself: the encoder outputs log sigma^2, so "
                 "sigma = exp(logvar / 2)."),
        (0.5 * second, "that is log sigma; exponentiate it: sigma = exp(logvar / 2)."),
        (torch.exp(-0.5 * second), "that is 1 / sigma; sigma = exp(+logvar / 2)."),
        (F.softplus(second), "the book's encoder outputs the log-variance, so sigma = exp(logvar / 2), "
                             "not softplus."),
    ])
    if not _close(sigma, torch.exp(0.5 * second)):
        raise _Wrong("sigma should be exp(logvar / 2), with logvar the second half of each row of h.")
    return "mu is the first half of each row, and sigma = exp(logvar / 2) comes from the second half."


# --- chapter 4: how narrow are the clouds? --------------------------------------------------------

def _mean_sigma(logvar: torch.Tensor) -> torch.Tensor:
    return torch.exp(0.5 * logvar).mean(1)


@_exercise("ch4_mean_sigma", "mean_sigma", _mean_sigma)
def _check_mean_sigma(fn):
    logvar = -6 + 7 * torch.rand(5, 6, generator=_gen(6))
    sigma = torch.exp(0.5 * logvar)
    out = _per_example(_call(fn, logvar.clone()), sigma, "latent dimensions", reduce="mean")
    ref = sigma.mean(1)
    if not _close(out, ref):
        _first_match(out, [
            (torch.exp(logvar).mean(1), "you averaged exp(logvar), the variances; sigma is the square "
                                        "root of the variance, exp(logvar / 2)."),
            (torch.exp(0.5 * logvar.mean(1)),
             "you averaged the log-variances first and then exponentiated: that is the geometric mean "
             "of the sigmas, smaller than their mean whenever they differ. Turn each logvar into sigma "
             "first, then average."),
            (torch.exp(logvar).mean(1).sqrt(),
             "that is the square root of the mean variance. Average the sigmas themselves: "
             "exp(logvar / 2).mean(1)."),
            (logvar.mean(1), "you averaged logvar; turn it into sigma = exp(logvar / 2) first."),
            (sigma.sum(1), "you summed over the latent dimensions; the mean sigma averages them."),
        ])
        raise _Wrong(f"for the first image you give {out[0]:.4g}; its mean sigma is {ref[0]:.4g}. "
                     f"sigma = exp(logvar / 2), averaged over the latent dimensions.")
    return "mean_sigma averages sigma = exp(logvar / 2) over each image's latent dimensions."


def _noise_to_spread(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return torch.exp(0.5 * logvar).median(0).values / mu.std(0)


_MEDIAN_HINT = {
    "return_types": "tensor.median(0) returns a pair (values, indices); use tensor.median(0).values.",
}


@_exercise("ch4_noise_to_spread", "noise_to_spread", _noise_to_spread)
def _check_noise_to_spread(fn):
    g = _gen(7)
    mu = torch.randn(400, 5, generator=g) * torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0]) + 3.0
    logvar = 2 * (torch.tensor([-3.0, -2.0, -1.5, -1.0, 0.0]) + torch.randn(400, 5, generator=g))
    out = _tensor(_call(fn, mu.clone(), logvar.clone(), hints=_MEDIAN_HINT))
    if out.shape != (5,):
        if out.shape == (400,):
            raise _Wrong("you returned one value per image; the ratio is per latent dimension: take the "
                         "median and the standard deviation over the images (dim 0).")
        raise _Wrong(f"expected one ratio per latent dimension, shape [5], got {list(out.shape)}.")
    sigma = torch.exp(0.5 * logvar)
    ref = sigma.median(0).values / mu.std(0)
    if not _close(out, ref, rtol=3e-3):
        _first_match(out, [
            (sigma.mean(0) / mu.std(0), "you used the mean sigma; the exercise asks for the median, "
                                        "which a few wide clouds cannot pull up: sigma.median(0).values."),
            (torch.exp(logvar).median(0).values / mu.std(0),
             "you used exp(logvar), the variance; sigma = exp(logvar / 2)."),
            (sigma.median(0).values / mu.var(0), "you divided by the variance of the centres; divide by "
                                                 "their standard deviation, mu.std(0)."),
            (sigma.median() / mu.std(0), "sigma.median() without a dimension is the median of all the "
                                         "numbers together; take it per dimension: sigma.median(0).values."),
            (mu.std(0) / sigma.median(0).values, "your ratio is upside down: the median sigma divided "
                                                 "by the spread of the centres."),
            (sigma.median(0).values / mu.mean(0).abs(), "divide by the spread of the centres, "
                                                        "mu.std(0), not by their mean."),
        ], rtol=3e-3)
        raise _Wrong(f"for the first dimension you give {out[0]:.4g}, the ratio is {ref[0]:.4g}: the "
                     f"median over images of sigma = exp(logvar / 2), divided by the standard deviation "
                     f"of mu over the images.")
    return "noise_to_spread gives each dimension's median sigma divided by the spread of its centres."


# --- chapter 5: the KL term ----------------------------------------------------------------------

def _kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return gaussian_kl(mu, logvar)


@_exercise("ch5_kl", "kl_to_standard_normal", _kl_to_standard_normal)
def _check_kl(fn):
    g = _gen(8)
    mu = 1.5 * torch.randn(5, 4, generator=g)
    logvar = -3 + 4.5 * torch.rand(5, 4, generator=g)
    var = torch.exp(logvar)
    terms = 0.5 * (mu.pow(2) + var - 1 - logvar)
    out = _per_example(_call(fn, mu.clone(), logvar.clone()), terms, "latent dimensions")
    ref = terms.sum(1)
    if not _close(out, ref):
        d = mu.shape[1]
        sigma = torch.exp(0.5 * logvar)
        _first_match(out, [
            (2 * ref, "your KL is twice too large: the closed form has a factor 1/2, "
                      "0.5 * (mu^2 + sigma^2 - 1 - log sigma^2)."),
            (ref / d, "you averaged over the latent dimensions. The KL of independent dimensions adds "
                      "up: sum the per-dimension terms."),
            (-ref, "your KL is negative; a KL divergence is never below 0. Check the sign: "
                   "0.5 * (mu^2 + sigma^2 - 1 - log sigma^2)."),
            (0.5 * (mu.pow(2) + sigma - 1 - logvar).sum(1),
             "you used sigma where the formula has the variance sigma^2 = exp(logvar)."),
            (0.5 * (mu.pow(2) + var - 1 - 0.5 * logvar).sum(1),
             "you used log sigma where the formula has log sigma^2, which is logvar itself."),
            (0.5 * (mu.pow(2) + var - logvar).sum(1),
             "the -1 is missing: without it a cloud equal to N(0, 1) would cost 1/2 nat per dimension "
             "instead of 0."),
            (0.5 * (var - 1 - logvar).sum(1), "the mu^2 term is missing: a cloud centred away from 0 "
                                              "must cost more."),
            (0.5 * (mu.pow(2) + var - 1 + logvar).sum(1), "the sign of the log sigma^2 term is wrong: "
                                                          "it is - logvar."),
            (0.5 * ((1 + mu.pow(2)) / var - 1 + logvar).sum(1),
             "that is KL(N(0, I) || q), the other direction. The VAE uses KL(q || N(0, I)) = "
             "0.5 * (mu^2 + sigma^2 - 1 - log sigma^2)."),
        ])
        raise _Wrong(f"for the first image you give {out[0]:.4g} nats, the KL is {ref[0]:.4g}: "
                     f"0.5 * (mu^2 + sigma^2 - 1 - log sigma^2), summed over the latent dimensions.")
    return "kl_to_standard_normal gives KL(q || N(0, I)) in nats per image."


def _beta_vae_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                   beta: float) -> torch.Tensor:
    return _recon_nll(logits, x) + beta * _kl_to_standard_normal(mu, logvar)


@_exercise("ch5_beta_loss", "beta_vae_loss", _beta_vae_loss)
def _check_beta_loss(fn):
    g = _gen(9)
    logits = (2 * torch.randn(6, 1, 28, 28, generator=g)).clamp(-6, 6)
    x = torch.rand(6, 1, 28, 28, generator=g)
    mu, logvar = 2 * torch.randn(6, 3, generator=g), -2 + 2 * torch.rand(6, 3, generator=g)
    recon, kl = _recon_nll(logits, x), _kl_to_standard_normal(mu, logvar)
    for beta in (4.0, 0.25, 0.0):
        out = _tensor(_call(fn, logits.clone(), x.clone(), mu.clone(), logvar.clone(), beta))
        ref = recon + beta * kl
        if out.dim() == 0:
            raise _Wrong("you returned one number for the batch; return one loss per image, shape [6] "
                         "(training takes the mean later).")
        if out.shape != (6,):
            raise _Wrong(f"expected one loss per image, shape [6], got {list(out.shape)}.")
        if not _close(out, ref, 1e-4, 1e-3):
            _first_match(out, [
                (beta * recon + kl, "beta weights the KL term, not the reconstruction: recon + beta * kl."),
                (beta * (recon + kl), "you scaled the whole loss by beta; only the KL term is weighted: "
                                      "recon + beta * kl."),
                (recon + kl, "your loss ignores beta: with beta = 4 the KL term counts four times."),
                (recon - beta * kl, "the KL term is added, not subtracted: the loss to minimise is "
                                    "recon + beta * kl."),
                (-(recon + beta * kl), "that is the (beta-weighted) ELBO, which training maximises; the "
                                       "loss to minimise is its negative, recon + beta * kl."),
                (recon + kl / beta if beta else recon, "you divided the KL term by beta; multiply it: "
                                                       "recon + beta * kl."),
            ], 1e-4, 1e-3)
            raise _Wrong(f"with beta = {beta} you give {out[0]:.2f} nats for the first image, the loss is "
                         f"{ref[0]:.2f}: recon + beta * kl, with the Bernoulli NLL and the closed-form KL "
                         f"per image.")
    return "beta_vae_loss = recon + beta * kl, per image, for beta = 4, 0.25 and 0."


# --- chapter 6: gradient estimators ---------------------------------------------------------------

def _score_function_gradient(f: Callable, mu: torch.Tensor, sigma: torch.Tensor,
                             eps: torch.Tensor) -> torch.Tensor:
    z = mu + sigma * eps
    return (f(z) * (z - mu) / sigma**2).mean()


_TOY = [  # f, its derivative, the exact d/dmu and d/dsigma of E[f(z)] for z ~ N(mu, sigma^2)
    ("z ** 2", lambda z: z**2, lambda z: 2 * z,
     lambda m, s: (2 * m, 2 * s)),
    ("torch.sin(z)", torch.sin, torch.cos,
     lambda m, s: (math.cos(m) * math.exp(-s**2 / 2), -s * math.sin(m) * math.exp(-s**2 / 2))),
]
_MU, _SIGMA, _N_DRAWS = 1.5, 0.5, 100_000


_NO_GRAPH_HINT = {
    "does not require grad": "no gradient reached mu or sigma: build z = mu + sigma * eps from the tensors "
                             "you were given, and differentiate the mean of f(z) with torch.autograd.grad(..., "
                             "[mu, sigma]) (.sample(), .detach(), .item() or torch.no_grad() cut the path).",
    "not have been used in the graph": "one of mu and sigma was not used to compute f(z): z must depend on "
                                       "both, z = mu + sigma * eps.",
}

_NO_AUTOGRAD_HINT = {
    "does not require grad": "the score-function estimator needs no autograd: it only evaluates f(z). "
                             "Average f(z) * (z - mu) / sigma**2 over the draws.",
}


@_exercise("ch6_score_function", "score_function_gradient", _score_function_gradient)
def _check_score_function(fn):
    eps = torch.randn(_N_DRAWS, generator=_gen(10), dtype=torch.float64)
    mu, sigma = torch.tensor(_MU, dtype=torch.float64), torch.tensor(_SIGMA, dtype=torch.float64)
    z = mu + sigma * eps
    estimates = []
    for label, f, df, exact in _TOY:
        out = _number(_call(fn, f, mu.clone(), sigma.clone(), eps.clone(), hints=_NO_AUTOGRAD_HINT),
                      "score_function_gradient")
        terms = f(z) * (z - mu) / sigma**2
        ref, se = terms.mean().item(), terms.std().item() / math.sqrt(_N_DRAWS)
        if abs(out - ref) <= 1e-6 * (1 + abs(ref)):
            estimates.append(out)
            continue
        _first_match(torch.tensor(out), [
            ((f(z) * eps).mean(), "you weighted f(z) by eps = (z - mu) / sigma. The score of mu is "
                                  "d log q / d mu = (z - mu) / sigma^2 = eps / sigma: divide by sigma "
                                  "once more."),
            ((f(z) * (z - mu)).mean(), "you weighted f(z) by (z - mu); the score of mu is "
                                       "(z - mu) / sigma^2."),
            (df(z).mean(), "that is the reparameterization estimate: it differentiates f. The "
                           "score-function estimator only evaluates f, and weights f(z) by the score "
                           "(z - mu) / sigma^2."),
            (((z - mu) / sigma**2).mean(), "you averaged the score alone, whose mean is 0; weight each "
                                           "draw's f(z) by its score: f(z) * (z - mu) / sigma^2."),
            (f(z).mean(), "that estimates E[f(z)] itself, not its gradient: weight each f(z) by the "
                          "score (z - mu) / sigma^2."),
            (-terms.mean(), "the sign is flipped: the estimate is the mean of +f(z) (z - mu) / sigma^2."),
            (terms.sum(), f"you summed over the {_N_DRAWS:,} draws; average them."),
        ], rtol=1e-6, atol=1e-9)
        if abs(out - exact(_MU, _SIGMA)[0]) > 4 * se:
            raise _Wrong(f"for f(z) = {label}, mu = {_MU} and sigma = {_SIGMA}, your estimate from "
                         f"{_N_DRAWS:,} draws is {out:.4g}, but the exact gradient is "
                         f"{exact(_MU, _SIGMA)[0]:.4g} (the estimator gives {ref:.4g} +- {se:.2g}). "
                         f"Average f(z) * (z - mu) / sigma^2 over the draws z = mu + sigma * eps.")
        estimates.append(out)
    return (f"on f(z) = z^2 with mu = {_MU}, sigma = {_SIGMA}, your estimate from {_N_DRAWS:,} draws "
            f"is {estimates[0]:.3f}; the exact gradient is 2 mu = {2 * _MU:g}.")


def _reparam_gradient(f: Callable, mu: torch.Tensor, sigma: torch.Tensor,
                      eps: torch.Tensor) -> torch.Tensor:
    z = mu + sigma * eps
    return torch.stack(torch.autograd.grad(f(z).mean(), [mu, sigma]))


@_exercise("ch6_reparam_gradient", "reparam_gradient", _reparam_gradient)
def _check_reparam_gradient(fn):
    eps = torch.randn(_N_DRAWS, generator=_gen(11), dtype=torch.float64)
    toys = [("(z - 3) ** 2", lambda z: (z - 3) ** 2, lambda z: 2 * (z - 3),
             lambda m, s: (2 * (m - 3), 2 * s))] + _TOY[1:]
    results = []
    for label, f, df, exact in toys:
        mu = torch.tensor(_MU, dtype=torch.float64, requires_grad=True)
        sigma = torch.tensor(_SIGMA, dtype=torch.float64, requires_grad=True)
        out = _call(fn, f, mu, sigma, eps.clone(), hints=_NO_GRAPH_HINT)
        if isinstance(out, (tuple, list)) and len(out) == 2:
            out = torch.stack([torch.as_tensor(o, dtype=torch.float64).reshape(()) for o in out])
        out = _tensor(out, "reparam_gradient").reshape(-1)
        if out.shape != (2,):
            raise _Wrong(f"return two numbers, the estimates of d/dmu and d/dsigma of E[f(z)]; got shape "
                         f"{list(out.shape)}.")
        z = _MU + _SIGMA * eps
        ref = torch.stack([df(z).mean(), (df(z) * eps).mean()])
        if _close(out, ref, 1e-6, 1e-9):
            results.append(out)
            continue
        _first_match(out, [
            (_N_DRAWS * ref, f"you summed f(z) over the {_N_DRAWS:,} draws; differentiate their mean, "
                             f"f(z).mean(), the Monte Carlo estimate of E[f(z)]."),
            (torch.stack([df(torch.tensor(_MU, dtype=torch.float64)), torch.tensor(0.0, dtype=torch.float64)]),
             "your gradient with respect to sigma is 0: you evaluated f at mu, without the noise. Use "
             "z = mu + sigma * eps."),
            (torch.stack([df(z).mean(), df(z).mean()]), "dz/dsigma is eps, so the gradient with respect "
                                                        "to sigma is the mean of f'(z) * eps."),
            (-ref, "the sign is flipped: return the gradient of E[f(z)] itself."),
        ], 1e-6, 1e-9)
        se = torch.stack([df(z).std(), (df(z) * eps).std()]) / math.sqrt(_N_DRAWS)
        target = torch.tensor(exact(_MU, _SIGMA), dtype=torch.float64)
        if ((out - target).abs() > 4 * se).any():
            raise _Wrong(f"for f(z) = {label}, mu = {_MU} and sigma = {_SIGMA}, you give "
                         f"({out[0]:.4g}, {out[1]:.4g}); the exact gradient is ({target[0]:.4g}, "
                         f"{target[1]:.4g}). Differentiate the mean of f(mu + sigma * eps) with respect "
                         f"to mu and sigma.")
        results.append(out)
    return (f"on f(z) = (z - 3)^2 with mu = {_MU}, sigma = {_SIGMA}, your estimate is "
            f"({results[0][0]:.3f}, {results[0][1]:.3f}); the exact gradient of "
            f"E[f(z)] = (mu - 3)^2 + sigma^2 is (2 (mu - 3), 2 sigma) = (-3, 1).")


# --- chapter 7: the importance-weighted bound ----------------------------------------------------

def _iw_bound(log_w: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


@_exercise("ch7_iw_bound", "iw_bound", _iw_bound)
def _check_iw_bound(fn):
    g = _gen(12)
    k, batch = 50, 8
    noise = torch.randn(k, batch, generator=g)
    log_w = -3 + 1.5 * noise
    out = _tensor(_call(fn, log_w.clone()))
    if out.shape == (k,):
        raise _Wrong(f"you reduced over the images (dim 1); average the K = {k} importance weights of "
                     f"each image, over dim 0, to get one value per image.")
    if out.shape != (batch,):
        raise _Wrong(f"for log-weights of shape [K, batch] = [{k}, {batch}] return one value per image, "
                     f"shape [{batch}]; got {list(out.shape)}.")
    ref = _iw_bound(log_w)
    if not _close(out, ref, 1e-4, 1e-4):
        lse = torch.logsumexp(log_w, 0)
        _first_match(out, [
            (lse, f"that is the log of the sum of the weights; L_K uses their average: subtract "
                  f"log K = log {k}."),
            (log_w.mean(0), "you averaged the log-weights: that is the ELBO estimate, which Jensen's "
                            "inequality puts below L_K. Average the weights themselves, in log space: "
                            "torch.logsumexp(log_w, 0) - log K."),
            (log_w.max(0).values, "the largest log-weight alone is not the average of the weights: "
                                  "torch.logsumexp(log_w, 0) - log K."),
            (log_w.max(0).values - math.log(k), "the largest weight alone is not the sum of the weights: "
                                                "torch.logsumexp(log_w, 0) - log K."),
        ])
        raise _Wrong(f"for the first image you give {out[0]:.4g}, L_K is {ref[0]:.4g}: the log of the "
                     f"average of the K weights exp(log_w).")
    # Realistic log-weights: an image's log p(x, z) is hundreds of nats below 0.
    log_w = -800 + 3 * noise
    out = _tensor(_call(fn, log_w.clone()))
    if not torch.isfinite(out).all():
        raise _Wrong("right formula, but -inf (or nan) for realistic log-weights of about -800 nats: "
                     "exp(-800) underflows to 0, even in float64. Use torch.logsumexp(log_w, 0) - "
                     "math.log(K), which factors out the largest weight before exponentiating.")
    if not _close(out, _iw_bound(log_w), 1e-5, 1e-3):
        raise _Wrong("right for small log-weights, but off for realistic ones (about -800 nats); use "
                     "torch.logsumexp(log_w, 0) - math.log(K).")
    return "iw_bound averages the importance weights in log space, without underflow."


def _to_bits_per_dim(loglik: float, n_dims: int) -> float:
    return -loglik / (n_dims * math.log(2))


@_exercise("ch7_bits_per_dim", "to_bits_per_dim", _to_bits_per_dim)
def _check_bits_per_dim(fn):
    for loglik, n_dims in ((-100.0, 784), (-6000.0, 3072)):
        out = _number(_call(fn, loglik, n_dims), "to_bits_per_dim")
        ref = _to_bits_per_dim(loglik, n_dims)
        if math.isclose(out, ref, rel_tol=1e-6):
            continue
        variants = [
            (-ref, "bits per dimension is a cost: a log-likelihood of -100 nats gives a positive "
                   "number, -loglik / (n_dims ln 2)."),
            (ref * LN2, "that is nats per dimension; divide by ln 2 to turn nats into bits."),
            (ref * LN2 * LN2, "you multiplied by ln 2; a nat is 1 / ln 2 bits, so divide by ln 2."),
            (ref * n_dims, "that is bits per image; divide by the number of dimensions, n_dims."),
            (ref * LN2 / math.log(10), "that is in base-10 digits; bits use ln 2: -loglik / (n_dims ln 2)."),
            (_to_bits_per_dim(loglik, 784), "use the n_dims argument rather than 784: the unit exists "
                                            "to compare images of different sizes."),
        ]
        for value, message in variants:
            if math.isclose(out, value, rel_tol=1e-6):
                raise _Wrong(message)
        raise _Wrong(f"for a log-likelihood of {loglik:g} nats on {n_dims} dimensions you give {out:.4g}, "
                     f"the answer is {ref:.4g} bits per dimension: -loglik / (n_dims ln 2).")
    return "-100 nats on a 28 x 28 image is 0.184 bits per dimension, and your function agrees."
