"""``callcontrol tls self-signed``: a certificate for the console's HTTPS, for trials.

Production uses a certificate from a CA the browsers trust (e.g. Let's Encrypt): set
console_tls_cert/console_tls_key to its files. For SIP over TLS, `pbx up` generates
its own self-signed pair when sip_tls is on (tls.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from callcontrol.cli.common import AddCommand
from callcontrol.config import Settings
from callcontrol.errors import Conflict
from callcontrol.tls import default_names, write_self_signed

__all__ = ["register"]


def cmd_tls_self_signed(settings: Settings, args: argparse.Namespace) -> int:
    cert = Path(args.cert) if args.cert else settings.data_dir / "tls" / "console.crt"
    key = Path(args.key) if args.key else cert.with_suffix(".key")
    existing = [str(p) for p in (cert, key) if p.exists()]
    if existing and not args.force:
        raise Conflict(f"{' and '.join(existing)} exist: give --force to replace them")
    host = settings.console_listen.rpartition(":")[0]
    names = default_names(host, *args.name)
    write_self_signed(cert, key, names)
    print(f"wrote {cert} and {key} (key 0600), self-signed for {', '.join(names)}")
    print("serve the console over HTTPS with these settings (callcontrol.toml):")
    print(f'  console_tls_cert = "{cert}"')
    print(f'  console_tls_key = "{key}"')
    return 0


def register(sub: Any, add: AddCommand) -> None:
    tls = sub.add_parser("tls", help="TLS certificates").add_subparsers(required=True)
    p = add(tls, "self-signed", cmd_tls_self_signed, "a self-signed certificate for the console")
    p.add_argument(
        "--name",
        action="append",
        default=[],
        help="a host name or address the console is reached by (repeatable); localhost, "
        "127.0.0.1 and this machine's name are always in",
    )
    p.add_argument("--cert", help="certificate file (default <data_dir>/tls/console.crt)")
    p.add_argument("--key", help="key file (default: the certificate's name with .key)")
    p.add_argument("--force", action="store_true", help="replace existing files")
