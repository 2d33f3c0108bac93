"""One OpenWhisk REST client for both targets: a real Apache OpenWhisk and the local platform."""

from __future__ import annotations

import os
import time
import urllib.request
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from .errors import (ActivationFailedError, AuthError, ConflictError, NotFoundError, OpenWhiskError,
                     PayloadTooLargeError, UnreachableError)


def normalize_apihost(apihost: str) -> str:
    """wsk's convention: a bare host means https; an explicit scheme is kept."""
    apihost = apihost.strip().rstrip("/")
    if not apihost.startswith(("http://", "https://")):
        apihost = "https://" + apihost
    return apihost


def kv(params: dict | None) -> list[dict]:
    return [{"key": k, "value": v} for k, v in (params or {}).items()]


def _proxies_for(apihost: str) -> dict[str, str]:
    """The environment's proxies (HTTP_PROXY, ..., NO_PROXY honoured) for this one host."""
    host = urlsplit(apihost).hostname or ""
    if urllib.request.proxy_bypass(host):
        return {}
    return {k: v for k, v in urllib.request.getproxies().items() if k in ("http", "https", "all")}


class OpenWhiskClient:
    """Thread-safe enough for concurrent invokes: one pooled requests session."""

    def __init__(self, apihost: str, auth: str, namespace: str = "_", insecure: bool = False,
                 timeout_s: float = 90.0, pool_size: int = 32) -> None:
        if ":" not in auth:
            raise AuthError("the auth key must look like 'uuid:key'")
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
        self._session.verify = False if insecure else (os.environ.get("REQUESTS_CA_BUNDLE")
                                                       or os.environ.get("CURL_CA_BUNDLE") or True)
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def close(self) -> None:
        self._session.close()

    def _url(self, collection: str, name: str = "") -> str:
        """A fully qualified name ('/ns/pkg/action') addresses its own namespace, as `wsk` does."""
        namespace = self.namespace
        if name.startswith("/"):
            namespace, _, name = name.lstrip("/").partition("/")
        base = f"{self.apihost}/api/v1/namespaces/{quote(namespace, safe='')}/{collection}"
        return f"{base}/{quote(name, safe='/')}" if name else base

    def _request(self, method: str, url: str, *, params=None, json_body=None, timeout_s=None,
                 ok=(200,)) -> tuple[int, Any]:
        try:
            resp = self._session.request(method, url, params=params, json=json_body,
                                         timeout=timeout_s or self.timeout_s)
        except requests.ConnectionError as exc:
            raise UnreachableError(f"cannot reach the OpenWhisk API at {self.apihost}: {exc.__class__.__name__}; "
                                   "check --apihost (or start the local platform with `deployer up`)") from exc
        except requests.Timeout as exc:
            raise UnreachableError(f"the OpenWhisk API at {self.apihost} did not answer in "
                                   f"{timeout_s or self.timeout_s:.0f} s") from exc
        try:
            body = resp.json() if resp.content else {}
        except ValueError:
            body = {"error": resp.text[:500]}
        if resp.status_code in ok:
            return resp.status_code, body
        message = body.get("error") if isinstance(body, dict) else str(body)
        detail = f"{method} {url.replace(self.apihost, '')}: {resp.status_code} {message}"
        if resp.status_code in (401, 403):
            raise AuthError(f"authentication refused ({detail}); check --auth / OW_AUTH / wskprops",
                            resp.status_code, body)
        if resp.status_code == 404:
            raise NotFoundError(f"not found: {detail}", resp.status_code, body)
        if resp.status_code == 409:
            raise ConflictError(detail, resp.status_code, body)
        if resp.status_code == 413:
            raise PayloadTooLargeError(detail, resp.status_code, body)
        raise OpenWhiskError(detail, resp.status_code, body)

    def platform_info(self) -> dict:
        """GET /api/v1: the deployment's description and limits (the local platform adds its invoker)."""
        return self._request("GET", f"{self.apihost}/api/v1")[1]

    # packages
    def create_package(self, name: str, parameters: dict | None = None, annotations: dict | None = None,
                       overwrite: bool = True) -> dict:
        body = {"parameters": kv(parameters), "annotations": kv(annotations)}
        return self._request("PUT", self._url("packages", name), params={"overwrite": str(overwrite).lower()},
                             json_body=body)[1]

    def bind_package(self, name: str, source: str, parameters: dict | None = None, overwrite: bool = True) -> dict:
        """A package binding: `source` ('/ns/package' or 'package') seen under `name` with extra parameters."""
        namespace, _, package = source.lstrip("/").rpartition("/")
        body = {"binding": {"namespace": namespace or "_", "name": package}, "parameters": kv(parameters)}
        return self._request("PUT", self._url("packages", name), params={"overwrite": str(overwrite).lower()},
                             json_body=body)[1]

    def get_package(self, name: str) -> dict:
        return self._request("GET", self._url("packages", name))[1]

    def list_packages(self) -> list[dict]:
        return self._request("GET", self._url("packages"))[1]

    def delete_package(self, name: str) -> dict:
        return self._request("DELETE", self._url("packages", name))[1]

    # actions
    def create_action(self, name: str, exec_: dict, parameters: dict | None = None, limits: dict | None = None,
                      annotations: dict | None = None, overwrite: bool = True) -> dict:
        body: dict[str, Any] = {"exec": exec_, "parameters": kv(parameters), "annotations": kv(annotations)}
        if limits:
            body["limits"] = limits
        return self._request("PUT", self._url("actions", name), params={"overwrite": str(overwrite).lower()},
                             json_body=body)[1]

    def get_action(self, name: str, code: bool = False) -> dict:
        return self._request("GET", self._url("actions", name), params={"code": str(code).lower()})[1]

    def list_actions(self, package: str | None = None, limit: int = 200) -> list[dict]:
        url = self._url("actions", package + "/") if package else self._url("actions")
        return self._request("GET", url, params={"limit": limit})[1]

    def delete_action(self, name: str) -> dict:
        return self._request("DELETE", self._url("actions", name))[1]

    def invoke(self, name: str, params: dict | None = None, *, blocking: bool = True, result: bool = False,
               timeout_s: float | None = None) -> dict:
        """Blocking: the result (result=True) or the activation record; non-blocking: {"activationId"}.

        Raises:
            ActivationFailedError: the action answered an error (its result is attached).
        """
        query = {"blocking": str(blocking).lower(), "result": str(result).lower()}
        status, body = self._request("POST", self._url("actions", name), params=query, json_body=params or {},
                                     timeout_s=timeout_s, ok=(200, 202, 502))
        if status == 502:
            record = None if result else body
            res = body if result else body.get("response", {}).get("result", {})
            aid = None if result else body.get("activationId")
            message = res.get("error") if isinstance(res, dict) else res
            raise ActivationFailedError(f"action {name} failed: {message}", aid, res, record, status)
        if status == 202 and blocking:
            return self.wait_activation(body["activationId"], timeout_s=timeout_s, result=result)
        return body

    def wait_activation(self, activation_id: str, timeout_s: float | None = None, result: bool = False,
                        poll_s: float = 0.2) -> dict:
        """Polls until the record exists (a blocking invoke that outlived the API's wait)."""
        deadline = time.monotonic() + (timeout_s or 600)
        while True:
            try:
                record = self.get_activation(activation_id)
                if record.get("response", {}).get("status") != "pending":
                    break
            except NotFoundError:
                pass
            if time.monotonic() > deadline:
                raise OpenWhiskError(f"activation {activation_id} did not finish in time")
            time.sleep(poll_s)
        response = record["response"]
        if not response.get("success"):
            res = response.get("result", {})
            raise ActivationFailedError(f"activation {activation_id} failed: {res.get('error', res)}",
                                        activation_id, res, record)
        return response["result"] if result else record

    # triggers and rules
    def create_trigger(self, name: str, parameters: dict | None = None, annotations: dict | None = None,
                       overwrite: bool = True) -> dict:
        body = {"parameters": kv(parameters), "annotations": kv(annotations)}
        return self._request("PUT", self._url("triggers", name), params={"overwrite": str(overwrite).lower()},
                             json_body=body)[1]

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
        return self._request("PUT", self._url("rules", name), params={"overwrite": str(overwrite).lower()},
                             json_body={"trigger": trigger, "action": action})[1]

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
        return self._request("GET", self._url("activations", activation_id))[1]

    def activation_logs(self, activation_id: str) -> list[str]:
        return self._request("GET", self._url("activations", activation_id) + "/logs")[1].get("logs", [])

    def activation_result(self, activation_id: str) -> dict:
        return self._request("GET", self._url("activations", activation_id) + "/result")[1]

    def list_activations(self, name: str | None = None, limit: int = 30, skip: int = 0,
                         docs: bool = False) -> list[dict]:
        params: dict[str, Any] = {"limit": limit, "skip": skip, "docs": str(docs).lower()}
        if name:
            params["name"] = name
        return self._request("GET", self._url("activations"), params=params)[1]
