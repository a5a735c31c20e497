"""User-facing errors. Each message is one line that names the node, layer or file and says what to do."""


class QDeployError(Exception):
    """Base class: the CLI prints ``qdeploy: error: <message>`` and exits non-zero."""


class InputDataError(QDeployError):
    """Bad user data: missing file, wrong format or shape, NaN/Inf."""


class ModelLoadError(QDeployError):
    """A model file or factory that cannot be loaded."""


class UnsupportedModelError(QDeployError):
    """A graph a target cannot lower exactly; the message names the node and the reason."""


class MissingDependencyError(QDeployError):
    """An optional dependency is not installed; the message names the pip extra."""


def one_line(text: str) -> str:
    """Collapse a (possibly multi-line) message from a library into a single line."""
    return " ".join(str(text).split())
