"""The OpenWhisk REST client of the whole project: the deployer, fedavg and the actions themselves.

It lives in mlcore because actions bundle mlcore and nothing else of the project: the
training coordinator invokes its workers through the same client that `deployer deploy`
creates them with. Inside an activation, `OpenWhiskClient.from_environment()` reaches the
API with the `__OW_API_HOST` / `__OW_API_KEY` OpenWhisk gives every activation.

Retries are urllib3's, on the session's adapter, and never repeat work that may have run:

  * a connection that could not be made (refused, no route, name not resolved) is retried
    for every method, since the request never left;
  * an answer that broke off (reset, closed) or a 502/503/504 is retried only for
    idempotent requests: GET, HEAD, DELETE and PUT with overwrite (a PUT with
    overwrite=false answers 409 the second time, so it is not);
  * 429 is retried for every method: OpenWhisk throttles an invoke before it creates an
    activation;
  * a timeout is never retried: `timeout_s` bounds one wait, and waiting again would
    multiply it (and a POST invoke that timed out may be running).

So a POST invoke that was sent is never sent again by the client: whoever knows that a
second run is harmless (the training coordinator: its storage keys are versioned) decides
to invoke again.
"""

from __future__ import annotations

import os
import time
import urllib.request
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError, ProxyError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util.retry import Retry

from . import errors

__all__ = [
    "OpenWhiskClient",
    "RetryPolicy",
    "kv",
    "check_auth",
    "normalize_apihost",
    "record_memory_mb",
    "sibling_action",
    "split_name",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({502, 503, 504})  # a gateway's or a restarting controller's; an invoke's 502 is a POST's
THROTTLED = 429


class RetryPolicy(Retry):
    """urllib3's Retry that repeats a request only where a second copy cannot do the work twice.

    See the module docstring for the rules; `allowed_methods` and `status_forcelist` keep
    their urllib3 meaning, and a PUT whose query says overwrite=false counts as not idempotent.
    """

    RETRY_AFTER_STATUS_CODES = frozenset({THROTTLED, 503})  # urllib3's also has 413, which no retry mends

    @classmethod
    def default(cls, attempts: int = 3, backoff_s: float = 0.25) -> RetryPolicy:
        """Up to `attempts` retries; sleeps 0, 2*backoff_s, 4*backoff_s... between them."""
        return cls(
            total=attempts,
            connect=attempts,
            read=attempts,
            status=attempts,
            other=0,
            allowed_methods=IDEMPOTENT_METHODS,
            status_forcelist=RETRY_STATUSES,
            backoff_factor=backoff_s,
            raise_on_status=False,
        )

    def idempotent(self, method: str | None, url: str | None) -> bool:
        if method is None or not self._is_method_retryable(method):
            return False
        if method.upper() == "PUT":
            overwrite = parse_qs(urlsplit(url or "").query).get("overwrite", ["true"])[-1]
            return overwrite.lower() != "false"
        return True

    def may_repeat(self, method: str | None, url: str | None, response=None, error: Exception | None = None) -> bool:
        """Whether this failure may be answered by sending the request again."""
        if error is not None:
            cause = error.original_error if isinstance(error, ProxyError) else error
            if isinstance(cause, NewConnectionError):
                return True  # never connected: nothing was sent
            if isinstance(cause, Urllib3Timeout):
                return False  # the caller's bound on one wait; a POST that timed out may be running
            return self.idempotent(method, url)
        if response is not None and response.status == THROTTLED:
            return True
        return self.idempotent(method, url)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code == THROTTLED:
            return True
        return super().is_retry(method, status_code, has_retry_after)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if not self.may_repeat(method, url, response, error):
            # what urllib3 does with no retries left: re-raise a read error or timeout as it is,
            # wrap a connect failure, hand back the response
            return Retry.increment(self.new(total=0, read=False), method, url, response, error, _pool, _stacktrace)
        return super().increment(method, url, response, error, _pool, _stacktrace)


def normalize_apihost(apihost: str) -> str:
    """wsk's convention: a bare host means https; an explicit scheme is kept.

    Raises:
        OpenWhiskError: it is not host[:port] or http(s)://host[:port][/path], so no request could be sent.
    """
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    text = str(apihost).strip().rstrip("/")
    if not text.startswith(("http://", "https://")):
        text = "https://" + text
    try:
        parts = parse_url(text)
        usable = bool(parts.host) and not parts.query and not parts.fragment and not parts.auth
        if usable and not parts.host.startswith("["):
            parts.host.encode("idna")  # a label over 63 characters, or an empty one, cannot be looked up
    except (LocationParseError, UnicodeError, ValueError):
        usable = False
    if not usable or (parts.port is not None and not 0 < parts.port < 65536):
        shown = str(apihost)[:100]
        raise errors.OpenWhiskError(
            f"the API host {shown!r} is not host[:port] or http(s)://host[:port]; "
            "check --apihost, OW_APIHOST or wskprops"
        )
    return text


def check_auth(auth: str) -> str:
    """The key as given when it is 'uuid:key' in printable ASCII (HTTP basic auth can carry nothing else).

    Raises:
        AuthError: it is not.
    """
    user, _, key = str(auth).partition(":")
    if not (user and key and str(auth).isascii() and str(auth).isprintable() and " " not in str(auth)):
        raise errors.AuthError("the auth key must look like 'uuid:key' (printable ASCII, no spaces)")
    return auth


def kv(params: dict | None) -> list[dict]:
    return [{"key": k, "value": v} for k, v in (params or {}).items()]


def split_name(name: str, default_namespace: str = "_") -> tuple[str, str]:
    """'/ns/pkg/act' -> ('ns', 'pkg/act'); 'pkg/act' -> (default, 'pkg/act')."""
    if name.startswith("/"):
        namespace, _, path = name.lstrip("/").partition("/")
        return namespace, path
    return default_namespace, name


def sibling_action(own_name: str, action: str) -> str:
    """The action `action` in the same package as `own_name` ('/_/mnist-train/train' -> '/_/mnist-train/worker')."""
    return own_name.rsplit("/", 1)[0] + "/" + action


def record_memory_mb(record: dict) -> int | None:
    """The memory limit an activation ran with, from its record's `limits` annotation."""
    for item in record.get("annotations", []):
        if item.get("key") == "limits" and isinstance(item.get("value"), dict):
            return item["value"].get("memory")
    return None


def _proxies_for(apihost: str) -> dict[str, str]:
    """The environment's proxies (HTTP_PROXY, ..., NO_PROXY honoured) for this one host."""
    host = urlsplit(apihost).hostname or ""
    if urllib.request.proxy_bypass(host):
        return {}
    return {k: v for k, v in urllib.request.getproxies().items() if k in ("http", "https", "all")}


class OpenWhiskClient:
    """The OpenWhisk REST API; thread-safe enough for concurrent invokes: one pooled keep-alive session.

    A fully qualified name ('/ns/pkg/action') addresses its own namespace, as `wsk` does;
    any other name is in `namespace` ('_': the auth key's own).
    """

    def __init__(
        self,
        apihost: str,
        auth: str,
        namespace: str = "_",
        insecure: bool = False,
        timeout_s: float = 90.0,
        pool_size: int = 32,
        retry: Retry | None = None,
    ) -> None:
        """retry: the adapter's policy (default RetryPolicy.default()); Retry(0, read=False) turns retries off.

        Raises:
            AuthError: `auth` is not shaped 'uuid:key'.
        """
        check_auth(auth)
        self.apihost = normalize_apihost(apihost)
        self.auth = auth
        self.namespace = namespace
        self.timeout_s = timeout_s
        self._session = requests.Session()
        self._session.auth = tuple(auth.split(":", 1))
        # requests re-reads the whole environment for proxies on every request when trust_env is on (a
        # fifth of a warm invoke here); the client talks to one host, so read it once
        self._session.trust_env = False
        self._session.proxies.update(_proxies_for(self.apihost))
        self._session.verify = (
            False if insecure else (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True)
        )
        adapter = HTTPAdapter(
            pool_connections=pool_size,
            pool_maxsize=pool_size,
            max_retries=retry if retry is not None else RetryPolicy.default(),
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    @classmethod
    def from_environment(cls, **kwargs) -> OpenWhiskClient:
        """The client of the activation this code runs in (its __OW_API_HOST and __OW_API_KEY).

        Raises:
            OpenWhiskError: outside an activation (or one whose action was not given an API key).
        """
        host, key = os.environ.get("__OW_API_HOST"), os.environ.get("__OW_API_KEY")
        if not host or not key:
            raise errors.OpenWhiskError(
                "__OW_API_HOST and __OW_API_KEY are not set: this code must run inside an "
                "OpenWhisk action (or be given apihost and auth)"
            )
        return cls(host, key, **kwargs)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> OpenWhiskClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _url(self, collection: str, name: str | None = None) -> str:
        """The collection's URL, or one entity's: a blank name is refused, since its URL would be the collection's.

        Raises:
            NotFoundError: `name` is given but blank.
        """
        namespace, path = self.namespace, name or ""
        if path.startswith("/"):
            namespace, path = split_name(path)
        if name is not None and not path.strip(" /"):
            raise errors.NotFoundError(f"no {collection[:-1]} is named {name[:100]!r}: give a name")
        base = f"{self.apihost}/api/v1/namespaces/{quote(namespace, safe='')}/{collection}"
        return f"{base}/{quote(path, safe='/')}" if path else base

    def _put(self, collection: str, name: str, body: dict, overwrite: bool) -> dict:
        """Creates or replaces an entity; RetryPolicy reads `overwrite` in the query to tell if a retry is safe."""
        return self._request(
            "PUT", self._url(collection, name), params={"overwrite": str(overwrite).lower()}, json_body=body
        )[1]

    def _request(
        self, method: str, url: str, *, params=None, json_body=None, timeout_s=None, ok=(200,)
    ) -> tuple[int, Any]:
        timeout = timeout_s or self.timeout_s
        try:
            resp = self._session.request(method, url, params=params, json=json_body, timeout=timeout)
        except requests.ConnectionError as exc:
            raise errors.UnreachableError(
                f"cannot reach the OpenWhisk API at {self.apihost}: {exc.__class__.__name__}; "
                "check --apihost (or start the local platform with `deployer up`)"
            ) from exc
        except requests.Timeout as exc:
            raise errors.UnreachableError(
                f"the OpenWhisk API at {self.apihost} did not answer in {timeout:.0f} s"
            ) from exc
        except requests.RequestException as exc:
            raise errors.OpenWhiskError(
                f"{method} {url.replace(self.apihost, '')}: {exc.__class__.__name__}: {exc}"
            ) from exc
        try:
            body = resp.json() if resp.content else {}
        except ValueError:
            body = {"error": resp.text[:500]}
        if resp.status_code in ok:
            return resp.status_code, body
        message = body.get("error") if isinstance(body, dict) else str(body)
        detail = f"{method} {url.replace(self.apihost, '')}: {resp.status_code} {message}"
        if resp.status_code in (401, 403):
            raise errors.AuthError(
                f"authentication refused ({detail}); check --auth / OW_AUTH / wskprops", resp.status_code, body
            )
        if resp.status_code == 404:
            raise errors.NotFoundError(f"not found: {detail}", resp.status_code, body)
        if resp.status_code == 409:
            raise errors.ConflictError(detail, resp.status_code, body)
        if resp.status_code == 413:
            raise errors.PayloadTooLargeError(detail, resp.status_code, body)
        raise errors.OpenWhiskError(detail, resp.status_code, body)

    def platform_info(self) -> dict:
        """GET /api/v1: the deployment's description and limits (the local platform adds its invoker)."""
        return self._request("GET", f"{self.apihost}/api/v1")[1]

    # packages
    def create_package(
        self, name: str, parameters: dict | None = None, annotations: dict | None = None, overwrite: bool = True
    ) -> dict:
        body = {"parameters": kv(parameters), "annotations": kv(annotations)}
        return self._put("packages", name, body, overwrite)

    def bind_package(self, name: str, source: str, parameters: dict | None = None, overwrite: bool = True) -> dict:
        """A package binding: `source` ('/ns/package' or 'package') seen under `name` with extra parameters."""
        namespace, _, package = source.lstrip("/").rpartition("/")
        body = {"binding": {"namespace": namespace or "_", "name": package}, "parameters": kv(parameters)}
        return self._put("packages", name, body, overwrite)

    def get_package(self, name: str) -> dict:
        return self._request("GET", self._url("packages", name))[1]

    def list_packages(self) -> list[dict]:
        return self._request("GET", self._url("packages"))[1]

    def delete_package(self, name: str) -> dict:
        return self._request("DELETE", self._url("packages", name))[1]

    # actions
    def create_action(
        self,
        name: str,
        exec_: dict,
        parameters: dict | None = None,
        limits: dict | None = None,
        annotations: dict | None = None,
        overwrite: bool = True,
    ) -> dict:
        body: dict[str, Any] = {"exec": exec_, "parameters": kv(parameters), "annotations": kv(annotations)}
        if limits:
            body["limits"] = limits
        return self._put("actions", name, body, overwrite)

    def get_action(self, name: str, code: bool = False) -> dict:
        return self._request("GET", self._url("actions", name), params={"code": str(code).lower()})[1]

    def list_actions(self, package: str | None = None, limit: int = 200) -> list[dict]:
        url = self._url("actions", package + "/") if package else self._url("actions")
        return self._request("GET", url, params={"limit": limit})[1]

    def delete_action(self, name: str) -> dict:
        return self._request("DELETE", self._url("actions", name))[1]

    def invoke(
        self,
        name: str,
        params: dict | None = None,
        *,
        blocking: bool = True,
        result: bool = False,
        timeout_s: float | None = None,
    ) -> dict:
        """Blocking: the result (result=True) or the activation record; non-blocking: {"activationId"}.

        Sent once: a failure after the request left is raised, never retried (see the module docstring).

        Raises:
            ActivationFailedError: the action answered an error (its result is attached).
            UnreachableError: no answer, or none in `timeout_s` (the action may still run).
            OpenWhiskError: the API refused the invoke (its subclasses name the common reasons).
        """
        query = {"blocking": str(blocking).lower(), "result": str(result).lower()}
        status, body = self._request(
            "POST",
            self._url("actions", name),
            params=query,
            json_body=params or {},
            timeout_s=timeout_s,
            ok=(200, 202, 502),
        )
        if status == 502:
            record = None if result else body
            res = body if result else body.get("response", {}).get("result", {})
            aid = None if result else body.get("activationId")
            message = res.get("error") if isinstance(res, dict) else res
            raise errors.ActivationFailedError(f"action {name} failed: {message}", aid, res, record, status)
        if status == 202 and blocking:
            return self.wait_activation(body["activationId"], timeout_s=timeout_s, result=result)
        return body

    def wait_activation(
        self, activation_id: str, timeout_s: float | None = None, result: bool = False, poll_s: float = 0.2
    ) -> dict:
        """Polls until the record exists (a blocking invoke that outlived the API's wait).

        Raises:
            ActivationFailedError: the activation ended unsuccessfully (its record is attached).
            OpenWhiskError: it did not end within `timeout_s` (default 600).
        """
        deadline = time.monotonic() + (timeout_s or 600)
        while True:
            record = self.find_activation(activation_id)
            if record is not None:
                break
            if time.monotonic() > deadline:
                raise errors.OpenWhiskError(f"activation {activation_id} did not finish in time")
            time.sleep(poll_s)
        response = record["response"]
        if not response.get("success"):
            res = response.get("result", {})
            raise errors.ActivationFailedError(
                f"activation {activation_id} failed: {res.get('error', res)}", activation_id, res, record
            )
        return response["result"] if result else record

    # triggers and rules
    def create_trigger(
        self, name: str, parameters: dict | None = None, annotations: dict | None = None, overwrite: bool = True
    ) -> dict:
        body = {"parameters": kv(parameters), "annotations": kv(annotations)}
        return self._put("triggers", name, body, overwrite)

    def get_trigger(self, name: str) -> dict:
        return self._request("GET", self._url("triggers", name))[1]

    def list_triggers(self, limit: int = 200) -> list[dict]:
        return self._request("GET", self._url("triggers"), params={"limit": limit})[1]

    def delete_trigger(self, name: str) -> dict:
        return self._request("DELETE", self._url("triggers", name))[1]

    def fire_trigger(self, name: str, params: dict | None = None) -> str | None:
        """The trigger activation's id, or None when no active rule was there to fire (204)."""
        status, body = self._request("POST", self._url("triggers", name), json_body=params or {}, ok=(202, 204))
        return body.get("activationId") if status == 202 else None

    def create_rule(self, name: str, trigger: str, action: str, overwrite: bool = True) -> dict:
        return self._put("rules", name, {"trigger": trigger, "action": action}, overwrite)

    def set_rule_status(self, name: str, active: bool) -> None:
        self._request("POST", self._url("rules", name), json_body={"status": "active" if active else "inactive"})

    def get_rule(self, name: str) -> dict:
        return self._request("GET", self._url("rules", name))[1]

    def list_rules(self, limit: int = 200) -> list[dict]:
        return self._request("GET", self._url("rules"), params={"limit": limit})[1]

    def delete_rule(self, name: str) -> dict:
        return self._request("DELETE", self._url("rules", name))[1]

    # activations
    def get_activation(self, activation_id: str) -> dict:
        """Raises NotFoundError while the activation runs: OpenWhisk writes its record when it ends."""
        return self._request("GET", self._url("activations", activation_id))[1]

    def find_activation(self, activation_id: str) -> dict | None:
        """The activation's record once it has ended, None while it runs (or where it is unknown)."""
        try:
            record = self.get_activation(activation_id)
        except errors.NotFoundError:
            return None
        return None if record.get("response", {}).get("status") == "pending" else record

    def activation_logs(self, activation_id: str) -> list[str]:
        return self._request("GET", self._url("activations", activation_id) + "/logs")[1].get("logs", [])

    def activation_result(self, activation_id: str) -> dict:
        return self._request("GET", self._url("activations", activation_id) + "/result")[1]

    def list_activations(
        self,
        name: str | None = None,
        limit: int = 30,
        skip: int = 0,
        docs: bool = False,
        since: int | None = None,
        upto: int | None = None,
    ) -> list[dict]:
        """The newest first; `since`/`upto` bound their start, in ms since the epoch, as the REST API's do."""
        params: dict[str, Any] = {"limit": limit, "skip": skip, "docs": str(docs).lower()}
        bounds = {"name": name, "since": since, "upto": upto}
        params.update({key: value for key, value in bounds.items() if value is not None and value != ""})
        return self._request("GET", self._url("activations"), params=params)[1]
