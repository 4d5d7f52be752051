"""The development PBX: a real Asterisk 22 for `make run` and the tests.

Debian 12 has no Asterisk package; Debian sid has Asterisk 22. ``up`` builds a
minimal sid root file system with mmdebstrap once (cached in ``pbx_root``, outside
the checkout), installs the project's ``dialplan/`` into it, mounts /proc and /dev,
starts ``asterisk -f`` chrooted as the asterisk user, and waits until it is fully
booted and ARI answers with our credentials. ``down`` stops it and unmounts.
Where Asterisk is installed on the host (``pbx_mode`` auto or host), that one is
configured and started instead.

Everything is idempotent: ``up`` on a running PBX re-installs the configuration and
reloads it; ``down`` on a stopped one does nothing.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from callcontrol.config import Settings, ari_password_problem, password_fits_asterisk
from callcontrol.domain.emergency import emergency_codes
from callcontrol.domain.text import shown
from callcontrol.errors import PbxError
from callcontrol.pbx.dialplan import WORKERS_FILES, workers_conf
from callcontrol.tls import default_names, ensure_self_signed

log = logging.getLogger(__name__)

PACKAGES = "asterisk,asterisk-core-sounds-en-gsm"
RELOADS_WARNING = 20  # `pbx up` on a running PBX says to restart it from this many reloads
CDR_FILE_NAME = "callcontrol-cdr.csv"  # the section name in dialplan/cdr_custom.conf
OWNED_DIRS = (
    "run/asterisk",
    "var/lib/asterisk",
    "var/log/asterisk",
    "var/spool/asterisk",
    "var/cache/asterisk",
    "etc/asterisk",
)


@dataclass(frozen=True)
class PbxStatus:
    running: bool
    mode: str
    pid: int | None
    ari_ok: bool
    version: str | None
    detail: str
    reloads: int | None = None  # dialplan reloads since start (stale manager subscribers)

    def describe(self) -> str:
        state = "running" if self.running else "stopped"
        parts = [f"PBX {state} ({self.mode})"]
        if self.pid:
            parts.append(f"pid {self.pid}")
        if self.version:
            parts.append(self.version)
        parts.append("ARI answers" if self.ari_ok else "ARI not answering")
        if self.reloads:
            parts.append(
                f"{self.reloads} dialplan reloads since start (each makes every call cost "
                "Asterisk more CPU; a restart clears them)"
            )
        if self.detail:
            parts.append(self.detail)
        return ", ".join(parts)


def ensure_ari_secret(settings: Settings) -> str:
    """The installation's ARI password: the configured one, else a generated one. A secret
    file someone filled with a default or short password is refused, not used."""
    return _ensure_secret(
        settings.ari_password,
        settings.ari_secret_file,
        "ARI password",
        lambda secret: ari_password_problem(secret, settings.ari_username),
    )


def ensure_ami_secret(settings: Settings) -> str:
    """The installation's AMI secret: the configured one, else a generated one (never a
    default: the manager interface can hang up any call)."""
    return _ensure_secret(
        settings.ami_password,
        settings.ami_secret_file,
        "AMI secret",
        lambda secret: ari_password_problem(secret, settings.ami_username),
    )


def _ensure_secret(configured: str, path: Path, what: str, problem_of: Callable[[str], str]) -> str:
    if configured:
        return configured
    if path.exists():
        secret = path.read_text().strip()
        problem = problem_of(secret)
        if problem:
            raise PbxError(
                f"refusing the {what} in {path}: it {problem}; delete the file and "
                "`pbx up` generates a new one"
            )
        return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    log.info("generated a new %s in %s", what, path)
    return secret


def cdr_path(settings: Settings) -> Path | None:
    """The CSV file of call detail records that dialplan/cdr_custom.conf makes Asterisk
    write (the setting cdr_file; by default in the development PBX's log dir); None when
    the setting is 'none'."""
    if settings.cdr_file == "none":
        return None
    if settings.cdr_file:
        return Path(settings.cdr_file)
    root = Path("/") if DevPbx(settings).mode == "host" else settings.pbx_root
    return root / "var/log/asterisk/cdr-custom" / CDR_FILE_NAME


class DevPbx:
    """Provision, start, stop and inspect the development Asterisk."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.pbx_root
        if settings.pbx_mode == "host" or (
            settings.pbx_mode == "auto" and shutil.which("asterisk") is not None
        ):
            self.mode = "host"
            self.etc = Path("/etc/asterisk")
        else:
            self.mode = "chroot"
            self.etc = self.root / "etc/asterisk"
        self.pid_file = settings.data_dir / "pbx.pid"
        self.log_file = settings.data_dir / "pbx.log"

    # ---- public -----------------------------------------------------------------

    def up(self) -> PbxStatus:
        self._require_root()
        if self.mode == "chroot":
            self._ensure_rootfs()
        secret = ensure_ari_secret(self.settings)
        ami_secret = ensure_ami_secret(self.settings)
        running = self._asterisk_running()
        self.install_config(secret, ami_secret)
        if running:
            log.info("Asterisk already running: reloading its configuration")
            self.cli("core reload")
            reloads = self.reloads()
            if reloads is not None and reloads >= RELOADS_WARNING:
                log.warning(
                    "Asterisk has been reloaded %d times since it started: each reload leaves "
                    'it a subscriber that every later call pays for in CPU (README, "The '
                    'development PBX"); restart it when no call is up '
                    "(callcontrol pbx down && callcontrol pbx up)",
                    reloads,
                )
            loaded = self.load_listed_modules()
            if loaded:
                log.info("loaded modules added to modules.conf: %s", ", ".join(loaded))
        else:
            self._check_ports_free()
            self._start()
        self._wait_ready(secret)
        return self.status()

    def down(self) -> PbxStatus:
        self._require_root()
        if self._asterisk_running():
            try:
                self.cli("core stop now", timeout=15)
            except PbxError as exc:
                log.warning("core stop now failed (%s): killing Asterisk", exc)
            self._wait_stopped()
        if self.mode == "chroot":
            self._unmount_all()
        self.pid_file.unlink(missing_ok=True)
        return self.status()

    def status(self) -> PbxStatus:
        running = self._asterisk_running()
        version = None
        detail = ""
        ari_ok = False
        if running:
            try:
                version = self.cli("core show version", timeout=5).strip()
            except PbxError as exc:
                detail = str(exc)
            try:
                secret = self.settings.effective_ari_password
                ari_ok = self._ari_answers(secret)
            except Exception as exc:  # status must always answer
                detail = detail or str(exc)
        reloads = self.reloads() if running else None
        return PbxStatus(running, self.mode, self._pid(), ari_ok, version, detail, reloads)

    def reloads(self) -> int | None:
        """How many dialplan reloads Asterisk has kept a subscriber of since it started:
        its manager topic has 1 subscriber after a start and one more after every
        ``dialplan reload`` (Asterisk 22.10 never drops them), each of which handles every
        AMI event of every later call (bench/RESULTS.md, round 4). None if it cannot say."""
        try:
            shown_topic = self.cli("stasis show topic manager:core", timeout=5)
        except PbxError:
            return None
        found = re.search(r"Subscribers count: (\d+)", shown_topic)
        return max(0, int(found.group(1)) - 1) if found else None

    def cli(self, command: str, timeout: float = 30.0) -> str:
        """Run an Asterisk CLI command (``asterisk -rx``) and return its output."""
        argv = ["asterisk", "-rx", command]
        if self.mode == "chroot":
            argv = ["chroot", str(self.root), *argv]
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise PbxError(f"asterisk -rx {command!r} did not answer in {timeout:.0f} s") from exc
        if proc.returncode != 0:
            raise PbxError(
                f"asterisk -rx {command!r} failed: {(proc.stderr or proc.stdout).strip()}"
            )
        return proc.stdout

    def install_config(self, secret: str, ami_secret: str) -> None:
        """Copy dialplan/ into Asterisk's etc and write the installation's own files."""
        src = self.settings.pbx_dialplan_dir
        if not src.is_dir():
            raise PbxError(f"dialplan directory {src} not found (setting pbx_dialplan_dir)")
        generated = {  # built first: a refused value leaves Asterisk's files untouched
            "pjsip_local.conf": pjsip_local_conf(self.settings),
            "ari_user.conf": ari_user_conf(self.settings, secret),
            "manager_local.conf": manager_local_conf(self.settings, ami_secret),
            "extensions_emergency.conf": emergency_conf(self.settings.country),
            "http_local.conf": http_local_conf(self.settings),
        }
        for name, side in WORKERS_FILES.items():
            generated[name] = workers_conf(self.settings, side)
        tls = self._tls_files() if self.settings.sip_tls else {}
        self.etc.mkdir(parents=True, exist_ok=True)
        if self.mode == "host":
            self._backup_host_config()
        for conf in sorted(src.glob("*.conf")):
            shutil.copyfile(conf, self.etc / conf.name)
        for name, text in generated.items():
            self._write(self.etc / name, text, 0o640)
        for name, data in tls.items():
            (self.etc / "keys").mkdir(exist_ok=True)
            self._write_bytes(self.etc / "keys" / name, data, 0o640)
            if self.mode == "host":  # the chroot's etc is chowned below
                shutil.chown(self.etc / "keys" / name, "asterisk", "asterisk")
        if self.mode == "chroot":
            self._write(self.root / "etc/hosts", root_hosts(socket.gethostname()), 0o644)
            self._chown_asterisk()

    def _tls_files(self) -> dict[str, bytes]:
        """The SIP TLS certificate and key, for etc/asterisk/keys/ (inside the chroot, where
        Asterisk can read them): the configured files, else a self-signed pair generated
        once into data_dir/tls/."""
        cert, key = self.settings.sip_tls_files
        if self.settings.sip_tls_cert is None:
            host = self.settings.sip_tls_bind.rpartition(":")[0]
            if ensure_self_signed(cert, key, default_names(host)):
                log.info("generated a self-signed SIP TLS certificate in %s", cert)
        try:
            return {SIP_TLS_CERT.name: cert.read_bytes(), SIP_TLS_KEY.name: key.read_bytes()}
        except OSError as exc:
            raise PbxError(
                f"cannot read {exc.filename} (settings sip_tls_cert, sip_tls_key): {exc.strerror}"
            ) from exc

    def load_listed_modules(self) -> list[str]:
        """Load the modules modules.conf lists that the running Asterisk has not loaded:
        `core reload` re-reads configuration but never loads a module added since start."""
        listed = re.findall(
            r"^\s*load\s*=>\s*(\S+\.so)", (self.etc / "modules.conf").read_text(), re.M
        )
        loaded = set(re.findall(r"^(\S+\.so)\s", self.cli("module show"), re.M))
        missing = [name for name in listed if name not in loaded]
        for name in missing:
            try:
                self.cli(f"module load {name}")
            except PbxError as exc:
                log.warning("could not load %s: %s", name, exc)
        return missing

    # ---- root file system ---------------------------------------------------------

    def _ensure_rootfs(self) -> None:
        if (self.root / "usr/sbin/asterisk").exists():
            return
        if shutil.which("mmdebstrap") is None:
            raise PbxError(
                "mmdebstrap is not installed: run `apt-get install mmdebstrap` "
                "(it builds the Debian sid root file system that carries Asterisk 22)"
            )
        tmp = self.root.with_name(self.root.name + ".partial")
        if tmp.exists():
            self._unmount_all(tmp)
            shutil.rmtree(tmp)
        self.root.parent.mkdir(parents=True, exist_ok=True)
        print(f"building the Asterisk 22 root file system in {self.root} (about 30 s)...")
        argv = [
            "mmdebstrap",
            "--variant=apt",
            '--aptopt=Acquire::Check-Valid-Until "false"',
            f"--include={PACKAGES}",
            "sid",
            str(tmp),
            self.settings.pbx_mirror,
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            hint = ""
            if "Could not resolve" in tail or "Failed to fetch" in tail or "unreachable" in tail:
                hint = f" (is the mirror {self.settings.pbx_mirror} reachable? setting pbx_mirror)"
            raise PbxError(f"mmdebstrap failed{hint}:\n{tail}")
        tmp.rename(self.root)

    def _mounts(self) -> list[str]:
        with open("/proc/mounts") as fh:
            return [line.split()[1] for line in fh]

    def _mount(self) -> None:
        mounted = self._mounts()
        proc_dir, dev_dir = self.root / "proc", self.root / "dev"
        if str(proc_dir) not in mounted:
            self._run(["mount", "-t", "proc", "proc", str(proc_dir)])
        if str(dev_dir) not in mounted:
            self._run(["mount", "--rbind", "/dev", str(dev_dir)])
            self._run(["mount", "--make-rslave", str(dev_dir)])

    def _unmount_all(self, root: Path | None = None) -> None:
        base = str(root or self.root)
        for point in sorted(
            (m for m in self._mounts() if m == base or m.startswith(base + "/")),
            key=len,
            reverse=True,
        ):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)

    def _chown_asterisk(self) -> None:
        for rel in OWNED_DIRS:
            (self.root / rel).mkdir(parents=True, exist_ok=True)
        self._run(
            ["chroot", str(self.root), "chown", "-R", "asterisk:asterisk"]
            + ["/" + rel for rel in OWNED_DIRS]
        )

    # ---- process --------------------------------------------------------------------

    def _start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        if self.mode == "chroot":
            self._mount()
            self._chown_asterisk()
            argv = [
                "chroot",
                str(self.root),
                "/usr/sbin/asterisk",
                "-f",
                "-n",
                "-U",
                "asterisk",
                "-G",
                "asterisk",
            ]
        else:
            Path("/run/asterisk").mkdir(parents=True, exist_ok=True)
            shutil.chown("/run/asterisk", "asterisk", "asterisk")
            argv = ["asterisk", "-f", "-n", "-U", "asterisk", "-G", "asterisk"]
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        log.info("started Asterisk (%s), pid %s, output in %s", self.mode, proc.pid, self.log_file)

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            # Stale: that Asterisk is gone (another checkout's `pbx up` or `down` may run
            # the one PBX of this host now). Forget it, so a start-up check is not
            # fooled into "Asterisk exited during start-up".
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def _asterisk_running(self) -> bool:
        if self._pid() is not None:
            return True
        ctl = (self.root if self.mode == "chroot" else Path("/")) / "run/asterisk/asterisk.ctl"
        if not ctl.exists():
            return False
        try:
            self.cli("core show uptime", timeout=5)
        except PbxError:
            return False
        return True

    def _wait_ready(self, secret: str) -> None:
        deadline = time.monotonic() + self.settings.pbx_boot_timeout
        last = "Asterisk did not start"
        while time.monotonic() < deadline:
            pid = self.pid_file.exists() and self._pid()
            if self.pid_file.exists() and not pid and self.mode == "chroot":
                raise PbxError(
                    f"Asterisk exited during start-up; see {self.log_file}:\n" + self._log_tail()
                )
            try:
                self.cli("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
                if self._ari_answers(secret):
                    return
                last = "ARI does not accept our credentials"
            except PbxError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise PbxError(f"Asterisk not ready after {self.settings.pbx_boot_timeout:.0f} s: {last}")

    def _wait_stopped(self) -> None:
        deadline = time.monotonic() + 15
        pid = self._pid()
        while time.monotonic() < deadline:
            if not self._asterisk_running():
                return
            time.sleep(0.1)
        if pid:
            os.killpg(pid, 9)

    def _ari_answers(self, secret: str) -> bool:
        url = f"{self.settings.ari_url}/ari/asterisk/info?only=system"
        token = base64.b64encode(f"{self.settings.ari_username}:{secret}".encode()).decode()
        req = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    # ---- checks and helpers -------------------------------------------------------------

    def _require_root(self) -> None:
        if os.geteuid() != 0:
            raise PbxError(
                "the development PBX needs root (chroot, mount, binding SIP ports): "
                "run it with sudo"
            )

    def _check_ports_free(self) -> None:
        host, _, port = self.settings.sip_bind.rpartition(":")
        http_host, _, http_port = self.settings.ari_bind.rpartition(":")
        checks = [
            (host, int(port), socket.SOCK_DGRAM, "sip_bind"),
            (http_host, int(http_port), socket.SOCK_STREAM, "ari_bind"),
        ]
        if self.settings.sip_tls:
            tls_host, _, tls_port = self.settings.sip_tls_bind.rpartition(":")
            checks.append((tls_host, int(tls_port), socket.SOCK_STREAM, "sip_tls_bind"))
        for addr, num, kind, setting in checks:
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((addr, num))
                except OSError as exc:
                    name = "udp" if kind == socket.SOCK_DGRAM else "tcp"
                    raise PbxError(
                        f"{addr}:{num}/{name} is already in use by another program "
                        f"({exc.strerror}); stop it or change the setting {setting}"
                    ) from exc

    def _backup_host_config(self) -> None:
        backup = self.etc.with_name("asterisk.before-callcontrol")
        if not backup.exists() and any(self.etc.iterdir()):
            shutil.copytree(self.etc, backup)
            log.warning("saved the host's original Asterisk configuration in %s", backup)

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    @staticmethod
    def _write(path: Path, text: str, mode: int) -> None:
        """Write ``text`` with ``mode`` set before any of it (ari_user.conf holds a secret)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(text)

    @staticmethod
    def _write_bytes(path: Path, data: bytes, mode: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)

    @staticmethod
    def _run(argv: list[str]) -> None:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PbxError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")


# ---- the generated files ----------------------------------------------------------------
# The settings are checked when read (config.py); these writers check again, so that no
# value can add a line, a section or a comment to Asterisk's configuration.


def root_hosts(hostname: str) -> str:
    """The PBX root's /etc/hosts. Without it Asterisk resolves its own host name on its
    SIP thread for every call, and each lost DNS query stalls all SIP handling for 5 s
    (measured: 1 query in 40 lost here, 19% of calls failing at 10 calls/s)."""
    names = " ".join(dict.fromkeys(["localhost", hostname, hostname.partition(".")[0]]))
    return f"127.0.0.1\t{names}\n::1\tlocalhost ip6-localhost ip6-loopback\n"


SIP_TLS_CERT = Path("/etc/asterisk/keys/callcontrol-sip.crt")  # as Asterisk sees them
SIP_TLS_KEY = Path("/etc/asterisk/keys/callcontrol-sip.key")


def pjsip_local_conf(settings: Settings) -> str:
    """pjsip_local.conf: the transports, the addresses that identify the carrier, and the
    ACL of who may send SIP at all."""
    bind = _conf_value(settings.sip_bind, "the setting sip_bind")
    lines = [
        "; written by `callcontrol pbx up` from the settings sip_bind, sip_tls*, carrier_ips",
        "; and sip_permit",
        "[transport-udp]",
        "type = transport",
        "protocol = udp",
        f"bind = {bind}",
        "",
    ]
    if settings.sip_tls:
        lines += [
            "[transport-tls]",
            "type = transport",
            "protocol = tls",
            f"bind = {_conf_value(settings.sip_tls_bind, 'the setting sip_tls_bind')}",
            f"cert_file = {SIP_TLS_CERT}",
            f"priv_key_file = {SIP_TLS_KEY}",
            "method = tlsv1_2",
            "",
        ]
    lines += ["[carrier]", "type = identify", "endpoint = carrier"]
    carrier = _networks(settings.carrier_ips, "carrier_ips")
    lines += [f"match = {entry}" for entry in carrier]
    # One ACL for every request (res_pjsip_acl): a source outside the permitted networks
    # gets 403 before endpoint identification or any digest check, so password guessing
    # from elsewhere never reaches the users' accounts.
    lines += [
        "",
        "[callcontrol-sources]",
        "type = acl",
        "deny = 0.0.0.0/0.0.0.0",
        "deny = ::/0",
    ]
    for entry in dict.fromkeys([*_networks(settings.sip_permit, "sip_permit"), *carrier]):
        lines.append(f"permit = {entry}")
    return "\n".join(lines) + "\n"


def http_local_conf(settings: Settings) -> str:
    """http_local.conf: where Asterisk's HTTP server (ARI) listens, included by http.conf."""
    host, _, port = _conf_value(settings.ari_bind, "the setting ari_bind").rpartition(":")
    return (
        "; written by `callcontrol pbx up` from the setting ari_bind\n"
        f"bindaddr = {host}\nbindport = {port}\n"
    )


def _networks(value: str, setting: str) -> list[str]:
    return [
        _conf_network(entry, setting) for entry in (e.strip() for e in value.split(",")) if entry
    ]


def emergency_conf(country: str) -> str:
    """extensions_emergency.conf: the emergency numbers of ``country`` (and those every
    phone treats as such, 112 and 911), each dialled straight to the carrier trunk."""
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise PbxError(f"refusing to write the country {shown(country)} into the dialplan")
    lines = [
        f"; written by `callcontrol pbx up` from callcontrol/domain/emergency.py for {country}:",
        "; straight to the carrier trunk, whatever the app, the credits or the user's numbers",
    ]
    for code in emergency_codes(country):
        if not re.fullmatch(r"[0-9X]{2,8}", code.digits):
            raise PbxError(f"refusing to write the emergency code {shown(code.digits)}")
        exten = f"_{code.digits}" if "X" in code.digits else code.digits
        lines += [
            f"exten => {exten},1,NoOp(emergency call to ${{EXTEN}} from ${{CHANNEL(endpoint)}})",
            " same => n,Dial(PJSIP/${EXTEN}@carrier)",
            " same => n,Hangup()",
        ]
    return "\n".join(lines) + "\n"


def ari_user_conf(settings: Settings, secret: str) -> str:
    """ari_user.conf: the app's ARI user and its password."""
    user = _conf_value(settings.ari_username, "the setting ari_username", section=True)
    problem = ari_password_problem(secret, settings.ari_username)
    if problem:
        raise PbxError(
            f"refusing to write the ARI password into ari_user.conf: it {problem} "
            f"(setting ari_password, else {settings.ari_secret_file})"
        )
    return f"[{user}]\ntype = user\nread_only = no\npassword_format = plain\npassword = {secret}\n"


def manager_local_conf(settings: Settings, secret: str) -> str:
    """manager_local.conf, included by dialplan/manager.conf: where AMI listens and the
    app's AMI user. The user may read system, call and reporting events and run
    system/reporting actions (CoreStatus, CoreShowChannels, PJSIPShowEndpoints,
    PJSIPShowContacts): no `command`, `config` or `originate` class, and only from
    ``ami_permit``."""
    host, _, port = _conf_value(settings.ami_bind, "the setting ami_bind").rpartition(":")
    user = _conf_value(settings.ami_username, "the setting ami_username", section=True)
    if not password_fits_asterisk(secret):
        raise PbxError(
            "refusing to write the AMI secret into manager_local.conf: it must be printable "
            f"ASCII without spaces or ';' (setting ami_password, else {settings.ami_secret_file})"
        )
    lines = [
        "; written by `callcontrol pbx up` from the settings ami_bind, ami_username,",
        "; ami_permit and the AMI secret (ami_password, else <data_dir>/ami.secret)",
        f"port = {port}",
        f"bindaddr = {host}",
        "",
        f"[{user}]",
        f"secret = {secret}",
        "deny = 0.0.0.0/0.0.0.0",
    ]
    for entry in (e.strip() for e in settings.ami_permit.split(",")):
        if entry:
            lines.append(f"permit = {_conf_network(entry, 'ami_permit')}")
    lines += [
        "read = system,call,reporting",
        "write = system,reporting",
        "eventfilter = Event: Hangup",  # the app's feed needs no other event
    ]
    return "\n".join(lines) + "\n"


def _conf_value(value: str, origin: str, section: bool = False) -> str:
    """``value`` for one line of a .conf file: a token without ';', white space or control."""
    forbidden = ";[]:" if section else ";"
    if value and all("!" <= c <= "~" and c not in forbidden for c in value):
        return value
    raise PbxError(
        f"refusing to write {shown(value)} from {origin} into Asterisk's configuration: "
        f"it must be printable ASCII without white space or any of {forbidden!r}"
    )


def _conf_network(entry: str, setting: str = "carrier_ips") -> str:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise PbxError(
            f"refusing to write {shown(entry)} from the setting {setting} into Asterisk's "
            "configuration: not an IP address or network"
        ) from None
    return entry
