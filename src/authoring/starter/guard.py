from __future__ import annotations

from typing import Any, Callable

from kernite import evaluate_execute


def guard_and_write(
    request: dict[str, Any],
    mutate_fn: Callable[[], dict[str, Any]],
    *,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    result = evaluate_execute(request, idempotency_key=idempotency_key)
    data = result["data"]

    if data["decision"] != "approved":
        return {"ok": False, "governance": result}

    mutation = mutate_fn()
    return {"ok": True, "data": mutation, "governance": result}
