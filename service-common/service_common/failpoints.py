"""TEST ONLY: named crash points, inert unless the FAILPOINTS setting names them.

`FAILPOINTS=after_reserve=crash` makes the process exit abruptly (os._exit, no cleanup, no response)
when it reaches the step `after_reserve`; `drop` exits the same way and is used where the point is
"after the commit, before the answer". Fault-injection tests use these to kill a process at each step
of the saga; nothing in production sets them.
"""

from __future__ import annotations

import logging
import os

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
        if name in self._actions:
            log.warning("failpoint reached: exiting", extra={"fields": {"failpoint": name}})
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(70)
