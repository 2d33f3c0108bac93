"""`deployer`: one entry point for the platform, the ML jobs, FedAvg, hostnet and benchmarks.

Subcommands load lazily so `deployer --help` and `deployer invoke` never import torch.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from contextlib import contextmanager

import click

from .commands.params import ApiHost, AuthKey

# name -> "module:attribute" of a click command or group
COMMANDS = {
    "up": "deployer.commands.platform:up",
    "down": "deployer.commands.platform:down",
    "status": "deployer.commands.platform:status",
    "storage": "deployer.commands.platform:storage",
    "deploy": "deployer.commands.actions:deploy",
    "undeploy": "deployer.commands.actions:undeploy",
    "invoke": "deployer.commands.actions:invoke",
    "actions": "deployer.commands.actions:actions",
    "activations": "deployer.commands.actions:activations",
    "triggers": "deployer.commands.triggers:triggers",
    "rules": "deployer.commands.triggers:rules",
    "packages": "deployer.commands.triggers:packages",
    "bench": "deployer.commands.bench:bench",
    "data": "deployer.commands.ml:data_group",
    "model": "deployer.commands.ml:model_group",
    "serve": "deployer.commands.ml:serve_command",
    "demo": "deployer.commands.ml:demo_command",
    "train": "deployer.commands.train:train_command",
    "fedavg": "deployer.commands.fedavg:fedavg_group",
    "hostnet": "deployer.commands.hostnet:hostnet_group",
    "runtime": "deployer.commands.runtime:runtime",
}

HELP = {
    "up": "Start the local OpenWhisk-compatible platform and embedded S3.",
    "down": "Stop the local platform.",
    "status": "Show where the platform runs and what it holds.",
    "storage": "The embedded S3: `storage env` prints its keys as export lines.",
    "deploy": "Deploy a wskdeploy manifest.",
    "undeploy": "Remove what a wskdeploy manifest deployed.",
    "invoke": "Invoke an action.",
    "actions": "List, get or delete actions.",
    "activations": "List activations, get one, or show its logs.",
    "triggers": "Create, fire, list or delete triggers.",
    "rules": "Connect triggers to actions; enable or disable them.",
    "packages": "List packages, bind one (e.g. /whisk.system/utils), delete.",
    "bench": "Benchmarks with a baseline in the same run (JSON out).",
    "data": "Datasets (real MNIST, offline).",
    "model": "Train and publish the LeNet-5 model.",
    "serve": "The web page of the inference demo.",
    "demo": "The main job: data, model, deploy, classify through the platform.",
    "train": "Serverless distributed training (long-lived workers reducing through S3).",
    "fedavg": "Federated learning on MNIST.",
    "hostnet": "QEMU guests, virtio-net vs OVS-DPDK vhost-user, migration.",
    "runtime": "The action runtime images: `runtime build` makes them locally with Docker.",
}


def load_command(spec: str) -> click.Command:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that subcommand runs."""

    def __init__(
        self, *args, lazy: dict[str, str] | None = None, help_texts: dict[str, str] | None = None, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}
        self.help_texts = help_texts or {}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy:
            try:
                return load_command(self.lazy[name])
            except (ImportError, AttributeError) as exc:
                if ctx.resilient_parsing or "--help" in sys.argv:
                    return click.Command(name, help=f"(unavailable: {exc})")
                raise click.ClickException(f"`{name}` is not available: {exc}") from exc
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter):
        """help_texts where given (the root's, so `deployer --help` imports no command), else the docstring's first
        sentence, whole: the listing wraps it as it wraps help_texts."""
        rows = [
            (name, self.help_texts.get(name) or self.get_command(ctx, name).get_short_help_str(limit=200))
            for name in self.list_commands(ctx)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class RootGroup(LazyGroup):
    """The one place where whatever a command raises becomes one line: exit 2 for a bad value, 1 for a failure.

    Each package has one root error, so these classes cover every failure a user can fix;
    anything else is a bug, still shown as one line (DEPLOYER_DEBUG=1 shows its traceback).
    Click's usage errors lose their usage block: the line names the option and where help is.
    """

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:  # the root's own options
            raise OneLineError.usage(exc) from exc

    def invoke(self, ctx):
        from embedded_s3.errors import EmbeddedS3Error
        from fedavg.errors import FedAvgError
        from hostnet.errors import HostnetError
        from localwhisk.errors import LocalWhiskError
        from mlcore.errors import MLCoreError
        from studies.errors import StudyError

        from .errors import DeployerError

        roots = (DeployerError, LocalWhiskError, EmbeddedS3Error, MLCoreError, FedAvgError, HostnetError, StudyError)
        with _sigterm_as_interrupt():
            try:
                return super().invoke(ctx)
            except OneLineError:
                raise
            except click.UsageError as exc:
                raise OneLineError.usage(exc) from exc
            except click.ClickException as exc:
                raise OneLineError(exc.format_message(), exc.exit_code) from exc
            except roots as exc:
                raise OneLineError(str(exc) or type(exc).__name__) from exc
            except (click.exceptions.Exit, click.Abort):
                raise
            except Exception as exc:
                if os.environ.get("DEPLOYER_DEBUG"):
                    raise
                raise OneLineError(
                    f"unexpected {type(exc).__name__}: {exc}; this is a bug in deployer (DEPLOYER_DEBUG=1 shows where)"
                ) from exc


class OneLineError(click.ClickException):
    """A ClickException shown as one line however many its message has; `exit_code` 2 for a bad value."""

    def __init__(self, message: str, exit_code: int = 1, hint: str = "") -> None:
        super().__init__(" | ".join(line.strip() for line in str(message).splitlines() if line.strip()))
        self.exit_code, self.hint = exit_code, hint

    @classmethod
    def usage(cls, exc: click.UsageError) -> OneLineError:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return cls(exc.format_message(), exc.exit_code, hint)

    def show(self, file=None) -> None:
        click.echo(f"Error: {self.format_message()}{self.hint}", file=file, err=file is None)


@contextmanager
def _sigterm_as_interrupt():
    """`kill PID` stops a command the way Ctrl-C does, so its context managers stop what it started.

    Python's default SIGTERM ends the process on the spot: worker pools, shared memory,
    servers and VMs would be left to whatever reaps orphans.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.group(cls=RootGroup, lazy=COMMANDS, help_texts=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--apihost", envvar=None, type=ApiHost(), help="OpenWhisk API host (else OW_APIHOST, wskprops, or local)."
)
@click.option(
    "--auth", envvar=None, type=AuthKey(), help="OpenWhisk auth 'uuid:key' (else OW_AUTH, wskprops, or local)."
)
@click.option("-i", "--insecure", is_flag=True, help="Skip TLS verification of the API host.")
@click.pass_context
def cli(ctx: click.Context, apihost: str | None, auth: str | None, insecure: bool) -> None:
    """Machine learning on serverless OpenWhisk, and measurements of the network under it."""
    ctx.obj = Context(apihost, auth, insecure)


class Context:
    """Holds the target flags; the client is made on first use, so commands without one start nothing."""

    def __init__(self, apihost: str | None, auth: str | None, insecure: bool) -> None:
        self.apihost, self.auth, self.insecure = apihost, auth, insecure
        self._target = None

    @property
    def target(self):
        if self._target is None:
            from .target import resolve

            self._target = resolve(self.apihost, self.auth, insecure=self.insecure)
        return self._target

    @property
    def client(self):
        return self.target.client()


def main() -> None:
    cli(prog_name="deployer")


if __name__ == "__main__":
    main()
