"""Domain exceptions. Only ``cli.py`` turns them into messages and exit codes."""


class ContextrastError(Exception):
    """Base class: a problem the user can fix; its message is one line saying how."""

    exit_code = 1


class ConfigError(ContextrastError):
    """A preset, config file or override is invalid."""

    exit_code = 2


class DataError(ContextrastError):
    """A dataset is missing, malformed or inconsistent."""

    exit_code = 2


class CheckpointError(ContextrastError):
    """A checkpoint is missing, unreadable or not a contextrast checkpoint."""

    exit_code = 2


class ExportError(ContextrastError):
    """An export that cannot be done as asked (opset, output folder, ONNX file)."""

    exit_code = 2


class VerificationError(ContextrastError):
    """The exported graph disagrees with PyTorch beyond the tolerances."""

    exit_code = 1


class Interrupted(ContextrastError):
    """Training stopped by a signal between two steps; ``last.pt`` has been saved.

    The exit code tells schedulers and scripts what stopped the run: 130 for SIGINT
    (Ctrl-C), 143 for SIGTERM (what cluster schedulers send before preemption).
    """

    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Diverged(ContextrastError):
    """The loss became NaN or infinite; nothing non-finite was saved."""

    exit_code = 3


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (its type name if it has none), cut to ``limit``."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
