"""Multi-process runs: when one process dies, the others stop within a bounded time, saying why.

A collective with a dead peer fails at once with a gloo error (its sockets close); left alone, the
exit that follows waits in JAX's shutdown barrier and then aborts with a C++ fatal log. Here that
error prints one line and ends the process at once. Bounds: a peer killed or crashed is noticed at
the next collective (within a step); one that vanishes without closing its sockets (host lost,
frozen) is declared dead by JAX's coordination service after HEARTBEAT_TIMEOUT_S, and JAX then
terminates every process ("... This most likely indicates that another task died"). JAX does the
same at once if process 0, which hosts that service, dies: its fatal log may come before this line.
"""

from __future__ import annotations

import os
import sys

HEARTBEAT_TIMEOUT_S = 30  # JAX's default is 100 s
EXIT_CODE = 1  # the CLIs' "training stopped"

# What a collective or barrier that lost a peer says (gloo over TCP, JAX's coordination service).
_PEER_SIGNS = ("gloo", "connection closed by peer", "connection reset by peer", "coordination service",
               "heartbeat", "barrier")


def initialize(coordinator: str, *, num_processes: int, process_id: int) -> None:
    """`jax.distributed.initialize` with the heartbeat bound above."""
    import jax

    jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id,
                               heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)


def is_peer_failure(exc: BaseException) -> bool:
    """True if `exc`, raised in a multi-process run, says a collective or barrier lost a peer."""
    if not _joined():
        return False
    while exc is not None:
        if any(s in str(exc).lower() for s in _PEER_SIGNS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def stop_on_peer_failure(exc: BaseException, prog: str) -> None:
    """If `exc` is a lost peer: print one line and end the process now (skipping the shutdown
    barrier, which would wait for the dead peer); otherwise return."""
    if not is_peer_failure(exc):
        return
    import jax

    n = jax.process_count()
    line = next((s.strip() for s in str(exc).splitlines() if s.strip()), "")[:200]
    sys.stdout.flush()
    print(f"{prog}: stopped: another process of this {n}-process run is gone ({type(exc).__name__}: {line}); "
          f"this process stops too. The last checkpoint is intact: restart all {n} processes with --resume",
          file=sys.stderr, flush=True)
    os._exit(EXIT_CODE)


def _joined() -> bool:
    if "jax" not in sys.modules:
        return False
    from jax._src import distributed

    return distributed.global_state.client is not None
