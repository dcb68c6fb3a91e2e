"""The console of a command: standard output that a reader may close (``| head -1``) or that may fail (a full
disk), and messages on standard error, which may itself be gone (the terminal closed)."""

from __future__ import annotations

import os
import sys


class Output:
    """Standard output while a command runs. A reader that goes away (``| head -1``) stops the printing,
    not the command; a write that fails (a full disk) stops it too, and the command then ends with that
    error. Either way the real standard output is pointed at /dev/null, so that the interpreter's own
    flush at exit cannot fail again."""

    def __init__(self, stream) -> None:
        self.original, self.stream, self.error = stream, stream, None

    def write(self, text: str) -> int:
        if self.stream is not None:
            try:
                return self.stream.write(text)
            except OSError as e:
                self._lost(e)
        return len(text)

    def flush(self) -> None:
        if self.stream is not None:
            try:
                self.stream.flush()
            except OSError as e:
                self._lost(e)

    def _lost(self, e: OSError) -> None:
        if not isinstance(e, BrokenPipeError):
            self.error = self.error or e
        self.stream = None
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.original.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):  # no file behind it (output captured in a test)
            pass

    def __getattr__(self, name: str):
        return getattr(self.original, name)


def tell(text: str) -> None:
    """A message on standard error, which may itself be gone (the terminal closed)."""
    try:
        print(text, file=sys.stderr)
        sys.stderr.flush()
    except OSError:
        pass
