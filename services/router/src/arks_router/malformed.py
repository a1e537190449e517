"""Requests that are not HTTP at all get an OpenAI-shaped 400 too.

uvicorn answers bytes its parser rejects (a header line without a colon, a bad
request line, an invalid chunk size...) itself, with a `text/plain` "Invalid HTTP
request received." and a closed connection, before any app sees the request. The
router serves uvicorn's httptools protocol with that one answer replaced by OpenAI's
envelope (`code: "invalid_http"`), so a client's error handling sees the same shape
as for every other error. The connection is still closed: after a parse error the
stream cannot be trusted. Anything uvicorn does not hand to this method (a
connection closed mid-request, an oversized header that the parser reports as
incomplete) is answered as uvicorn answers it.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from arks_router import api_errors


def invalid_http_body() -> bytes:
    return api_errors.envelope(
        "The request is not valid HTTP/1.1 (bad request line, header or framing).",
        type="invalid_request_error",
        code="invalid_http",
    )


class OpenAIErrorsHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering parse errors in OpenAI's envelope."""

    def send_400_response(self, msg: str) -> None:
        body = invalid_http_body()
        content = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
