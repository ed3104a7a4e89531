"""The `mkd` command: serve, doctor, and client commands over the HTTP API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from mkd.config import load_settings
from mkd.errors import MkdError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Manage Linux multikernel instances.")


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file")] = None,
    listen: Annotated[str | None, typer.Option("--listen", help="HOST:PORT")] = None,
    socket_path: Annotated[Path | None, typer.Option("--socket", help="unix socket path")] = None,
    state_dir: Annotated[Path | None, typer.Option("--state-dir")] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="simulated or host")] = None,
) -> None:
    """Run the daemon."""
    from mkd.cli.serve import UnsafeBind, run

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
    except MkdError as exc:
        typer.echo(f"mkd: {exc.detail}", err=True)
        raise typer.Exit(5) from exc
    except OSError as exc:
        typer.echo(f"mkd: cannot start: {exc}", err=True)
        raise typer.Exit(1) from exc


if __name__ == "__main__":
    app()
