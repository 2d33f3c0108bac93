"""A tiny OpenWhisk REST invoker for code running inside an action.

Actions never import `deployer`; the coordinator action reaches the API with the
`__OW_API_HOST` / `__OW_API_KEY` that OpenWhisk gives every activation. Transport
faults and 5xx other than an action's own failure (502) are retried with backoff; an
action that failed raises ActivationError carrying its record, so the caller decides
whether to retry the work.
"""

from __future__ import annotations

import os
import time
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from .errors import MLCoreError

RETRY_STATUS = (429, 500, 503, 504)


class InvokeError(MLCoreError):
    """The OpenWhisk API could not be reached or refused the request."""


class ActivationError(InvokeError):
    """The action ran and failed (or timed out); `.record` is its activation record when known."""

    def __init__(self, message: str, record: dict | None = None) -> None:
        super().__init__(message)
        self.record = record or {}


def split_name(name: str, default_namespace: str = "_") -> tuple[str, str]:
    """'/ns/pkg/act' -> ('ns', 'pkg/act'); 'pkg/act' -> (default, 'pkg/act')."""
    if name.startswith("/"):
        namespace, _, path = name[1:].partition("/")
        return namespace, path
    return default_namespace, name


def sibling_action(own_name: str, action: str) -> str:
    """The action `action` in the same package as `own_name` ('/_/mnist-train/train' -> '/_/mnist-train/worker')."""
    return own_name.rsplit("/", 1)[0] + "/" + action


def record_memory_mb(record: dict) -> int | None:
    for item in record.get("annotations", []):
        if item.get("key") == "limits" and isinstance(item.get("value"), dict):
            return item["value"].get("memory")
    return None


class OpenWhiskInvoker:
    """Invokes actions by name; thread-safe for the coordinator's parallel worker calls."""

    def __init__(self, apihost: str, api_key: str, *, attempts: int = 4, backoff_s: float = 0.5,
                 pool_size: int = 32, insecure: bool = False) -> None:
        if ":" not in api_key:
            raise InvokeError("the OpenWhisk API key must look like 'uuid:key'")
        host = apihost.rstrip("/")
        self.apihost = host if host.startswith(("http://", "https://")) else "https://" + host
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._session = requests.Session()
        self._session.auth = tuple(api_key.split(":", 1))
        self._session.verify = not insecure
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    @classmethod
    def from_environment(cls) -> "OpenWhiskInvoker":
        """Raises InvokeError outside an activation (no __OW_API_HOST / __OW_API_KEY)."""
        host, key = os.environ.get("__OW_API_HOST"), os.environ.get("__OW_API_KEY")
        if not host or not key:
            raise InvokeError("__OW_API_HOST and __OW_API_KEY are not set: this code must run inside an "
                              "OpenWhisk action (or be given apihost and auth)")
        return cls(host, key)

    def close(self) -> None:
        self._session.close()

    def _url(self, name: str, collection: str = "actions") -> str:
        namespace, path = split_name(name)
        return f"{self.apihost}/api/v1/namespaces/{quote(namespace, safe='')}/{collection}/{quote(path, safe='/')}"

    def _send(self, method: str, url: str, timeout_s: float, **kwargs) -> requests.Response:
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                resp = self._session.request(method, url, timeout=timeout_s, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == self.attempts:
                    raise InvokeError(f"{method} {url}: {exc.__class__.__name__} after {attempt} attempts") from exc
            else:
                if resp.status_code not in RETRY_STATUS or attempt == self.attempts:
                    return resp
            time.sleep(delay)
            delay *= 2
        raise InvokeError(f"{method} {url}: no attempt was made")

    def invoke(self, name: str, params: dict | None = None, *, blocking: bool = True,
               timeout_s: float = 300.0) -> dict:
        """Blocking: the finished activation record; non-blocking: {"activationId": ...}.

        Raises:
            ActivationError: the action failed or did not finish in `timeout_s`.
            InvokeError: the API could not be reached or refused the call.
        """
        resp = self._send("POST", self._url(name), timeout_s, params={"blocking": str(blocking).lower()},
                          json=params or {})
        body = _json(resp)
        if resp.status_code == 202:
            if not blocking:
                return body
            return self.wait(body["activationId"], timeout_s)
        if resp.status_code == 200:
            return body
        if resp.status_code == 502:
            raise ActivationError(f"{name} failed: {_error_of(body)}", body if "response" in body else None)
        raise InvokeError(f"invoke {name}: HTTP {resp.status_code} {body.get('error', body)}")

    def activation(self, activation_id: str) -> dict | None:
        """The activation's record, or None while it runs (OpenWhisk has no record before the end)."""
        url = f"{self.apihost}/api/v1/namespaces/_/activations/{activation_id}"
        resp = self._send("GET", url, 30.0)
        if resp.status_code == 200:
            return _json(resp)
        if resp.status_code == 404:
            return None
        raise InvokeError(f"GET activation {activation_id}: HTTP {resp.status_code}")

    def wait(self, activation_id: str, timeout_s: float, poll_s: float = 0.2) -> dict:
        """Polls until the activation has a record (a blocking call that outlived the API's wait)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            record = self.activation(activation_id)
            if record is not None:
                if not record.get("response", {}).get("success"):
                    raise ActivationError(f"activation {activation_id} failed: {_error_of(record)}", record)
                return record
            time.sleep(poll_s)
        raise ActivationError(f"activation {activation_id} did not finish in {timeout_s:.0f} s")


def _json(resp: requests.Response) -> dict:
    try:
        body = resp.json()
    except ValueError:
        return {"error": resp.text[:300]}
    return body if isinstance(body, dict) else {"result": body}


def _error_of(body: dict) -> str:
    result = body.get("response", {}).get("result", body)
    return str(result.get("error", result)) if isinstance(result, dict) else str(result)
