"""One error hierarchy for mkd; the errno -> HTTP table lives here and nowhere else."""

from __future__ import annotations

import errno as _errno
import os
from typing import Any

# DESIGN.md "Errors": every kernel errno the daemon can surface and the HTTP status it maps to.
ERRNO_HTTP_STATUS: dict[str, int] = {
    **dict.fromkeys(
        (
            "EINVAL", "ENOEXEC", "ENODEV", "ERANGE", "E2BIG", "EADDRNOTAVAIL", "EPROTONOSUPPORT",
            "EKEYREJECTED", "EBADMSG", "ENODATA", "ENOKEY", "ELIBBAD",
        ),
        422,
    ),
    "ENOENT": 404,
    **dict.fromkeys(("EBUSY", "EEXIST", "ENOMEM", "ENOSPC", "ETXTBSY", "EOPNOTSUPP", "ETIMEDOUT"), 409),
    "EFBIG": 413,
    **dict.fromkeys(("EPERM", "EACCES"), 403),
    **dict.fromkeys(("EBADF", "EFAULT", "EIO"), 502),
}

PROBLEM_BASE = "https://mkd.dev/problems/"


def errno_name(code: int) -> str:
    """Symbolic name of a positive errno value (EOPNOTSUPP, not ENOTSUP)."""
    if code == _errno.EOPNOTSUPP:
        return "EOPNOTSUPP"
    return _errno.errorcode.get(code, f"E{code}")


def errno_value(name: str) -> int:
    value = getattr(_errno, name, None)
    if not isinstance(value, int):
        raise ValueError(f"unknown errno {name}")
    return value


def http_status_for(name: str, *, body_content: bool = False) -> int:
    """HTTP status for an errno; ENOENT about body content is 422, not 404."""
    if name == "ENOENT" and body_content:
        return 422
    return ERRNO_HTTP_STATUS.get(name, 422)


class MkdError(Exception):
    """Base of every refusal the daemon turns into problem+json."""

    status: int = 400
    title: str = "Bad request"
    slug: str = "bad-request"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        title: str | None = None,
        slug: str | None = None,
        instance_id: int | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        if slug is not None:
            self.slug = slug
        self.instance_id = instance_id
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    @property
    def errno(self) -> str | None:
        return None

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            body["instance"] = instance
        if self.errno is not None:
            body["errno"] = self.errno
            body["errno_value"] = errno_value(self.errno)
        if self.instance_id is not None:
            body["instance_id"] = self.instance_id
        body.update(self.extra)
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, detail={self.detail!r})"


class KernelError(MkdError):
    """A refusal with a kernel meaning: an errno, mapped to HTTP by ERRNO_HTTP_STATUS.

    The simulated kernel, the host backend and the daemon's own checks all raise this, so a
    client sees the same problem+json whichever backend runs.
    """

    def __init__(
        self,
        code: int | str,
        detail: str,
        *,
        body_content: bool = False,
        slug: str | None = None,
        instance_id: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.errno_code = code if isinstance(code, int) else errno_value(code)
        name = errno_name(self.errno_code)
        self._errno_name = name
        super().__init__(
            detail,
            status=http_status_for(name, body_content=body_content),
            title=f"{name}: {os.strerror(self.errno_code)}",
            slug=slug or name.lower(),
            instance_id=instance_id,
            extra=extra,
        )

    @property
    def errno(self) -> str | None:
        return self._errno_name


class NotFound(MkdError):
    status = 404
    title = "Not found"
    slug = "not-found"


class InvalidInput(MkdError):
    """Body or parameter that fails validation without a kernel errno of its own."""

    status = 422
    title = "Invalid input"
    slug = "invalid-input"


class PreconditionFailed(MkdError):
    status = 412
    title = "Precondition failed"
    slug = "precondition-failed"


class Conflict(MkdError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class PayloadTooLarge(MkdError):
    status = 413
    title = "Payload too large"
    slug = "payload-too-large"


class Unauthorized(MkdError):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class Forbidden(MkdError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotReady(MkdError):
    status = 503
    title = "Not ready"
    slug = "not-ready"


class OverLimit(MkdError):
    """Past a `[limits]` setting (DESIGN "Limits"); `limit` names the setting, and the refusal is
    counted under that name in /metrics (mkd_limit_refusals_total)."""

    status = 429
    title = "Too many requests"
    slug = "over-limit"

    def __init__(self, limit: str, detail: str, *, status: int | None = None, retry_after_s: int | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
        titles = {413: "Payload too large", 503: "Service unavailable"}
        super().__init__(detail, status=status, title=titles.get(status or self.status), headers=headers,
                         extra={"limit": limit, **(extra or {})})
        self.limit = limit


class BodyOverLimit(OverLimit, PayloadTooLarge):
    """A request body past max_json_bytes, max_dt_bytes or max_image_bytes: 413 while reading."""

    def __init__(self, limit: str, size_limit: int) -> None:
        super().__init__(limit, f"the request body is over the limit of {size_limit} bytes ([limits] {limit})",
                         status=413)
        self.slug = "payload-too-large"
