"""The ``cems`` command: one group per stage of the data flow, registered here; heavy imports stay inside the
commands so ``cems`` starts fast on a gateway and never needs the central extras there."""

from __future__ import annotations

import sys

import click

from streams.cli.archive import archive
from streams.cli.console import console
from streams.cli.demo import demo
from streams.cli.embedded import embedded
from streams.cli.files import batch, schema, site
from streams.cli.hj212 import hj212
from streams.cli.plugins import load_commands
from streams.cli.qa import qa
from streams.cli.reconcile import accounting, alerts, reconcile
from streams.cli.stream import stream


class _Main(click.Group):
    """A Kafka client's error that reaches the command line (a broker gone mid-run, a refused login) is one line
    naming the broker's answer, exit status 1, not a traceback. kafka-python is imported only by the commands that
    use it: an exception cannot be one of its errors unless ``kafka.errors`` was imported."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            errors = sys.modules.get("kafka.errors")
            if errors is not None and isinstance(exc, errors.KafkaError):
                raise click.ClickException(f"Kafka: {exc}") from None
            raise


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cems-pipeline", prog_name="cems")
def main() -> None:
    """CEMS pipeline: edge agents, stream processing and reconciliation for carbon-market emitters."""


load_commands(main)  # cems edge: the entry points of pyproject.toml (central code never imports edge_agent)
main.add_command(stream)
main.add_command(accounting)
main.add_command(qa)
main.add_command(reconcile)
main.add_command(alerts)
main.add_command(demo)
main.add_command(archive)
main.add_command(embedded)
main.add_command(hj212)
main.add_command(console)
main.add_command(site)
main.add_command(schema)
main.add_command(batch)


if __name__ == "__main__":
    main()
