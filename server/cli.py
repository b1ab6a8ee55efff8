"""The `masklog` command: serve, demo, user add, eval-vos."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from server.settings import Settings, env, model_settings_from


def _data_dir(value: str | None) -> Path:
    return Path(value or env("DATA") or "masklog-data").resolve()


def _add_server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="folder for the event log, accounts and media (env MASKLOG_DATA; default ./masklog-data)")
    parser.add_argument("--host", default=env("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("PORT", "8000") or 8000))
    parser.add_argument("--backend", choices=["classical", "sam2"], help="model backend (env MASKLOG_BACKEND; default: sam2 if a checkpoint is set, else classical)")
    parser.add_argument("--sam2-checkpoint", help="path to a sam2.1_hiera_*.pt checkpoint (env MASKLOG_SAM2_CHECKPOINT)")
    parser.add_argument("--sam2-config", help="sam2 config name (env MASKLOG_SAM2_CONFIG)")
    parser.add_argument("--device", help="cuda, cuda:N or cpu (env MASKLOG_DEVICE; default: CUDA when present)")


def _settings(args: argparse.Namespace) -> Settings:
    model = model_settings_from(args.backend, args.sam2_checkpoint, args.sam2_config, args.device)
    return Settings(data=_data_dir(args.data), host=args.host, port=args.port, model=model)


def _serve(settings: Settings, demo: bool) -> None:
    import uvicorn

    from server.app import create_app, open_context

    if demo:
        from server.demo import PROJECT, ensure_demo

        async def prepare() -> dict[str, str]:
            async with open_context(settings) as ctx:
                return await ensure_demo(ctx)

        tokens = asyncio.run(prepare())
        base = f"http://{settings.host}:{settings.port}"
        print(f"masklog demo project '{PROJECT}' in {settings.data}", flush=True)
        for name, token in tokens.items():
            print(f"  {name:7s} token {token}   {base}/?token={token}", flush=True)
    print(f"serving on http://{settings.host}:{settings.port} (backend: {settings.model.backend})", flush=True)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ws_max_size=2 * settings.max_message_bytes,
        log_level="info",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="masklog", description="Event-sourced collaborative label server")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    _add_server_flags(serve)
    serve.add_argument("--demo", action="store_true", help="create the demo project first if it is missing")

    demo = commands.add_parser("demo", help="run the server with a demo project (made on the spot, no download)")
    _add_server_flags(demo)

    user = commands.add_parser("user", help="manage users")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    add = user_commands.add_parser("add", help="create a user (or give them a new token) and print the token")
    add.add_argument("name")
    add.add_argument("--role", choices=["admin", "annotator", "viewer"], default="annotator", help="account role: admins create projects and administer all of them")
    add.add_argument("--data")

    args = parser.parse_args(argv)
    if args.command in ("serve", "demo"):
        try:
            settings = _settings(args)
        except ValueError as error:
            parser.error(str(error))
        _serve(settings, demo=args.command == "demo" or args.demo)
        return 0
    if args.command == "user":
        from server.accounts import AccountError, Accounts, Role

        async def add_user() -> str:
            data = _data_dir(args.data)
            data.mkdir(parents=True, exist_ok=True)
            accounts = await Accounts.open(Settings(data=data).accounts_database)
            try:
                return await accounts.add_user(args.name, Role(args.role))
            finally:
                await accounts.close()

        try:
            print(asyncio.run(add_user()))
        except AccountError as error:
            print(f"masklog: {error}", file=sys.stderr)
            return 2
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
