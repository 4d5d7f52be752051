"""A second Asterisk on this host, for the scale-out tests (two PBXes, one database).

It runs from the development PBX's own root file system (no copy: measured, a copy of
the 341 MB root takes 11 s and needs its own /proc and /dev mounts) as a second
``asterisk -C /etc/asterisk-<name>/asterisk.conf``: its own configuration, run
(control socket), spool, log, cache and astdb directories, its own SIP port, ARI
(HTTP) port and RTP range, so it shares nothing at run time with the first PBX. Its
configuration is the first PBX's as installed for this session (the project's
dialplan/) with those ports changed, and AMI off (its port would clash).

Its life belongs to the test that asks for it: started by the ``second_pbx`` fixture,
stopped and its directories removed afterwards, whatever the outcome.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from callcontrol.config import Settings
from callcontrol.pbx.devpbx import ari_user_conf, pjsip_local_conf

NAME = "callcontrol-b"
SIP_PORT = 5062
ARI_PORT = 8089
RTP_RANGE = (20010, 29990)  # the first PBX uses 10000-20000; sipp's media from 30000


class SecondPbx:
    """Asterisk number two in the first PBX's chroot; ``start`` and ``stop`` it."""

    def __init__(self, main: Settings, workdir: Path, name: str = NAME) -> None:
        self.root = main.pbx_root
        self.name = name
        self.password = main.effective_ari_password
        self.settings = main.model_copy(
            update={
                "sip_bind": f"127.0.0.1:{SIP_PORT}",
                "ari_url": f"http://127.0.0.1:{ARI_PORT}",
            }
        )
        self.sip = f"127.0.0.1:{SIP_PORT}"
        self.ari_url = self.settings.ari_url
        # Inside the root: each of these belongs to this instance alone.
        self.dirs = {
            "astetcdir": f"/etc/asterisk-{name}",
            "astrundir": f"/run/asterisk-{name}",
            "astspooldir": f"/var/spool/asterisk-{name}",
            "astlogdir": f"/var/log/asterisk-{name}",
            "astcachedir": f"/var/cache/asterisk-{name}",
            "astdbdir": f"/var/lib/asterisk-{name}",
        }
        self.conf = f"{self.dirs['astetcdir']}/asterisk.conf"
        self.log_file = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _in_root(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def start(self) -> None:
        if not (self.root / "usr/sbin/asterisk").exists():
            pytest.fail(f"no Asterisk root at {self.root}: the pbx fixture builds it")
        for port, kind in ((SIP_PORT, socket.SOCK_DGRAM), (ARI_PORT, socket.SOCK_STREAM)):
            with socket.socket(socket.AF_INET, kind) as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError as exc:
                    pytest.fail(f"port {port} is taken ({exc.strerror}): cannot start {NAME}")
        self._remove_dirs()  # a run killed before its clean-up
        etc = self._in_root(self.dirs["astetcdir"])
        shutil.copytree(self.root / "etc/asterisk", etc)
        for rel in self.dirs.values():
            self._in_root(rel).mkdir(parents=True, exist_ok=True)
        files = {
            "asterisk.conf": "[directories]\n"
            + "".join(f"{key} => {value}\n" for key, value in self.dirs.items())
            + "astmoddir => /usr/lib/x86_64-linux-gnu/asterisk/modules\n"
            + "astvarlibdir => /var/lib/asterisk\nastkeydir => /var/lib/asterisk\n"
            + "astdatadir => /usr/share/asterisk\nastagidir => /usr/share/asterisk/agi-bin\n"
            + "astsbindir => /usr/sbin\n\n[options]\n",
            "pjsip_local.conf": pjsip_local_conf(self.settings),
            "ari_user.conf": ari_user_conf(self.settings, self.password),
            "http.conf": "[general]\nenabled = yes\nbindaddr = 127.0.0.1\n"
            f"bindport = {ARI_PORT}\nservername = {self.name}\n",
            "rtp.conf": f"[general]\nrtpstart = {RTP_RANGE[0]}\nrtpend = {RTP_RANGE[1]}\n",
            "manager.conf": "[general]\nenabled = no\n",
        }
        for name, text in files.items():
            (etc / name).write_text(text)
        subprocess.run(
            ["chroot", str(self.root), "chown", "-R", "asterisk:asterisk", *self.dirs.values()],
            check=True,
            capture_output=True,
        )
        with self.log_file.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    "chroot",
                    str(self.root),
                    "/usr/sbin/asterisk",
                    "-C",
                    self.conf,
                    "-f",
                    "-n",
                    "-U",
                    "asterisk",
                    "-G",
                    "asterisk",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()

    def cli(self, command: str, timeout: float = 15) -> str:
        argv = ["chroot", str(self.root), "asterisk", "-C", self.conf, "-rx", command]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{NAME}: {command!r} failed: {(proc.stderr or proc.stdout)}")
        return proc.stdout

    def _ari_answers(self) -> bool:
        token = base64.b64encode(f"{self.settings.ari_username}:{self.password}".encode())
        req = urllib.request.Request(
            f"{self.ari_url}/ari/asterisk/info?only=system",
            headers={"Authorization": f"Basic {token.decode()}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                tail = self.log_file.read_text(errors="replace").splitlines()[-15:]
                pytest.fail(f"{NAME} exited during start-up:\n" + "\n".join(tail))
            try:
                self.cli("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
            except (RuntimeError, subprocess.TimeoutExpired):
                time.sleep(0.2)
                continue
            if self._ari_answers():
                return
            time.sleep(0.2)
        pytest.fail(f"{NAME} not ready in 60 s; see {self.log_file}")

    def stop(self) -> None:
        """Stop this instance (never the first PBX) and remove its directories."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.cli("core stop now")
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._remove_dirs()

    def _remove_dirs(self) -> None:
        for rel in self.dirs.values():
            shutil.rmtree(self._in_root(rel), ignore_errors=True)


@pytest.fixture
def second_pbx(pbx: Settings, tmp_path: Path) -> Iterator[SecondPbx]:
    """A second, independent Asterisk (SIP 5062, ARI 8089), stopped after the test."""
    node = SecondPbx(pbx, tmp_path)
    try:
        node.start()
        yield node
    finally:
        node.stop()
