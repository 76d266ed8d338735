"""Every HTTP request the source makes (negotiate, REST): a total deadline, a capped body.

httpx timeouts are per network operation, so a peer dripping one byte per second holds a
request forever; here the whole exchange, body included, runs under one ``trio.fail_after``.
The body is read raw and decoded here (gzip, deflate or identity), with ``max_bytes``
applied to the compressed and to the decoded size, and decompression itself bounded
(``zlib`` ``max_length``), so a gzip bomb never expands in memory.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import httpx
import trio

from bridge.errors import EndpointError
from bridge.logs import masked_excerpt, printable
from bridge.netutil import describe, redact_url

ACCEPT_ENCODING = "gzip, deflate"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str


class _Decoder:
    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        if encoding in ("", "identity"):
            self._z = None
        elif encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._z = zlib.decompressobj()  # zlib-wrapped; raw deflate is tried on failure
        else:
            raise EndpointError(
                f"answer uses content-encoding {encoding[:32]!r}, which the bridge did not ask for"
            )
        self._first = True

    def feed(self, data: bytes, room: int) -> bytes:
        if self._z is None:
            return data[: room + 1]
        try:
            out = self._z.decompress(data, room + 1)
        except zlib.error:
            if self.encoding == "deflate" and self._first:
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                self._first = False
                return self.feed(data, room)
            raise EndpointError(f"answer is not valid {self.encoding} data") from None
        self._first = False
        if self._z.unconsumed_tail:
            return out + b"\0"  # more than room: the caller reports it as too large
        return out


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    timeout: float,
    max_bytes: int,
    content: bytes | None = None,
) -> Answer:
    """One request; raises :class:`EndpointError` (status and excerpt when there was an answer)."""
    headers = {**headers, "Accept-Encoding": ACCEPT_ENCODING}
    where = redact_url(url)
    try:
        with trio.fail_after(timeout):
            async with client.stream(method, url, headers=headers, content=content) as response:
                decoder = _Decoder(response.headers.get("content-encoding", "").strip().lower())
                raw = 0
                parts: list[bytes] = []
                size = 0
                async for chunk in response.aiter_raw():
                    raw += len(chunk)
                    data = decoder.feed(chunk, max_bytes - size)
                    size += len(data)
                    if raw > max_bytes or size > max_bytes:
                        raise EndpointError(
                            f"{where}: answer larger than {max_bytes} bytes (max_body_bytes); not "
                            f"read further",
                            status=response.status_code,
                        )
                    parts.append(data)
                return Answer(response.status_code, b"".join(parts), response.headers.get("content-type", ""))
    except trio.TooSlowError:
        raise EndpointError(f"{where}: no complete answer within {timeout:g}s (timeout)") from None
    except httpx.HTTPError as exc:
        raise EndpointError(f"{where}: {describe(exc)}") from None


def excerpt(raw: str | bytes, limit: int = 64, *, mask: bool = True) -> str:
    """A short piece of vendor input for a log line: with ``mask`` the shape only
    (:func:`bridge.logs.masked_excerpt`: caller numbers, ids and values masked), without
    it (error texts) just cut and escaped for a terminal."""
    if mask:
        return masked_excerpt(raw, limit)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return printable(text[:limit]) + ("…" if len(text) > limit else "")
