"""The node side of the fleet (:mod:`.fleet`): ``mobattn node``, one Dask worker per
machine with one benchmark slot, and the task that measures a configuration there.

A node is named by the machine's id, so a second node on one machine is refused; it
hands each configuration to :func:`mobattn.bench.api.measure`, and so to mobattn's own
isolated workers on that machine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mobattn.errors import MobattnError
from mobattn.parsing import MAX_NAME_LENGTH, check_name
from mobattn.settings import node_id_setting

from .config import BACKENDS, BenchConfig
from .row import Row

SLOT = "mobattn_slot"  # the Dask resource a node offers once: one measurement at a time
THREAD_CAPS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def require_distributed() -> None:
    if importlib.util.find_spec("distributed") is None:
        raise MobattnError(
            "the fleet needs Dask distributed, which is not installed: pip install 'mobattn[fleet]'"
        )


def is_scheduler_file(address: str) -> bool:
    """A scheduler file (which Dask waits for: in a Slurm job the scheduler may still be
    writing it) rather than an address such as tcp://10.0.0.1:8786."""
    return "://" not in address and (Path(address).is_file() or address.endswith(".json"))


def scheduler_options(address: str, address_key: str, timeout_s: float) -> dict:
    """Dask's keyword for where the scheduler is (``scheduler_file`` or ``address_key``),
    after waiting up to ``timeout_s`` for a scheduler file to appear."""
    wait_for_scheduler_file(address, timeout_s)
    return {"scheduler_file": address} if is_scheduler_file(address) else {address_key: address}


def wait_for_scheduler_file(address: str, timeout_s: float) -> None:
    """Dask waits for a scheduler file forever; mobattn for ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while is_scheduler_file(address) and not Path(address).is_file():
        if time.monotonic() > deadline:
            raise MobattnError(
                f"no scheduler file at {address} after {timeout_s:.0f} s (is the scheduler running?)"
            )
        time.sleep(0.2)


def node_id() -> str:
    """This machine's stable id: ``MOBATTN_NODE_ID``, else the host name and a digest of
    /etc/machine-id (the same across restarts, different for two machines of one name)."""
    given = node_id_setting()
    if given:
        return given
    host = socket.gethostname()[: MAX_NAME_LENGTH - 9]
    try:
        with open("/etc/machine-id") as f:
            machine = f.read().strip()
    except OSError:
        machine = host
    return f"{host}-{hashlib.sha256(machine.encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------- on a node


def node_facts() -> dict:
    """What the driver needs to know about a node: its id, host and environment (the
    driver checks the names again: a node of another version may send anything)."""
    from .calibration import calibrated_environment

    return {"node": node_id(), "host": socket.gethostname(), "environment": calibrated_environment()}


_measuring = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mobattn-measure")
_pools: dict = {}  # the node's warm worker pools, by the export targets they preload


def measure_on_node(config: dict, cache: bool = True) -> dict:
    """A Dask task: one configuration measured by mobattn's isolated workers on this
    machine, its row as a dict. The workers are started from one long-lived thread (a
    worker dies with the thread that started it, and Dask's threads come and go) and
    kept warm across the node's configurations."""
    return _measuring.submit(_measure_here, BenchConfig(**config), cache).result().to_dict()


def _measure_here(config: BenchConfig, cache: bool) -> Row:
    from .measure_here import measure_here
    from .workers import WorkerPool

    targets = frozenset({BACKENDS[config.backend].target} - {None})
    if targets not in _pools:
        _pools[targets] = WorkerPool(None, targets, warm_up=True)
    (row,) = measure_here([config], pool=_pools[targets], cache=cache)
    return row


def run_node(address: str, label: str | None = None, wait_s: float = 60.0) -> None:
    """``mobattn node ADDRESS``: this machine's worker, until stopped; it gives up after
    ``wait_s`` seconds without reaching the scheduler (at the start or later)."""
    require_distributed()
    import asyncio

    if label:
        os.environ["MOBATTN_NODE_LABEL"] = check_name(label, "--label")
    options = scheduler_options(address, "scheduler_ip", wait_s)
    caps = {name: os.environ.get(name) for name in THREAD_CAPS}
    from distributed import Worker

    _restore(caps)

    async def serve() -> None:
        worker = Worker(
            **options,
            nthreads=1,
            resources={SLOT: 1},
            name=node_id(),
            validate=False,
            silence_logs=50,
            death_timeout=wait_s,
        )
        try:
            await worker
        except (RuntimeError, ValueError, OSError, TimeoutError) as exc:
            text = " ".join(str(e) for e in _causes(exc))
            if "name taken" in text:
                raise MobattnError(
                    f"a node named {node_id()} is already in this fleet: one node per machine "
                    "(set MOBATTN_NODE_ID to tell two machines apart)"
                ) from None
            raise MobattnError(f"cannot join the fleet at {address}: {_causes(exc)[-1]}") from None
        await worker.finished()

    asyncio.run(serve())


def _causes(exc: BaseException) -> list[BaseException]:
    """An exception and those it was raised from (Dask wraps a refusal in RuntimeError)."""
    chain = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def _restore(caps: dict) -> None:
    for name, value in caps.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
