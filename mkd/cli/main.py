"""The `mkd` command: serve, doctor, and client commands over the HTTP API."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import typer

from mkd.cli import commands, console
from mkd.errors import MkdError

# add_completion: `mkd --install-completion` / `--show-completion [bash|zsh|fish]` (typer's, via click).
app = typer.Typer(no_args_is_help=True, add_completion=True, help="Manage Linux multikernel instances.")
app.add_typer(commands.instances, name="instances")
app.add_typer(commands.images, name="images")
app.add_typer(commands.pool, name="pool")
app.command("apply")(commands.apply_documents)
app.command("get")(commands.get_declared)
app.command("host")(commands.host)
app.command("events")(commands.events)
app.command("probe")(commands.probe)
app.command("console")(console.console)
app.command("run")(console.run_command)


def mkd_version() -> str:
    try:
        return version("mkd")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def show_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"mkd {mkd_version()}")
        raise typer.Exit()


@app.callback()
def main(url: commands.UrlOpt = "http://127.0.0.1:8080", socket_path: commands.SocketOpt = None,
         token: commands.TokenOpt = None,
         _version: Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True,
                                                help="print the version and exit")] = False) -> None:
    """mkd: the multikernel daemon and its client."""
    commands.set_target(url, socket_path, token)


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file")] = None,
    listen: Annotated[str | None, typer.Option("--listen", help="HOST:PORT")] = None,
    socket_path: Annotated[Path | None, typer.Option("--socket", help="unix socket path")] = None,
    state_dir: Annotated[Path | None, typer.Option("--state-dir")] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="simulated or host")] = None,
) -> None:
    """Run the daemon."""
    from mkd.cli.serve import StartupFailed, UnsafeBind, run
    from mkd.config import load_settings  # pydantic: imported by serve and doctor only, so probes start fast

    if backend not in (None, "simulated", "host"):
        typer.echo(f"mkd: --backend must be simulated or host, not {backend!r}", err=True)
        raise typer.Exit(5)
    try:
        settings = load_settings(config, env=dict(os.environ), overrides={
            "daemon.listen": listen, "daemon.socket": socket_path, "daemon.state_dir": state_dir,
            "daemon.backend": backend,
        })
        if settings.daemon.backend == "host":
            from mkd.doctor import HostNotReady, require_host_ready

            try:
                require_host_ready(settings)
            except HostNotReady as exc:
                typer.echo(f"mkd: the host backend cannot run on this machine:\n{exc}", err=True)
                raise typer.Exit(1) from exc
        run(settings)
    except UnsafeBind as exc:
        typer.echo(f"mkd: {exc}", err=True)
        raise typer.Exit(6) from exc
    except StartupFailed as exc:
        typer.echo(f"mkd: {exc}", err=True)
        raise typer.Exit(1) from exc
    except MkdError as exc:
        typer.echo(f"mkd: {exc.detail}", err=True)
        raise typer.Exit(5) from exc
    except OSError as exc:
        typer.echo(f"mkd: cannot start: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def doctor(
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file")] = None,
    kernel: Annotated[Path | None, typer.Option("--kernel", help="check this image's signature too")] = None,
) -> None:
    """Tell whether this machine can run the host backend, and if not exactly why."""
    from mkd.config import load_settings
    from mkd.doctor import diagnose

    try:
        settings = load_settings(config, env=dict(os.environ))
    except MkdError as exc:
        typer.echo(f"mkd: {exc.detail}", err=True)
        raise typer.Exit(5) from exc
    findings = diagnose(settings, kernel_image=kernel)
    for finding in findings:
        mark = "ok  " if finding.ok else "FAIL"
        typer.echo(f"[{mark}] {finding.check}: {finding.detail}")
        if not finding.ok and finding.fix:
            typer.echo(f"       fix: {finding.fix}")
    if any(not f.ok for f in findings):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
