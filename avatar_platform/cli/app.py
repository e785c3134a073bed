"""Entry point of `avatar-platform`. Commands parse flags, build a config, call the library, report.

No torch/ray import and no environment lookup happen at import time, so `--help` is instant.
"""

from __future__ import annotations

import sys

import typer

from avatar_platform import __version__
from avatar_platform.cli import cluster as cluster_cli
from avatar_platform.cli import dataset as dataset_cli
from avatar_platform.cli import evaluate as evaluate_cli
from avatar_platform.cli import generate as generate_cli
from avatar_platform.cli import registry as registry_cli
from avatar_platform.cli import sample as sample_cli
from avatar_platform.cli import serve as serve_cli
from avatar_platform.cli import train as train_cli
from avatar_platform.core.errors import AvatarPlatformError, caused_by_interrupt

INTERRUPTED = 130  # the shell's exit code for a process stopped by SIGINT

app = typer.Typer(
    name="avatar-platform",
    help="StyleAvatar3D on Ray: generate multi-view avatar data, train, register and serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command(name="generate")(generate_cli.generate)
app.command(name="styles")(generate_cli.styles)
app.add_typer(dataset_cli.app, name="dataset")
app.add_typer(train_cli.app, name="train")
app.command(name="sample")(sample_cli.sample)
app.add_typer(evaluate_cli.app, name="eval")
app.add_typer(registry_cli.app, name="registry")
app.add_typer(serve_cli.app, name="serve")
app.add_typer(cluster_cli.app, name="cluster")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"avatar-platform {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """StyleAvatar3D on Ray."""


def _usage_errors() -> tuple[type[Exception], ...]:
    """Click's exception class for usage errors, and typer's bundled copy of it (typer 0.29
    ships its own click, whose exceptions are not click's)."""
    import click

    classes: list[type[Exception]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as BundledClickException

        classes.append(BundledClickException)
    except ImportError:  # a typer that uses click itself
        pass
    return tuple(classes)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a user error is one line on stderr and exit code 2."""
    try:
        # without standalone mode, typer turns Ctrl-C into a returned 130 and --help into 0
        result = app(args=argv, prog_name="avatar-platform", standalone_mode=False)
    except AvatarPlatformError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        result = INTERRUPTED
    except typer.Exit as done:
        return done.exit_code
    except typer.Abort:
        return 1
    except Exception as err:  # click's usage errors carry their own exit code
        if isinstance(err, _usage_errors()):
            err.show()
            return err.exit_code
        if not caused_by_interrupt(err):
            raise
        # a library's clean-up turned the Ctrl-C into its own error (Ray Data's executor
        # shutdown can): still an interrupt to the user
        result = INTERRUPTED
    if result == INTERRUPTED:
        print("interrupted: finished parts are kept; re-run the same command to resume", file=sys.stderr)
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
