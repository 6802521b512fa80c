"""``mobattn node ADDRESS``: this machine joins a fleet as one benchmark slot."""

from __future__ import annotations

import click

from .common import CONTEXT


@click.command("node", context_settings=CONTEXT)
@click.argument("address")
@click.option(
    "--label",
    envvar="MOBATTN_NODE_LABEL",
    help="Split otherwise identical machines into kinds (also $MOBATTN_NODE_LABEL); part of "
    "every row's identity.",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=1),
    default=60,
    show_default=True,
    help="Seconds to keep trying to reach the scheduler before giving up.",
)
def command(address: str, label: str | None, wait_s: float) -> None:
    """Run this machine's node of a fleet until stopped: one Dask worker with one
    benchmark slot, measuring each configuration the driver sends in mobattn's own
    isolated workers here.

    \b
      dask scheduler --host 10.0.0.1 --port 8786     # once, anywhere the machines reach
      mobattn node tcp://10.0.0.1:8786               # on each machine
      mobattn sweep --preset quick --cluster tcp://10.0.0.1:8786

    ADDRESS is the scheduler's address or its scheduler file. The node is named by this
    machine's id ($MOBATTN_NODE_ID, else the host name and /etc/machine-id), so a second
    node on one machine is refused. Dask has no authentication by default: keep the
    scheduler's port off public networks (README: "Over many machines").
    """
    from mobattn.bench.fleet_node import node_id, require_distributed, run_node

    require_distributed()
    click.echo(f"node {node_id()} joining {address} (Ctrl-C to leave)", err=True)
    run_node(address, label, wait_s)
