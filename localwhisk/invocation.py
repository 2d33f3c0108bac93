"""Activations as OpenWhisk's invoker path makes them (its PrimitiveActions, SequenceActions and Activations): an
invoke checked, recorded, run in a container or as a sequence, and closed whatever happened.

`Invocations` is the half of `localwhisk.core.Platform` that runs things.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from localwhisk.entities import kinds, names
from localwhisk.entities.actions import PROVIDE_API_KEY, Resolved, kv_dict, now_ms, split_path, truthy
from localwhisk.entities.names import QualifiedName
from localwhisk.errors import BadRequest, NotFound, TooLarge, TooManyRequests
from localwhisk.invoker.container import MAX_JSON_DEPTH, json_depth
from localwhisk.invoker.pool import (
    INTERNAL_ERROR,
    STATUS_NAMES,
    SUCCESS,
    RunResult,
    WouldQueue,
)

MAX_PAYLOAD_BYTES = 1024 * 1024
log = logging.getLogger("platform")


def _as_json(params: dict) -> str:
    """The parameters as the JSON an action receives; what JSON cannot carry, or carries too deep, is refused here
    (a parameter from a trigger or a client that no action could return unchanged)."""
    malformed = "The request content was malformed: parameters"
    try:
        text = json.dumps(params, ensure_ascii=False, allow_nan=False)
    except RecursionError:
        raise BadRequest(f"{malformed} nest deeper than {MAX_JSON_DEPTH} levels.") from None
    except ValueError as exc:
        raise BadRequest(f"{malformed} hold a value JSON cannot carry ({exc}).") from None
    # a value cannot nest deeper than it has brackets: most parameters are cleared without a walk
    if text.count("{") + text.count("[") > MAX_JSON_DEPTH and json_depth(params) > MAX_JSON_DEPTH:
        raise BadRequest(f"{malformed} nest deeper than {MAX_JSON_DEPTH} levels.")
    return text


@dataclass
class _Level:
    """One sequence being run: what it has produced so far and which component comes next."""

    target: Resolved
    doc: dict
    result: dict
    next: int = 0
    status: int = SUCCESS
    ids: list = field(default_factory=list)

    def take(self, child: dict) -> None:
        self.ids.append(child["activationId"])
        self.result = child["response"]["result"]
        self.status = child["response"]["statusCode"]


class Invocations:
    """Invokes, sequences and activation records (the mixin needs `store`, `invoker`, `_pool`, `_stopping`,
    `concurrent_invocations`, `_in_flight`, `_in_flight_lock`, `blocking_timeout_s`, `api_host`,
    `require_api_key_annotation` and `resolve_action`)."""

    @staticmethod
    def _interrupted_doc(doc: dict) -> dict:
        end = now_ms()
        doc.update(end=end, duration=end - doc["start"], statusCode=INTERNAL_ERROR)
        doc["response"] = {
            "status": STATUS_NAMES[INTERNAL_ERROR],
            "statusCode": INTERNAL_ERROR,
            "success": False,
            "result": {
                "error": "The platform stopped before this activation completed; it did not finish and may be retried."
            },
        }
        return doc

    def invoke(
        self,
        ns: str,
        path: str,
        params: Any,
        blocking: bool,
        auth: str,
        wait_s: float | None = None,
        subject: str | None = None,
        cause: str | None = None,
        annotations: list[dict] | None = None,
    ) -> tuple[str, dict | None]:
        """Starts an activation; returns (activationId, record or None if still running)."""
        subject = subject or ns
        split_path(path)
        target = self.resolve_action(subject, QualifiedName(ns, path))
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise BadRequest("The request content was malformed: the parameters must be a JSON object.")
        size = len(_as_json(params).encode("utf-8", "surrogatepass"))  # the limit is on UTF-8 bytes
        if size > MAX_PAYLOAD_BYTES:
            raise TooLarge(
                f"The request content was too large ({size} bytes); "
                f"it exceeds the allowed limit of {MAX_PAYLOAD_BYTES} bytes."
            )
        self._admit(subject)
        try:
            doc = self._record(subject, target, secrets.token_hex(16), cause, annotations)
        except BaseException:
            self._finished(subject)
            raise
        wait_s = self.blocking_timeout_s if wait_s is None else wait_s
        if blocking and _ends_within(target.doc, wait_s):
            try:
                return doc["activationId"], self._admitted(subject, target, params, auth, doc, queue=False)
            except WouldQueue:
                pass  # no container free now: the pool's worker waits for one while the caller waits here
        try:
            future = self._pool.submit(self._admitted, subject, target, params, auth, doc)
        except BaseException:
            self._finished(subject)  # stopping: the record stays open and is closed as interrupted
            raise
        if not blocking:
            return doc["activationId"], None
        try:
            return doc["activationId"], future.result(timeout=wait_s)
        except TimeoutError:
            return doc["activationId"], None

    def _record(
        self, subject: str, target: Resolved, activation_id: str, cause: str | None, extra: list[dict] | None = None
    ) -> dict:
        action = target.doc
        doc = {
            "activationId": activation_id,
            "namespace": subject,
            "name": target.qname.name,
            "version": action["version"],
            "subject": subject,
            "start": now_ms(),
            "end": 0,
            "duration": 0,
            "statusCode": 0,
            "response": {"status": "pending", "statusCode": 0, "success": False, "result": {}},
            "logs": [],
            "publish": False,
            "annotations": [
                {"key": "path", "value": f"{target.qname.namespace}/{target.qname.path}"},
                {"key": "kind", "value": action["exec"]["kind"]},
                {"key": "limits", "value": action["limits"]},
            ]
            + list(extra or []),
        }
        if target.binding:
            doc["annotations"].append({"key": "binding", "value": target.binding})
        if cause:
            doc["cause"] = cause
        self.store.begin_activation(doc)
        return doc

    def _finish(self, doc: dict, status_code: int, result: dict, logs: list, end_ms: int | None = None) -> dict:
        """Closes the record; never raises: a record the store refuses stays open, and the next start closes it
        as interrupted."""
        if self._stopping and status_code != SUCCESS:
            self._interrupted_doc(doc)
            doc["logs"] = logs
        else:
            self._close(doc, status_code, result, logs, end_ms)
        try:
            self.store.end_activation(doc)
        except Exception:
            log.exception("activation %s: its record could not be written", doc["activationId"])
        return doc

    @staticmethod
    def _close(doc: dict, status_code: int, result: dict, logs: list, end_ms: int | None) -> None:
        doc["end"] = end_ms or now_ms()
        doc["duration"] = doc["end"] - doc["start"]
        doc["statusCode"] = status_code
        doc["response"] = {
            "status": STATUS_NAMES[status_code],
            "statusCode": status_code,
            "success": status_code == SUCCESS,
            "result": result,
        }
        doc["logs"] = logs

    def _admit(self, namespace: str) -> None:
        """Counts an activation in flight for `namespace`, as OpenWhisk's ActivationThrottler counts what the load
        balancer holds for it, or refuses it (before anything is recorded) once the namespace has its limit.

        Raises:
            TooManyRequests: `concurrent_invocations` of the namespace's activations are in flight.
        """
        with self._in_flight_lock:
            count = self._in_flight.get(namespace, 0)
            if count >= self.concurrent_invocations:
                raise TooManyRequests(
                    f"Too many concurrent requests in flight (count: {count}, allowed: {self.concurrent_invocations})."
                )
            self._in_flight[namespace] = count + 1

    def _finished(self, namespace: str) -> None:
        with self._in_flight_lock:
            left = self._in_flight[namespace] - 1
            if left:
                self._in_flight[namespace] = left
            else:
                del self._in_flight[namespace]

    def _admitted(self, subject: str, target: Resolved, params: dict, auth: str, doc: dict, queue: bool = True) -> dict:
        """`_activate` of an admitted activation, which stays counted in flight only while it waits to be queued."""
        done = True
        try:
            return self._activate(subject, target, params, auth, doc, queue)
        except WouldQueue:
            done = False
            raise
        finally:
            if done:
                self._finished(subject)

    def _activate(self, subject: str, target: Resolved, params: dict, auth: str, doc: dict, queue: bool = True) -> dict:
        """queue=False: raises WouldQueue, having changed nothing, where no container is free right now."""
        try:
            merged = {**target.package_params, **kv_dict(target.doc["parameters"]), **params}
            if target.doc["exec"]["kind"] == "sequence":
                return self._run_sequence(subject, target, doc, merged, auth)
            return self._run_action(subject, target, doc, merged, auth, queue)
        except WouldQueue:
            raise
        except Exception as exc:
            return self._finish(doc, INTERNAL_ERROR, {"error": f"internal error: {exc}"}, [])

    def _run_action(
        self, subject: str, target: Resolved, doc: dict, params: dict, auth: str, queue: bool = True
    ) -> dict:
        action, exec_ = target.doc, target.doc["exec"]
        context = {
            "namespace": subject,
            "action_name": f"/{target.qname.namespace}/{target.qname.path}",
            "action_version": action["version"],
            "activation_id": doc["activationId"],
            "transaction_id": doc["activationId"],
            "deadline": str(doc["start"] + action["limits"]["timeout"]),
        }
        if truthy(action["annotations"], PROVIDE_API_KEY, missing=True):
            context = {"api_key": auth, **context}
        # as OpenWhisk's invoker: the context reaches /init as __OW_* env (import time) and every /run
        init_value = {
            "name": action["name"],
            "main": exec_.get("main", "main"),
            "code": exec_["code"],
            "binary": exec_.get("binary", False),
            "env": {f"__OW_{key.upper()}": val for key, val in context.items()},
        }
        message = {"value": params, **context}
        runtime, deny = kinds.container_profile(exec_)
        outcome: RunResult = self.invoker.run(
            target.key,
            init_value,
            message,
            action["limits"],
            runtime=runtime,
            deny=deny,
            env={"__OW_API_HOST": self.api_host},
            image=kinds.image(exec_),
            queue=queue,
        )
        doc["start"] = outcome.start_ms or doc["start"]
        doc["annotations"].append({"key": "timeout", "value": outcome.timed_out})
        doc["annotations"].append({"key": "waitTime", "value": outcome.wait_ms})
        if outcome.init_ms is not None:
            doc["annotations"].append({"key": "initTime", "value": outcome.init_ms})
        return self._finish(doc, outcome.status_code, outcome.result, outcome.logs, outcome.end_ms or None)

    def _run_sequence(self, subject: str, target: Resolved, doc: dict, params: dict, auth: str) -> dict:
        """Runs the sequence, and the sequences nested in it, with a stack of its own: a chain of nested
        sequences may be deeper than Python's recursion. Each level is its own activation, as in OpenWhisk."""
        stack = [_Level(target, doc, params)]
        while True:
            level = stack[-1]
            components = level.target.doc["exec"]["components"]
            if level.status == SUCCESS and level.next < len(components):
                component = components[level.next]
                level.next += 1
                try:
                    comp = self.resolve_action(subject, names.resolve(component, level.target.qname.namespace))
                    caused_by = [{"key": "causedBy", "value": "sequence"}]
                    child_doc = self._record(subject, comp, secrets.token_hex(16), level.doc["activationId"], caused_by)
                except Exception as exc:
                    level.status, level.result = INTERNAL_ERROR, {"error": f"internal error: {exc}"}
                    continue
                if comp.doc["exec"]["kind"] == "sequence":
                    merged = {**comp.package_params, **kv_dict(comp.doc["parameters"]), **level.result}
                    stack.append(_Level(comp, child_doc, merged))
                else:
                    level.take(self._activate(subject, comp, level.result, auth, child_doc))
                continue
            level.doc["annotations"].append({"key": "topmost", "value": True})
            finished = self._finish(level.doc, level.status, level.result, level.ids)
            stack.pop()
            if not stack:
                return finished
            stack[-1].take(finished)

    # activations
    def get_activation(self, ns: str, activation_id: str) -> dict:
        doc = self.store.get_activation(ns, activation_id)
        if doc is None or doc["response"]["status"] == "pending":
            raise NotFound()  # as in OpenWhisk, a record exists only once the activation ended
        return doc

    def list_activations(
        self,
        ns: str,
        name: str | None = None,
        limit: int = 30,
        skip: int = 0,
        since: int | None = None,
        upto: int | None = None,
    ) -> list[dict]:
        """The newest first; `name` as the REST API's filter reads it (names.activation_filter).

        Raises:
            BadRequest: a `name` that is not `action` or `package/action`.
        """
        return self.store.list_activations(ns, names.activation_filter(name), limit, skip, since, upto)

    def count_activations(
        self, ns: str, name: str | None = None, since: int | None = None, upto: int | None = None
    ) -> int:
        """How many records list_activations would page through."""
        return self.store.count_activations(ns, names.activation_filter(name), since, upto)


def _ends_within(action: dict, wait_s: float) -> bool:
    """Whether the action, once it has a container, is sure to end within a blocking wait of `wait_s`: its
    time limit bounds /init and /run together. Such an invoke runs on the caller's thread (no handoff to a
    worker and back); a sequence's components may each take their limit, so it never does."""
    return action["exec"]["kind"] != "sequence" and action["limits"]["timeout"] / 1000.0 <= wait_s
