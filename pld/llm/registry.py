"""Model string → backend.

Model strings: ``anthropic/<model>``, ``openai/<model>``, ``openai-compatible/<model>@<base_url>``
and ``local/<name>`` (``local/default``: the embedded Qwen2.5-Coder-1.5B; ``local/small``: the
0.5B fallback). Backends are created once per process and model string (and, for local models,
per role, so teacher and student keep separate prompt caches).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pld.llm.base import Backend, ConfigError
from pld.llm.env import env_float

PROVIDERS = ("anthropic", "openai", "openai-compatible", "local")
LOCAL_MODELS = ("default", "small")
DEFAULT_MODEL = "local/default"

_instances: dict[tuple[str, str], Backend] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model string."""

    model: str
    provider: str
    name: str
    base_url: str | None = None


_URL_FORM = "openai-compatible/<model>@<http(s)://host:port/v1>"
_NAME = re.compile(r"[A-Za-z0-9._:/+-]+")


def _check_base_url(name: str, url: str) -> str:
    """The base URL of an ``openai-compatible`` model string, scheme lower-cased, when it is
    only scheme, host, port and path. Anything that could carry a credential is refused: a
    ``user:password@``, a query, a fragment, ``;`` parameters or ``=`` in the path, written
    plainly or %-escaped, and blanks or control characters anywhere (model
    strings are logged with every call, stored with runs and exports, shown in the app and
    passed to jobs, so a key in one would leak everywhere). No message repeats anything after
    the host."""
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        # Checked before parsing: the parser drops tabs and newlines, joining what follows.
        raise ConfigError(f"model openai-compatible/{name}@…: the base URL holds a blank or a "
                          f"control character; expected {_URL_FORM}")
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # a malformed port raises here
    except ValueError:
        parts, host = None, None
    scheme = parts.scheme.lower() if parts else ""
    # A %-escape in the host part may hide a user:password@ in what would be repeated as host.
    shown = f"openai-compatible/{name}@" + (f"{scheme}://{host}" if scheme and host
                                            and "%" not in parts.netloc else "")
    if parts is None or scheme not in ("http", "https") or not host:
        raise ConfigError(f"model {shown}…: expected {_URL_FORM}")
    path = unquote(parts.path)  # an escaped "?" or "=" reaches a server all the same
    where = ("user:password@" if "@" in parts.netloc or "%" in parts.netloc
             else "query" if parts.query or "?" in url or "?" in path
             else "fragment" if parts.fragment or "#" in url or "#" in path
             else "path parameters" if any(c in path for c in ";=@") else None)
    if where:
        raise ConfigError(
            f"model {shown}…: the base URL carries a {where}, which could hold a credential; "
            "refused so it never reaches the call log, runs, exports or the app. Put the key "
            "in OPENAI_API_KEY instead")
    return f"{scheme}://{parts.netloc}{parts.path}"


def parse_model(model: str) -> ModelSpec:
    """Parse and validate a model string; raise :class:`ConfigError` with a one-line reason."""
    provider, sep, rest = model.partition("/")
    if not sep or not rest:
        raise ConfigError(
            f"model {model!r}: expected PROVIDER/NAME with PROVIDER one of "
            f"{', '.join(PROVIDERS)}"
        )
    if provider not in PROVIDERS:
        raise ConfigError(
            f"model {model!r}: unknown provider {provider!r} (use one of {', '.join(PROVIDERS)})"
        )
    name = rest.partition("@")[0] if provider == "openai-compatible" else rest
    if not _NAME.fullmatch(name or "x"):
        # Not quoted: a name with these characters may be a key pasted in by mistake.
        raise ConfigError(f"model {provider}/…: a model name may hold only letters, digits "
                          "and . _ : / + - (no spaces, ?, #, =, ; or @)")
    if provider == "openai-compatible":
        name, at, url = rest.partition("@")
        if not at or not name:
            raise ConfigError(f"model {model[:model.find('@')] if at else model!r}: expected "
                              f"{_URL_FORM}")
        base_url = _check_base_url(name, url)  # before any message can quote the string
        return ModelSpec(f"{provider}/{name}@{base_url}", provider, name, base_url)
    if provider == "local" and rest not in LOCAL_MODELS:
        raise ConfigError(
            f"model {model!r}: unknown local model (use local/default or local/small)"
        )
    return ModelSpec(model, provider, rest)


def _create(spec: ModelSpec, role: str) -> Backend:
    timeout = env_float("PLD_LLM_TIMEOUT", 120.0, minimum=0.001)
    if spec.provider == "anthropic":
        from pld.llm.anthropic_backend import AnthropicBackend

        return AnthropicBackend(spec.model, spec.name, timeout=timeout)
    if spec.provider == "openai":
        from pld.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(spec.model, spec.name, timeout=timeout)
    if spec.provider == "openai-compatible":
        from pld.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(spec.model, spec.name, base_url=spec.base_url, timeout=timeout)
    from pld.llm.local_backend import LocalBackend

    return LocalBackend(spec.name, role=role)


REMOTE_CONCURRENCY = 8


LOCAL_CONCURRENCY = 1


def default_concurrency(model: str) -> int:
    """Calls in flight by default for ``model``: 8 for remote APIs, 1 for the local model.

    The local model can decode up to ``$PLD_LOCAL_PARALLEL`` calls together (``--concurrency``),
    but on 2 CPU cores that measured slower, not faster: extracting 24 demo rules took 219 s at
    concurrency 1, 232 s at 2 and 275 s at 4 (AMD EPYC, bench/speed.py local_concurrency). Two
    cores are compute-bound, so batching adds little (free text 1.35x tokens/s at 4), and each
    extra slot first evaluates the shared prompt template once more.
    """
    return LOCAL_CONCURRENCY if parse_model(model).provider == "local" else REMOTE_CONCURRENCY


def get_backend(model: str, role: str = "default") -> Backend:
    """The process-wide backend for ``model`` (and ``role``, which only local models use)."""
    spec = parse_model(model)
    key = (model, role if spec.provider == "local" else "")
    with _lock:
        backend = _instances.get(key)
        if backend is None:
            backend = _instances[key] = _create(spec, role)
    return backend


def reset() -> None:
    """Forget every backend built so far (after keys, base URLs or timeouts changed)."""
    with _lock:
        _instances.clear()
