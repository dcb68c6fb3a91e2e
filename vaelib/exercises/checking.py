"""What every checker shares: the registry of exercises, the verdicts, and the safe call of a learner's
function (fixed seed, copied inputs, a time limit), with the helpers that turn its answer into a number
or name the typical mistake it reproduces. The checkers themselves live in one module per chapter, which
import the underscored names from here; ``vaelib.exercises`` re-exports the public ones."""

from __future__ import annotations

import math
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import torch

from vaelib.errors import first_line
from vaelib.progress import record_passed

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


def _close(a: torch.Tensor | float, b: torch.Tensor | float, rtol: float = 1e-4, atol: float = 1e-4) -> bool:
    """Same shape, and ``|a - b| <= atol + rtol * |b|`` everywhere (``torch.isclose``, in float64)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return a.shape == b.shape and bool(torch.isclose(a, b, rtol=rtol, atol=atol).all())


def _first_match(out: torch.Tensor | float, variants: list[tuple[torch.Tensor | float, str]],
                 rtol: float = 1e-4, atol: float = 1e-4) -> None:
    """Raise the message of the first typical mistake whose result ``out`` reproduces (by :func:`_close`)."""
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

