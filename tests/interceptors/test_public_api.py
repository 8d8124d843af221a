"""The public surface, the collector's header contract, claims and error kinds (no server)."""

from __future__ import annotations

import json

import nexusrpc
import pytest
import temporalio.api.common.v1
import temporalio.converter
from temporalio.exceptions import ApplicationError, NexusOperationError, TimeoutError, TimeoutType

import interceptors
import interceptors.http
from interceptors import (
    CALLER_HEADER,
    CallerInfo,
    TraceParent,
    decode_caller_header,
    make_claim,
    verify_claim,
)
from interceptors.http import CLAIM_HEADER, SIGNATURE_HEADER


def test_all_is_frozen() -> None:
    assert interceptors.__all__ == [
        "ATTR",
        "CALLER_HEADER",
        "LINK_KEY_ENV",
        "TRACER_HEADER",
        "CallerInfo",
        "SpanName",
        "TraceParent",
        "TracingInterceptor",
        "TracingPlugin",
        "caller_info",
        "decode_caller_header",
        "encode_caller_header",
        "error_kind",
        "http",
        "make_claim",
        "require_caller_namespace",
        "verify_claim",
    ]
    assert interceptors.http.__all__ == [
        "CLAIM_HEADER",
        "SIGNATURE_HEADER",
        "CallerContextMiddleware",
        "async_httpx_hooks",
        "caller_context",
        "caller_from_metadata",
        "httpx_hooks",
        "outgoing_headers",
        "outgoing_metadata",
        "requests_auth",
    ]
    for name in interceptors.__all__:
        assert hasattr(interceptors, name)
    for name in interceptors.http.__all__:
        assert hasattr(interceptors.http, name)


CALLER = CallerInfo(
    kind="activity_wrapper",
    namespace="orders",
    workflow_id="order-1",
    run_id="run-1",
    activity_id="5",
    activity_type="reserve_stock",
    attempt=2,
    traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    verified=True,
)


def test_caller_header_contract() -> None:
    assert CALLER_HEADER == "temporal-tracer-caller"
    payload = interceptors.encode_caller_header(CALLER)
    # Produced by the default data converter from a JSON object with the contract's keys.
    assert payload.metadata["encoding"] == b"json/plain"
    data = json.loads(payload.data)
    assert {
        "namespace",
        "workflow_id",
        "run_id",
        "activity_id",
        "activity_type",
        "attempt",
        "traceparent",
        "verified",
        "reason",
        "kind",
    } <= set(data)
    assert isinstance(data["attempt"], int) and data["verified"] is True
    assert decode_caller_header(payload) == CALLER
    # A header written by other tools with only the contract keys decodes too.
    minimal = temporalio.converter.PayloadConverter.default.to_payload(
        {"namespace": "a", "workflow_id": "w", "run_id": "r", "attempt": 1, "verified": False}
    )
    decoded = decode_caller_header(minimal)
    assert decoded is not None and decoded.kind == "activity_wrapper" and not decoded.verified


@pytest.mark.parametrize(
    "payload",
    [
        temporalio.api.common.v1.Payload(),
        temporalio.api.common.v1.Payload(data=b"\xff\x00garbage"),
        temporalio.api.common.v1.Payload(metadata={"encoding": b"json/plain"}, data=b"{"),
        temporalio.api.common.v1.Payload(metadata={"encoding": b"json/plain"}, data=b"[1, 2]"),
        temporalio.api.common.v1.Payload(metadata={"encoding": b"json/plain"}, data=b'{"a": 1}'),
        temporalio.api.common.v1.Payload(
            metadata={"encoding": b"json/plain"}, data=b'{"namespace": 3, "workflow_id": "w"}'
        ),
        temporalio.api.common.v1.Payload(metadata={"encoding": b"binary/null"}),
    ],
)
def test_decode_garbage_returns_none(payload: temporalio.api.common.v1.Payload) -> None:
    assert decode_caller_header(payload) is None


def test_claims_signed_forged_expired_unsigned(monkeypatch: pytest.MonkeyPatch) -> None:
    signed = make_claim(CALLER, key="k", now=1000.0)
    assert set(signed) == {CLAIM_HEADER, SIGNATURE_HEADER}
    ok = verify_claim(signed, key="k", now=1100.0)
    assert ok is not None and ok.verified and ok.reason is None
    assert ok.workflow_id == "order-1" and ok.attempt == 2 and ok.traceparent == CALLER.traceparent
    assert verify_claim(signed, key="other", now=1100.0).reason == "bad signature"  # type: ignore[union-attr]
    assert verify_claim(signed, key="k", now=1000.0 + 301).reason == "expired"  # type: ignore[union-attr]
    tampered = dict(signed)
    tampered[CLAIM_HEADER] = make_claim(
        CallerInfo(kind="activity_wrapper", namespace="admin", workflow_id="x"), now=1000.0
    )[CLAIM_HEADER]
    assert verify_claim(tampered, key="k", now=1100.0).reason == "bad signature"  # type: ignore[union-attr]
    unsigned = make_claim(CALLER, key=b"", now=1000.0)
    assert SIGNATURE_HEADER not in unsigned
    assert verify_claim(unsigned, key="k", now=1100.0).reason == "unsigned"  # type: ignore[union-attr]
    # The key comes from TEMPORAL_TRACER_LINK_KEY by default; header names are case-insensitive.
    monkeypatch.setenv(interceptors.LINK_KEY_ENV, "env-key")
    from_env = {k.upper(): v for k, v in make_claim(CALLER).items()}
    verified = verify_claim(from_env)
    assert verified is not None and verified.verified
    assert verify_claim({CLAIM_HEADER: "not base64 json!"}) is None
    assert verify_claim({}) is None


def test_outgoing_headers_outside_activity_have_no_claim() -> None:
    assert CLAIM_HEADER not in interceptors.http.outgoing_headers()


def test_error_kinds() -> None:
    def nexus_error(cause: BaseException) -> NexusOperationError:
        err = NexusOperationError(
            "failed",
            scheduled_event_id=5,
            endpoint="e",
            service="s",
            operation="o",
            operation_token="",
        )
        err.__cause__ = cause
        return err

    unauthorized = nexusrpc.HandlerError("no", type=nexusrpc.HandlerErrorType.UNAUTHORIZED)
    not_found = nexusrpc.HandlerError("no", type=nexusrpc.HandlerErrorType.NOT_FOUND)
    timeout = TimeoutError("late", type=TimeoutType.SCHEDULE_TO_CLOSE, last_heartbeat_details=[])
    assert interceptors.error_kind(nexus_error(unauthorized)) == "unauthorized"
    assert interceptors.error_kind(nexus_error(not_found)) == "not_found"
    assert interceptors.error_kind(nexus_error(timeout)) == "timeout"
    assert interceptors.error_kind(nexus_error(ApplicationError("x"))) == "operation_error"


def test_traceparent_parsing() -> None:
    parsed = TraceParent.parse(CALLER.traceparent)
    assert parsed is not None and parsed.format() == CALLER.traceparent
    for bad in (None, "", "00-0-0-01", "ff-" + "1" * 32 + "-" + "1" * 16 + "-01", 3):
        assert TraceParent.parse(bad) is None


def test_grpc_metadata_helpers_and_caller_context() -> None:
    metadata = [(k, v.encode()) for k, v in make_claim(CALLER, key="k").items()]
    caller = interceptors.http.caller_from_metadata(metadata, key="k")
    assert caller is not None and caller.verified and caller.workflow_id == "order-1"
    assert interceptors.caller_info() is None
    with interceptors.http.caller_context(caller):
        assert interceptors.caller_info() == caller
    assert interceptors.caller_info() is None
    assert all(name != CLAIM_HEADER for name, _ in interceptors.http.outgoing_metadata())


def test_require_caller_namespace_refuses_unknown_and_unverified() -> None:
    with pytest.raises(nexusrpc.HandlerError) as refused:
        interceptors.require_caller_namespace("orders")
    assert refused.value.type == nexusrpc.HandlerErrorType.UNAUTHORIZED
    unverified = CallerInfo(kind="activity_wrapper", namespace="orders", workflow_id="w")
    with interceptors.http.caller_context(unverified), pytest.raises(nexusrpc.HandlerError):
        interceptors.require_caller_namespace("orders")
    with interceptors.http.caller_context(CALLER):
        assert interceptors.require_caller_namespace("orders", "admin") == CALLER
