"""Log formats: the text line and the JSON object, both with the call id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from callcontrol.logs import call_id_var, setup_logging


@pytest.fixture
def stderr() -> Iterator[io.StringIO]:
    """Where ``setup_logging(..., stream=stderr)`` writes; the root logger is restored."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    flags = ("logThreads", "logProcesses", "logMultiprocessing", "_srcfile")
    saved = {flag: getattr(logging, flag) for flag in flags}
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)
    for flag, value in saved.items():
        setattr(logging, flag, value)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_logs_are_one_object_a_line_with_the_call_id(stderr: io.StringIO) -> None:
    setup_logging("INFO", "json", stderr)
    log = logging.getLogger("callcontrol.calls.call")
    log.info("outside any call")
    token = call_id_var.set("c0ffee")
    try:
        log.info('refusing the call: %s ("%s")\nsecond line', "no_credit", "quoted")
    finally:
        call_id_var.reset(token)
    log.debug("below the level")
    first, second = lines(stderr)
    assert set(first) == {"time", "level", "logger", "call_id", "message"}
    assert first["call_id"] is None
    assert (first["level"], first["logger"]) == ("INFO", "callcontrol.calls.call")
    assert str(first["time"]).endswith("+00:00")
    assert second["call_id"] == "c0ffee"
    assert second["message"] == 'refusing the call: no_credit ("quoted")\nsecond line'


def test_an_exception_is_one_string_field(stderr: io.StringIO) -> None:
    setup_logging("INFO", "json", stderr)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("call crashed")
    [line] = lines(stderr)
    assert line["message"] == "call crashed"
    exception = str(line["exception"])
    assert exception.startswith("Traceback") and "ValueError: boom" in exception


def test_text_logs_keep_their_format(stderr: io.StringIO) -> None:
    setup_logging("INFO", "text", stderr)
    token = call_id_var.set("c0ffee")
    try:
        logging.getLogger("callcontrol.app").warning("hello")
    finally:
        call_id_var.reset(token)
    assert stderr.getvalue().rstrip().endswith("WARNING [c0ffee] callcontrol.app: hello")


def test_records_skip_what_no_format_prints(stderr: io.StringIO) -> None:
    """The caller's frame, the thread and the process are not looked up for a record:
    no format prints them, and they were a third of a call's log line."""
    setup_logging("INFO", "text", stderr)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logging.getLogger().addHandler(Keep())
    logging.getLogger("callcontrol.app").info("hello")
    [record] = records
    assert (record.lineno, record.thread, record.process) == (0, None, None)
    assert stderr.getvalue().rstrip().endswith("INFO    [-] callcontrol.app: hello")


def test_each_of_several_workers_names_itself(stderr: io.StringIO) -> None:
    setup_logging("INFO", "text", stderr, worker=2)
    token = call_id_var.set("c0ffee")
    try:
        logging.getLogger("callcontrol.calls.inbound").info("connected +1555 with alice")
    finally:
        call_id_var.reset(token)
    text = stderr.getvalue().rstrip()
    assert text.endswith(
        "INFO    [c0ffee] callcontrol.calls.inbound@w2: connected +1555 with alice"
    )
    stderr.truncate(0)
    stderr.seek(0)
    setup_logging("INFO", "json", stderr, worker=2)
    logging.getLogger("callcontrol.app").info("hello")
    [line] = lines(stderr)
    assert (line["worker"], line["logger"]) == (2, "callcontrol.app")


def test_the_setting_is_checked() -> None:
    from callcontrol.config import load_settings
    from callcontrol.errors import ConfigError

    assert load_settings(environ={"CALLCONTROL_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError, match="log_format"):
        load_settings(environ={"CALLCONTROL_LOG_FORMAT": "xml"})
