"""Flagstaff as a provider for the OpenFeature Python SDK (`openfeature-sdk`, 0.10):

    from openfeature import api
    from flagstaff import FlagstaffProvider

    api.set_provider_and_wait(FlagstaffProvider("https://flags.example.com", "fs_srv_…"))
    client = api.get_client()
    client.get_boolean_value("new-checkout", False, EvaluationContext("user-42", {"plan": "pro"}))

Evaluation is local, through a `flagstaff.Client`. The context's targeting key becomes
`targetingKey`, its attributes the other attributes (datetimes as RFC 3339 strings). Details
carry the variant, the reason (`PREREQUISITE_FAILED` kept precise), error codes
(`FLAG_NOT_FOUND`, `TARGETING_KEY_MISSING`, `TYPE_MISMATCH`) and flag metadata `version`, and
`ruleId` / `prerequisite` where they apply. Provider events: `PROVIDER_CONFIGURATION_CHANGED`
(with the changed flags) on each new configuration, `PROVIDER_STALE` when no server answers any
more, `PROVIDER_READY` when one does again.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any, Callable, List, Optional

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from ._client import Client, ConfigChange, NoSourceError

_REASONS = {r.value: r for r in Reason}
_ERRORS = {"FLAG_NOT_FOUND": ErrorCode.FLAG_NOT_FOUND, "TARGETING_KEY_MISSING": ErrorCode.TARGETING_KEY_MISSING}


def _to_json(value: Any, depth: int = 0) -> Any:
    """An OpenFeature attribute value as JSON; `_SKIP` when it has no JSON form."""
    if depth > 32:
        return _SKIP
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            v = _to_json(v, depth + 1)
            if isinstance(k, str) and v is not _SKIP:
                out[k] = v
        return out
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return [v for v in (_to_json(v, depth + 1) for v in value) if v is not _SKIP]
    return _SKIP


_SKIP = object()


def to_context(context: Optional[EvaluationContext]) -> dict:
    """The OpenFeature context as a Flagstaff context."""
    if context is None:
        return {}
    out = _to_json(context.attributes or {})
    if context.targeting_key:
        out["targetingKey"] = context.targeting_key
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _as_integer(v: Any) -> Optional[int]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float):
        if not v.is_integer() or not (-(2**63) <= v < 2**63):
            return None
        return int(v)
    return v if -(2**63) <= v < 2**63 else None


class FlagstaffProvider(AbstractProvider):
    """Flagstaff for `openfeature-sdk`: `FlagstaffProvider(url, key, **client_options)` starts a
    `flagstaff.Client` in `initialize` and closes it at `shutdown`; `FlagstaffProvider(client=…)`
    reads through a client you manage (and close)."""

    def __init__(self, url: Optional[str] = None, key: Optional[str] = None, *, client: Optional[Client] = None, **options: Any):
        super().__init__()
        if client is None and (url is None or key is None):
            raise ValueError("FlagstaffProvider needs a url and a key, or a client")
        self._url, self._key, self._options = url, key, options
        self._client = client
        self._owns_client = client is None
        self._unsubscribe: List[Callable[[], None]] = []

    @property
    def client(self) -> Optional[Client]:
        """The client under this provider (once initialised)."""
        return self._client

    def get_metadata(self) -> Metadata:
        return Metadata(name="flagstaff")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        if self._client is None:
            try:
                self._client = Client(self._url, self._key, **self._options)  # type: ignore[arg-type]
            except NoSourceError as e:
                raise ProviderNotReadyError(str(e)) from e
        self._unsubscribe = [self._client.on_change(self._changed), self._client.on_status(self._status)]

    def shutdown(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    def _changed(self, change: ConfigChange) -> None:
        self.emit_provider_configuration_changed(
            ProviderEventDetails(flags_changed=list(change.flags), metadata={"revision": change.revision})
        )

    def _status(self, online: bool) -> None:
        if online:
            self.emit_provider_ready(ProviderEventDetails(message="a Flagstaff server answers again"))
        else:
            self.emit_provider_stale(
                ProviderEventDetails(message="no Flagstaff server answers; serving the configuration held")
            )

    def _resolve(self, flag_key: str, default: Any, context: Optional[EvaluationContext], convert: Callable[[Any], Any], expected: str) -> FlagResolutionDetails:
        client = self._client
        if client is None:
            return FlagResolutionDetails(
                default, error_code=ErrorCode.PROVIDER_NOT_READY, reason=Reason.ERROR,
                error_message="the Flagstaff provider is not initialised",
            )
        engine = client._engine
        value, variant, reason, error, rule_id, prerequisite, version = engine.evaluate(flag_key, to_context(context), False)
        metadata: dict = {"version": version}
        if rule_id is not None:
            metadata["ruleId"] = rule_id
        if prerequisite is not None:
            metadata["prerequisite"] = prerequisite
        if error is not None:
            return FlagResolutionDetails(
                default, error_code=_ERRORS.get(error, ErrorCode.GENERAL), error_message=f"{flag_key}: {error}",
                reason=Reason.ERROR, flag_metadata=metadata,
            )
        converted = convert(value)
        if converted is None:
            return FlagResolutionDetails(
                default, error_code=ErrorCode.TYPE_MISMATCH, reason=Reason.ERROR,
                error_message=f"{flag_key}: the value is not {expected}", flag_metadata=metadata,
            )
        engine.count_served(flag_key, variant)
        return FlagResolutionDetails(
            converted, reason=_REASONS.get(reason, reason), variant=variant, flag_metadata=metadata
        )

    def resolve_boolean_details(self, flag_key: str, default_value: bool, evaluation_context: Optional[EvaluationContext] = None) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, lambda v: v if isinstance(v, bool) else None, "a boolean")

    def resolve_string_details(self, flag_key: str, default_value: str, evaluation_context: Optional[EvaluationContext] = None) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, lambda v: v if isinstance(v, str) else None, "a string")

    def resolve_integer_details(self, flag_key: str, default_value: int, evaluation_context: Optional[EvaluationContext] = None) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, _as_integer, "an integer")

    def resolve_float_details(self, flag_key: str, default_value: float, evaluation_context: Optional[EvaluationContext] = None) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, lambda v: float(v) if _is_number(v) else None, "a number")

    def resolve_object_details(self, flag_key: str, default_value: Any, evaluation_context: Optional[EvaluationContext] = None) -> FlagResolutionDetails[Any]:
        return self._resolve(flag_key, default_value, evaluation_context, lambda v: v if isinstance(v, (dict, list)) else None, "an object or a list")
