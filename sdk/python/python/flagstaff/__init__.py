"""Flagstaff's Python server SDK: feature flags and remote configuration evaluated in-process by
the same engine the Flagstaff server runs (a native extension over the `flagstaff-eval` crate).

    import flagstaff

    with flagstaff.Client("https://flags.example.com", "fs_srv_…", cache_file="/var/cache/app/flags.json") as client:
        if client.bool_value("new-checkout", {"targetingKey": "user-42", "plan": "pro"}, False):
            ...

`flagstaff.FlagstaffProvider` is the provider for the OpenFeature SDK (`openfeature-sdk`).
"""

from ._async import AsyncClient
from ._client import (
    Client,
    ConfigChange,
    Evaluation,
    NoSourceError,
    SourceAttempt,
    Status,
)
from ._version import __version__

__all__ = [
    "AsyncClient",
    "Client",
    "ConfigChange",
    "Evaluation",
    "FlagstaffProvider",
    "NoSourceError",
    "SourceAttempt",
    "Status",
    "__version__",
]


def __getattr__(name: str):
    # The provider needs `openfeature-sdk`; importing it only when asked keeps the SDK free of
    # that dependency for everyone else.
    if name == "FlagstaffProvider":
        from .openfeature import FlagstaffProvider

        return FlagstaffProvider
    raise AttributeError(f"module 'flagstaff' has no attribute {name!r}")
