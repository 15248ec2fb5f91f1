"""TEST ONLY: named crash points, inert unless the FAILPOINTS setting names them.

`FAILPOINTS=after_reserve=crash` makes the process exit abruptly (os._exit, no cleanup, no response)
when it reaches the step `after_reserve`; `drop` exits the same way and is used where the point is
"after the commit, before the answer"; `hang` blocks the thread that reaches the point for good, while
the rest of the process carries on (a stuck loop that still answers HTTP). Fault-injection tests use
these to kill or wedge a process at each step of the saga; nothing in production sets them.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)


class FailPoints:
    def __init__(self, spec: str) -> None:
        self._actions: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, action = item.partition("=")
            self._actions[name.strip()] = action.strip() or "crash"

    def __bool__(self) -> bool:
        return bool(self._actions)

    def hit(self, name: str) -> None:
        action = self._actions.get(name)
        if action == "hang":
            log.warning("failpoint reached: hanging", extra={"fields": {"failpoint": name}})
            threading.Event().wait()
        elif action is not None:
            log.warning("failpoint reached: exiting", extra={"fields": {"failpoint": name}})
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(70)
