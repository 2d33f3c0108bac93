"""The platform's behaviour without HTTP: one object over the store and the invoker.

`Platform` joins the two halves OpenWhisk's controller also keeps apart: entities (actions and
packages, `localwhisk.entities.actions`) and invocation (invokes, sequences, activation
records, `localwhisk.invocation`). The controller maps HTTP onto its methods; tests and the
bench call them directly.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from localwhisk import catalog
from localwhisk.entities.actions import LIMIT_RANGES, MAX_CODE_BYTES, Entities
from localwhisk.invocation import MAX_PAYLOAD_BYTES, Invocations
from localwhisk.invoker.pool import APPLICATION_ERROR, DEVELOPER_ERROR, INTERNAL_ERROR, SUCCESS, Invoker
from localwhisk.settings import Settings
from localwhisk.store import Store


class Platform(Entities, Invocations):
    """One namespace per auth subject; entities and activations live in the Store."""

    def __init__(
        self,
        store: Store,
        invoker: Invoker,
        api_host: str = "",
        blocking_timeout_s: float = Settings.blocking_timeout_s,
        concurrent_invocations: int = Settings.concurrent_invocations,
        workers: int = 64,
        require_api_key_annotation: bool = True,
        any_image: bool = False,
    ) -> None:
        self.store = store
        self.invoker = invoker
        self.api_host = api_host
        # OpenWhisk's feature flag, on by default in its deployments: a new action without the
        # annotation gets provide-api-key=false, and its activations get no __OW_API_KEY
        self.require_api_key_annotation = require_api_key_annotation
        self.any_image = any_image  # docker mode runs any image; process mode only stands in for ours
        self.blocking_timeout_s = blocking_timeout_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="activation")
        self.concurrent_invocations = concurrent_invocations
        self._in_flight: dict[str, int] = {}  # namespace -> activations accepted, not finished
        self._in_flight_lock = threading.Lock()
        self._stopping = False
        self.interrupted_on_start = store.close_interrupted(self._interrupted_doc)
        catalog.install(self)

    def shutdown(self) -> None:
        """Kills every container; records still open are closed as interrupted, never dropped."""
        self._stopping = True
        self.invoker.shutdown()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.store.close_interrupted(self._interrupted_doc)


__all__ = [
    "Platform",
    "APPLICATION_ERROR",
    "DEVELOPER_ERROR",
    "INTERNAL_ERROR",
    "SUCCESS",
    "LIMIT_RANGES",
    "MAX_CODE_BYTES",
    "MAX_PAYLOAD_BYTES",
]
