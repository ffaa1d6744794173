"""The `command` notifier: runs a program per event, the CloudEvent JSON on its stdin.

The program is started directly from `argv` (no shell), in a new session so that on a timeout
or a cancelled delivery the whole process group is killed, never left behind. It inherits the
daemon's environment minus `BULKWATCH_*` variables (config overrides can hold secrets), plus
`env` from the config, plus the event's key fields:

    BULKWATCH_EVENT_ID  BULKWATCH_EVENT_TYPE  BULKWATCH_EVENT_TIME  BULKWATCH_SUBJECT
    BULKWATCH_STORE  BULKWATCH_PLATFORM  BULKWATCH_TASK_ID  BULKWATCH_OPERATION_TYPE
    BULKWATCH_STATUS  BULKWATCH_PREVIOUS_STATUS  BULKWATCH_URL  BULKWATCH_PARTIAL_DATA_URL
    BULKWATCH_ATTEMPT  BULKWATCH_NOTIFIER

(empty when the event has no such field). Exit status 0 is a delivery; any other status, a
signal or the timeout is a failed delivery, retried like any other, reported with the last line
the program wrote to stderr. stdout is discarded. A program that cannot be started (not found,
not executable) is a permanent failure: retrying cannot fix the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Mapping
from typing import IO, Literal

from pydantic import ConfigDict, Field, field_validator

from bulkwatch.common.durations import Duration
from bulkwatch.notifiers.base import DeliveryError, NotifierConfig, NotifierType, OutgoingEvent
from bulkwatch.notifiers.templates import placeholders

__all__ = ["ENV_PREFIX", "TYPE", "CommandNotifier", "CommandNotifierConfig", "event_environment"]

ENV_PREFIX = "BULKWATCH_"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The tail of stderr read for the error message.
_STDERR_KEEP = 4096
_STDERR_LINE_MAX = 200
_EVENT_FIELDS = {
    "EVENT_ID": "event_id",
    "EVENT_TYPE": "type",
    "EVENT_TIME": "time",
    "SUBJECT": "subject",
    "STORE": "store",
    "PLATFORM": "platform",
    "TASK_ID": "task_id",
    "OPERATION_TYPE": "operation_type",
    "STATUS": "status",
    "PREVIOUS_STATUS": "previous_status",
    "URL": "url",
    "PARTIAL_DATA_URL": "partial_data_url",
    "ATTEMPT": "attempt",
}


class CommandNotifierConfig(NotifierConfig):
    """Config of the `command` notifier."""

    # argv and env often carry tokens (curl -H "Authorization: ..."): not in repr or errors.
    model_config = ConfigDict(hide_input_in_errors=True)

    type: Literal["command"] = "command"
    argv: list[str] = Field(min_length=1, repr=False)
    timeout: Duration = Field(default=30.0, gt=0)
    env: dict[str, str] = Field(default_factory=dict, repr=False)

    @field_validator("argv")
    @classmethod
    def _check_argv(cls, value: list[str]) -> list[str]:
        if not value[0]:
            raise ValueError("the program (argv[0]) must not be empty")
        if any("\x00" in arg for arg in value):
            raise ValueError("arguments cannot contain NUL characters")
        return value

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, content in value.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
            if name.upper().startswith(ENV_PREFIX):
                raise ValueError(f"{name}: names starting with {ENV_PREFIX} are set by bulkwatch")
            if "\x00" in content:
                raise ValueError(f"{name}: values cannot contain NUL characters")
        return value

    def machine_problems(self) -> list[str]:
        """The program must exist and be executable: found on PATH (the `env` one if given)
        when argv[0] has no slash, else at that path."""
        program = self.argv[0]
        if "/" not in program:
            search = self.env.get("PATH", os.environ.get("PATH", os.defpath))
            if shutil.which(program, path=search) is None:
                return [f"argv[0]: program {program!r} not found on PATH ({search})"]
            return []
        if not os.path.exists(program):
            return [f"argv[0]: {program} does not exist"]
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            return [f"argv[0]: {program} is not an executable file"]
        return []


def event_environment(event: OutgoingEvent, notifier: str) -> dict[str, str]:
    """The `BULKWATCH_*` variables describing one event."""
    values = placeholders(event)
    env = {ENV_PREFIX + key: values[name] for key, name in _EVENT_FIELDS.items()}
    env[ENV_PREFIX + "NOTIFIER"] = notifier
    # Platform data could hold a NUL, which no environment can carry.
    return {name: value.replace("\x00", "") for name, value in env.items()}


class CommandNotifier:
    """Runs `argv` once per event and waits for it, up to `timeout`."""

    def __init__(self, config: CommandNotifierConfig, environ: Mapping[str, str]) -> None:
        self.name = config.name
        self._argv = list(config.argv)
        self._timeout = config.timeout
        base = {k: v for k, v in environ.items() if not k.upper().startswith(ENV_PREFIX)}
        self._env = {**base, **config.env}

    async def send(self, event: OutgoingEvent) -> None:
        """Run the program; return on exit status 0, raise `DeliveryError` otherwise."""
        env = {**self._env, **event_environment(event, self.name)}
        # stderr goes to a file, not a pipe: a chatty program cannot fill memory, and nothing
        # waits on a pipe that a leftover grandchild might hold open.
        with tempfile.TemporaryFile() as errors:
            code = await self._run(event.body, env, errors)
            _judge(code, _tail(errors))

    async def _run(self, body: bytes, env: dict[str, str], errors: IO[bytes]) -> int:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=errors,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            # Not found, not executable, not a program: no retry can fix that.
            reason = exc.strerror or type(exc).__name__
            raise DeliveryError(f"cannot run {self._argv[0]}: {reason}", permanent=True) from None
        try:
            async with asyncio.timeout(self._timeout):
                await _feed(proc, body)
                return await proc.wait()
        except TimeoutError:
            raise DeliveryError(f"timed out after {self._timeout:g}s; killed") from None
        finally:
            # Timeout, cancellation or any error: no process of ours outlives the attempt.
            if proc.returncode is None:
                _kill_group(proc)
            if proc.stdin is not None:
                proc.stdin.close()
            await proc.wait()

    async def aclose(self) -> None:
        """Nothing to release: every process has been waited for."""


async def _feed(proc: asyncio.subprocess.Process, body: bytes) -> None:
    """Write the event to stdin and close it."""
    stdin = proc.stdin
    if stdin is None:  # pragma: no cover - the pipe was asked for
        return
    try:
        stdin.write(body)
        await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # a program may exit without reading its input; its exit status decides
    finally:
        stdin.close()


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # The child leads its own session, so its pid is the group id of it and its children.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(errors: IO[bytes]) -> bytes:
    size = errors.seek(0, os.SEEK_END)
    errors.seek(max(0, size - _STDERR_KEEP))
    return errors.read()


def _judge(code: int, stderr: bytes) -> None:
    if code == 0:
        return
    if code < 0:
        try:
            what = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            what = f"killed by signal {-code}"
    else:
        what = f"exit status {code}"
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    if lines:
        last = lines[-1].strip()
        if len(last) > _STDERR_LINE_MAX:
            last = last[: _STDERR_LINE_MAX - 1] + "…"
        what += f": {last}"
    raise DeliveryError(what)


# The child inherits the daemon's environment, as any program started from a shell would.
TYPE = NotifierType(
    "command", CommandNotifierConfig, lambda config, _: CommandNotifier(config, os.environ)
)
